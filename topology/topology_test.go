package topology_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orders/topology"
)

func TestDefaultLadder(t *testing.T) {
	top := topology.Default()
	want := []string{"orders", "orders_retry_1", "orders_retry_2", "orders_retry_3", "orders_dlq", "orders_processed", "orders_aggregator_state", "orders_dlq_replays"}
	if got := top.Topics(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Topics() = %v, want %v", got, want)
	}
	chain := []string{}
	for s := 0; s <= top.Stages(); s++ {
		next, _ := top.NextOnFailure(s)
		chain = append(chain, top.InputTopic(s)+">"+next)
	}
	wantChain := "orders>orders_retry_1 orders_retry_1>orders_retry_2 orders_retry_2>orders_retry_3 orders_retry_3>orders_dlq"
	if got := strings.Join(chain, " "); got != wantChain {
		t.Fatalf("chain %s, want %s", got, wantChain)
	}
	if g := top.Group(top.StageName(2)); g != "orders-retry-2" {
		t.Fatalf("group %s", g)
	}
	if d := top.Delay(3); d != 10*time.Second {
		t.Fatalf("delay 3 = %v", d)
	}
	groups := map[string]string{"orders": "orders-main", "orders_retry_2": "orders-retry-2", "orders_processed": "orders-aggregator", "orders_dlq": ""}
	for topic, want := range groups {
		if g := top.GroupOf(topic); g != want {
			t.Errorf("GroupOf(%s) = %q, want %q", topic, g, want)
		}
	}
}

func TestValidateNamesTheSetting(t *testing.T) {
	cases := map[string]topology.Topology{
		"RETRY_DELAYS": {Delays: []time.Duration{}},
		"PARTITIONS":   {Partitions: -1},
		"REPLICATION":  {Replication: -2},
	}
	for setting, top := range cases {
		_, err := topology.New(top)
		if err == nil || !strings.Contains(err.Error(), setting) {
			t.Errorf("New(%+v) = %v, want an error naming %s", top, err, setting)
		}
	}
	if _, err := topology.New(topology.Topology{Delays: []time.Duration{-time.Second}}); err == nil {
		t.Error("negative delay accepted")
	}
}
