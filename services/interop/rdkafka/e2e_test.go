package rdkafka_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/outcome"
	"github.com/orderflow/orders/services/producer"
	"github.com/orderflow/orders/services/testkit"
	"github.com/orderflow/orders/topology"
)

// TestPipelineSurvivesABrokerOutageOnLibrdkafkasMock runs every stage as
// its own process against librdkafka's mock cluster of three brokers and,
// while orders flow, takes down the broker that coordinates the main
// stage's group (and leads the partitions the mock gave it at random), for
// longer than the session timeout, so that the mock drops the group's
// members. Every order must still end in exactly one outcome, the right
// one, the running average must be exact, and both main processes must be
// back in their group.
func TestPipelineSurvivesABrokerOutageOnLibrdkafkasMock(t *testing.T) {
	delays := []time.Duration{300 * time.Millisecond, 500 * time.Millisecond, 700 * time.Millisecond}
	c := newMockCluster(t, 3, delays)

	var procs, mains []*testkit.Proc
	for range 2 {
		mains = append(mains, c.start("run", "main"))
		for k := 1; k <= c.top.Stages(); k++ {
			procs = append(procs, c.start("run", "retry", "--stage", fmt.Sprint(k)))
		}
	}
	procs = append(append(procs, mains...), c.start("run", "aggregator"))
	// Orders go in once every stage has partitions, so that they flow
	// through the whole pipeline when the broker goes down.
	testkit.Eventually(t, time.Minute, func() (bool, string) {
		for _, p := range procs {
			if !strings.Contains(p.Output(), "assigned partitions") {
				return false, p.Name + " has no partitions yet"
			}
		}
		return true, ""
	})
	t.Logf("%s every stage has partitions", time.Now().Format(clock))

	// Bytes that are not an order, written by the project's writer.
	w := c.client.NewWriter(kafka.WriterConfig{}, zap.NewNop())
	defer w.Close()
	if err := w.Write(context.Background(), []envelope.Output{{
		Topic: c.top.Orders, Partition: envelope.AnyPartition, Key: []byte("garbage-1"), Value: []byte("this is not avro"),
	}}); err != nil {
		t.Fatalf("write an undecodable record: %v", err)
	}

	const (
		n    = 4000
		rate = 500 // orders/s: production goes on through the outage
		seed = 42
	)
	prod := c.start("produce", "--count", fmt.Sprint(n), "--rate", fmt.Sprint(rate), "--seed", fmt.Sprint(seed))

	victim := c.coordinator(c.top.Group(topology.StageMain))
	tally := outcome.NewTally()
	testkit.Eventually(t, time.Minute, func() (bool, string) {
		if err := tally.Poll(context.Background(), c.client, c.top); err != nil {
			return false, err.Error()
		}
		return tally.Final() >= n/10, fmt.Sprintf("%d of %d outcomes before the outage", tally.Final(), n/10)
	})
	// What each process had written when the broker went down: the
	// outage must show in what comes after.
	all := append(slices.Clip(procs), prod)
	seen := map[*testkit.Proc]int{}
	for _, p := range all {
		seen[p] = len(p.Output())
	}
	since := func(p *testkit.Proc) string { return p.Output()[seen[p]:] }
	c.setBroker(victim, false)
	down := time.Now()
	t.Logf("%s broker %d down, after %d outcomes", down.Format(clock), victim, tally.Final())
	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		for _, p := range all {
			if out := since(p); strings.Contains(out, "retrying") || strings.Contains(out, "leaving the partition") {
				return true, ""
			}
		}
		return false, fmt.Sprintf("no process has logged a failed request since broker %d went down", victim)
	})
	// The outage is the fault injected, not a wait for something: it lasts
	// past the session timeout, so that the mock's session timer drops
	// every member of the groups the broker coordinates.
	time.Sleep(time.Until(down.Add(sessionTimeout + time.Second)))
	c.setBroker(victim, true)
	t.Logf("%s broker %d up", time.Now().Format(clock), victim)

	if exited, err := prod.Wait(time.Minute); !exited || err != nil {
		t.Fatalf("producer: exited %v, %v\n%s", exited, err, lastLines(prod.Output(), 20))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	final, _, err := outcome.Wait(ctx, c.client, c.top, nil, n+1, 200*time.Millisecond)
	if err != nil {
		t.Fatalf("waiting for %d outcomes: %v (have %d: %d processed, %d dead)",
			n+1, err, final.Final(), len(final.Processed), len(final.Dead))
	}
	t.Logf("%s every order has an outcome", time.Now().Format(clock))
	running(t, procs)
	// A member the mock dropped joins its group again by itself.
	testkit.Eventually(t, time.Minute, func() (bool, string) {
		for _, p := range mains {
			if !strings.Contains(since(p), "assigned partitions") {
				return false, p.Name + " has not joined its group again since the outage"
			}
		}
		return true, ""
	})
	t.Logf("%s both main processes are back in their group", time.Now().Format(clock))

	orders := expected(n, seed)
	failing := c.checkOutcomes(orders, final)
	if failing == 0 {
		t.Fatal("no Item3 order among the produced ones: the test proves nothing")
	}
	g := final.Dead["garbage-1"]
	switch {
	case g == nil:
		t.Error("undecodable record not dead-lettered")
	case g.Letter.Reason != envelope.ReasonUndecodable || g.Letter.Attempts != 1 || g.Letter.Stage != topology.StageMain ||
		!strings.Contains(g.Letter.Error, "decode order"):
		t.Errorf("undecodable record's DLQ entry: %+v", g.Letter)
	}
	c.checkRetryTopics(failing)
	t.Logf("%d orders: %d processed, %d dead-lettered, %d duplicate records", n, len(final.Processed), len(final.Dead), final.Duplicates())
}

// clock is how the test's log lines give a time, to set beside the
// processes' own.
const clock = "15:04:05.000"

// expected regenerates the orders `orders produce --seed` wrote.
func expected(n int, seed uint64) []schemas.Order {
	g := producer.NewGenerator(1001, seed)
	out := make([]schemas.Order, n)
	for i := range out {
		out[i] = g.Next()
	}
	return out
}

// checkOutcomes asserts that every order has exactly the outcome its
// product calls for (Item3 always fails: FAIL_PRODUCTS' default), a
// dead-lettered one after every retry stage, on time, and that `orders
// stats` gives the exact average of the processed ones. It returns how
// many orders fail for good.
func (c *mockCluster) checkOutcomes(orders []schemas.Order, tally *outcome.Tally) (failing int) {
	c.t.Helper()
	problems, good, exact := tally.Problems(orders, c.top, func(o schemas.Order) bool { return o.Product == "Item3" })
	for _, p := range problems {
		c.t.Error(p)
	}
	testkit.CheckAverage(c.t, c.bin, c.env, good, exact)
	return len(orders) - good
}

// checkRetryTopics asserts that every failing order, and nothing else,
// passed through each retry topic.
func (c *mockCluster) checkRetryTopics(failing int) {
	c.t.Helper()
	var topics []string
	for k := 1; k <= c.top.Stages(); k++ {
		topics = append(topics, c.top.RetryTopic(k))
	}
	seen := map[string]map[string]bool{}
	err := kafka.ReadNew(context.Background(), c.client, topics, map[string]map[int]int64{}, func(m envelope.Record) error {
		if seen[m.Topic] == nil {
			seen[m.Topic] = map[string]bool{}
		}
		seen[m.Topic][string(m.Key)] = true
		return nil
	})
	if err != nil {
		c.t.Fatalf("read the retry topics: %v", err)
	}
	for _, topic := range topics {
		if len(seen[topic]) != failing {
			c.t.Errorf("%s holds %d distinct orders, want %d", topic, len(seen[topic]), failing)
		}
		if seen[topic]["garbage-1"] {
			c.t.Errorf("undecodable record was retried through %s", topic)
		}
	}
}
