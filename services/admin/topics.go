// Package admin creates the pipeline's topics and checks the live cluster
// against the configured topology.
package admin

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/topology"
)

// Drift kinds.
const (
	DriftMissing    = "missing"
	DriftPartitions = "partitions"
	DriftRetention  = "retention"
	// DriftStateRetention: the DLQ replay log's records expire.
	DriftStateRetention = "state-retention"
	// DriftStateCompaction: the aggregator's state topic is not compacted,
	// so it grows for ever, or its records expire.
	DriftStateCompaction = "state-compaction"
	// DriftStateTimestamp: the state topic's records carry the broker's
	// append time, not the time the aggregator gave them.
	DriftStateTimestamp = "state-timestamp"
)

// Drift is one way a live topic differs from the topology.
type Drift struct {
	Topic  string
	Kind   string
	Detail string
	// Fixable drifts are fixed by EnsureTopics: topics are created and
	// partitions added. Topic configs (retention, cleanup policy, timestamp
	// type) are the operator's to change.
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
	Partitions  int   // 0: missing
	RetentionMS int64 // -1: forever
	// CleanupPolicy is the topic's cleanup.policy: "delete", "compact" or
	// "compact,delete".
	CleanupPolicy string
}

// Compacted reports whether the broker compacts the topic.
func (s TopicState) Compacted() bool { return strings.Contains(s.CleanupPolicy, "compact") }

// Deletes reports whether the broker drops the topic's old records by
// retention: a compacted topic's retention applies only if its policy also
// says delete.
func (s TopicState) Deletes() bool { return strings.Contains(s.CleanupPolicy, "delete") }

// topicConfig holds per-topic settings. The aggregator's state is
// compacted: its records have unique keys and expired ones get tombstones,
// so it stays bounded; the aggregator finds where to restore from by its
// records' timestamps, so they must be the ones it wrote. The DLQ replay log
// must never expire. Every other topic keeps the broker's retention.
func topicConfig(top topology.Topology, topic string) []kafkago.ConfigEntry {
	switch topic {
	case top.State:
		return []kafkago.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact"}, {ConfigName: "message.timestamp.type", ConfigValue: "CreateTime"}}
	case top.Replays:
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
	configs, err := topicConfigs(ctx, admin, counts)
	if err != nil {
		return nil, nil, err
	}
	var states []TopicState
	var drifts []Drift
	ordersParts := max(counts[top.Orders], top.Partitions)
	for _, t := range top.Topics() {
		n, ok := counts[t]
		live := configs[t]
		states = append(states, TopicState{Topic: t, Partitions: n, RetentionMS: live.retentionMS, CleanupPolicy: live.cleanupPolicy})
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
		ms := live.retentionMS
		switch {
		case t == top.State:
			drifts = append(drifts, stateDrifts(t, live)...)
		case t == top.Replays:
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

// stateDrifts checks the aggregator's state topic: compacted, never
// expiring, and stamped with the aggregator's own times.
func stateDrifts(t string, live liveConfig) []Drift {
	var out []Drift
	policy := live.cleanupPolicy
	expiry := ""
	if strings.Contains(policy, "delete") {
		switch {
		case live.retentionMS >= 0:
			expiry = fmt.Sprintf(" with retention.ms %d", live.retentionMS)
		case live.retentionBytes >= 0:
			expiry = fmt.Sprintf(" with retention.bytes %d", live.retentionBytes)
		}
	}
	switch {
	case !strings.Contains(policy, "compact"):
		consequence := "it grows for ever"
		if expiry != "" {
			consequence = "its records expire"
		}
		// The older format keys every record of a partition alike, so
		// compaction keeps only the last one: an aggregator of this version
		// carries the orderIds of the others over in its first batch, and
		// docs/aggregator.md says to set min.compaction.lag.ms to the
		// horizon meanwhile.
		out = append(out, Drift{Topic: t, Kind: DriftStateCompaction, Detail: fmt.Sprintf(
			"cleanup.policy is %s%s: the state topic must be compacted (set cleanup.policy=compact), or %s", policy, expiry, consequence)})
	case expiry != "":
		out = append(out, Drift{Topic: t, Kind: DriftStateCompaction, Detail: fmt.Sprintf(
			"cleanup.policy is %s%s: its records expire (set cleanup.policy=compact)", policy, expiry)})
	}
	if strings.EqualFold(live.timestampType, "LogAppendTime") {
		out = append(out, Drift{Topic: t, Kind: DriftStateTimestamp, Detail: "message.timestamp.type is LogAppendTime: " +
			"the aggregator finds where to restore from by its records' timestamps; set message.timestamp.type=CreateTime"})
	}
	return out
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

// liveConfig is what Check reads of a topic's configuration.
type liveConfig struct {
	retentionMS    int64 // -1: forever
	retentionBytes int64 // -1: unbounded
	cleanupPolicy  string
	timestampType  string
}

// topicConfigs reads the configs Check needs of each existing topic, in one
// DescribeConfigs request. A config the broker leaves out counts as Kafka's
// default, except retention, which counts as forever.
func topicConfigs(ctx context.Context, admin *kafka.Admin, counts map[string]int) (map[string]liveConfig, error) {
	names := []string{"retention.ms", "retention.bytes", "cleanup.policy", "message.timestamp.type"}
	req := &kafkago.DescribeConfigsRequest{}
	for t := range counts {
		req.Resources = append(req.Resources, kafkago.DescribeConfigRequestResource{
			ResourceType: kafkago.ResourceTypeTopic, ResourceName: t, ConfigNames: names,
		})
	}
	out := map[string]liveConfig{}
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
		c := liveConfig{retentionMS: -1, retentionBytes: -1, cleanupPolicy: "delete", timestampType: "CreateTime"}
		for _, e := range r.ConfigEntries {
			switch e.ConfigName {
			case "retention.ms":
				if v, err := strconv.ParseInt(e.ConfigValue, 10, 64); err == nil {
					c.retentionMS = v
				}
			case "retention.bytes":
				if v, err := strconv.ParseInt(e.ConfigValue, 10, 64); err == nil {
					c.retentionBytes = v
				}
			case "cleanup.policy":
				if e.ConfigValue != "" {
					c.cleanupPolicy = strings.ReplaceAll(e.ConfigValue, " ", "")
				}
			case "message.timestamp.type":
				if e.ConfigValue != "" {
					c.timestampType = e.ConfigValue
				}
			}
		}
		out[r.ResourceName] = c
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
