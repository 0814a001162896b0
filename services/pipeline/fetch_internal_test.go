package pipeline

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/orderflow/orders/services/testkit"
)

// cluster is a kfake cluster of its own for a test, closed at its end.
func cluster(t *testing.T, opts ...kfake.Opt) (*kfake.Cluster, Client) {
	t.Helper()
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, Client{Brokers: c.ListenAddrs()}
}

// produceTo writes values to topic/0, each at time at, with a writer of
// its own (so that it asks where the partition's leader is now).
func produceTo(t *testing.T, client Client, topic string, at time.Time, values ...string) {
	t.Helper()
	w := client.NewWriter(WriterConfig{}, zap.NewNop())
	defer w.Close()
	msgs := make([]kafka.Message, len(values))
	for i, v := range values {
		msgs[i] = kafka.Message{Topic: topic, Partition: 0, Time: at, Value: []byte(v)}
	}
	if err := w.WriteMessages(t.Context(), msgs...); err != nil {
		t.Fatal(err)
	}
}

func values(from, n int) []string {
	var vs []string
	for i := range n {
		vs = append(vs, fmt.Sprint("v", from+i))
	}
	return vs
}

// fetching runs f.Fetch of topic/0 from offset until the test ends.
func fetching(t *testing.T, f *Fetcher, log *zap.Logger, topic string, offset int64) <-chan kafka.Message {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	queue := make(chan kafka.Message, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Fetch(ctx, log, topic, 0, offset, queue, nil)
	}()
	t.Cleanup(func() {
		cancel()
		for range queue { // Fetch closes it on its way out
		}
		<-done
		f.Close()
	})
	return queue
}

// expect reads from queue the records at offsets from on with vals.
func expect(t *testing.T, queue <-chan kafka.Message, from int64, vals []string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for i, v := range vals {
		select {
		case m, ok := <-queue:
			if !ok {
				t.Fatalf("queue closed before offset %d", from+int64(i))
			}
			if m.Offset != from+int64(i) || string(m.Value) != v || m.Topic != "t" || m.Partition != 0 {
				t.Fatalf("got %s/%d@%d %q, want t/0@%d %q", m.Topic, m.Partition, m.Offset, m.Value, from+int64(i), v)
			}
		case <-deadline:
			t.Fatalf("no record at offset %d within 30s", from+int64(i))
		}
	}
}

func TestFetcherFollowsAPartitionToItsNewLeader(t *testing.T) {
	c, client := cluster(t, kfake.NumBrokers(3), kfake.SeedTopics(1, "t"))
	produceTo(t, client, "t", time.Now(), values(0, 50)...)
	queue := fetching(t, client.NewFetcher(), zap.NewNop(), "t", kafka.FirstOffset)
	expect(t, queue, 0, values(0, 50))
	leader := c.LeaderFor("t", 0)
	if err := c.MoveTopicPartition("t", 0, (leader+1)%3); err != nil {
		t.Fatal(err)
	}
	produceTo(t, client, "t", time.Now(), values(50, 50)...)
	expect(t, queue, 50, values(50, 50))
}

func TestFetcherSkipsOnlyRecordsTheBrokerDeleted(t *testing.T) {
	c, client := cluster(t, kfake.NumBrokers(1))
	retention := "3600000"
	a := client.Admin()
	defer a.Close()
	res, err := a.CreateTopics(t.Context(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: "t", NumPartitions: 1, ReplicationFactor: 1,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "retention.ms", ConfigValue: retention}},
	}}})
	if err != nil || res.Errors["t"] != nil {
		t.Fatalf("create t: %v %v", err, res.Errors)
	}
	produceTo(t, client, "t", time.Now().Add(-2*time.Hour), values(0, 10)...)
	c.ApplyRetention()
	produceTo(t, client, "t", time.Now(), values(10, 5)...)
	core, logs := observer.New(zap.WarnLevel)
	queue := fetching(t, client.NewFetcher(), zap.New(core), "t", 3)
	expect(t, queue, 10, values(10, 5))
	skips := logs.FilterMessage("skipping records the broker has deleted").All()
	if len(skips) != 1 || skips[0].ContextMap()["skipped"] != int64(7) {
		t.Errorf("logged %v, want one warning that 7 records were skipped", logs.All())
	}
}

func TestFetcherStopsWithItsContext(t *testing.T) {
	c, client := cluster(t, kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	// The broker tells when the first fetch request reaches it, and then
	// answers it as usual: with nothing to read, it holds it.
	asked := make(chan struct{})
	var once sync.Once
	c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		once.Do(func() { close(asked) })
		return nil, nil, false
	})
	f := client.NewFetcher()
	defer f.Close()
	ctx, cancel := context.WithCancel(context.Background())
	queue := make(chan kafka.Message, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Fetch(ctx, zap.NewNop(), "t", 0, kafka.FirstOffset, queue, nil)
	}()
	select {
	case <-asked:
	case <-time.After(30 * time.Second):
		t.Fatal("no fetch request within 30s")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Fetch did not return within 10s of its context's end")
	}
	if _, ok := <-queue; ok {
		t.Error("a record from an empty partition")
	}
}

func TestFetcherHandsOldBrokersToKafkaGosReader(t *testing.T) {
	_, old := cluster(t, kfake.NumBrokers(1), kfake.MaxVersions(kversion.V0_10_2()))
	if _, err := dialFetchConn(t.Context(), old, old.Brokers[0]); !errors.Is(err, errOldBroker) {
		t.Fatalf("dial a Kafka 0.10.2 broker: %v, want errOldBroker", err)
	}
	// kafka-go's Reader, which reads what such a broker has, reads as the
	// fetcher does.
	_, client := cluster(t, kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	produceTo(t, client, "t", time.Now(), values(0, 20)...)
	f := client.NewFetcher()
	defer f.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var got []string
	f.readWithReader(ctx, zap.NewNop(), "t", 0, 5, func(m kafka.Message) bool {
		if m.Offset != int64(5+len(got)) {
			t.Errorf("offset %d after %d records from 5", m.Offset, len(got))
		}
		got = append(got, string(m.Value))
		return len(got) < 15
	})
	if fmt.Sprint(got) != fmt.Sprint(values(5, 15)) {
		t.Errorf("read %v, want %v", got, values(5, 15))
	}
}

// serveFetches answers every fetch request of c with the record batches
// records gives for its offset, as a broker holding them would.
func serveFetches(c *kfake.Cluster, records func(offset int64) []byte) {
	c.ControlKey(int16(kmsg.Fetch), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.FetchRequest)
		res := req.ResponseKind().(*kmsg.FetchResponse)
		rt := kmsg.NewFetchResponseTopic()
		rt.Topic = "t"
		rp := kmsg.NewFetchResponseTopicPartition()
		rp.HighWatermark, rp.LastStableOffset = 1000, 1000
		rp.RecordBatches = records(req.Topics[0].Partitions[0].FetchOffset)
		rt.Partitions = append(rt.Partitions, rp)
		res.Topics = append(res.Topics, rt)
		return res, nil, true
	})
}

// Records sent before a corrupt batch are not sent again while the fetcher
// asks for the corrupt one.
func TestFetcherSendsNothingTwiceBeforeABadBatch(t *testing.T) {
	c, client := cluster(t, kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	good := fetched(t, 0, 0, []kafka.Message{{Value: []byte("a")}, {Value: []byte("b")}})
	bad := fetched(t, 2, 0, []kafka.Message{{Value: []byte("c")}})
	bad[len(bad)-2] ^= 0x40
	serveFetches(c, func(offset int64) []byte {
		if offset < 2 {
			return append(append([]byte(nil), good...), bad...)
		}
		return bad
	})
	core, logs := observer.New(zap.WarnLevel)
	queue := fetching(t, client.NewFetcher(), zap.New(core), "t", 0)
	expect(t, queue, 0, []string{"a", "b"})
	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		n := logs.FilterMessage("fetch; retrying").Len()
		return n >= 3, fmt.Sprintf("%d failed fetches logged, want 3", n)
	})
	select {
	case m := <-queue:
		t.Fatalf("offset %d %q sent again", m.Offset, m.Value)
	default:
	}
}

// A batch whose last records compaction removed keeps its last offset; the
// next fetch begins after it, where the next batch is.
func TestFetcherMovesPastABatchsCompactedEnd(t *testing.T) {
	c, client := cluster(t, kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	first := compacted(t, fetched(t, 0, 0, []kafka.Message{{Value: []byte("a")}, {Value: []byte("b")}, {Value: []byte("c")}}), 9)
	second := fetched(t, 10, 0, []kafka.Message{{Value: []byte("k")}})
	serveFetches(c, func(offset int64) []byte {
		if offset < 10 { // a broker reads one segment at a time
			return first
		}
		return second
	})
	queue := fetching(t, client.NewFetcher(), zap.NewNop(), "t", 0)
	expect(t, queue, 0, []string{"a", "b", "c"})
	select {
	case m := <-queue:
		if m.Offset != 10 || string(m.Value) != "k" {
			t.Fatalf("got %d %q, want 10 \"k\"", m.Offset, m.Value)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no record at offset 10 within 30s")
	}
}

// compacted sets the last offset delta of the one batch in data, as a
// broker's compaction leaves it, and its CRC.
func compacted(t *testing.T, data []byte, lastDelta uint32) []byte {
	t.Helper()
	binary.BigEndian.PutUint32(data[batchLastDeltaAt:], lastDelta)
	binary.BigEndian.PutUint32(data[batchCRCAt:], crc32Of(data[batchAttributesAt:]))
	return data
}

// The fetcher reads brokers of every release from Kafka 0.11 on, with each
// fetch version from 4 to 11 they answer.
func TestFetcherSpeaksEveryVersion(t *testing.T) {
	releases := []struct {
		name     string
		versions func() *kversion.Versions
	}{{"0.11", kversion.V0_11_0}, {"1.0", kversion.V1_0_0}, {"1.1", kversion.V1_1_0}, {"2.0", kversion.V2_0_0}, {"2.1", kversion.V2_1_0}, {"2.3", kversion.V2_3_0}}
	tried := map[int16]bool{}
	for _, r := range releases {
		for v := int16(fetchMinVersion); v <= fetchMaxVersion; v++ {
			versions := r.versions()
			if most, _ := versions.LookupMaxKeyVersion(int16(kmsg.Fetch)); most < v {
				continue
			}
			versions.SetMaxKeyVersion(int16(kmsg.Fetch), v)
			t.Run(fmt.Sprintf("%s/v%d", r.name, v), func(t *testing.T) {
				_, client := cluster(t, kfake.NumBrokers(1), kfake.SeedTopics(1, "t"), kfake.MaxVersions(versions))
				produceTo(t, client, "t", time.Now(), values(0, 30)...)
				fc, err := dialFetchConn(t.Context(), client, client.Brokers[0])
				if err != nil {
					t.Fatal(err)
				}
				fc.Close()
				if fc.version != v {
					t.Fatalf("fetch version %d, want %d", fc.version, v)
				}
				tried[v] = true
				expect(t, fetching(t, client.NewFetcher(), zap.NewNop(), "t", 5), 5, values(5, 25))
			})
		}
	}
	if len(tried) != fetchMaxVersion-fetchMinVersion+1 {
		t.Errorf("versions tried: %v, want 4 to 11", tried)
	}
}

// A broker that takes the connection and never answers holds a dial up no
// longer than the dial timeout.
func TestDialOfASilentBrokerEnds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		accepted []net.Conn
		serving  sync.WaitGroup
	)
	serving.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted = append(accepted, c)
			mu.Unlock()
			serving.Go(func() { _, _ = io.Copy(io.Discard, c) })
		}
	})
	defer func() {
		ln.Close()
		mu.Lock()
		for _, c := range accepted {
			c.Close()
		}
		mu.Unlock()
		serving.Wait()
	}()
	client := Client{Brokers: []string{ln.Addr().String()}, DialTimeout: 500 * time.Millisecond}
	done := make(chan error, 1)
	go func() {
		_, err := dialFetchConn(context.Background(), client, ln.Addr().String())
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a connection to a broker that never answered")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("dial still waiting 10s after its 500ms timeout")
	}
}

// TestWriterSendsEachBrokerOneRequest writes to every partition of two
// topics on a cluster of three brokers in one call: each broker that leads
// some of them gets one produce request, and every partition its records,
// in order.
func TestWriterSendsEachBrokerOneRequest(t *testing.T) {
	c, client := cluster(t, kfake.NumBrokers(3), kfake.SeedTopics(6, "t", "u"))
	var (
		mu       sync.Mutex
		requests = map[int32]int{}
	)
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		mu.Lock()
		requests[c.CurrentNode()]++
		mu.Unlock()
		return nil, nil, false
	})
	w := client.NewWriter(WriterConfig{}, zap.NewNop())
	defer w.Close()
	var msgs []kafka.Message
	leaders := map[int32]bool{}
	for _, topic := range []string{"t", "u"} {
		for p := range 6 {
			leaders[c.LeaderFor(topic, int32(p))] = true
			for i := range 3 {
				msgs = append(msgs, kafka.Message{Topic: topic, Partition: p, Value: []byte(fmt.Sprintf("%s/%d/%d", topic, p, i))})
			}
		}
	}
	if err := w.WriteMessages(t.Context(), msgs...); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := fmt.Sprint(requests)
	mu.Unlock()
	want := map[int32]int{}
	for l := range leaders {
		want[l] = 1
	}
	if got != fmt.Sprint(want) {
		t.Fatalf("produce requests by broker %s, want %v", got, want)
	}
	for _, topic := range []string{"t", "u"} {
		for p := range 6 {
			var vals []string
			if err := ReadRange(t.Context(), client, topic, p, 0, 3, func(m kafka.Message) error {
				vals = append(vals, string(m.Value))
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("[%[1]s/%[2]d/0 %[1]s/%[2]d/1 %[1]s/%[2]d/2]", topic, p); fmt.Sprint(vals) != want {
				t.Fatalf("%s/%d holds %v, want %s", topic, p, vals, want)
			}
		}
	}
}
