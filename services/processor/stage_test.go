package processor_test

import (
	"context"
	"encoding/hex"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/logs"
	"github.com/orderflow/orders/services/processor"
	"github.com/orderflow/orders/services/stage"
	"github.com/orderflow/orders/topology"
)

// start is the clock of the main stage; each later step runs a little later.
var start = time.Date(2024, 3, 5, 6, 7, 8, 123456789, time.UTC)

func stageAt(step int, rule processor.Rule, now time.Time) *processor.Stage {
	return &processor.Stage{Step: step, Topology: topology.Default(), Rule: rule, Log: zap.NewNop(),
		Now: func() time.Time { return now }}
}

func encode(tb testing.TB, o schemas.Order) []byte {
	tb.Helper()
	b, err := schemas.Encode(o)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// input is a record of the orders topic.
func input(tb testing.TB, o schemas.Order) envelope.Record {
	tb.Helper()
	return envelope.Record{Topic: "orders", Partition: 3, Offset: 42, Key: []byte(o.OrderID), Value: encode(tb, o), Time: start}
}

// consumed is out as the next stage reads it from its topic.
func consumed(out envelope.Output, offset int64) envelope.Record {
	return envelope.Record{Topic: out.Topic, Partition: 1, Offset: offset, Key: out.Key, Value: out.Value, Headers: out.Headers}
}

func history(tb testing.TB, out envelope.Output) envelope.History {
	tb.Helper()
	h, err := envelope.ParseHistory(envelope.Record{Headers: out.Headers})
	if err != nil {
		tb.Fatalf("history headers of the output to %s: %v", out.Topic, err)
	}
	return h
}

func deadLetter(tb testing.TB, out envelope.Output) envelope.DeadLetter {
	tb.Helper()
	if out.Topic != "orders_dlq" {
		tb.Fatalf("output to %s, want orders_dlq", out.Topic)
	}
	d, err := envelope.ParseDeadLetter(out.Value)
	if err != nil {
		tb.Fatalf("DLQ value %q: %v", out.Value, err)
	}
	return d
}

func wantProcessed(tb testing.TB, out envelope.Output, value []byte, orderID, by string, attempts string) {
	tb.Helper()
	if out.Topic != "orders_processed" {
		tb.Fatalf("output to %s, want orders_processed", out.Topic)
	}
	if out.Partition != envelope.AnyPartition {
		tb.Fatalf("partition %d, want AnyPartition", out.Partition)
	}
	if string(out.Key) != orderID {
		tb.Fatalf("key %q, want the orderId %q", out.Key, orderID)
	}
	if !slices.Equal(out.Value, value) {
		tb.Fatalf("value %x, want the input's %x", out.Value, value)
	}
	want := []envelope.Header{
		{Key: envelope.HeaderAttempts, Value: []byte(attempts)},
		{Key: envelope.HeaderProcessedBy, Value: []byte(by)},
	}
	if !reflect.DeepEqual(out.Headers, want) {
		tb.Fatalf("headers %q, want %q", out.Headers, want)
	}
}

func TestMainStageProcesses(t *testing.T) {
	o := schemas.Order{OrderID: "1001", Product: "Item2", Price: 45.99}
	r := input(t, o)
	r.Key = []byte("some other key")
	out := stageAt(0, processor.Rule{FailProducts: []string{"Item3"}}, start).Decide(r)
	wantProcessed(t, out, r.Value, "1001", "main", "1")
}

func TestFailingOrderClimbsTheLadderToTheDLQ(t *testing.T) {
	rule := processor.Rule{FailProducts: []string{"Item3"}}
	o := schemas.Order{OrderID: "1006", Product: "Item3", Price: 39.79}
	orig := input(t, o)

	type hop struct {
		topic string
		delay time.Duration
	}
	hops := []hop{{"orders_retry_1", 2 * time.Second}, {"orders_retry_2", 5 * time.Second}, {"orders_retry_3", 10 * time.Second}}
	r := orig
	now := start
	for step, want := range hops {
		s := stageAt(step, rule, now)
		out := s.Decide(r)
		if out.Topic != want.topic {
			t.Fatalf("step %d: output to %s, want %s", step, out.Topic, want.topic)
		}
		if out.Partition != envelope.AnyPartition || !slices.Equal(out.Key, orig.Key) || !slices.Equal(out.Value, orig.Value) {
			t.Fatalf("step %d: output %d %q %x, want the input's key and value by key", step, out.Partition, out.Key, out.Value)
		}
		h := history(t, out)
		stageName := topology.Default().StageName(step)
		if h.Attempts != step+1 || h.LastStage != stageName {
			t.Fatalf("step %d: attempts %d, last stage %q; want %d, %q", step, h.Attempts, h.LastStage, step+1, stageName)
		}
		if h.OriginalTopic != "orders" || h.OriginalPartition != 3 || h.OriginalOffset != 42 {
			t.Fatalf("step %d: original %s/%d@%d, want orders/3@42", step, h.OriginalTopic, h.OriginalPartition, h.OriginalOffset)
		}
		if !h.DueAt.Equal(now.Add(want.delay)) {
			t.Fatalf("step %d: due %v, want now+%v = %v", step, h.DueAt, want.delay, now.Add(want.delay))
		}
		if !h.FirstFailureAt.Equal(start) || !h.LastFailureAt.Equal(now) {
			t.Fatalf("step %d: failures from %v to %v, want %v to %v", step, h.FirstFailureAt, h.LastFailureAt, start, now)
		}
		if !strings.Contains(h.LastError, processor.ErrFailingProduct.Error()) {
			t.Fatalf("step %d: last error %q", step, h.LastError)
		}
		// The next stage holds the record until it is due.
		r = consumed(out, int64(100+step))
		next := stageAt(step+1, rule, now)
		if due := next.DueAt(r); !due.Equal(now.Add(want.delay)) {
			t.Fatalf("step %d: DueAt = %v, want %v", step+1, due, now.Add(want.delay))
		}
		now = now.Add(want.delay)
	}

	out := stageAt(3, rule, now).Decide(r)
	d := deadLetter(t, out)
	if d.Reason != envelope.ReasonRetriesExhausted || d.Attempts != 4 || d.Stage != "retry-3" {
		t.Fatalf("dead letter %s after %d attempts in %s, want retries_exhausted after 4 in retry-3", d.Reason, d.Attempts, d.Stage)
	}
	if d.Topic != "orders" || d.Partition != 3 || d.Offset != 42 || d.Key != "1006" {
		t.Fatalf("dead letter names %s/%d@%d key %q, want orders/3@42 key 1006", d.Topic, d.Partition, d.Offset, d.Key)
	}
	if d.RawValueHex != hex.EncodeToString(orig.Value) {
		t.Fatalf("raw_value_hex %s, want %x", d.RawValueHex, orig.Value)
	}
	if raw, err := d.RawValue(); err != nil || !slices.Equal(raw, orig.Value) {
		t.Fatalf("RawValue = %x, %v", raw, err)
	}
	var stages []string
	for _, f := range d.Errors {
		stages = append(stages, f.Stage)
	}
	if want := []string{"main", "retry-1", "retry-2", "retry-3"}; !slices.Equal(stages, want) {
		t.Fatalf("error history stages %v, want %v", stages, want)
	}
	if !d.FirstFailureAt.Equal(start) || !d.LastFailureAt.Equal(now) {
		t.Fatalf("failures from %v to %v, want %v to %v", d.FirstFailureAt, d.LastFailureAt, start, now)
	}
	if !strings.Contains(d.Error, "Item3") {
		t.Fatalf("error %q does not name the product", d.Error)
	}
	if string(out.Key) != "1006" {
		t.Fatalf("DLQ key %q, want 1006", out.Key)
	}
	if h := history(t, out); h.Attempts != 4 || h.LastStage != "retry-3" {
		t.Fatalf("DLQ history headers: %+v", h)
	}
}

func TestLadderFollowsTheTopology(t *testing.T) {
	top, err := topology.New(topology.Topology{Orders: "in", DLQ: "dead", Delays: []time.Duration{time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	rule := processor.Rule{FlakyRate: 1}
	o := schemas.Order{OrderID: "7", Product: "Item1", Price: 10}
	r := envelope.Record{Topic: "in", Partition: 0, Offset: 5, Key: []byte("7"), Value: encode(t, o)}
	s0 := &processor.Stage{Step: 0, Topology: top, Rule: rule, Log: zap.NewNop(), Now: func() time.Time { return start }}
	out := s0.Decide(r)
	if out.Topic != "in_retry_1" {
		t.Fatalf("main stage output to %s, want in_retry_1", out.Topic)
	}
	if h := history(t, out); !h.DueAt.Equal(start.Add(time.Minute)) {
		t.Fatalf("due %v, want start+1m", h.DueAt)
	}
	s1 := &processor.Stage{Step: 1, Topology: top, Rule: rule, Log: zap.NewNop(), Now: func() time.Time { return start }}
	out = s1.Decide(consumed(out, 0))
	if out.Topic != "dead" {
		t.Fatalf("last retry stage output to %s, want dead", out.Topic)
	}
	var d envelope.DeadLetter
	if d, err = envelope.ParseDeadLetter(out.Value); err != nil {
		t.Fatal(err)
	}
	if d.Attempts != 2 || d.Stage != "retry-1" || d.Reason != envelope.ReasonRetriesExhausted || d.Topic != "in" {
		t.Fatalf("dead letter %+v", d)
	}
}

// A flaky order that fails in main and passes in retry-1. The retry stage
// gets a Rule that passes, so that this tests the stage, not the draw.
func TestRetryStageProcessesARecoveredOrder(t *testing.T) {
	o := schemas.Order{OrderID: "1002", Product: "Item1", Price: 23.45}
	r := input(t, o)
	out := stageAt(0, processor.Rule{FlakyRate: 1}, start).Decide(r)
	if out.Topic != "orders_retry_1" {
		t.Fatalf("main stage output to %s, want orders_retry_1", out.Topic)
	}
	if h := history(t, out); !strings.Contains(h.LastError, processor.ErrTransient.Error()) {
		t.Fatalf("last error %q, want a transient failure", h.LastError)
	}
	out = stageAt(1, processor.Rule{}, start.Add(2*time.Second)).Decide(consumed(out, 9))
	wantProcessed(t, out, r.Value, "1002", "retry-1", "2")
}

func TestUndecodableOrderGoesStraightToTheDLQ(t *testing.T) {
	valid := encode(t, schemas.Order{OrderID: "1001", Product: "Item1", Price: 10})
	values := map[string][]byte{
		"empty":     nil,
		"text":      []byte("hello, world"),
		"truncated": valid[:len(valid)-1],
		"trailing":  append(slices.Clone(valid), 0),
	}
	for name, v := range values {
		t.Run(name, func(t *testing.T) {
			r := envelope.Record{Topic: "orders", Partition: 2, Offset: 8, Key: []byte("k"), Value: v}
			// Even a rule that fails everything must not retry garbage.
			out := stageAt(0, processor.Rule{FlakyRate: 1}, start).Decide(r)
			d := deadLetter(t, out)
			if d.Reason != envelope.ReasonUndecodable || d.Attempts != 1 || d.Stage != "main" {
				t.Fatalf("dead letter %s after %d attempts in %s, want undecodable after 1 in main", d.Reason, d.Attempts, d.Stage)
			}
			if d.Topic != "orders" || d.Partition != 2 || d.Offset != 8 || d.Key != "k" || d.RawValueHex != hex.EncodeToString(v) {
				t.Fatalf("dead letter %+v does not describe the input", d)
			}
			if !strings.Contains(d.Error, "decode order") {
				t.Fatalf("error %q", d.Error)
			}
		})
	}
}

func TestUndecodableRetryRecordGoesToTheDLQ(t *testing.T) {
	o := schemas.Order{OrderID: "1006", Product: "Item3", Price: 39.79}
	out := stageAt(0, processor.Rule{FailProducts: []string{"Item3"}}, start).Decide(input(t, o))
	r := consumed(out, 0)
	r.Value = []byte{0xff, 0xff}
	d := deadLetter(t, stageAt(1, processor.Rule{}, start).Decide(r))
	if d.Reason != envelope.ReasonUndecodable || d.Stage != "retry-1" || d.Topic != "orders" || d.Offset != 42 {
		t.Fatalf("dead letter %+v", d)
	}
}

func TestInvalidOrderGoesToTheDLQ(t *testing.T) {
	orders := map[string]schemas.Order{
		"empty orderId":  {OrderID: "", Product: "Item1", Price: 10},
		"NaN price":      {OrderID: "1", Product: "Item1", Price: float32(math.NaN())},
		"negative price": {OrderID: "1", Product: "Item1", Price: -0.01},
		"infinite price": {OrderID: "1", Product: "Item1", Price: float32(math.Inf(1))},
	}
	for name, o := range orders {
		t.Run(name, func(t *testing.T) {
			r := input(t, o)
			d := deadLetter(t, stageAt(0, processor.Rule{}, start).Decide(r))
			if d.Reason != envelope.ReasonInvalid || d.Attempts != 1 || d.Stage != "main" {
				t.Fatalf("dead letter %s after %d attempts in %s, want invalid after 1 in main", d.Reason, d.Attempts, d.Stage)
			}
			if d.Topic != "orders" || d.Partition != 3 || d.Offset != 42 || d.RawValueHex != hex.EncodeToString(r.Value) {
				t.Fatalf("dead letter %+v does not describe the input", d)
			}
			if !strings.Contains(d.Error, "invalid order") {
				t.Fatalf("error %q", d.Error)
			}
		})
	}
}

func TestRetryRecordWithBadHeadersGoesToTheDLQ(t *testing.T) {
	o := schemas.Order{OrderID: "1006", Product: "Item3", Price: 39.79}
	good := stageAt(1, processor.Rule{FailProducts: []string{"Item3"}}, start).Decide(
		consumed(stageAt(0, processor.Rule{FailProducts: []string{"Item3"}}, start).Decide(input(t, o)), 0))
	if good.Topic != "orders_retry_2" {
		t.Fatalf("setup: output to %s", good.Topic)
	}
	garble := func(key, v string) []envelope.Header {
		hs := slices.Clone(good.Headers)
		for i := range hs {
			if hs[i].Key == key {
				hs[i].Value = []byte(v)
			}
		}
		return hs
	}
	cases := map[string][]envelope.Header{
		"none":             nil,
		"garbled attempts": garble(envelope.HeaderAttempts, "many"),
		"zero attempts":    garble(envelope.HeaderAttempts, "0"),
		"garbled due":      garble(envelope.HeaderDueAt, "soon"),
		"missing due": slices.DeleteFunc(slices.Clone(good.Headers), func(h envelope.Header) bool {
			return h.Key == envelope.HeaderDueAt
		}),
	}
	for name, hs := range cases {
		t.Run(name, func(t *testing.T) {
			r := envelope.Record{Topic: "orders_retry_2", Partition: 4, Offset: 17, Key: good.Key, Value: good.Value, Headers: hs}
			s := stageAt(2, processor.Rule{}, start)
			// Without a readable due time the record is due at once; with
			// one, it waits for it like any other and is refused when handled.
			_, dueErr := envelope.ParseDueAt(r)
			if due := s.DueAt(r); (dueErr != nil) != due.IsZero() {
				t.Fatalf("DueAt = %v with a due time header that reads as %v", due, dueErr)
			}
			d := deadLetter(t, s.Decide(r))
			if d.Reason != envelope.ReasonBadHeaders || d.Stage != "retry-2" || d.Attempts != 1 {
				t.Fatalf("dead letter %s after %d attempts in %s, want bad_headers after 1 in retry-2", d.Reason, d.Attempts, d.Stage)
			}
			// The original place is unknown: the DLQ record names where it was found.
			if d.Topic != "orders_retry_2" || d.Partition != 4 || d.Offset != 17 || d.Key != "1006" {
				t.Fatalf("dead letter names %s/%d@%d key %q", d.Topic, d.Partition, d.Offset, d.Key)
			}
			if d.RawValueHex != hex.EncodeToString(good.Value) {
				t.Fatalf("raw_value_hex %s, want %x", d.RawValueHex, good.Value)
			}
			if !strings.Contains(d.Error, envelope.ErrHeaders.Error()) {
				t.Fatalf("error %q", d.Error)
			}
		})
	}
}

func TestDueAt(t *testing.T) {
	o := schemas.Order{OrderID: "1006", Product: "Item3", Price: 39.79}
	out := stageAt(0, processor.Rule{FailProducts: []string{"Item3"}}, start).Decide(input(t, o))
	r := consumed(out, 0)
	if due := stageAt(1, processor.Rule{}, time.Time{}).DueAt(r); !due.Equal(start.Add(2 * time.Second)) {
		t.Fatalf("step 1 DueAt = %v, want %v", due, start.Add(2*time.Second))
	}
	// The main stage never waits, whatever the headers say.
	if due := stageAt(0, processor.Rule{}, time.Time{}).DueAt(r); !due.IsZero() {
		t.Fatalf("step 0 DueAt = %v, want zero", due)
	}
	if due := stageAt(0, processor.Rule{}, time.Time{}).DueAt(input(t, o)); !due.IsZero() {
		t.Fatalf("step 0 DueAt of an input record = %v, want zero", due)
	}
}

func TestNowDefaultsToTheClock(t *testing.T) {
	s := &processor.Stage{Step: 0, Topology: topology.Default(), Rule: processor.Rule{FlakyRate: 1}, Log: zap.NewNop()}
	before := time.Now()
	out := s.Decide(input(t, schemas.Order{OrderID: "1", Product: "Item1", Price: 10}))
	after := time.Now()
	due := history(t, out).DueAt
	if due.Before(before.Add(2*time.Second).Truncate(0)) || due.After(after.Add(2*time.Second)) {
		t.Fatalf("due %v, want between %v and %v", due, before.Add(2*time.Second), after.Add(2*time.Second))
	}
}

func TestHandleDecidesEachRecordInOrder(t *testing.T) {
	s := stageAt(0, processor.Rule{FailProducts: []string{"Item3"}}, start)
	batch := []envelope.Record{
		input(t, schemas.Order{OrderID: "1", Product: "Item1", Price: 10}),
		input(t, schemas.Order{OrderID: "2", Product: "Item3", Price: 10}),
		{Topic: "orders", Value: []byte("junk")},
		input(t, schemas.Order{OrderID: "4", Product: "Item4", Price: 10}),
	}
	outs, err := s.Handle(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	var topics []string
	for _, o := range outs {
		topics = append(topics, o.Topic)
	}
	want := []string{"orders_processed", "orders_retry_1", "orders_dlq", "orders_processed"}
	if !slices.Equal(topics, want) {
		t.Fatalf("outputs to %v, want %v", topics, want)
	}
	for i, r := range batch {
		if d := s.Decide(r); !reflect.DeepEqual(d, outs[i]) {
			t.Fatalf("output %d of Handle differs from Decide: %+v vs %+v", i, outs[i], d)
		}
	}
}

func TestOpenServesFromTheCommittedOffset(t *testing.T) {
	s := stageAt(0, processor.Rule{}, start)
	p, offset, err := s.Open(context.Background(), stage.Assignment{Topic: "orders", Partition: 2, Committed: 314})
	if err != nil {
		t.Fatal(err)
	}
	if offset != 314 {
		t.Fatalf("offset %d, want the committed 314", offset)
	}
	if _, ok := p.(stage.Delayer); !ok {
		t.Fatal("the partition handler does not implement Delayer, so retry records would not wait")
	}
}

// TestBatchLogsALinePerOrder: with every line kept, a batch logs each
// order it processed or retried, in the batch's order, at the batch's
// time and under the stage's logger name; a dead letter is logged at warn.
// With LOG_SAMPLE's N of 2, each message keeps its first 2 lines of the
// second and then one in 2, counted across batches.
func TestBatchLogsALinePerOrder(t *testing.T) {
	core, observed := observer.New(zap.InfoLevel)
	s := stageAt(0, processor.Rule{FailProducts: []string{"Item3"}}, start)
	s.Log = zap.New(logs.NewSampler(core, 2)).Named("main")
	batch := []envelope.Record{
		input(t, schemas.Order{OrderID: "1001", Product: "Item1", Price: 10}),
		input(t, schemas.Order{OrderID: "1002", Product: "Item3", Price: 20}),
		{Topic: "orders", Partition: 3, Offset: 43, Key: []byte("x"), Value: []byte{0xff}},
		input(t, schemas.Order{OrderID: "1003", Product: "Item2", Price: 30}),
	}
	p, _, err := s.Open(context.Background(), stage.Assignment{Topic: "orders", Partition: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Handle(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	type entry struct{ level, msg, orderID string }
	var got []entry
	for _, e := range observed.TakeAll() {
		if e.LoggerName != "main" || !e.Time.Equal(start) {
			t.Fatalf("line %q from logger %q at %v, want logger main at %v", e.Message, e.LoggerName, e.Time, start)
		}
		id, _ := e.ContextMap()["orderId"].(string)
		got = append(got, entry{e.Level.String(), e.Message, id})
	}
	want := []entry{
		{"warn", "order dead-lettered", ""},
		{"info", "order processed", "1001"},
		{"info", "retry scheduled", "1002"},
		{"info", "order processed", "1003"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("lines %v, want %v", got, want)
	}
	// Three more batches of the same orders in the same second: of "order
	// processed", lines 3 to 8 come, and 4, 6 and 8 are kept.
	for range 3 {
		if _, err := p.Handle(context.Background(), []envelope.Record{batch[0], batch[3]}); err != nil {
			t.Fatal(err)
		}
	}
	if n := observed.FilterMessage("order processed").Len(); n != 3 {
		t.Fatalf("%d of 6 later order processed lines kept, want 3", n)
	}
}

// An output the broker refuses for good is dead-lettered with reason
// output_refused, naming the topic and the broker's error; the order keeps
// its place in the input topic and, at a retry stage, its history.
func TestRefusedOutputIsDeadLettered(t *testing.T) {
	top := topology.Default()
	o := schemas.Order{OrderID: "1006", Product: "Item3", Price: 9.5}
	main := stageAt(0, processor.Rule{FailProducts: []string{"Item3"}}, start)
	p, _, err := main.Open(context.Background(), stage.Assignment{Topic: top.Orders})
	if err != nil {
		t.Fatal(err)
	}
	batch := []envelope.Record{input(t, o)}
	outs, err := p.Handle(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.(stage.Refuser); !ok {
		t.Fatal("a stage's partition is no stage.Refuser")
	}
	retry := consumed(outs[0], 7)
	retryStage := stageAt(1, processor.Rule{}, start.Add(time.Second))
	rp, _, err := retryStage.Open(context.Background(), stage.Assignment{Topic: retry.Topic})
	if err != nil {
		t.Fatal(err)
	}
	rOuts, err := rp.Handle(context.Background(), []envelope.Record{retry})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		p        stage.Partition
		batch    []envelope.Record
		outs     []envelope.Output
		attempts int
	}{{p, batch, outs, 1}, {rp, []envelope.Record{retry}, rOuts, 2}} {
		refused := errors.New("[10] Message Size Too Large")
		dl, ok := c.p.(stage.Refuser).Refused(c.batch, c.outs, 0, refused)
		if !ok || dl.Topic != top.DLQ {
			t.Fatalf("refused output to %s: got %v to %q, want the DLQ", c.outs[0].Topic, ok, dl.Topic)
		}
		if v, _ := (envelope.Record{Headers: dl.Headers}).Header(envelope.HeaderDLQReason); string(v) != envelope.ReasonOutputRefused {
			t.Errorf("DLQ reason header %q, want %q", v, envelope.ReasonOutputRefused)
		}
		d, err := envelope.ParseDeadLetter(dl.Value)
		if err != nil {
			t.Fatal(err)
		}
		if d.Reason != envelope.ReasonOutputRefused || !strings.Contains(d.Error, c.outs[0].Topic) || !strings.Contains(d.Error, refused.Error()) {
			t.Errorf("dead letter reason %q, error %q: want %s naming %s and the broker's error", d.Reason, d.Error, envelope.ReasonOutputRefused, c.outs[0].Topic)
		}
		if d.Topic != top.Orders || d.Offset != 42 || d.Attempts != c.attempts || d.Key != o.OrderID {
			t.Errorf("dead letter of %s/%d@%d, attempts %d, key %q: want orders@42, %d attempts, key %s", d.Topic, d.Partition, d.Offset, d.Attempts, d.Key, c.attempts, o.OrderID)
		}
		if _, ok := c.p.(stage.Refuser).Refused(c.batch, []envelope.Output{dl}, 0, refused); ok {
			t.Error("a refused DLQ record got another outcome; it has none")
		}
	}
}
