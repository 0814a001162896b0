package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol/offsetcommit"
	"go.uber.org/zap"

	"github.com/orderflow/orders/services/envelope"
)

// Stage is what a loop runs: it opens a handler for each partition the
// process is assigned.
type Stage interface {
	// Open prepares the handling of one assigned partition and returns the
	// offset to read from, usually a.Committed.
	Open(ctx context.Context, a Assignment) (Partition, int64, error)
}

// Assignment is one partition given to this process by its consumer group.
type Assignment struct {
	Topic      string
	Partition  int
	Committed  int64 // kafka.FirstOffset when the group has not committed yet
	Generation int32
}

// Partition handles the records of one partition, in order.
type Partition interface {
	// Handle returns the records to produce for a batch of consecutive
	// records. The loop writes them, waits for their acknowledgement and
	// only then commits the batch; it is done with them when it calls
	// Handle again, so a partition may reuse their array. An error stops
	// the loop: business failures are outputs (a retry or DLQ record), not
	// errors.
	Handle(ctx context.Context, batch []envelope.Record) ([]envelope.Output, error)
}

// Delayer is implemented by partitions whose records may not be handled
// before a due time. The loop never hands Handle a record before its due
// time and waits without holding back other partitions.
type Delayer interface {
	DueAt(r envelope.Record) time.Time
}

// Acker is implemented by partitions that want to know when a batch's
// outputs are acknowledged and its offsets committed (for a Resumer, when
// its outputs are acknowledged).
type Acker interface {
	Acked(batch []envelope.Record)
}

// Resumer is implemented by partitions whose outputs to ResumeTopic record
// the offset the stage resumes from, the one Stage.Open returns, as the
// aggregator's state records do. The loop writes those outputs one at a
// time, in order, after the batch's other outputs are acknowledged, so that
// resuming from them never skips a record whose outputs were not written.
// The group's committed offset then only reports progress, so the loop
// commits it when the partition has caught up with what was fetched, and
// otherwise at most every ResumerCommitInterval, instead of after every
// batch.
type Resumer interface {
	ResumeTopic() string
}

// Refuser is implemented by partitions that give another outcome to an
// output the broker refuses for good: a record larger than the topic
// takes, or one it calls invalid. Retrying such a record would hold its
// partition for ever. Refused returns what to write instead of outs[i],
// where outs are what Handle returned for batch, or false if there is
// nothing else to write; the loop then holds the partition, retrying, and
// reports it (Observer.Holding). The processor stages dead-letter the
// order with reason output_refused.
type Refuser interface {
	Refused(batch []envelope.Record, outs []envelope.Output, i int, err error) (envelope.Output, bool)
}

// ResumerCommitInterval is how long a Resumer's progress may go uncommitted
// while records keep coming.
const ResumerCommitInterval = time.Second

// idleCommitInterval is how often a loop with no record to handle looks
// whether the fetcher has skipped transaction markers it may commit past.
const idleCommitInterval = time.Second

// Observer is told what a loop does, for metrics. Its methods must be
// cheap and safe for concurrent use; a nil Observer is allowed.
type Observer interface {
	// Joined reports that the loop has joined its group.
	Joined()
	// Handled reports a batch whose outputs were acknowledged and whose
	// offsets were committed (for a Resumer, handed to the next commit);
	// its handling began at fetchedAt.
	Handled(batch []envelope.Record, outs []envelope.Output, fetchedAt time.Time)
	// Late reports a delayed record handled late after its due time.
	Late(late time.Duration)
	// Waiting reports how many records of a partition wait for their due time.
	Waiting(partition int, n int)
	// Refused reports an output the broker refused for good, which the
	// partition gave another outcome (Refuser).
	Refused(err error)
	// Holding reports that a partition cannot go on until an operator acts
	// (an output refused for good that has no other outcome, a denied
	// write), with the reason; nil when it goes on again.
	Holding(partition int, err error)
}

type noObserver struct{}

func (noObserver) Joined()                                                 {}
func (noObserver) Handled([]envelope.Record, []envelope.Output, time.Time) {}
func (noObserver) Late(time.Duration)                                      {}
func (noObserver) Waiting(int, int)                                        {}
func (noObserver) Refused(error)                                           {}
func (noObserver) Holding(int, error)                                      {}

// Config is the consumer side of a stage.
type Config struct {
	Client Client
	// Group is the consumer group. Required.
	Group string
	// Topic is the input topic. Required.
	Topic string
	Options
	// Observer is told what the loop does. Optional.
	Observer Observer
}

// DefaultMaxBatch is the most records a stage handles, writes and commits
// together unless told otherwise (MAX_BATCH).
const DefaultMaxBatch = 500

// Options tune every loop of a process.
type Options struct {
	// MaxBatch is the most records handled, written and committed together.
	// Optional, default DefaultMaxBatch.
	MaxBatch int
	// SessionTimeout after which the group gives a silent member's
	// partitions to others. Optional, default 10s.
	SessionTimeout time.Duration
	// Writer tunes the output writer.
	Writer WriterConfig
	// StopGrace is how long a stopping loop may take to write and commit the
	// batch in hand, so a stop does not make the next owner repeat it.
	// Optional, default 5s.
	StopGrace time.Duration
	// Now is the clock for due times. Optional, default time.Now.
	Now func() time.Time
}

func (c *Options) setDefaults() {
	if c.MaxBatch <= 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = 10 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.StopGrace <= 0 {
		c.StopGrace = 5 * time.Second
	}
	if c.Writer.BatchSize <= 0 {
		c.Writer.BatchSize = c.MaxBatch
	}
	c.Writer.setDefaults()
}

func (c Config) validate() error {
	if err := c.Client.Validate(); err != nil {
		return err
	}
	if c.Group == "" || c.Topic == "" {
		return errors.New("pipeline: group and topic are required")
	}
	return nil
}

// Loop consumes one topic as one member of a consumer group.
type Loop struct {
	cfg     Config
	stage   Stage
	log     *zap.Logger
	writer  Writer
	fetcher *Fetcher
	admin   *Admin // commits, at the group's coordinator of now

	joinOnce sync.Once
}

// NewLoop checks cfg and returns a loop that runs stage.
func NewLoop(cfg Config, stage Stage, log *zap.Logger) (*Loop, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Observer == nil {
		cfg.Observer = noObserver{}
	}
	return &Loop{
		cfg:     cfg,
		stage:   stage,
		log:     log,
		writer:  cfg.Client.NewWriter(cfg.Writer, log),
		fetcher: cfg.Client.NewFetcher(),
		admin:   cfg.Client.Admin(),
	}, nil
}

// Run consumes until ctx is done. It returns nil on cancellation and an
// error only for a failure that restarting the loop would not fix. When ctx
// ends, the batch in hand is still written and committed, for at most
// Config.StopGrace.
func (l *Loop) Run(ctx context.Context) error {
	defer l.writer.Close()
	defer l.fetcher.Close()
	defer l.admin.Close()
	group, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                    l.cfg.Group,
		Brokers:               l.cfg.Client.Brokers,
		Dialer:                l.cfg.Client.Dialer(),
		Topics:                []string{l.cfg.Topic},
		HeartbeatInterval:     min(time.Second, l.cfg.SessionTimeout/3),
		SessionTimeout:        l.cfg.SessionTimeout,
		RebalanceTimeout:      l.cfg.SessionTimeout,
		JoinGroupBackoff:      time.Second,
		WatchPartitionChanges: true,
		StartOffset:           kafka.FirstOffset,
		Logger:                kafkaLogger(l.log, false),
		ErrorLogger:           kafkaLogger(l.log, true),
	})
	if err != nil {
		return fmt.Errorf("consumer group: %w", err)
	}
	defer group.Close()

	fatal := make(chan error, 1)
	for {
		gen, err := group.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			select {
			case err := <-fatal:
				return err
			default:
			}
			// Credentials or TLS settings that do not fit the broker stop
			// the stage; a broker that is down is waited for.
			if perr := l.cfg.Client.Ping(ctx); Misconfigured(perr) {
				return perr
			}
			if errors.Is(err, kafka.InvalidSessionTimeout) {
				return l.sessionTimeoutRefused(ctx, err)
			}
			if err = Denied(err, "READ", "group", l.cfg.Group); errors.Is(err, ErrDenied) {
				l.log.Error("joining consumer group; retrying", zap.String("group", l.cfg.Group), zap.Error(err))
				continue
			}
			l.log.Warn("joining consumer group; retrying", zap.String("group", l.cfg.Group), zap.Error(err))
			continue
		}
		l.joinOnce.Do(func() {
			l.cfg.Observer.Joined()
		})
		var parts []int
		for _, a := range gen.Assignments[l.cfg.Topic] {
			a := Assignment{Topic: l.cfg.Topic, Partition: a.ID, Committed: a.Offset, Generation: gen.ID}
			parts = append(parts, a.Partition)
			gen.Start(func(gctx context.Context) {
				pctx, cancel := context.WithCancel(ctx)
				defer cancel()
				defer context.AfterFunc(gctx, cancel)()
				wctx, wcancel := l.writeContext(ctx, pctx)
				defer wcancel()
				if err := l.runPartition(pctx, wctx, gen, a); err != nil {
					select {
					case fatal <- err:
					default:
					}
				}
			})
		}
		l.log.Info("assigned partitions", zap.String("group", l.cfg.Group), zap.String("topic", l.cfg.Topic),
			zap.Ints("partitions", parts), zap.Int32("generation", gen.ID))
		select {
		case err := <-fatal:
			return err
		default:
		}
	}
}

// writeContext is the context the writes and commits of one partition's
// batches use: it ends a grace period after part ends, so that the batch in
// hand is still written and committed when the process stops (StopGrace)
// or the generation ends. In the second case the grace is at most half the
// rebalance timeout: kafka-go joins the next generation only once every
// partition of this one has returned, and a member that joins late is
// dropped from the group, so a write the brokers keep refusing must not
// hold the member past it. The next owner of the partition then handles
// the batch again.
func (l *Loop) writeContext(process, part context.Context) (context.Context, context.CancelFunc) {
	wctx, cancel := context.WithCancel(context.WithoutCancel(part))
	stop := context.AfterFunc(part, func() {
		grace := min(l.cfg.StopGrace, l.cfg.SessionTimeout/2)
		if process.Err() != nil {
			grace = l.cfg.StopGrace
		}
		time.AfterFunc(grace, cancel)
	})
	return wctx, func() { stop(); cancel() }
}

// sessionTimeoutRefused is the error of a group whose broker refuses the
// session timeout: retrying would never help.
func (l *Loop) sessionTimeoutRefused(ctx context.Context, err error) error {
	bounds := "Kafka's defaults are group.min.session.timeout.ms=6000 and group.max.session.timeout.ms=1800000"
	if lo, hi, ok := l.sessionBounds(ctx); ok {
		bounds = fmt.Sprintf("the broker takes %v to %v", lo, hi)
	}
	return fmt.Errorf("SESSION_TIMEOUT %v: the broker refuses it for group %s (%s): %w", l.cfg.SessionTimeout, l.cfg.Group, bounds, err)
}

// sessionBounds asks a broker for the session timeouts it takes.
func (l *Loop) sessionBounds(ctx context.Context) (lo, hi time.Duration, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	meta, err := l.admin.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{}})
	if err != nil || len(meta.Brokers) == 0 {
		return 0, 0, false
	}
	res, err := l.admin.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
		ResourceType: kafka.ResourceTypeBroker, ResourceName: strconv.Itoa(meta.Brokers[0].ID),
		ConfigNames: []string{"group.min.session.timeout.ms", "group.max.session.timeout.ms"},
	}}})
	if err != nil || len(res.Resources) != 1 || res.Resources[0].Error != nil {
		return 0, 0, false
	}
	// A broker may list a setting once for each place it is set; the one
	// in force has the lowest source (dynamic before static before
	// default).
	source := map[string]int8{}
	for _, e := range res.Resources[0].ConfigEntries {
		ms, err := strconv.ParseInt(e.ConfigValue, 10, 64)
		if was, seen := source[e.ConfigName]; err != nil || seen && e.ConfigSource >= was {
			continue
		}
		source[e.ConfigName] = e.ConfigSource
		switch e.ConfigName {
		case "group.min.session.timeout.ms":
			lo = time.Duration(ms) * time.Millisecond
		case "group.max.session.timeout.ms":
			hi = time.Duration(ms) * time.Millisecond
		}
	}
	return lo, hi, lo > 0 && hi > 0
}

// runPartition is the loop of one partition for one generation. ctx ends
// when the process stops or the generation ends; wctx, which ends a grace
// period later (writeContext), bounds the write and commit of the batch in
// hand. It returns an error only for a fatal handler failure.
func (l *Loop) runPartition(ctx, wctx context.Context, gen *kafka.Generation, a Assignment) error {
	log := l.log.With(zap.String("topic", a.Topic), zap.Int("partition", a.Partition))
	var (
		p     Partition
		start int64
		err   error
	)
	for b := NewBackoff(); ; {
		p, start, err = l.stage.Open(ctx, a)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		log.Warn("opening partition; retrying", zap.Error(err))
		if !b.Wait(ctx) {
			return nil
		}
	}
	// mark is the last record handled, committed with each offset so that
	// the next owner can tell whether the partition still holds it.
	mark := Mark{Offset: start - 1}
	if start == a.Committed {
		mark = l.committedMark(ctx, a)
	}
	if start >= 0 && start > a.Committed {
		// The stage's own state is ahead of the group (it wrote its state
		// and died before committing): record that, or the group would
		// show lag that no record will ever clear.
		if err := l.commit(wctx, gen, a, start, Mark{Offset: -1}); err != nil {
			log.Warn("commit the offset the stage resumes from", zap.Int64("offset", start), zap.Error(err))
		}
	}

	// The fetcher keeps a bounded queue of this partition's records so that
	// handling can take everything already fetched as one batch.
	fctx, stopFetch := context.WithCancel(ctx)
	queue := make(chan kafka.Message, l.cfg.MaxBatch)
	var (
		fetcher  sync.WaitGroup
		position atomic.Int64 // where the fetcher has got to
	)
	position.Store(-1)
	fetcher.Go(func() { l.fetcher.FetchAfter(fctx, log, a.Topic, a.Partition, start, mark, queue, &position) })
	defer func() {
		stopFetch()
		fetcher.Wait()
	}()
	// With no record to handle for a while, the loop commits past what the
	// fetcher skipped, transaction markers, so that the group shows no lag
	// no record will ever clear.
	idle := time.NewTicker(idleCommitInterval)
	defer idle.Stop()
	done := start // every record before it is handled

	delayer, _ := p.(Delayer)
	acker, _ := p.(Acker)
	w := &outputWrite{log: log, partition: a.Partition}
	w.refuser, _ = p.(Refuser)
	if r, ok := p.(Resumer); ok {
		w.resume = r.ResumeTopic()
	}
	resumer := w.resume != ""
	// A Resumer's handled offset waits here for its commit; whatever is left
	// is committed on the way out, if the generation still allows it.
	uncommitted, committedAt := int64(-1), time.Now()
	defer func() {
		if uncommitted >= 0 {
			_ = l.commit(wctx, gen, a, uncommitted, mark)
		}
	}()
	// commit commits next, or reports that the partition is no longer this
	// loop's to commit.
	commit := func(next int64) bool {
		if err := l.commit(wctx, gen, a, next, mark); err != nil {
			// The generation is over or the coordinator is gone: whoever
			// owns the partition next reads these records again.
			if ctx.Err() == nil {
				log.Warn("commit offsets; leaving the partition to the next generation", zap.Error(err))
			}
			return false
		}
		uncommitted, committedAt = -1, time.Now()
		return true
	}
	obs := l.cfg.Observer
	if delayer != nil {
		defer obs.Waiting(a.Partition, 0)
	}
	// Each fetched record is converted once; a record read while draining
	// that is not due yet waits as the head of the next batch.
	var (
		head    envelope.Record
		hasHead bool
		batch   []envelope.Record
	)
	for {
		if ctx.Err() != nil {
			return nil
		}
		if !hasHead {
			select {
			case m, ok := <-queue:
				if !ok {
					return nil
				}
				head, hasHead = toRecord(m), true
			case <-ctx.Done():
				return nil
			case <-idle.C:
				// The position is read before the queue is seen empty:
				// records it counts are then all handled.
				// A fetcher that read a cut-back partition again from an
				// earlier offset moves the commit back with it.
				if at := position.Load(); at >= 0 && at != done && len(queue) == 0 {
					if !commit(at) {
						return nil
					}
					done = at
				}
				continue
			}
		}
		batch = batch[:0]
		now := l.cfg.Now()
		if delayer != nil {
			due := delayer.DueAt(head)
			if due.After(now) {
				obs.Waiting(a.Partition, 1+len(queue))
				if !SleepUntil(ctx, l.cfg.Now, due) {
					return nil
				}
				now = l.cfg.Now()
			}
			if !due.IsZero() {
				obs.Late(now.Sub(due))
			}
		}
		// Handling time starts when the batch may be handled, after any wait.
		fetchedAt := now
		batch = append(batch, head)
		hasHead = false
	drain:
		for len(batch) < l.cfg.MaxBatch {
			select {
			case m, ok := <-queue:
				if !ok {
					break drain
				}
				rec := toRecord(m)
				if delayer != nil {
					due := delayer.DueAt(rec)
					if due.After(now) {
						head, hasHead = rec, true
						break drain
					}
					if !due.IsZero() {
						obs.Late(now.Sub(due))
					}
				}
				batch = append(batch, rec)
			default:
				break drain
			}
		}
		outs, err := p.Handle(ctx, batch)
		if err != nil {
			return fmt.Errorf("handle %s/%d@%d: %w", a.Topic, a.Partition, batch[0].Offset, err)
		}
		w.reset(batch, outs)
		if !l.writeOutputs(wctx, w) {
			return nil
		}
		lastRec := &batch[len(batch)-1]
		next := lastRec.Offset + 1
		mark = Mark{Offset: lastRec.Offset, Time: lastRec.Time}
		caughtUp := len(queue) == 0 && !hasHead
		if !resumer || caughtUp || time.Since(committedAt) >= ResumerCommitInterval {
			if !commit(next) {
				return nil
			}
		} else {
			uncommitted = next
		}
		done = next
		if acker != nil {
			acker.Acked(batch)
		}
		obs.Handled(batch, outs, fetchedAt)
		if delayer != nil && !hasHead {
			obs.Waiting(a.Partition, 0)
		}
	}
}

// outputWrite is the write of one batch's outputs, with arrays a
// partition's batches share: the messages of one batch are done with once
// written.
type outputWrite struct {
	log       *zap.Logger
	partition int
	resume    string // the Resumer's topic, written last; "" if none
	refuser   Refuser

	batch    []envelope.Record
	outs     []envelope.Output
	msgs     []kafka.Message // msgs[i] is outs[i]
	replaced []bool          // outs[i] is a Refuser's outcome for a refused output
	idx      []int
	sub      []kafka.Message
}

func (w *outputWrite) reset(batch []envelope.Record, outs []envelope.Output) {
	clear(w.msgs)
	w.batch, w.outs = batch, outs
	w.msgs = appendMessages(w.msgs[:0], outs)
	w.replaced = slices.Grow(w.replaced[:0], len(outs))[:len(outs)]
	clear(w.replaced)
}

// writeOutputs writes the batch's outputs, those to the Resumer's topic
// (if any) last: one at a time, in order, once the others are
// acknowledged.
func (l *Loop) writeOutputs(ctx context.Context, w *outputWrite) bool {
	w.idx = w.idx[:0]
	var last []int
	for i := range w.msgs {
		if w.resume != "" && w.msgs[i].Topic == w.resume {
			last = append(last, i)
		} else {
			w.idx = append(w.idx, i)
		}
	}
	if !l.write(ctx, w, w.idx) {
		return false
	}
	for _, i := range last {
		if !l.write(ctx, w, []int{i}) {
			return false
		}
	}
	return true
}

// write produces the records w.msgs[i], i in idx (ascending), and returns
// once each is acknowledged, or false if ctx ends first. Only what failed
// is sent again: a record acknowledged once is never written twice by the
// loop, and the writer keeps each partition's records in order. A record
// the broker refuses for good (refusedForGood) is first sent again on its
// own, in case only the request was too large; refused alone, it gets the
// Refuser's outcome instead, or holds the partition, retried and
// reported, until an operator acts. So does a denied write.
func (l *Loop) write(ctx context.Context, w *outputWrite, idx []int) bool {
	if len(idx) == 0 {
		return true
	}
	obs := l.cfg.Observer
	alone, held := false, false
	defer func() {
		if held {
			obs.Holding(w.partition, nil)
		}
	}()
	// At most a second between tries, as the Java producer's
	// retry.backoff.max.ms: a partition whose leader is back is written to
	// within a second.
	for b := newBackoff(100*time.Millisecond, time.Second); ; {
		var failed []int
		var errs []error
		if alone {
			failed, errs = l.sendAlone(ctx, w, idx)
		} else {
			failed, errs = l.send(ctx, w, idx)
		}
		if len(failed) == 0 {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		idx = failed
		// Records refused together are each sent again alone first: only
		// the request may have been too large. A record refused alone has
		// its outcome replaced, and the replacement is sent at once.
		wasAlone, replaced := alone, false
		var hold error
		for k, i := range failed {
			err := errs[k]
			switch {
			case !refusedForGood(err):
			case !wasAlone:
				alone = true
			case w.refuser != nil && !w.replaced[i]:
				out, ok := w.refuser.Refused(w.batch, w.outs, i, err)
				if !ok {
					hold = err
					continue
				}
				w.log.Error("output refused for good; it is replaced by the stage's outcome for it",
					zap.String("topic", w.msgs[i].Topic), zap.String("key", string(w.msgs[i].Key)),
					zap.String("instead", out.Topic), zap.Error(err))
				obs.Refused(err)
				w.outs[i], w.replaced[i] = out, true
				w.msgs[i] = message(out)
				replaced = true
			default:
				hold = fmt.Errorf("output to %s refused for good, and there is no other outcome for it: %w", w.msgs[i].Topic, err)
			}
		}
		if hold == nil {
			if err := l.cfg.Client.ExplainWrite(ctx, kafka.WriteErrors(errs), w.pick(failed)); errors.Is(err, ErrDenied) {
				hold = err
			}
		}
		if hold != nil {
			w.log.Error("produce: the partition holds until this is fixed; retrying", zap.Int("records", len(idx)), zap.Error(hold))
			if !held {
				obs.Holding(w.partition, hold)
				held = true
			}
		} else {
			w.log.Warn("produce; retrying", zap.Int("records", len(idx)), zap.Error(errs[0]))
		}
		if replaced || alone && !wasAlone {
			continue
		}
		if !b.Wait(ctx) {
			return false
		}
	}
}

// pick returns the messages idx names, in a scratch array of w's.
func (w *outputWrite) pick(idx []int) []kafka.Message {
	if len(idx) == len(w.msgs) { // idx ascends: all of them
		return w.msgs
	}
	clear(w.sub)
	w.sub = w.sub[:0]
	for _, i := range idx {
		w.sub = append(w.sub, w.msgs[i])
	}
	return w.sub
}

// send writes the messages idx names in one call of the writer and returns
// those not written, with why.
func (l *Loop) send(ctx context.Context, w *outputWrite, idx []int) ([]int, []error) {
	msgs := w.pick(idx)
	err := l.writer.WriteMessages(ctx, msgs...)
	if err == nil {
		return nil, nil
	}
	var per kafka.WriteErrors
	if errors.As(err, &per) && len(per) == len(msgs) {
		var failed []int
		var errs []error
		for k, e := range per {
			if e != nil {
				failed, errs = append(failed, idx[k]), append(errs, e)
			}
		}
		return failed, errs
	}
	// Nothing was written: a topic could not be looked up, or ctx ended.
	errs := make([]error, len(idx))
	for k := range errs {
		errs[k] = err
	}
	return slices.Clone(idx), errs
}

// sendAlone writes the messages idx names one call each, in order, and
// stops at the first that fails: the rest are not sent, so that no record
// is written before one of its partition that precedes it.
func (l *Loop) sendAlone(ctx context.Context, w *outputWrite, idx []int) ([]int, []error) {
	for k, i := range idx {
		failed, errs := l.send(ctx, w, []int{i})
		if len(failed) == 0 {
			continue
		}
		rest := slices.Clone(idx[k:])
		for range rest[1:] {
			errs = append(errs, errNotSent)
		}
		return rest, errs
	}
	return nil, nil
}

// errNotSent is the error of a record not sent because one before it failed.
var errNotSent = errors.New("not sent: an earlier record of the batch failed")

// refusedForGood reports whether the broker will never take the record
// (or request) it refused with err, however often it is sent.
func refusedForGood(err error) bool {
	return errors.Is(err, kafka.MessageSizeTooLarge) || errors.Is(err, kafka.RecordListTooLarge) ||
		errors.Is(err, kafka.InvalidRecord)
}

// commit commits next for a, with mark as its metadata. It sends the
// commit to whichever broker coordinates the group now, and again while
// the coordinator has moved or cannot answer, until ctx ends: the
// generation may still be current there, and a commit that gets through
// keeps the next owner from handling the batch again. (kafka-go's
// Generation would send it to the coordinator the generation began with,
// and cannot carry metadata.)
func (l *Loop) commit(ctx context.Context, gen *kafka.Generation, a Assignment, next int64, mark Mark) error {
	req := &offsetcommit.Request{
		GroupID: gen.GroupID, GenerationID: gen.ID, MemberID: gen.MemberID,
		Topics: []offsetcommit.RequestTopic{{Name: a.Topic, Partitions: []offsetcommit.RequestPartition{{
			PartitionIndex: int32(a.Partition), CommittedOffset: next, CommitTimestamp: -1,
			// No leader epoch is known: 0, which kafka-go's OffsetCommit
			// sends, would make a consumer that checks epochs (the Java
			// client, franz-go, librdkafka) think the log was truncated.
			CommittedLeaderEpoch: -1, CommittedMetadata: mark.String(),
		}}}},
	}
	for b := NewBackoff(); ; {
		err := l.commitOnce(ctx, req)
		if err == nil || !coordinatorMayAnswer(err) || !b.Wait(ctx) {
			return err
		}
	}
}

func (l *Loop) commitOnce(ctx context.Context, req *offsetcommit.Request) error {
	ctx, cancel := context.WithTimeout(ctx, l.admin.Timeout)
	defer cancel()
	r, err := l.admin.transport.RoundTrip(ctx, l.admin.Addr, req)
	if err != nil {
		return err
	}
	for _, t := range r.(*offsetcommit.Response).Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode != 0 {
				return kafka.Error(p.ErrorCode)
			}
		}
	}
	return nil
}

// committedMark is the Mark committed with a's offset, if there is one for
// the record before it; else one that knows only that offset. kafka-go's
// Generation read the committed offsets but keeps no metadata, so it asks
// once more, once per assigned partition.
func (l *Loop) committedMark(ctx context.Context, a Assignment) Mark {
	none := Mark{Offset: a.Committed - 1}
	if a.Committed <= 0 {
		return none
	}
	res, err := l.admin.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: l.cfg.Group, Topics: map[string][]int{a.Topic: {a.Partition}}})
	if err != nil {
		return none
	}
	for _, p := range res.Topics[a.Topic] {
		if m, ok := ParseMark(p.Metadata); ok && p.Partition == a.Partition && p.CommittedOffset == a.Committed && m.Offset < a.Committed {
			return m
		}
	}
	return none
}

// coordinatorMayAnswer reports whether a failed commit may succeed at the
// group's coordinator: it moved, is loading, or the connection to it broke.
// A commit the coordinator refuses for the generation (ILLEGAL_GENERATION,
// UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS) will not.
func coordinatorMayAnswer(err error) bool {
	return mayPass(err) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}

// Messages converts outputs to kafka-go messages for a writer made by
// Client.NewWriter. Headers are shared, not copied (see kafkaHeaders).
func Messages(outs []envelope.Output) []kafka.Message {
	return appendMessages(make([]kafka.Message, 0, len(outs)), outs)
}

func appendMessages(msgs []kafka.Message, outs []envelope.Output) []kafka.Message {
	for _, o := range outs {
		msgs = append(msgs, message(o))
	}
	return msgs
}

func message(o envelope.Output) kafka.Message {
	return kafka.Message{Topic: o.Topic, Partition: o.Partition, Key: o.Key, Value: o.Value, Headers: kafkaHeaders(o.Headers)}
}

func toRecord(m kafka.Message) envelope.Record {
	return envelope.Record{
		Topic: m.Topic, Partition: m.Partition, Offset: m.Offset,
		Key: m.Key, Value: m.Value, Headers: envelopeHeaders(m.Headers), Time: m.Time,
	}
}

// kafka.Header and envelope.Header are the same struct, which this
// conversion checks at compile time; so a slice of one is a slice of the
// other, and the headers of every record pass between the client and the
// stages without a copy. Neither side changes headers it did not make.
var _ = kafka.Header(envelope.Header{})

func envelopeHeaders(hs []kafka.Header) []envelope.Header {
	if len(hs) == 0 {
		return nil
	}
	return unsafe.Slice((*envelope.Header)(unsafe.Pointer(unsafe.SliceData(hs))), len(hs))
}

func kafkaHeaders(hs []envelope.Header) []kafka.Header {
	if len(hs) == 0 {
		return nil
	}
	return unsafe.Slice((*kafka.Header)(unsafe.Pointer(unsafe.SliceData(hs))), len(hs))
}

// SleepUntil waits until now() reaches t, or ctx ends (false). It checks the
// clock again after the timer fires, so a record is never handled early.
func SleepUntil(ctx context.Context, now func() time.Time, t time.Time) bool {
	for {
		d := t.Sub(now())
		if d <= 0 {
			return true
		}
		timer := time.NewTimer(d)
		select {
		case <-ctx.Done():
			timer.Stop()
			return false
		case <-timer.C:
		}
	}
}

// Backoff spaces out retries of a failing call: a first step, doubling up
// to a longest.
type Backoff struct{ d, longest time.Duration }

// NewBackoff returns a backoff of 100ms, doubling up to 5s, at its first
// step.
func NewBackoff() *Backoff { return newBackoff(100*time.Millisecond, 5*time.Second) }

func newBackoff(first, longest time.Duration) *Backoff {
	return &Backoff{d: first, longest: longest}
}

// Wait sleeps for the current step and moves to the next; it returns false
// if ctx ends first.
func (b *Backoff) Wait(ctx context.Context) bool {
	t := time.NewTimer(b.d)
	defer t.Stop()
	b.d = min(2*b.d, b.longest)
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
