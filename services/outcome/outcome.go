// Package outcome reads the final topics (processed and DLQ) back and
// tallies what happened to each order: the demo's summary and the tests'
// checks both come from here, never from a stage's memory.
package outcome

import (
	"context"
	"fmt"
	"time"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/aggregator"
	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/topology"
)

// Processed is one order as it appears in the processed topic.
type Processed struct {
	Order      schemas.Order
	By         string // the stage that processed it
	Deliveries int    // how many records of it the topic holds
}

// Dead is one order as it appears in the DLQ.
type Dead struct {
	Letter     envelope.DeadLetter
	Deliveries int
}

// Tally accumulates the final topics; Poll reads what is new.
type Tally struct {
	Processed map[string]*Processed // by orderId
	Dead      map[string]*Dead      // by record key
	// Values reads the processed orders. Optional, default plain Avro.
	Values schemas.Values
	next   map[string]map[int]int64
}

// NewTally returns an empty tally.
func NewTally() *Tally {
	return &Tally{Processed: map[string]*Processed{}, Dead: map[string]*Dead{}, next: map[string]map[int]int64{}}
}

// Final is the number of distinct orders with an outcome.
func (t *Tally) Final() int {
	n := len(t.Processed)
	for k := range t.Dead {
		if _, ok := t.Processed[k]; !ok {
			n++
		}
	}
	return n
}

// Duplicates is the number of extra records of processed orders.
func (t *Tally) Duplicates() int {
	n := 0
	for _, p := range t.Processed {
		n += p.Deliveries - 1
	}
	return n
}

// Poll reads the records appended to the processed and DLQ topics since
// the last call, up to their end offsets at the time of the call.
func (t *Tally) Poll(ctx context.Context, client kafka.Client, top topology.Topology) error {
	return kafka.ReadNew(ctx, client, []string{top.Processed, top.DLQ}, t.next, func(m envelope.Record) error {
		switch m.Topic {
		case top.Processed:
			o, err := schemas.OrPlain(t.Values).Decode(ctx, m.Value)
			if err != nil {
				return fmt.Errorf("%s/%d@%d: %w", m.Topic, m.Partition, m.Offset, err)
			}
			p := t.Processed[o.OrderID]
			if p == nil {
				p = &Processed{Order: o}
				t.Processed[o.OrderID] = p
			}
			p.Deliveries++
			for _, h := range m.Headers {
				if h.Key == envelope.HeaderProcessedBy {
					p.By = string(h.Value)
				}
			}
		case top.DLQ:
			d, err := envelope.ParseDeadLetter(m.Value)
			if err != nil {
				return fmt.Errorf("%s/%d@%d: %w", m.Topic, m.Partition, m.Offset, err)
			}
			e := t.Dead[string(m.Key)]
			if e == nil {
				e = &Dead{}
				t.Dead[string(m.Key)] = e
			}
			e.Letter = d
			e.Deliveries++
		}
		return nil
	})
}

// Summary is what happened to a set of orders, as the topics tell it.
type Summary struct {
	Processed    int // distinct orders in the processed topic
	DeadLettered int // distinct orders in the DLQ
	Recovered    int // processed by a retry stage after failing in main
	Duplicates   int // extra records of processed orders
	Average      float64
	AverageCount int64
}

// Summary tallies t; totals is the aggregator's view of the average.
func (t *Tally) Summary(totals aggregator.Totals) Summary {
	s := Summary{Processed: len(t.Processed), DeadLettered: len(t.Dead), Duplicates: t.Duplicates(),
		Average: totals.Average, AverageCount: totals.Count}
	for _, p := range t.Processed {
		if p.By != "" && p.By != topology.StageMain {
			s.Recovered++
		}
	}
	return s
}

// Wait polls the final topics every interval until want distinct orders
// have an outcome and the aggregator's state counts every processed order,
// or ctx ends. It reads the processed orders with values (nil: plain Avro).
func Wait(ctx context.Context, client kafka.Client, top topology.Topology, values schemas.Values, want int, every time.Duration) (*Tally, aggregator.Totals, error) {
	t := NewTally()
	t.Values = values
	for {
		if err := t.Poll(ctx, client, top); err != nil && ctx.Err() == nil {
			return t, aggregator.Totals{}, err
		}
		if t.Final() >= want {
			tot, err := aggregator.ReadTotals(ctx, client, top)
			if err == nil && tot.Count >= int64(len(t.Processed)) {
				return t, tot, nil
			}
		}
		timer := time.NewTimer(every)
		select {
		case <-ctx.Done():
			timer.Stop()
			return t, aggregator.Totals{}, ctx.Err()
		case <-timer.C:
		}
	}
}
