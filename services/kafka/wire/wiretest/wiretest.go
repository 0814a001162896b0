// Package wiretest makes the bytes of record batches for tests of the
// Kafka layer, with kafka-go's codec, independent of package wire.
package wiretest

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
)

// Where a record batch keeps its last offset delta, its CRC and what the CRC
// covers, from its base offset on.
const (
	lastDeltaAt  = 23
	crcAt        = 17
	attributesAt = 21
)

// Fetched is what a fetch response carries for batches written as kafka-go
// writes them, the first from offset base on: each without the length a
// produce request puts first, with its base offset set.
func Fetched(t testing.TB, base int64, attrs protocol.Attributes, batches ...[]kafka.Message) []byte {
	t.Helper()
	var out []byte
	for _, msgs := range batches {
		records := make([]kafka.Record, len(msgs))
		for i, m := range msgs {
			records[i] = kafka.Record{Time: m.Time, Key: kafka.NewBytes(m.Key), Value: kafka.NewBytes(m.Value), Headers: m.Headers}
		}
		var b bytes.Buffer
		rs := protocol.RecordSet{Version: 2, Attributes: attrs, Records: kafka.NewRecordReader(records...)}
		if _, err := rs.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		batch := b.Bytes()[4:]
		binary.BigEndian.PutUint64(batch, uint64(base)) // not covered by the CRC
		out = append(out, batch...)
		base += int64(len(msgs))
	}
	return out
}

// Compacted is the one batch data with its last offset delta set to
// lastDelta, as compaction leaves a batch whose last records it removed.
func Compacted(t testing.TB, data []byte, lastDelta uint32) []byte {
	t.Helper()
	binary.BigEndian.PutUint32(data[lastDeltaAt:], lastDelta)
	binary.BigEndian.PutUint32(data[crcAt:], CRC(data[attributesAt:]))
	return data
}

// CRC is the CRC-32C a record batch carries of b.
func CRC(b []byte) uint32 { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }

// Produced is what kafka-go writes for msgs in a produce request: the
// length of the batch, then the batch.
func Produced(t testing.TB, msgs []kafka.Message) []byte {
	t.Helper()
	records := make([]kafka.Record, len(msgs))
	for i, m := range msgs {
		records[i] = kafka.Record{Time: m.Time, Key: kafka.NewBytes(m.Key), Value: kafka.NewBytes(m.Value), Headers: m.Headers}
	}
	var b bytes.Buffer
	rs := protocol.RecordSet{Version: 2, Records: kafka.NewRecordReader(records...)}
	if _, err := rs.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
