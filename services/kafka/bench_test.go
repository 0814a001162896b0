package kafka_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/orderflow/orders/services/broker"
	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/testkit"
)

// topicT starts a broker in this process with a topic "t" of two
// partitions, and returns a client of it.
func topicT(b *testing.B) kafka.Client {
	brk := testkit.Broker(b, broker.Config{})
	client := kafka.Client{Brokers: []string{brk.Addr()}}
	admin := client.Admin()
	defer admin.Close()
	if _, err := admin.CreateTopics(context.Background(), &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{
		{Topic: "t", NumPartitions: 2, ReplicationFactor: 1},
	}}); err != nil {
		b.Fatal(err)
	}
	return client
}

// BenchmarkWrite is the cost of writing one record, in batches of 500, with
// the headers a stage gives it, to a broker in this process: the client's
// encoding and the broker's storing together. "failed" carries the history
// of an order that failed in main, "failed-thrice" of one that failed in
// main and two retry stages, "processed" what the processed topic gets,
// "no-headers" what a bare copy of an order writes, and "half-failed"
// writes processed orders to one partition and failed ones to another, one
// in two, as the main stage does when half the orders fail.
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
	processed := []envelope.Header{{Key: envelope.HeaderAttempts, Value: []byte("1")}, {Key: envelope.HeaderProcessedBy, Value: []byte("main")}}
	for _, c := range []struct {
		name    string
		headers []envelope.Header
		half    []envelope.Header // of every other record, for partition 1
	}{
		{"no-headers", nil, nil},
		{"processed", processed, nil},
		{"failed", history(1), nil},
		{"failed-thrice", history(3), nil},
		{"half-failed", processed, history(1)},
	} {
		b.Run(c.name, func(b *testing.B) {
			client := topicT(b)
			w := client.NewWriter(kafka.WriterConfig{}, zap.NewNop())
			defer w.Close()
			const batch = 500
			outs := make([]envelope.Output, batch)
			for i := range outs {
				outs[i] = envelope.Output{Topic: "t", Partition: 0, Key: []byte(strconv.Itoa(1000 + i)), Value: value, Headers: c.headers}
				if c.half != nil && i%2 == 1 {
					outs[i].Partition, outs[i].Headers = 1, c.half
				}
			}
			b.SetBytes(int64(len(value)))
			b.ResetTimer()
			for i := 0; i < b.N; i += batch {
				if err := w.Write(context.Background(), outs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRead is the cost of reading one record from a broker in this
// process, in order, into a queue as a stage's loop takes them: with
// kafka-go's Reader, as the stages did, and with the stages' Fetcher. The
// records carry the headers of a processed order, as the aggregator reads
// them; each run reads 100,000 of them from the first.
func BenchmarkRead(b *testing.B) {
	client := topicT(b)
	const n = 100000
	w := client.NewWriter(kafka.WriterConfig{}, zap.NewNop())
	outs := make([]envelope.Output, 500)
	for i := 0; i < n; i += len(outs) {
		for j := range outs {
			outs[j] = envelope.Output{Topic: "t", Partition: 0, Key: []byte(strconv.Itoa(100000 + i + j)),
				Value:   []byte("\x08\x31\x30\x30\x36\x0aItem3\xf6\x28\x1f\x42"),
				Headers: []envelope.Header{{Key: envelope.HeaderAttempts, Value: []byte("1")}, {Key: envelope.HeaderProcessedBy, Value: []byte("main")}}}
		}
		if err := w.Write(context.Background(), outs); err != nil {
			b.Fatal(err)
		}
	}
	w.Close()
	b.Run("kafka-go-reader", func(b *testing.B) {
		for i := 0; i < b.N; i += n {
			readAll(b, n, func(m kafkago.Message) int64 { return m.Offset }, func(ctx context.Context, queue chan<- kafkago.Message) {
				defer close(queue)
				r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: client.Brokers, Dialer: client.Dialer(), Topic: "t", Partition: 0,
					MinBytes: 1, MaxBytes: 4 << 20, MaxWait: 250 * time.Millisecond, QueueCapacity: 500})
				defer r.Close()
				for {
					m, err := r.FetchMessage(ctx)
					if err != nil {
						return
					}
					select {
					case queue <- m:
					case <-ctx.Done():
						return
					}
				}
			})
		}
	})
	b.Run("fetcher", func(b *testing.B) {
		f := client.NewFetcher()
		defer f.Close()
		for i := 0; i < b.N; i += n {
			readAll(b, n, func(r envelope.Record) int64 { return r.Offset }, func(ctx context.Context, queue chan<- envelope.Record) {
				f.Fetch(ctx, zap.NewNop(), "t", 0, 0, queue, nil)
			})
		}
	})
}

// readAll runs fetch, which sends to queue until its context ends, and
// takes n records from queue, checking their offsets.
func readAll[T any](b *testing.B, n int, offset func(T) int64, fetch func(ctx context.Context, queue chan<- T)) {
	ctx, cancel := context.WithCancel(context.Background())
	queue := make(chan T, 500)
	done := make(chan struct{})
	go func() {
		defer close(done)
		fetch(ctx, queue)
	}()
	for i := range n {
		if m := <-queue; offset(m) != int64(i) {
			b.Fatalf("offset %d, want %d", offset(m), i)
		}
	}
	cancel()
	for range queue {
	}
	<-done
}
