package wire

import (
	"encoding/binary"
	"hash/crc32"
	"time"

	"github.com/orderflow/orders/services/envelope"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// BatchHeaderLen is the length of a record batch before its records, with
// the length of the whole that a produce request puts first.
const BatchHeaderLen = 4 + 61

// AppendBatch appends the records outs[idx[i]] as a produce request carries
// them: the length of the batch, then a record batch of magic 2 without
// compression, transaction or producer id. A record without a time gets
// now. The bytes are those kafka-go's RecordSet of version 2 writes for the
// same records, and those franz-go's kmsg reads back (FuzzAppendBatch).
// idx is not empty.
func AppendBatch(b []byte, outs []envelope.Output, idx []int32, now time.Time) []byte {
	start := len(b)
	var header [BatchHeaderLen]byte
	b = append(b, header[:]...)
	nowMs := now.UnixMilli()
	var firstTs, maxTs int64
	for n, i := range idx {
		m := &outs[i]
		ts := millis(m.Time)
		if ts == 0 {
			ts = nowMs
		}
		if n == 0 {
			firstTs = ts
		}
		maxTs = max(maxTs, ts)
		delta := ts - firstTs
		size := 1 + varintLen(delta) + varintLen(int64(n)) + nullBytesLen(m.Key) + nullBytesLen(m.Value) + varintLen(int64(len(m.Headers)))
		for _, h := range m.Headers {
			size += varintLen(int64(len(h.Key))) + len(h.Key) + nullBytesLen(h.Value)
		}
		b = binary.AppendVarint(b, int64(size))
		b = append(b, 0) // record attributes
		b = binary.AppendVarint(b, delta)
		b = binary.AppendVarint(b, int64(n))
		b = appendNullBytes(b, m.Key)
		b = appendNullBytes(b, m.Value)
		b = binary.AppendVarint(b, int64(len(m.Headers)))
		for _, h := range m.Headers {
			b = binary.AppendVarint(b, int64(len(h.Key)))
			b = append(b, h.Key...)
			b = appendNullBytes(b, h.Value)
		}
	}
	h := b[start : start+BatchHeaderLen]
	be := binary.BigEndian
	be.PutUint32(h[0:], uint32(len(b)-start-4)) // length of what follows
	be.PutUint64(h[4:], 0)                      // base offset
	be.PutUint32(h[12:], uint32(len(b)-start-16))
	be.PutUint32(h[16:], 0xffffffff) // partition leader epoch
	h[20] = 2                        // magic
	// h[21:25] is the CRC, h[25:27] the attributes (0)
	be.PutUint32(h[27:], uint32(len(idx)-1)) // last offset delta
	be.PutUint64(h[31:], uint64(firstTs))
	be.PutUint64(h[39:], uint64(maxTs))
	be.PutUint64(h[47:], 0xffffffffffffffff) // producer id
	be.PutUint16(h[55:], 0xffff)             // producer epoch
	be.PutUint32(h[57:], 0xffffffff)         // base sequence
	be.PutUint32(h[61:], uint32(len(idx)))
	be.PutUint32(h[21:], crc32.Checksum(b[start+25:], castagnoli))
	return b
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

// appendNullBytes appends v's length and bytes, or -1 for nil.
func appendNullBytes(b, v []byte) []byte {
	if v == nil {
		return binary.AppendVarint(b, -1)
	}
	b = binary.AppendVarint(b, int64(len(v)))
	return append(b, v...)
}

// RecordBound bounds the size of o in a record batch: every varint at its
// longest.
func RecordBound(o *envelope.Output) int {
	n := 5 + 1 + 10 + 5 + 5 + len(o.Key) + 5 + len(o.Value) + 5
	for _, h := range o.Headers {
		n += 5 + len(h.Key) + 5 + len(h.Value)
	}
	return n
}
