package aggregator

import (
	"context"
	"strconv"
	"testing"

	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/testkit"
)

// BenchmarkHandle is the aggregator's work per distinct order: decode,
// de-duplicate, the state record of the batch, and the acknowledgement's
// running average, logged as the stages log at benchmark rates.
func BenchmarkHandle(b *testing.B) {
	f := newFixture(4)
	f.p.log = testkit.SampledLogger()
	const size = 500
	batches := make([][]envelope.Record, (b.N+size-1)/size)
	for i := range batches {
		batches[i] = make([]envelope.Record, size)
		for j := range batches[i] {
			n := int64(i*size + j)
			batches[i][j] = processed(b, n, strconv.FormatInt(100000+n, 10), float32(n%100)+0.99)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for _, batch := range batches {
		if _, err := f.p.Handle(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
		f.p.Acked(batch)
		f.deltas = f.deltas[:0]
	}
}
