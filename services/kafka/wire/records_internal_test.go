package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/fetch"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka/wire/wiretest"
)

// decodeAll decodes batches from offset and returns what it emitted and
// the offset to fetch next.
func decodeAll(t testing.TB, batches []byte, offset int64) ([]envelope.Record, int64, error) {
	t.Helper()
	var got []envelope.Record
	next, err := NewDecoder("t", 3).Decode(batches, offset, func(m envelope.Record) bool {
		got = append(got, m)
		return true
	})
	return got, next, err
}

// sameRecords fails t unless got are want from offset first on, as a
// reader of topic "t", partition 3 gives them: keys, values and header
// values alike null or empty, times to the millisecond.
func sameRecords(t testing.TB, got []envelope.Record, want []kafka.Message, first int64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i, m := range got {
		w := want[i]
		if m.Topic != "t" || m.Partition != 3 || m.Offset != first+int64(i) {
			t.Errorf("record %d at %s/%d@%d, want t/3@%d", i, m.Topic, m.Partition, m.Offset, first+int64(i))
		}
		if !m.Time.Equal(w.Time.Truncate(time.Millisecond)) && !(w.Time.Before(time.Unix(0, 0)) && m.Time.UnixMilli() == w.Time.UnixMilli()) {
			t.Errorf("record %d at %v, want %v", i, m.Time, w.Time)
		}
		if !sameBytes(m.Key, w.Key) || !sameBytes(m.Value, w.Value) {
			t.Errorf("record %d: key %q value %q, want %q %q", i, m.Key, m.Value, w.Key, w.Value)
		}
		if len(m.Headers) != len(w.Headers) {
			t.Fatalf("record %d: %d headers, want %d", i, len(m.Headers), len(w.Headers))
		}
		for j, h := range m.Headers {
			if h.Key != w.Headers[j].Key || !sameBytes(h.Value, w.Headers[j].Value) {
				t.Errorf("record %d header %d: %q=%q, want %q=%q", i, j, h.Key, h.Value, w.Headers[j].Key, w.Headers[j].Value)
			}
		}
	}
}

// messagesFrom is outputsFrom as kafka-go messages.
func messagesFrom(data []byte) []kafka.Message { return messages(outputsFrom(data)) }

// messages are outs as kafka-go messages.
func messages(outs []envelope.Output) []kafka.Message {
	msgs := make([]kafka.Message, len(outs))
	for i, o := range outs {
		msgs[i] = kafka.Message{Key: o.Key, Value: o.Value, Time: o.Time}
		for _, h := range o.Headers {
			msgs[i].Headers = append(msgs[i].Headers, kafka.Header{Key: h.Key, Value: h.Value})
		}
	}
	return msgs
}

// kmsgBatch is a record batch of msgs from offset base on as franz-go's
// kmsg writes it, for a fetch response.
func kmsgBatch(base int64, msgs []kafka.Message) []byte {
	first := msgs[0].Time.UnixMilli()
	rb := kmsg.RecordBatch{FirstOffset: base, PartitionLeaderEpoch: -1, Magic: 2, LastOffsetDelta: int32(len(msgs) - 1),
		FirstTimestamp: first, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: int32(len(msgs))}
	for i, m := range msgs {
		r := kmsg.Record{TimestampDelta64: m.Time.UnixMilli() - first, OffsetDelta: int32(i), Key: m.Key, Value: m.Value}
		rb.MaxTimestamp = max(rb.MaxTimestamp, m.Time.UnixMilli())
		for _, h := range m.Headers {
			r.Headers = append(r.Headers, kmsg.Header{Key: h.Key, Value: h.Value})
		}
		body := r.AppendTo(nil)
		r.Length = int32(len(body) - varintLen(0))
		rb.Records = append(rb.Records, r.AppendTo(nil)...)
	}
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[batchLengthAt:], uint32(len(b)-batchLengthAt-4))
	binary.BigEndian.PutUint32(b[batchCRCAt:], crc32Of(b[batchAttributesAt:]))
	return b
}

// sameBytes is bytes.Equal that tells nil from empty.
func sameBytes(a, b []byte) bool { return (a == nil) == (b == nil) && bytes.Equal(a, b) }

func FuzzDecodeBatches(f *testing.F) {
	f.Add([]byte{}, uint8(0))
	f.Add([]byte{3, 0x11, 5, 0x26, 1, 2, 3, 0x7b, 0xff, 9, 200, 7, 0x80, 0, 30}, uint8(2))
	f.Add(bytes.Repeat([]byte{0xfe, 0x81}, 40), uint8(5))
	f.Fuzz(func(t *testing.T, data []byte, from uint8) {
		first := messagesFrom(data)
		second := messagesFrom(append([]byte{byte(len(data))}, data...))
		const base = 1000
		batches := wiretest.Fetched(t, base, 0, first, second)
		all := append(append([]kafka.Message(nil), first...), second...)
		offset := base + int64(from)%int64(len(all)+1)
		got, next, err := decodeAll(t, batches, offset)
		if err != nil {
			t.Fatal(err)
		}
		sameRecords(t, got, all[offset-base:], offset)
		if want := int64(base + len(all)); next != want {
			t.Errorf("next offset %d, want %d", next, want)
		}
		// Batches franz-go's kmsg writes for the same records decode the same.
		got, next, err = decodeAll(t, append(kmsgBatch(base, first), kmsgBatch(base+int64(len(first)), second)...), offset)
		if err != nil {
			t.Fatal(err)
		}
		sameRecords(t, got, all[offset-base:], offset)
		if want := int64(base + len(all)); next != want {
			t.Errorf("kmsg: next offset %d, want %d", next, want)
		}
		// What kafka-go decodes from the same bytes, compressed, is the same.
		got, next, err = decodeAll(t, wiretest.Fetched(t, base, protocol.Gzip, first, second), offset)
		if err != nil {
			t.Fatal(err)
		}
		sameRecords(t, got, all[offset-base:], offset)
		if want := int64(base + len(all)); next != want {
			t.Errorf("compressed: next offset %d, want %d", next, want)
		}
	})
}

func TestDecodeLeavesABatchCutShortForTheNextFetch(t *testing.T) {
	a := []kafka.Message{{Value: []byte("a")}, {Value: []byte("b")}}
	b := []kafka.Message{{Value: []byte("c")}}
	batches := wiretest.Fetched(t, 7, 0, a, b)
	for cut := 1; cut < len(wiretest.Fetched(t, 0, 0, b)); cut++ {
		got, next, err := decodeAll(t, batches[:len(batches)-cut], 7)
		if err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		if len(got) != 2 || next != 9 {
			t.Fatalf("cut %d: %d records, next %d; want the first batch's 2, next 9", cut, len(got), next)
		}
	}
}

func TestDecodeSkipsTransactionMarkers(t *testing.T) {
	marker := protocol.NewControlBatch(protocol.ControlRecord{Offset: 0, Time: time.Now(), Version: 0, Type: 1})
	var b bytes.Buffer
	rs := protocol.RecordSet{Version: 2, Attributes: protocol.Control | protocol.Transactional, Records: marker}
	if _, err := rs.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	ctl := b.Bytes()[4:]
	binary.BigEndian.PutUint64(ctl, 12)
	data := append(wiretest.Fetched(t, 10, 0, []kafka.Message{{Value: []byte("x")}, {Value: []byte("y")}}), ctl...)
	data = append(data, wiretest.Fetched(t, 13, 0, []kafka.Message{{Value: []byte("z")}})...)
	got, next, err := decodeAll(t, data, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || string(got[2].Value) != "z" || got[2].Offset != 13 || next != 14 {
		t.Fatalf("%d records, next %d; want x, y, z at 13, next 14", len(got), next)
	}
	// A fetch that gets the marker alone moves past it.
	if got, next, err := decodeAll(t, ctl, 12); err != nil || len(got) != 0 || next != 13 {
		t.Fatalf("marker alone: %d records, next %d, %v; want none, next 13", len(got), next, err)
	}
}

func TestDecodeRefusesACorruptBatch(t *testing.T) {
	data := wiretest.Fetched(t, 0, 0, []kafka.Message{{Key: []byte("k"), Value: []byte("order")}})
	data[len(data)-3] ^= 0x40 // in the value
	got, next, err := decodeAll(t, data, 0)
	if !errors.Is(err, ErrCorruptBatch) || len(got) != 0 || next != 0 {
		t.Fatalf("%d records, next %d, %v; want none and a corrupt batch", len(got), next, err)
	}
}

func TestDecodeGivesLogAppendTimeToEveryRecord(t *testing.T) {
	at := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	data := wiretest.Fetched(t, 0, 0, []kafka.Message{{Time: at.Add(-time.Hour), Value: []byte("a")}, {Time: at, Value: []byte("b")}})
	// The broker sets the attribute and the batch's max time: the CRC is
	// computed again, as the broker does.
	binary.BigEndian.PutUint16(data[batchAttributesAt:], attrLogAppendTime)
	binary.BigEndian.PutUint64(data[batchMaxTimeAt:], uint64(at.Add(time.Minute).UnixMilli()))
	binary.BigEndian.PutUint32(data[batchCRCAt:], crc32Of(data[batchAttributesAt:]))
	// So does a compressed batch, which kafka-go decodes.
	zipped := wiretest.Fetched(t, 2, protocol.Gzip, []kafka.Message{{Time: at.Add(-time.Hour), Value: []byte("c")}})
	binary.BigEndian.PutUint16(zipped[batchAttributesAt:], attrLogAppendTime|uint16(protocol.Gzip))
	binary.BigEndian.PutUint64(zipped[batchMaxTimeAt:], uint64(at.Add(time.Minute).UnixMilli()))
	binary.BigEndian.PutUint32(zipped[batchCRCAt:], crc32Of(zipped[batchAttributesAt:]))
	got, _, err := decodeAll(t, append(data, zipped...), 0)
	if err != nil || len(got) != 3 {
		t.Fatalf("%d records, %v; want 3", len(got), err)
	}
	for _, m := range got {
		if !m.Time.Equal(at.Add(time.Minute)) {
			t.Errorf("record %d at %v, want the log's %v", m.Offset, m.Time, at.Add(time.Minute))
		}
	}
}

func TestDecodeReadsMessageSetsOfOlderFormats(t *testing.T) {
	msgs := []kafka.Message{{Key: []byte("k1"), Value: []byte("v1"), Time: time.UnixMilli(1764480000000)}, {Value: []byte("v2"), Time: time.UnixMilli(1764480000001)}}
	records := make([]kafka.Record, len(msgs))
	for i, m := range msgs {
		records[i] = kafka.Record{Offset: int64(i), Time: m.Time, Key: kafka.NewBytes(m.Key), Value: kafka.NewBytes(m.Value)}
	}
	var b bytes.Buffer
	rs := protocol.RecordSet{Version: 1, Records: kafka.NewRecordReader(records...)}
	if _, err := rs.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	got, next, err := decodeAll(t, b.Bytes()[4:], 0)
	if err != nil {
		t.Fatal(err)
	}
	sameRecords(t, got, msgs, 0)
	if next != 2 {
		t.Errorf("next offset %d, want 2", next)
	}
}

func crc32Of(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// TestFetchRequestsAreKafkaGosAndFranzGos checks every version's request
// against two codecs: kafka-go's, header and all, and franz-go's kmsg, the
// body after the header.
func TestFetchRequestsAreKafkaGosAndFranzGos(t *testing.T) {
	const maxWait, maxBytes = 250 * time.Millisecond, 256 << 10
	for v := int16(MinFetchVersion); v <= MaxFetchVersion; v++ {
		var want bytes.Buffer
		err := protocol.WriteRequest(&want, v, 77, "orders", &fetch.Request{
			ReplicaID: -1, MaxWaitTime: int32(maxWait / time.Millisecond), MinBytes: 1, MaxBytes: maxBytes,
			SessionEpoch: -1,
			Topics: []fetch.RequestTopic{{Topic: "orders_retry_1", Partitions: []fetch.RequestPartition{{
				Partition: 5, CurrentLeaderEpoch: -1, FetchOffset: 123456789, LogStartOffset: -1, PartitionMaxBytes: maxBytes,
			}}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		q := FetchRequest{Version: v, Correlation: 77, Topic: "orders_retry_1", Partition: 5, Offset: 123456789, MaxWait: maxWait, MaxBytes: maxBytes}
		got := q.Append([]byte("x"))
		if !bytes.Equal(got[1:], want.Bytes()) {
			t.Errorf("v%d:\n got %x\nwant %x", v, got[1:], want.Bytes())
		}
		k := kmsg.NewPtrFetchRequest()
		k.Version, k.ReplicaID, k.MaxWaitMillis, k.MinBytes, k.MaxBytes, k.SessionEpoch = v, -1, int32(maxWait/time.Millisecond), 1, maxBytes, -1
		kt := kmsg.NewFetchRequestTopic()
		kt.Topic = "orders_retry_1"
		kp := kmsg.NewFetchRequestTopicPartition()
		kp.Partition, kp.CurrentLeaderEpoch, kp.FetchOffset, kp.LogStartOffset, kp.PartitionMaxBytes = 5, -1, 123456789, -1, maxBytes
		kt.Partitions = append(kt.Partitions, kp)
		k.Topics = append(k.Topics, kt)
		header := 1 + 4 + 2 + 2 + 4 + 2 + len("orders")
		if body := k.AppendTo(nil); !bytes.Equal(got[header:], body) {
			t.Errorf("v%d, kmsg:\n got %x\nwant %x", v, got[header:], body)
		}
	}
}

func TestFetchResponsesOfEveryVersionAreRead(t *testing.T) {
	msgs := []kafka.Message{{Key: []byte("1006"), Value: []byte("order"), Headers: []kafka.Header{{Key: "x-retry-attempts", Value: []byte("1")}},
		Time: time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)}}
	// kafka-go writes record sets from offset 0 on.
	recordSet := func() protocol.RecordSet {
		return protocol.RecordSet{Version: 2, Records: kafka.NewRecordReader(kafka.Record{
			Time: msgs[0].Time, Key: kafka.NewBytes(msgs[0].Key), Value: kafka.NewBytes(msgs[0].Value), Headers: msgs[0].Headers,
		})}
	}
	for v := int16(MinFetchVersion); v <= MaxFetchVersion; v++ {
		for _, code := range []int16{0, int16(kafka.OffsetOutOfRange)} {
			res := &fetch.Response{Topics: []fetch.ResponseTopic{
				{Topic: "other", Partitions: []fetch.ResponsePartition{{Partition: 3, ErrorCode: int16(kafka.NotLeaderForPartition), PreferredReadReplica: -1, RecordSet: recordSet()}}},
				{Topic: "t", Partitions: []fetch.ResponsePartition{
					{Partition: 2, AbortedTransactions: []fetch.ResponseTransaction{{ProducerID: 9, FirstOffset: 1}}, PreferredReadReplica: 1, RecordSet: recordSet()},
					{Partition: 3, ErrorCode: code, HighWatermark: 1, AbortedTransactions: []fetch.ResponseTransaction{{ProducerID: 8, FirstOffset: 2}}, PreferredReadReplica: -1, RecordSet: recordSet()},
				}},
			}}
			var b bytes.Buffer
			if err := protocol.WriteResponse(&b, v, 77, res); err != nil {
				t.Fatal(err)
			}
			got, err := ParseFetchResponse(b.Bytes()[4:], v, 77, "t", 3)
			if code != 0 {
				if !errors.Is(err, ErrorCode(kafka.OffsetOutOfRange)) {
					t.Errorf("v%d: %v, want the partition's error", v, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("v%d: %v", v, err)
			}
			if got.Throttle != 0 || got.Replica != -1 {
				t.Errorf("v%d: throttle %v, preferred read replica %d; want none", v, got.Throttle, got.Replica)
			}
			records, next, err := decodeAll(t, got.Records, 0)
			if err != nil {
				t.Fatalf("v%d: %v", v, err)
			}
			sameRecords(t, records, msgs, 0)
			if next != 1 {
				t.Errorf("v%d: next %d, want 1", v, next)
			}
		}
		var b bytes.Buffer
		if err := protocol.WriteResponse(&b, v, 76, &fetch.Response{}); err != nil {
			t.Fatal(err)
		}
		if _, err := ParseFetchResponse(b.Bytes()[4:], v, 77, "t", 3); err == nil {
			t.Errorf("v%d: the answer to another request was taken", v)
		}
		// A broker throttling the client answers with no topic at all.
		b.Reset()
		if err := protocol.WriteResponse(&b, v, 77, &fetch.Response{ThrottleTimeMs: 1500}); err != nil {
			t.Fatal(err)
		}
		if got, err := ParseFetchResponse(b.Bytes()[4:], v, 77, "t", 3); err != nil || got.Records != nil || got.Throttle != 1500*time.Millisecond {
			t.Errorf("v%d, throttled: %d bytes of records, throttle %v, %v; want none, 1.5s, no error", v, len(got.Records), got.Throttle, err)
		}
		if v < 11 {
			continue
		}
		// kafka-go writes no partition without records: franz-go does.
		res := kmsg.NewPtrFetchResponse()
		res.Version = v
		rt := kmsg.NewFetchResponseTopic()
		rt.Topic = "t"
		rp := kmsg.NewFetchResponseTopicPartition()
		rp.Partition, rp.PreferredReadReplica = 3, 2
		rt.Partitions = append(rt.Partitions, rp)
		res.Topics = append(res.Topics, rt)
		if got, err := ParseFetchResponse(res.AppendTo([]byte{0, 0, 0, 77}), v, 77, "t", 3); err != nil || got.Replica != 2 || got.Records != nil {
			t.Errorf("v%d: preferred read replica %d, %d bytes of records, %v; want 2 and none", v, got.Replica, len(got.Records), err)
		}
	}
}

func TestDecodeMovesPastABatchsLastOffset(t *testing.T) {
	// Offsets 100 to 102 are left of 100 to 109, and of 110 to 111 none.
	data := wiretest.Compacted(t, wiretest.Fetched(t, 100, 0, []kafka.Message{{Value: []byte("a")}, {Value: []byte("b")}, {Value: []byte("c")}}), 9)
	data = append(data, wiretest.Compacted(t, wiretest.Fetched(t, 110, 0, []kafka.Message{{Value: []byte("gone")}}), 1)[:batchCountAt]...)
	data = append(data, 0, 0, 0, 0) // no records
	binary.BigEndian.PutUint32(data[len(data)-batchRecordsAt+batchLengthAt:], batchRecordsAt-batchLengthAt-4)
	binary.BigEndian.PutUint32(data[len(data)-batchRecordsAt+batchCRCAt:], crc32Of(data[len(data)-batchRecordsAt+batchAttributesAt:]))
	for _, c := range []struct {
		from, records int64
	}{{100, 3}, {103, 0}, {110, 0}} {
		got, next, err := decodeAll(t, data, c.from)
		if err != nil || int64(len(got)) != c.records || next != 112 {
			t.Errorf("from %d: %d records, next %d, %v; want %d, next 112", c.from, len(got), next, err, c.records)
		}
	}
}

// hostileResponse is a fetch response of the given version, correlation id
// 77, whose array of topics claims n elements, followed by tail.
func hostileResponse(version int16, n uint32, tail ...byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, 77) // correlation id
	b = binary.BigEndian.AppendUint32(b, 0)     // throttle time
	if version >= 7 {
		b = binary.BigEndian.AppendUint16(b, 0) // error code
		b = binary.BigEndian.AppendUint32(b, 0) // session id
	}
	b = binary.BigEndian.AppendUint32(b, n)
	return append(b, tail...)
}

// A count no bytes that follow could hold is refused at once, not counted
// through: 2^31-1 topics in a few bytes cost tens of seconds of CPU.
func TestFetchResponsesWithHostileCountsAreRefused(t *testing.T) {
	const most = 1<<31 - 1
	onePartition := func(n uint32) []byte { // topic "t" with n partitions
		return binary.BigEndian.AppendUint32([]byte{0, 1, 't'}, n)
	}
	for v := int16(MinFetchVersion); v <= MaxFetchVersion; v++ {
		partition := make([]byte, 4+2+8+8) // id, error, high watermark, last stable offset
		if v >= 5 {
			partition = append(partition, make([]byte, 8)...) // log start offset
		}
		partition = binary.BigEndian.AppendUint32(partition, most) // aborted transactions
		for _, c := range []struct {
			what string
			res  []byte
		}{
			{"topics", hostileResponse(v, most, make([]byte, 12)...)},
			{"partitions", hostileResponse(v, 1, append(onePartition(most), make([]byte, 12)...)...)},
			{"aborted transactions", hostileResponse(v, 1, append(onePartition(1), append(partition, make([]byte, 12)...)...)...)},
		} {
			_, err := ParseFetchResponse(c.res, v, 77, "t", 0)
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%d %s", most, c.what)) {
				t.Errorf("v%d, %d %s in %d bytes: %v, want an error that says so", v, most, c.what, len(c.res), err)
			}
		}
	}
}

// A record batch that claims more records than its bytes hold, or a record
// more headers, is corrupt, whatever it holds before.
func TestDecodeRefusesHostileCounts(t *testing.T) {
	data := wiretest.Fetched(t, 0, 0, []kafka.Message{{Value: []byte("a")}, {Value: []byte("b"), Headers: []kafka.Header{{Key: "k", Value: []byte("v")}}}})
	batch := bytes.Clone(data)
	binary.BigEndian.PutUint32(batch[batchCountAt:], 1<<31-1)
	binary.BigEndian.PutUint32(batch[batchCRCAt:], crc32Of(batch[batchAttributesAt:]))
	got, next, err := decodeAll(t, batch, 0)
	if !errors.Is(err, ErrCorruptBatch) || !strings.Contains(err.Error(), "2147483647 records") || len(got) != 0 || next != 0 {
		t.Errorf("2^31-1 records: %d records, next %d, %v; want none and a corrupt batch of 2147483647 records", len(got), next, err)
	}
	// The second record's header count, the varint 1 (2) before its key
	// "k" (2 'k'), becomes 4 (8): the 4 bytes left hold 2 at most.
	headers := bytes.Clone(data)
	at := bytes.LastIndex(headers, []byte{2, 2, 'k'})
	headers[at] = 8
	binary.BigEndian.PutUint32(headers[batchCRCAt:], crc32Of(headers[batchAttributesAt:]))
	if _, _, err := decodeAll(t, headers, 0); !errors.Is(err, ErrCorruptBatch) || !strings.Contains(err.Error(), "4 headers") {
		t.Errorf("4 headers in 4 bytes: %v, want a corrupt batch of 4 headers", err)
	}
	// kafka-go, which decodes compressed batches, makes a slice of the
	// count before it reads a record: a negative count would panic.
	zipped := wiretest.Fetched(t, 0, protocol.Gzip, []kafka.Message{{Value: []byte("a")}})
	binary.BigEndian.PutUint32(zipped[batchCountAt:], 0xffffffff)
	binary.BigEndian.PutUint32(zipped[batchCRCAt:], crc32Of(zipped[batchAttributesAt:]))
	if _, _, err := decodeAll(t, zipped, 0); !errors.Is(err, ErrCorruptBatch) {
		t.Errorf("-1 records, compressed: %v, want a corrupt batch", err)
	}
}

// Whatever bytes come as a fetch response, reading them and the records in
// them ends, without a panic, in time linear in their length.
func FuzzParseFetchResponse(f *testing.F) {
	for v := int16(MinFetchVersion); v <= MaxFetchVersion; v++ {
		f.Add(hostileResponse(v, 1<<31-1, make([]byte, 12)...), uint8(v))
		f.Add(hostileResponse(v, 1, 0, 1, 't', 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0), uint8(v))
		var b bytes.Buffer
		res := &fetch.Response{Topics: []fetch.ResponseTopic{{Topic: "t", Partitions: []fetch.ResponsePartition{{
			AbortedTransactions: []fetch.ResponseTransaction{{ProducerID: 9, FirstOffset: 1}},
			RecordSet: protocol.RecordSet{Version: 2, Records: kafka.NewRecordReader(kafka.Record{
				Value: kafka.NewBytes([]byte("order")), Headers: []kafka.Header{{Key: "k", Value: []byte("v")}},
			})},
		}}}}}
		if err := protocol.WriteResponse(&b, v, 77, res); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes()[4:], uint8(v))
	}
	f.Fuzz(func(t *testing.T, res []byte, version uint8) {
		v := MinFetchVersion + int16(version)%(MaxFetchVersion-MinFetchVersion+1)
		got, err := ParseFetchResponse(res, v, 77, "t", 0)
		if err != nil {
			return
		}
		_, _, _ = decodeAll(t, got.Records, 0)
	})
}
