package inspect

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/topology"
)

// Step is one record of an order's path.
type Step struct {
	Time      time.Time `json:"time"`
	Topic     string    `json:"topic"`
	Partition int       `json:"partition"`
	Offset    int64     `json:"offset"`
	// Event says what the record means: produced, retry scheduled,
	// processed, dead-lettered, replayed.
	Event string `json:"event"`
	// Stage is the stage that wrote the record, if a stage did.
	Stage   string    `json:"stage,omitempty"`
	Attempt int       `json:"attempt,omitempty"`
	Error   string    `json:"error,omitempty"`
	DueAt   time.Time `json:"due_at,omitzero"`
}

// Trace finds every record of one order in the topics orders travel
// through, and returns them in time order.
func Trace(ctx context.Context, client kafka.Client, top topology.Topology, orderID string) ([]Step, error) {
	var steps []Step
	next := map[string]map[int]int64{}
	err := kafka.ReadNew(ctx, client, top.StageTopics(), next, func(m envelope.Record) error {
		if string(m.Key) != orderID {
			return nil
		}
		steps = append(steps, step(top, m))
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(steps, func(a, b Step) int { return a.Time.Compare(b.Time) })
	return steps, nil
}

func step(top topology.Topology, m envelope.Record) Step {
	s := Step{Time: m.Time, Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}
	header := func(k string) string { v, _ := m.Header(k); return string(v) }
	switch {
	case m.Topic == top.Orders:
		s.Event = "produced"
		if src := header(envelope.HeaderReplaySource); src != "" {
			s.Event = "replayed from " + src
		}
	case m.Topic == top.Processed:
		s.Event = "processed"
		s.Stage = header(envelope.HeaderProcessedBy)
		fmt.Sscan(header(envelope.HeaderAttempts), &s.Attempt)
	case m.Topic == top.DLQ:
		s.Event = "dead-lettered"
		if d, err := envelope.ParseDeadLetter(m.Value); err == nil {
			s.Event += " (" + d.Reason + ")"
			s.Stage, s.Attempt, s.Error = d.Stage, d.Attempts, d.Error
		}
	default:
		s.Event = "retry scheduled"
		if h, err := envelope.ParseHistory(m); err == nil {
			s.Stage, s.Attempt, s.Error, s.DueAt = h.LastStage, h.Attempts, h.LastError, h.DueAt
		}
	}
	return s
}

// Describe renders a step as one line.
func (s Step) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %-18s %d@%-6d %s", s.Time.UTC().Format("2006-01-02T15:04:05.000Z"), s.Topic, s.Partition, s.Offset, s.Event)
	if s.Stage != "" {
		fmt.Fprintf(&b, " by %s", s.Stage)
	}
	if s.Attempt > 0 {
		fmt.Fprintf(&b, ", attempt %d", s.Attempt)
	}
	if s.Error != "" {
		fmt.Fprintf(&b, ": %s", s.Error)
	}
	if !s.DueAt.IsZero() {
		fmt.Fprintf(&b, " (due %s)", s.DueAt.UTC().Format("15:04:05.000"))
	}
	return b.String()
}
