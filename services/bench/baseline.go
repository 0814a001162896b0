package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka"
)

// bare is the Kafka client alone doing what a stage's loop does, without the
// stage: it fetches what is there (up to MaxBatch records of a partition;
// on franz-go, which bounds a poll and not a partition, up to MaxBatch for
// each partition of Topic together), writes every record unchanged to Out
// in one synchronous write with acks from all replicas, and commits after
// the acknowledgement. With Out empty
// it only consumes and commits. It is the yardstick of the stages, on one
// of three client paths (On): franz-go's kgo.Client, the headline, as its
// users run it (see runFranzGo); kafka-go's Reader and Writer, the client
// alone as its users run it; or the stages' own Fetcher and Writer, so that
// the ratio shows what a stage adds to the client path it runs on. The
// last two run each assigned partition apart, as services/pipeline does:
// the same consumer group, per-partition reading, batch sizes and writer
// batching, and nothing else.
type bare struct {
	Client   kafka.Client
	Group    string
	Topic    string
	Out      string // optional: without it, consume and commit only
	MaxBatch int
	// Partitions of Topic: the franz-go loop polls up to MaxBatch records
	// for each.
	Partitions int
	Writer     kafka.WriterConfig
	On         clientPath
}

// clientPath is the client a bare loop reads and writes with.
type clientPath int

const (
	ownClient clientPath = iota // the stages' kafka.Fetcher and kafka.Writer
	kafkaGo                     // kafka-go's Reader and Writer
	franzGo                     // franz-go's kgo.Client
)

// copyWriter is what a bare loop writes with.
type copyWriter interface {
	Write(ctx context.Context, outs []envelope.Output) error
	Close() error
}

// kafkaGoWriter is kafka-go's Writer as a copyWriter. The partitions of a
// bare loop write at once, so each call converts into an array of its own.
type kafkaGoWriter struct {
	w *kafkago.Writer
}

func (k *kafkaGoWriter) Write(ctx context.Context, outs []envelope.Output) error {
	return k.w.WriteMessages(ctx, kafka.KafkaGoMessages(outs)...)
}

func (k *kafkaGoWriter) Close() error { return k.w.Close() }

// writer is the bare loop's writer, nil if it only consumes.
func (b bare) writer() copyWriter {
	switch {
	case b.Out == "":
		return nil
	case b.On == kafkaGo:
		// kafka-go's Writer set up as the stages' writer is: acks from
		// all replicas, batches of the loop's size sent at once
		// (BatchTimeout 1ns: every write is synchronous and whole) and
		// the same key hash.
		wc := b.Writer
		if wc.BatchSize <= 0 {
			wc.BatchSize = b.MaxBatch
		}
		return &kafkaGoWriter{w: &kafkago.Writer{
			Addr: kafkago.TCP(b.Client.Brokers...), Transport: b.Client.Transport(),
			Balancer: &kafkago.Murmur2Balancer{}, RequiredAcks: kafkago.RequireAll,
			BatchSize: wc.BatchSize, BatchTimeout: time.Nanosecond,
		}}
	default:
		w := b.Client.NewWriter(b.Writer, zap.NewNop())
		return w
	}
}

// run consumes until ctx ends. ready is closed at the first assignment.
func (b bare) run(ctx context.Context, ready chan<- struct{}) error {
	if b.On == franzGo {
		return b.runFranzGo(ctx, ready)
	}
	group, err := kafkago.NewConsumerGroup(kafkago.ConsumerGroupConfig{
		ID: b.Group, Brokers: b.Client.Brokers, Dialer: b.Client.Dialer(), Topics: []string{b.Topic},
		HeartbeatInterval: time.Second, SessionTimeout: 10 * time.Second, RebalanceTimeout: 10 * time.Second,
		JoinGroupBackoff: time.Second, StartOffset: kafkago.FirstOffset,
	})
	if err != nil {
		return fmt.Errorf("consumer group: %w", err)
	}
	defer group.Close()
	w := b.writer()
	if w != nil {
		defer w.Close()
	}
	var (
		once     sync.Once
		commitMu sync.Mutex // a generation's commits share one connection
		fatal    = make(chan error, 1)
	)
	for {
		gen, err := group.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			select {
			case err := <-fatal:
				return err
			default:
			}
			continue
		}
		for _, a := range gen.Assignments[b.Topic] {
			part, offset := a.ID, a.Offset
			gen.Start(func(gctx context.Context) {
				if err := b.partition(gctx, gen, &commitMu, w, part, offset); err != nil && gctx.Err() == nil {
					select {
					case fatal <- err:
					default:
					}
				}
			})
		}
		once.Do(func() { close(ready) })
	}
}

func (b bare) partition(ctx context.Context, gen *kafkago.Generation, commitMu *sync.Mutex, w copyWriter, part int, offset int64) error {
	queue := make(chan envelope.Record, b.MaxBatch)
	fctx, stop := context.WithCancel(ctx)
	var fetcher sync.WaitGroup
	if b.On == kafkaGo {
		r := kafkago.NewReader(kafkago.ReaderConfig{
			Brokers: b.Client.Brokers, Dialer: b.Client.Dialer(), Topic: b.Topic, Partition: part,
			MinBytes: 1, MaxBytes: 4 << 20, MaxWait: 250 * time.Millisecond, QueueCapacity: b.MaxBatch,
		})
		defer r.Close()
		if err := r.SetOffset(offset); err != nil {
			stop()
			return err
		}
		fetcher.Go(func() {
			defer close(queue)
			for {
				m, err := r.FetchMessage(fctx)
				if err != nil {
					return
				}
				select {
				case queue <- kafka.FromKafkaGo(m):
				case <-fctx.Done():
					return
				}
			}
		})
	} else {
		f := b.Client.NewFetcher()
		defer f.Close()
		fetcher.Go(func() { f.Fetch(fctx, zap.NewNop(), b.Topic, part, offset, queue, nil) })
	}
	defer func() {
		stop()
		fetcher.Wait()
	}()
	batch := make([]envelope.Record, 0, b.MaxBatch)
	for {
		m, ok := <-queue
		if !ok {
			return nil
		}
		batch = append(batch[:0], m)
	drain:
		for len(batch) < b.MaxBatch {
			select {
			case m, ok := <-queue:
				if !ok {
					break drain
				}
				batch = append(batch, m)
			default:
				break drain
			}
		}
		if w != nil {
			out := make([]envelope.Output, len(batch))
			for i, m := range batch {
				out[i] = envelope.Output{Topic: b.Out, Partition: envelope.AnyPartition, Key: m.Key, Value: m.Value, Headers: m.Headers}
			}
			if err := w.Write(ctx, out); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("write: %w", err)
			}
		}
		last := batch[len(batch)-1]
		commitMu.Lock()
		err := gen.CommitOffsets(map[string]map[int]int64{b.Topic: {part: last.Offset + 1}})
		commitMu.Unlock()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, kafkago.RebalanceInProgress) {
				return nil
			}
			return fmt.Errorf("commit: %w", err)
		}
	}
}
