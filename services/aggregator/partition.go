package aggregator

import (
	"context"
	"encoding/json"
	"time"

	"go.uber.org/zap"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/logs"
	"github.com/orderflow/orders/topology"
)

// partition aggregates one partition of the processed topic.
type partition struct {
	top         topology.Topology
	log         *zap.Logger
	values      schemas.Values // nil: plain Avro
	totals      func() Totals  // the running totals over every partition of this process
	update      func(delta Snapshot)
	gen         int32
	base        int64
	index       int
	cur         Snapshot
	seen        *orderSet
	h           horizon
	horizon     time.Duration
	now         func() time.Time
	maxBytes    int                // the most bytes of a state record's value
	oldest      int64              // no orderId in seen is in an older bucket
	newest      int64              // nor in a newer one
	curKey      string             // the key of the state record that holds cur
	inFlightKey string             // and of the one that holds inFlight
	stateKeys   map[int64][]string // keys of the state records not yet tombstoned, by bucket
	carries     []carry            // the older format's orderIds, to write in this one
	inFlight    Snapshot           // the state written last for the batch being acknowledged
	ids         []string           // the orderIds the batch counted
	prices      []float32          // their prices
	orders      []decoded          // the batch's orders
	keys        []orderKey
}

// decoded is an order of the batch being handled, at its offset.
type decoded struct {
	schemas.Order
	offset int64
}

// Handle counts each order not counted before and returns the state record
// of the batch, or several if its orderIds do not fit in one record the
// broker takes; records that are not orders go to the DLQ. Before them
// come tombstones for the state records the horizon has passed, and, in a
// partition restored from the older format, the orderIds it carries over.
func (p *partition) Handle(ctx context.Context, batch []envelope.Record) ([]envelope.Output, error) {
	p.values = schemas.OrPlain(p.values)
	now := p.now().UnixMilli()
	wm := p.cur.Watermark
	for _, r := range batch {
		if !r.Time.IsZero() {
			wm = max(wm, min(r.Time.UnixMilli(), now))
		}
	}
	outs := p.expire(nil, wm)
	from := p.restoreFrom(wm)
	outs = p.carryOver(outs, wm, from)
	p.ids, p.prices = p.ids[:0], p.prices[:0]
	bucket := p.h.bucket(wm)
	next := p.cur
	next.Version, next.Watermark, next.Horizon, next.From, next.IDs = stateVersion, wm, p.horizon.Milliseconds(), from, nil
	size := 0
	// state ends the current state record before offset end.
	state := func(end int64) {
		next.Next, next.Generation, next.Base = end, p.gen, p.base
		outs = append(outs, p.stateRecord(next, -1))
		next.IDs, size = nil, 0
	}
	p.orders, p.keys = p.orders[:0], p.keys[:0]
	for _, r := range batch {
		o, err := p.values.Decode(ctx, r.Value)
		if err != nil && !schemas.IsValueError(err) {
			return nil, err // the order cannot be read for now: nothing counted
		}
		reason := envelope.DecodeReason(err)
		if err == nil {
			err, reason = schemas.Validate(o), envelope.ReasonInvalid
		}
		if err != nil {
			h := envelope.Begin(r).Failed(topology.StageAggregator, r.Time, err.Error())
			p.log.Warn("record dead-lettered", zap.String("stage", topology.StageAggregator), zap.Int64("offset", r.Offset), zap.Error(err))
			outs = append(outs, envelope.Output{
				Topic: p.top.DLQ, Partition: envelope.AnyPartition, Key: r.Key,
				Value: envelope.NewDeadLetter(r, h, reason).Marshal(), Headers: h.Headers(),
			})
			continue
		}
		p.orders, p.keys = append(p.orders, decoded{o, r.Offset}), append(p.keys, keyOf(o.OrderID).in(bucket))
	}
	p.seen.prefetch(p.keys)
	if len(p.orders) > 0 {
		p.oldest, p.newest = min(p.oldest, bucket), max(p.newest, bucket)
	}
	room := p.maxBytes - len(next.marshal()) - len(`,"ids":[]`) - 40 // 40: the digits Next may gain
	for i, o := range p.orders {
		if !p.seen.add(p.keys[i]) {
			p.log.Debug("duplicate order ignored", zap.String("orderId", o.OrderID), zap.Int64("offset", o.offset))
			continue
		}
		n := idBytes(o.OrderID)
		if size+n > room && len(next.IDs) > 0 {
			state(o.offset)
		}
		size += n
		next.Count++
		next.Sum += float64(o.Price)
		next.IDs = append(next.IDs, o.OrderID)
		p.ids, p.prices = append(p.ids, o.OrderID), append(p.prices, o.Price)
	}
	clear(p.orders) // the counted ones stay in p.ids until Acked
	state(batch[len(batch)-1].Offset + 1)
	p.inFlight, p.inFlightKey = next, string(outs[len(outs)-1].Key)
	return outs, nil
}

// stateRecord is the state record of s, stamped with its watermark so that
// a restore finds it by time; carried numbers the records that carry
// orderIds over from the older format, -1 for others. Its key is
// remembered, to write a tombstone for once the horizon has passed it.
func (p *partition) stateRecord(s Snapshot, carried int) envelope.Output {
	key := stateKey(p.index, s, carried)
	b := p.h.bucket(s.Watermark)
	p.stateKeys[b] = append(p.stateKeys[b], string(key))
	return envelope.Output{
		Topic: p.top.State, Partition: p.index, Key: key, Value: s.marshal(), Time: time.UnixMilli(s.Watermark),
	}
}

// idBytes is what orderID takes in a state record's JSON list of ids.
func idBytes(orderID string) int {
	if plainJSON(orderID) {
		return len(orderID) + len(`"",`)
	}
	q, _ := json.Marshal(orderID) // strings always marshal
	return len(q) + 1
}

// expire forgets the orderIds of the buckets the watermark wm has left
// behind, and appends to outs a tombstone for each state record of those
// buckets, so that compaction removes it.
func (p *partition) expire(outs []envelope.Output, wm int64) []envelope.Output {
	if !p.h.live(p.oldest, wm) {
		oldest := p.h.bucket(wm)
		p.seen.keep(func(k orderKey) bool {
			b := k.bucket(p.newest)
			if p.h.live(b, wm) {
				oldest = min(oldest, b)
				return true
			}
			return false
		})
		p.oldest = oldest
	}
	at := time.UnixMilli(wm)
	for b, keys := range p.stateKeys {
		if p.h.live(b, wm) {
			continue
		}
		var kept []string
		for _, k := range keys {
			if k == p.curKey {
				// It holds the totals until this batch's state record is
				// acknowledged: a tombstone now could leave none.
				kept = append(kept, k)
				continue
			}
			outs = append(outs, envelope.Output{Topic: p.top.State, Partition: p.index, Key: []byte(k), Time: at})
		}
		if kept != nil {
			p.stateKeys[b] = kept
		} else {
			delete(p.stateKeys, b)
		}
	}
	return outs
}

// restoreFrom is where a restore is to read from once the tombstones of
// this batch are written: the start of the oldest bucket that still holds
// a state record without one, the older format's included.
func (p *partition) restoreFrom(wm int64) int64 {
	oldest := p.h.bucket(wm)
	for b := range p.stateKeys {
		oldest = min(oldest, b)
	}
	for _, c := range p.carries {
		if p.h.live(c.bucket, wm) {
			oldest = min(oldest, c.bucket)
		}
	}
	return oldest * p.h.width
}

// carryOver appends state records that write the orderIds the partition
// restored from the older format in this one, in the buckets they were
// recorded in, once: the older format's records share one key, so that
// compaction keeps only the last of them.
func (p *partition) carryOver(outs []envelope.Output, wm, from int64) []envelope.Output {
	s := p.cur
	s.Version, s.Horizon, s.From, s.Generation, s.Base = stateVersion, p.horizon.Milliseconds(), from, p.gen, p.base
	n := 0
	for _, c := range p.carries {
		if !p.h.live(c.bucket, wm) {
			continue
		}
		s.Watermark = min(c.bucket*p.h.width, wm)
		room := p.maxBytes - len(s.marshal()) - len(`,"ids":[]`)
		size := 0
		s.IDs = nil
		for _, id := range c.ids {
			b := idBytes(id)
			if size+b > room && len(s.IDs) > 0 {
				outs = append(outs, p.stateRecord(s, n))
				n++
				s.IDs, size = nil, 0
			}
			size += b
			s.IDs = append(s.IDs, id)
		}
		if len(s.IDs) > 0 {
			outs = append(outs, p.stateRecord(s, n))
			n++
		}
	}
	if n > 0 {
		p.log.Info("orderIds of the older state format carried over", zap.Int("partition", p.index), zap.Int("records", n))
	}
	p.carries = nil
	return outs
}

// ResumeTopic is the state topic: its records say where the partition
// resumes (Aggregator.Open reads it from them), so the loop writes them
// after the batch's DLQ records, and the group's offset need not be
// committed after every batch.
func (p *partition) ResumeTopic() string { return p.top.State }

// Acked makes the batch's state current and logs the running average, as
// the original consumer did after every processed order.
func (p *partition) Acked([]envelope.Record) {
	delta := Snapshot{Count: p.inFlight.Count - p.cur.Count, Sum: p.inFlight.Sum - p.cur.Sum}
	ids := p.ids
	p.cur, p.curKey = p.inFlight, p.inFlightKey
	// The log shows the average growing order by order, over the
	// partitions this process owns; orders stats gives the global one.
	t := p.totals()
	now := time.Now()
	lines := logs.Batch(p.log, now, zap.InfoLevel, "running average updated", len(ids)) // mostly sampled out at high rates
	for i, id := range ids {
		t = t.add(Snapshot{Count: 1, Sum: float64(p.prices[i])})
		if ce := lines.Next(); ce != nil {
			ce.Write(zap.String("stage", topology.StageAggregator),
				zap.String("orderId", id), zap.Float32("price", p.prices[i]),
				zap.Int64("count", t.Count), zap.Float64("average", t.Average))
		}
	}
	p.update(delta)
}
