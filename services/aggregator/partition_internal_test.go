package aggregator

import (
	"context"
	"encoding/json"
	"fmt"
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
	"github.com/orderflow/orders/topology"
)

// fixture is a partition handler with its totals and update funcs recorded.
type fixture struct {
	p      *partition
	deltas []Snapshot
	totals Totals
}

func newFixture(index int) *fixture {
	f := &fixture{}
	f.p = &partition{
		top: topology.Default(), log: zap.NewNop(), index: index, gen: 7, base: 12,
		seen: &orderSet{}, h: testHorizon, horizon: time.Hour, now: func() time.Time { return testNow },
		maxBytes: defaultMaxMessageBytes - stateRecordOverhead, stateKeys: map[int64][]string{},
		totals: func() Totals { return f.totals },
		update: func(d Snapshot) {
			f.deltas = append(f.deltas, d)
			f.totals = f.totals.add(d)
		},
	}
	return f
}

// testTime is when the processed records of these tests were written, and
// testNow the clock of their aggregator.
var (
	testTime = time.Date(2024, 3, 5, 0, 0, 0, 0, time.UTC)
	testNow  = testTime.Add(time.Minute)
)

// processed is the record of the processed topic at offset for an order.
func processed(tb testing.TB, offset int64, id string, price float32) envelope.Record {
	tb.Helper()
	v, err := schemas.Encode(schemas.Order{OrderID: id, Product: "Item1", Price: price})
	if err != nil {
		tb.Fatal(err)
	}
	return envelope.Record{Topic: "orders_processed", Partition: 4, Offset: offset, Key: []byte(id), Value: v,
		Time: testTime}
}

// stateValue is the JSON of a state record, read with its own field names.
type stateValue struct {
	Gen   int32    `json:"gen"`
	Base  int64    `json:"base"`
	Next  int64    `json:"next"`
	Count int64    `json:"count"`
	Sum   float64  `json:"sum"`
	IDs   []string `json:"ids"`
}

// handle runs a batch and splits its outputs into the state record and the
// DLQ records.
func (f *fixture) handle(t *testing.T, batch ...envelope.Record) (stateValue, []envelope.Output) {
	t.Helper()
	outs, err := f.p.Handle(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	var (
		state  *envelope.Output
		others []envelope.Output
	)
	for i, o := range outs {
		switch o.Topic {
		case "orders_aggregator_state":
			if state != nil {
				t.Fatalf("two state records for one batch: %+v", outs)
			}
			state = &outs[i]
		default:
			others = append(others, o)
		}
	}
	if state == nil {
		t.Fatalf("no state record among %+v", outs)
	}
	if state.Partition != f.p.index {
		t.Fatalf("state record to partition %d, want the processed partition %d", state.Partition, f.p.index)
	}
	var v stateValue
	if err := json.Unmarshal(state.Value, &v); err != nil {
		t.Fatalf("state value %s: %v", state.Value, err)
	}
	return v, others
}

func TestHandleCountsEachOrderOnce(t *testing.T) {
	f := newFixture(4)
	v, dlq := f.handle(t,
		processed(t, 100, "1001", 10.5),
		processed(t, 101, "1002", 20.25),
		processed(t, 102, "1001", 10.5), // redelivered within the batch
	)
	if len(dlq) != 0 {
		t.Fatalf("unexpected outputs %+v", dlq)
	}
	want := stateValue{Gen: 7, Base: 12, Next: 103, Count: 2, Sum: 30.75, IDs: []string{"1001", "1002"}}
	if !equalState(v, want) {
		t.Fatalf("state %+v, want %+v", v, want)
	}
	f.p.Acked(nil)
	if len(f.deltas) != 1 || f.deltas[0].Count != 2 || f.deltas[0].Sum != 30.75 {
		t.Fatalf("update got %+v, want one delta of 2 orders, 30.75", f.deltas)
	}

	// Redelivered across batches: only 1003 is new.
	v, _ = f.handle(t,
		processed(t, 103, "1002", 20.25),
		processed(t, 104, "1003", 1),
		processed(t, 105, "1001", 10.5),
	)
	want = stateValue{Gen: 7, Base: 12, Next: 106, Count: 3, Sum: 31.75, IDs: []string{"1003"}}
	if !equalState(v, want) {
		t.Fatalf("state %+v, want %+v", v, want)
	}
	f.p.Acked(nil)
	if len(f.deltas) != 2 || f.deltas[1].Count != 1 || f.deltas[1].Sum != 1 {
		t.Fatalf("update got %+v, want a second delta of 1 order, 1.0", f.deltas)
	}
	if f.totals.Count != 3 || f.totals.Average != 31.75/3 {
		t.Fatalf("totals %+v", f.totals)
	}

	// A batch of duplicates only still moves the position on.
	v, _ = f.handle(t, processed(t, 106, "1003", 1))
	want = stateValue{Gen: 7, Base: 12, Next: 107, Count: 3, Sum: 31.75}
	if !equalState(v, want) {
		t.Fatalf("state %+v, want %+v", v, want)
	}
	f.p.Acked(nil)
	if d := f.deltas[len(f.deltas)-1]; d.Count != 0 || d.Sum != 0 {
		t.Fatalf("a batch of duplicates updated the totals by %+v", d)
	}
}

func TestHandleSkipsOrdersSeenBeforeTheRestart(t *testing.T) {
	f := newFixture(0)
	f.p.cur = Snapshot{Generation: 6, Next: 50, Count: 5, Sum: 100, Watermark: testTime.UnixMilli()}
	f.p.oldest = testHorizon.bucket(testTime.UnixMilli())
	f.p.seen.add(keyOf("1001").in(f.p.oldest)) // restored from the state topic
	v, _ := f.handle(t, processed(t, 50, "1001", 10), processed(t, 51, "1010", 30))
	want := stateValue{Gen: 7, Base: 12, Next: 52, Count: 6, Sum: 130, IDs: []string{"1010"}}
	if !equalState(v, want) {
		t.Fatalf("state %+v, want %+v", v, want)
	}
	f.p.Acked(nil)
	if len(f.deltas) != 1 || f.deltas[0].Count != 1 || f.deltas[0].Sum != 30 {
		t.Fatalf("deltas %+v, want one of 1 order, 30", f.deltas)
	}
}

func TestHandleDeadLettersRecordsThatAreNotOrders(t *testing.T) {
	f := newFixture(2)
	junk := envelope.Record{Topic: "orders_processed", Partition: 2, Offset: 8, Key: []byte("k"), Value: []byte("junk")}
	neg := processed(t, 9, "1005", -3)
	v, dlq := f.handle(t, processed(t, 7, "1001", 12), junk, neg, processed(t, 10, "1002", 8))

	want := stateValue{Gen: 7, Base: 12, Next: 11, Count: 2, Sum: 20, IDs: []string{"1001", "1002"}}
	if !equalState(v, want) {
		t.Fatalf("state %+v, want %+v", v, want)
	}
	if len(dlq) != 2 {
		t.Fatalf("%d other outputs, want 2 DLQ records: %+v", len(dlq), dlq)
	}
	for i, c := range []struct {
		r      envelope.Record
		reason string
	}{{junk, envelope.ReasonUndecodable}, {neg, envelope.ReasonInvalid}} {
		out := dlq[i]
		if out.Topic != "orders_dlq" || string(out.Key) != string(c.r.Key) {
			t.Fatalf("output %d to %s key %q, want orders_dlq key %q", i, out.Topic, out.Key, c.r.Key)
		}
		d, err := envelope.ParseDeadLetter(out.Value)
		if err != nil {
			t.Fatal(err)
		}
		if d.Reason != c.reason || d.Stage != topology.StageAggregator || d.Attempts != 1 ||
			d.Topic != "orders_processed" || d.Partition != c.r.Partition || d.Offset != c.r.Offset {
			t.Fatalf("dead letter %+v, want %s from the aggregator at offset %d", d, c.reason, c.r.Offset)
		}
		if raw, _ := d.RawValue(); !slices.Equal(raw, c.r.Value) {
			t.Fatalf("raw value %x, want %x", raw, c.r.Value)
		}
	}
	if f.p.seen.has(keyOf("1005")) {
		t.Fatal("an invalid order was recorded as seen")
	}
}

func TestStateRecordGoesToTheSamePartition(t *testing.T) {
	for _, index := range []int{0, 5} {
		f := newFixture(index)
		outs, err := f.p.Handle(context.Background(), []envelope.Record{processed(t, 0, "1", 10)})
		if err != nil {
			t.Fatal(err)
		}
		if len(outs) != 1 {
			t.Fatalf("%d outputs, want the state record only", len(outs))
		}
		o := outs[0]
		if o.Topic != "orders_aggregator_state" || o.Partition != index {
			t.Fatalf("state record to %s/%d, want orders_aggregator_state/%d", o.Topic, o.Partition, index)
		}
		if o.Partition == envelope.AnyPartition {
			t.Fatal("state record partitioned by key")
		}
		s, err := parseSnapshot(o.Value)
		if err != nil {
			t.Fatal(err)
		}
		if s.Next != 1 || s.Count != 1 || !slices.Equal(s.IDs, []string{"1"}) {
			t.Fatalf("snapshot %+v", s)
		}
	}
}

func TestAckedMakesTheBatchCurrent(t *testing.T) {
	f := newFixture(1)
	f.totals = Totals{Count: 10, Sum: 100, Average: 10} // other partitions
	f.handle(t, processed(t, 0, "a", 40), processed(t, 1, "b", 60))
	if f.p.cur.Count != 0 || len(f.deltas) != 0 {
		t.Fatalf("Handle alone changed the state: cur %+v, deltas %+v", f.p.cur, f.deltas)
	}
	f.p.Acked(nil)
	want := Snapshot{Version: stateVersion, Generation: 7, Base: 12, Next: 2, Count: 2, Sum: 100,
		Watermark: testTime.UnixMilli(), Horizon: time.Hour.Milliseconds(), From: testTime.UnixMilli()}
	if !reflect.DeepEqual(f.p.cur, want) {
		t.Fatalf("cur %+v, want %+v", f.p.cur, want)
	}
	if f.totals != (Totals{Count: 12, Sum: 200, Average: 200.0 / 12}) {
		t.Fatalf("totals %+v", f.totals)
	}
}

func equalState(a, b stateValue) bool {
	return a.Gen == b.Gen && a.Base == b.Base && a.Next == b.Next && a.Count == b.Count && a.Sum == b.Sum &&
		slices.Equal(a.IDs, b.IDs)
}

// A batch whose orderIds are long and many is recorded in several state
// records, each below what a broker takes in one record, and replaying
// them gives the state one record would have: the same totals, position
// and orderIds.
func TestHandleSplitsTheStateOfLongOrderIDs(t *testing.T) {
	f := newFixture(2)
	f.p.maxBytes = 200_000 // the state topic's max.message.bytes, less the batch's overhead
	var batch []envelope.Record
	var ids []string
	for i := range 500 {
		id := fmt.Sprintf("%04d-%s", i, strings.Repeat("\x01", 4000)) // escaped in six bytes each
		ids = append(ids, id)
		batch = append(batch, processed(t, int64(1000+i), id, 1))
	}
	batch = append(batch, processed(t, 1500, ids[0], 1)) // a duplicate at the end
	outs, err := f.p.Handle(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	rp := newReplay(testHorizon, true)
	for i, o := range outs {
		if o.Topic != "orders_aggregator_state" || o.Partition != 2 {
			t.Fatalf("output %d to %s/%d, want a state record", i, o.Topic, o.Partition)
		}
		if len(o.Value) > f.p.maxBytes {
			t.Fatalf("state record %d is %d bytes long, more than the %d the state topic takes", i, len(o.Value), f.p.maxBytes)
		}
		s, err := parseSnapshot(o.Value)
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 && s.Next <= rp.cur.Next {
			t.Fatalf("state record %d ends at %d, not after the one before (%d)", i, s.Next, rp.cur.Next)
		}
		rp.apply(int64(i), string(o.Key), s, nil)
	}
	if len(outs) < 2 {
		t.Fatalf("%d state record for %d orderIds of 4 KB", len(outs), len(ids))
	}
	if want := (Snapshot{Version: stateVersion, Generation: 7, Base: 12, Next: 1501, Count: 500, Sum: 500,
		Watermark: testTime.UnixMilli(), Horizon: time.Hour.Milliseconds(), From: testTime.UnixMilli()}); !reflect.DeepEqual(rp.cur, want) {
		t.Fatalf("replayed state %+v, want %+v", rp.cur, want)
	}
	seen, _, _ := rp.restored()
	for _, id := range ids {
		if !seen.has(keyOf(id)) {
			t.Fatalf("orderId %.8q... is not in the replayed state", id)
		}
	}
	f.p.Acked(batch)
	if len(f.deltas) != 1 || f.deltas[0].Count != 500 {
		t.Fatalf("deltas %+v, want one of 500 orders", f.deltas)
	}
}

// TestAckedLogsTheAverageOrderByOrder: once a batch is acknowledged, each
// order it counted gets a line with the running average it reached, and
// a duplicate none; the lines pass LOG_SAMPLE together.
func TestAckedLogsTheAverageOrderByOrder(t *testing.T) {
	core, observed := observer.New(zap.InfoLevel)
	f := newFixture(4)
	f.p.log = zap.New(logs.NewSampler(core, 100)).Named("aggregator")
	batch := []envelope.Record{processed(t, 0, "1001", 10), processed(t, 1, "1001", 10), processed(t, 2, "1002", 20)}
	if _, err := f.p.Handle(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	f.p.Acked(batch)
	var got []string
	for _, e := range observed.TakeAll() {
		m := e.ContextMap()
		if e.Message != "running average updated" || e.LoggerName != "aggregator" {
			t.Fatalf("line %q from logger %q", e.Message, e.LoggerName)
		}
		got = append(got, fmt.Sprintf("%v:%v:%v", m["orderId"], m["count"], m["average"]))
	}
	if want := []string{"1001:1:10", "1002:2:15"}; !slices.Equal(got, want) {
		t.Fatalf("lines %v, want %v", got, want)
	}
}

// Once the horizon has passed a state record, the next batch writes a
// tombstone for it, and its own state record says that a restore need not
// read from before it any more; until then, the records say to read from
// the oldest one without a tombstone.
func TestTombstonesAndWhereARestoreReadsFrom(t *testing.T) {
	f := newFixture(3)
	f.p.now = func() time.Time { return testTime.Add(3 * time.Hour) }
	first := processed(t, 0, "a", 1)
	outs, err := f.p.Handle(context.Background(), []envelope.Record{first})
	if err != nil || len(outs) != 1 {
		t.Fatalf("outputs %+v, %v: want one state record", outs, err)
	}
	old := outs[0]
	f.p.Acked(nil)
	later := processed(t, 1, "b", 2)
	later.Time = testTime.Add(30 * time.Minute) // inside the hour
	outs, err = f.p.Handle(context.Background(), []envelope.Record{later})
	if err != nil || len(outs) != 1 {
		t.Fatalf("outputs %+v, %v: want one state record and no tombstone inside the horizon", outs, err)
	}
	s, _ := parseSnapshot(outs[0].Value)
	if s.From != old.Time.UnixMilli() || !old.Time.Equal(testTime) {
		t.Fatalf("a record inside the horizon says to read from %d, want the first record's %d (stamped %v)", s.From, old.Time.UnixMilli(), old.Time)
	}
	f.p.Acked(nil)
	last := processed(t, 2, "c", 3)
	last.Time = testTime.Add(70 * time.Minute) // the first record is now past the horizon, the second not
	outs, err = f.p.Handle(context.Background(), []envelope.Record{last})
	if err != nil {
		t.Fatal(err)
	}
	if len(outs) != 2 || outs[0].Value != nil || string(outs[0].Key) != string(old.Key) || outs[0].Partition != 3 {
		t.Fatalf("outputs %+v, want a tombstone for %s, then the state record", outs, old.Key)
	}
	s, _ = parseSnapshot(outs[1].Value)
	if s.From <= testTime.Add(30*time.Minute).UnixMilli()-testHorizon.width || s.From > last.Time.UnixMilli() {
		t.Fatalf("after the tombstone a restore reads from %v, want the second record's bucket", time.UnixMilli(s.From).UTC())
	}
	if f.p.seen.has(keyOf("a")) || !f.p.seen.has(keyOf("b")) {
		t.Fatal("the horizon forgot the wrong orderIds")
	}
}

// A partition idle for longer than the horizon keeps its last state
// record, which holds its totals, until the next one is acknowledged: a
// tombstone written with that one could otherwise leave no record at all.
func TestTheRecordHoldingTheTotalsOutlivesTheHorizon(t *testing.T) {
	f := newFixture(1)
	f.p.now = func() time.Time { return testTime.Add(10 * time.Hour) }
	outs, _ := f.p.Handle(context.Background(), []envelope.Record{processed(t, 0, "a", 1)})
	holding := outs[0].Key
	f.p.Acked(nil)
	idle := processed(t, 1, "b", 2)
	idle.Time = testTime.Add(5 * time.Hour)
	outs, _ = f.p.Handle(context.Background(), []envelope.Record{idle})
	if len(outs) != 1 || outs[0].Value == nil {
		t.Fatalf("outputs %+v: want only the new state record while the old one holds the totals", outs)
	}
	s, _ := parseSnapshot(outs[0].Value)
	if s.From > testTime.UnixMilli() {
		t.Fatalf("a restore would read from %v, after the record that holds the totals", time.UnixMilli(s.From).UTC())
	}
	f.p.Acked(nil)
	next := processed(t, 2, "c", 3)
	next.Time = testTime.Add(5*time.Hour + time.Minute)
	outs, _ = f.p.Handle(context.Background(), []envelope.Record{next})
	if len(outs) != 2 || outs[0].Value != nil || string(outs[0].Key) != string(holding) {
		t.Fatalf("outputs %+v: want a tombstone for %s, now that a newer record holds the totals", outs, holding)
	}
}
