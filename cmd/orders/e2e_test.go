package main_test

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/aggregator"
	"github.com/orderflow/orders/services/broker"
	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/outcome"
	"github.com/orderflow/orders/services/producer"
	"github.com/orderflow/orders/services/testkit"
	"github.com/orderflow/orders/topology"
)

var testDelays = []time.Duration{300 * time.Millisecond, 500 * time.Millisecond, 700 * time.Millisecond}

type cluster struct {
	t      *testing.T
	bin    string
	env    []string
	client kafka.Client
	top    topology.Topology
	// values read the processed orders back. Optional, default plain Avro.
	values schemas.Values
}

// newCluster is a broker and the topics, with every stage's session
// timeout at 6s: the least a Kafka cluster takes by default.
func newCluster(t *testing.T, delays []time.Duration) *cluster {
	return newClusterSession(t, delays, broker.DefaultGroupMinSessionTimeout)
}

// newClusterSession is newCluster with the stages' session timeout at
// session. Below Kafka's minimum, the broker is started with that minimum,
// as a real cluster would refuse it: only for tests that wait, kill after
// kill, for a dead member's partitions to move.
func newClusterSession(t *testing.T, delays []time.Duration, session time.Duration) *cluster {
	cfg := broker.Config{}
	if session < broker.DefaultGroupMinSessionTimeout {
		cfg.GroupMinSessionTimeout = session
	}
	b := testkit.Broker(t, cfg)
	var ds []string
	for _, d := range delays {
		ds = append(ds, d.String())
	}
	top, err := topology.New(topology.Topology{Delays: delays})
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{
		t:      t,
		bin:    testkit.Binary(t),
		env:    []string{"KAFKA_BROKERS=" + b.Addr(), "RETRY_DELAYS=" + strings.Join(ds, ","), "SESSION_TIMEOUT=" + session.String(), "LOG_LEVEL=info"},
		client: kafka.Client{Brokers: []string{b.Addr()}},
		top:    top,
	}
	out, err := testkit.Run(t, c.bin, c.env, "topics")
	if err != nil {
		t.Fatalf("orders topics: %v\n%s", err, out)
	}
	return c
}

func (c *cluster) start(args ...string) *testkit.Proc {
	return testkit.Start(c.t, c.bin, c.env, args...)
}

// startAll starts n processes of main and of every retry stage, and one aggregator.
func (c *cluster) startAll(n int) map[string][]*testkit.Proc {
	procs := map[string][]*testkit.Proc{}
	for range n {
		procs["main"] = append(procs["main"], c.start("run", "main"))
		for k := 1; k <= c.top.Stages(); k++ {
			name := topology.RetryStageName(k)
			procs[name] = append(procs[name], c.start("run", "retry", "--stage", fmt.Sprint(k)))
		}
	}
	procs["aggregator"] = append(procs["aggregator"], c.start("run", "aggregator"))
	return procs
}

// expected regenerates the orders `orders produce --seed` wrote.
func expected(n int, seed uint64) []schemas.Order {
	g := producer.NewGenerator(1001, seed)
	out := make([]schemas.Order, n)
	for i := range out {
		out[i] = g.Next()
	}
	return out
}

// wait returns the tally once want orders have an outcome and the
// aggregator has counted every processed one.
func (c *cluster) wait(want int, timeout time.Duration) (*outcome.Tally, aggregator.Totals) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tally, tot, err := outcome.Wait(ctx, c.client, c.top, c.values, want, 200*time.Millisecond)
	if err != nil {
		c.t.Fatalf("waiting for %d outcomes: %v (have %d: %d processed, %d dead, aggregator count %d)",
			want, err, tally.Final(), len(tally.Processed), len(tally.Dead), tot.Count)
	}
	return tally, tot
}

// checkOutcomes asserts that every order has exactly the outcome its
// product calls for (Item3 always fails: FAIL_PRODUCTS' default), a
// dead-lettered one after every retry stage, on time, and that `orders
// stats` gives the exact average of the processed ones. It returns how
// many orders fail for good.
func (c *cluster) checkOutcomes(orders []schemas.Order, tally *outcome.Tally) (failing int) {
	c.t.Helper()
	problems, good, exact := tally.Problems(orders, c.top, func(o schemas.Order) bool { return o.Product == "Item3" })
	for _, p := range problems {
		c.t.Error(p)
	}
	testkit.CheckAverage(c.t, c.bin, c.env, good, exact)
	return len(orders) - good
}

func TestPipelineEndToEnd(t *testing.T) {
	c := newCluster(t, testDelays)
	out, err := testkit.Run(t, c.bin, c.env, "topics")
	if err != nil || strings.Count(out, "exists") != len(c.top.Topics()) {
		t.Fatalf("second orders topics should find every topic: %v\n%s", err, out)
	}
	c.startAll(2)

	// Bytes that are not an order, on the input topic, before the orders.
	w := c.client.NewWriter(kafka.WriterConfig{}, testLogger(t))
	defer w.Close()
	if err := w.Write(context.Background(), []envelope.Output{{
		Topic: c.top.Orders, Partition: envelope.AnyPartition, Key: []byte("garbage-1"), Value: []byte("this is not avro"),
	}}); err != nil {
		t.Fatal(err)
	}

	const n = 1000
	if out, err := testkit.Run(t, c.bin, c.env, "produce", "--count", fmt.Sprint(n), "--seed", "42"); err != nil {
		t.Fatalf("orders produce: %v\n%s", err, out)
	}
	orders := expected(n, 42)
	tally, _ := c.wait(n+1, 2*time.Minute)
	failing := c.checkOutcomes(orders, tally)
	if failing == 0 {
		t.Fatal("no Item3 order among the produced ones: the test proves nothing")
	}

	garbage := tally.Dead["garbage-1"]
	if garbage == nil {
		t.Fatal("undecodable record not dead-lettered")
	}
	if g := garbage.Letter; g.Reason != envelope.ReasonUndecodable || g.Attempts != 1 || g.Stage != "main" ||
		!strings.Contains(g.Error, "decode order") || g.RawValueHex != fmt.Sprintf("%x", "this is not avro") {
		t.Errorf("undecodable record's DLQ entry: %+v", g)
	}

	// Every failing order passed through each retry topic, once per stage.
	seen := map[string]map[string]int{}
	next := map[string]map[int]int64{}
	var retryTopics []string
	for k := 1; k <= c.top.Stages(); k++ {
		retryTopics = append(retryTopics, c.top.RetryTopic(k))
	}
	err = kafka.ReadNew(context.Background(), c.client, retryTopics, next, func(m envelope.Record) error {
		if seen[m.Topic] == nil {
			seen[m.Topic] = map[string]int{}
		}
		seen[m.Topic][string(m.Key)]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range retryTopics {
		if len(seen[topic]) != failing {
			t.Errorf("%s holds %d distinct orders, want %d", topic, len(seen[topic]), failing)
		}
		if _, ok := seen[topic]["garbage-1"]; ok {
			t.Errorf("undecodable record was retried through %s", topic)
		}
	}
	t.Logf("%d orders: %d processed, %d dead-lettered, %d duplicate records", n, len(tally.Processed), len(tally.Dead), tally.Duplicates())
}

func TestKilledStagesLoseNothing(t *testing.T) {
	delays := []time.Duration{200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond}
	// Each of the five kills leaves the killed member's partitions idle
	// for a session timeout: 3s, below Kafka's minimum, keeps the test
	// short (the chaos tests kill with Kafka's 6s).
	c := newClusterSession(t, delays, 3*time.Second)
	procs := c.startAll(1)
	const n = 3000
	prod := c.start("produce", "--count", fmt.Sprint(n), "--rate", "1000", "--seed", "7")

	// Kill every stage once while orders flow, and start it again.
	order := []string{"main", "retry-1", "aggregator", "retry-2", "retry-3"}
	tally := outcome.NewTally()
	for i, name := range order {
		threshold := (i + 1) * n / 8
		testkit.Eventually(t, time.Minute, func() (bool, string) {
			if err := tally.Poll(context.Background(), c.client, c.top); err != nil {
				return false, err.Error()
			}
			return tally.Final() >= threshold, fmt.Sprintf("%d of %d outcomes before killing %s", tally.Final(), threshold, name)
		})
		p := procs[name][0]
		p.Kill()
		t.Logf("killed %s after %d outcomes", name, tally.Final())
		switch {
		case name == "main":
			procs[name][0] = c.start("run", "main")
		case name == "aggregator":
			procs[name][0] = c.start("run", "aggregator")
		default:
			procs[name][0] = c.start("run", "retry", "--stage", strings.TrimPrefix(name, "retry-"))
		}
	}
	if exited, err := prod.Wait(time.Minute); !exited || err != nil {
		t.Fatalf("producer: exited %v, %v\n%s", exited, err, prod.Output())
	}
	final, _ := c.wait(n, 2*time.Minute)
	c.checkOutcomes(expected(n, 7), final)
	t.Logf("%d orders after 5 kills: %d processed, %d dead-lettered, %d duplicate records",
		n, len(final.Processed), len(final.Dead), final.Duplicates())

	// SIGTERM stops a stage cleanly and quickly.
	p := procs["main"][0]
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if exited, err := p.Wait(10 * time.Second); !exited || err != nil {
		t.Errorf("main after SIGTERM: exited %v, %v", exited, err)
	}
}
