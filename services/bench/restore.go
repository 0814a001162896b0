package bench

// Row 9 restarts the aggregator on a long history of processed orders, as
// after a deploy, and measures how long it takes to count new orders again
// and how much memory it holds meanwhile: once with a de-duplication
// horizon (DEDUP_HORIZON) that only the newest Config.RestoreInside orders
// of the history fall in, once with one that covers every order. Its
// state, as the first process left it, lives in the state topic: the
// restarted one reads it before it counts anything, so the catch-up time
// is mostly the restore time.
//
// The totals are polled from the end of the state topic, not with
// aggregator.ReadTotals, which replays every state record, each batch's
// orderIds with it: at 10M orders that is seconds of this process's and
// the broker's CPU per poll, on the cores the process under measurement
// needs. ReadTotals confirms the count once each process is done.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/aggregator"
	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/producer"
)

// restoreHorizon is the de-duplication horizon of row 9's restart: the
// newest Config.RestoreInside orders of the history fall inside it.
const restoreHorizon = time.Hour

// restoreEverything is a horizon that covers the whole history, whatever
// its length: row 9's baseline, an aggregator that remembers every order.
const restoreEverything = 100000 * time.Hour

// restoreNew is how many new orders each restart of row 9 counts.
const restoreNew = 1000

// Restore is what row 9 measured.
type Restore struct {
	// History orders were written, the newest Inside of them stamped
	// within restoreHorizon of the time they were written.
	History, Inside int
	// Write is how long writing the history took.
	Write time.Duration
	// First counted the history from an empty state, with the horizon of
	// restoreHorizon; Horizon is a restart of it that then counted
	// restoreNew more. Everything is the same restart on a history counted
	// with a horizon covering every order.
	First, Horizon, Everything Catchup
}

// Catchup is one aggregator process of row 9, from its start until the
// state topic counts Orders.
type Catchup struct {
	// Horizon is the process's DEDUP_HORIZON.
	Horizon time.Duration
	// Orders is the count the state reached.
	Orders int64
	// Elapsed is from the start of the process until it wrote the state
	// record that brought the count to Orders.
	Elapsed time.Duration
	// Joined and Restored are from its start until it was assigned its
	// partitions, and until it logged the last of them restored; 0 if not
	// seen in its log.
	Joined, Restored time.Duration
	// PeakRSS of the process, in bytes.
	PeakRSS int64
}

// met is row 9's target: the restart with the horizon catches up within
// 2 s and holds at most 100 MiB.
func (c Catchup) met() bool {
	return c.Elapsed > 0 && c.Elapsed <= 2*time.Second && c.PeakRSS > 0 && c.PeakRSS <= 100<<20
}

// historyTime is the timestamp of order i (0 the oldest) of a history of n
// orders written at now: spread evenly over n/inside horizons before now,
// so that the newest inside orders, and no others, are less than horizon
// old. Each is half a step away from the horizon's edge, never on it.
func historyTime(now time.Time, i, n, inside int, horizon time.Duration) time.Time {
	step := float64(horizon) / float64(inside)
	return now.Add(-time.Duration((float64(n-1-i) + 0.5) * step))
}

// writeOrders writes n processed orders with distinct orderIds from
// startID on, order i stamped at(i), to topic, keyed by orderId as the
// main stage writes them. Chunks go to a few writers at once, taken in
// order, so that a partition's timestamps rise but for the few chunks in
// flight together.
func writeOrders(ctx context.Context, client kafka.Client, topic string, startID uint64, n int, at func(i int) time.Time) error {
	const (
		chunk   = 60000 // 10,000 records per partition at 6 partitions: about 300 KB each
		writers = 3
	)
	ctx, cancel := context.WithCancel(ctx) // one writer's failure stops the others
	defer cancel()
	var next atomic.Int64
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			defer func() {
				if errs[g] != nil {
					cancel()
				}
			}()
			w := client.NewWriter(kafka.WriterConfig{BatchSize: chunk}, nopLogger())
			defer w.Close()
			outs := make([]envelope.Output, 0, chunk)
			for ctx.Err() == nil {
				from := int(next.Add(1)-1) * chunk
				if from >= n {
					return
				}
				gen := producer.NewGenerator(startID+uint64(from), uint64(from))
				outs = outs[:0]
				for i := from; i < min(from+chunk, n); i++ {
					o := gen.Next()
					v, err := schemas.Encode(o)
					if err != nil {
						errs[g] = err
						return
					}
					outs = append(outs, envelope.Output{Topic: topic, Partition: envelope.AnyPartition, Key: []byte(o.OrderID), Value: v, Time: at(i)})
				}
				if err := w.Write(ctx, outs); err != nil {
					errs[g] = fmt.Errorf("write %s: %w", topic, err)
					return
				}
			}
		})
	}
	wg.Wait()
	return cmp.Or(errors.Join(errs...), ctx.Err())
}

// stateTail follows the end of the state topic: the count of the newest
// state record of each partition, and when a poll first saw the newest of
// them. (State records are stamped with the processed records' time, not
// when they are written.)
type stateTail struct {
	client kafka.Client
	topic  string
	next   map[string]map[int]int64
	counts map[int]int64
	last   time.Time
}

func newStateTail(client kafka.Client, topic string) *stateTail {
	return &stateTail{client: client, topic: topic, next: map[string]map[int]int64{}, counts: map[int]int64{}}
}

// skip reads the records written so far, for their counts, and forgets
// their times: from then on, last is when the newest record written after
// was written.
func (s *stateTail) skip(ctx context.Context) error {
	if err := s.poll(ctx); err != nil {
		return err
	}
	s.last = time.Time{}
	return nil
}

// poll reads the records written since the last poll.
func (s *stateTail) poll(ctx context.Context) error {
	// Only the count of the newest record of a partition matters; the
	// others are not parsed, for their orderIds are most of the bytes.
	newest := map[int]envelope.Record{}
	err := kafka.ReadNew(ctx, s.client, []string{s.topic}, s.next, func(m envelope.Record) error {
		if m.Value == nil {
			return nil // a tombstone
		}
		m.Value = append([]byte(nil), m.Value...) // the fetcher may reuse its buffers
		newest[m.Partition] = m
		return nil
	})
	if err != nil {
		return err
	}
	seen := time.Now()
	for p, m := range newest {
		var st struct {
			Count int64 `json:"count"`
		}
		if err := json.Unmarshal(m.Value, &st); err != nil {
			return fmt.Errorf("%s/%d@%d: %w", s.topic, p, m.Offset, err)
		}
		s.counts[p] = st.Count
		s.last = seen
	}
	return nil
}

// count is the count of the state over every partition.
func (s *stateTail) count() (n int64) {
	for _, c := range s.counts {
		n += c
	}
	return n
}

// restore measures row 9: for each horizon, on a broker of its own, a
// history counted by an aggregator of that horizon, then the catch-up of
// one restarted after more orders. Each history is its own, so that the
// restart with the horizon covering everything finds every orderId still
// in the state, as an aggregator that always had that horizon would.
func (r *runner) restore(ctx context.Context, rep *Report) error {
	res := Restore{History: r.cfg.RestoreHistory, Inside: r.cfg.RestoreInside}
	n := res.History
	for _, c := range []struct {
		horizon     time.Duration
		first, into *Catchup
	}{{restoreHorizon, &res.First, &res.Horizon}, {restoreEverything, nil, &res.Everything}} {
		err := r.withBroker(ctx, r.top, func(client kafka.Client) error {
			began := time.Now()
			r.logf("restore, horizon %v: %d processed orders over the %v before now, the newest %d inside %v", c.horizon, n,
				time.Duration(float64(restoreHorizon)*float64(n)/float64(res.Inside)).Round(time.Minute), res.Inside, restoreHorizon)
			err := writeOrders(ctx, client, r.top.Processed, 1001, n, func(i int) time.Time {
				return historyTime(began, i, n, res.Inside, restoreHorizon)
			})
			if err != nil {
				return err
			}
			if c.first != nil {
				res.Write = time.Since(began)
				r.logf("  written in %.1fs (%.0f/s)", res.Write.Seconds(), float64(n)/res.Write.Seconds())
			}
			tail := newStateTail(client, r.top.State)
			first, err := r.catchUp(ctx, client, tail, c.horizon, int64(n))
			if err != nil {
				return err
			}
			r.logf("  from an empty state: %s", first)
			if c.first != nil {
				*c.first = first
			}
			next := uint64(1001 + n)
			if err := writeOrders(ctx, client, r.top.Processed, next, restoreNew, func(int) time.Time { return time.Now() }); err != nil {
				return err
			}
			if err := tail.skip(ctx); err != nil {
				return err
			}
			if *c.into, err = r.catchUp(ctx, client, tail, c.horizon, tail.count()+restoreNew); err != nil {
				return err
			}
			r.logf("  restarted: %s", *c.into)
			return nil
		})
		if err != nil {
			return err
		}
	}
	rep.Restore = &res
	return nil
}

// catchUp runs one aggregator process with the de-duplication horizon
// until the state counts want orders, confirms the count with
// aggregator.ReadTotals and stops the process.
func (r *runner) catchUp(ctx context.Context, client kafka.Client, tail *stateTail, horizon time.Duration, want int64) (Catchup, error) {
	c := Catchup{Horizon: horizon}
	env := append(r.env(client, r.top, ""), "DEDUP_HORIZON="+horizon.String())
	started := time.Now()
	p, err := start(r.cfg.Binary, env, "run", "aggregator")
	if err != nil {
		return c, err
	}
	defer p.stop()
	wctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	err = waitEvery(wctx, 10*time.Millisecond, func() (bool, error) {
		if err := p.exitErr(); err != nil {
			return false, err
		}
		if err := tail.poll(wctx); err != nil {
			return false, err
		}
		if n := tail.count(); n > want {
			return false, fmt.Errorf("the state counts %d orders, more than the %d distinct ones written", n, want)
		}
		return tail.count() == want, nil
	})
	if err != nil {
		return c, fmt.Errorf("aggregator with horizon %v: waiting for a count of %d (%d so far): %w", horizon, want, tail.count(), err)
	}
	c.Orders, c.Elapsed = want, tail.last.Sub(started)
	if c.PeakRSS, err = p.PeakRSS(); err != nil {
		return c, err
	}
	if at := p.assignedAt(); !at.IsZero() {
		c.Joined = at.Sub(started)
	}
	if at := p.restoredAt(); !at.IsZero() {
		c.Restored = at.Sub(started)
	}
	read := time.Now()
	t, err := aggregator.ReadTotals(ctx, client, r.top)
	if err != nil {
		return c, err
	}
	if t.Count != want {
		return c, fmt.Errorf("aggregator with horizon %v: its state's last records count %d orders, aggregator.ReadTotals %d", horizon, want, t.Count)
	}
	r.logf("  aggregator.ReadTotals agrees, in %.2fs", time.Since(read).Seconds())
	return c, nil
}

func (c Catchup) String() string {
	return fmt.Sprintf("horizon %v: %d orders after %.2fs (joined after %.2fs, restored after %.2fs), peak RSS %.1f MiB",
		c.Horizon, c.Orders, c.Elapsed.Seconds(), c.Joined.Seconds(), c.Restored.Seconds(), mib(c.PeakRSS))
}

// restoreRows are row 9: the restart with the horizon against the one
// covering every order, and the first count of the history.
func (r Report) restoreRows() []Row {
	res := r.Restore
	if res == nil {
		return nil
	}
	fig := func(c Catchup) string {
		return fmt.Sprintf("%.2f s, %.1f MiB peak RSS", c.Elapsed.Seconds(), mib(c.PeakRSS))
	}
	return []Row{{
		What:  fmt.Sprintf("9. restarted aggregator catch-up, %s of %s orders inside the horizon", short(res.Inside), short(res.History)),
		Stage: fig(res.Horizon), Baseline: fig(res.Everything),
		Ratio:  fmt.Sprintf("**%.2f**", ratio(res.Horizon.Elapsed.Seconds(), res.Everything.Elapsed.Seconds())),
		Target: "<= 2 s and <= 100 MiB", Met: res.Horizon.met(),
	}, {
		What: fmt.Sprintf("9. aggregator counting the %s-order history from an empty state", short(res.History)),
		Stage: fmt.Sprintf("%.0f/s (%.1f s), %.1f MiB peak RSS", ratio(float64(res.History), res.First.Elapsed.Seconds()),
			res.First.Elapsed.Seconds(), mib(res.First.PeakRSS)),
		Baseline: "-", Ratio: "-", Target: noTarget, Met: true,
	}}
}

// short is n as the table names a count: 10M, 200k, 1500.
func short(n int) string {
	switch {
	case n >= 1e6 && n%1e5 == 0:
		return strconv.FormatFloat(float64(n)/1e6, 'f', -1, 64) + "M"
	case n >= 1e3 && n%100 == 0:
		return strconv.FormatFloat(float64(n)/1e3, 'f', -1, 64) + "k"
	}
	return strconv.Itoa(n)
}
