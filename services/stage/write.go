package stage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/wait"
)

// outputWrite is the write of one batch's outputs, with arrays a
// partition's batches share: the outputs of one batch are done with once
// written.
type outputWrite struct {
	log       *zap.Logger
	partition int
	resume    string // the Resumer's topic, written last; "" if none
	refuser   Refuser

	batch    []envelope.Record
	outs     []envelope.Output
	replaced []bool // outs[i] is a Refuser's outcome for a refused output
	idx      []int
	sub      []envelope.Output
}

func (w *outputWrite) reset(batch []envelope.Record, outs []envelope.Output) {
	w.batch, w.outs = batch, outs
	w.replaced = slices.Grow(w.replaced[:0], len(outs))[:len(outs)]
	clear(w.replaced)
}

// writeOutputs writes the batch's outputs, those to the Resumer's topic
// (if any) last: one at a time, in order, once the others are
// acknowledged. Tombstones to the Resumer's topic say nothing of where to
// resume, and go with the others.
func (l *Loop) writeOutputs(ctx context.Context, w *outputWrite) bool {
	w.idx = w.idx[:0]
	var last []int
	for i := range w.outs {
		if w.resume != "" && w.outs[i].Topic == w.resume && w.outs[i].Value != nil {
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

// write produces the records w.outs[i], i in idx (ascending), and returns
// once each is acknowledged, or false if ctx ends first. Only what failed
// is sent again: a record acknowledged once is never written twice by the
// loop, and the writer keeps each partition's records in order. A record
// the broker refuses for good (kafka.RefusedForGood) is first sent again
// on its own, in case only the request was too large; refused alone, it
// gets the Refuser's outcome instead, or holds the partition, retried and
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
	for b := wait.Between(100*time.Millisecond, time.Second); ; {
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
			case !kafka.RefusedForGood(err):
			case !wasAlone:
				alone = true
			case w.refuser != nil && !w.replaced[i]:
				out, ok := w.refuser.Refused(w.batch, w.outs, i, err)
				if !ok {
					hold = err
					continue
				}
				w.log.Error("output refused for good; it is replaced by the stage's outcome for it",
					zap.String("topic", w.outs[i].Topic), zap.String("key", string(w.outs[i].Key)),
					zap.String("instead", out.Topic), zap.Error(err))
				obs.Refused(err)
				w.outs[i], w.replaced[i] = out, true
				replaced = true
			default:
				hold = fmt.Errorf("output to %s refused for good, and there is no other outcome for it: %w", w.outs[i].Topic, err)
			}
		}
		if hold == nil {
			if err := l.cfg.Client.ExplainWrite(ctx, kafka.WriteErrors(errs), w.pick(failed)); errors.Is(err, kafka.ErrDenied) {
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

// pick returns the outputs idx names, in a scratch array of w's.
func (w *outputWrite) pick(idx []int) []envelope.Output {
	if len(idx) == len(w.outs) { // idx ascends: all of them
		return w.outs
	}
	clear(w.sub)
	w.sub = w.sub[:0]
	for _, i := range idx {
		w.sub = append(w.sub, w.outs[i])
	}
	return w.sub
}

// send writes the outputs idx names in one call of the writer and returns
// those not written, with why.
func (l *Loop) send(ctx context.Context, w *outputWrite, idx []int) ([]int, []error) {
	outs := w.pick(idx)
	err := l.writer.Write(ctx, outs)
	if err == nil {
		return nil, nil
	}
	var per kafka.WriteErrors
	if errors.As(err, &per) && len(per) == len(outs) {
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

// sendAlone writes the outputs idx names one call each, in order, and
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
