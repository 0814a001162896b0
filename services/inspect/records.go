// Package inspect answers the questions of the people who run the
// pipeline: where each topic stands (records, lag, age of the oldest
// unconsumed record, retries waiting), what a topic holds, decoded, and
// which path one order took through every topic.
package inspect

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"slices"
	"time"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/wait"
	"github.com/orderflow/orders/topology"
)

// Record is one record, decoded for people.
type Record struct {
	Topic     string            `json:"topic"`
	Partition int               `json:"partition"`
	Offset    int64             `json:"offset"`
	Time      time.Time         `json:"timestamp"`
	Key       string            `json:"key"`
	Headers   map[string]string `json:"headers,omitempty"`
	// Value is the decoded value: an order, a DLQ record or a state
	// record as JSON; RawHex holds values that do not decode.
	Value  json.RawMessage `json:"value,omitempty"`
	RawHex string          `json:"raw_value_hex,omitempty"`
	Error  string          `json:"decode_error,omitempty"`
}

// Decode turns a consumed message into a Record, decoding its value by
// what its topic holds; an order with values (nil: plain Avro), giving up
// after decodeTimeout if it waits for a schema registry.
func Decode(ctx context.Context, top topology.Topology, values schemas.Values, m envelope.Record) Record {
	r := Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Time: m.Time, Key: string(m.Key)}
	if len(m.Headers) > 0 {
		r.Headers = make(map[string]string, len(m.Headers))
		for _, h := range m.Headers {
			r.Headers[h.Key] = string(h.Value)
		}
	}
	switch m.Topic {
	case top.DLQ, top.State, top.Replays:
		if json.Valid(m.Value) {
			r.Value = json.RawMessage(m.Value)
			return r
		}
		r.Error = "not JSON"
	default:
		dctx, cancel := context.WithTimeout(ctx, decodeTimeout)
		o, err := schemas.OrPlain(values).Decode(dctx, m.Value)
		cancel()
		if err == nil {
			b, _ := json.Marshal(o)
			r.Value = b
			return r
		}
		r.Error = err.Error()
	}
	r.RawHex = hex.EncodeToString(m.Value)
	return r
}

// decodeTimeout bounds how long Decode waits to read one order.
const decodeTimeout = 10 * time.Second

// Query selects records of one topic.
type Query struct {
	// Values reads the orders. Optional, default plain Avro.
	Values schemas.Values
	Topic  string
	// Tail keeps only the last N records (by timestamp); 0 keeps all.
	Tail int
	// Partition restricts to one partition; -1 reads all.
	Partition int
	// Key keeps only records with this key; "" keeps all.
	Key string
}

// Records reads the records q selects, as they stand now, oldest first,
// and returns where each partition ends, to follow from.
func Records(ctx context.Context, client kafka.Client, top topology.Topology, q Query) ([]Record, map[string]map[int]int64, error) {
	ends, err := client.Offsets(ctx, q.Topic)
	if err != nil {
		return nil, nil, err
	}
	next := map[string]map[int]int64{q.Topic: {}}
	for p, se := range ends {
		from := se.First
		if q.Tail > 0 && q.Key == "" {
			from = max(se.First, se.End-int64(q.Tail))
		}
		next[q.Topic][p] = from
		if q.Partition >= 0 && p != q.Partition {
			next[q.Topic][p] = se.End
		}
	}
	var out []Record
	err = kafka.ReadNew(ctx, client, []string{q.Topic}, next, func(m envelope.Record) error {
		if q.Key == "" || string(m.Key) == q.Key {
			out = append(out, Decode(ctx, top, q.Values, m))
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	slices.SortStableFunc(out, func(a, b Record) int { return a.Time.Compare(b.Time) })
	if q.Tail > 0 && len(out) > q.Tail {
		out = out[len(out)-q.Tail:]
	}
	return out, next, nil
}

// Follow calls fn for every record appended after next (as Records
// returned it) until ctx ends, polling every interval.
func Follow(ctx context.Context, client kafka.Client, top topology.Topology, q Query, next map[string]map[int]int64, every time.Duration, fn func(Record) error) error {
	for {
		if !wait.For(ctx, every) {
			return nil
		}
		err := kafka.ReadNew(ctx, client, []string{q.Topic}, next, func(m envelope.Record) error {
			if (q.Partition < 0 || m.Partition == q.Partition) && (q.Key == "" || string(m.Key) == q.Key) {
				return fn(Decode(ctx, top, q.Values, m))
			}
			return nil
		})
		if err != nil && ctx.Err() == nil {
			return err
		}
	}
}
