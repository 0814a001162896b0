package chaos_test

import (
	"context"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/orderflow/orders/services/chaos"
	"github.com/orderflow/orders/services/testkit"
)

// TestChaosShort is the short chaos run: 10000 orders through 2 processes
// of each stage while 20 processes are SIGKILLed, one is SIGSTOPped past
// the session timeout, the aggregator is scaled 1 -> 5 -> 1 on 4 partitions
// and the broker is killed and restarted on its data dir.
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
	if rep.Kills < 20 || rep.Stops < 1 || rep.BrokerRestarts < 1 || rep.ScaleSteps < 8 {
		t.Fatalf("fewer faults than planned: %+v", rep)
	}
}
