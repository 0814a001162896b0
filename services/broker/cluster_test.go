package broker_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"

	"github.com/orderflow/orders/services/broker"
	"github.com/orderflow/orders/services/testkit"
)

func start(t *testing.T, cfg broker.Config) *broker.Broker {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	b, err := broker.Start(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func kafkaClient(t *testing.T, b *broker.Broker) *kafka.Client {
	t.Helper()
	tr := &kafka.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &kafka.Client{Addr: kafka.TCP(b.Addrs()...), Transport: tr, Timeout: 10 * time.Second}
}

func createTopic(t *testing.T, c *kafka.Client, topic string, partitions int, configs ...kafka.ConfigEntry) {
	t.Helper()
	res, err := c.CreateTopics(context.Background(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: partitions, ReplicationFactor: 1, ConfigEntries: configs,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Errors[topic]; err != nil {
		t.Fatal(err)
	}
}

func produceTo(ctx context.Context, c *kafka.Client, topic string, partition, n int) error {
	var recs []kafka.Record
	for range n {
		recs = append(recs, kafka.Record{Value: kafka.NewBytes([]byte("v"))})
	}
	res, err := c.Produce(ctx, &kafka.ProduceRequest{
		Topic: topic, Partition: partition, RequiredAcks: kafka.RequireAll, Records: kafka.NewRecordReader(recs...),
	})
	if err != nil {
		return err
	}
	return res.Error
}

// ends is the next offset of each partition of topic.
func ends(t *testing.T, c *kafka.Client, topic string, partitions int) []int64 {
	t.Helper()
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for p := range partitions {
		req.Topics[topic] = append(req.Topics[topic], kafka.LastOffsetOf(p))
	}
	res, err := c.ListOffsets(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int64, partitions)
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			t.Fatal(po.Error)
		}
		out[po.Partition] = po.LastOffset
	}
	return out
}

// committed is what group has committed on topic's partitions; commit
// gives each offset o the metadata "at o", which committed checks.
func committed(t *testing.T, c *kafka.Client, group, topic string, partitions int) []int64 {
	t.Helper()
	ids := make([]int, partitions)
	for p := range ids {
		ids[p] = p
	}
	res, err := c.OffsetFetch(context.Background(), &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ids}})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int64, partitions)
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			t.Fatal(p.Error)
		}
		out[p.Partition] = p.CommittedOffset
		if want := fmt.Sprint("at ", p.CommittedOffset); p.CommittedOffset >= 0 && p.Metadata != want {
			t.Errorf("%s/%d: offset %d committed with metadata %q, want %q", topic, p.Partition, p.CommittedOffset, p.Metadata, want)
		}
	}
	return out
}

func commit(t *testing.T, c *kafka.Client, group, topic string, offsets []int64) {
	t.Helper()
	req := &kafka.OffsetCommitRequest{GroupID: group, GenerationID: -1, Topics: map[string][]kafka.OffsetCommit{}}
	for p, o := range offsets {
		req.Topics[topic] = append(req.Topics[topic], kafka.OffsetCommit{Partition: p, Offset: o, Metadata: fmt.Sprint("at ", o)})
	}
	res, err := c.OffsetCommit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			t.Fatal(p.Error)
		}
	}
}

func leaders(t *testing.T, c *kafka.Client, topic string) map[int]int {
	t.Helper()
	md, err := c.Metadata(context.Background(), &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]int{}
	for _, tp := range md.Topics {
		for _, p := range tp.Partitions {
			out[p.ID] = p.Leader.ID
		}
	}
	return out
}

// A cluster of three nodes listens on three addresses, spreads its
// partitions' leaders over them, and a restart on the same data dir and
// addresses keeps its records, committed offsets, groups and leaders.
func TestClusterOfThreeNodesSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	b := start(t, broker.Config{Nodes: 3, DataDir: dir})
	if n := len(b.Addrs()); n != 3 || strings.Count(b.Addr(), ",") != 2 {
		t.Fatalf("three nodes listen on %q", b.Addr())
	}
	c := kafkaClient(t, b)
	md, err := c.Metadata(context.Background(), &kafka.MetadataRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Brokers) != 3 {
		t.Fatalf("metadata names %d brokers", len(md.Brokers))
	}
	const parts = 12
	createTopic(t, c, "t", parts)
	before := leaders(t, c, "t")
	nodes := map[int]bool{}
	for _, l := range before {
		nodes[l] = true
	}
	if len(nodes) < 2 {
		t.Fatalf("the leaders of 12 partitions are all on node(s) %v", nodes)
	}
	want := make([]int64, parts)
	for p := range parts {
		want[p] = int64(p + 1)
		if err := produceTo(context.Background(), c, "t", p, p+1); err != nil {
			t.Fatal(err)
		}
	}
	commit(t, c, "g", "t", want)
	addrs := b.Addr()
	b.Close()

	b = start(t, broker.Config{Nodes: 3, DataDir: dir, Listen: addrs})
	defer b.Close()
	if b.Addr() != addrs {
		t.Fatalf("restarted on %s, not %s", b.Addr(), addrs)
	}
	c = kafkaClient(t, b)
	if got := ends(t, c, "t", parts); !equal(got, want) {
		t.Errorf("after the restart the partitions end at %v, want %v", got, want)
	}
	if got := committed(t, c, "g", "t", parts); !equal(got, want) {
		t.Errorf("after the restart group g has committed %v, want %v", got, want)
	}
	groups, err := c.ListGroups(context.Background(), &kafka.ListGroupsRequest{})
	if err != nil || len(groups.Groups) != 1 || groups.Groups[0].GroupID != "g" {
		t.Errorf("after the restart the groups are %+v (%v)", groups, err)
	}
	if after := leaders(t, c, "t"); len(after) != parts || !sameLeaders(after, before) {
		t.Errorf("leaders before the restart %v, after %v", before, after)
	}
}

func TestListenAddresses(t *testing.T) {
	for _, tc := range []struct {
		listen string
		nodes  int
		err    string
	}{
		{"127.0.0.1:0,127.0.0.1:0", 3, "2 addresses for 3 nodes"},
		{"127.0.0.1", 1, "not host:port"},
		{"127.0.0.1:65535", 2, "room for 2 nodes"},
	} {
		_, err := broker.Start(broker.Config{Listen: tc.listen, Nodes: tc.nodes}, zap.NewNop())
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("--listen %s --nodes %d: %v, want an error saying %q", tc.listen, tc.nodes, err, tc.err)
		}
	}
	// One address with a port of its own gives the nodes the next ones.
	for range 10 {
		port, ok := twoFreePorts()
		if !ok {
			continue
		}
		first := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		b, err := broker.Start(broker.Config{Listen: first, Nodes: 2}, zap.NewNop())
		if err != nil {
			continue // taken since by someone else
		}
		defer b.Close()
		if want := first + ",127.0.0.1:" + strconv.Itoa(port+1); b.Addr() != want {
			t.Errorf("--listen %s --nodes 2 listens on %s, want %s", first, b.Addr(), want)
		}
		return
	}
	t.Fatal("found no two free ports in a row")
}

// twoFreePorts finds a port that is free and has a free port after it. It
// looks below Linux's ephemeral range (32768 up), where the connections of
// tests running alongside take ports one after another.
func twoFreePorts() (int, bool) {
	port := 20000 + rand.IntN(12000)
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return 0, false
	}
	defer l.Close()
	l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+1)))
	if err != nil {
		return 0, false
	}
	l2.Close()
	return port, true
}

// A broker holds group members to Kafka's session-timeout bounds unless
// told otherwise, as a real cluster does.
func TestSessionTimeoutBounds(t *testing.T) {
	join := func(b *broker.Broker, session time.Duration) int16 {
		t.Helper()
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs()...))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		req := kmsg.NewPtrJoinGroupRequest()
		req.Group, req.ProtocolType = "g", "consumer"
		req.SessionTimeoutMillis = int32(session / time.Millisecond)
		req.RebalanceTimeoutMillis = req.SessionTimeoutMillis
		meta := kmsg.ConsumerMemberMetadata{Topics: []string{"t"}}
		req.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: meta.AppendTo(nil)}}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.ErrorCode
	}
	invalid := kerr.InvalidSessionTimeout.Code
	kafkas := start(t, broker.Config{})
	defer kafkas.Close()
	for _, tc := range []struct {
		session time.Duration
		refused bool
	}{{3 * time.Second, true}, {5999 * time.Millisecond, true}, {6 * time.Second, false}, {30 * time.Minute, false}, {31 * time.Minute, true}} {
		if code := join(kafkas, tc.session); (code == invalid) != tc.refused {
			t.Errorf("default bounds, session timeout %v: error %v, refused %v", tc.session, kerr.ErrorForCode(code), tc.refused)
		}
	}
	// Tests that need a member to time out quickly lower the minimum.
	quick := start(t, broker.Config{GroupMinSessionTimeout: time.Second})
	defer quick.Close()
	if code := join(quick, 3*time.Second); code == invalid {
		t.Errorf("minimum 1s: a session timeout of 3s is refused")
	}
	if _, err := broker.Start(broker.Config{Listen: "127.0.0.1:0", GroupMinSessionTimeout: time.Minute, GroupMaxSessionTimeout: time.Second}, zap.NewNop()); err == nil {
		t.Error("a maximum below the minimum is taken")
	}
}

func TestFaultControlIsLoopbackOnly(t *testing.T) {
	_, err := broker.Start(broker.Config{Listen: "127.0.0.1:0", FaultControl: "0.0.0.0:0"}, zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("--fault-control 0.0.0.0:0: %v", err)
	}
	b := start(t, broker.Config{Nodes: 2, FaultControl: "127.0.0.1:0"})
	defer b.Close()
	createTopic(t, kafkaClient(t, b), "t", 4)
	fc := broker.FaultControl{Addr: b.FaultControlAddr()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := fc.Inject(ctx, broker.Fault{Kind: broker.FaultElection})
	if err != nil {
		t.Fatal(err)
	}
	if res.Kind != broker.FaultElection || res.Hits != 4 || res.End.Before(res.Start) {
		t.Errorf("election through the fault control: %+v", res)
	}
	if _, err := fc.Inject(ctx, broker.Fault{Kind: "earthquake"}); err == nil {
		t.Error("an unknown fault kind is taken")
	}
	if _, err := fc.Inject(ctx, broker.Fault{Kind: broker.FaultAfterAppend, Node: 2}); err == nil {
		t.Error("a fault on node 2 of a cluster of 2 is taken")
	}
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func sameLeaders(a, b map[int]int) bool {
	for p, l := range a {
		if b[p] != l {
			return false
		}
	}
	return true
}

// `orders broker --nodes 3 --data-dir` SIGKILLed and started again on the
// same addresses keeps what it acknowledged, and serves its fault control
// again.
func TestClusterProcessSurvivesSIGKILL(t *testing.T) {
	bin := testkit.Binary(t)
	dir := t.TempDir()
	run := func(listen string) (*testkit.Proc, []string, string) {
		t.Helper()
		p := testkit.Start(t, bin, nil, "broker", "--nodes", "3", "--listen", listen, "--data-dir", dir, "--fault-control", "127.0.0.1:0")
		var addrs []string
		var ctl string
		testkit.Eventually(t, 30*time.Second, func() (bool, string) {
			out := p.Output()
			for _, line := range strings.Split(out, "\n") {
				if a, ok := strings.CutPrefix(line, "broker listening on "); ok {
					addrs = strings.Split(a, ",")
				}
				if a, ok := strings.CutPrefix(line, "fault control listening on "); ok {
					ctl = a
				}
			}
			return len(addrs) == 3 && ctl != "", out
		})
		return p, addrs, ctl
	}
	p, addrs, _ := run("127.0.0.1:0")
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(addrs...), Transport: tr, Timeout: 10 * time.Second}
	createTopic(t, c, "t", 6)
	want := []int64{1, 2, 3, 4, 5, 6}
	for part, n := range want {
		if err := produceTo(context.Background(), c, "t", part, int(n)); err != nil {
			t.Fatal(err)
		}
	}
	commit(t, c, "g", "t", want)
	p.Kill()
	tr.CloseIdleConnections()

	_, again, ctl := run(strings.Join(addrs, ","))
	if strings.Join(again, ",") != strings.Join(addrs, ",") {
		t.Fatalf("restarted on %v, not %v", again, addrs)
	}
	tr2 := &kafka.Transport{}
	defer tr2.CloseIdleConnections()
	c = &kafka.Client{Addr: kafka.TCP(addrs...), Transport: tr2, Timeout: 10 * time.Second}
	if got := ends(t, c, "t", 6); !equal(got, want) {
		t.Errorf("after SIGKILL the partitions end at %v, want %v", got, want)
	}
	if got := committed(t, c, "g", "t", 6); !equal(got, want) {
		t.Errorf("after SIGKILL group g has committed %v, want %v", got, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if res, err := (broker.FaultControl{Addr: ctl}).Inject(ctx, broker.Fault{Kind: broker.FaultElection}); err != nil || res.Hits != 6 {
		t.Errorf("election after the restart: %+v, %v", res, err)
	}
}
