package aggregator

import (
	"context"
	"runtime"
	"strconv"
	"testing"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/envelope"
)

// BenchmarkDedupMemory measures the heap the de-duplication set holds per
// distinct order, counting one million orders through one partition:
// go test -run=NONE -bench=DedupMemory ./services/aggregator/
func BenchmarkDedupMemory(b *testing.B) {
	const orders = 1_000_000
	for b.Loop() {
		p := newFixture(0).p
		batch := make([]envelope.Record, 0, 500)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := range orders {
			v, _ := schemas.Encode(schemas.Order{OrderID: strconv.Itoa(1001 + i), Product: "Item1", Price: 10})
			batch = append(batch, envelope.Record{Offset: int64(i), Value: v})
			if len(batch) == cap(batch) {
				if _, err := p.Handle(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
				p.Acked(batch)
				batch = batch[:0]
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if p.seen.n != orders {
			b.Fatalf("%d orders seen", p.seen.n)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/orders, "heap-bytes/order")
		runtime.KeepAlive(p)
	}
}
