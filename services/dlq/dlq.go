// Package dlq lists dead-lettered orders and sends them back through the
// pipeline. Every replay is recorded in a replay log topic before and after
// it is sent, so running a replay again, or after an interruption, never
// sends the same DLQ record twice.
package dlq

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/wait"
	"github.com/orderflow/orders/topology"
)

// Entry is one DLQ record.
type Entry struct {
	Partition int                 `json:"partition"`
	Offset    int64               `json:"offset"`
	Time      time.Time           `json:"timestamp"`
	Letter    envelope.DeadLetter `json:"dead_letter"`
	// Order is the original order, when its raw value decodes.
	Order *schemas.Order `json:"order,omitempty"`
}

// ID names the record as the replay log does: partition@offset.
func (e Entry) ID() string { return strconv.Itoa(e.Partition) + "@" + strconv.FormatInt(e.Offset, 10) }

// Filter selects DLQ records. Zero values select everything.
type Filter struct {
	// Error keeps records whose error matches.
	Error *regexp.Regexp
	// Since keeps records dead-lettered at most this long ago.
	Since time.Duration
	// Key keeps the records of one order.
	Key string
}

func (f Filter) match(e Entry, now time.Time) bool {
	switch {
	case f.Error != nil && !f.Error.MatchString(e.Letter.Error):
		return false
	case f.Since > 0 && now.Sub(e.Time) > f.Since:
		return false
	case f.Key != "" && e.Letter.Key != f.Key:
		return false
	}
	return true
}

// List returns the DLQ records f selects, in partition and offset order.
// The orders of their raw values are read with values (nil: plain Avro).
func List(ctx context.Context, client kafka.Client, top topology.Topology, values schemas.Values, f Filter, now time.Time) ([]Entry, error) {
	values = schemas.OrPlain(values)
	var out []Entry
	err := kafka.ReadNew(ctx, client, []string{top.DLQ}, map[string]map[int]int64{}, func(m envelope.Record) error {
		d, err := envelope.ParseDeadLetter(m.Value)
		if err != nil {
			return fmt.Errorf("%s/%d@%d is not a DLQ record: %w", m.Topic, m.Partition, m.Offset, err)
		}
		e := Entry{Partition: m.Partition, Offset: m.Offset, Time: m.Time, Letter: d}
		if raw, err := d.RawValue(); err == nil && !d.RawValueTruncated {
			if o, err := values.Decode(ctx, raw); err == nil {
				e.Order = &o
			}
		}
		if f.match(e, now) {
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// ReplayConfig says what to send back and where.
type ReplayConfig struct {
	Filter
	// To is the topic to send to. Optional, default the orders topic; a
	// retry topic is allowed and the record is then due at once.
	To string
	// Limit is the most records sent; 0 is no limit.
	Limit int
	// Rate is the most records sent per second; 0 is no limit.
	Rate float64
	// MaxReplays leaves alone records already replayed this many times.
	// Optional, default 3.
	MaxReplays int
	// DryRun only reports what would be sent.
	DryRun bool
	// FromStart ignores the replay log: records replayed before are sent
	// again.
	FromStart bool
}

// Outcome is what Replay did with one DLQ record.
type Outcome struct {
	Entry  Entry  `json:"entry"`
	Action string `json:"action"` // sent, would-send, already-replayed, interrupted, too-many-replays, truncated
	To     string `json:"to,omitempty"`
}

// Replay actions.
const (
	ActionSent           = "sent"
	ActionWouldSend      = "would-send"
	ActionAlreadySent    = "already-replayed"
	ActionInterrupted    = "interrupted"
	ActionTooManyReplays = "too-many-replays"
	ActionTruncated      = "truncated"
)

// mark is a replay log record: a "sending" mark is written before the
// order goes out and a "sent" mark after it is acknowledged.
type mark struct {
	State   string    `json:"state"`
	To      string    `json:"to"`
	At      time.Time `json:"at"`
	Replays int       `json:"replays"`
}

// Replay sends the selected DLQ records' original values back to
// cfg.To, with the replay count and the source in headers, and reports
// what it did with each selected record.
func Replay(ctx context.Context, client kafka.Client, top topology.Topology, cfg ReplayConfig, log *zap.Logger) ([]Outcome, error) {
	if cfg.To == "" {
		cfg.To = top.Orders
	}
	if cfg.MaxReplays == 0 {
		cfg.MaxReplays = 3
	}
	step := top.RetryStep(cfg.To)
	if cfg.To != top.Orders && step == 0 {
		return nil, fmt.Errorf("--to: %s is not %s or a retry topic", cfg.To, top.Orders)
	}
	marks := map[string]mark{}
	if !cfg.FromStart {
		err := kafka.ReadNew(ctx, client, []string{top.Replays}, map[string]map[int]int64{}, func(m envelope.Record) error {
			var mk mark
			if json.Unmarshal(m.Value, &mk) == nil {
				marks[string(m.Key)] = mk
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read the replay log %s: %w", top.Replays, err)
		}
	}
	start := time.Now()
	entries, err := List(ctx, client, top, nil, cfg.Filter, start) // the raw values are sent, not read
	if err != nil {
		return nil, err
	}
	w := client.NewWriter(kafka.WriterConfig{BatchSize: 1}, log)
	defer w.Close()
	write := func(o envelope.Output) error {
		return w.Write(ctx, []envelope.Output{o})
	}
	var out []Outcome
	sent := 0
	for _, e := range entries {
		o := Outcome{Entry: e, To: cfg.To}
		mk, marked := marks[e.ID()]
		switch {
		case marked && mk.State == ActionSent:
			o.Action, o.To = ActionAlreadySent, mk.To
		case marked:
			o.Action, o.To = ActionInterrupted, mk.To
		case e.Letter.Replays >= cfg.MaxReplays:
			o.Action = ActionTooManyReplays
		case e.Letter.RawValueTruncated:
			o.Action = ActionTruncated
		case cfg.Limit > 0 && sent >= cfg.Limit:
			continue
		case cfg.DryRun:
			o.Action = ActionWouldSend
			sent++
		default:
			if cfg.Rate > 0 {
				due := start.Add(time.Duration(float64(sent) / cfg.Rate * float64(time.Second)))
				if !wait.Until(ctx, time.Now, due) {
					return out, ctx.Err()
				}
			}
			if err := send(write, top, cfg.To, step, e); err != nil {
				return out, err
			}
			o.Action = ActionSent
			sent++
		}
		out = append(out, o)
	}
	return out, nil
}

// send writes the "sending" mark, the order, then the "sent" mark.
func send(write func(envelope.Output) error, top topology.Topology, to string, step int, e Entry) error {
	raw, err := e.Letter.RawValue()
	if err != nil {
		return fmt.Errorf("DLQ record %s: raw_value_hex: %w", e.ID(), err)
	}
	replays := e.Letter.Replays + 1
	logMark := func(state string) error {
		v, _ := json.Marshal(mark{State: state, To: to, At: time.Now().UTC(), Replays: replays})
		return write(envelope.Output{Topic: top.Replays, Partition: e.Partition % top.Partitions, Key: []byte(e.ID()), Value: v})
	}
	if err := logMark("sending"); err != nil {
		return fmt.Errorf("replay log: %w", err)
	}
	headers := []envelope.Header{
		{Key: envelope.HeaderReplays, Value: []byte(strconv.Itoa(replays))},
		{Key: envelope.HeaderReplaySource, Value: []byte(top.DLQ + "/" + e.ID())},
	}
	if step > 0 {
		// A retry stage needs a history: the order failed the stages
		// before this one, and is due now. Its failures are the DLQ
		// record's, then the replay.
		now := time.Now()
		h := envelope.History{
			OriginalTopic: e.Letter.Topic, OriginalPartition: e.Letter.Partition, OriginalOffset: e.Letter.Offset,
			FirstFailureAt: e.Letter.FirstFailureAt, Errors: e.Letter.Errors, Replays: replays,
		}
		h = h.Failed("replay", now, e.Letter.Error)
		h.Attempts = step
		h.Errors[len(h.Errors)-1].Attempt = step
		h.ErrorClass, h.DueAt = "replay", now
		headers = append(h.Headers(), headers[1])
	}
	if err := write(envelope.Output{Topic: to, Partition: envelope.AnyPartition, Key: []byte(e.Letter.Key), Value: raw, Headers: headers}); err != nil {
		return fmt.Errorf("send %s to %s: %w", e.ID(), to, err)
	}
	if err := logMark(ActionSent); err != nil {
		return fmt.Errorf("replay log: %w", err)
	}
	return nil
}
