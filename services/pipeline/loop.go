package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/segmentio/kafka-go"
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
}

type noObserver struct{}

func (noObserver) Joined()                                                 {}
func (noObserver) Handled([]envelope.Record, []envelope.Output, time.Time) {}
func (noObserver) Late(time.Duration)                                      {}
func (noObserver) Waiting(int, int)                                        {}

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

	commitMu sync.Mutex
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
	}, nil
}

// Run consumes until ctx is done. It returns nil on cancellation and an
// error only for a failure that restarting the loop would not fix. When ctx
// ends, the batch in hand is still written and committed, for at most
// Config.StopGrace.
func (l *Loop) Run(ctx context.Context) error {
	defer l.writer.Close()
	defer l.fetcher.Close()
	hard, hardCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hardCancel()
	grace := context.AfterFunc(ctx, func() { time.AfterFunc(l.cfg.StopGrace, hardCancel) })
	defer grace()
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
				if err := l.runPartition(pctx, hard, gen, a); err != nil {
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

// runPartition is the loop of one partition for one generation. ctx ends
// when the process stops or the generation ends; hard bounds the write and
// commit of the batch in hand after that. It returns an error only for a
// fatal handler failure.
func (l *Loop) runPartition(ctx, hard context.Context, gen *kafka.Generation, a Assignment) error {
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
	if start >= 0 && start > a.Committed {
		// The stage's own state is ahead of the group (it wrote its state
		// and died before committing): record that, or the group would
		// show lag that no record will ever clear.
		if err := l.commit(gen, a, start); err != nil {
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
	fetcher.Go(func() { l.fetcher.Fetch(fctx, log, a.Topic, a.Partition, start, queue, &position) })
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
	var resumeTopic string
	if r, ok := p.(Resumer); ok {
		resumeTopic = r.ResumeTopic()
	}
	resumer := resumeTopic != ""
	// A Resumer's handled offset waits here for its commit; whatever is left
	// is committed on the way out, if the generation still allows it.
	uncommitted, committedAt := int64(-1), time.Now()
	defer func() {
		if uncommitted >= 0 {
			_ = l.commit(gen, a, uncommitted)
		}
	}()
	// commit commits next, or reports that the partition is no longer this
	// loop's to commit.
	commit := func(next int64) bool {
		if err := l.commit(gen, a, next); err != nil {
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
		msgs    []kafka.Message
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
				if at := position.Load(); at > done && len(queue) == 0 {
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
		// The messages of one batch are done with once written: their
		// array carries the next batch's.
		clear(msgs)
		msgs = appendMessages(msgs[:0], outs)
		if !l.writeResumeLast(hard, log, msgs, resumeTopic) {
			return nil
		}
		next := batch[len(batch)-1].Offset + 1
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

// writeResumeLast writes msgs, those to topic resume (if not empty) last:
// one at a time, in order, once the others are acknowledged.
func (l *Loop) writeResumeLast(ctx context.Context, log *zap.Logger, msgs []kafka.Message, resume string) bool {
	if resume == "" {
		return l.write(ctx, log, msgs)
	}
	var others, last []kafka.Message
	for _, m := range msgs {
		if m.Topic == resume {
			last = append(last, m)
		} else {
			others = append(others, m)
		}
	}
	if !l.write(ctx, log, others) {
		return false
	}
	for i := range last {
		if !l.write(ctx, log, last[i:i+1]) {
			return false
		}
	}
	return true
}

// write produces msgs synchronously, retrying until every record is
// acknowledged. It returns false if ctx ends first.
func (l *Loop) write(ctx context.Context, log *zap.Logger, msgs []kafka.Message) bool {
	if len(msgs) == 0 {
		return true
	}
	for b := NewBackoff(); ; {
		err := l.writer.WriteMessages(ctx, msgs...)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		// A denial is an error an operator must fix, and is retried so that
		// the stage resumes by itself once the ACL is granted.
		if err := l.cfg.Client.ExplainWrite(ctx, err, msgs); errors.Is(err, ErrDenied) {
			log.Error("produce; retrying", zap.Int("records", len(msgs)), zap.Error(err))
		} else {
			log.Warn("produce; retrying", zap.Int("records", len(msgs)), zap.Error(err))
		}
		if !b.Wait(ctx) {
			return false
		}
	}
}

func (l *Loop) commit(gen *kafka.Generation, a Assignment, next int64) error {
	l.commitMu.Lock()
	defer l.commitMu.Unlock()
	return gen.CommitOffsets(map[string]map[int]int64{a.Topic: {a.Partition: next}})
}

// Messages converts outputs to kafka-go messages for a writer made by
// Client.NewWriter. Headers are shared, not copied (see kafkaHeaders).
func Messages(outs []envelope.Output) []kafka.Message {
	return appendMessages(make([]kafka.Message, 0, len(outs)), outs)
}

func appendMessages(msgs []kafka.Message, outs []envelope.Output) []kafka.Message {
	for _, o := range outs {
		msgs = append(msgs, kafka.Message{Topic: o.Topic, Partition: o.Partition, Key: o.Key, Value: o.Value, Headers: kafkaHeaders(o.Headers)})
	}
	return msgs
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
