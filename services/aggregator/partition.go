package aggregator

import (
	"context"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/logs"
	"github.com/orderflow/orders/topology"
)

// partition aggregates one partition of the processed topic.
type partition struct {
	top      topology.Topology
	log      *zap.Logger
	values   schemas.Values // nil: plain Avro
	totals   func() Totals  // the running totals over every partition of this process
	update   func(delta Snapshot)
	gen      int32
	base     int64
	index    int
	cur      Snapshot
	seen     *orderSet
	inFlight Snapshot  // the state written last for the batch being acknowledged
	ids      []string  // the orderIds the batch counted
	prices   []float32 // their prices
	orders   []decoded // the batch's orders
	keys     []orderKey
}

// decoded is an order of the batch being handled, at its offset.
type decoded struct {
	schemas.Order
	offset int64
}

// maxStateIDBytes bounds the orderIds of one state record. A broker refuses
// a record larger than its max.message.bytes (1 MiB by default) for good,
// and orderIds may be up to 4,096 bytes long, so a batch whose orderIds pass
// this bound is recorded in several state records, each the whole state up
// to where it ends. JSON escapes a byte in at most six, so a record stays
// below 800 KB.
const maxStateIDBytes = 128 << 10

// Handle counts each order not counted before and returns the state record
// of the batch, or several if its orderIds are many and long; records that
// are not orders go to the DLQ.
func (p *partition) Handle(ctx context.Context, batch []envelope.Record) ([]envelope.Output, error) {
	p.values = schemas.OrPlain(p.values)
	var outs []envelope.Output
	p.ids, p.prices = p.ids[:0], p.prices[:0]
	next := p.cur
	next.IDs = nil
	idBytes := 0
	// state ends the current state record before offset end.
	state := func(end int64) {
		next.Next, next.Generation, next.Base = end, p.gen, p.base
		outs = append(outs, envelope.Output{
			Topic: p.top.State, Partition: p.index,
			Key: []byte(strconv.Itoa(p.index)), Value: next.marshal(),
		})
		next.IDs, idBytes = nil, 0
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
		p.orders, p.keys = append(p.orders, decoded{o, r.Offset}), append(p.keys, keyOf(o.OrderID))
	}
	p.seen.prefetch(p.keys)
	for i, o := range p.orders {
		if !p.seen.add(p.keys[i]) {
			p.log.Debug("duplicate order ignored", zap.String("orderId", o.OrderID), zap.Int64("offset", o.offset))
			continue
		}
		if idBytes += len(o.OrderID) + len(`"",`); idBytes > maxStateIDBytes && len(next.IDs) > 0 {
			state(o.offset)
			idBytes = len(o.OrderID) + len(`"",`)
		}
		next.Count++
		next.Sum += float64(o.Price)
		next.IDs = append(next.IDs, o.OrderID)
		p.ids, p.prices = append(p.ids, o.OrderID), append(p.prices, o.Price)
	}
	clear(p.orders) // the counted ones stay in p.ids until Acked
	state(batch[len(batch)-1].Offset + 1)
	p.inFlight = next
	return outs, nil
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
	p.cur = p.inFlight
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
