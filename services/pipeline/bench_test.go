package pipeline_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/orderflow/orders/services/broker"
	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/pipeline"
	"github.com/orderflow/orders/services/testkit"
)

// BenchmarkWrite is the cost of writing one record, in batches of 500, with
// the headers a stage gives it, to a broker in this process: the client's
// encoding and the broker's storing together. "failed" carries the history
// of an order that failed in main, "failed-thrice" of one that failed in
// main and two retry stages, "processed" what the processed topic gets,
// and "no-headers" what a bare copy of an order writes.
func BenchmarkWrite(b *testing.B) {
	value := []byte("\x08\x31\x30\x30\x36\x0aItem3\xf6\x28\x1f\x42")
	at := time.Date(2026, 11, 29, 18, 14, 46, 884268796, time.UTC)
	const fail = "product fails processing: Item3"
	history := func(failures int) []envelope.Header {
		h := envelope.Begin(envelope.Record{Topic: "orders", Partition: 3, Offset: 123456})
		for i := range failures {
			h = h.Failed([]string{"main", "retry-1", "retry-2"}[i], at.Add(time.Duration(i)*time.Second), fail)
		}
		h.ErrorClass = "failing_product"
		h.DueAt = at.Add(time.Minute)
		return h.Headers()
	}
	for _, c := range []struct {
		name    string
		headers []envelope.Header
	}{
		{"no-headers", nil},
		{"processed", []envelope.Header{{Key: envelope.HeaderAttempts, Value: []byte("1")}, {Key: envelope.HeaderProcessedBy, Value: []byte("main")}}},
		{"failed", history(1)},
		{"failed-thrice", history(3)},
	} {
		b.Run(c.name, func(b *testing.B) {
			brk := testkit.Broker(b, broker.Config{})
			client := pipeline.Client{Brokers: []string{brk.Addr()}}
			admin := client.Admin()
			defer admin.Close()
			if _, err := admin.CreateTopics(context.Background(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{
				{Topic: "t", NumPartitions: 1, ReplicationFactor: 1},
			}}); err != nil {
				b.Fatal(err)
			}
			w := client.NewWriter(pipeline.WriterConfig{}, zap.NewNop())
			defer w.Close()
			const batch = 500
			outs := make([]envelope.Output, batch)
			for i := range outs {
				outs[i] = envelope.Output{Topic: "t", Partition: 0, Key: []byte(strconv.Itoa(1000 + i)), Value: value, Headers: c.headers}
			}
			msgs := pipeline.Messages(outs)
			b.SetBytes(int64(len(value)))
			b.ResetTimer()
			for i := 0; i < b.N; i += batch {
				if err := w.WriteMessages(context.Background(), msgs...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
