package wire

import (
	"bytes"
	"testing"
	"time"

	"github.com/segmentio/kafka-go/protocol"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka/wire/wiretest"
)

// outputsFrom makes records of every shape a batch can hold out of data:
// null, empty and long keys and values (lengths of one and two varint
// bytes), up to six headers with null, empty or long values, and times
// before, after or equal to the first record's, or before 1970.
func outputsFrom(data []byte) []envelope.Output {
	next := func() byte {
		if len(data) == 0 {
			return 0
		}
		c := data[0]
		data = data[1:]
		return c
	}
	bytesOf := func(c byte) []byte {
		switch c % 4 {
		case 0:
			return nil
		case 1:
			return []byte{}
		case 2:
			return bytes.Repeat([]byte{next()}, int(next()))
		default:
			return bytes.Repeat([]byte{next(), 0xff}, 40+int(next()))
		}
	}
	base := time.Date(2026, 11, 29, 18, 14, 46, 884268796, time.UTC)
	outs := make([]envelope.Output, 1+int(next())%9)
	for i := range outs {
		shape := next()
		m := envelope.Output{Time: base.Add(time.Duration(int8(next())) * 7919 * time.Microsecond)}
		if shape&0x80 != 0 {
			m.Time = time.Date(1969, 12, 31, 23, 59, 59, int(next())*1000000, time.UTC)
		}
		m.Key = bytesOf(shape)
		m.Value = bytesOf(shape >> 2)
		for range int(shape>>4) % 7 {
			c := next()
			m.Headers = append(m.Headers, envelope.Header{Key: string(bytes.Repeat([]byte{'h', c}, int(c%5))), Value: bytesOf(c >> 3)})
		}
		outs[i] = m
	}
	return outs
}

// evensThenOdds is 0, 2, 4, ..., then 1, 3, 5, ... below n.
func evensThenOdds(n int) []int32 {
	var idx []int32
	for _, first := range []int{0, 1} {
		for i := first; i < n; i += 2 {
			idx = append(idx, int32(i))
		}
	}
	return idx
}

// FuzzAppendBatch checks AppendBatch against two codecs: its bytes are
// those kafka-go writes for the same records, and franz-go's kmsg reads
// every field back.
func FuzzAppendBatch(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{3, 0x11, 5, 0x26, 1, 2, 3, 0x7b, 0xff, 9, 200, 7, 0x80, 0, 30})
	f.Add(bytes.Repeat([]byte{0xfe, 0x81}, 40))
	f.Fuzz(func(t *testing.T, data []byte) {
		outs := outputsFrom(data)
		idx := evensThenOdds(len(outs))
		var inOrder []envelope.Output
		for _, i := range idx {
			inOrder = append(inOrder, outs[i])
		}
		want := wiretest.Produced(t, messages(inOrder))
		prefix := []byte("earlier requests")
		got := AppendBatch(prefix, outs, idx, time.Now())
		if !bytes.Equal(got[:len(prefix)], []byte("earlier requests")) || !bytes.Equal(got[len(prefix):], want) {
			t.Fatalf("batch differs from kafka-go's:\n got %x\nwant %x", got[len(prefix):], want)
		}
		sameAsKmsg(t, got[len(prefix)+4:], inOrder)
	})
}

// sameAsKmsg checks that franz-go's kmsg reads batch, a record batch
// without the length a produce request puts first, as outs.
func sameAsKmsg(t *testing.T, batch []byte, outs []envelope.Output) {
	t.Helper()
	var rb kmsg.RecordBatch
	if err := rb.ReadFrom(batch); err != nil {
		t.Fatalf("kmsg: %v", err)
	}
	if rb.Magic != 2 || rb.Attributes != 0 || rb.ProducerID != -1 || rb.NumRecords != int32(len(outs)) ||
		rb.LastOffsetDelta != int32(len(outs)-1) || rb.FirstTimestamp != millis(outs[0].Time) {
		t.Fatalf("kmsg reads the batch header as %+v", rb)
	}
	if crc := int32(crc32Of(batch[batchAttributesAt:])); rb.CRC != crc {
		t.Fatalf("CRC %x, kmsg reads %x", crc, rb.CRC)
	}
	recs := rb.Records
	for i, o := range outs {
		var r kmsg.Record
		if err := r.ReadFrom(recs); err != nil {
			t.Fatalf("kmsg: record %d: %v", i, err)
		}
		recs = recs[varintLen(int64(r.Length))+int(r.Length):]
		if r.OffsetDelta != int32(i) || rb.FirstTimestamp+r.TimestampDelta64 != millis(o.Time) || !sameBytes(r.Key, o.Key) || !sameBytes(r.Value, o.Value) || len(r.Headers) != len(o.Headers) {
			t.Fatalf("record %d: kmsg reads %+v, want %+v", i, r, o)
		}
		for k, h := range o.Headers {
			if r.Headers[k].Key != h.Key || !sameBytes(r.Headers[k].Value, h.Value) {
				t.Fatalf("record %d header %d: kmsg reads %+v, want %+v", i, k, r.Headers[k], h)
			}
		}
	}
	if len(recs) != 0 {
		t.Fatalf("%d bytes after the last record", len(recs))
	}
}

func TestAppendBatchGivesRecordsWithoutATimeNow(t *testing.T) {
	now := time.Date(2026, 11, 30, 4, 5, 6, 789654321, time.UTC)
	outs := []envelope.Output{{Value: []byte("a")}, {Time: now.Add(-time.Second), Value: []byte("b")}, {Value: []byte("c")}}
	b := AppendBatch(nil, outs, []int32{0, 1, 2}, now)
	var rs protocol.RecordSet
	if _, err := rs.ReadFrom(bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	for i := range outs {
		r, err := rs.Records.ReadRecord()
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		want := now
		if !outs[i].Time.IsZero() {
			want = outs[i].Time
		}
		if want = want.Truncate(time.Millisecond); !r.Time.Equal(want) {
			t.Errorf("record %d at %v, want %v", i, r.Time, want)
		}
	}
}
