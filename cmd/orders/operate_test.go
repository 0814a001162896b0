package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/dlq"
	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/inspect"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/processor"
	"github.com/orderflow/orders/services/testkit"
)

func (c *cluster) run(args ...string) string {
	c.t.Helper()
	out, err := testkit.Run(c.t, c.bin, c.env, args...)
	if err != nil {
		c.t.Fatalf("orders %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func countItem3(orders []schemas.Order) (failing int, good int) {
	for _, o := range orders {
		if o.Product == "Item3" {
			failing++
		} else {
			good++
		}
	}
	return failing, good
}

func TestInspectCountsAndLag(t *testing.T) {
	c := newCluster(t, []time.Duration{100 * time.Millisecond, 100 * time.Millisecond, time.Hour})
	c.startAll(1)
	const n = 120
	c.run("produce", "--count", fmt.Sprint(n), "--seed", "21")
	failing, good := countItem3(expected(n, 21))
	var ov inspect.Overview
	testkit.Eventually(t, time.Minute, func() (bool, string) {
		ov = inspect.Overview{}
		if err := json.Unmarshal([]byte(c.run("inspect", "--json")), &ov); err != nil {
			return false, err.Error()
		}
		by := map[string]inspect.TopicState{}
		for _, st := range ov.Topics {
			by[st.Topic] = st
		}
		r3 := by["orders_retry_3"]
		ready := by["orders"].Lag == 0 && by["orders_retry_1"].Lag == 0 && by["orders_retry_2"].Lag == 0 &&
			r3.Records == int64(failing) && by["orders_processed"].Lag == 0 && ov.Average.Count == int64(good)
		return ready, fmt.Sprintf("%+v", ov)
	})
	want := map[string][2]int64{ // records, lag
		"orders": {n, 0}, "orders_retry_1": {int64(failing), 0}, "orders_retry_2": {int64(failing), 0},
		"orders_retry_3": {int64(failing), int64(failing)}, "orders_dlq": {0, 0}, "orders_processed": {int64(good), 0},
	}
	var order []string
	for _, st := range ov.Topics {
		order = append(order, st.Topic)
		w := want[st.Topic]
		if st.Records != w[0] || st.Lag != w[1] || st.Partitions != 6 {
			t.Errorf("%s: %d records, lag %d, %d partitions; want %d, %d, 6", st.Topic, st.Records, st.Lag, st.Partitions, w[0], w[1])
		}
		if st.Topic == "orders_retry_3" {
			if st.Waiting == nil || *st.Waiting != int64(failing) || st.OldestAgeS <= 0 || st.Group != "orders-retry-3" {
				t.Errorf("retry 3: %+v (waiting %v); want %d waiting an hour; whole overview %+v", st, deref(st.Waiting), failing, ov)
			}
		}
	}
	if got := strings.Join(order, ","); got != "orders,orders_retry_1,orders_retry_2,orders_retry_3,orders_dlq,orders_processed" {
		t.Errorf("topics in order %s", got)
	}
	table := c.run("inspect")
	if !regexp.MustCompile(`orders_retry_3\s+6\s+`+strconv.Itoa(failing)+`\s+orders-retry-3\s+`+strconv.Itoa(failing)).MatchString(table) ||
		!strings.Contains(table, fmt.Sprintf("over %d orders", good)) {
		t.Errorf("table does not show the retry 3 backlog and the average:\n%s", table)
	}

	// The records of a topic, decoded, filtered by key.
	var first schemas.Order
	for _, o := range expected(n, 21) {
		if o.Product == "Item3" {
			first = o
			break
		}
	}
	lines := strings.Split(strings.TrimSpace(c.run("inspect", "orders_retry_2", "--key", first.OrderID, "--json")), "\n")
	if len(lines) != 1 {
		t.Fatalf("inspect orders_retry_2 --key %s printed %d lines", first.OrderID, len(lines))
	}
	var rec inspect.Record
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	var got schemas.Order
	if err := json.Unmarshal(rec.Value, &got); err != nil || got != first || rec.Headers[envelope.HeaderAttempts] != "2" {
		t.Errorf("decoded record %+v (%v), want order %+v with 2 attempts", rec, err, first)
	}
	if tail := strings.Split(strings.TrimSpace(c.run("inspect", "orders", "--tail", "3", "--json")), "\n"); len(tail) != 3 {
		t.Errorf("--tail 3 printed %d records", len(tail))
	}
}

func TestTraceOfAnOrderRetriedTwiceThenProcessed(t *testing.T) {
	c := newCluster(t, testDelays)
	c.env = append(c.env, "FAIL_PRODUCTS=", "FLAKY_RATE=0.5")
	rule := processor.Rule{FlakyRate: 0.5}
	var target schemas.Order
	for _, o := range expected(200, 4) {
		if rule.Process(o, 1) != nil && rule.Process(o, 2) != nil && rule.Process(o, 3) == nil {
			target = o
			break
		}
	}
	if target.OrderID == "" {
		t.Fatal("no order in the sample fails twice and then passes")
	}
	c.startAll(1)
	c.run("produce", "--count", "200", "--seed", "4")
	var steps []inspect.Step
	testkit.Eventually(t, time.Minute, func() (bool, string) {
		steps = nil
		_ = json.Unmarshal([]byte(c.run("trace", target.OrderID, "--json")), &steps)
		return len(steps) == 4, fmt.Sprintf("%d steps: %+v", len(steps), steps)
	})
	want := []string{
		"orders produced  0",
		"orders_retry_1 retry scheduled main 1",
		"orders_retry_2 retry scheduled retry-1 2",
		"orders_processed processed retry-2 3",
	}
	for i, s := range steps {
		if got := fmt.Sprintf("%s %s %s %d", s.Topic, s.Event, s.Stage, s.Attempt); got != want[i] {
			t.Errorf("step %d: %q, want %q", i, got, want[i])
		}
		if i > 0 && s.Time.Before(steps[i-1].Time) {
			t.Errorf("steps out of time order: %v", steps)
		}
	}
	if steps[1].Error == "" || steps[1].DueAt.IsZero() {
		t.Errorf("retry step without error or due time: %+v", steps[1])
	}
	text := c.run("trace", target.OrderID)
	if strings.Count(text, "\n") != 4 || !strings.Contains(text, "processed by retry-2, attempt 3") {
		t.Errorf("trace text:\n%s", text)
	}
}

func TestDLQReplayMovesExactlyTheChosenRecordsOnce(t *testing.T) {
	c := newCluster(t, []time.Duration{50 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond})
	procs := c.startAll(1)
	const n = 60
	c.run("produce", "--count", fmt.Sprint(n), "--seed", "8")
	failing, _ := countItem3(expected(n, 8))
	c.wait(n, time.Minute)
	// Stop the stages so that replayed orders stay in orders while the
	// replays are checked.
	for _, ps := range procs {
		for _, p := range ps {
			p.Kill()
		}
	}

	var entries []dlq.Entry
	for _, line := range strings.Split(strings.TrimSpace(c.run("dlq", "list", "--json", "--error", "Item3")), "\n") {
		var e dlq.Entry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("dlq list line %q: %v", line, err)
		}
		entries = append(entries, e)
	}
	if len(entries) != failing || entries[0].Order == nil || entries[0].Order.Product != "Item3" {
		t.Fatalf("dlq list: %d entries (first %+v), want %d Item3 orders", len(entries), entries[0], failing)
	}
	if out := c.run("dlq", "list", "--error", "nothing-like-this"); !strings.Contains(out, "0 dead-lettered records") {
		t.Errorf("a filter that matches nothing listed:\n%s", out)
	}

	admin := c.client.Admin()
	defer admin.Close()
	before, _ := countRecords(context.Background(), admin, c.top.Orders, c.top.Partitions)
	dry := c.run("dlq", "replay", "--key", entries[0].Letter.Key, "--dry-run")
	if !strings.Contains(dry, "sent 0, would send 1") {
		t.Errorf("dry run:\n%s", dry)
	}
	first := c.run("dlq", "replay", "--error", "Item3", "--limit", "2")
	second := c.run("dlq", "replay", "--error", "Item3", "--limit", "2")
	if !strings.Contains(first, "sent 2,") || !strings.Contains(second, "sent 2, would send 0, already replayed 2,") {
		t.Fatalf("replays:\n%s\n%s", first, second)
	}
	after, _ := countRecords(context.Background(), admin, c.top.Orders, c.top.Partitions)
	if after-before != 4 {
		t.Fatalf("orders grew by %d records, want 4", after-before)
	}
	// The four replayed records are four different DLQ records, each with
	// its replay headers.
	sources := map[string]bool{}
	next := map[string]map[int]int64{}
	err := kafka.ReadNew(context.Background(), c.client, []string{c.top.Orders}, next, func(m envelope.Record) error {
		for _, h := range m.Headers {
			if h.Key == envelope.HeaderReplaySource {
				sources[string(h.Value)] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(sources) != 4 {
		t.Fatalf("replayed sources %v, want 4 distinct DLQ records", sources)
	}
	// Replaying one already replayed is refused.
	var replayedKey string
	for _, e := range entries {
		if sources[c.top.DLQ+"/"+e.ID()] {
			replayedKey = e.Letter.Key
			break
		}
	}
	again := c.run("dlq", "replay", "--key", replayedKey)
	if !strings.Contains(again, "sent 0,") || !strings.Contains(again, "already replayed 1") {
		t.Errorf("second replay of %s:\n%s", replayedKey, again)
	}
	c.startAll(1)
	// The replayed order fails again; its new DLQ record counts one replay
	// and, with --max-replays 1, is left where it is.
	testkit.Eventually(t, time.Minute, func() (bool, string) {
		out := c.run("dlq", "list", "--key", replayedKey)
		return strings.Contains(out, "2 dead-lettered records"), out
	})
	capped := c.run("dlq", "replay", "--key", replayedKey, "--max-replays", "1")
	if !strings.Contains(capped, "sent 0,") || !strings.Contains(capped, "too many replays 1") {
		t.Errorf("replay past --max-replays:\n%s", capped)
	}
}

func TestMetricsCountWhatTheStagesHandled(t *testing.T) {
	c := newCluster(t, []time.Duration{100 * time.Millisecond})
	env := append(c.env, "METRICS_ADDR=127.0.0.1:0")
	procs := map[string]*testkit.Proc{
		"main":       testkit.Start(t, c.bin, env, "run", "main"),
		"retry-1":    testkit.Start(t, c.bin, env, "run", "retry", "--stage", "1"),
		"aggregator": testkit.Start(t, c.bin, env, "run", "aggregator"),
	}
	addr := map[string]string{}
	for name, p := range procs {
		testkit.Eventually(t, 30*time.Second, func() (bool, string) {
			m := regexp.MustCompile(`metrics listening\s+\{"addr": "([^"]+)"`).FindStringSubmatch(p.Output())
			if m != nil {
				addr[name] = m[1]
			}
			return m != nil, p.Output()
		})
	}
	const n = 80
	w := c.client.NewWriter(kafka.WriterConfig{}, testLogger(t))
	defer w.Close()
	if err := w.Write(context.Background(), []envelope.Output{{
		Topic: c.top.Orders, Partition: envelope.AnyPartition, Key: []byte("junk"), Value: []byte("junk"),
	}}); err != nil {
		t.Fatal(err)
	}
	c.run("produce", "--count", fmt.Sprint(n), "--seed", "13")
	failing, good := countItem3(expected(n, 13))
	c.wait(n+1, time.Minute)

	scrape := func(name string) map[string]float64 {
		resp, err := http.Get("http://" + addr[name] + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out := map[string]float64{}
		s := bufio.NewScanner(resp.Body)
		for s.Scan() {
			line := s.Text()
			if strings.HasPrefix(line, "#") {
				continue
			}
			i := strings.LastIndexByte(line, ' ')
			v, _ := strconv.ParseFloat(line[i+1:], 64)
			out[line[:i]] = v
		}
		return out
	}
	var m map[string]float64
	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		m = scrape("aggregator")
		return m[`orders_aggregated_orders`] == float64(good), fmt.Sprint(m[`orders_aggregated_orders`])
	})
	checks := []struct {
		proc, series string
		want         float64
	}{
		{"main", `orders_records_consumed_total{stage="main"}`, n + 1},
		{"main", `orders_records_processed_total{stage="main"}`, float64(good)},
		{"main", `orders_records_retried_total{error_class="failing_product",stage="main"}`, float64(failing)},
		{"main", `orders_records_dead_lettered_total{reason="undecodable",stage="main"}`, 1},
		{"main", `orders_handling_seconds_count{stage="main"}`, n + 1},
		{"retry-1", `orders_records_consumed_total{stage="retry-1"}`, float64(failing)},
		{"retry-1", `orders_records_dead_lettered_total{reason="retries_exhausted",stage="retry-1"}`, float64(failing)},
		{"retry-1", `orders_retry_lateness_seconds_count{stage="retry-1"}`, float64(failing)},
		{"retry-1", `orders_retry_waiting{stage="retry-1"}`, 0},
		{"aggregator", `orders_records_consumed_total{stage="aggregator"}`, float64(good)},
	}
	scraped := map[string]map[string]float64{}
	for _, ch := range checks {
		if scraped[ch.proc] == nil {
			scraped[ch.proc] = scrape(ch.proc)
		}
		if got, ok := scraped[ch.proc][ch.series]; !ok || got != ch.want {
			t.Errorf("%s: %s = %v (present %v), want %v", ch.proc, ch.series, got, ok, ch.want)
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + addr["main"] + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d %s", path, resp.StatusCode, body)
		}
	}
}

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}
