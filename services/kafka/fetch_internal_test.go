package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka/wire"
	"github.com/orderflow/orders/services/kafka/wire/wiretest"
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
	msgs := make([]kafkago.Message, len(values))
	for i, v := range values {
		msgs[i] = kafkago.Message{Topic: topic, Partition: 0, Time: at, Value: []byte(v)}
	}
	if err := w.Write(t.Context(), outputs(msgs...)); err != nil {
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
func fetching(t *testing.T, f *Fetcher, log *zap.Logger, topic string, offset int64) <-chan envelope.Record {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	queue := make(chan envelope.Record, 16)
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
func expect(t *testing.T, queue <-chan envelope.Record, from int64, vals []string) {
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
	queue := fetching(t, client.NewFetcher(), zap.NewNop(), "t", kafkago.FirstOffset)
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
	res, err := a.CreateTopics(t.Context(), &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{{
		Topic: "t", NumPartitions: 1, ReplicationFactor: 1,
		ConfigEntries: []kafkago.ConfigEntry{{ConfigName: "retention.ms", ConfigValue: retention}},
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
	queue := make(chan envelope.Record, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Fetch(ctx, zap.NewNop(), "t", 0, kafkago.FirstOffset, queue, nil)
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
	f.readWithReader(ctx, zap.NewNop(), "t", 0, 5, func(m envelope.Record) bool {
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
	good := wiretest.Fetched(t, 0, 0, []kafkago.Message{{Value: []byte("a")}, {Value: []byte("b")}})
	bad := wiretest.Fetched(t, 2, 0, []kafkago.Message{{Value: []byte("c")}})
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
	first := wiretest.Compacted(t, wiretest.Fetched(t, 0, 0, []kafkago.Message{{Value: []byte("a")}, {Value: []byte("b")}, {Value: []byte("c")}}), 9)
	second := wiretest.Fetched(t, 10, 0, []kafkago.Message{{Value: []byte("k")}})
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

// The fetcher reads brokers of every release from Kafka 0.11 on, with each
// fetch version from 4 to 11 they answer.
func TestFetcherSpeaksEveryVersion(t *testing.T) {
	releases := []struct {
		name     string
		versions func() *kversion.Versions
	}{{"0.11", kversion.V0_11_0}, {"1.0", kversion.V1_0_0}, {"1.1", kversion.V1_1_0}, {"2.0", kversion.V2_0_0}, {"2.1", kversion.V2_1_0}, {"2.3", kversion.V2_3_0}}
	tried := map[int16]bool{}
	for _, r := range releases {
		for v := int16(wire.MinFetchVersion); v <= wire.MaxFetchVersion; v++ {
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
	if len(tried) != wire.MaxFetchVersion-wire.MinFetchVersion+1 {
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
	var msgs []kafkago.Message
	leaders := map[int32]bool{}
	for _, topic := range []string{"t", "u"} {
		for p := range 6 {
			leaders[c.LeaderFor(topic, int32(p))] = true
			for i := range 3 {
				msgs = append(msgs, kafkago.Message{Topic: topic, Partition: p, Value: []byte(fmt.Sprintf("%s/%d/%d", topic, p, i))})
			}
		}
	}
	if err := w.Write(t.Context(), outputs(msgs...)); err != nil {
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
			if err := ReadRange(t.Context(), client, topic, p, 0, 3, func(m envelope.Record) error {
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

// throttleFetches answers the first n fetch requests of c as a broker over
// its quota does since KIP-219: at once, with a throttle time and no
// partition. It returns how long after each throttled answer the next
// request came, as far as there was one.
func throttleFetches(c *kfake.Cluster, n int, throttle time.Duration) func() []time.Duration {
	var (
		mu        sync.Mutex
		throttled []time.Time // when each throttled answer was sent
		gaps      []time.Duration
	)
	c.ControlKey(int16(kmsg.Fetch), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		mu.Lock()
		defer mu.Unlock()
		if len(gaps) < len(throttled) {
			gaps = append(gaps, time.Since(throttled[len(throttled)-1]))
		}
		if len(throttled) == n {
			return nil, nil, false
		}
		res := kreq.ResponseKind().(*kmsg.FetchResponse)
		res.ThrottleMillis = int32(throttle / time.Millisecond)
		throttled = append(throttled, time.Now())
		return res, nil, true
	})
	return func() []time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return append([]time.Duration(nil), gaps...)
	}
}

// countRequests counts the requests of a key that c gets, without
// answering them.
func countRequests(c *kfake.Cluster, key kmsg.Key) func() int {
	var n atomic.Int64
	c.ControlKey(int16(key), func(kmsg.Request) (kmsg.Response, error, bool) {
		n.Add(1)
		return nil, nil, false
	})
	return func() int { return int(n.Load()) }
}

// A throttled answer is no failure: the fetcher waits the throttle out on
// the same connection (dialling again would only escape the broker's
// mute), says nothing, and reads on.
func TestFetcherWaitsOutAThrottle(t *testing.T) {
	c, client := cluster(t, kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	produceTo(t, client, "t", time.Now(), values(0, 10)...)
	const throttle = 200 * time.Millisecond
	gaps := throttleFetches(c, 3, throttle)
	lookups := countRequests(c, kmsg.Metadata) // one for each connection made
	core, logs := observer.New(zap.WarnLevel)
	queue := fetching(t, client.NewFetcher(), zap.New(core), "t", 0)
	expect(t, queue, 0, values(0, 10))
	if logs.Len() > 0 {
		t.Errorf("logged %v, want nothing", logs.All())
	}
	if n := lookups(); n != 1 {
		t.Errorf("%d connections, want the one", n)
	}
	got := gaps()
	if len(got) != 3 {
		t.Fatalf("%d requests after the 3 throttled answers, want 3", len(got))
	}
	for i, g := range got {
		if g < throttle {
			t.Errorf("request %d came %v after a throttle of %v", i+2, g, throttle)
		}
	}
}

// ReadRange, under `orders inspect`, `orders dlq` and the aggregator's
// restore, reads through throttled answers too.
func TestReadRangeWaitsOutAThrottle(t *testing.T) {
	c, client := cluster(t, kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	produceTo(t, client, "t", time.Now(), values(0, 10)...)
	throttleFetches(c, 2, 50*time.Millisecond)
	var got []string
	err := ReadRange(t.Context(), client, "t", 0, 0, 10, func(m envelope.Record) error {
		got = append(got, string(m.Value))
		return nil
	})
	if err != nil || fmt.Sprint(got) != fmt.Sprint(values(0, 10)) {
		t.Fatalf("read %v, %v; want %v", got, err, values(0, 10))
	}
}

// A partition whose log was cut back below the offset to read from (an
// unclean leader election, a topic deleted and made again) is read on
// from its new end at once: waiting for the log to grow back to the old
// offset would skip every record written meanwhile.
func TestFetcherReadsOnFromTheNewEndOfATruncatedPartition(t *testing.T) {
	_, client := cluster(t, kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	produceTo(t, client, "t", time.Now(), values(0, 5)...)
	core, logs := observer.New(zap.WarnLevel)
	// The fetcher begins at offset 50 of a log that now ends at 5, and
	// knows no record before it: it reads the partition from its start.
	queue := fetching(t, client.NewFetcher(), zap.New(core), "t", 50)
	const msg = "partition cut back below the offset to read from; reading on from the first record written since"
	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		all := logs.All()
		if len(all) == 0 {
			return false, "nothing logged, want that the partition was cut back"
		}
		return logs.FilterMessage(msg).Len() > 0, fmt.Sprintf("logged %d entries, the last %q %v; want that the partition was cut back",
			len(all), all[len(all)-1].Message, all[len(all)-1].ContextMap())
	})
	if f := logs.FilterMessage(msg).All()[0].ContextMap(); f["offset"] != int64(50) || f["end"] != int64(5) || f["lost"] != int64(45) || f["from"] != int64(0) {
		t.Errorf("logged %v, want offset 50, end 5, lost 45, from 0", f)
	}
	expect(t, queue, 0, values(0, 5))
	produceTo(t, client, "t", time.Now(), values(5, 5)...)
	expect(t, queue, 5, values(5, 5))
}

// A fetcher that begins past the end of a topic deleted and made again
// while nobody read it reads the new topic from its start.
func TestFetcherBegunPastTheEndOfARecreatedTopicReadsItAll(t *testing.T) {
	c, client := cluster(t, kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	produceTo(t, client, "t", time.Now().Add(-time.Minute), values(0, 10)...)
	recreate(t, c, "t")
	produceTo(t, client, "t", time.Now(), values(10, 3)...)
	queue := fetching(t, client.NewFetcher(), zap.NewNop(), "t", 10)
	expect(t, queue, 0, values(10, 3))
}

// A fetcher that begins where it left off learns the time of the record
// before: cut back later, the partition is read on from the records
// written since, not from its start.
func TestFetcherBegunMidwayKnowsTheTimeOfTheRecordBefore(t *testing.T) {
	c, client := cluster(t, kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	produceTo(t, client, "t", time.Now().Add(-time.Hour), values(0, 10)...)
	seen := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Observe: true, Count: -1})
	queue := fetching(t, client.NewFetcher(), zap.NewNop(), "t", 10)
	// The fetch of the record before offset 10, and one from 10 on.
	if err := seen.Wait(t.Context(), 2); err != nil {
		t.Fatal(err)
	}
	seen.Remove()
	hold := holdFetches(t, c, "t")
	// Records that survive the cut, stamped before the last the fetcher
	// knows, and records written since.
	recreate(t, c, "t")
	produceTo(t, client, "t", time.Now().Add(-2*time.Hour), values(100, 4)...)
	produceTo(t, client, "t", time.Now(), values(10, 3)...)
	hold.Remove()
	expect(t, queue, 4, values(10, 3))
}

// preferReplica answers every fetch request the leader of t/0 gets with
// the preferred read replica (KIP-392) and no records, as a broker with a
// replica selector does, and leaves the others to c. It returns how many
// fetch requests each broker got.
func preferReplica(c *kfake.Cluster, leader, replica int32) func() map[int32]int {
	var (
		mu       sync.Mutex
		requests = map[int32]int{}
	)
	c.ControlKey(int16(kmsg.Fetch), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		node := c.CurrentNode()
		mu.Lock()
		requests[node]++
		mu.Unlock()
		if node != leader {
			return nil, nil, false
		}
		req := kreq.(*kmsg.FetchRequest)
		res := req.ResponseKind().(*kmsg.FetchResponse)
		rt := kmsg.NewFetchResponseTopic()
		rt.Topic = "t"
		rp := kmsg.NewFetchResponseTopicPartition()
		rp.HighWatermark, rp.LastStableOffset = 1000, 1000
		rp.PreferredReadReplica = replica
		rt.Partitions = append(rt.Partitions, rp)
		res.Topics = append(res.Topics, rt)
		return res, nil, true
	})
	return func() map[int32]int {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(requests)
	}
}

// A leader that names a preferred read replica sends no records: the
// fetcher reads them from that replica.
func TestFetcherReadsFromThePreferredReplica(t *testing.T) {
	c, client := cluster(t, kfake.NumBrokers(3), kfake.SeedTopics(1, "t"))
	produceTo(t, client, "t", time.Now(), values(0, 20)...)
	leader := c.LeaderFor("t", 0)
	replica := (leader + 1) % 3
	c.SetFollowers("t", 0, []int32{replica})
	requests := preferReplica(c, leader, replica)
	queue := fetching(t, client.NewFetcher(), zap.NewNop(), "t", 0)
	expect(t, queue, 0, values(0, 20))
	produceTo(t, client, "t", time.Now(), values(20, 5)...)
	expect(t, queue, 20, values(20, 5))
	if got := requests(); got[leader] != 1 || got[replica] < 2 {
		t.Errorf("fetch requests by broker %v, want the leader's 1 and the rest to replica %d", got, replica)
	}
}

// A preferred read replica the fetcher cannot read from (one it cannot
// find, or one that sends it elsewhere in turn) is a failure, logged and
// waited after like any other: the broker is not asked again at once,
// again and again.
func TestFetcherDoesNotSpinOnAPreferredReplica(t *testing.T) {
	for _, c := range []struct {
		name    string
		replica int32
	}{{"itself", 0}, {"unknown", 9}} {
		t.Run(c.name, func(t *testing.T) {
			kc, client := cluster(t, kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
			requests := preferReplica(kc, kc.LeaderFor("t", 0), c.replica)
			core, logs := observer.New(zap.WarnLevel)
			queue := fetching(t, client.NewFetcher(), zap.New(core), "t", 0)
			// Each failure is one round: a request to the leader and at
			// most one to the replica, then a wait.
			testkit.Eventually(t, 30*time.Second, func() (bool, string) {
				fetches := 0
				for _, n := range requests() {
					fetches += n
				}
				failures := logs.FilterMessage("fetch; retrying").Len()
				if fetches > 2*(failures+1) {
					t.Fatalf("%d fetch requests, %d failures logged", fetches, failures)
				}
				return failures >= 4, fmt.Sprintf("%d failures logged, %d fetch requests", failures, fetches)
			})
			select {
			case m := <-queue:
				t.Fatalf("a record at %d from a broker with none to give", m.Offset)
			default:
			}
		})
	}
}

// A partition cut back below the offset the fetcher reads from, and
// written to again before the fetcher asks, is read on from the first
// record written since the last one it sent: none of the new records is
// skipped.
func TestFetcherReadsEveryRecordWrittenSinceAPartitionWasCutBack(t *testing.T) {
	c, client := cluster(t, kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	produceTo(t, client, "t", time.Now().Add(-time.Minute), values(0, 10)...)
	queue := fetching(t, client.NewFetcher(), zap.NewNop(), "t", kafkago.FirstOffset)
	expect(t, queue, 0, values(0, 10))

	// While the fetcher cannot fetch, the topic is deleted and made again,
	// and three records are written to it.
	hold := holdFetches(t, c, "t")
	recreate(t, c, "t")
	produceTo(t, client, "t", time.Now(), values(10, 3)...)
	hold.Remove()
	expect(t, queue, 0, values(10, 3))
}

// A partition cut back and written again past the fetcher's offset while
// the fetcher could not ask gives no OFFSET_OUT_OF_RANGE: the fetcher sees
// that the record it sent last is gone, and reads on from the first
// record written since.
func TestFetcherSeesAPartitionWrittenAgainPastItsOffset(t *testing.T) {
	c, client := cluster(t, kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	produceTo(t, client, "t", time.Now().Add(-time.Minute), values(0, 10)...)
	core, logs := observer.New(zap.WarnLevel)
	queue := fetching(t, client.NewFetcher(), zap.New(core), "t", kafkago.FirstOffset)
	expect(t, queue, 0, values(0, 10))

	hold := holdFetches(t, c, "t")
	recreate(t, c, "t")
	produceTo(t, client, "t", time.Now(), values(100, 15)...)
	hold.Remove()
	expect(t, queue, 0, values(100, 15))
	if logs.FilterMessageSnippet("partition written again below the offset").Len() == 0 {
		t.Error("the fetcher did not say that the partition was written again")
	}
}

// The fetcher's offset requests follow a partition's leader at once when it
// moves, instead of going to the old one until the metadata expires.
func TestFetcherListsOffsetsAtANewLeaderAtOnce(t *testing.T) {
	c, client := cluster(t, kfake.NumBrokers(3), kfake.SeedTopics(1, "t"))
	produceTo(t, client, "t", time.Now(), values(0, 5)...)
	f := client.NewFetcher()
	defer f.Close()
	if _, _, err := f.bounds(t.Context(), "t", 0); err != nil {
		t.Fatal(err)
	}
	if err := c.MoveTopicPartition("t", 0, (c.LeaderFor("t", 0)+1)%3); err != nil {
		t.Fatal(err)
	}
	first, end, err := f.bounds(t.Context(), "t", 0)
	if err != nil || first != 0 || end != 5 {
		t.Fatalf("bounds after the leader moved: %d, %d, %v; want 0, 5", first, end, err)
	}
}

// holdFetches makes the broker refuse every fetch of topic, as NOT_LEADER,
// once the fetcher has asked at least once; Remove ends it.
func holdFetches(t *testing.T, c *kfake.Cluster, topic string) *kfake.FaultHandle {
	t.Helper()
	hold := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Topic: topic, Err: kerr.NotLeaderForPartition, Count: -1})
	if err := hold.Wait(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	return hold
}

// recreate deletes topic and makes it again, with one empty partition.
func recreate(t *testing.T, c *kfake.Cluster, topic string) {
	t.Helper()
	if err := c.DeleteTopic(topic); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateTopic(topic, 1, nil); err != nil {
		t.Fatal(err)
	}
}
