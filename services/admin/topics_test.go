package admin_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/orderflow/orders/services/admin"
	"github.com/orderflow/orders/services/broker"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/testkit"
	"github.com/orderflow/orders/topology"
)

// dynamicTopicConfig is DescribeConfigs' source of a config set on the topic.
const dynamicTopicConfig = 1

// newCluster starts a broker and returns a client of it and the default
// topology with one retry stage.
func newCluster(tb testing.TB) (kafka.Client, topology.Topology) {
	tb.Helper()
	b := testkit.Broker(tb, broker.Config{})
	top, err := topology.New(topology.Topology{Delays: []time.Duration{time.Second}})
	if err != nil {
		tb.Fatal(err)
	}
	return kafka.Client{Brokers: []string{b.Addr()}}, top
}

// describe returns the configs of topic as the broker reports them.
func describe(tb testing.TB, client kafka.Client, topic string) map[string]kafkago.DescribeConfigResponseConfigEntry {
	tb.Helper()
	a := client.Admin()
	defer a.Close()
	res, err := a.DescribeConfigs(context.Background(), &kafkago.DescribeConfigsRequest{Resources: []kafkago.DescribeConfigRequestResource{{
		ResourceType: kafkago.ResourceTypeTopic, ResourceName: topic,
		ConfigNames: []string{"cleanup.policy", "message.timestamp.type", "retention.ms", "retention.bytes"},
	}}})
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]kafkago.DescribeConfigResponseConfigEntry{}
	for _, r := range res.Resources {
		if r.Error != nil {
			tb.Fatalf("describe %s: %v", topic, r.Error)
		}
		for _, e := range r.ConfigEntries {
			out[e.ConfigName] = e
		}
	}
	return out
}

// createTopic creates topic with the topology's partition count and configs.
func createTopic(tb testing.TB, client kafka.Client, top topology.Topology, topic string, configs ...string) {
	tb.Helper()
	tc := kafkago.TopicConfig{Topic: topic, NumPartitions: top.Partitions, ReplicationFactor: 1}
	for i := 0; i+1 < len(configs); i += 2 {
		tc.ConfigEntries = append(tc.ConfigEntries, kafkago.ConfigEntry{ConfigName: configs[i], ConfigValue: configs[i+1]})
	}
	a := client.Admin()
	defer a.Close()
	res, err := a.CreateTopics(context.Background(), &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{tc}})
	if err != nil {
		tb.Fatal(err)
	}
	for _, err := range res.Errors {
		if err != nil {
			tb.Fatalf("create %s: %v", topic, err)
		}
	}
}

// alterTopic sets configs (name, value pairs) of topic.
func alterTopic(tb testing.TB, client kafka.Client, topic string, configs ...string) {
	tb.Helper()
	r := kafkago.IncrementalAlterConfigsRequestResource{ResourceType: kafkago.ResourceTypeTopic, ResourceName: topic}
	for i := 0; i+1 < len(configs); i += 2 {
		r.Configs = append(r.Configs, kafkago.IncrementalAlterConfigsRequestConfig{Name: configs[i], Value: configs[i+1], ConfigOperation: kafkago.ConfigOperationSet})
	}
	a := client.Admin()
	defer a.Close()
	res, err := a.IncrementalAlterConfigs(context.Background(), &kafkago.IncrementalAlterConfigsRequest{Resources: []kafkago.IncrementalAlterConfigsRequestResource{r}})
	if err != nil {
		tb.Fatal(err)
	}
	for _, r := range res.Resources {
		if r.Error != nil {
			tb.Fatalf("alter %s: %v", topic, r.Error)
		}
	}
}

// driftsOf runs Check and returns its drifts of topic.
func driftsOf(tb testing.TB, client kafka.Client, top topology.Topology, topic string) []admin.Drift {
	tb.Helper()
	_, drifts, err := admin.Check(context.Background(), client, top, admin.CheckConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	var out []admin.Drift
	for _, d := range drifts {
		if d.Topic == topic {
			out = append(out, d)
		}
	}
	return out
}

// A fresh EnsureTopics makes the state topic compacted, stamped with the
// producer's times and without the replay log's unlimited retention, and
// the replay log a delete-policy topic that never expires.
func TestEnsureTopicsCreatesCompactedState(t *testing.T) {
	client, top := newCluster(t)
	if _, err := admin.EnsureTopics(context.Background(), client, top, admin.CheckConfig{}); err != nil {
		t.Fatal(err)
	}
	state := describe(t, client, top.State)
	if e := state["cleanup.policy"]; e.ConfigValue != "compact" {
		t.Errorf("%s: cleanup.policy %q, want compact", top.State, e.ConfigValue)
	}
	// The broker's default is CreateTime too: the topic must carry it
	// itself, so that no broker default turns it into LogAppendTime.
	if e := state["message.timestamp.type"]; e.ConfigValue != "CreateTime" || e.ConfigSource != dynamicTopicConfig {
		t.Errorf("%s: message.timestamp.type %q (source %d), want CreateTime set on the topic (source %d)", top.State, e.ConfigValue, e.ConfigSource, dynamicTopicConfig)
	}
	for _, name := range []string{"retention.ms", "retention.bytes"} {
		if e := state[name]; e.ConfigSource == dynamicTopicConfig {
			t.Errorf("%s: %s is set on the topic (%q): it does not apply to a compacted topic", top.State, name, e.ConfigValue)
		}
	}
	replays := describe(t, client, top.Replays)
	if replays["cleanup.policy"].ConfigValue != "delete" || replays["retention.ms"].ConfigValue != "-1" || replays["retention.bytes"].ConfigValue != "-1" {
		t.Errorf("%s: cleanup.policy %q, retention.ms %q, retention.bytes %q; want delete, -1, -1", top.Replays,
			replays["cleanup.policy"].ConfigValue, replays["retention.ms"].ConfigValue, replays["retention.bytes"].ConfigValue)
	}
	states, drifts, err := admin.Check(context.Background(), client, top, admin.CheckConfig{})
	if err != nil || len(drifts) != 0 {
		t.Fatalf("Check after EnsureTopics: %v %v", drifts, err)
	}
	for _, st := range states {
		if st.Topic == top.State && (!st.Compacted() || st.Deletes()) {
			t.Errorf("TopicState of %s: cleanup policy %q, want compact", st.Topic, st.CleanupPolicy)
		}
	}
}

// Check reports a state topic that is not compacted, or whose records
// expire, until the operator compacts it; retention alone no longer
// matters for it.
func TestCheckStateCompaction(t *testing.T) {
	for _, tc := range []struct {
		name    string
		configs []string
		detail  string // "": no drift
	}{
		{"delete", []string{"cleanup.policy", "delete", "retention.ms", "-1", "retention.bytes", "-1"},
			"cleanup.policy is delete: the state topic must be compacted (set cleanup.policy=compact), or it grows for ever"},
		{"delete expiring", []string{"cleanup.policy", "delete", "retention.ms", "86400000"},
			"cleanup.policy is delete with retention.ms 86400000: the state topic must be compacted (set cleanup.policy=compact), or its records expire"},
		{"compact and delete expiring", []string{"cleanup.policy", "compact,delete", "retention.ms", "86400000"},
			"cleanup.policy is compact,delete with retention.ms 86400000: its records expire (set cleanup.policy=compact)"},
		{"compact and delete by size", []string{"cleanup.policy", "compact,delete", "retention.ms", "-1", "retention.bytes", "1073741824"},
			"cleanup.policy is compact,delete with retention.bytes 1073741824: its records expire"},
		{"compact and delete forever", []string{"cleanup.policy", "compact,delete", "retention.ms", "-1", "retention.bytes", "-1"}, ""},
		{"compact with a retention", []string{"cleanup.policy", "compact", "retention.ms", "86400000"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, top := newCluster(t)
			createTopic(t, client, top, top.State, tc.configs...)
			drifts := driftsOf(t, client, top, top.State)
			if tc.detail == "" {
				if len(drifts) != 0 {
					t.Fatalf("drifts of %s: %v, want none", top.State, drifts)
				}
				return
			}
			if len(drifts) != 1 || drifts[0].Kind != admin.DriftStateCompaction || drifts[0].Fixable || !strings.Contains(drifts[0].Detail, tc.detail) {
				t.Fatalf("drifts of %s: %+v, want one not fixable %s drift saying %q", top.State, drifts, admin.DriftStateCompaction, tc.detail)
			}
			// EnsureTopics creates the other topics but leaves the config
			// to the operator.
			fixes, err := admin.EnsureTopics(context.Background(), client, top, admin.CheckConfig{})
			if !errors.Is(err, admin.ErrDrift) {
				t.Errorf("EnsureTopics: %v, want ErrDrift", err)
			}
			if !hasFix(fixes, admin.Fix{Topic: top.State, Action: "cannot-fix", Detail: drifts[0].Detail}) {
				t.Errorf("EnsureTopics did not report %s as cannot-fix: %+v", top.State, fixes)
			}
			alterTopic(t, client, top.State, "cleanup.policy", "compact")
			if drifts := driftsOf(t, client, top, top.State); len(drifts) != 0 {
				t.Fatalf("drifts of %s after cleanup.policy=compact: %v", top.State, drifts)
			}
		})
	}
}

// Check reports a state topic stamped with LogAppendTime until it says
// CreateTime.
func TestCheckStateTimestampType(t *testing.T) {
	client, top := newCluster(t)
	createTopic(t, client, top, top.State, "cleanup.policy", "compact", "message.timestamp.type", "LogAppendTime")
	drifts := driftsOf(t, client, top, top.State)
	want := "message.timestamp.type is LogAppendTime: the aggregator finds where to restore from by its records' timestamps; set message.timestamp.type=CreateTime"
	if len(drifts) != 1 || drifts[0].Kind != admin.DriftStateTimestamp || drifts[0].Fixable || drifts[0].Detail != want {
		t.Fatalf("drifts of %s: %+v, want one not fixable %s drift", top.State, drifts, admin.DriftStateTimestamp)
	}
	fixes, err := admin.EnsureTopics(context.Background(), client, top, admin.CheckConfig{})
	if !errors.Is(err, admin.ErrDrift) || !hasFix(fixes, admin.Fix{Topic: top.State, Action: "cannot-fix", Detail: want}) {
		t.Errorf("EnsureTopics: %v %+v, want the timestamp drift as cannot-fix", err, fixes)
	}
	alterTopic(t, client, top.State, "message.timestamp.type", "CreateTime")
	if drifts := driftsOf(t, client, top, top.State); len(drifts) != 0 {
		t.Fatalf("drifts of %s after message.timestamp.type=CreateTime: %v", top.State, drifts)
	}
}

// The replay log keeps the never-expire check the state topic dropped.
func TestCheckReplaysRetention(t *testing.T) {
	client, top := newCluster(t)
	createTopic(t, client, top, top.Replays, "retention.ms", "86400000")
	drifts := driftsOf(t, client, top, top.Replays)
	if len(drifts) != 1 || drifts[0].Kind != admin.DriftStateRetention || drifts[0].Fixable {
		t.Fatalf("drifts of %s: %+v, want one not fixable %s drift", top.Replays, drifts, admin.DriftStateRetention)
	}
	alterTopic(t, client, top.Replays, "retention.ms", "-1")
	if drifts := driftsOf(t, client, top, top.Replays); len(drifts) != 0 {
		t.Fatalf("drifts of %s after retention.ms=-1: %v", top.Replays, drifts)
	}
}

func hasFix(fixes []admin.Fix, want admin.Fix) bool {
	for _, f := range fixes {
		if f == want {
			return true
		}
	}
	return false
}
