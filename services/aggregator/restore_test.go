package aggregator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/aggregator"
	"github.com/orderflow/orders/services/broker"
	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/stage"
	"github.com/orderflow/orders/services/testkit"
	"github.com/orderflow/orders/topology"
)

// pipeline is an embedded broker with the aggregator's topics, one
// partition each, the state topic compacted.
type pipeline struct {
	t      *testing.T
	broker *broker.Broker
	client kafka.Client
	top    topology.Topology
	sum    float64 // of the distinct orders the aggregator should count
	count  int64
}

func newPipeline(t *testing.T) *pipeline {
	b := testkit.Broker(t, broker.Config{})
	top := topology.Default()
	top.Partitions = 1
	p := &pipeline{t: t, broker: b, client: kafka.Client{Brokers: []string{b.Addr()}}, top: top}
	admin := p.client.Admin()
	defer admin.Close()
	_, err := admin.CreateTopics(context.Background(), &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{
		{Topic: top.Processed, NumPartitions: 1, ReplicationFactor: 1},
		{Topic: top.DLQ, NumPartitions: 1, ReplicationFactor: 1},
		{Topic: top.State, NumPartitions: 1, ReplicationFactor: 1,
			ConfigEntries: []kafkago.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// order is one processed record, stamped at, and counted if counted.
type order struct {
	id      string
	price   float32
	at      time.Time
	counted bool
}

func (p *pipeline) write(orders ...order) {
	p.t.Helper()
	var outs []envelope.Output
	for _, o := range orders {
		v, err := schemas.Encode(schemas.Order{OrderID: o.id, Product: "Item1", Price: o.price})
		if err != nil {
			p.t.Fatal(err)
		}
		outs = append(outs, envelope.Output{Topic: p.top.Processed, Partition: 0, Key: []byte(o.id), Value: v, Time: o.at})
		if o.counted {
			p.count++
			p.sum += float64(o.price)
		}
	}
	p.produce(outs)
}

func (p *pipeline) produce(outs []envelope.Output) {
	p.t.Helper()
	w := p.client.NewWriter(kafka.WriterConfig{BatchSize: 1000}, zap.NewNop())
	defer w.Close()
	if err := w.Write(context.Background(), outs); err != nil {
		p.t.Fatal(err)
	}
}

// run runs an aggregator of horizon h until the test ends or stop is
// called, and returns what it logs.
func (p *pipeline) run(h time.Duration) (logs *observer.ObservedLogs, stop func()) {
	p.t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	agg := aggregator.New(p.client, p.top, zap.New(core))
	agg.Horizon = h
	loop, err := stage.NewLoop(stage.Config{
		Client: p.client, Group: p.top.Group(topology.StageAggregator), Topic: p.top.Processed,
		Options: stage.Options{MaxBatch: 50, SessionTimeout: 6 * time.Second},
	}, agg, zap.NewNop())
	if err != nil {
		p.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- loop.Run(ctx) }()
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			p.t.Errorf("aggregator: %v", err)
		}
	}
	p.t.Cleanup(stop)
	return logs, stop
}

// waitTotals waits until the state topic holds the totals of every order
// written so far that counts, and fails if it ever holds more.
func (p *pipeline) waitTotals() {
	p.t.Helper()
	testkit.Eventually(p.t, 60*time.Second, func() (bool, string) {
		tot, err := aggregator.ReadTotals(context.Background(), p.client, p.top)
		if err != nil {
			return false, err.Error()
		}
		if tot.Count > p.count {
			p.t.Fatalf("%d orders counted, want %d: a copy was counted", tot.Count, p.count)
		}
		return tot.Count == p.count, fmt.Sprintf("%d of %d orders counted", tot.Count, p.count)
	})
	tot, err := aggregator.ReadTotals(context.Background(), p.client, p.top)
	if err != nil {
		p.t.Fatal(err)
	}
	if want := p.sum / float64(p.count); math.Abs(tot.Average-want) > 1e-9*want {
		p.t.Fatalf("average %v, want %v", tot.Average, want)
	}
}

// eachState calls fn for every record of the state topic.
func (p *pipeline) eachState(fn func(envelope.Record)) {
	p.t.Helper()
	b, err := p.client.PartitionBounds(context.Background(), p.top.State, 0)
	if err != nil {
		p.t.Fatal(err)
	}
	err = kafka.ReadRange(context.Background(), p.client, p.top.State, 0, b.First, b.End, func(m envelope.Record) error {
		fn(m)
		return nil
	})
	if err != nil {
		p.t.Fatal(err)
	}
}

// stateRecords counts the state topic's records and tombstones, and
// returns the last value.
func (p *pipeline) stateRecords() (values, tombstones int, last []byte) {
	p.t.Helper()
	p.eachState(func(m envelope.Record) {
		if m.Value == nil {
			tombstones++
		} else {
			values++
			last = m.Value
		}
	})
	return values, tombstones, last
}

// restored is the "partition state restored" line of logs.
func restored(t *testing.T, logs *observer.ObservedLogs) map[string]any {
	t.Helper()
	lines := logs.FilterMessage("partition state restored").All()
	if len(lines) != 1 {
		t.Fatalf("%d lines say the partition was restored, want 1", len(lines))
	}
	return lines[0].ContextMap()
}

// A history ten times as long as the horizon: the aggregator counts each
// order once, and a copy again only when it comes later than the horizon;
// a restarted aggregator reads and remembers the orders inside the
// horizon only, and still keeps their copies out; and compaction removes
// the state records the horizon passed, with the same outcome.
func TestAHorizonBoundsWhatARestoreReadsAndRemembers(t *testing.T) {
	p := newPipeline(t)
	const n, horizon = 2000, time.Hour
	now := time.Now()
	began := now.Add(-10 * horizon)
	var history []order
	for i := range n {
		history = append(history, order{id: fmt.Sprintf("o-%d", i), price: float32(1 + i%50),
			at: began.Add(time.Duration(i) * 10 * horizon / n), counted: true})
	}
	p.write(history...)
	_, stop := p.run(horizon)
	p.waitTotals()

	late, early := history[10], history[n-10]
	late.at, early.at = now, now
	late.counted, early.counted = true, false // late comes 10 hours after the order
	p.write(early, late, order{id: "new-1", price: 7, at: now, counted: true})
	p.waitTotals()
	stop()

	values, tombstones, _ := p.stateRecords()
	if tombstones == 0 {
		t.Fatalf("no tombstones among %d state records: the horizon passed most of them", values)
	}
	logs, stop := p.run(horizon)
	late, early = history[20], history[n-5]
	late.at, early.at = now, now
	late.counted, early.counted = true, false
	p.write(early, late, order{id: "new-2", price: 9, at: now, counted: true})
	p.waitTotals()
	stop()
	r := restored(t, logs)
	// Inside the horizon: 200 orders, up to a sixteenth of the horizon and
	// a batch's span (15 minutes of history) more, and new-1.
	if known := r["known_orders"].(int64); known < 200 || known > 320 {
		t.Fatalf("the restarted aggregator remembers %d orders, want the 200 to 320 inside the horizon", known)
	}
	// It skips the records the horizon passed: one for each tombstone.
	if read := r["records_read"].(int64); read > int64(values) {
		t.Fatalf("the restore read %d of %d state records and %d tombstones", read, values, tombstones)
	}

	values, tombstones, _ = p.stateRecords()
	p.broker.Compact()
	after, _, _ := p.stateRecords()
	if after > values-tombstones {
		t.Fatalf("%d state records after compaction, more than the %d of %d without a tombstone", after, values-tombstones, values)
	}
	p.run(horizon)
	late, early = history[30], history[n-3]
	late.at, early.at = now, now
	late.counted, early.counted = true, false
	p.write(early, late, order{id: "new-3", price: 11, at: now, counted: true})
	p.waitTotals()
}

// legacyState is a state record as the format before horizons wrote it:
// one key per partition, no version, no watermark.
func legacyState(t *testing.T, gen int32, next, count int64, sum float64, ids []string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"gen": gen, "base": 0, "next": next, "count": count, "sum": sum, "ids": ids})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// An aggregator started on a state topic of the older format carries its
// totals over exactly, writes the new format from then on, and carries
// the older records' orderIds over too: once compaction has kept only the
// last record of the older format's one key, a copy of an order the first
// one counted is still not counted again.
func TestAStateTopicOfTheOlderFormatIsCarriedOver(t *testing.T) {
	p := newPipeline(t)
	now := time.Now()
	var counted []order
	for i := range 100 {
		counted = append(counted, order{id: fmt.Sprintf("o-%d", i), price: float32(10 + i%7), at: now.Add(-time.Minute), counted: true})
	}
	p.write(counted...) // offsets 0 to 99, counted by the older version
	var ids [2][]string
	var sums [2]float64
	for i, o := range counted {
		ids[i/50] = append(ids[i/50], o.id)
		sums[i/50] += float64(o.price)
	}
	p.produce([]envelope.Output{
		{Topic: p.top.State, Partition: 0, Key: []byte("0"), Value: legacyState(t, 3, 50, 50, sums[0], ids[0])},
		{Topic: p.top.State, Partition: 0, Key: []byte("0"), Value: legacyState(t, 3, 100, 100, sums[0]+sums[1], ids[1])},
	})

	copies := func(from, to int) []order {
		var out []order
		for _, o := range counted[from:to] {
			o.at, o.counted = now, false
			out = append(out, o)
		}
		return out
	}
	logs, stop := p.run(aggregator.DefaultHorizon)
	p.write(append(copies(0, 10), order{id: "new-1", price: 3, at: now, counted: true})...)
	p.waitTotals()
	stop()
	if r := restored(t, logs); r["count"].(int64) != 100 || r["next_offset"].(int64) != 100 || r["carried_over"].(int64) != 100 {
		t.Fatalf("restored %v, want the older format's 100 orders, next offset 100, all carried over", r)
	}
	_, _, last := p.stateRecords()
	var s struct {
		V     int     `json:"v"`
		Count int64   `json:"count"`
		Sum   float64 `json:"sum"`
	}
	if err := json.Unmarshal(last, &s); err != nil || s.V != 2 || s.Count != 101 {
		t.Fatalf("the last state record %s (%v), want one of version 2 counting 101 orders", last, err)
	}

	p.broker.Compact() // drops the older format's first record
	if k := p.legacyRecords(); k != 1 {
		t.Fatalf("compaction kept %d records of the older format, want its last", k)
	}
	p.run(aggregator.DefaultHorizon)
	p.write(append(copies(0, 10), copies(60, 70)...)...)
	p.write(order{id: "new-2", price: 4, at: now, counted: true})
	p.waitTotals()
}

// legacyRecords counts the state topic's records of the older format.
func (p *pipeline) legacyRecords() int {
	p.t.Helper()
	k := 0
	p.eachState(func(m envelope.Record) {
		if string(m.Key) == "0" && m.Value != nil {
			k++
		}
	})
	return k
}
