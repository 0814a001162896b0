package inspect

import (
	"context"
	"time"

	"github.com/orderflow/orders/services/admin"
	"github.com/orderflow/orders/services/aggregator"
	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/topology"
)

// TopicState is one row of the overview.
type TopicState struct {
	Topic      string `json:"topic"`
	Partitions int    `json:"partitions"`
	// Records is end minus start offsets over the partitions.
	Records int64 `json:"records"`
	// Group is the stage's consumer group; "" for the DLQ.
	Group string `json:"group"`
	// Lag is how many records the group has not committed.
	Lag int64 `json:"lag"`
	// OldestAgeS is the age in seconds of the oldest record the group has
	// not committed; 0 when it has none.
	OldestAgeS float64 `json:"oldest_age_s"`
	// Waiting counts, for a retry topic, the uncommitted records whose due
	// time has not come.
	Waiting *int64 `json:"waiting,omitempty"`
}

// Overview is where every stage stands, and the running average.
type Overview struct {
	Topics  []TopicState      `json:"topics"`
	Average aggregator.Totals `json:"average"`
}

// Inspect reads the overview of every topic orders travel through, in
// stage order.
func Inspect(ctx context.Context, client kafka.Client, top topology.Topology, now time.Time) (Overview, error) {
	var ov Overview
	for _, topic := range top.StageTopics() {
		st := TopicState{Topic: topic, Group: top.GroupOf(topic)}
		lag, parts, err := admin.GroupLag(ctx, client, st.Group, topic)
		if err != nil {
			return ov, err
		}
		st.Partitions = len(parts)
		for _, p := range parts {
			st.Records += p.End - p.Start
		}
		if st.Group != "" {
			st.Lag = lag
		}
		step := top.RetryStep(topic)
		var waiting int64
		for _, p := range parts {
			if p.Lag() == 0 || st.Group == "" {
				continue
			}
			from := max(p.Committed, p.Start)
			to := from + 1
			if step > 0 {
				to = p.End // read every waiting record to count those not due
			}
			first := true
			err := kafka.ReadRange(ctx, client, topic, p.Partition, from, to, func(m envelope.Record) error {
				if first && st.Group != "" {
					st.OldestAgeS = max(st.OldestAgeS, now.Sub(m.Time).Seconds())
					first = false
				}
				if step > 0 {
					if h, err := envelope.ParseHistory(m); err == nil && h.DueAt.After(now) {
						waiting++
					}
				}
				return nil
			})
			if err != nil {
				return ov, err
			}
		}
		if step > 0 {
			st.Waiting = &waiting
		}
		ov.Topics = append(ov.Topics, st)
	}
	t, err := aggregator.ReadTotals(ctx, client, top)
	if err != nil {
		return ov, err
	}
	ov.Average = t
	return ov, nil
}
