package aggregator

import (
	"context"
	"fmt"
	"sync"

	"go.uber.org/zap"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/stage"
	"github.com/orderflow/orders/topology"
)

// Aggregator is the pipeline stage that reads the processed topic.
type Aggregator struct {
	client kafka.Client
	top    topology.Topology
	log    *zap.Logger

	// OnTotals, if set, is told the process's totals after every batch.
	OnTotals func(Totals)
	// Values reads the orders of the processed records. Optional, default
	// plain Avro of order.avsc.
	Values schemas.Values

	mu     sync.Mutex
	totals map[int]Totals // per owned partition, as of its last acknowledged batch
}

// New returns an aggregator of the processed topic of top.
func New(client kafka.Client, top topology.Topology, log *zap.Logger) *Aggregator {
	return &Aggregator{client: client, top: top, log: log.Named(topology.StageAggregator), totals: map[int]Totals{}}
}

// Open restores the partition's state from the state topic and resumes
// where that state ends, whatever the group committed.
func (a *Aggregator) Open(ctx context.Context, as stage.Assignment) (stage.Partition, int64, error) {
	rp, end, err := restore(ctx, a.client, a.top.State, as.Partition, true)
	if err != nil {
		return nil, 0, err
	}
	start := rp.cur.Next
	if !rp.any {
		start = kafka.FirstOffset
	}
	a.mu.Lock()
	a.totals[as.Partition] = Totals{}.add(rp.cur)
	a.mu.Unlock()
	a.log.Info("partition state restored", zap.Int("partition", as.Partition), zap.Int64("count", rp.cur.Count),
		zap.Int64("next_offset", rp.cur.Next), zap.Int("known_orders", len(rp.seen)))
	return &partition{
		top: a.top, log: a.log, values: a.Values, index: as.Partition, gen: as.Generation, base: end,
		cur: rp.cur, seen: newOrderSet(rp.seen), totals: a.Totals,
		update: func(d Snapshot) {
			a.mu.Lock()
			a.totals[as.Partition] = a.totals[as.Partition].add(d)
			a.mu.Unlock()
			if a.OnTotals != nil {
				a.OnTotals(a.Totals())
			}
		},
	}, start, nil
}

// Totals is the aggregate over the partitions this process has owned.
func (a *Aggregator) Totals() Totals {
	a.mu.Lock()
	defer a.mu.Unlock()
	var t Totals
	for _, p := range a.totals {
		t = t.add(Snapshot{Count: p.Count, Sum: p.Sum})
	}
	return t
}

// ReadTotals reads the aggregate of every partition from the state topic.
func ReadTotals(ctx context.Context, client kafka.Client, top topology.Topology) (Totals, error) {
	parts, err := client.Partitions(ctx, top.State)
	if err != nil {
		return Totals{}, err
	}
	var t Totals
	for p := 0; p < parts; p++ {
		rp, _, err := restore(ctx, client, top.State, p, false)
		if err != nil {
			return Totals{}, err
		}
		t = t.add(rp.cur)
	}
	return t, nil
}

// restore replays one state partition up to its end offset at the time of
// the call, which it returns.
func restore(ctx context.Context, client kafka.Client, topic string, part int, withIDs bool) (*replay, int64, error) {
	rp := newReplay(withIDs)
	b, err := client.PartitionBounds(ctx, topic, part)
	if err != nil {
		return nil, 0, err
	}
	first, end := b.First, b.End
	if first >= end {
		return rp, end, nil
	}
	err = kafka.ReadRange(ctx, client, topic, part, first, end, func(m envelope.Record) error {
		s, err := parseSnapshot(m.Value)
		if err != nil {
			return fmt.Errorf("%s/%d@%d: %w", topic, part, m.Offset, err)
		}
		rp.apply(m.Offset, s)
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return rp, end, nil
}
