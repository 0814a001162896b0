package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"time"

	"github.com/segmentio/kafka-go/protocol"

	"github.com/orderflow/orders/services/envelope"
)

// Where the fields of a record batch are, from its base offset on (a
// fetch response has no length before it, unlike a produce request).
const (
	batchLengthAt     = 8  // the length of what follows
	batchMagicAt      = 16 // 2 for record batches
	batchCRCAt        = 17 // CRC-32C of the rest
	batchAttributesAt = 21
	batchLastDeltaAt  = 23
	batchFirstTimeAt  = 27
	batchMaxTimeAt    = 35
	batchCountAt      = 57
	batchRecordsAt    = 61
)

// minRecordSize is the fewest bytes a record in a batch takes: its
// length, attributes, time and offset deltas, key and value lengths and
// header count, a byte each.
const minRecordSize = 7

// Batch attributes.
const (
	attrCompression   = 0x07
	attrLogAppendTime = 0x08
	attrControl       = 0x20
)

// Decoder cuts the records of one partition out of fetched record
// batches: keys, values and header values are slices of the fetched
// bytes, which stay alive as long as a record does.
type Decoder struct {
	topic     string
	partition int
	keys      map[string]string // header keys seen, each one string
	headers   []envelope.Header // where the next records' headers go
	slab      []byte            // copies made of kafka-go's records
}

// NewDecoder returns a decoder of topic/partition's batches.
func NewDecoder(topic string, partition int) *Decoder {
	return &Decoder{topic: topic, partition: partition, keys: map[string]string{}}
}

// ErrCorruptBatch is the error of a batch that no producer wrote.
var ErrCorruptBatch = errors.New("corrupt record batch")

// Decode emits the records of batches at offset and after, in order, and
// returns the offset to fetch next: past the last offset of each batch
// read, which compaction may have left without a record, and past control
// batches (transaction markers), which are not records to handle.
// It stops early, without an error, when emit returns false. The last
// batch may be cut short by the response's size limit; it is left for the
// next fetch.
func (d *Decoder) Decode(batches []byte, offset int64, emit func(envelope.Record) bool) (int64, error) {
	be := binary.BigEndian
	for len(batches) > batchMagicAt {
		base := int64(be.Uint64(batches))
		length := int32(be.Uint32(batches[batchLengthAt:]))
		size := batchLengthAt + 4 + int(length)
		if length < 0 || size <= batchMagicAt {
			return offset, fmt.Errorf("%w at offset %d: length %d", ErrCorruptBatch, base, length)
		}
		if size > len(batches) {
			break
		}
		batch := batches[:size:size]
		batches = batches[size:]
		var (
			ok  bool
			err error
		)
		if batch[batchMagicAt] != 2 || size < batchRecordsAt {
			// An older format: kafka-go reads it.
			if offset, ok, err = d.decodeWithKafkaGo(batch, offset, time.Time{}, emit); err != nil || !ok {
				return offset, err
			}
			continue
		}
		if crc32.Checksum(batch[batchAttributesAt:], castagnoli) != be.Uint32(batch[batchCRCAt:]) {
			return offset, fmt.Errorf("%w at offset %d: CRC mismatch", ErrCorruptBatch, base)
		}
		attrs := be.Uint16(batch[batchAttributesAt:])
		last := base + int64(int32(be.Uint32(batch[batchLastDeltaAt:])))
		if attrs&attrControl != 0 || last < offset {
			offset = max(offset, last+1)
			continue
		}
		// No producer writes a negative count, and kafka-go, which decodes
		// compressed batches, would panic making a slice that long.
		if count := int32(be.Uint32(batch[batchCountAt:])); count < 0 {
			return offset, fmt.Errorf("%w at offset %d: %d records", ErrCorruptBatch, base, count)
		}
		switch {
		case attrs&attrCompression == 0:
			offset, ok, err = d.records(batch, offset, emit)
		case attrs&attrLogAppendTime != 0:
			offset, ok, err = d.decodeWithKafkaGo(batch, offset, time.UnixMilli(int64(be.Uint64(batch[batchMaxTimeAt:]))), emit)
		default:
			offset, ok, err = d.decodeWithKafkaGo(batch, offset, time.Time{}, emit)
		}
		if err != nil || !ok {
			return offset, err
		}
		// A batch keeps its last offset when compaction removes its last
		// records, and an empty one stays for its producer's sake: the
		// next fetch begins after the batch either way, or it would get
		// the same batch again.
		offset = max(offset, last+1)
	}
	return offset, nil
}

// records emits the records of an uncompressed record batch at offset and
// after. It returns false if emit did.
func (d *Decoder) records(batch []byte, offset int64, emit func(envelope.Record) bool) (int64, bool, error) {
	be := binary.BigEndian
	base := int64(be.Uint64(batch))
	logAppendTime := be.Uint16(batch[batchAttributesAt:])&attrLogAppendTime != 0
	firstTs := int64(be.Uint64(batch[batchFirstTimeAt:]))
	maxTs := int64(be.Uint64(batch[batchMaxTimeAt:]))
	count := int(int32(be.Uint32(batch[batchCountAt:])))
	recs := batch[batchRecordsAt:]
	if count > len(recs)/minRecordSize {
		return offset, false, fmt.Errorf("%w at offset %d: %d records in %d bytes", ErrCorruptBatch, base, count, len(recs))
	}
	for range count {
		m, rest, err := d.record(recs, base, firstTs)
		if err != nil {
			return offset, false, fmt.Errorf("%w at offset %d: %v", ErrCorruptBatch, base, err)
		}
		recs = rest
		if m.Offset < offset {
			continue
		}
		if logAppendTime {
			m.Time = time.UnixMilli(maxTs)
		}
		if !emit(m) {
			return offset, false, nil
		}
		offset = m.Offset + 1
	}
	return offset, true, nil
}

// record cuts the first record out of b.
func (d *Decoder) record(b []byte, base, firstTs int64) (envelope.Record, []byte, error) {
	length, n := binary.Varint(b)
	if n <= 0 || length < 0 || int64(len(b)-n) < length {
		return envelope.Record{}, nil, errors.New("record length")
	}
	rest := b[n+int(length):]
	r := &fields{b: b[n : n+int(length)]}
	r.take(1) // attributes
	tsDelta := r.varint()
	offDelta := r.varint()
	m := envelope.Record{Topic: d.topic, Partition: d.partition, Offset: base + offDelta, Time: time.UnixMilli(firstTs + tsDelta)}
	m.Key = r.nullBytes()
	m.Value = r.nullBytes()
	if nh := r.varint(); nh > 0 && r.err == nil {
		if nh > int64(len(r.b)/2) { // each header takes 2 bytes at least
			return envelope.Record{}, nil, fmt.Errorf("%d headers in %d bytes", nh, len(r.b))
		}
		if int(nh) > cap(d.headers)-len(d.headers) {
			d.headers = make([]envelope.Header, 0, max(256, int(nh)))
		}
		at := len(d.headers)
		for range nh {
			k := r.nullBytes()
			key, ok := d.keys[string(k)]
			if !ok {
				key = string(k)
				if len(d.keys) < 64 {
					d.keys[key] = key
				}
			}
			d.headers = append(d.headers, envelope.Header{Key: key, Value: r.nullBytes()})
		}
		m.Headers = d.headers[at:len(d.headers):len(d.headers)]
	}
	if r.err != nil {
		return envelope.Record{}, nil, r.err
	}
	return m, rest, nil
}

// fields reads, in order, the fields of a fetch response (big-endian
// integers, strings of an int16 length) or of a record (varints, bytes of a
// varint length). After the first field that is cut short or malformed it
// reads zeros, and err says why.
type fields struct {
	b   []byte
	err error
}

var errCutShort = errors.New("cut short")

func (r *fields) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = errCutShort
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *fields) int16() int16 {
	if v := r.take(2); v != nil {
		return int16(binary.BigEndian.Uint16(v))
	}
	return 0
}

func (r *fields) int32() int32 {
	if v := r.take(4); v != nil {
		return int32(binary.BigEndian.Uint32(v))
	}
	return 0
}

func (r *fields) int64() int64 {
	if v := r.take(8); v != nil {
		return int64(binary.BigEndian.Uint64(v))
	}
	return 0
}

func (r *fields) string() string { return string(r.take(int(r.int16()))) }

// count reads the length of an array of what, whose elements take size
// bytes or more each. A length the bytes left cannot hold is an error at
// once: counted through after the first element cut short, 2^31-1 of them
// in 24 bytes cost some 15 seconds of CPU. A null array (-1) is empty.
func (r *fields) count(what string, size int) int {
	n := int(r.int32())
	if r.err == nil && n > len(r.b)/size {
		r.err = fmt.Errorf("%d %s in %d bytes", n, what, len(r.b))
		return 0
	}
	return max(n, 0)
}

func (r *fields) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errors.New("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

// nullBytes reads a length and as many bytes; length -1 is nil.
func (r *fields) nullBytes() []byte {
	n := r.varint()
	if n < 0 || r.err != nil {
		return nil
	}
	if n > int64(len(r.b)) {
		r.err = errCutShort
		return nil
	}
	return r.take(int(n))
}

// decodeWithKafkaGo emits the records of one batch that the fast path does
// not read, compressed or of an older format, as kafka-go decodes them,
// each at logAppendTime if it is not zero (kafka-go leaves a compressed
// batch's records at their own times). It returns false if emit did.
func (d *Decoder) decodeWithKafkaGo(batch []byte, offset int64, logAppendTime time.Time, emit func(envelope.Record) bool) (int64, bool, error) {
	var size [4]byte
	binary.BigEndian.PutUint32(size[:], uint32(len(batch)))
	var rs protocol.RecordSet
	if _, err := rs.ReadFrom(io.MultiReader(bytes.NewReader(size[:]), bytes.NewReader(batch))); err != nil {
		return offset, false, fmt.Errorf("%w: %v", ErrCorruptBatch, err)
	}
	if rs.Records == nil {
		return offset, true, nil
	}
	for {
		r, err := rs.Records.ReadRecord()
		if errors.Is(err, io.EOF) {
			return offset, true, nil
		}
		if err != nil {
			return offset, false, fmt.Errorf("%w: %v", ErrCorruptBatch, err)
		}
		if r.Offset < offset {
			closeBytes(r)
			continue
		}
		m := envelope.Record{Topic: d.topic, Partition: d.partition, Offset: r.Offset, Time: r.Time, Headers: d.copyHeaders(r.Headers)}
		if !logAppendTime.IsZero() {
			m.Time = logAppendTime
		}
		m.Key, d.slab = copyBytes(r.Key, d.slab)
		m.Value, d.slab = copyBytes(r.Value, d.slab)
		closeBytes(r)
		if !emit(m) {
			return offset, false, nil
		}
		offset = r.Offset + 1
	}
}

// slabSize is the memory the keys and values of records decoded by kafka-go
// are copied into, a slab at a time.
const slabSize = 64 << 10

// copyBytes copies b into the free end of slab, or a new slab if it does
// not fit, and returns the copy and what is left of the slab. A nil b (a
// null key or value) stays nil.
func copyBytes(b protocol.Bytes, slab []byte) ([]byte, []byte) {
	if b == nil {
		return nil, slab
	}
	n := b.Len()
	if n == 0 {
		return []byte{}, slab // empty, not null
	}
	if n > len(slab) {
		if n > slabSize/4 {
			out := make([]byte, n)
			_, _ = io.ReadFull(b, out)
			return out, slab
		}
		slab = make([]byte, slabSize)
	}
	out := slab[:n:n]
	_, _ = io.ReadFull(b, out)
	return out, slab[n:]
}

// closeBytes hands a record's key and value back to the pages they were
// read into.
func closeBytes(r *protocol.Record) {
	if r.Key != nil {
		r.Key.Close()
	}
	if r.Value != nil {
		r.Value.Close()
	}
}

// copyHeaders returns hs as the project's headers, in the decoder's array.
func (d *Decoder) copyHeaders(hs []protocol.Header) []envelope.Header {
	if len(hs) == 0 {
		return nil
	}
	if len(hs) > cap(d.headers)-len(d.headers) {
		d.headers = make([]envelope.Header, 0, max(256, len(hs)))
	}
	at := len(d.headers)
	for _, h := range hs {
		d.headers = append(d.headers, envelope.Header{Key: h.Key, Value: h.Value})
	}
	return d.headers[at:len(d.headers):len(d.headers)]
}
