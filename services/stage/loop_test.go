package stage_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/orderflow/orders/services/broker"
	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/stage"
	"github.com/orderflow/orders/services/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// delayed handles records no earlier than the unix-nanosecond time in
// their "due" header, and copies them to an output topic.
type delayed struct {
	out     string
	mu      sync.Mutex
	handled []handled
	asked   chan struct{}
	once    sync.Once
}

type handled struct {
	partition int
	offset    int64
	due, at   time.Time
}

func (d *delayed) Open(_ context.Context, a stage.Assignment) (stage.Partition, int64, error) {
	return d, a.Committed, nil
}

func (d *delayed) DueAt(r envelope.Record) time.Time {
	d.once.Do(func() { close(d.asked) })
	v, _ := r.Header("due")
	n, _ := strconv.ParseInt(string(v), 10, 64)
	return time.Unix(0, n)
}

func (d *delayed) Handle(_ context.Context, batch []envelope.Record) ([]envelope.Output, error) {
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	var outs []envelope.Output
	for _, r := range batch {
		d.handled = append(d.handled, handled{r.Partition, r.Offset, d.DueAt(r), now})
		outs = append(outs, envelope.Output{Topic: d.out, Partition: envelope.AnyPartition, Key: r.Key, Value: r.Value})
	}
	return outs, nil
}

func (d *delayed) snapshot() []handled {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]handled(nil), d.handled...)
}

func setup(t *testing.T, partitions int) (kafka.Client, string, string) {
	b := testkit.Broker(t, broker.Config{})
	client := kafka.Client{Brokers: []string{b.Addr()}}
	in, out := "in_"+t.Name(), "out_"+t.Name()
	admin := client.Admin()
	defer admin.Close()
	_, err := admin.CreateTopics(context.Background(), &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{
		{Topic: in, NumPartitions: partitions, ReplicationFactor: 1},
		{Topic: out, NumPartitions: partitions, ReplicationFactor: 1},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return client, in, out
}

// produce writes one record per due time to the given partition.
func produce(t *testing.T, client kafka.Client, topic string, partition int, dues ...time.Time) {
	t.Helper()
	var outs []envelope.Output
	for i, due := range dues {
		outs = append(outs, envelope.Output{
			Topic: topic, Partition: partition, Key: []byte(strconv.Itoa(i)), Value: []byte("v"),
			Headers: []envelope.Header{{Key: "due", Value: []byte(strconv.FormatInt(due.UnixNano(), 10))}},
		})
	}
	w := client.NewWriter(kafka.WriterConfig{}, zap.NewNop())
	defer w.Close()
	if err := w.Write(context.Background(), outs); err != nil {
		t.Fatal(err)
	}
}

// startLoop runs a loop until the test ends; stop cancels it and returns a
// channel that yields Run's result.
func startLoop(t *testing.T, client kafka.Client, topic string, st stage.Stage) (stop func() <-chan error) {
	t.Helper()
	loop, err := stage.NewLoop(stage.Config{
		Client: client, Group: "g_" + t.Name(), Topic: topic,
		Options: stage.Options{SessionTimeout: sessionTimeout},
	}, st, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var runErr error
	finished := make(chan struct{})
	go func() {
		runErr = loop.Run(ctx)
		close(finished)
	}()
	stop = func() <-chan error {
		cancel()
		res := make(chan error, 1)
		go func() {
			<-finished
			res <- runErr
		}()
		return res
	}
	t.Cleanup(func() { <-stop() })
	return stop
}

func TestWaitingPartitionDoesNotHoldBackOthers(t *testing.T) {
	client, in, out := setup(t, 2)
	now := time.Now()
	late := now.Add(4 * time.Second)
	produce(t, client, in, 0, late)
	produce(t, client, in, 1, now, now, now.Add(-time.Second), now)
	st := &delayed{out: out, asked: make(chan struct{})}
	startLoop(t, client, in, st)

	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		h := st.snapshot()
		return len(h) == 5, "handled " + strconv.Itoa(len(h)) + " of 5 records"
	})
	var p0 *handled
	for _, h := range st.snapshot() {
		if h.at.Before(h.due) {
			t.Errorf("partition %d offset %d handled %v before it was due", h.partition, h.offset, h.due.Sub(h.at))
		}
		if h.partition == 0 {
			p0 = &h
		}
	}
	for _, h := range st.snapshot() {
		if h.partition == 1 && !h.at.Before(p0.at) {
			t.Errorf("partition 1 offset %d was handled after the waiting record of partition 0: held back", h.offset)
		}
	}
}

func TestStopDuringLongDelayIsPrompt(t *testing.T) {
	client, in, out := setup(t, 1)
	produce(t, client, in, 0, time.Now().Add(time.Minute))
	st := &delayed{out: out, asked: make(chan struct{})}
	stop := startLoop(t, client, in, st)
	select {
	case <-st.asked:
	case <-time.After(30 * time.Second):
		t.Fatal("the loop never looked at the delayed record")
	}
	select {
	case err := <-stop():
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the loop sat out the delay instead of stopping")
	}
	if h := st.snapshot(); len(h) != 0 {
		t.Fatalf("a record due in a minute was handled: %+v", h)
	}
}

// resumeAt is a stage whose own state says where to resume, ahead of the
// group's committed offset, as the aggregator's does.
type resumeAt struct {
	at      int64
	handled chan int64
}

func (r *resumeAt) Open(context.Context, stage.Assignment) (stage.Partition, int64, error) {
	return r, r.at, nil
}

func (r *resumeAt) Handle(_ context.Context, batch []envelope.Record) ([]envelope.Output, error) {
	for _, rec := range batch {
		r.handled <- rec.Offset
	}
	return nil, nil
}

// A stage that resumes past the group's committed offset has that offset
// committed at once, so the group shows no lag its state has already
// cleared.
func TestResumeAheadOfTheGroupIsCommitted(t *testing.T) {
	client, in, _ := setup(t, 1)
	produce(t, client, in, 0, time.Now(), time.Now(), time.Now())
	st := &resumeAt{at: 3, handled: make(chan int64, 3)}
	startLoop(t, client, in, st)
	admin := client.Admin()
	defer admin.Close()
	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		res, err := admin.OffsetFetch(context.Background(), &kafkago.OffsetFetchRequest{GroupID: "g_" + t.Name(), Topics: map[string][]int{in: {0}}})
		if err != nil {
			return false, err.Error()
		}
		parts := res.Topics[in]
		if len(parts) == 0 {
			return false, "no offsets for the group yet"
		}
		got := parts[0].CommittedOffset
		return got == 3, "committed " + strconv.FormatInt(got, 10)
	})
	select {
	case off := <-st.handled:
		t.Fatalf("record %d before the resume point was handled", off)
	default:
	}
}

// A batch whose records together exceed what the broker takes in one
// request (max.message.bytes, 1 MiB by default) is written in several: a
// stage that wrote it as one would be refused for good, and stop.
func TestWriterSplitsABatchLargerThanTheBrokerTakes(t *testing.T) {
	client, _, out := setup(t, 1)
	const n, size = 600, 5 << 10 // 3 MiB in all
	outs := make([]envelope.Output, n)
	for i := range outs {
		outs[i] = envelope.Output{
			Topic: out, Partition: 0, Key: []byte(strconv.Itoa(i)), Value: make([]byte, size),
			Headers: []envelope.Header{{Key: "h", Value: make([]byte, 64)}},
		}
	}
	w := client.NewWriter(kafka.WriterConfig{BatchSize: n}, zap.NewNop())
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Write(ctx, outs); err != nil {
		msg := err.Error()
		t.Fatalf("writing %d records of %d bytes: %s", n, size, msg[:min(len(msg), 300)])
	}
	admin := client.Admin()
	defer admin.Close()
	res, err := admin.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{out: {kafkago.LastOffsetOf(0)}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Topics[out][0].LastOffset; got != n {
		t.Fatalf("the topic ends at offset %d, want %d", got, n)
	}
}

// resumer copies records to an output topic and, as the aggregator does,
// says that its outputs record where it resumes.
type resumer struct {
	out     string
	handled chan int
}

func (r *resumer) Open(_ context.Context, a stage.Assignment) (stage.Partition, int64, error) {
	return r, a.Committed, nil
}

func (r *resumer) Handle(_ context.Context, batch []envelope.Record) ([]envelope.Output, error) {
	outs := make([]envelope.Output, len(batch))
	for i, rec := range batch {
		outs[i] = envelope.Output{Topic: r.out, Partition: rec.Partition, Key: rec.Key, Value: rec.Value}
	}
	r.handled <- len(batch)
	return outs, nil
}

func (r *resumer) ResumeTopic() string { return r.out }

// A Resumer's progress is committed once it has caught up, so its group
// shows no lag once it has handled everything, even though it does not
// commit after every batch.
func TestResumerCommitsOnceCaughtUp(t *testing.T) {
	client, in, out := setup(t, 1)
	const n = 3000
	dues := make([]time.Time, n)
	produce(t, client, in, 0, dues...)
	st := &resumer{out: out, handled: make(chan int, n)}
	startLoop(t, client, in, st)
	admin := client.Admin()
	defer admin.Close()
	handled := 0
	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		for len(st.handled) > 0 {
			handled += <-st.handled
		}
		res, err := admin.OffsetFetch(context.Background(), &kafkago.OffsetFetchRequest{GroupID: "g_" + t.Name(), Topics: map[string][]int{in: {0}}})
		if err != nil {
			return false, err.Error()
		}
		var got int64 = -1
		if parts := res.Topics[in]; len(parts) > 0 {
			got = parts[0].CommittedOffset
		}
		return got == n, "handled " + strconv.Itoa(handled) + ", committed " + strconv.FormatInt(got, 10)
	})
}

// stateAndOther returns, for each batch, a record for its resume topic and
// then one for another topic.
type stateAndOther struct{ other, state string }

func (s *stateAndOther) Open(_ context.Context, a stage.Assignment) (stage.Partition, int64, error) {
	return s, a.Committed, nil
}

func (s *stateAndOther) Handle(_ context.Context, batch []envelope.Record) ([]envelope.Output, error) {
	last := batch[len(batch)-1]
	return []envelope.Output{
		{Topic: s.state, Partition: 0, Value: []byte("state")},
		{Topic: s.other, Partition: 0, Key: last.Key, Value: last.Value},
	}, nil
}

func (s *stateAndOther) ResumeTopic() string { return s.state }

// A Resumer's records to its resume topic are written only once the batch's
// other outputs are acknowledged, whatever their order among the outputs:
// resuming from them never skips a record whose outputs were lost.
func TestResumerWritesItsResumeTopicLast(t *testing.T) {
	client, in, state := setup(t, 1)
	// The other topic refuses the record, as too large, until its limit is
	// raised: the broker refuses one partition's records and takes the
	// other's.
	other := "other_" + t.Name()
	admin := client.Admin()
	defer admin.Close()
	if _, err := admin.CreateTopics(context.Background(), &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{{
		Topic: other, NumPartitions: 1, ReplicationFactor: 1,
		ConfigEntries: []kafkago.ConfigEntry{{ConfigName: "max.message.bytes", ConfigValue: "10"}},
	}}}); err != nil {
		t.Fatal(err)
	}
	produce(t, client, in, 0, time.Now())
	core, logs := observer.New(zap.WarnLevel)
	loop, err := stage.NewLoop(stage.Config{
		Client: client, Group: "g_" + t.Name(), Topic: in,
		Options: stage.Options{SessionTimeout: sessionTimeout},
	}, &stateAndOther{other: other, state: state}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = loop.Run(ctx)
	}()
	defer func() { cancel(); <-done }()

	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		n := logs.FilterMessageSnippet("retrying").Len()
		return n >= 2, "the loop tried to write the batch " + strconv.Itoa(n) + " times"
	})
	if n := endOffset(t, client, state); n != 0 {
		t.Fatalf("the resume topic has %d records while the batch's other output is not written", n)
	}
	res, err := admin.AlterConfigs(context.Background(), &kafkago.AlterConfigsRequest{Resources: []kafkago.AlterConfigRequestResource{{
		ResourceType: kafkago.ResourceTypeTopic, ResourceName: other,
		Configs: []kafkago.AlterConfigRequestConfig{{Name: "max.message.bytes", Value: "1048588"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range res.Errors {
		if e != nil {
			t.Fatal(e)
		}
	}
	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		o, s := endOffset(t, client, other), endOffset(t, client, state)
		return o == 1 && s == 1, "other " + strconv.FormatInt(o, 10) + ", resume topic " + strconv.FormatInt(s, 10)
	})
}

func endOffset(t *testing.T, client kafka.Client, topic string) int64 {
	t.Helper()
	admin := client.Admin()
	defer admin.Close()
	res, err := admin.ListOffsets(context.Background(), &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{topic: {kafkago.LastOffsetOf(0)}}})
	if err != nil {
		t.Fatal(err)
	}
	if parts := res.Topics[topic]; len(parts) == 1 && parts[0].Error == nil {
		return parts[0].LastOffset
	}
	return -1
}

// committed is the group's committed offset of topic/0, -1 if none.
func committed(t *testing.T, client kafka.Client, group, topic string) int64 {
	t.Helper()
	admin := client.Admin()
	defer admin.Close()
	res, err := admin.OffsetFetch(context.Background(), &kafkago.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: {0}}})
	if err != nil {
		t.Fatal(err)
	}
	if parts := res.Topics[topic]; len(parts) == 1 {
		return parts[0].CommittedOffset
	}
	return -1
}

// Records a transactional producer wrote are handled once each, and the
// group commits past the transaction's marker, which is not a record: it
// shows no lag that no record will clear.
func TestLoopCommitsPastTransactionMarkers(t *testing.T) {
	client, in, _ := setup(t, 1)
	end := produceTransactions(t, client, in, 2, 3)
	st := &resumeAt{at: kafkago.FirstOffset, handled: make(chan int64, 8)}
	startLoop(t, client, in, st)
	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		got := committed(t, client, "g_"+t.Name(), in)
		return got == end, "committed " + strconv.FormatInt(got, 10)
	})
	var offsets []int64
	for len(st.handled) > 0 {
		offsets = append(offsets, <-st.handled)
	}
	if fmt.Sprint(offsets) != "[0 1 2 4 5 6]" {
		t.Errorf("handled offsets %v, want the records' [0 1 2 4 5 6]", offsets)
	}
}

// produceTransactions writes n transactions of records each to topic/0
// with a transactional franz-go producer, and returns the partition's end
// offset: each transaction ends with a marker, which takes an offset.
func produceTransactions(t *testing.T, client kafka.Client, topic string, n, records int) int64 {
	t.Helper()
	tx, err := kgo.NewClient(kgo.SeedBrokers(client.Brokers...), kgo.TransactionalID("tx_"+t.Name()), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	for range n {
		if err := tx.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := range records {
			if err := tx.ProduceSync(t.Context(), &kgo.Record{Partition: 0, Value: []byte(strconv.Itoa(i))}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.EndTransaction(t.Context(), kgo.TryCommit); err != nil {
			t.Fatal(err)
		}
	}
	end := endOffset(t, client, topic)
	if want := int64(n * (records + 1)); end != want {
		t.Fatalf("end offset %d, want %d: %d records and %d markers", end, want, n*records, n)
	}
	return end
}

// Reading a range that ends with a transaction's marker ends: the marker
// takes the last offset, and no record ever will.
func TestReadRangeEndsAfterATransactionMarker(t *testing.T) {
	client, in, _ := setup(t, 1)
	end := produceTransactions(t, client, in, 1, 3)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var offsets []int64
	err := kafka.ReadRange(ctx, client, in, 0, 0, end, func(m envelope.Record) error {
		offsets = append(offsets, m.Offset)
		return nil
	})
	if err != nil || fmt.Sprint(offsets) != "[0 1 2]" {
		t.Fatalf("read %v, %v; want [0 1 2] and no error", offsets, err)
	}
}
