package chaos

// The watcher: every 100ms, each group's committed offsets and the end
// offsets of its input topic, per partition, and the end offsets of the
// final topics. From them come the stalls (how long a partition with lag
// made no progress), when the groups caught up after the faults, and when
// each record of the final topics was written (the first sample whose end
// offset passed it), which the duplicates are attributed by.
//
// It asks through franz-go's client, not the pipeline's: an observer of
// its own, which follows leaders and coordinators as they move.

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// watched is one group and the topic it reads.
type watched struct {
	role, group, topic string
}

type tp struct {
	topic     string
	partition int32
}

// sample is a partition's state at one poll.
type sample struct {
	at  time.Time
	end int64
}

// stall is a time a partition had lag and its group committed nothing.
type stall struct {
	role      string
	partition int32
	from, to  time.Time
}

func (s stall) length() time.Duration { return s.to.Sub(s.from) }

// progress is what the watcher follows of one group's partition.
type progress struct {
	committed int64
	lagging   bool
	since     time.Time // of the last progress, or of the lag appearing
	seen      bool
}

type watcher struct {
	cl         *kgo.Client
	groups     []watched
	final      []string // topics whose records are attributed
	partitions int32
	every      time.Duration

	mu       sync.Mutex
	ends     map[tp][]sample // of the final topics, only when the end moved
	follow   map[string]map[int32]*progress
	stalls   []stall
	lagZero  []time.Time                   // sample times at which every group had no lag
	last     map[string]map[int32][2]int64 // each group's last committed and end offsets
	lastPoll time.Time
	polls    int
}

func newWatcher(brokers []string, groups []watched, final []string, partitions int, every time.Duration) (*watcher, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.MetadataMinAge(100*time.Millisecond),
		kgo.MetadataMaxAge(time.Second), kgo.RetryTimeout(time.Second))
	if err != nil {
		return nil, err
	}
	w := &watcher{cl: cl, groups: groups, final: final, partitions: int32(partitions), every: every,
		ends: map[tp][]sample{}, follow: map[string]map[int32]*progress{}, last: map[string]map[int32][2]int64{}}
	for _, g := range groups {
		w.follow[g.role] = map[int32]*progress{}
	}
	return w, nil
}

// run polls until ctx ends.
func (w *watcher) run(ctx context.Context) {
	defer w.cl.Close()
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		w.poll(ctx)
		select {
		case <-ctx.Done():
			w.closeStalls()
			return
		case <-t.C:
		}
	}
}

func (w *watcher) poll(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	topics := slices.Clone(w.final)
	for _, g := range w.groups {
		if !slices.Contains(topics, g.topic) {
			topics = append(topics, g.topic)
		}
	}
	ends, ok := w.endOffsets(ctx, topics)
	if !ok {
		return
	}
	now := time.Now()
	committed := map[string]map[int32]int64{}
	for _, g := range w.groups {
		c, ok := w.committed(ctx, g)
		if !ok {
			return // a sample of every group at once, or none
		}
		committed[g.role] = c
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.polls++
	w.lastPoll = now
	for _, topic := range w.final {
		for p := range w.partitions {
			k := tp{topic, p}
			s := w.ends[k]
			if e := ends[k]; len(s) == 0 || s[len(s)-1].end != e {
				w.ends[k] = append(s, sample{at: now, end: e})
			}
		}
	}
	allZero := true
	for _, g := range w.groups {
		for p := range w.partitions {
			c := max(committed[g.role][p], 0)
			lag := lagOf(c, ends[tp{g.topic, p}])
			allZero = allZero && lag == 0
			w.track(g.role, p, c, lag, now)
			if w.last[g.role] == nil {
				w.last[g.role] = map[int32][2]int64{}
			}
			w.last[g.role][p] = [2]int64{c, ends[tp{g.topic, p}]}
		}
	}
	if allZero {
		w.lagZero = append(w.lagZero, now)
	}
}

// lagOf is how far a group is from the end of a partition. A group whose
// committed offset is above the end of a log cut back below it (an unclean
// election) has not caught up either while the log holds records: it has
// yet to read them, or will skip them.
func lagOf(committed, end int64) int64 {
	if committed > end {
		if end > 0 {
			return committed - end
		}
		return 0 // nothing to read
	}
	return end - committed
}

// track updates a partition's progress with one sample.
func (w *watcher) track(role string, p int32, committed, lag int64, now time.Time) {
	pr := w.follow[role][p]
	if pr == nil {
		w.follow[role][p] = &progress{committed: committed, lagging: lag > 0, since: now, seen: true}
		return
	}
	switch {
	case committed != pr.committed:
		if pr.lagging {
			w.stalls = append(w.stalls, stall{role, p, pr.since, now})
		}
		pr.committed, pr.since, pr.lagging = committed, now, lag > 0
	case !pr.lagging && lag > 0:
		pr.lagging, pr.since = true, now
	case pr.lagging && lag == 0: // the log was cut below the commit
		w.stalls = append(w.stalls, stall{role, p, pr.since, now})
		pr.lagging = false
	}
}

// closeStalls ends the stalls still open at the last poll.
func (w *watcher) closeStalls() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for role, ps := range w.follow {
		for p, pr := range ps {
			if pr.lagging && w.lastPoll.After(pr.since) {
				w.stalls = append(w.stalls, stall{role, p, pr.since, w.lastPoll})
				pr.lagging = false
			}
		}
	}
}

func (w *watcher) endOffsets(ctx context.Context, topics []string) (map[tp]int64, bool) {
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = -1
	for _, t := range topics {
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = t
		for p := range w.partitions {
			rp := kmsg.NewListOffsetsRequestTopicPartition()
			rp.Partition, rp.Timestamp, rp.CurrentLeaderEpoch = p, -1, -1
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, w.cl)
	if err != nil {
		return nil, false
	}
	out := map[tp]int64{}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode != 0 {
				w.cl.ForceMetadataRefresh()
				return nil, false
			}
			out[tp{t.Topic, p.Partition}] = p.Offset
		}
	}
	return out, len(out) == len(topics)*int(w.partitions)
}

func (w *watcher) committed(ctx context.Context, g watched) (map[int32]int64, bool) {
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = g.group
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic = g.topic
	for p := range w.partitions {
		rt.Partitions = append(rt.Partitions, p)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, w.cl)
	if err != nil || resp.ErrorCode != 0 {
		return nil, false
	}
	out := map[int32]int64{}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode != 0 {
				return nil, false
			}
			out[p.Partition] = p.Offset
		}
	}
	return out, true
}

// writtenAt is when the record at offset of a final topic's partition was
// written, to the watcher's resolution: the first sample whose end passed
// it. ok is false for a record written before the first sample.
func (w *watcher) writtenAt(topic string, partition int32, offset int64) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.ends[tp{topic, partition}]
	i := sort.Search(len(s), func(i int) bool { return s[i].end > offset })
	if i == len(s) || i == 0 {
		return time.Time{}, false
	}
	return s[i].at, true
}

// working reports whether every group has committed something.
func (w *watcher) working() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, g := range w.groups {
		ps := w.follow[g.role]
		if len(ps) == 0 {
			return false
		}
		any := false
		for _, pr := range ps {
			any = any || pr.committed > 0
		}
		if !any {
			return false
		}
	}
	return true
}

// caughtUpAfter is the first sample at or after t at which no group had
// lag, and whether there was one.
func (w *watcher) caughtUpAfter(t time.Time) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	i := sort.Search(len(w.lagZero), func(i int) bool { return !w.lagZero[i].Before(t) })
	if i == len(w.lagZero) {
		return time.Time{}, false
	}
	return w.lagZero[i], true
}

// behind names the partitions that lagged at the last sample.
func (w *watcher) behind() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, g := range w.groups {
		for p := range w.partitions {
			o, ok := w.last[g.role][p]
			if ok && lagOf(o[0], o[1]) > 0 {
				out = append(out, fmt.Sprintf("%s/%d committed %d, end %d", g.role, p, o[0], o[1]))
			}
		}
	}
	if len(out) == 0 {
		return "no sample lately"
	}
	return strings.Join(out, "; ")
}

func (w *watcher) allStalls() []stall {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.stalls)
}
