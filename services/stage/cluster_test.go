package stage_test

import (
	"context"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/stage"
	"github.com/orderflow/orders/services/testkit"
)

// The tests here run on a 3-node kfake cluster, with faults a real cluster
// has: leaders that move, brokers that refuse writes, coordinators that
// move.

// sessionTimeout is the least Kafka's default group.min.session.timeout.ms
// takes.
const sessionTimeout = 6 * time.Second

func cluster(t *testing.T, opts ...kfake.Opt) (*kfake.Cluster, kafka.Client) {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(3)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, kafka.Client{Brokers: c.ListenAddrs()}
}

func createTopics(t *testing.T, c *kfake.Cluster, partitions int32, topics ...string) {
	t.Helper()
	for _, topic := range topics {
		if err := c.CreateTopic(topic, partitions, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// copier copies each record to out, keyed as it came; a Refuser of its
// own sends a refused output to dlq.
type copier struct {
	out, dlq string
	refused  atomic.Int64
}

func (s *copier) Open(_ context.Context, a stage.Assignment) (stage.Partition, int64, error) {
	return s, a.Committed, nil
}

func (s *copier) Handle(_ context.Context, batch []envelope.Record) ([]envelope.Output, error) {
	outs := make([]envelope.Output, 0, len(batch))
	for _, r := range batch {
		outs = append(outs, envelope.Output{Topic: s.out, Partition: envelope.AnyPartition, Key: r.Key, Value: r.Value})
	}
	return outs, nil
}

func (s *copier) Refused(batch []envelope.Record, outs []envelope.Output, i int, err error) (envelope.Output, bool) {
	if s.dlq == "" || outs[i].Topic == s.dlq {
		return envelope.Output{}, false
	}
	s.refused.Add(1)
	return envelope.Output{Topic: s.dlq, Partition: envelope.AnyPartition, Key: batch[i].Key, Value: []byte(err.Error())}, true
}

// holds records the partitions the loop reports held.
type holds struct {
	mu   sync.Mutex
	held map[int]error
	ever atomic.Int64
}

func (*holds) Joined()                                                 {}
func (*holds) Handled([]envelope.Record, []envelope.Output, time.Time) {}
func (*holds) Late(time.Duration)                                      {}
func (*holds) Waiting(int, int)                                        {}
func (*holds) Refused(error)                                           {}
func (h *holds) Holding(p int, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.held == nil {
		h.held = map[int]error{}
	}
	if err != nil {
		h.held[p] = err
		h.ever.Add(1)
	} else {
		delete(h.held, p)
	}
}

// running is a loop started by runLoop.
type running struct {
	cancel   context.CancelFunc
	finished chan struct{} // closed when Run returned err
	err      error
}

// stop cancels the loop and returns Run's result.
func (r *running) stop() error {
	r.cancel()
	<-r.finished
	return r.err
}

func runLoop(t *testing.T, cfg stage.Config, st stage.Stage) *running {
	t.Helper()
	if cfg.SessionTimeout == 0 {
		cfg.SessionTimeout = sessionTimeout
	}
	loop, err := stage.NewLoop(cfg, st, zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, finished: make(chan struct{})}
	go func() {
		r.err = loop.Run(ctx)
		close(r.finished)
	}()
	t.Cleanup(func() { _ = r.stop() })
	return r
}

// produceKeys writes n records with keys k0, k1, ... to partition 0 of topic.
func produceKeys(t *testing.T, client kafka.Client, topic string, n int) {
	t.Helper()
	outs := make([]envelope.Output, n)
	for i := range outs {
		outs[i] = envelope.Output{Topic: topic, Partition: 0, Key: []byte("k" + strconv.Itoa(i)), Value: []byte("v")}
	}
	w := client.NewWriter(kafka.WriterConfig{}, zap.NewNop())
	defer w.Close()
	if err := w.Write(context.Background(), outs); err != nil {
		t.Fatal(err)
	}
}

// countRecords counts the records of every partition of topic by key.
func countRecords(t *testing.T, client kafka.Client, topic string) map[string]int {
	t.Helper()
	keys := map[string]int{}
	err := kafka.ReadNew(context.Background(), client, []string{topic}, map[string]map[int]int64{}, func(m envelope.Record) error {
		keys[string(m.Key)]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// A write that a broker refuses for some partitions (NOT_ENOUGH_REPLICAS,
// nothing written) is sent again only for those: the records acknowledged
// on the other partitions are not written twice.
func TestFailedWriteSendsAgainOnlyWhatFailed(t *testing.T) {
	c, client := cluster(t)
	in, out := "in", "out"
	createTopics(t, c, 1, in)
	createTopics(t, c, 6, out)
	const n = 300
	produceKeys(t, client, in, n)

	// Partition 0 of out refuses every write until it has refused enough
	// of them that the writer's own retries are spent.
	refuse := c.Fault(kfake.Fault{
		Keys: []kmsg.Key{kmsg.Produce}, Topic: out, Partitions: []int32{0},
		Err: kerr.NotEnoughReplicas, Count: -1,
	})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = refuse.Wait(ctx, 8)
		refuse.Remove()
	}()
	group := "g"
	runLoop(t, stage.Config{Client: client, Group: group, Topic: in, Options: stage.Options{MaxBatch: n}}, &copier{out: out})

	waitCommitted(t, client, group, in, n)
	if refuse.Hits() < 8 {
		t.Fatalf("the fault refused %d writes, want at least 8", refuse.Hits())
	}
	keys := countRecords(t, client, out)
	twice := 0
	for _, k := range keys {
		if k > 1 {
			twice++
		}
	}
	if len(keys) != n || twice > 0 {
		t.Fatalf("out holds %d distinct keys of %d, %d of them more than once", len(keys), n, twice)
	}
}

// After a partition's leader moves, the writer sends to the new leader at
// once instead of to the old one until its metadata expires.
func TestWriterFindsAMovedLeaderAtOnce(t *testing.T) {
	c, client := cluster(t)
	out := "out"
	createTopics(t, c, 1, out)
	w := client.NewWriter(kafka.WriterConfig{}, zap.NewNop())
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msg := []envelope.Output{{Topic: out, Partition: 0, Key: []byte("k"), Value: []byte("v")}}
	if err := w.Write(ctx, msg); err != nil {
		t.Fatal(err)
	}
	old := c.LeaderFor(out, 0)
	if err := c.MoveTopicPartition(out, 0, (old+1)%3); err != nil {
		t.Fatal(err)
	}
	toOld := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Nodes: []int32{old}, Observe: true, Count: -1})
	defer toOld.Remove()
	if err := w.Write(ctx, msg); err != nil {
		t.Fatalf("write after the leader moved: %v (%d requests to the old leader)", err, toOld.Hits())
	}
	if n := toOld.Hits(); n > 1 {
		t.Fatalf("%d produce requests went to the old leader after it said it no longer leads", n)
	}
}

// A record the broker refuses for good (MESSAGE_TOO_LARGE) does not hold
// its partition: the stage's Refuser gives it another outcome, and the
// batch is committed.
func TestOutputRefusedForGoodGetsTheRefusersOutcome(t *testing.T) {
	c, client := cluster(t)
	in, out, dlq := "in", "out", "dlq"
	createTopics(t, c, 1, in)
	createTopics(t, c, 3, out, dlq)
	const n = 50
	produceKeys(t, client, in, n)
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: out, Err: kerr.MessageTooLarge, Count: -1})
	st := &copier{out: out, dlq: dlq}
	group := "g"
	runLoop(t, stage.Config{Client: client, Group: group, Topic: in}, st)

	waitCommitted(t, client, group, in, n)
	if keys := countRecords(t, client, dlq); len(keys) != n {
		t.Fatalf("the DLQ holds %d distinct keys, want %d", len(keys), n)
	}
	if got := st.refused.Load(); got != n {
		t.Fatalf("the Refuser was asked for %d records, want %d", got, n)
	}
}

// A partition whose outputs are refused for good, with no other outcome,
// holds and says so; and its member still takes part in the next
// rebalance instead of waiting on the write for ever.
func TestHeldPartitionDoesNotKeepItsMemberFromTheNextGeneration(t *testing.T) {
	c, client := cluster(t)
	in, out := "in", "out"
	createTopics(t, c, 2, in)
	createTopics(t, c, 1, out)
	produceKeys(t, client, in, 10)
	refuse := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: out, Err: kerr.MessageTooLarge, Count: -1})
	group := "g"
	obs := &holds{}
	runLoop(t, stage.Config{Client: client, Group: group, Topic: in, Observer: obs}, &copier{out: out})
	testkit.Eventually(t, 60*time.Second, func() (bool, string) {
		return refuse.Hits() >= 10, "the broker refused " + strconv.Itoa(refuse.Hits()) + " writes"
	})
	if obs.ever.Load() == 0 {
		t.Error("no partition was reported held")
	}
	obs.mu.Lock()
	for _, err := range obs.held {
		if !errors.Is(err, kafkago.MessageSizeTooLarge) {
			t.Errorf("held for %v, want MESSAGE_TOO_LARGE", err)
		}
	}
	obs.mu.Unlock()

	// A second member joins: the first must leave its held write and join
	// the next generation, or the broker drops it from the group.
	runLoop(t, stage.Config{Client: client, Group: group, Topic: in}, &copier{out: out})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := c.WaitGroupStable(ctx, group, 2); err != nil {
		t.Fatalf("the group never became stable with both members: %v", err)
	}
}

// A session timeout the broker refuses stops the loop with an error that
// names the setting and the broker's bounds, instead of retrying for ever.
func TestSessionTimeoutTheBrokerRefusesStopsTheLoop(t *testing.T) {
	c, client := cluster(t)
	createTopics(t, c, 1, "in")
	r := runLoop(t, stage.Config{Client: client, Group: "g", Topic: "in", Options: stage.Options{SessionTimeout: 3 * time.Second}}, &copier{out: "in"})
	select {
	case <-r.finished:
	case <-time.After(60 * time.Second):
		t.Fatal("the loop still retries a session timeout the broker refuses")
	}
	err := r.err
	if err == nil || !strings.Contains(err.Error(), "SESSION_TIMEOUT") || !errors.Is(err, kafkago.InvalidSessionTimeout) {
		t.Fatalf("loop stopped with %v, want an INVALID_SESSION_TIMEOUT error naming SESSION_TIMEOUT", err)
	}
	if !strings.Contains(err.Error(), "6s") {
		t.Errorf("the error does not name the broker's least session timeout: %v", err)
	}
}

// A commit the group's coordinator refuses as NOT_COORDINATOR (it moved)
// reaches the coordinator of now, for the same generation: the batch it
// covers is not handled again.
func TestCommitReachesAMovedCoordinator(t *testing.T) {
	c, client := cluster(t)
	in, out := "in", "out"
	createTopics(t, c, 1, in)
	createTopics(t, c, 3, out)
	const n = 100
	produceKeys(t, client, in, n)
	moved := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Err: kerr.NotCoordinator, Count: 1})
	group := "g"
	runLoop(t, stage.Config{Client: client, Group: group, Topic: in}, &copier{out: out})
	waitCommitted(t, client, group, in, n)
	if moved.Hits() != 1 {
		t.Fatalf("the coordinator refused %d commits, want 1", moved.Hits())
	}
	// No leader epoch is known, and the commit says so: a client that
	// checks epochs would take epoch 0 for a truncation.
	if gc := c.GroupInfo(group).Commits[in][0]; gc.LeaderEpoch != -1 {
		t.Errorf("committed with leader epoch %d, want -1", gc.LeaderEpoch)
	}
	keys := countRecords(t, client, out)
	for k, m := range keys {
		if m > 1 {
			t.Errorf("%s written %d times", k, m)
		}
	}
	if len(keys) != n {
		t.Fatalf("out holds %d distinct keys, want %d", len(keys), n)
	}
}

// A partition cut back and written again past the group's offset while no
// member read it (a topic deleted and made again, its offsets committed
// again) is read by the next owner from the first record written since:
// the commit's metadata names the last record handled, and the partition
// no longer holds it.
func TestNextOwnerSeesAPartitionWrittenAgainPastTheCommittedOffset(t *testing.T) {
	c, client := cluster(t)
	in, out := "in", "out"
	createTopics(t, c, 1, in)
	createTopics(t, c, 1, out)
	const n = 10
	produceKeys(t, client, in, n)
	group := "g"
	first := runLoop(t, stage.Config{Client: client, Group: group, Topic: in}, &copier{out: out})
	waitCommitted(t, client, group, in, n)
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	admin := client.Admin()
	defer admin.Close()
	ctx := t.Context()
	res, err := admin.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{in: {0}}})
	if err != nil {
		t.Fatal(err)
	}
	was := res.Topics[in][0]
	if _, ok := kafka.ParseMark(was.Metadata); !ok {
		t.Fatalf("the commit's metadata %q names no record", was.Metadata)
	}

	if err := c.DeleteTopic(in); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateTopic(in, 1, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.OffsetCommit(ctx, &kafkago.OffsetCommitRequest{GroupID: group, GenerationID: -1, Topics: map[string][]kafkago.OffsetCommit{
		in: {{Partition: 0, Offset: was.CommittedOffset, Metadata: was.Metadata}},
	}}); err != nil {
		t.Fatal(err)
	}
	outs := make([]envelope.Output, 15)
	for i := range outs {
		outs[i] = envelope.Output{Topic: in, Partition: 0, Key: []byte("new" + strconv.Itoa(i)), Value: []byte("v")}
	}
	w := client.NewWriter(kafka.WriterConfig{}, zap.NewNop())
	defer w.Close()
	if err := w.Write(ctx, outs); err != nil {
		t.Fatal(err)
	}

	runLoop(t, stage.Config{Client: client, Group: group, Topic: in}, &copier{out: out})
	testkit.Eventually(t, 60*time.Second, func() (bool, string) {
		keys := countRecords(t, client, out)
		missing := 0
		for i := range outs {
			if keys["new"+strconv.Itoa(i)] == 0 {
				missing++
			}
		}
		return missing == 0, strconv.Itoa(missing) + " of the 15 records written since the cut not handled"
	})
}

// A batch the broker refuses as too large only because it holds several
// records is sent again one record a request: every record is written,
// none is given the Refuser's outcome.
func TestBatchTooLargeOnlyTogetherIsWrittenRecordByRecord(t *testing.T) {
	c, client := cluster(t)
	in, out, dlq := "in", "out", "dlq"
	createTopics(t, c, 1, in, out, dlq)
	const n = 20
	produceKeys(t, client, in, n)
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: out, Err: kerr.MessageTooLarge, Count: -1,
		When: func(req kmsg.Request) bool {
			for _, t := range req.(*kmsg.ProduceRequest).Topics {
				for _, p := range t.Partitions {
					// A record batch's record count is at byte 57.
					if len(p.Records) >= 61 && binary.BigEndian.Uint32(p.Records[57:]) > 1 {
						return true
					}
				}
			}
			return false
		}})
	st := &copier{out: out, dlq: dlq}
	group := "g"
	runLoop(t, stage.Config{Client: client, Group: group, Topic: in}, st)
	waitCommitted(t, client, group, in, n)
	if keys := countRecords(t, client, out); len(keys) != n {
		t.Errorf("out holds %d distinct keys, want %d", len(keys), n)
	}
	if got := st.refused.Load(); got != 0 {
		t.Errorf("%d records were given the Refuser's outcome, want none", got)
	}
}

// waitCommitted waits until group has committed n records of topic/0.
func waitCommitted(t *testing.T, client kafka.Client, group, topic string, n int64) {
	t.Helper()
	testkit.Eventually(t, 60*time.Second, func() (bool, string) {
		got := committed(t, client, group, topic)
		return got == n, "committed " + strconv.FormatInt(got, 10)
	})
}
