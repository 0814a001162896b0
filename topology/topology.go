// Package topology is the shape of the pipeline as data: topic names, the
// retry ladder (one delayed stage per configured delay) and the consumer
// group of each stage. It does no I/O.
package topology

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Default topic and group names.
const (
	DefaultOrders    = "orders"
	DefaultProcessed = "orders_processed"
	DefaultDLQ       = "orders_dlq"
	DefaultState     = "orders_aggregator_state"
	DefaultReplays   = "orders_dlq_replays"
	DefaultPrefix    = "orders"
)

// DefaultDelays is the seed's three retries, spread out in time.
var DefaultDelays = []time.Duration{2 * time.Second, 5 * time.Second, 10 * time.Second}

// Stage names as used in logs, headers and DLQ records.
const (
	StageMain       = "main"
	StageAggregator = "aggregator"
)

// RetryStageName is the name of retry stage k (1-based): "retry-k".
func RetryStageName(k int) string { return "retry-" + strconv.Itoa(k) }

// Topology describes every topic and group of one pipeline.
type Topology struct {
	// Orders is the input topic. Optional, default "orders".
	Orders string
	// Processed receives every order handled successfully. Optional, default "orders_processed".
	Processed string
	// DLQ receives every order that failed for good. Optional, default "orders_dlq".
	DLQ string
	// State holds the aggregator's durable state. Optional, default "orders_aggregator_state".
	State string
	// Replays records which DLQ records were sent back, so that no replay
	// sends one twice. Optional, default "orders_dlq_replays".
	Replays string
	// Delays is the retry ladder: stage k waits Delays[k-1] after a failure.
	// Its length is the number of retry stages. Optional, default 2s,5s,10s.
	Delays []time.Duration
	// GroupPrefix prefixes every consumer group name. Optional, default "orders".
	GroupPrefix string
	// Partitions of every pipeline topic. Optional, default 6.
	Partitions int
	// Replication factor of every pipeline topic. Optional, default 1.
	Replication int
}

// Default returns the seed's topology: three retry stages of 2s, 5s and 10s.
func Default() Topology {
	t := Topology{}
	t.setDefaults()
	return t
}

// New applies defaults to t and validates it.
func New(t Topology) (Topology, error) {
	t.setDefaults()
	return t, t.validate()
}

func (t *Topology) setDefaults() {
	if t.Orders == "" {
		t.Orders = DefaultOrders
	}
	if t.Processed == "" {
		t.Processed = DefaultProcessed
	}
	if t.DLQ == "" {
		t.DLQ = DefaultDLQ
	}
	if t.State == "" {
		t.State = DefaultState
	}
	if t.Replays == "" {
		t.Replays = DefaultReplays
	}
	if t.Delays == nil {
		t.Delays = append([]time.Duration(nil), DefaultDelays...)
	}
	if t.GroupPrefix == "" {
		t.GroupPrefix = DefaultPrefix
	}
	if t.Partitions == 0 {
		t.Partitions = 6
	}
	if t.Replication == 0 {
		t.Replication = 1
	}
}

func (t Topology) validate() error {
	if len(t.Delays) == 0 {
		return errors.New("RETRY_DELAYS: at least one retry stage is needed")
	}
	for i, d := range t.Delays {
		if d < 0 {
			return fmt.Errorf("RETRY_DELAYS: delay %d (%v) is negative", i+1, d)
		}
	}
	if t.Partitions < 1 {
		return fmt.Errorf("PARTITIONS: %d is not a positive number", t.Partitions)
	}
	if t.Replication < 1 {
		return fmt.Errorf("REPLICATION: %d is not a positive number", t.Replication)
	}
	seen := map[string]bool{}
	for _, name := range t.Topics() {
		if seen[name] {
			return fmt.Errorf("topic %q is used twice", name)
		}
		seen[name] = true
	}
	return nil
}

// Stages is the number of retry stages.
func (t Topology) Stages() int { return len(t.Delays) }

// RetryTopic is the topic retry stage k (1-based) reads.
func (t Topology) RetryTopic(k int) string { return t.Orders + "_retry_" + strconv.Itoa(k) }

// Delay is how long after a failure retry stage k (1-based) handles a record.
func (t Topology) Delay(k int) time.Duration { return t.Delays[k-1] }

// NextOnFailure is where a record that failed in the given stage goes next:
// stage 0 is the main stage, 1..N the retry stages. The bool reports whether
// that is a retry topic (false: the DLQ).
func (t Topology) NextOnFailure(stage int) (topic string, retry bool) {
	if stage < t.Stages() {
		return t.RetryTopic(stage + 1), true
	}
	return t.DLQ, false
}

// StageName names stage 0 (main) and 1..N (retry-k).
func (t Topology) StageName(stage int) string {
	if stage == 0 {
		return StageMain
	}
	return RetryStageName(stage)
}

// Group is the consumer group of a stage name ("main", "retry-2", "aggregator").
func (t Topology) Group(stage string) string { return t.GroupPrefix + "-" + stage }

// InputTopic is the topic the stage of the given number reads.
func (t Topology) InputTopic(stage int) string {
	if stage == 0 {
		return t.Orders
	}
	return t.RetryTopic(stage)
}

// Topics lists every pipeline topic in stage order: orders, the retry
// topics, the DLQ, processed, the aggregator's state and the DLQ replay log.
func (t Topology) Topics() []string {
	return append(t.StageTopics(), t.State, t.Replays)
}

// StageTopics lists the topics orders travel through, in stage order:
// orders, the retry topics, the DLQ and processed.
func (t Topology) StageTopics() []string {
	out := []string{t.Orders}
	for k := 1; k <= t.Stages(); k++ {
		out = append(out, t.RetryTopic(k))
	}
	return append(out, t.DLQ, t.Processed)
}

// RetryStep returns k if topic is the retry topic of stage k, else 0.
func (t Topology) RetryStep(topic string) int {
	for k := 1; k <= t.Stages(); k++ {
		if topic == t.RetryTopic(k) {
			return k
		}
	}
	return 0
}

// GroupOf is the consumer group that reads topic, or "" if no stage does.
func (t Topology) GroupOf(topic string) string {
	switch {
	case topic == t.Orders:
		return t.Group(StageMain)
	case topic == t.Processed:
		return t.Group(StageAggregator)
	case t.RetryStep(topic) > 0:
		return t.Group(RetryStageName(t.RetryStep(topic)))
	}
	return ""
}
