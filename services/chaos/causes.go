package chaos

// What explains each duplicate and each stall. Every fault is an event
// with the time it was in force. A duplicate is an order's later copy in
// orders_processed or the DLQ; what made it happened between the time the
// first copy was written, less the retry delays it may have waited in
// between, and the time the later copy was written. The events in force in
// that span are its candidates, and it is charged, charitably, to one
// whose outcome a client cannot know (a timeout, an error after the
// append, a process dying) if there is one, else to a definite refusal,
// which may duplicate nothing, else to none. Each kind of unknowable event
// may explain one batch (MaxBatch records) per partition it left in doubt.

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/broker"
	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/topology"
)

// Causes that are not protocol faults.
const (
	CauseDeath = "process death" // a SIGKILL, a SIGSTOP past the session timeout, a scaling step, the broker's SIGKILL
	CauseNone  = "none"          // no fault explains it
)

// unknowable reports whether a client can be left not knowing whether
// what it sent was written: only then may a retry write it twice.
func unknowable(cause string) bool {
	switch cause {
	case CauseDeath, string(broker.FaultAfterAppend), string(broker.FaultProduceTimeout):
		return true
	}
	return false
}

// event is one fault: its cause, when it was in force, and how many
// duplicates it may explain.
type event struct {
	cause      string
	start, end time.Time
	bound      int
	// settle is how long after end the fault still holds partitions up
	// by design (a dead member's session timeout): no other fault's
	// resume is measured in it.
	settle time.Duration
}

func (e event) overlaps(from, to time.Time) bool {
	return !e.start.After(to) && !e.end.Add(e.settle).Before(from)
}

// distance is how far t is from the time e was in force.
func (e event) distance(t time.Time) time.Duration {
	switch {
	case t.Before(e.start):
		return e.start.Sub(t)
	case t.After(e.end):
		return t.Sub(e.end)
	}
	return 0
}

func faultEvents(results []broker.FaultResult, maxBatch int) []event {
	var out []event
	for _, r := range results {
		e := event{cause: string(r.Kind), start: r.Start, end: r.End}
		if unknowable(e.cause) && r.Hits > 0 {
			e.bound = maxBatch * max(r.Partitions, 1)
		}
		out = append(out, e)
	}
	return out
}

// record is one copy of an order in a final topic.
type record struct {
	topic     string
	partition int32
	offset    int64
	at        time.Time // when it was written
	by        string    // the stage that wrote it
}

// readCopies reads every record of the final topics, keyed by order.
func readCopies(ctx context.Context, client kafka.Client, top topology.Topology, w *watcher) (map[string][]record, error) {
	copies := map[string][]record{}
	err := kafka.ReadNew(ctx, client, []string{top.Processed, top.DLQ}, map[string]map[int]int64{}, func(m envelope.Record) error {
		r := record{topic: m.Topic, partition: int32(m.Partition), offset: m.Offset, at: m.Time}
		if at, ok := w.writtenAt(m.Topic, r.partition, m.Offset); ok {
			r.at = at
		}
		key := string(m.Key)
		switch m.Topic {
		case top.Processed:
			o, err := schemas.Decode(m.Value)
			if err != nil {
				return fmt.Errorf("%s/%d@%d: %w", m.Topic, m.Partition, m.Offset, err)
			}
			key = o.OrderID
			for _, h := range m.Headers {
				if h.Key == envelope.HeaderProcessedBy {
					r.by = string(h.Value)
				}
			}
		case top.DLQ:
			r.by = topology.RetryStageName(top.Stages())
		}
		copies[key] = append(copies[key], r)
		return nil
	})
	return copies, err
}

// attribution is the duplicates charged to each cause.
type attribution struct {
	byCause   map[string]int
	ambiguous int // duplicates with candidates of both sorts, charged to an unknowable one
}

// attribute charges every later copy of an order to a cause. slack covers
// the watcher's resolution and a batch's time in hand.
func attribute(copies map[string][]record, events []event, top topology.Topology, slack time.Duration) attribution {
	a := attribution{byCause: map[string]int{}}
	for _, rs := range copies {
		if len(rs) < 2 {
			continue
		}
		slices.SortFunc(rs, func(x, y record) int {
			return cmp.Or(cmp.Compare(x.topic, y.topic), x.at.Compare(y.at), cmp.Compare(x.offset, y.offset))
		})
		for i := 1; i < len(rs); i++ {
			if rs[i].topic != rs[i-1].topic {
				continue // the first copy in its topic
			}
			first := rs[slices.IndexFunc(rs, func(r record) bool { return r.topic == rs[i].topic })]
			later := rs[i]
			from := first.at.Add(-ladder(top, later.by) - slack)
			to := later.at.Add(slack)
			var best *event
			definite := false
			for k := range events {
				e := &events[k]
				if !e.overlaps(from, to) {
					continue
				}
				definite = definite || !unknowable(e.cause)
				switch {
				case best == nil,
					unknowable(e.cause) && !unknowable(best.cause),
					unknowable(e.cause) == unknowable(best.cause) && e.distance(first.at) < best.distance(first.at):
					best = e
				}
			}
			cause := CauseNone
			if best != nil {
				cause = best.cause
				if unknowable(cause) && definite {
					a.ambiguous++
				}
			}
			a.byCause[cause]++
		}
	}
	return a
}

// ladder is the longest an order may have waited in retry topics before
// stage by wrote it: the delays of the stages before it, and a second for
// each stage to take it up.
func ladder(top topology.Topology, by string) time.Duration {
	k, err := strconv.Atoi(strings.TrimPrefix(by, "retry-"))
	if err != nil {
		return 0
	}
	var d time.Duration
	for i := 1; i <= k && i <= top.Stages(); i++ {
		d += top.Delay(i) + time.Second
	}
	return d
}

// StallStat is what the watcher saw of one kind of fault.
type StallStat struct {
	Cause string
	// Events of the kind, and how much they hit (see broker.FaultResult).
	Events, Hits int
	// Longest is the longest time a partition with lag made no progress
	// that a fault of the kind was the first to be in force in; Where
	// names the group and partition.
	Longest time.Duration
	Where   string
	// Resume is the longest a partition with lag took to make progress
	// after a fault of the kind ended, among the faults no other fault
	// overlapped until then (Clean of them).
	Resume      time.Duration
	ResumeWhere string
	Clean       int
}

// stallStats measures the stalls against the events, kind by kind; the
// stalls no event overlaps are the kind "none".
func stallStats(stalls []stall, events []event, results []broker.FaultResult) map[string]*StallStat {
	stats := map[string]*StallStat{}
	stat := func(cause string) *StallStat {
		s := stats[cause]
		if s == nil {
			s = &StallStat{Cause: cause}
			stats[cause] = s
		}
		return s
	}
	for _, e := range events {
		stat(e.cause).Events++
	}
	for _, r := range results {
		stat(string(r.Kind)).Hits += r.Hits
	}
	where := func(s stall) string { return fmt.Sprintf("%s/%d", s.role, s.partition) }
	// A stall is charged to the first fault in force during it: one that
	// began later, while the partition was already waiting, did not
	// start it.
	for _, s := range stalls {
		cause := CauseNone
		var first time.Time
		for _, e := range events {
			if e.overlaps(s.from, s.to) && (cause == CauseNone || e.start.Before(first)) {
				cause, first = e.cause, e.start
			}
		}
		if st := stat(cause); s.length() > st.Longest {
			st.Longest, st.Where = s.length(), where(s)
		}
	}
	for i, e := range events {
		var resume time.Duration
		var at string
		clean := true
		for _, s := range stalls {
			if s.from.After(e.end) || !s.to.After(e.end) || s.role == topology.StageAggregator {
				// Not waiting when the fault ended; or the aggregator,
				// which by design commits at most once a second while
				// records keep coming.
				continue
			}
			for j, o := range events {
				if j != i && o.overlaps(e.end, s.to) {
					clean = false
				}
			}
			if r := s.to.Sub(e.end); r > resume {
				resume, at = r, where(s)
			}
		}
		if !clean {
			continue
		}
		st := stat(e.cause)
		st.Clean++
		if resume > st.Resume {
			st.Resume, st.ResumeWhere = resume, at
		}
	}
	return stats
}
