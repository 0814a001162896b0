package chaos_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/orderflow/orders/services/broker"
	"github.com/orderflow/orders/services/chaos"
	"github.com/orderflow/orders/services/testkit"
)

// TestChaosShort is the short chaos run: 10000 orders through 2 processes
// of each stage on a broker of 3 nodes while 20 processes are SIGKILLed,
// one is SIGSTOPped past the session timeout, the aggregator is scaled
// 1 -> 5 -> 1 on 4 partitions, the broker is killed and restarted on its
// data dir, and protocol faults come every 1-2s while orders are produced.
// The session timeout is Kafka's least, 6s.
func TestChaosShort(t *testing.T) {
	rep, err := chaos.Run(context.Background(), chaos.Config{
		Binary: testkit.Binary(t), Orders: 10000, Rate: 1000, Partitions: 4, WorkDir: t.TempDir(),
	}, zaptest.NewLogger(t))
	t.Log("\n" + rep.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Violations) > 0 {
		t.Fatalf("%d violations", len(rep.Violations))
	}
	if rep.Kills < 20 || rep.Stops < 1 || rep.BrokerRestarts < 1 || rep.ScaleSteps < 8 || rep.Nodes != 3 {
		t.Fatalf("fewer faults than planned: %+v", rep)
	}
}

// TestChaosClusterFaults is a short run of the cluster-fault mode: on 3
// nodes, a protocol fault every 1-2s for 15s (every kind comes once in
// every 7), 2 processes of every stage, 6000 orders at 400/s. Every order
// has exactly one outcome, the average is exact, every kind of fault hit
// something, and the duplicates stay within what caused them.
func TestChaosClusterFaults(t *testing.T) {
	rep, err := chaos.Run(context.Background(), chaos.Config{
		Binary: testkit.Binary(t), Mode: chaos.ModeCluster, Nodes: 3, Orders: 6000, Rate: 400,
		Procs: 2, Partitions: 4, FaultTime: 15 * time.Second, WorkDir: t.TempDir(),
	}, zaptest.NewLogger(t))
	t.Log("\n" + rep.String())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Lost != 0 || rep.InBoth != 0 || rep.AverageRelErr > 1e-9 {
		t.Errorf("%d lost, %d in both, average off by %.3g", rep.Lost, rep.InBoth, rep.AverageRelErr)
	}
	hit := map[broker.FaultKind]int{}
	for _, f := range rep.Faults {
		hit[f.Kind] = f.Hits
	}
	for _, k := range broker.FaultKinds {
		if hit[k] == 0 {
			t.Errorf("no %s fault hit anything", k)
		}
	}
	if len(rep.Violations) > 0 {
		t.Errorf("%d violations", len(rep.Violations))
	}
}
