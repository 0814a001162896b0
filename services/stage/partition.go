package stage

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/wait"
)

// partitionRun is one partition's work for one generation: next batch,
// wait until due, handle, write, commit, again. ctx ends when the process
// stops or the generation ends; wctx, which ends a grace period later
// (Loop.writeContext), bounds the write and commit of the batch in hand.
type partitionRun struct {
	l         *Loop
	ctx, wctx context.Context
	gen       *kafka.Generation
	a         Assignment
	log       *zap.Logger
	obs       Observer

	p       Partition
	delayer Delayer // nil unless p is one
	acker   Acker   // nil unless p is one
	out     *outputWrite

	// The fetcher keeps a bounded queue of the partition's records, so
	// that handling can take everything already fetched as one batch.
	queue    chan envelope.Record
	position atomic.Int64 // where the fetcher has got to

	// mark is the last record handled, committed with each offset so that
	// the next owner can tell whether the partition still holds it.
	mark kafka.Mark
	// done is the offset every record before which is handled.
	done int64
	// A Resumer's handled offset waits in uncommitted for its commit (-1
	// when there is none); committedAt is when the last commit was.
	uncommitted int64
	committedAt time.Time

	// Each fetched record is converted once; a record read while draining
	// that is not due yet waits as the head of the next batch.
	head    envelope.Record
	hasHead bool
	batch   []envelope.Record
	// fetchedAt is when the batch could be handled, after any wait.
	fetchedAt time.Time
}

// runPartition runs a's partition for one generation. It returns an error
// only for a fatal handler failure.
func (l *Loop) runPartition(ctx, wctx context.Context, gen *kafka.Generation, a Assignment) error {
	r := &partitionRun{
		l: l, ctx: ctx, wctx: wctx, gen: gen, a: a, obs: l.cfg.Observer,
		log:         l.log.With(zap.String("topic", a.Topic), zap.Int("partition", a.Partition)),
		uncommitted: -1, committedAt: time.Now(),
	}
	start, ok := r.open()
	if !ok {
		return nil
	}
	r.done = start
	stopFetching := r.fetchFrom(start)
	defer stopFetching()
	// Whatever a Resumer left uncommitted is committed on the way out, if
	// the generation still allows it.
	defer func() {
		if r.uncommitted >= 0 {
			_ = r.gen.Commit(r.wctx, r.a.Partition, r.uncommitted, r.mark)
		}
	}()
	if r.delayer != nil {
		defer r.obs.Waiting(a.Partition, 0)
	}
	// With no record to handle for a while, the loop commits past what the
	// fetcher skipped, transaction markers, so that the group shows no lag
	// no record will ever clear.
	idle := time.NewTicker(idleCommitInterval)
	defer idle.Stop()
	for {
		if !r.nextBatch(idle.C) {
			return nil
		}
		if len(r.batch) == 0 {
			continue
		}
		outs, err := r.p.Handle(ctx, r.batch)
		if err != nil && ctx.Err() != nil {
			// Handle was waiting when the partition was taken away or the
			// process stopped: nothing was written, nothing is committed.
			return nil
		}
		if err != nil {
			return fmt.Errorf("handle %s/%d@%d: %w", a.Topic, a.Partition, r.batch[0].Offset, err)
		}
		r.out.reset(r.batch, outs)
		if !l.writeOutputs(wctx, r.out) || !r.commitBatch() {
			return nil
		}
		if r.acker != nil {
			r.acker.Acked(r.batch)
		}
		r.obs.Handled(r.batch, outs, r.fetchedAt)
		if r.delayer != nil && !r.hasHead {
			r.obs.Waiting(a.Partition, 0)
		}
	}
}

// open opens the stage's partition, trying again until it opens or ctx
// ends (false), and returns the offset to read from. A stage whose own
// state is ahead of the group (it wrote its state and died before
// committing) has that offset committed: the group would otherwise show
// lag that no record will ever clear.
func (r *partitionRun) open() (int64, bool) {
	var (
		start int64
		err   error
	)
	for b := wait.NewBackoff(); ; {
		if r.p, start, err = r.l.stage.Open(r.ctx, r.a); err == nil {
			break
		}
		if r.ctx.Err() != nil {
			return 0, false
		}
		r.log.Warn("opening partition; retrying", zap.Error(err))
		if !b.Wait(r.ctx) {
			return 0, false
		}
	}
	r.delayer, _ = r.p.(Delayer)
	r.acker, _ = r.p.(Acker)
	r.out = &outputWrite{log: r.log, partition: r.a.Partition}
	r.out.refuser, _ = r.p.(Refuser)
	if res, ok := r.p.(Resumer); ok {
		r.out.resume = res.ResumeTopic()
	}
	r.mark = kafka.Mark{Offset: start - 1}
	if start == r.a.Committed {
		r.mark = r.gen.CommittedMark(r.ctx, kafka.Claim{Partition: r.a.Partition, Committed: r.a.Committed})
	}
	if start >= 0 && start > r.a.Committed {
		if err := r.gen.Commit(r.wctx, r.a.Partition, start, kafka.Mark{Offset: -1}); err != nil {
			r.log.Warn("commit the offset the stage resumes from", zap.Int64("offset", start), zap.Error(err))
		}
	}
	return start, true
}

// fetchFrom starts the fetcher at start, knowing the mark of the record
// before it, and returns the function that stops it.
func (r *partitionRun) fetchFrom(start int64) (stop func()) {
	fctx, stopFetch := context.WithCancel(r.ctx)
	r.queue = make(chan envelope.Record, r.l.cfg.MaxBatch)
	r.position.Store(-1)
	var fetcher sync.WaitGroup
	after := r.mark
	fetcher.Go(func() {
		r.l.fetcher.FetchAfter(fctx, r.log, r.a.Topic, r.a.Partition, start, after, r.queue, &r.position)
	})
	return func() {
		stopFetch()
		fetcher.Wait()
	}
}

// nextBatch fills r.batch with the next records to handle: the head, once
// it is due (untilDue), and every fetched record after it that is due
// too, up to MaxBatch. It leaves r.batch empty when the idle ticker fired
// first (it then commits past what the fetcher skipped) and returns false
// when the partition is done: ctx ended, the fetcher stopped or a commit
// failed.
func (r *partitionRun) nextBatch(idle <-chan time.Time) bool {
	r.batch = r.batch[:0]
	if r.ctx.Err() != nil {
		return false
	}
	if !r.hasHead {
		select {
		case m, ok := <-r.queue:
			if !ok {
				return false
			}
			r.head, r.hasHead = m, true
		case <-r.ctx.Done():
			return false
		case <-idle:
			return r.commitSkipped()
		}
	}
	now, ok := r.untilDue()
	if !ok {
		return false
	}
	r.fetchedAt = now
	r.batch = append(r.batch, r.head)
	r.hasHead = false
	for len(r.batch) < r.l.cfg.MaxBatch {
		select {
		case rec, ok := <-r.queue:
			if !ok {
				return true
			}
			if r.delayer != nil {
				due := r.delayer.DueAt(rec)
				if due.After(now) {
					r.head, r.hasHead = rec, true
					return true
				}
				if !due.IsZero() {
					r.obs.Late(now.Sub(due))
				}
			}
			r.batch = append(r.batch, rec)
		default:
			return true
		}
	}
	return true
}

// untilDue waits until the head is due and returns the time then, or
// false if ctx ends first.
func (r *partitionRun) untilDue() (time.Time, bool) {
	now := r.l.cfg.Now()
	if r.delayer == nil {
		return now, true
	}
	due := r.delayer.DueAt(r.head)
	if due.After(now) {
		r.obs.Waiting(r.a.Partition, 1+len(r.queue))
		if !wait.Until(r.ctx, r.l.cfg.Now, due) {
			return now, false
		}
		now = r.l.cfg.Now()
	}
	if !due.IsZero() {
		r.obs.Late(now.Sub(due))
	}
	return now, true
}

// commitSkipped commits the fetcher's position when it is past every
// record handled and nothing waits: past transaction markers, or back to
// an earlier offset when the fetcher read a cut-back partition again. It
// returns false if the commit failed.
func (r *partitionRun) commitSkipped() bool {
	// The position is read before the queue is seen empty: records it
	// counts are then all handled.
	if at := r.position.Load(); at >= 0 && at != r.done && len(r.queue) == 0 {
		if !r.commit(at) {
			return false
		}
		r.done = at
	}
	return true
}

// commitBatch commits the offset after the batch just written: at once, or
// for a Resumer, once caught up or ResumerCommitInterval after the last
// commit. It returns false if the commit failed.
func (r *partitionRun) commitBatch() bool {
	last := &r.batch[len(r.batch)-1]
	next := last.Offset + 1
	r.mark = kafka.Mark{Offset: last.Offset, Time: last.Time}
	caughtUp := len(r.queue) == 0 && !r.hasHead
	if r.out.resume == "" || caughtUp || time.Since(r.committedAt) >= ResumerCommitInterval {
		if !r.commit(next) {
			return false
		}
	} else {
		r.uncommitted = next
	}
	r.done = next
	return true
}

// commit commits next, or reports that the partition is no longer this
// loop's to commit: the generation is over or the coordinator is gone, and
// whoever owns the partition next reads these records again.
func (r *partitionRun) commit(next int64) bool {
	if err := r.gen.Commit(r.wctx, r.a.Partition, next, r.mark); err != nil {
		if r.ctx.Err() == nil {
			r.log.Warn("commit offsets; leaving the partition to the next generation", zap.Error(err))
		}
		return false
	}
	r.uncommitted, r.committedAt = -1, time.Now()
	return true
}
