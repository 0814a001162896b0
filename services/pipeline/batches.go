package pipeline

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/apiversions"
	"github.com/segmentio/kafka-go/protocol/produce"
	"github.com/segmentio/kafka-go/protocol/rawproduce"
)

// recordBatches sits between a kafka-go Writer and its transport and
// encodes the records of each produce request itself, into one buffer, as
// the bytes kafka-go would send (appendBatch), and sends those. kafka-go
// encodes a record field by field, each through an interface call into a
// paged buffer, and at a stage's rates that was a sixth of its CPU, most
// of it for the headers of the records. Requests it cannot encode the same
// way (compression, a record version set by the caller, or a broker whose
// produce API predates record batches, Kafka before 0.11) go through
// untouched, as does every other request.
type recordBatches struct {
	kafka.RoundTripper
	// batches says whether the brokers take produce requests of version 3
	// or later, which carry record batches: 0 not known yet, then
	// batchesYes or batchesNo.
	batches atomic.Int32
	now     func() time.Time
}

const (
	batchesYes = 1
	batchesNo  = 2
)

func newRecordBatches(next kafka.RoundTripper) *recordBatches {
	return &recordBatches{RoundTripper: next, now: time.Now}
}

// batchBuffers holds the buffers requests are encoded in, between requests.
var batchBuffers = sync.Pool{New: func() any { return new([]byte) }}

// RoundTrip sends a produce request as one it encoded itself when it can.
func (r *recordBatches) RoundTrip(ctx context.Context, addr net.Addr, req kafka.Request) (kafka.Response, error) {
	p, ok := req.(*produce.Request)
	if !ok || !encodable(p) || !r.supported(ctx, addr) {
		return r.RoundTripper.RoundTrip(ctx, addr, req)
	}
	raw := &rawproduce.Request{TransactionalID: p.TransactionalID, Acks: p.Acks, Timeout: p.Timeout,
		Topics: make([]rawproduce.RequestTopic, len(p.Topics))}
	buf := batchBuffers.Get().(*[]byte)
	b := (*buf)[:0]
	type span struct{ from, to int }
	var spans []span
	now := r.now()
	for _, t := range p.Topics {
		for _, part := range t.Partitions {
			from := len(b)
			var err error
			if b, err = appendBatch(b, part.RecordSet.Records, now); err != nil {
				*buf = b
				batchBuffers.Put(buf)
				return nil, fmt.Errorf("encode records for %s/%d: %w", t.Topic, part.Partition, err)
			}
			spans = append(spans, span{from, len(b)})
		}
	}
	*buf = b
	i := 0
	for ti, t := range p.Topics {
		parts := make([]rawproduce.RequestPartition, len(t.Partitions))
		for pi, part := range t.Partitions {
			s := spans[i]
			i++
			parts[pi] = rawproduce.RequestPartition{Partition: part.Partition,
				RecordSet: protocol.RawRecordSet{Reader: bytes.NewReader(b[s.from:s.to:s.to])}}
		}
		raw.Topics[ti] = rawproduce.RequestTopic{Topic: t.Topic, Partitions: parts}
	}
	res, err := r.RoundTripper.RoundTrip(ctx, addr, raw)
	if err == nil {
		// A response came, so the request was written whole: the buffer
		// is free. After an error the transport may still be writing it
		// (it stops waiting when ctx ends), so it is left to the collector.
		batchBuffers.Put(buf)
	}
	return res, err
}

// encodable reports whether every record set of p is one appendBatch
// encodes as kafka-go would.
func encodable(p *produce.Request) bool {
	for _, t := range p.Topics {
		for _, part := range t.Partitions {
			if part.RecordSet.Attributes != 0 || part.RecordSet.Version != 0 || part.RecordSet.Records == nil {
				return false
			}
		}
	}
	return true
}

// supported reports whether the brokers take record batches, asking them
// once. Until an answer comes, requests go as kafka-go encodes them.
func (r *recordBatches) supported(ctx context.Context, addr net.Addr) bool {
	switch r.batches.Load() {
	case batchesYes:
		return true
	case batchesNo:
		return false
	}
	res, err := r.RoundTripper.RoundTrip(ctx, addr, &apiversions.Request{})
	if err != nil {
		return false
	}
	v, ok := res.(*apiversions.Response)
	if !ok || v.ErrorCode != 0 {
		return false
	}
	answer := int32(batchesNo)
	for _, k := range v.ApiKeys {
		if k.ApiKey == int16(protocol.Produce) && k.MaxVersion >= 3 {
			answer = batchesYes
		}
	}
	r.batches.Store(answer)
	return answer == batchesYes
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendBatch appends the records rr reads as a produce request carries
// them: the length of the batch, then a record batch of magic 2 without
// compression, transaction or producer id. A record without a time gets
// now. The bytes are those kafka-go's RecordSet of version 2 writes for the
// same records (FuzzAppendBatch).
func appendBatch(b []byte, rr kafka.RecordReader, now time.Time) ([]byte, error) {
	start := len(b)
	var header [4 + 61]byte
	b = append(b, header[:]...)
	nowMs := now.UnixMilli()
	var n, firstTs, maxTs int64
	for ; ; n++ {
		r, err := rr.ReadRecord()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return b[:start], err
		}
		ts := millis(r.Time)
		if ts == 0 {
			ts = nowMs
		}
		if n == 0 {
			firstTs = ts
		}
		maxTs = max(maxTs, ts)
		delta := ts - firstTs
		size := 1 + varintLen(delta) + varintLen(n) + bytesLen(r.Key) + bytesLen(r.Value) + varintLen(int64(len(r.Headers)))
		for _, h := range r.Headers {
			size += varintLen(int64(len(h.Key))) + len(h.Key) + nullBytesLen(h.Value)
		}
		b = binary.AppendVarint(b, int64(size))
		b = append(b, 0) // record attributes
		b = binary.AppendVarint(b, delta)
		b = binary.AppendVarint(b, n)
		if b, err = appendBytes(b, r.Key); err != nil {
			return b[:start], err
		}
		if b, err = appendBytes(b, r.Value); err != nil {
			return b[:start], err
		}
		b = binary.AppendVarint(b, int64(len(r.Headers)))
		for _, h := range r.Headers {
			b = binary.AppendVarint(b, int64(len(h.Key)))
			b = append(b, h.Key...)
			if h.Value == nil {
				b = binary.AppendVarint(b, -1)
			} else {
				b = binary.AppendVarint(b, int64(len(h.Value)))
				b = append(b, h.Value...)
			}
		}
	}
	if n == 0 {
		return b[:start], protocol.ErrNoRecord
	}
	h := b[start : start+4+61]
	be := binary.BigEndian
	be.PutUint32(h[0:], uint32(len(b)-start-4)) // length of what follows
	be.PutUint64(h[4:], 0)                      // base offset
	be.PutUint32(h[12:], uint32(len(b)-start-16))
	be.PutUint32(h[16:], 0xffffffff) // partition leader epoch
	h[20] = 2                        // magic
	// h[21:25] is the CRC, h[25:27] the attributes (0)
	be.PutUint32(h[27:], uint32(n-1)) // last offset delta
	be.PutUint64(h[31:], uint64(firstTs))
	be.PutUint64(h[39:], uint64(maxTs))
	be.PutUint64(h[47:], 0xffffffffffffffff) // producer id
	be.PutUint16(h[55:], 0xffff)             // producer epoch
	be.PutUint32(h[57:], 0xffffffff)         // base sequence
	be.PutUint32(h[61:], uint32(n))
	be.PutUint32(h[21:], crc32.Checksum(b[start+25:], castagnoli))
	return b, nil
}

// millis is t in milliseconds since the epoch, 0 for the zero time, as
// kafka-go counts it.
func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano() / int64(time.Millisecond)
}

func varintLen(v int64) int {
	u := uint64(v<<1) ^ uint64(v>>63)
	n := 1
	for u >= 0x80 {
		u >>= 7
		n++
	}
	return n
}

func nullBytesLen(v []byte) int {
	if v == nil {
		return 1
	}
	return varintLen(int64(len(v))) + len(v)
}

func bytesLen(v protocol.Bytes) int {
	if v == nil {
		return 1
	}
	return varintLen(int64(v.Len())) + v.Len()
}

// appendBytes appends v's length and bytes, or -1 for nil.
func appendBytes(b []byte, v protocol.Bytes) ([]byte, error) {
	if v == nil {
		return binary.AppendVarint(b, -1), nil
	}
	n := v.Len()
	b = binary.AppendVarint(b, int64(n))
	at := len(b)
	b = append(b, make([]byte, n)...)
	if _, err := io.ReadFull(v, b[at:]); err != nil {
		return b[:at], err
	}
	return b, nil
}
