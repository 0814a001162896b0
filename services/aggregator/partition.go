package aggregator

import (
	"context"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/pipeline"
	"github.com/orderflow/orders/topology"
)

// partition aggregates one partition of the processed topic.
type partition struct {
	top      topology.Topology
	log      *zap.Logger
	totals   func() Totals // the running totals over every partition of this process
	update   func(delta Snapshot)
	gen      int32
	base     int64
	index    int
	cur      Snapshot
	seen     *orderSet
	inFlight Snapshot  // the state written for the batch being acknowledged
	prices   []float32 // the prices of inFlight.IDs
}

// Handle counts each order not counted before and returns the state record
// of the batch; records that are not orders go to the DLQ.
func (p *partition) Handle(_ context.Context, batch []envelope.Record) ([]envelope.Output, error) {
	var outs []envelope.Output
	p.prices = p.prices[:0]
	next := p.cur
	next.IDs = nil
	for _, r := range batch {
		o, err := schemas.Decode(r.Value)
		reason := envelope.ReasonUndecodable
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
		if !p.seen.add(keyOf(o.OrderID)) {
			p.log.Debug("duplicate order ignored", zap.String("orderId", o.OrderID), zap.Int64("offset", r.Offset))
			continue
		}
		next.Count++
		next.Sum += float64(o.Price)
		next.IDs = append(next.IDs, o.OrderID)
		p.prices = append(p.prices, o.Price)
	}
	next.Next = batch[len(batch)-1].Offset + 1
	next.Generation = p.gen
	next.Base = p.base
	p.inFlight = next
	return append(outs, envelope.Output{
		Topic: p.top.State, Partition: p.index,
		Key: []byte(strconv.Itoa(p.index)), Value: next.marshal(),
	}), nil
}

// ResumesFromOutputs tells the loop that the state records say where the
// partition resumes (Aggregator.Open reads it from them), so the group's
// offset need not be committed after every batch.
func (p *partition) ResumesFromOutputs() {}

// Acked makes the batch's state current and logs the running average, as
// the original consumer did after every processed order.
func (p *partition) Acked([]envelope.Record) {
	delta := Snapshot{Count: p.inFlight.Count - p.cur.Count, Sum: p.inFlight.Sum - p.cur.Sum}
	ids := p.inFlight.IDs
	p.cur = p.inFlight
	p.cur.IDs = nil
	// The log shows the average growing order by order, over the
	// partitions this process owns; orders stats gives the global one.
	t := p.totals()
	log := pipeline.LoggerAt(p.log, time.Now())
	for i, id := range ids {
		t = t.add(Snapshot{Count: 1, Sum: float64(p.prices[i])})
		if ce := log.Check(zap.InfoLevel, "running average updated"); ce != nil { // mostly sampled out at high rates
			ce.Write(zap.String("stage", topology.StageAggregator),
				zap.String("orderId", id), zap.Float32("price", p.prices[i]),
				zap.Int64("count", t.Count), zap.Float64("average", t.Average))
		}
	}
	p.update(delta)
}
