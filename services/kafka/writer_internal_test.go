package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/apiversions"
	"github.com/segmentio/kafka-go/protocol/metadata"
	"github.com/segmentio/kafka-go/protocol/produce"
	"github.com/segmentio/kafka-go/protocol/rawproduce"
	"go.uber.org/zap"

	"github.com/orderflow/orders/services/broker"
	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka/wire/wiretest"
	"github.com/orderflow/orders/services/testkit"
)

// fakeBrokers answers API versions with produce up to maxProduce, metadata
// with three partitions per topic, partition p led by broker p%leaders, and
// each partition of a produce request with the error failWith(topic,
// partition, request number for the partition) gives, keeping what they
// carried.
type fakeBrokers struct {
	maxProduce int16
	leaders    int32 // brokers leading partitions; 0 is 1
	versionErr error
	unknown    map[string]bool // topics metadata calls unknown
	empty      map[string]bool // topics metadata gives no partitions
	failWith   func(topic string, partition int32, n int) error

	mu       sync.Mutex
	versions int
	produced map[string][][]byte // by topic/partition, each request's records
	requests [][]string          // the topic/partition of each produce request
	old      []*produce.Request
}

func (f *fakeBrokers) RoundTrip(_ context.Context, _ net.Addr, req kafkago.Request) (kafkago.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r := req.(type) {
	case *apiversions.Request:
		f.versions++
		if f.versionErr != nil {
			return nil, f.versionErr
		}
		return &apiversions.Response{ApiKeys: []apiversions.ApiKeyResponse{
			{ApiKey: int16(protocol.Fetch), MaxVersion: 11},
			{ApiKey: int16(protocol.Produce), MaxVersion: f.maxProduce},
		}}, nil
	case *metadata.Request:
		res := &metadata.Response{}
		for _, name := range r.TopicNames {
			t := metadata.ResponseTopic{Name: name, Partitions: make([]metadata.ResponsePartition, 3)}
			for i := range t.Partitions {
				t.Partitions[i].PartitionIndex = int32(i)
				t.Partitions[i].LeaderID = int32(i) % max(f.leaders, 1)
			}
			if f.unknown[name] {
				t.ErrorCode, t.Partitions = int16(kafkago.UnknownTopicOrPartition), nil
			}
			if f.empty[name] {
				t.Partitions = nil
			}
			res.Topics = append(res.Topics, t)
		}
		return res, nil
	case *rawproduce.Request:
		res := &produce.Response{}
		var carried []string
		for _, rt := range r.Topics {
			t := rt.Topic
			out := produce.ResponseTopic{Topic: t}
			for _, rp := range rt.Partitions {
				p := rp.Partition
				var b bytes.Buffer
				if _, err := rp.RecordSet.WriteTo(&b); err != nil {
					return nil, err
				}
				key := fmt.Sprintf("%s/%d", t, p)
				carried = append(carried, key)
				if f.produced == nil {
					f.produced = map[string][][]byte{}
				}
				f.produced[key] = append(f.produced[key], b.Bytes())
				var code int16
				if f.failWith != nil {
					if err := f.failWith(t, p, len(f.produced[key])); err != nil {
						var kerr kafkago.Error
						if !errors.As(err, &kerr) {
							return nil, err
						}
						code = int16(kerr)
					}
				}
				out.Partitions = append(out.Partitions, produce.ResponsePartition{Partition: p, ErrorCode: code})
			}
			res.Topics = append(res.Topics, out)
		}
		f.requests = append(f.requests, carried)
		return res, nil
	case *produce.Request:
		f.old = append(f.old, r)
		var topics []produce.ResponseTopic
		for _, t := range r.Topics {
			rt := produce.ResponseTopic{Topic: t.Topic}
			for _, p := range t.Partitions {
				rt.Partitions = append(rt.Partitions, produce.ResponsePartition{Partition: p.Partition})
			}
			topics = append(topics, rt)
		}
		return &produce.Response{Topics: topics}, nil
	}
	return nil, fmt.Errorf("unexpected %T", req)
}

func testWriter(f *fakeBrokers, batchSize int) *Writer {
	return newWriter(kafkago.TCP("fake:9092"), newPartitionCounts(f, time.Minute), WriterConfig{BatchSize: batchSize}, zap.NewNop())
}

var at = time.Date(2026, 11, 30, 4, 5, 6, 0, time.UTC)

func TestWriterSendsEachPartitionItsRecordBatch(t *testing.T) {
	f := &fakeBrokers{maxProduce: 9}
	w := testWriter(f, 500)
	defer w.Close()
	msgs := []kafkago.Message{
		{Topic: "a", Partition: 2, Time: at, Key: []byte("1006"), Value: []byte("v1"), Headers: []kafkago.Header{{Key: "x-retry-attempts", Value: []byte("1")}}},
		{Topic: "b", Partition: -1, Time: at, Key: []byte("1006"), Value: []byte("v2")},
		{Topic: "a", Partition: 2, Time: at, Key: []byte("1007"), Value: []byte("v3")},
		{Topic: "a", Partition: 0, Time: at, Key: []byte("1008"), Value: []byte("v4")},
	}
	for range 2 {
		if err := w.Write(context.Background(), outputs(msgs...)); err != nil {
			t.Fatal(err)
		}
	}
	if f.versions != 1 || len(f.old) != 0 {
		t.Fatalf("asked the versions %d times and sent %d requests through kafka-go's writer; want once and none", f.versions, len(f.old))
	}
	hashed := partitioner{}.Balance(msgs[1], 0, 1, 2)
	want := map[string][]kafkago.Message{
		"a/2":                       {msgs[0], msgs[2]},
		"a/0":                       {msgs[3]},
		fmt.Sprintf("b/%d", hashed): {msgs[1]},
	}
	if len(f.produced) != len(want) {
		t.Fatalf("wrote to %d partitions, want %d", len(f.produced), len(want))
	}
	for key, ms := range want {
		got := f.produced[key]
		if len(got) != 2 {
			t.Fatalf("%s: %d requests, want one per write", key, len(got))
		}
		for _, b := range got {
			if !bytes.Equal(b, wiretest.Produced(t, ms)) {
				t.Errorf("%s: records differ from kafka-go's encoding of them", key)
			}
		}
	}
}

func TestWriterWritesNothingOfACallWithATopicTheBrokersLack(t *testing.T) {
	for _, c := range []struct {
		name      string
		topic     string
		partition int
	}{
		{"unknown, by key", "gone", -1},
		{"unknown, partition named", "gone", 1},
		{"without partitions", "new", -1},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeBrokers{maxProduce: 9, unknown: map[string]bool{"gone": true}, empty: map[string]bool{"new": true}}
			w := testWriter(f, 500)
			msgs := []kafkago.Message{
				{Topic: "a", Partition: -1, Time: at, Key: []byte("1"), Value: []byte("v")},
				{Topic: c.topic, Partition: c.partition, Time: at, Key: []byte("2"), Value: []byte("v")},
				{Topic: "a", Partition: 0, Time: at, Key: []byte("3"), Value: []byte("v")},
			}
			err := w.Write(context.Background(), outputs(msgs...))
			var code kafkago.Error
			if !errors.As(err, &code) || code != kafkago.UnknownTopicOrPartition || !unknownTopic(err) {
				t.Fatalf("got %v, want kafkago.UnknownTopicOrPartition itself", err)
			}
			if len(f.produced) != 0 {
				t.Fatalf("wrote %d partitions' records, want none", len(f.produced))
			}
		})
	}
}

func TestWriterStoppedByItsContextSaysSo(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &fakeBrokers{maxProduce: 9, failWith: func(string, int32, int) error {
		cancel()
		return kafkago.NotLeaderForPartition
	}}
	w := testWriter(f, 500)
	err := w.Write(ctx, outputs(kafkago.Message{Topic: "a", Partition: 1, Time: at, Value: []byte("v")}, kafkago.Message{Topic: "a", Partition: 2, Time: at, Value: []byte("v")}))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if len(f.requests) != 1 {
		t.Fatalf("requests %v; want none after the context ended", f.requests)
	}
}

func TestWriterSplitsAPartitionsRecordsInOrder(t *testing.T) {
	var msgs []kafkago.Message
	for i := range 7 {
		msgs = append(msgs, kafkago.Message{Topic: "a", Partition: 1, Time: at, Value: []byte{byte(i)}})
	}
	t.Run("all written", func(t *testing.T) {
		f := &fakeBrokers{maxProduce: 9}
		w := testWriter(f, 3)
		if err := w.Write(context.Background(), outputs(msgs...)); err != nil {
			t.Fatal(err)
		}
		got := f.produced["a/1"]
		if len(got) != 3 {
			t.Fatalf("%d requests, want 3 of at most 3 records", len(got))
		}
		for i, part := range [][]kafkago.Message{msgs[0:3], msgs[3:6], msgs[6:7]} {
			if !bytes.Equal(got[i], wiretest.Produced(t, part)) {
				t.Errorf("request %d does not carry records %d to %d", i, 3*i, 3*i+len(part)-1)
			}
		}
	})
	t.Run("stops at a failure", func(t *testing.T) {
		f := &fakeBrokers{maxProduce: 9, failWith: func(_ string, _ int32, n int) error {
			if n == 2 {
				return kafkago.TopicAuthorizationFailed
			}
			return nil
		}}
		w := testWriter(f, 3)
		err := w.Write(context.Background(), outputs(msgs...))
		var per WriteErrors
		if !errors.As(err, &per) || len(per) != len(msgs) {
			t.Fatalf("got %v, want an error per record", err)
		}
		for i, e := range per {
			if failed := i >= 3; failed != errors.Is(e, kafkago.TopicAuthorizationFailed) {
				t.Errorf("record %d: %v", i, e)
			}
		}
		if len(f.produced["a/1"]) != 2 {
			t.Errorf("sent %d requests, want none after the refused one", len(f.produced["a/1"]))
		}
	})
	t.Run("retries what may pass", func(t *testing.T) {
		f := &fakeBrokers{maxProduce: 9, failWith: func(_ string, _ int32, n int) error {
			if n == 1 {
				return kafkago.NotLeaderForPartition
			}
			return nil
		}}
		w := testWriter(f, 10)
		if err := w.Write(context.Background(), outputs(msgs...)); err != nil {
			t.Fatal(err)
		}
		if got := f.produced["a/1"]; len(got) != 2 || !bytes.Equal(got[1], wiretest.Produced(t, msgs)) {
			t.Fatalf("%d requests; want the refused one sent again whole", len(got))
		}
	})
}

func TestWriterUsesKafkaGosWriterForClustersWithoutRecordBatches(t *testing.T) {
	msg := kafkago.Message{Topic: "a", Partition: 1, Time: at, Value: []byte("v")}
	t.Run("old brokers", func(t *testing.T) {
		f := &fakeBrokers{maxProduce: 2}
		w := testWriter(f, 500)
		defer w.Close()
		for range 2 {
			if err := w.Write(context.Background(), outputs(msg)); err != nil {
				t.Fatal(err)
			}
		}
		if len(f.old) != 2 || len(f.produced) != 0 || f.versions != 1 {
			t.Fatalf("%d requests through kafka-go, %d record batches, versions asked %d times; want 2, 0, once", len(f.old), len(f.produced), f.versions)
		}
	})
	t.Run("versions unknown", func(t *testing.T) {
		f := &fakeBrokers{maxProduce: 9, versionErr: errors.New("connection refused")}
		w := testWriter(f, 500)
		defer w.Close()
		if err := w.Write(context.Background(), outputs(msg)); err != nil {
			t.Fatal(err)
		}
		if len(f.old) != 1 {
			t.Fatalf("%d requests through kafka-go before the versions were known, want 1", len(f.old))
		}
		f.versionErr = nil
		if err := w.Write(context.Background(), outputs(msg)); err != nil {
			t.Fatal(err)
		}
		if len(f.produced["a/1"]) != 1 || f.versions != 2 {
			t.Fatalf("%d record batches after asking %d times; want one once the versions are known", len(f.produced["a/1"]), f.versions)
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
	if _, err := admin.CreateTopics(ctx, &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{
		{Topic: "t", NumPartitions: 2, ReplicationFactor: 1},
	}}); err != nil {
		t.Fatal(err)
	}
	w := client.NewWriter(WriterConfig{}, zap.NewNop())
	defer w.Close()
	long := bytes.Repeat([]byte("history "), 40)
	want := []kafkago.Message{
		{Topic: "t", Partition: 1, Key: []byte("1006"), Value: []byte("order"), Headers: []kafkago.Header{{Key: "x-retry-attempts", Value: []byte("1")}, {Key: "x-retry-errors", Value: long}}},
		{Topic: "t", Partition: 1, Value: []byte("no key"), Headers: []kafkago.Header{{Key: "empty", Value: []byte{}}}},
		{Topic: "t", Partition: 1, Key: []byte("1008"), Value: long},
	}
	for range 2 {
		if err := w.Write(ctx, outputs(want...)); err != nil {
			t.Fatal(err)
		}
	}
	if got := w.batches.Load(); got != batchesYes {
		t.Fatalf("the writer did not find that the broker takes record batches (%d)", got)
	}
	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: client.Brokers, Topic: "t", Partition: 1, MaxWait: 100 * time.Millisecond})
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

// oneEach is a record for each partition of topics a and b.
func oneEach() []kafkago.Message {
	var msgs []kafkago.Message
	for _, topic := range []string{"a", "b"} {
		for p := range 3 {
			msgs = append(msgs, kafkago.Message{Topic: topic, Partition: p, Time: at, Key: []byte(fmt.Sprint(p)), Value: []byte(topic)})
		}
	}
	return msgs
}

func TestWriterSendsEachLeaderOneRequest(t *testing.T) {
	msgs := oneEach()
	for leaders := int32(1); leaders <= 3; leaders++ {
		f := &fakeBrokers{maxProduce: 9, leaders: leaders}
		w := testWriter(f, 500)
		if err := w.Write(context.Background(), outputs(msgs...)); err != nil {
			t.Fatal(err)
		}
		if len(f.requests) != int(leaders) {
			t.Fatalf("%d leaders: %d produce requests %v, want one per leader", leaders, len(f.requests), f.requests)
		}
		for _, r := range f.requests {
			lead := int32(-1)
			for _, key := range r {
				_, p, _ := strings.Cut(key, "/")
				n, _ := strconv.Atoi(p)
				if l := int32(n) % leaders; lead >= 0 && l != lead {
					t.Fatalf("%d leaders: request %v carries partitions of different leaders", leaders, r)
				} else {
					lead = l
				}
			}
		}
		for _, m := range msgs {
			key := fmt.Sprintf("%s/%d", m.Topic, m.Partition)
			if got := f.produced[key]; len(got) != 1 || !bytes.Equal(got[0], wiretest.Produced(t, []kafkago.Message{m})) {
				t.Fatalf("%d leaders: %s got %d batches, want its record once", leaders, key, len(got))
			}
		}
	}
}

func TestWriterSendsAgainAloneWhatASharedRequestDidNotWrite(t *testing.T) {
	msgs := oneEach()
	t.Run("may pass", func(t *testing.T) {
		f := &fakeBrokers{maxProduce: 9, failWith: func(topic string, p int32, n int) error {
			if topic == "a" && p == 1 && n == 1 {
				return kafkago.NotLeaderForPartition
			}
			return nil
		}}
		w := testWriter(f, 500)
		if err := w.Write(context.Background(), outputs(msgs...)); err != nil {
			t.Fatal(err)
		}
		if len(f.requests) != 2 || len(f.requests[0]) != len(msgs) || fmt.Sprint(f.requests[1]) != "[a/1]" {
			t.Fatalf("requests %v, want all partitions, then a/1 alone", f.requests)
		}
		for _, m := range msgs {
			key := fmt.Sprintf("%s/%d", m.Topic, m.Partition)
			want := 1
			if key == "a/1" {
				want = 2
			}
			if got := f.produced[key]; len(got) != want || !bytes.Equal(got[want-1], wiretest.Produced(t, []kafkago.Message{m})) {
				t.Fatalf("%s sent %d times, want %d", key, len(got), want)
			}
		}
	})
	t.Run("refused", func(t *testing.T) {
		f := &fakeBrokers{maxProduce: 9, failWith: func(topic string, p int32, _ int) error {
			if topic == "a" && p == 1 {
				return kafkago.TopicAuthorizationFailed
			}
			return nil
		}}
		w := testWriter(f, 500)
		err := w.Write(context.Background(), outputs(msgs...))
		var per WriteErrors
		if !errors.As(err, &per) || len(per) != len(msgs) {
			t.Fatalf("got %v, want an error per record", err)
		}
		for i, m := range msgs {
			refused := m.Topic == "a" && m.Partition == 1
			if refused != errors.Is(per[i], kafkago.TopicAuthorizationFailed) || (!refused && per[i] != nil) {
				t.Errorf("record %d (%s/%d): %v", i, m.Topic, m.Partition, per[i])
			}
			key := fmt.Sprintf("%s/%d", m.Topic, m.Partition)
			if want := map[bool]int{true: 2, false: 1}[refused]; len(f.produced[key]) != want {
				t.Errorf("%s sent %d times, want %d", key, len(f.produced[key]), want)
			}
		}
	})
}

func TestWriterSendsAPartitionTooLargeToShareOnItsOwn(t *testing.T) {
	var msgs []kafkago.Message
	for i := range 7 {
		msgs = append(msgs, kafkago.Message{Topic: "a", Partition: 1, Time: at, Value: []byte{byte(i)}})
	}
	small := []kafkago.Message{{Topic: "a", Partition: 0, Time: at, Value: []byte("0")}, {Topic: "a", Partition: 2, Time: at, Value: []byte("2")}}
	f := &fakeBrokers{maxProduce: 9}
	w := testWriter(f, 3)
	if err := w.Write(context.Background(), outputs(append(append([]kafkago.Message{}, small[0]), append(msgs, small[1])...)...)); err != nil {
		t.Fatal(err)
	}
	var shared, alone int
	for _, r := range f.requests {
		switch fmt.Sprint(r) {
		case "[a/0 a/2]":
			shared++
		case "[a/1]":
			alone++
		default:
			t.Fatalf("request carried %v", r)
		}
	}
	if shared != 1 || alone != 3 {
		t.Fatalf("requests %v, want a/0 and a/2 together and a/1's seven records in three of its own", f.requests)
	}
	for i, part := range [][]kafkago.Message{msgs[0:3], msgs[3:6], msgs[6:7]} {
		if !bytes.Equal(f.produced["a/1"][i], wiretest.Produced(t, part)) {
			t.Errorf("a/1 request %d does not carry records %d to %d", i, 3*i, 3*i+len(part)-1)
		}
	}
}

// laggingReplicas is a broker that appends every batch of a produce
// request at once but, for the first request that carries a/1, whose
// in-sync replicas lag, answers only when the request's timeout runs out,
// as Kafka does with acks from all replicas: a/1 timed out, the others
// written. If the client stops waiting first, it sees no answer.
type laggingReplicas struct{ *fakeBrokers }

func (l laggingReplicas) RoundTrip(ctx context.Context, addr net.Addr, req kafkago.Request) (kafkago.Response, error) {
	r, ok := req.(*rawproduce.Request)
	slow := false
	if ok {
		l.mu.Lock()
		first := len(l.produced["a/1"]) == 0
		l.mu.Unlock()
		for _, t := range r.Topics {
			for _, p := range t.Partitions {
				slow = slow || (first && t.Topic == "a" && p.Partition == 1)
			}
		}
	}
	res, err := l.fakeBrokers.RoundTrip(ctx, addr, req)
	if err != nil || !slow {
		return res, err
	}
	for i := range res.(*produce.Response).Topics {
		t := &res.(*produce.Response).Topics[i]
		for j := range t.Partitions {
			if t.Topic == "a" && t.Partitions[j].Partition == 1 {
				t.Partitions[j].ErrorCode = int16(kafkago.RequestTimedOut)
			}
		}
	}
	answer := time.NewTimer(time.Duration(r.Timeout) * time.Millisecond)
	defer answer.Stop()
	select {
	case <-answer.C:
		return res, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestWriterHearsTheBrokerBeforeItStopsWaiting writes with a deadline of
// a second to a broker that holds a shared request's answer for as long as
// the request allows: the writer must give it less time than it waits
// itself, hear which partitions were written, and send only the one that
// timed out again.
func TestWriterHearsTheBrokerBeforeItStopsWaiting(t *testing.T) {
	f := &fakeBrokers{maxProduce: 9}
	w := newWriter(kafkago.TCP("fake:9092"), newPartitionCounts(laggingReplicas{f}, time.Minute), WriterConfig{BatchSize: 500}, zap.NewNop())
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	msgs := oneEach()
	if err := w.Write(ctx, outputs(msgs...)); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		key := fmt.Sprintf("%s/%d", m.Topic, m.Partition)
		want := 1
		if key == "a/1" {
			want = 2 // timed out on the broker: sent again
		}
		if got := len(f.produced[key]); got != want {
			t.Errorf("%s sent %d times, want %d (requests %v)", key, got, want, f.requests)
		}
	}
}

// outputs are msgs as the writer takes them.
func outputs(msgs ...kafkago.Message) []envelope.Output {
	outs := make([]envelope.Output, len(msgs))
	for i, m := range msgs {
		outs[i] = envelope.Output{Topic: m.Topic, Partition: m.Partition, Key: m.Key, Value: m.Value, Headers: envelopeHeaders(m.Headers), Time: m.Time}
	}
	return outs
}
