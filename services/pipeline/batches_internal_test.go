package pipeline

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/apiversions"
	"github.com/segmentio/kafka-go/protocol/produce"
	"github.com/segmentio/kafka-go/protocol/rawproduce"
	"go.uber.org/zap"

	"github.com/orderflow/orders/services/broker"
	"github.com/orderflow/orders/services/testkit"
)

// recordsFrom makes records of every shape a batch can hold out of data:
// null, empty and long keys and values (lengths of one and two varint
// bytes), up to six headers with null, empty or long values, and times
// before, after or equal to the first record's, or before 1970.
func recordsFrom(data []byte) []kafka.Record {
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
	records := make([]kafka.Record, 1+int(next())%9)
	for i := range records {
		shape := next()
		r := kafka.Record{Time: base.Add(time.Duration(int8(next())) * 7919 * time.Microsecond)}
		if shape&0x80 != 0 {
			r.Time = time.Date(1969, 12, 31, 23, 59, 59, int(next())*1000000, time.UTC)
		}
		if k := bytesOf(shape); k != nil {
			r.Key = kafka.NewBytes(k)
		}
		if v := bytesOf(shape >> 2); v != nil {
			r.Value = kafka.NewBytes(v)
		}
		for range int(shape>>4) % 7 {
			c := next()
			r.Headers = append(r.Headers, kafka.Header{Key: string(bytes.Repeat([]byte{'h', c}, int(c%5))), Value: bytesOf(c >> 3)})
		}
		records[i] = r
	}
	return records
}

// kafkaGoBatch is what kafka-go writes for records in a produce request.
func kafkaGoBatch(t testing.TB, records []kafka.Record) []byte {
	t.Helper()
	var b bytes.Buffer
	rs := protocol.RecordSet{Version: 2, Records: kafka.NewRecordReader(records...)}
	if _, err := rs.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func FuzzAppendBatch(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{3, 0x11, 5, 0x26, 1, 2, 3, 0x7b, 0xff, 9, 200, 7, 0x80, 0, 30})
	f.Add(bytes.Repeat([]byte{0xfe, 0x81}, 40))
	f.Fuzz(func(t *testing.T, data []byte) {
		want := kafkaGoBatch(t, recordsFrom(data))
		prefix := []byte("earlier requests")
		got, err := appendBatch(prefix, kafka.NewRecordReader(recordsFrom(data)...), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[:len(prefix)], []byte("earlier requests")) || !bytes.Equal(got[len(prefix):], want) {
			t.Fatalf("batch differs from kafka-go's:\n got %x\nwant %x", got[len(prefix):], want)
		}
	})
}

func TestAppendBatchGivesRecordsWithoutATimeNow(t *testing.T) {
	now := time.Date(2026, 11, 30, 4, 5, 6, 789654321, time.UTC)
	records := []kafka.Record{
		{Value: kafka.NewBytes([]byte("a"))},
		{Time: now.Add(-time.Second), Value: kafka.NewBytes([]byte("b"))},
		{Value: kafka.NewBytes([]byte("c"))},
	}
	b, err := appendBatch(nil, kafka.NewRecordReader(records...), now)
	if err != nil {
		t.Fatal(err)
	}
	var rs protocol.RecordSet
	if _, err := rs.ReadFrom(bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	want := []time.Time{now.Truncate(time.Millisecond), now.Add(-time.Second).Truncate(time.Millisecond), now.Truncate(time.Millisecond)}
	for i := range want {
		r, err := rs.Records.ReadRecord()
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if !r.Time.Equal(want[i]) {
			t.Errorf("record %d at %v, want %v", i, r.Time, want[i])
		}
	}
}

func TestAppendBatchRefusesNoRecords(t *testing.T) {
	b, err := appendBatch([]byte("kept"), kafka.NewRecordReader(), time.Now())
	if !errors.Is(err, protocol.ErrNoRecord) || string(b) != "kept" {
		t.Fatalf("got %q, %v; want the buffer unchanged and ErrNoRecord", b, err)
	}
}

// produceTransport answers API versions with produce up to maxProduce and
// keeps the produce requests it gets.
type produceTransport struct {
	maxProduce int16
	versions   int // API versions requests answered
	failVer    bool
	got        []kafka.Request
}

func (t *produceTransport) RoundTrip(_ context.Context, _ net.Addr, req kafka.Request) (kafka.Response, error) {
	if _, ok := req.(*apiversions.Request); ok {
		t.versions++
		if t.failVer {
			return nil, errors.New("connection refused")
		}
		return &apiversions.Response{ApiKeys: []apiversions.ApiKeyResponse{
			{ApiKey: int16(protocol.Fetch), MaxVersion: 11},
			{ApiKey: int16(protocol.Produce), MaxVersion: t.maxProduce},
		}}, nil
	}
	t.got = append(t.got, req)
	return &produce.Response{}, nil
}

// produceRequest writes records() to a/3 and the first of records() to b/0.
func produceRequest(records func() []kafka.Record) *produce.Request {
	return &produce.Request{Acks: -1, Timeout: 10000, Topics: []produce.RequestTopic{
		{Topic: "a", Partitions: []produce.RequestPartition{{Partition: 3, RecordSet: protocol.RecordSet{Records: kafka.NewRecordReader(records()...)}}}},
		{Topic: "b", Partitions: []produce.RequestPartition{{Partition: 0, RecordSet: protocol.RecordSet{Records: kafka.NewRecordReader(records()[:1]...)}}}},
	}}
}

func TestRecordBatchesEncodeProduceRequestsForBrokersThatTakeThem(t *testing.T) {
	at := time.Date(2026, 11, 30, 4, 5, 6, 0, time.UTC)
	records := func() []kafka.Record {
		return []kafka.Record{
			{Time: at, Key: kafka.NewBytes([]byte("1006")), Value: kafka.NewBytes([]byte("order")), Headers: []kafka.Header{{Key: "x-retry-attempts", Value: []byte("1")}}},
			{Time: at, Key: kafka.NewBytes([]byte("1007")), Value: kafka.NewBytes([]byte("order 2"))},
		}
	}
	next := &produceTransport{maxProduce: 9}
	r := newRecordBatches(next)
	for range 2 {
		if _, err := r.RoundTrip(context.Background(), nil, produceRequest(records)); err != nil {
			t.Fatal(err)
		}
	}
	if next.versions != 1 {
		t.Errorf("asked the brokers' versions %d times, want once", next.versions)
	}
	if len(next.got) != 2 {
		t.Fatalf("sent %d requests, want 2", len(next.got))
	}
	raw, ok := next.got[1].(*rawproduce.Request)
	if !ok {
		t.Fatalf("sent %T, want a raw produce request", next.got[1])
	}
	if raw.Acks != -1 || raw.Timeout != 10000 || len(raw.Topics) != 2 || raw.Topics[0].Topic != "a" || raw.Topics[1].Topic != "b" ||
		raw.Topics[0].Partitions[0].Partition != 3 || raw.Topics[1].Partitions[0].Partition != 0 {
		t.Fatalf("request %+v does not carry the original's topics, partitions and acks", raw)
	}
	for i, want := range [][]kafka.Record{records(), records()[:1]} {
		var got bytes.Buffer
		if _, err := raw.Topics[i].Partitions[0].RecordSet.WriteTo(&got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), kafkaGoBatch(t, want)) {
			t.Errorf("topic %d: records differ from kafka-go's encoding", i)
		}
	}
}

func TestRecordBatchesLeaveWhatTheyCannotEncodeToKafkaGo(t *testing.T) {
	record := func() []kafka.Record { return []kafka.Record{{Time: time.Now(), Value: kafka.NewBytes([]byte("v"))}} }
	t.Run("old brokers", func(t *testing.T) {
		next := &produceTransport{maxProduce: 2}
		r := newRecordBatches(next)
		for range 2 {
			if _, err := r.RoundTrip(context.Background(), nil, produceRequest(record)); err != nil {
				t.Fatal(err)
			}
		}
		for _, req := range next.got {
			if _, ok := req.(*produce.Request); !ok {
				t.Fatalf("sent %T to a broker without record batches", req)
			}
		}
		if next.versions != 1 {
			t.Errorf("asked the brokers' versions %d times, want once", next.versions)
		}
	})
	t.Run("versions unknown", func(t *testing.T) {
		next := &produceTransport{maxProduce: 9, failVer: true}
		r := newRecordBatches(next)
		if _, err := r.RoundTrip(context.Background(), nil, produceRequest(record)); err != nil {
			t.Fatal(err)
		}
		if _, ok := next.got[0].(*produce.Request); !ok {
			t.Fatalf("sent %T before the brokers' versions were known", next.got[0])
		}
		next.failVer = false
		if _, err := r.RoundTrip(context.Background(), nil, produceRequest(record)); err != nil {
			t.Fatal(err)
		}
		if _, ok := next.got[1].(*rawproduce.Request); !ok || next.versions != 2 {
			t.Fatalf("sent %T after asking %d times; want a raw request once the versions are known", next.got[1], next.versions)
		}
	})
	t.Run("compressed", func(t *testing.T) {
		next := &produceTransport{maxProduce: 9}
		r := newRecordBatches(next)
		req := produceRequest(record)
		req.Topics[1].Partitions[0].RecordSet.Attributes = protocol.Attributes(kafka.Snappy)
		if _, err := r.RoundTrip(context.Background(), nil, req); err != nil {
			t.Fatal(err)
		}
		if next.got[0] != kafka.Request(req) {
			t.Fatalf("sent %T, want the compressed request untouched", next.got[0])
		}
	})
}

func TestWriterSendsRecordBatchesTheBrokerTakes(t *testing.T) {
	brk := testkit.Broker(t, broker.Config{})
	client := Client{Brokers: []string{brk.Addr()}}
	admin := client.Admin()
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{
		{Topic: "t", NumPartitions: 2, ReplicationFactor: 1},
	}}); err != nil {
		t.Fatal(err)
	}
	w := client.NewWriter(WriterConfig{}, zap.NewNop())
	defer w.Close()
	long := bytes.Repeat([]byte("history "), 40)
	want := []kafka.Message{
		{Topic: "t", Partition: 1, Key: []byte("1006"), Value: []byte("order"), Headers: []kafka.Header{{Key: "x-retry-attempts", Value: []byte("1")}, {Key: "x-retry-errors", Value: long}}},
		{Topic: "t", Partition: 1, Value: []byte("no key"), Headers: []kafka.Header{{Key: "empty", Value: []byte{}}}},
		{Topic: "t", Partition: 1, Key: []byte("1008"), Value: long},
	}
	for range 2 { // the first write may go as kafka-go encodes it
		if err := w.WriteMessages(ctx, want...); err != nil {
			t.Fatal(err)
		}
	}
	if got := w.counts.RoundTripper.(*recordBatches).batches.Load(); got != batchesYes {
		t.Fatalf("the writer did not find that the broker takes record batches (%d)", got)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: client.Brokers, Topic: "t", Partition: 1, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	for i := range 2 * len(want) {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		w := want[i%len(want)]
		if m.Offset != int64(i) || !bytes.Equal(m.Key, w.Key) || (m.Key == nil) != (w.Key == nil) || !bytes.Equal(m.Value, w.Value) || len(m.Headers) != len(w.Headers) {
			t.Fatalf("record %d: got %d %q %q %v, want %q %q %v", i, m.Offset, m.Key, m.Value, m.Headers, w.Key, w.Value, w.Headers)
		}
		for j, h := range w.Headers {
			if m.Headers[j].Key != h.Key || !bytes.Equal(m.Headers[j].Value, h.Value) {
				t.Fatalf("record %d header %d: got %v, want %v", i, j, m.Headers[j], h)
			}
		}
	}
}
