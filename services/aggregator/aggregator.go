package aggregator

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/orderflow/orders/services/pipeline"
	"github.com/orderflow/orders/topology"
)

// Aggregator is the pipeline stage that reads the processed topic.
type Aggregator struct {
	client pipeline.Client
	top    topology.Topology
	log    *zap.Logger

	// OnTotals, if set, is told the process's totals after every batch.
	OnTotals func(Totals)

	mu     sync.Mutex
	totals map[int]Totals // per owned partition, as of its last acknowledged batch
}

// New returns an aggregator of the processed topic of top.
func New(client pipeline.Client, top topology.Topology, log *zap.Logger) *Aggregator {
	return &Aggregator{client: client, top: top, log: log.Named(topology.StageAggregator), totals: map[int]Totals{}}
}

// Open restores the partition's state from the state topic and resumes
// where that state ends, whatever the group committed.
func (a *Aggregator) Open(ctx context.Context, as pipeline.Assignment) (pipeline.Partition, int64, error) {
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
		top: a.top, log: a.log, index: as.Partition, gen: as.Generation, base: end,
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
func ReadTotals(ctx context.Context, client pipeline.Client, top topology.Topology) (Totals, error) {
	parts, err := partitionCount(ctx, client, top.State)
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

func partitionCount(ctx context.Context, client pipeline.Client, topic string) (int, error) {
	admin := client.Admin()
	defer admin.Close()
	meta, err := admin.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	if len(meta.Topics) != 1 || meta.Topics[0].Error != nil {
		var terr error = errors.New("not found")
		if len(meta.Topics) == 1 {
			terr = meta.Topics[0].Error
		}
		if errors.Is(terr, kafka.TopicAuthorizationFailed) {
			return 0, fmt.Errorf("topic %s: %w", topic, pipeline.Denied(terr, "DESCRIBE", "topic", topic))
		}
		return 0, fmt.Errorf("topic %s: %w (run orders topics)", topic, terr)
	}
	return len(meta.Topics[0].Partitions), nil
}

// restore replays one state partition up to its end offset at the time of
// the call, which it returns.
func restore(ctx context.Context, client pipeline.Client, topic string, part int, withIDs bool) (*replay, int64, error) {
	rp := newReplay(withIDs)
	admin := client.Admin()
	defer admin.Close()
	res, err := admin.ListOffsets(ctx, &kafka.ListOffsetsRequest{
		Topics: map[string][]kafka.OffsetRequest{topic: {kafka.FirstOffsetOf(part), kafka.LastOffsetOf(part)}},
	})
	if err != nil {
		return nil, 0, fmt.Errorf("list offsets of %s/%d: %w", topic, part, pipeline.Denied(err, "DESCRIBE", "topic", topic))
	}
	var first, end int64 = -1, -1
	for _, po := range res.Topics[topic] {
		if po.Partition != part {
			continue
		}
		if po.Error != nil {
			return nil, 0, fmt.Errorf("list offsets of %s/%d: %w", topic, part, pipeline.Denied(po.Error, "DESCRIBE", "topic", topic))
		}
		first, end = po.FirstOffset, po.LastOffset
	}
	if first < 0 || end < 0 {
		return nil, 0, fmt.Errorf("list offsets of %s/%d: partition not found", topic, part)
	}
	if first >= end {
		return rp, end, nil
	}
	err = pipeline.ReadRange(ctx, client, topic, part, first, end, func(m kafka.Message) error {
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
