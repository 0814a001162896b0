// Package admin creates and checks the pipeline's topics.
package admin

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/segmentio/kafka-go"

	"github.com/orderflow/orders/services/pipeline"
	"github.com/orderflow/orders/topology"
)

// TopicResult is what EnsureTopics found or did for one topic.
type TopicResult struct {
	Topic      string
	Partitions int // as found or created
	Created    bool
	// Problem is why the topic does not fit the topology, if it does not.
	Problem string
}

// ErrDrift means an existing topic does not fit the topology.
var ErrDrift = errors.New("topics do not match the configured topology")

// topicConfig holds per-topic settings: the aggregator's state must never
// expire, every other topic keeps the broker's retention.
func topicConfig(top topology.Topology, topic string) []kafka.ConfigEntry {
	if topic == top.State {
		return []kafka.ConfigEntry{{ConfigName: "retention.ms", ConfigValue: "-1"}, {ConfigName: "retention.bytes", ConfigValue: "-1"}}
	}
	return nil
}

// EnsureTopics creates every topic of top that does not exist. It is
// idempotent. An existing topic with fewer partitions than configured is
// reported in its result and makes the error wrap ErrDrift.
func EnsureTopics(ctx context.Context, client pipeline.Client, top topology.Topology) ([]TopicResult, error) {
	if err := client.Ping(ctx); err != nil {
		return nil, err
	}
	admin := client.Admin()
	defer admin.Close()
	existing, err := partitionCounts(ctx, admin, top.Topics())
	if err != nil {
		return nil, err
	}
	var req kafka.CreateTopicsRequest
	for _, t := range top.Topics() {
		if _, ok := existing[t]; !ok {
			req.Topics = append(req.Topics, kafka.TopicConfig{
				Topic: t, NumPartitions: top.Partitions, ReplicationFactor: top.Replication,
				ConfigEntries: topicConfig(top, t),
			})
		}
	}
	created := map[string]bool{}
	if len(req.Topics) > 0 {
		res, err := admin.CreateTopics(ctx, &req)
		if err != nil {
			return nil, fmt.Errorf("create topics: %w", err)
		}
		for t, terr := range res.Errors {
			switch {
			case terr == nil:
				created[t] = true
			case errors.Is(terr, kafka.TopicAlreadyExists):
				// Created concurrently by another run: checked below.
			default:
				return nil, fmt.Errorf("create topic %s: %w", t, pipeline.Denied(terr, "CREATE", "topic", t))
			}
		}
		if existing, err = partitionCounts(ctx, admin, top.Topics()); err != nil {
			return nil, err
		}
	}
	var out []TopicResult
	drift := false
	for _, t := range top.Topics() {
		r := TopicResult{Topic: t, Partitions: existing[t], Created: created[t]}
		switch n := existing[t]; {
		case n == 0 && !created[t]:
			r.Problem = "missing after create"
		case n < top.Partitions:
			r.Problem = "has " + strconv.Itoa(n) + " partitions, fewer than the " + strconv.Itoa(top.Partitions) + " configured (PARTITIONS)"
		}
		if r.Problem != "" {
			drift = true
		}
		out = append(out, r)
	}
	if drift {
		return out, ErrDrift
	}
	return out, nil
}

// partitionCounts returns the partition count of each of topics that exists.
func partitionCounts(ctx context.Context, admin *pipeline.Admin, topics []string) (map[string]int, error) {
	meta, err := admin.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
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
