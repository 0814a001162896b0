// Package admin creates the pipeline's topics and checks the live cluster
// against the configured topology.
package admin

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/topology"
)

// Drift kinds.
const (
	DriftMissing        = "missing"
	DriftPartitions     = "partitions"
	DriftRetention      = "retention"
	DriftStateRetention = "state-retention"
)

// Drift is one way a live topic differs from the topology.
type Drift struct {
	Topic  string
	Kind   string
	Detail string
	// Fixable drifts are fixed by EnsureTopics: topics are created and
	// partitions added. Retention is the operator's to change.
	Fixable bool
	// want is the partition count a partitions drift needs.
	want int
}

func (d Drift) String() string { return d.Topic + ": " + d.Detail }

// CheckConfig tunes the checks.
type CheckConfig struct {
	// DLQMinRetention is the least retention the DLQ may have. Optional,
	// default 7 days.
	DLQMinRetention time.Duration
}

// ErrDrift means the live topics do not match the topology.
var ErrDrift = errors.New("topics do not match the configured topology")

// TopicState is a live topic as Check found it.
type TopicState struct {
	Topic       string
	Partitions  int // 0: missing
	RetentionMS int64
}

// topicConfig holds per-topic settings: the aggregator's state and the DLQ
// replay log must never expire; every other topic keeps the broker's
// retention.
func topicConfig(top topology.Topology, topic string) []kafkago.ConfigEntry {
	if topic == top.State || topic == top.Replays {
		return []kafkago.ConfigEntry{{ConfigName: "retention.ms", ConfigValue: "-1"}, {ConfigName: "retention.bytes", ConfigValue: "-1"}}
	}
	return nil
}

// Check compares the live cluster with top and returns every drift.
func Check(ctx context.Context, client kafka.Client, top topology.Topology, cfg CheckConfig) ([]TopicState, []Drift, error) {
	if cfg.DLQMinRetention == 0 {
		cfg.DLQMinRetention = 7 * 24 * time.Hour
	}
	if err := client.Ping(ctx); err != nil {
		return nil, nil, err
	}
	admin := client.Admin()
	defer admin.Close()
	counts, err := partitionCounts(ctx, admin, top.Topics())
	if err != nil {
		return nil, nil, err
	}
	retention, err := retentions(ctx, admin, counts)
	if err != nil {
		return nil, nil, err
	}
	var states []TopicState
	var drifts []Drift
	ordersParts := max(counts[top.Orders], top.Partitions)
	for _, t := range top.Topics() {
		n, ok := counts[t]
		states = append(states, TopicState{Topic: t, Partitions: n, RetentionMS: retention[t]})
		if !ok {
			drifts = append(drifts, Drift{Topic: t, Kind: DriftMissing, Detail: "missing", Fixable: true, want: top.Partitions})
			continue
		}
		want := top.Partitions
		if t != top.Orders && t != top.State && t != top.Replays {
			want = ordersParts // a retry or DLQ topic must spread as wide as orders
		}
		if t == top.State {
			want = max(want, counts[top.Processed])
		}
		if n < want {
			detail := fmt.Sprintf("has %d partitions, fewer than the %d configured (PARTITIONS)", n, want)
			if want > top.Partitions {
				detail = fmt.Sprintf("has %d partitions, fewer than the %d of %s", n, want, top.Orders)
			}
			drifts = append(drifts, Drift{Topic: t, Kind: DriftPartitions, Detail: detail, Fixable: true, want: want})
		}
		ms := retention[t]
		switch {
		case t == top.State || t == top.Replays:
			if ms >= 0 {
				drifts = append(drifts, Drift{Topic: t, Kind: DriftStateRetention,
					Detail: fmt.Sprintf("retention.ms is %d: its records must never expire (set -1)", ms)})
			}
		case t == top.DLQ:
			if ms >= 0 && time.Duration(ms)*time.Millisecond < cfg.DLQMinRetention {
				drifts = append(drifts, Drift{Topic: t, Kind: DriftRetention,
					Detail: fmt.Sprintf("retention.ms is %d, shorter than the %v DLQ_MIN_RETENTION asks", ms, cfg.DLQMinRetention)})
			}
		case top.RetryStep(t) > 0:
			delay := top.Delay(top.RetryStep(t))
			if ms >= 0 && time.Duration(ms)*time.Millisecond <= delay {
				drifts = append(drifts, Drift{Topic: t, Kind: DriftRetention,
					Detail: fmt.Sprintf("retention.ms is %d, not longer than its retry delay %v: records would expire before they are due", ms, delay)})
			}
		}
	}
	return states, drifts, nil
}

// Fix is what EnsureTopics did or could not do.
type Fix struct {
	Topic  string
	Action string // created, grown, exists, cannot-fix
	Detail string
}

// EnsureTopics creates missing topics and adds partitions where the
// topology needs more, then reports what it could not fix. It is
// idempotent. The error wraps ErrDrift when drift remains.
func EnsureTopics(ctx context.Context, client kafka.Client, top topology.Topology, cfg CheckConfig) ([]Fix, error) {
	states, drifts, err := Check(ctx, client, top, cfg)
	if err != nil {
		return nil, err
	}
	admin := client.Admin()
	defer admin.Close()
	done := map[string]Fix{}
	var create kafkago.CreateTopicsRequest
	var grow kafkago.CreatePartitionsRequest
	for _, d := range drifts {
		switch d.Kind {
		case DriftMissing:
			create.Topics = append(create.Topics, kafkago.TopicConfig{
				Topic: d.Topic, NumPartitions: d.want, ReplicationFactor: top.Replication, ConfigEntries: topicConfig(top, d.Topic),
			})
			done[d.Topic] = Fix{Topic: d.Topic, Action: "created", Detail: fmt.Sprintf("%d partitions", d.want)}
		case DriftPartitions:
			grow.Topics = append(grow.Topics, kafkago.TopicPartitionsConfig{Name: d.Topic, Count: int32(d.want)})
			detail := fmt.Sprintf("%s, now %d", d.Detail, d.want)
			if d.Topic == top.Processed {
				detail += "; orderIds now map to other partitions, so an order redelivered from before may be counted twice"
			}
			done[d.Topic] = Fix{Topic: d.Topic, Action: "grown", Detail: detail}
		}
	}
	if len(create.Topics) > 0 {
		res, err := admin.CreateTopics(ctx, &create)
		if err != nil {
			return nil, fmt.Errorf("create topics: %w", err)
		}
		for t, terr := range res.Errors {
			if terr != nil && !errors.Is(terr, kafkago.TopicAlreadyExists) {
				return nil, fmt.Errorf("create topic %s: %w", t, kafka.ExplainDenied(terr, "CREATE", "topic", t))
			}
		}
	}
	if len(grow.Topics) > 0 {
		res, err := admin.CreatePartitions(ctx, &grow)
		if err != nil {
			return nil, fmt.Errorf("add partitions: %w", err)
		}
		for t, terr := range res.Errors {
			if terr != nil {
				return nil, fmt.Errorf("add partitions to %s: %w", t, terr)
			}
		}
	}
	var out []Fix
	remaining := false
	for _, st := range states {
		f, ok := done[st.Topic]
		if !ok {
			f = Fix{Topic: st.Topic, Action: "exists", Detail: strconv.Itoa(st.Partitions) + " partitions"}
		}
		out = append(out, f)
		for _, d := range drifts {
			if d.Topic == st.Topic && !d.Fixable {
				out = append(out, Fix{Topic: d.Topic, Action: "cannot-fix", Detail: d.Detail})
				remaining = true
			}
		}
	}
	if remaining {
		return out, ErrDrift
	}
	return out, nil
}

// partitionCounts returns the partition count of each of topics that exists.
func partitionCounts(ctx context.Context, admin *kafka.Admin, topics []string) (map[string]int, error) {
	meta, err := admin.Metadata(ctx, &kafkago.MetadataRequest{Topics: topics})
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	out := map[string]int{}
	for _, t := range meta.Topics {
		if t.Error == nil {
			out[t.Name] = len(t.Partitions)
		}
	}
	return out, nil
}

// retentions returns retention.ms of each existing topic (-1: forever).
func retentions(ctx context.Context, admin *kafka.Admin, counts map[string]int) (map[string]int64, error) {
	req := &kafkago.DescribeConfigsRequest{}
	for t := range counts {
		req.Resources = append(req.Resources, kafkago.DescribeConfigRequestResource{
			ResourceType: kafkago.ResourceTypeTopic, ResourceName: t, ConfigNames: []string{"retention.ms"},
		})
	}
	out := map[string]int64{}
	if len(req.Resources) == 0 {
		return out, nil
	}
	res, err := admin.DescribeConfigs(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("describe topic configs: %w", err)
	}
	for _, r := range res.Resources {
		if r.Error != nil {
			return nil, fmt.Errorf("describe config of %s: %w", r.ResourceName, kafka.ExplainDenied(r.Error, "DESCRIBE_CONFIGS", "topic", r.ResourceName))
		}
		out[r.ResourceName] = -1
		for _, e := range r.ConfigEntries {
			if e.ConfigName == "retention.ms" {
				if v, err := strconv.ParseInt(e.ConfigValue, 10, 64); err == nil {
					out[r.ResourceName] = v
				}
			}
		}
	}
	return out, nil
}

// CreateTopic makes topic with partitions partitions of one replica each,
// and the broker's default settings: a topic of a test or benchmark, not
// of the pipeline (EnsureTopics makes those).
func CreateTopic(ctx context.Context, client kafka.Client, topic string, partitions int) error {
	admin := client.Admin()
	defer admin.Close()
	res, err := admin.CreateTopics(ctx, &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{
		{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1},
	}})
	if err != nil {
		return fmt.Errorf("create %s: %w", topic, err)
	}
	for t, err := range res.Errors {
		if err != nil {
			return fmt.Errorf("create %s: %w", t, kafka.ExplainDenied(err, "CREATE", "topic", t))
		}
	}
	return nil
}
