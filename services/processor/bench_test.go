package processor_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/processor"
	"github.com/orderflow/orders/services/stage"
	"github.com/orderflow/orders/services/testkit"
	"github.com/orderflow/orders/topology"
)

// orderBatch is a batch of the orders topic with one order in four of the
// failing product, as in make bench.
func orderBatch(b *testing.B, n int) []envelope.Record {
	batch := make([]envelope.Record, n)
	products := []string{"Item1", "Item2", "Item3", "Item4"}
	for i := range batch {
		id := strconv.Itoa(100000 + i)
		batch[i] = input(b, schemas.Order{OrderID: id, Product: products[i%4], Price: float32(i%100) + 0.99})
		batch[i].Offset = int64(i)
	}
	return batch
}

// open is the stage on one partition, as the loop runs it: batch after
// batch in the memory of the last one.
func open(b *testing.B, s *processor.Stage) stage.Partition {
	p, _, err := s.Open(context.Background(), stage.Assignment{Topic: "t"})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkHandleMain is the main stage's work per order: decode, the
// rule, and the output with its headers, with one order in four failing
// as in make bench, and with none and all of them failing (row 5).
func BenchmarkHandleMain(b *testing.B) {
	for _, c := range []struct {
		name string
		fail []string
	}{
		{"quarter-failing", []string{"Item3"}},
		{"none-failing", nil},
		{"all-failing", []string{"Item1", "Item2", "Item3", "Item4"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			batch := orderBatch(b, 500)
			s := &processor.Stage{Topology: topology.Default(), Rule: processor.Rule{FailProducts: c.fail}, Log: testkit.SampledLogger()}
			p := open(b, s)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += len(batch) {
				if _, err := p.Handle(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHandleRetry is a retry stage's work per due record: the due
// time the loop asks for, then decode, the rule and the output; half the
// orders fail again.
func BenchmarkHandleRetry(b *testing.B) {
	main := &processor.Stage{Topology: topology.Default(), Rule: processor.Rule{FailProducts: []string{"Item1", "Item3"}}, Log: zap.NewNop()}
	outs, err := main.Handle(context.Background(), orderBatch(b, 500))
	if err != nil {
		b.Fatal(err)
	}
	var batch []envelope.Record
	for i, o := range outs {
		if o.Topic == topology.Default().RetryTopic(1) {
			batch = append(batch, consumed(o, int64(i)))
		}
	}
	s := &processor.Stage{Step: 1, Topology: topology.Default(), Rule: processor.Rule{FailProducts: []string{"Item3"}}, Log: testkit.SampledLogger()}
	p := open(b, s)
	delayer := p.(stage.Delayer)
	now := time.Now().Add(time.Hour)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(batch) {
		for _, r := range batch {
			if delayer.DueAt(r).After(now) {
				b.Fatal("not due")
			}
		}
		if _, err := p.Handle(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
}
