package broker

// The faults a real multi-broker cluster shows its clients, injected at the
// protocol level through kfake's fault and control hooks: leaders and
// coordinators that move, produce requests refused for sure (nothing
// written), written but reported failed, or answered only after their
// timeout, fetches throttled as for a client over its quota, and a log
// truncated below what a group has committed, as an unclean election
// leaves it. Each method returns once the fault is over and says what it
// hit, so a harness can tell a fault that found nothing to hit from one
// that did.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/orderflow/orders/services/wait"
)

// FaultKind names a fault the broker can inject.
type FaultKind string

const (
	// FaultElection moves the leadership of every partition to another
	// node, as a controller does when it elects new leaders.
	FaultElection FaultKind = "election"
	// FaultCoordinatorMove moves group coordinators to other nodes: their
	// members are answered NOT_COORDINATOR until they find the new one.
	FaultCoordinatorMove FaultKind = "coordinator-move"
	// FaultNotEnoughReplicas makes one node refuse produce requests with
	// NOT_ENOUGH_REPLICAS, writing nothing, for Fault.For.
	FaultNotEnoughReplicas FaultKind = "not-enough-replicas"
	// FaultAfterAppend answers one produce request of one node with
	// NOT_ENOUGH_REPLICAS_AFTER_APPEND: its records are written, and the
	// client is told they may not be.
	FaultAfterAppend FaultKind = "after-append"
	// FaultProduceTimeout holds one produce request of one node for the
	// request's own timeout and then answers REQUEST_TIMED_OUT with its
	// records written, as a leader does whose followers do not catch up in
	// time.
	FaultProduceTimeout FaultKind = "produce-timeout"
	// FaultFetchThrottle makes one node answer every fetch with no data
	// and a throttle time, for Fault.For, as Kafka answers a client over
	// its quota.
	FaultFetchThrottle FaultKind = "fetch-throttle"
	// FaultTruncation truncates every partition of Fault.Topic below the
	// offsets Fault.Group has committed, as an unclean election does.
	FaultTruncation FaultKind = "truncation"
)

// FaultKinds is every kind, in a fixed order.
var FaultKinds = []FaultKind{
	FaultElection, FaultCoordinatorMove, FaultNotEnoughReplicas, FaultAfterAppend,
	FaultProduceTimeout, FaultFetchThrottle, FaultTruncation,
}

// Fault says what to inject.
type Fault struct {
	Kind FaultKind `json:"kind"`
	// Node that refuses, fails, delays or throttles: the node-scoped kinds
	// (not-enough-replicas, after-append, produce-timeout, fetch-throttle).
	// Optional, default node 0.
	Node int32 `json:"node"`
	// For is how long not-enough-replicas and fetch-throttle last.
	// Optional, default 1s.
	For time.Duration `json:"for"`
	// Throttle is the throttle time fetch-throttle answers with.
	// Optional, default 300ms.
	Throttle time.Duration `json:"throttle"`
	// Topics limits the produce faults to requests whose every topic is
	// one of them, for example to leave a producer outside the system
	// under test alone. Optional: every produce request.
	Topics []string `json:"topics,omitempty"`
	// Topic and Group of a truncation: the topic whose partitions are
	// truncated, and the group whose committed offsets they fall below.
	// Required for truncation.
	Topic string `json:"topic,omitempty"`
	Group string `json:"group,omitempty"`
	// Wait bounds how long after-append and produce-timeout wait for a
	// request to hit, and how long a truncation waits for Group to commit
	// everything Topic holds (it truncates nothing it has not). Optional,
	// default 5s.
	Wait time.Duration `json:"wait"`
}

func (f *Fault) setDefaults() {
	if f.For <= 0 {
		f.For = time.Second
	}
	if f.Throttle <= 0 {
		f.Throttle = 300 * time.Millisecond
	}
	if f.Wait <= 0 {
		f.Wait = 5 * time.Second
	}
}

// FaultResult is what one fault did.
type FaultResult struct {
	Kind FaultKind `json:"kind"`
	Node int32     `json:"node"`
	// Start and End are the time the fault was in force.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Hits is how much the fault hit: the requests it answered; for an
	// election the partitions that moved, for a coordinator move the
	// groups that moved, for a truncation the partitions truncated below
	// a committed offset. 0 means it found nothing to hit.
	Hits int `json:"hits"`
	// Partitions is, for after-append and produce-timeout, how many
	// partitions the request it hit carried: the partitions whose outcome
	// the client could not know.
	Partitions int `json:"partitions,omitempty"`
	// Detail says what happened in words.
	Detail string `json:"detail,omitempty"`
}

// Inject runs the fault f and returns once it is over.
func (b *Broker) Inject(ctx context.Context, f Fault) (FaultResult, error) {
	f.setDefaults()
	if f.Node < 0 || int(f.Node) >= b.Nodes() {
		return FaultResult{}, fmt.Errorf("fault %s: node %d: the cluster has nodes 0 to %d", f.Kind, f.Node, b.Nodes()-1)
	}
	ctx, cancel := mergeDone(ctx, b.ctx)
	defer cancel()
	switch f.Kind {
	case FaultElection:
		return b.ElectLeaders(ctx)
	case FaultCoordinatorMove:
		return b.MoveCoordinators(ctx)
	case FaultNotEnoughReplicas:
		return b.RefuseProduce(ctx, f.Node, f.For, f.Topics), nil
	case FaultAfterAppend:
		return b.FailAfterAppend(ctx, f.Node, f.Wait, f.Topics), nil
	case FaultProduceTimeout:
		return b.TimeOutProduce(ctx, f.Node, f.Wait, f.Topics), nil
	case FaultFetchThrottle:
		return b.ThrottleFetches(ctx, f.Node, f.For, f.Throttle), nil
	case FaultTruncation:
		return b.Truncate(ctx, f.Topic, f.Group, f.Wait)
	}
	return FaultResult{}, fmt.Errorf("fault %q: want one of %v", f.Kind, FaultKinds)
}

// ElectLeaders gives every partition a new leader on another node (the
// same node when there is only one, with a new leader epoch).
func (b *Broker) ElectLeaders(ctx context.Context) (FaultResult, error) {
	res := FaultResult{Kind: FaultElection, Start: time.Now()}
	parts, err := b.partitions(ctx)
	if err != nil {
		return res, fmt.Errorf("election: %w", err)
	}
	n := int32(b.Nodes())
	for _, p := range parts {
		leader := b.cluster.LeaderFor(p.Topic, int32(p.ID))
		if leader < 0 {
			continue // deleted since
		}
		next := leader
		if n > 1 {
			next = (leader + 1 + rand.Int32N(n-1)) % n
		}
		if b.cluster.MoveTopicPartition(p.Topic, int32(p.ID), next) == nil {
			res.Hits++
		}
	}
	res.End = time.Now()
	res.Detail = fmt.Sprintf("%d partitions have a new leader", res.Hits)
	return res, nil
}

// partitions lists every partition of every topic, asking a node itself:
// kafka-go's Client answers metadata from a cache of up to 6s.
func (b *Broker) partitions(ctx context.Context) ([]kafka.Partition, error) {
	conn, err := b.dialer.DialContext(ctx, "tcp", b.addrs[0])
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", b.addrs[0], err)
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	parts, err := conn.ReadPartitions()
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	return parts, nil
}

// MoveCoordinators moves group coordinators, rehashing until at least one
// group's coordinator is on another node (at most 8 times).
func (b *Broker) MoveCoordinators(ctx context.Context) (FaultResult, error) {
	res := FaultResult{Kind: FaultCoordinatorMove, Start: time.Now()}
	list, err := b.client.ListGroups(ctx, &kafka.ListGroupsRequest{})
	if err != nil {
		return res, fmt.Errorf("coordinator move: list groups: %w", err)
	}
	before := map[string]int32{}
	for _, g := range list.Groups {
		before[g.GroupID] = b.cluster.CoordinatorFor(g.GroupID)
	}
	for range 8 {
		b.cluster.RehashCoordinators()
		res.Hits = 0
		for g, node := range before {
			if b.cluster.CoordinatorFor(g) != node {
				res.Hits++
			}
		}
		if res.Hits > 0 || b.Nodes() == 1 || len(before) == 0 {
			break
		}
	}
	res.End = time.Now()
	res.Detail = fmt.Sprintf("%d of %d groups have a new coordinator", res.Hits, len(before))
	return res, nil
}

// RefuseProduce makes node refuse produce requests with NOT_ENOUGH_REPLICAS
// for d, writing nothing of them. topics limits it as Fault.Topics does.
func (b *Broker) RefuseProduce(ctx context.Context, node int32, d time.Duration, topics []string) FaultResult {
	res := FaultResult{Kind: FaultNotEnoughReplicas, Node: node, Start: time.Now()}
	h := b.cluster.Fault(kfake.Fault{
		Keys: []kmsg.Key{kmsg.Produce}, Nodes: []int32{node},
		Err: kerr.NotEnoughReplicas, Count: -1, When: onlyTopics(topics),
	})
	wait.For(ctx, d)
	h.Remove()
	res.End, res.Hits = time.Now(), h.Hits()
	res.Detail = fmt.Sprintf("node %d refused %d produce requests", node, res.Hits)
	return res
}

// FailAfterAppend answers the next produce request node gets, within
// wait, with NOT_ENOUGH_REPLICAS_AFTER_APPEND, its records written.
func (b *Broker) FailAfterAppend(ctx context.Context, node int32, wait time.Duration, topics []string) FaultResult {
	res := FaultResult{Kind: FaultAfterAppend, Node: node, Start: time.Now()}
	only := onlyTopics(topics)
	var parts atomic.Int64
	h := b.cluster.Fault(kfake.Fault{
		Keys: []kmsg.Key{kmsg.Produce}, Nodes: []int32{node},
		Err: kerr.NotEnoughReplicasAfterAppend, Count: 1,
		// When runs on the cluster's goroutine, request by request, and
		// the fault ends with the first it hits: the last request it
		// accepted is the one hit.
		When: func(req kmsg.Request) bool {
			if !only(req) {
				return false
			}
			parts.Store(int64(produceParts(req)))
			return true
		},
	})
	wctx, cancel := context.WithTimeout(ctx, wait)
	_ = h.Wait(wctx, 1)
	cancel()
	h.Remove()
	res.End, res.Hits = time.Now(), h.Hits()
	if res.Hits > 0 {
		res.Partitions = int(parts.Load())
	}
	res.Detail = fmt.Sprintf("node %d: %d produce requests written and answered NOT_ENOUGH_REPLICAS_AFTER_APPEND", node, res.Hits)
	return res
}

// maxProduceHold bounds how long produce-timeout holds a request, whatever
// timeout the request asks for.
const maxProduceHold = 30 * time.Second

// TimeOutProduce holds the next produce request node gets within that time,
// for the timeout the request gives the broker, and then writes it and
// answers REQUEST_TIMED_OUT. Its records become readable only then, as
// those of a leader whose followers catch up just too late.
func (b *Broker) TimeOutProduce(ctx context.Context, node int32, within time.Duration, topics []string) FaultResult {
	res := FaultResult{Kind: FaultProduceTimeout, Node: node, Start: time.Now()}
	only := onlyTopics(topics)
	var (
		mu     sync.Mutex
		state  int // 0 waiting for a request, 1 holding one, 2 given up
		held   = make(chan struct{})
		answer *kfake.FaultHandle
		hold   time.Duration
		parts  int
	)
	b.cluster.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		mu.Lock()
		if state != 0 {
			mu.Unlock()
			b.cluster.DropControl()
			return nil, nil, false
		}
		pr, _ := req.(*kmsg.ProduceRequest)
		if pr == nil || pr.Acks == 0 || b.cluster.CurrentNode() != node || !only(req) {
			mu.Unlock()
			return nil, nil, false
		}
		state, hold, parts = 1, min(time.Duration(pr.TimeoutMillis)*time.Millisecond, maxProduceHold), produceParts(req)
		// A fault that answers after applying, for this request alone:
		// once the control lets it go, the broker writes it and answers
		// REQUEST_TIMED_OUT.
		answer = b.cluster.Fault(kfake.Fault{
			Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.RequestTimedOut, Count: 1,
			When: func(r kmsg.Request) bool { return r == req },
		})
		close(held)
		mu.Unlock()
		b.cluster.SleepControl(func() { wait.For(b.ctx, hold) })
		b.cluster.DropControl()
		return nil, nil, false
	})
	wctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	select {
	case <-held:
	case <-wctx.Done():
	}
	mu.Lock()
	if state == 0 {
		state = 2 // the control drops itself at the next request
	}
	h := answer
	mu.Unlock()
	if h != nil {
		actx, cancel := context.WithTimeout(ctx, hold+5*time.Second)
		_ = h.Wait(actx, 1)
		cancel()
		h.Remove()
		res.Hits, res.Partitions = h.Hits(), parts
	}
	res.End = time.Now()
	res.Detail = fmt.Sprintf("node %d: %d produce requests held %v, written and answered REQUEST_TIMED_OUT", node, res.Hits, hold)
	return res
}

// ThrottleFetches makes node answer every fetch for d with no data and a
// throttle time of throttle, as Kafka answers a client over its quota
// (KIP-219): at once, and then the client's next fetch waits out the
// throttle time, as on Kafka's muted connection, before it is answered the
// same way. kfake's controls do not say which connection a request came
// on, so a fetcher is told apart by the partitions it asks for.
func (b *Broker) ThrottleFetches(ctx context.Context, node int32, d, throttle time.Duration) FaultResult {
	res := FaultResult{Kind: FaultFetchThrottle, Node: node, Start: time.Now()}
	var (
		mu   sync.Mutex
		last = map[string]time.Time{} // when each fetcher was last answered
		hits int
	)
	done := make(chan struct{})
	over := func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
	b.cluster.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if over() {
			b.cluster.DropControl()
			return nil, nil, false
		}
		fr, _ := req.(*kmsg.FetchRequest)
		if fr == nil || b.cluster.CurrentNode() != node {
			return nil, nil, false
		}
		key := fetcherKey(fr)
		mu.Lock()
		wait := time.Until(last[key].Add(throttle))
		mu.Unlock()
		if wait > 0 {
			b.cluster.SleepControl(func() {
				t := time.NewTimer(wait)
				defer t.Stop()
				select {
				case <-t.C:
				case <-done:
				case <-b.ctx.Done():
				}
			})
		}
		if over() {
			return nil, nil, false // the quota is back: answer it as usual
		}
		resp := fr.ResponseKind().(*kmsg.FetchResponse)
		resp.ThrottleMillis = int32(throttle / time.Millisecond)
		resp.SessionID = fr.SessionID
		mu.Lock()
		last[key] = time.Now()
		hits++
		mu.Unlock()
		b.cluster.KeepControl()
		return resp, nil, true
	})
	wait.For(ctx, d)
	close(done)
	mu.Lock()
	res.Hits = hits
	mu.Unlock()
	res.End = time.Now()
	res.Detail = fmt.Sprintf("node %d answered %d fetches empty, throttled %v", node, res.Hits, throttle)
	return res
}

// Truncate truncates every partition of topic below the offsets group has
// committed, as an unclean election leaves a partition whose new leader
// lacks the old one's last records: the group's committed offsets stay,
// above the partitions' new end. kfake cannot cut a log's tail, so the
// topic is deleted and created again, with its partition count and
// configs, empty, and the group's offsets are committed again. To lose
// nothing the group has not read, the topic's producers are refused
// (NOT_LEADER_OR_FOLLOWER, as while a partition has no leader) until the
// group has committed all the topic holds; if it has not within that time,
// nothing is truncated (Hits 0). The broker answers no request while the
// topic is swapped, so no client sees it missing.
func (b *Broker) Truncate(ctx context.Context, topic, group string, within time.Duration) (FaultResult, error) {
	res := FaultResult{Kind: FaultTruncation, Start: time.Now()}
	if topic == "" || group == "" {
		return res, errors.New("truncation: the topic and the group are required")
	}
	info := b.cluster.TopicInfo(topic)
	if info == nil {
		return res, fmt.Errorf("truncation: topic %s does not exist", topic)
	}
	refuse := b.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Err: kerr.NotLeaderForPartition, Count: -1})
	defer refuse.Remove()
	var (
		parts     []*kfake.PartitionInfo
		committed map[int32]int64
		metadata  map[int32]string
	)
	deadline := time.Now().Add(within)
	for {
		parts = b.cluster.PartitionInfos(topic)
		committed, metadata = map[int32]int64{}, map[int32]string{}
		caughtUp := true
		g := b.cluster.GroupInfo(group)
		for _, p := range parts {
			var c int64
			if g != nil {
				c = g.Commits[topic][p.Partition].Offset
				metadata[p.Partition] = g.Commits[topic][p.Partition].Metadata
			}
			committed[p.Partition] = c
			caughtUp = caughtUp && c >= p.HighWatermark
		}
		if caughtUp {
			break
		}
		if time.Now().After(deadline) || !wait.For(ctx, 10*time.Millisecond) {
			res.End = time.Now()
			res.Detail = fmt.Sprintf("group %s did not commit all of %s within %v: nothing truncated", group, topic, within)
			return res, nil
		}
	}
	configs := map[string]string{}
	for k, v := range info.Configs {
		if v != nil {
			configs[k] = *v
		}
	}
	release := b.freeze()
	err := b.cluster.DeleteTopic(topic)
	if err == nil {
		err = b.cluster.CreateTopic(topic, int32(len(parts)), configs)
	}
	release()
	if err != nil {
		return res, fmt.Errorf("truncation of %s: %w", topic, err)
	}
	for _, c := range committed {
		if c > 0 {
			res.Hits++
		}
	}
	restored := b.recommit(ctx, group, topic, committed, metadata)
	res.End = time.Now()
	res.Detail = fmt.Sprintf("%s truncated to 0 below group %s's offsets %v (committed again: %v)", topic, group, offsetsText(committed), restored)
	return res, nil
}

// freeze makes the broker hold every request until release is called, so
// that what is done between sees no request.
func (b *Broker) freeze() (release func()) {
	released := make(chan struct{})
	var once sync.Once
	b.cluster.Control(func(kmsg.Request) (kmsg.Response, error, bool) {
		select {
		case <-released:
			b.cluster.DropControl()
			return nil, nil, false
		default:
		}
		b.cluster.SleepControl(func() {
			select {
			case <-released:
			case <-b.ctx.Done():
			}
		})
		return nil, nil, false
	})
	return func() { once.Do(func() { close(released) }) }
}

// recommit commits offsets for group on topic again, with the metadata
// they had, as an unclean election leaves a group's commits: as one of its
// members when it has any (the broker takes commits of a group with
// members only from them), retrying for a second while the group
// rebalances.
func (b *Broker) recommit(ctx context.Context, group, topic string, offsets map[int32]int64, metadata map[int32]string) bool {
	req := &kafka.OffsetCommitRequest{GroupID: group, GenerationID: -1, Topics: map[string][]kafka.OffsetCommit{}}
	for p, o := range offsets {
		if o > 0 {
			req.Topics[topic] = append(req.Topics[topic], kafka.OffsetCommit{Partition: int(p), Offset: o, Metadata: metadata[p]})
		}
	}
	if len(req.Topics) == 0 {
		return true
	}
	deadline := time.Now().Add(time.Second)
	for {
		req.GenerationID, req.MemberID = -1, ""
		if g := b.cluster.GroupInfo(group); g != nil && len(g.Members) > 0 {
			req.GenerationID, req.MemberID = int(g.Epoch), g.Members[0].MemberID
		}
		res, err := b.client.OffsetCommit(ctx, req)
		if err == nil && !slices.ContainsFunc(res.Topics[topic], func(p kafka.OffsetCommitPartition) bool { return p.Error != nil }) {
			return true
		}
		if time.Now().After(deadline) || !wait.For(ctx, 20*time.Millisecond) {
			return false
		}
	}
}

// onlyTopics is a fault's When that takes produce requests whose every
// topic is one of topics, and every request when topics is empty.
func onlyTopics(topics []string) func(kmsg.Request) bool {
	if len(topics) == 0 {
		return func(kmsg.Request) bool { return true }
	}
	return func(req kmsg.Request) bool {
		pr, ok := req.(*kmsg.ProduceRequest)
		if !ok {
			return false
		}
		for _, t := range pr.Topics {
			if !slices.Contains(topics, t.Topic) {
				return false
			}
		}
		return true
	}
}

func produceParts(req kmsg.Request) int {
	n := 0
	if pr, ok := req.(*kmsg.ProduceRequest); ok {
		for _, t := range pr.Topics {
			n += len(t.Partitions)
		}
	}
	return n
}

// fetcherKey names the partitions a fetch asks for, which tells one
// fetcher from another.
func fetcherKey(fr *kmsg.FetchRequest) string {
	var parts []string
	for _, t := range fr.Topics {
		for _, p := range t.Partitions {
			parts = append(parts, t.Topic+"/"+strconv.Itoa(int(p.Partition)))
		}
	}
	sort.Strings(parts)
	return strconv.Itoa(int(fr.ReplicaID)) + " " + strings.Join(parts, ",")
}

func offsetsText(offsets map[int32]int64) string {
	var ps []int32
	for p := range offsets {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d:%d", p, offsets[p])
	}
	return b.String()
}

// mergeDone is ctx, also ended when other ends.
func mergeDone(ctx, other context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(other, cancel)
	return ctx, func() { stop(); cancel() }
}
