package aggregator

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

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

// BenchmarkRestore is a restore's work per orderId inside the horizon,
// once the broker has sent the records: parse the state records of 500
// orderIds each (36-byte UUID-like ids), keep their keys, and build the
// de-duplication set:
// go test -run=NONE -bench=Restore ./services/aggregator/
func BenchmarkRestore(b *testing.B) {
	const ids, perRecord = 1_000_000, 500
	wm := testTime.UnixMilli()
	var recs []envelope.Record
	for r := 0; r < ids/perRecord; r++ {
		s := Snapshot{Version: stateVersion, Generation: 3, Base: 10, Next: int64((r + 1) * perRecord),
			Count: int64((r + 1) * perRecord), Sum: float64(r), Watermark: wm, Horizon: time.Hour.Milliseconds()}
		for i := range perRecord {
			s.IDs = append(s.IDs, fmt.Sprintf("%08x-0000-4000-8000-%012x", r, i))
		}
		recs = append(recs, envelope.Record{Offset: int64(r), Key: stateKey(0, s, -1), Value: s.marshal(), Time: time.UnixMilli(wm)})
	}
	bytes := 0
	for _, m := range recs {
		bytes += len(m.Value)
	}
	b.ReportAllocs()
	for b.Loop() {
		rp := newReplay(testHorizon, true)
		for _, m := range recs {
			if err := rp.read(m); err != nil {
				b.Fatal(err)
			}
		}
		if seen, _, _ := rp.restored(); seen.n != ids {
			b.Fatalf("%d orderIds restored, want %d", seen.n, ids)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/ids, "ns/order")
	b.ReportMetric(float64(bytes)/ids, "state-bytes/order")
}
