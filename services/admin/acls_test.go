package admin_test

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/orderflow/orders/services/admin"
	"github.com/orderflow/orders/topology"
)

// The ACL set grants each principal exactly its own topics and group.
func TestACLsAreLeastPrivilege(t *testing.T) {
	top, err := topology.New(topology.Topology{Delays: []time.Duration{time.Second, time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, a := range admin.ACLs(top, "User:p-") {
		if a.PermissionType != kafka.ACLPermissionTypeAllow || a.Host != "*" || a.ResourcePatternType != kafka.PatternTypeLiteral {
			t.Errorf("not a literal allow on any host: %+v", a)
		}
		got[a.Principal] = append(got[a.Principal], admin.FormatACL(a)[29:])
	}
	want := map[string][]string{
		"User:p-main": {
			"ALLOW READ     topic orders", "ALLOW READ     group orders-main",
			"ALLOW WRITE    topic orders_retry_1", "ALLOW WRITE    topic orders_processed", "ALLOW WRITE    topic orders_dlq",
		},
		"User:p-retry-1": {
			"ALLOW READ     topic orders_retry_1", "ALLOW READ     group orders-retry-1",
			"ALLOW WRITE    topic orders_retry_2", "ALLOW WRITE    topic orders_processed", "ALLOW WRITE    topic orders_dlq",
		},
		"User:p-retry-2": {
			"ALLOW READ     topic orders_retry_2", "ALLOW READ     group orders-retry-2",
			"ALLOW WRITE    topic orders_processed", "ALLOW WRITE    topic orders_dlq",
		},
		"User:p-aggregator": {
			"ALLOW READ     topic orders_processed", "ALLOW READ     group orders-aggregator",
			"ALLOW READ     topic orders_aggregator_state", "ALLOW WRITE    topic orders_aggregator_state",
			"ALLOW DESCRIBE_CONFIGS topic orders_aggregator_state", "ALLOW WRITE    topic orders_dlq",
		},
		"User:p-producer": {"ALLOW WRITE    topic orders"},
	}
	for p, w := range want {
		if !slices.Equal(got[p], w) {
			t.Errorf("%s:\n got %q\nwant %q", p, got[p], w)
		}
	}
	if n := len(got["User:p-admin"]); n != 4*len(top.Topics()) {
		t.Errorf("admin has %d ACLs, want CREATE, DESCRIBE, ALTER and DESCRIBE_CONFIGS on each of %d topics: %q", n, len(top.Topics()), got["User:p-admin"])
	}
	// The operator reads and describes every topic, describes every stage
	// group, and writes the topics a replay may target and the replay log.
	op := got["User:p-operator"]
	for _, w := range []string{"ALLOW READ     topic orders_dlq", "ALLOW DESCRIBE group orders-aggregator",
		"ALLOW WRITE    topic orders", "ALLOW WRITE    topic orders_retry_2", "ALLOW WRITE    topic orders_dlq_replays"} {
		if !slices.Contains(op, w) {
			t.Errorf("operator lacks %q: %q", w, op)
		}
	}
	for _, a := range op {
		if strings.Contains(a, "WRITE") && (strings.Contains(a, "orders_processed") || strings.Contains(a, "orders_dlq ") || strings.HasSuffix(a, "orders_dlq") || strings.Contains(a, "state")) {
			t.Errorf("operator may write where only stages write: %s", a)
		}
	}
	if len(got) != len(want)+2 {
		t.Errorf("principals %v, want %d", slices.Sorted(maps.Keys(got)), len(want)+2)
	}
}
