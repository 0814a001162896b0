package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/metadata"
	"github.com/segmentio/kafka-go/protocol/produce"
	"github.com/segmentio/kafka-go/protocol/rawproduce"
	"go.uber.org/zap"

	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka/wire"
	"github.com/orderflow/orders/services/wait"
)

// WriterConfig tunes the writer of a stage.
type WriterConfig struct {
	// BatchSize is the most records sent in one produce request per
	// partition. Optional, default 500 (a stage's loop sets its MaxBatch).
	BatchSize int
	// BatchTimeout is how long a partial batch waits for more records, on
	// a cluster too old for record batches (see Writer). Optional, default
	// 1ns. Writes are synchronous and each hands the writer everything
	// there is to write, so waiting for more only delays the
	// acknowledgement; the writer adds all the records of one call before a
	// batch's timeout can send it.
	BatchTimeout time.Duration
}

// defaultBatchSize is WriterConfig.BatchSize unless told otherwise.
const defaultBatchSize = 500

func (w *WriterConfig) setDefaults() {
	if w.BatchSize <= 0 {
		w.BatchSize = defaultBatchSize
	}
	if w.BatchTimeout <= 0 {
		w.BatchTimeout = time.Nanosecond
	}
}

// Writer writes records synchronously: Write returns once every record is
// acknowledged by all in-sync replicas, or with an error. A record goes to
// the partition it names, if any, else to the one the Java client's
// murmur2 hash of its key picks; topics are never created.
//
// It groups a call's records by partition and encodes each partition's
// records as one record batch in a buffer of its own (wire.AppendBatch). The
// batches of partitions led by one broker go in one produce request, as
// the Java client sends them, and the brokers' requests go at once; a
// partition whose batch that request did not write is sent again on its
// own. A cluster whose produce API predates record batches (Kafka before
// 0.11) is written to by kafka-go's Writer, with the same settings.
type Writer struct {
	client     *kafkago.Client
	closeConns func()
	counts     *partitionCounts
	old        *kafkago.Writer // for clusters without record batches
	batchSize  int
	// batches says whether the brokers take produce requests of version 3
	// or later, which carry record batches: 0 not known yet, then
	// batchesYes or batchesNo.
	batches atomic.Int32
	// partitionIDs holds 0, 1, ... for the hash to pick from.
	mu           sync.Mutex
	partitionIDs []int
	// refreshedAt is when the writer last forgot the cluster's layout.
	refreshedAt time.Time
}

const (
	batchesYes = 1
	batchesNo  = 2
)

// maxRequestBytes bounds the records the writer sends to a partition in
// one request. A broker refuses a record batch larger than its
// max.message.bytes (1 MiB and 12 bytes by default) for good, so a batch of
// many or large records is split to stay below that.
const maxRequestBytes = 1_000_000

// partitionCountsTTL is how long a writer trusts the partition count of a
// topic, on top of the transport's metadata TTL.
const partitionCountsTTL = time.Second

// writeTimeout bounds one produce request, as kafka-go's Writer does.
const writeTimeout = 10 * time.Second

// writeAttempts is how many times a partition's records are sent before a
// write gives up on them, when the failure may pass.
const writeAttempts = 3

// NewWriter returns a writer that waits for all in-sync replicas.
func (c Client) NewWriter(wc WriterConfig, log *zap.Logger) *Writer {
	t := c.Transport()
	counts := newPartitionCounts(t, partitionCountsTTL)
	addr := kafkago.TCP(c.Brokers...)
	w := newWriter(addr, counts, wc, log)
	w.closeConns = t.CloseIdleConnections
	return w
}

// newWriter returns a writer that sends its requests through counts.
func newWriter(addr net.Addr, counts *partitionCounts, wc WriterConfig, log *zap.Logger) *Writer {
	wc.setDefaults()
	return &Writer{
		client:     &kafkago.Client{Addr: addr, Transport: counts, Timeout: writeTimeout},
		closeConns: func() {},
		counts:     counts,
		batchSize:  wc.BatchSize,
		old: &kafkago.Writer{
			Addr:                   addr,
			Balancer:               partitioner{},
			RequiredAcks:           kafkago.RequireAll,
			BatchSize:              wc.BatchSize,
			BatchBytes:             maxRequestBytes,
			BatchTimeout:           wc.BatchTimeout,
			MaxAttempts:            writeAttempts,
			WriteBackoffMin:        50 * time.Millisecond,
			WriteBackoffMax:        time.Second,
			AllowAutoTopicCreation: false,
			Transport:              counts,
			ErrorLogger:            kafkaLogger(log, true),
		},
	}
}

// Close releases the writer's connections.
func (w *Writer) Close() error {
	err := w.old.Close()
	w.closeConns()
	return err
}

// WriteErrors is the error of a write that wrote some of its records and
// not others: the error of each record, nil for those written.
type WriteErrors []error

func (e WriteErrors) Error() string {
	n := 0
	var first error
	for _, err := range e {
		if err != nil {
			if n++; first == nil {
				first = err
			}
		}
	}
	return fmt.Sprintf("%d of %d records not written: %v", n, len(e), first)
}

// Write writes outs and returns once they are acknowledged. When some are
// not, the error is the error of looking up a topic (and none was
// written), ctx's error, or a WriteErrors.
func (w *Writer) Write(ctx context.Context, outs []envelope.Output) error {
	if len(outs) == 0 {
		return nil
	}
	w.counts.expire(time.Now())
	if !w.recordBatches(ctx) {
		err := w.old.WriteMessages(ctx, KafkaGoMessages(outs)...)
		if per, ok := errors.AsType[kafkago.WriteErrors](err); ok {
			return WriteErrors(per)
		}
		return err
	}
	return w.write(ctx, outs)
}

// recordBatches reports whether the brokers take record batches, asking
// them once. Until an answer comes, writes go through kafka-go's Writer.
func (w *Writer) recordBatches(ctx context.Context) bool {
	switch w.batches.Load() {
	case batchesYes:
		return true
	case batchesNo:
		return false
	}
	res, err := w.client.ApiVersions(ctx, &kafkago.ApiVersionsRequest{Addr: w.client.Addr})
	if err != nil || res.Error != nil {
		return false
	}
	answer := int32(batchesNo)
	for _, k := range res.ApiKeys {
		if k.ApiKey == int(protocol.Produce) && k.MaxVersion >= 3 {
			answer = batchesYes
		}
	}
	w.batches.Store(answer)
	return answer == batchesYes
}

// partRecords is the records of a call for one partition, outs[idx[i]]
// in the order of the call, and what became of them: those from
// idx[failed] on were not written, for err.
type partRecords struct {
	topic     string
	partition int
	idx       []int32
	size      int // the most bytes its records take in a record batch
	failed    int
	err       error
}

// maxTogetherBytes bounds the record batches one produce request carries
// for several partitions, far below the brokers' limit on a request
// (socket.request.max.bytes, 100 MiB by default).
const maxTogetherBytes = 16 << 20

// byLeader groups the parts of a call into produce requests: the parts
// whose records one request can carry whole, by the broker that leads
// their partitions (as the cached metadata says), and every other part on
// its own. Each group is a list of indexes into parts.
func (w *Writer) byLeader(parts []partRecords, topics map[string]topicMeta) [][]int {
	if len(parts) == 1 {
		return [][]int{{0}}
	}
	var (
		groups [][]int
		size   []int
		leader []int32
	)
	for i := range parts {
		p := &parts[i]
		l, ok := topics[p.topic].leader(p.partition)
		if ok && w.fitsOneRequest(p) {
			k := slices.Index(leader, l)
			if k >= 0 && size[k]+p.size <= maxTogetherBytes {
				groups[k] = append(groups[k], i)
				size[k] += p.size
				continue
			}
		} else {
			l = -1 // alone
		}
		groups = append(groups, []int{i})
		size = append(size, p.size)
		leader = append(leader, l)
	}
	return groups
}

// fitsOneRequest reports whether one produce request can carry all of p's
// records.
func (w *Writer) fitsOneRequest(p *partRecords) bool {
	return len(p.idx) <= w.batchSize && p.size <= maxRequestBytes
}

// write writes outs. When some are not written, the error is that of
// looking up a topic (and none was written), ctx's if it ended, or a
// WriteErrors.
func (w *Writer) write(ctx context.Context, outs []envelope.Output) error {
	// Every topic of the call is looked up first, once, as kafka-go's
	// Writer does: a call with a topic the brokers do not know writes
	// nothing and fails with that error, kafkago.UnknownTopicOrPartition,
	// instead of writing the rest again at every retry of the caller.
	topics := make(map[string]topicMeta, 2)
	for i := range outs {
		t := outs[i].Topic
		if _, ok := topics[t]; !ok {
			meta, err := w.partitions(ctx, t)
			if err != nil {
				return err
			}
			topics[t] = meta
		}
	}
	parts := make([]partRecords, 0, 4)
	index := make(map[topicPartition]int, 4)
	for i := range outs {
		m := &outs[i]
		p := m.Partition
		if p < 0 {
			p = byKey(m.Key, topics[m.Topic].ids)
		}
		key := topicPartition{m.Topic, p}
		k, ok := index[key]
		if !ok {
			k = len(parts)
			index[key] = k
			parts = append(parts, partRecords{topic: m.Topic, partition: p, size: wire.BatchHeaderLen})
		}
		parts[k].idx = append(parts[k].idx, int32(i))
		parts[k].size += wire.RecordBound(m)
	}
	now := time.Now()
	requests := w.byLeader(parts, topics)
	if len(requests) == 1 {
		w.produceTogether(ctx, outs, parts, requests[0], now)
	} else {
		var wg sync.WaitGroup
		for _, r := range requests {
			wg.Go(func() { w.produceTogether(ctx, outs, parts, r, now) })
		}
		wg.Wait()
	}
	var errs WriteErrors
	for _, p := range parts {
		if p.err == nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if errs == nil {
			errs = make(WriteErrors, len(outs))
		}
		for _, i := range p.idx[p.failed:] {
			errs[i] = p.err
		}
	}
	if errs != nil {
		return errs
	}
	return nil
}

type topicPartition struct {
	topic     string
	partition int
}

// produceTogether sends the records of the parts that group names, in one
// produce request when there are several, and then each part that
// request did not write on its own (produce), from its first record: a
// broker appends a partition's record batch whole or not at all.
func (w *Writer) produceTogether(ctx context.Context, outs []envelope.Output, parts []partRecords, group []int, now time.Time) {
	if len(group) == 1 {
		w.produce(ctx, outs, &parts[group[0]], now)
		return
	}
	written := w.sendTogether(ctx, outs, parts, group, now)
	var wg sync.WaitGroup
	for k, i := range group {
		switch {
		case written[k]:
		case ctx.Err() != nil:
			parts[i].failed, parts[i].err = 0, ctx.Err()
		default:
			wg.Go(func() { w.produce(ctx, outs, &parts[i], now) })
		}
	}
	wg.Wait()
}

// sendTogether sends the parts group names in one produce request, once,
// and reports which of them the broker wrote.
func (w *Writer) sendTogether(ctx context.Context, outs []envelope.Output, parts []partRecords, group []int, now time.Time) []bool {
	req := &rawproduce.Request{Acks: int16(kafkago.RequireAll)}
	bufs := make([]*[]byte, len(group))
	for k, i := range group {
		p := &parts[i]
		buf := batchBuffers.Get().(*[]byte)
		*buf = wire.AppendBatch((*buf)[:0], outs, p.idx, now)
		bufs[k] = buf
		t := slices.IndexFunc(req.Topics, func(t rawproduce.RequestTopic) bool { return t.Topic == p.topic })
		if t < 0 {
			t = len(req.Topics)
			req.Topics = append(req.Topics, rawproduce.RequestTopic{Topic: p.topic})
		}
		req.Topics[t].Partitions = append(req.Topics[t].Partitions, rawproduce.RequestPartition{
			Partition: int32(p.partition), RecordSet: protocol.RawRecordSet{Reader: bytes.NewReader(*buf)},
		})
	}
	written := make([]bool, len(group))
	rctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	// The broker gets half the time left, as kafka-go's Client gives it:
	// a partition whose replicas lag then times out on the broker, which
	// answers for the others, before the writer stops waiting and has to
	// send every partition of the request again.
	if d, ok := rctx.Deadline(); ok {
		req.Timeout = int32(max(time.Until(d)/2, time.Millisecond) / time.Millisecond)
	}
	r, err := w.counts.RoundTrip(rctx, w.client.Addr, req)
	if err != nil {
		w.refreshIfMoved(err, now)
		// As in sendOnce, the buffers are left to the collector. Each part
		// is sent again on its own, which also tells a failure that may
		// pass from one that will not.
		return written
	}
	for _, b := range bufs {
		batchBuffers.Put(b)
	}
	res, ok := r.(*produce.Response)
	if !ok {
		return written
	}
	for _, t := range res.Topics {
		for _, rp := range t.Partitions {
			if rp.ErrorCode != 0 {
				w.refreshIfMoved(kafkago.Error(rp.ErrorCode), now)
				continue
			}
			if len(rp.RecordErrors) != 0 {
				continue
			}
			for k, i := range group {
				if parts[i].topic == t.Topic && parts[i].partition == int(rp.Partition) {
					written[k] = true
				}
			}
		}
	}
	return written
}

// produce sends the records of p in order, in requests of at most
// batchSize records and maxRequestBytes. It stops at the first request
// that fails, so that no record is written before one that precedes it.
func (w *Writer) produce(ctx context.Context, outs []envelope.Output, p *partRecords, now time.Time) {
	if w.fitsOneRequest(p) { // most calls: no need to size each record again
		if err := w.send(ctx, outs, p.topic, p.partition, p.idx, now); err != nil {
			p.failed, p.err = 0, err
		}
		return
	}
	for from := 0; from < len(p.idx); {
		to, size := from, wire.BatchHeaderLen
		for to < len(p.idx) && to-from < w.batchSize {
			n := wire.RecordBound(&outs[p.idx[to]])
			if to > from && size+n > maxRequestBytes {
				break
			}
			size += n
			to++
		}
		if err := w.send(ctx, outs, p.topic, p.partition, p.idx[from:to], now); err != nil {
			p.failed, p.err = from, err
			return
		}
		from = to
	}
}

// send writes the records outs[idx[i]] to one partition in one request,
// again after a failure that may pass, up to writeAttempts times.
func (w *Writer) send(ctx context.Context, outs []envelope.Output, topic string, partition int, idx []int32, now time.Time) error {
	var err error
	b := wait.Between(50*time.Millisecond, time.Second)
	for attempt := range writeAttempts {
		if attempt > 0 && !b.Wait(ctx) {
			return ctx.Err()
		}
		sent := time.Now()
		if err = w.sendOnce(ctx, outs, topic, partition, idx, now); err == nil {
			return nil
		}
		w.refreshIfMoved(err, sent)
		if !retriable(err) {
			return err
		}
	}
	return err
}

// refreshIfMoved makes the writer learn the cluster's layout again at once
// when err, the failure of a request sent at sent, says that a partition's
// leader moved or its broker is gone. kafka-go's Transport would otherwise
// keep sending to the old leader until its metadata expires, up to 10 s
// later: a stall of the partition after every election. Its connection
// pools are closed (requests in flight finish on them first), so the next
// request opens a pool that asks for metadata before anything else. Many
// requests failing together refresh once.
func (w *Writer) refreshIfMoved(err error, sent time.Time) {
	if !leaderMoved(err) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.refreshedAt.After(sent) {
		return
	}
	w.refreshedAt = time.Now()
	w.counts.forget()
	w.closeConns()
}

// leaderMoved reports whether err says a partition's leader is elsewhere,
// or that the broker it was sent to is gone.
func leaderMoved(err error) bool {
	for _, e := range []error{kafkago.NotLeaderForPartition, kafkago.LeaderNotAvailable, kafkago.UnknownTopicOrPartition,
		protocol.ErrNoLeader, protocol.ErrNoPartition, protocol.ErrNoTopic,
		kafkago.BrokerNotAvailable, kafkago.FencedLeaderEpoch, kafkago.UnknownLeaderEpoch, kafkago.KafkaStorageError,
		io.ErrUnexpectedEOF, io.EOF, syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.EPIPE} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (w *Writer) sendOnce(ctx context.Context, outs []envelope.Output, topic string, partition int, idx []int32, now time.Time) error {
	buf := batchBuffers.Get().(*[]byte)
	b := wire.AppendBatch((*buf)[:0], outs, idx, now)
	*buf = b
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	res, err := w.client.RawProduce(ctx, &kafkago.RawProduceRequest{
		Topic: topic, Partition: partition, RequiredAcks: kafkago.RequireAll,
		RawRecords: protocol.RawRecordSet{Reader: bytes.NewReader(b)},
	})
	if err != nil {
		// The transport may still be writing the buffer (it stops waiting
		// for an answer when ctx ends), so it is left to the collector.
		return err
	}
	batchBuffers.Put(buf)
	if res.Error != nil {
		return res.Error
	}
	for _, e := range res.RecordErrors {
		return e
	}
	return nil
}

// retriable reports whether sending the same records again may succeed, as
// kafka-go's Writer judges it.
func retriable(err error) bool {
	var t interface{ Temporary() bool }
	if errors.As(err, &t) && t.Temporary() {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// topicMeta is what the writer knows of a topic: its partitions 0 to n-1,
// and the cached metadata that says who leads each.
type topicMeta struct {
	ids  []int
	meta *metadata.ResponseTopic
}

// leader is the broker that leads partition p, if the metadata says.
func (t topicMeta) leader(p int) (int32, bool) {
	if t.meta == nil {
		return 0, false
	}
	for i := range t.meta.Partitions {
		if mp := &t.meta.Partitions[i]; int(mp.PartitionIndex) == p {
			return mp.LeaderID, mp.ErrorCode == 0 && mp.LeaderID >= 0
		}
	}
	return 0, false
}

// partitions lists the partitions of topic, from the cached metadata.
func (w *Writer) partitions(ctx context.Context, topic string) (topicMeta, error) {
	r, err := w.counts.RoundTrip(ctx, w.client.Addr, &metadata.Request{TopicNames: []string{topic}})
	if err != nil {
		return topicMeta{}, err
	}
	var meta *metadata.ResponseTopic
	topics := r.(*metadata.Response).Topics
	for i := range topics {
		if t := &topics[i]; t.Name == topic {
			if t.ErrorCode != 0 {
				return topicMeta{}, kafkago.Error(t.ErrorCode)
			}
			meta = t
		}
	}
	if meta == nil || len(meta.Partitions) == 0 { // not in the answer, or being made or deleted
		return topicMeta{}, kafkago.UnknownTopicOrPartition
	}
	n := len(meta.Partitions)
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.partitionIDs) < n {
		w.partitionIDs = append(w.partitionIDs, len(w.partitionIDs))
	}
	return topicMeta{ids: w.partitionIDs[:n:n], meta: meta}, nil
}

// partitioner sends a record to the partition it names, if any, else by key.
type partitioner struct{}

func (partitioner) Balance(msg kafkago.Message, partitions ...int) int {
	if msg.Partition >= 0 {
		return msg.Partition
	}
	return byKey(msg.Key, partitions)
}

// byKey is the partition of partitions the Java client's murmur2 hash of
// key picks.
func byKey(key []byte, partitions []int) int {
	return kafkago.Murmur2Balancer{}.Balance(kafkago.Message{Key: key}, partitions...)
}

// batchBuffers holds the buffers record batches are encoded in, between
// requests.
var batchBuffers = sync.Pool{New: func() any { return new([]byte) }}
