package broker_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/orderflow/orders/services/broker"
	"github.com/orderflow/orders/services/testkit"
)

// injected runs a fault in the background; result waits for it to end.
func injected(t *testing.T, b *broker.Broker, f broker.Fault) (result func() broker.FaultResult, stop context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	done := make(chan broker.FaultResult, 1)
	go func() {
		res, err := b.Inject(ctx, f)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	t.Cleanup(cancel)
	return func() broker.FaultResult { return <-done }, cancel
}

// onOtherNodes is a partition of topic and its leader, where partition 0
// of other is led by another node. kfake places leaders at random: until
// they differ, it elects new ones.
func onOtherNodes(t *testing.T, b *broker.Broker, c *kafka.Client, topic, other string) (partition, node int) {
	t.Helper()
	for range 20 {
		ls, o := leaders(t, c, topic), leaders(t, c, other)[0]
		for p, l := range ls {
			if l != o {
				return p, l
			}
		}
		if _, err := b.ElectLeaders(context.Background()); err != nil {
			t.Fatal(err)
		}
		*c = *kafkaClient(t, b)
	}
	t.Fatalf("every partition of %s and %s is on one node after 20 elections", topic, other)
	return 0, 0
}

// leader is a partition of topic and its leader.
func leader(t *testing.T, c *kafka.Client, topic string) (partition, node int) {
	t.Helper()
	for p, l := range leaders(t, c, topic) {
		return p, l
	}
	t.Fatalf("%s has no partitions", topic)
	return 0, 0
}

func TestElectionGivesEveryPartitionANewLeader(t *testing.T) {
	b := start(t, broker.Config{Nodes: 3})
	defer b.Close()
	c := kafkaClient(t, b)
	createTopic(t, c, "a", 4)
	createTopic(t, c, "b", 3)
	before := map[string]map[int]int{"a": leaders(t, c, "a"), "b": leaders(t, c, "b")}
	res, err := b.ElectLeaders(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Hits != 7 {
		t.Errorf("election moved %d partitions, want 7", res.Hits)
	}
	c = kafkaClient(t, b) // kafka-go's Client keeps metadata for 6s
	for topic, ls := range before {
		for p, l := range leaders(t, c, topic) {
			if l == ls[p] {
				t.Errorf("%s/%d is still led by node %d", topic, p, l)
			}
		}
	}
	// Clients follow the new leaders.
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "a", Partition: 3, Value: []byte("v")}).FirstErr(); err != nil {
		t.Errorf("produce after the election: %v", err)
	}
}

func TestCoordinatorMove(t *testing.T) {
	b := start(t, broker.Config{Nodes: 3})
	defer b.Close()
	c := kafkaClient(t, b)
	createTopic(t, c, "t", 1)
	commit(t, c, "g", "t", []int64{0})
	res, err := b.MoveCoordinators(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Hits != 1 {
		t.Errorf("coordinator move: %+v", res)
	}
	commit(t, c, "g", "t", []int64{0}) // found at the new coordinator
}

// A node refusing with NOT_ENOUGH_REPLICAS writes nothing; the others
// write as before, and so does the node once the fault is over.
func TestNotEnoughReplicasWritesNothing(t *testing.T) {
	b := start(t, broker.Config{Nodes: 3})
	defer b.Close()
	c := kafkaClient(t, b)
	createTopic(t, c, "t", 2)
	createTopic(t, c, "u", 1)
	p, node := onOtherNodes(t, b, c, "t", "u")
	result, stop := injected(t, b, broker.Fault{Kind: broker.FaultNotEnoughReplicas, Node: int32(node), For: time.Minute})
	testkit.Eventually(t, 10*time.Second, func() (bool, string) {
		err := produceTo(context.Background(), c, "t", p, 1)
		return errors.Is(err, kafka.NotEnoughReplicas), "produce to the faulted node: " + errText(err)
	})
	if n := ends(t, c, "t", 2)[p]; n != 0 {
		t.Errorf("refused produce requests wrote %d records", n)
	}
	if err := produceTo(context.Background(), c, "u", 0, 1); err != nil {
		t.Errorf("the other node refused too: %v", err)
	}
	stop()
	res := result()
	if res.Hits < 1 || res.Node != int32(node) {
		t.Errorf("result %+v", res)
	}
	if err := produceTo(context.Background(), c, "t", p, 1); err != nil {
		t.Errorf("the node after the fault: %v", err)
	}
}

func TestAfterAppendWritesAndFails(t *testing.T) {
	b := start(t, broker.Config{Nodes: 2})
	defer b.Close()
	c := kafkaClient(t, b)
	createTopic(t, c, "t", 4)
	createTopic(t, c, "other", 4)
	p, node := leader(t, c, "t")
	result, _ := injected(t, b, broker.Fault{Kind: broker.FaultAfterAppend, Node: int32(node), Wait: 30 * time.Second, Topics: []string{"t"}})
	// A request to a topic outside Topics is not hit.
	if err := produceTo(context.Background(), c, "other", 0, 1); err != nil {
		t.Fatalf("a topic outside the fault: %v", err)
	}
	var (
		err    error
		before int64
	)
	testkit.Eventually(t, 10*time.Second, func() (bool, string) {
		before = ends(t, c, "t", 4)[p]
		err = produceTo(context.Background(), c, "t", p, 3)
		return err != nil, "the fault is not in force yet"
	})
	if !errors.Is(err, kafka.NotEnoughReplicasAfterAppend) {
		t.Fatalf("produce: %v", err)
	}
	if n := ends(t, c, "t", 4)[p] - before; n != 3 {
		t.Errorf("the failed request wrote %d records, want 3", n)
	}
	if res := result(); res.Hits != 1 || res.Partitions != 1 {
		t.Errorf("result %+v", res)
	}
	if err := produceTo(context.Background(), c, "t", p, 1); err != nil {
		t.Errorf("the next request: %v", err)
	}
}

// A produce request held for its timeout is answered REQUEST_TIMED_OUT
// after it, with its records written.
func TestProduceTimeoutWritesAfterTheTimeout(t *testing.T) {
	b := start(t, broker.Config{Nodes: 2})
	defer b.Close()
	c := kafkaClient(t, b)
	c.Timeout = 4 * time.Second // the broker is given half: 2s
	createTopic(t, c, "t", 4)
	p, node := leader(t, c, "t")
	result, _ := injected(t, b, broker.Fault{Kind: broker.FaultProduceTimeout, Node: int32(node), Wait: 30 * time.Second})
	var (
		err    error
		took   time.Duration
		before int64
	)
	testkit.Eventually(t, 20*time.Second, func() (bool, string) {
		before = ends(t, c, "t", 4)[p]
		t0 := time.Now()
		err = produceTo(context.Background(), c, "t", p, 2)
		took = time.Since(t0)
		return err != nil, "the fault is not in force yet"
	})
	if !errors.Is(err, kafka.RequestTimedOut) {
		t.Fatalf("produce: %v", err)
	}
	if took < 1500*time.Millisecond {
		t.Errorf("answered after %v, before the request's timeout of 2s", took)
	}
	if n := ends(t, c, "t", 4)[p] - before; n != 2 {
		t.Errorf("the timed-out request wrote %d records, want 2", n)
	}
	if res := result(); res.Hits != 1 || res.Partitions != 1 {
		t.Errorf("result %+v", res)
	}
}

// A throttled node answers fetches at once with no topics and a throttle
// time, and holds a fetcher's next fetch until its throttle time is over.
func TestFetchThrottle(t *testing.T) {
	b := start(t, broker.Config{Nodes: 2})
	defer b.Close()
	c := kafkaClient(t, b)
	createTopic(t, c, "t", 4)
	p, node := leader(t, c, "t")
	if err := produceTo(context.Background(), c, "t", p, 5); err != nil {
		t.Fatal(err)
	}
	// Fetch v11, which names topics, as kafka-go and the stages' fetcher speak it.
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs()...), kgo.MaxVersions(kversion.V2_4_0()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	fetch := func() (*kmsg.FetchResponse, time.Duration) {
		t.Helper()
		req := kmsg.NewPtrFetchRequest()
		req.Version = 11
		req.MaxWaitMillis, req.MaxBytes, req.SessionEpoch = 100, 1<<20, -1
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = "t"
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.PartitionMaxBytes = int32(p), 1<<20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		t0 := time.Now()
		resp, err := req.RequestWith(ctx, cl.Broker(node))
		if err != nil {
			t.Fatal(err)
		}
		return resp, time.Since(t0)
	}
	result, stop := injected(t, b, broker.Fault{Kind: broker.FaultFetchThrottle, Node: int32(node), For: time.Minute, Throttle: 500 * time.Millisecond})
	var resp *kmsg.FetchResponse
	testkit.Eventually(t, 10*time.Second, func() (bool, string) {
		resp, _ = fetch()
		return resp.ThrottleMillis > 0, "not throttled yet"
	})
	if resp.ThrottleMillis != 500 || len(resp.Topics) != 0 {
		t.Errorf("throttled answer: throttle %dms, %d topics", resp.ThrottleMillis, len(resp.Topics))
	}
	// kgo waits out the throttle before it sends again, and the broker
	// would hold the fetch if it did not: either way, 500ms apart.
	if resp, took := fetch(); resp.ThrottleMillis != 500 || took < 400*time.Millisecond {
		t.Errorf("next fetch: throttle %dms after %v", resp.ThrottleMillis, took)
	}
	stop()
	if res := result(); res.Hits < 2 {
		t.Errorf("result %+v", res)
	}
	testkit.Eventually(t, 10*time.Second, func() (bool, string) {
		resp, _ := fetch()
		ok := resp.ThrottleMillis == 0 && len(resp.Topics) == 1 && len(resp.Topics[0].Partitions) == 1 && resp.Topics[0].Partitions[0].HighWatermark == 5
		return ok, fmt.Sprintf("after the fault: %+v", resp)
	})
}

// A truncation leaves the group's committed offsets above the partitions'
// new end, keeps the topic's configs, and truncates nothing the group has
// not committed.
func TestTruncationBelowTheCommittedOffsets(t *testing.T) {
	b := start(t, broker.Config{Nodes: 3})
	defer b.Close()
	c := kafkaClient(t, b)
	createTopic(t, c, "t", 2, kafka.ConfigEntry{ConfigName: "retention.ms", ConfigValue: "12345678"})
	for p := range 2 {
		if err := produceTo(context.Background(), c, "t", p, 5); err != nil {
			t.Fatal(err)
		}
	}
	commit(t, c, "g", "t", []int64{5, 3})
	res, err := b.Truncate(context.Background(), "t", "g", 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if res.Hits != 0 || !equal(ends(t, c, "t", 2), []int64{5, 5}) {
		t.Fatalf("a group behind its topic got a truncation: %+v, ends %v", res, ends(t, c, "t", 2))
	}
	// Records produced while it waits are refused, as by a partition
	// without a leader, and written once it gives up.
	if err := produceTo(context.Background(), c, "t", 0, 1); err != nil {
		t.Fatalf("after a truncation that did not happen: %v", err)
	}
	commit(t, c, "g", "t", []int64{6, 5})
	res, err = b.Truncate(context.Background(), "t", "g", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Hits != 2 {
		t.Errorf("truncation: %+v", res)
	}
	c = kafkaClient(t, b) // the new partitions have new leaders
	if got := ends(t, c, "t", 2); !equal(got, []int64{0, 0}) {
		t.Errorf("after the truncation the partitions end at %v", got)
	}
	if got := committed(t, c, "g", "t", 2); !equal(got, []int64{6, 5}) {
		t.Errorf("after the truncation group g has committed %v, want [6 5]", got)
	}
	cfgs, err := c.DescribeConfigs(context.Background(), &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: "t", ConfigNames: []string{"retention.ms"},
	}}})
	if err != nil || len(cfgs.Resources) != 1 || len(cfgs.Resources[0].ConfigEntries) != 1 || cfgs.Resources[0].ConfigEntries[0].ConfigValue != "12345678" {
		t.Errorf("retention.ms after the truncation: %+v %v", cfgs, err)
	}
	if err := produceTo(context.Background(), c, "t", 1, 1); err != nil {
		t.Errorf("produce after the truncation: %v", err)
	}
}

func errText(err error) string {
	if err == nil {
		return "accepted"
	}
	return err.Error()
}
