// Package pipeline is the consume-handle-produce-commit loop every stage
// runs, and the Kafka wiring it needs: one consumer group per stage, one
// reader per assigned partition, a synchronous writer with acks from all
// replicas, and offsets committed only after the writes they cover.
package pipeline

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"go.uber.org/zap"
)

// Client is how every command reaches the Kafka cluster.
type Client struct {
	// Brokers are the bootstrap addresses. Required.
	Brokers []string
	// DialTimeout bounds one connection attempt. Optional, default 5s.
	DialTimeout time.Duration
	// TLS, when set, encrypts every connection: readers, consumer groups,
	// writers and admin requests alike. Optional (LoadTLS builds one).
	TLS *tls.Config
	// SASL, when set, authenticates every connection. Optional (NewSASL
	// builds one).
	SASL sasl.Mechanism
}

// ErrNoBroker means no bootstrap broker answered.
var ErrNoBroker = errors.New("no broker reachable")

// Validate reports a client setting a user must fix.
func (c Client) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("KAFKA_BROKERS: no broker address given")
	}
	for _, b := range c.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return fmt.Errorf("KAFKA_BROKERS: %q is not host:port", b)
		}
	}
	return nil
}

func (c Client) dialTimeout() time.Duration {
	if c.DialTimeout <= 0 {
		return 5 * time.Second
	}
	return c.DialTimeout
}

// Dialer is the dialer readers and consumer groups use.
func (c Client) Dialer() *kafka.Dialer {
	return &kafka.Dialer{Timeout: c.dialTimeout(), DualStack: true, ClientID: "orders", TLS: c.TLS, SASLMechanism: c.SASL}
}

// Transport is the transport writers and admin requests use.
func (c Client) Transport() *kafka.Transport {
	return &kafka.Transport{DialTimeout: c.dialTimeout(), ClientID: "orders", MetadataTTL: 10 * time.Second, TLS: c.TLS, SASL: c.SASL}
}

// Admin is a client for metadata and admin requests with a connection pool
// of its own, which Close releases.
type Admin struct {
	*kafka.Client
	transport *kafka.Transport
}

// Admin returns a client for metadata and admin requests.
func (c Client) Admin() *Admin {
	t := c.Transport()
	return &Admin{Client: &kafka.Client{Addr: kafka.TCP(c.Brokers...), Transport: t, Timeout: 10 * time.Second}, transport: t}
}

// Close releases the client's connections.
func (a *Admin) Close() { a.transport.CloseIdleConnections() }

// WriterConfig tunes the writer of a stage.
type WriterConfig struct {
	// BatchSize is the most records sent in one produce request per
	// partition; kafka-go allocates room for that many with each request.
	// Optional, default a stage's MaxBatch.
	BatchSize int
	// BatchTimeout is how long a partial batch waits for more records.
	// Optional, default 1ns. Writes are synchronous and each hands the
	// writer everything there is to write, so waiting for more only delays
	// the acknowledgement; the writer adds all the records of one call
	// before a batch's timeout can send it.
	BatchTimeout time.Duration
}

func (w *WriterConfig) setDefaults() {
	if w.BatchSize <= 0 {
		w.BatchSize = DefaultMaxBatch
	}
	if w.BatchTimeout <= 0 {
		w.BatchTimeout = time.Nanosecond
	}
}

// Writer is a kafka-go writer whose Close also releases its connections.
type Writer struct {
	*kafka.Writer
	transport *kafka.Transport
	counts    *partitionCounts
}

// WriteMessages writes msgs and returns once they are acknowledged.
func (w Writer) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	w.counts.expire(time.Now())
	return w.Writer.WriteMessages(ctx, msgs...)
}

// Close flushes pending writes and releases the writer's connections.
func (w Writer) Close() error {
	err := w.Writer.Close()
	w.transport.CloseIdleConnections()
	return err
}

// maxRequestBytes bounds the records the writer sends to a partition in
// one request. A broker refuses a record batch larger than its
// max.message.bytes (1 MiB and 12 bytes by default) for good, so a batch of
// many or large records is split to stay below that. kafka-go counts a
// record at 22 bytes besides its key, value and headers, more than a record
// takes in a batch, which leaves room for the batch's own 61 bytes.
const maxRequestBytes = 1_000_000

// partitionCountsTTL is how long a writer trusts the partition count of a
// topic, on top of the transport's metadata TTL.
const partitionCountsTTL = time.Second

// NewWriter returns a synchronous writer that waits for all in-sync
// replicas, partitions by key with the Java client's murmur2 hash unless a
// record names its partition, and never creates topics.
func (c Client) NewWriter(wc WriterConfig, log *zap.Logger) Writer {
	wc.setDefaults()
	t := c.Transport()
	counts := newPartitionCounts(newRecordBatches(t), partitionCountsTTL)
	return Writer{Writer: &kafka.Writer{
		Addr:                   kafka.TCP(c.Brokers...),
		Balancer:               partitioner{},
		RequiredAcks:           kafka.RequireAll,
		BatchSize:              wc.BatchSize,
		BatchBytes:             maxRequestBytes,
		BatchTimeout:           wc.BatchTimeout,
		MaxAttempts:            3,
		WriteBackoffMin:        50 * time.Millisecond,
		WriteBackoffMax:        time.Second,
		AllowAutoTopicCreation: false,
		Transport:              counts,
		ErrorLogger:            kafkaLogger(log, true),
	}, transport: t, counts: counts}
}

// partitioner sends a record to the partition it names, if any, else by key.
type partitioner struct{ hash kafka.Murmur2Balancer }

func (p partitioner) Balance(msg kafka.Message, partitions ...int) int {
	if msg.Partition >= 0 {
		return msg.Partition
	}
	return p.hash.Balance(msg, partitions...)
}

func kafkaLogger(log *zap.Logger, errs bool) kafka.LoggerFunc {
	s := log.WithOptions(zap.AddCallerSkip(1)).Sugar().With("component", "kafka-go")
	if errs {
		return func(msg string, args ...any) { s.Warnf(msg, args...) }
	}
	return func(msg string, args ...any) { s.Debugf(msg, args...) }
}
