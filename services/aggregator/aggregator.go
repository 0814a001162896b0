package aggregator

import (
	"context"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/orderflow/orders/schemas"
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
	// Horizon is how long an orderId is remembered, measured against the
	// processed records' timestamps: a copy of an order that arrives
	// later than that after it is counted again. Optional, default
	// DefaultHorizon.
	Horizon time.Duration
	// now is the clock that caps watermarks. Optional, default time.Now.
	now func() time.Time

	limitOnce sync.Once
	limit     int // the most bytes of a state record's value

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
	h := a.horizon()
	began := time.Now()
	rp, end, err := restore(ctx, a.client, a.top.State, as.Partition, h, true)
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
	seen, keys, carries := rp.restored()
	cur := rp.cur
	cur.Watermark = rp.wm
	carried := 0
	for _, c := range carries {
		carried += len(c.ids)
	}
	a.log.Info("partition state restored", zap.Int("partition", as.Partition), zap.Int64("count", cur.Count),
		zap.Int64("next_offset", cur.Next), zap.Int("known_orders", seen.n), zap.Int("carried_over", carried),
		zap.Int64("read_from", rp.from), zap.Int("records_read", rp.records), zap.Int64("state_end", end), zap.Duration("took", time.Since(began)))
	return &partition{
		top: a.top, log: a.log, values: a.Values, index: as.Partition, gen: as.Generation, base: end,
		h: h, horizon: a.horizonOrDefault(), now: a.clock(), maxBytes: a.maxValueBytes(ctx),
		cur: cur, seen: seen, stateKeys: keys, carries: carries, oldest: h.bucket(cur.Watermark) - buckets, newest: h.bucket(cur.Watermark), curKey: rp.curKey, totals: a.Totals,
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

func (a *Aggregator) horizonOrDefault() time.Duration {
	if a.Horizon > 0 {
		return a.Horizon
	}
	return DefaultHorizon
}

func (a *Aggregator) horizon() horizon { return newHorizon(a.horizonOrDefault()) }

func (a *Aggregator) clock() func() time.Time {
	if a.now != nil {
		return a.now
	}
	return time.Now
}

// maxValueBytes is the most bytes a state record's value may take: what
// the state topic's max.message.bytes leaves of a record batch, and at most
// what the broker's default leaves. A broker that does not say is taken to
// have the default.
func (a *Aggregator) maxValueBytes(ctx context.Context) int {
	a.limitOnce.Do(func() {
		limit := defaultMaxMessageBytes
		cfg, err := a.client.TopicConfigs(ctx, a.top.State, "max.message.bytes")
		if err == nil {
			if n, perr := strconv.Atoi(cfg["max.message.bytes"]); perr == nil && n > 0 {
				limit = min(n, limit)
			}
		} else {
			a.log.Warn("the state topic's max.message.bytes is unknown; state records stay below the broker's default", zap.Error(err))
		}
		a.limit = max(limit-stateRecordOverhead, minStateValueBytes)
	})
	return a.limit
}

const (
	// defaultMaxMessageBytes is Kafka's default max.message.bytes.
	defaultMaxMessageBytes = 1048588
	// stateRecordOverhead bounds what a record batch of one state record
	// holds besides its value: the batch and record headers and the key.
	stateRecordOverhead = 512
	// minStateValueBytes is what a state record may always take: an
	// orderId of schemas.MaxStringSize bytes, escaped six bytes for one,
	// with the totals.
	minStateValueBytes = 6*schemas.MaxStringSize + 512
)

// ReadTotals reads the aggregate of every partition from the state topic.
func ReadTotals(ctx context.Context, client kafka.Client, top topology.Topology) (Totals, error) {
	parts, err := client.Partitions(ctx, top.State)
	if err != nil {
		return Totals{}, err
	}
	var t Totals
	for p := 0; p < parts; p++ {
		rp, _, err := restore(ctx, client, top.State, p, horizon{}, false)
		if err != nil {
			return Totals{}, err
		}
		t = t.add(rp.cur)
	}
	return t, nil
}
