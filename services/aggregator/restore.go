package aggregator

import (
	"context"
	"fmt"
	"time"

	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka"
)

// tailRecords is how many of a state partition's last records a restore
// reads first, for the watermark and the horizon its writer used: the
// last is nearly always a batch's state record, since a batch's tombstones
// are written before it.
const tailRecords = 16

// restore replays one state partition up to its end offset at the time of
// the call, which it returns. It reads from the first state record stamped
// inside the horizon h, asking the broker where that is: the records
// before it hold only orderIds the horizon forgot and totals that later
// records repeat. Reading totals only (withIDs false), it uses the horizon
// of the partition's last writer. A partition whose last records are of
// the older format and that is read for totals only is read whole.
func restore(ctx context.Context, client kafka.Client, topic string, part int, h horizon, withIDs bool) (*replay, int64, error) {
	b, err := client.PartitionBounds(ctx, topic, part)
	if err != nil {
		return nil, 0, err
	}
	first, end := b.First, b.End
	rp := newReplay(h, withIDs)
	rp.from = first
	if first >= end {
		return rp, end, nil
	}
	var (
		wm   int64
		last *Snapshot
	)
	err = kafka.ReadRange(ctx, client, topic, part, max(first, end-tailRecords), end, func(m envelope.Record) error {
		wm = max(wm, m.Time.UnixMilli())
		if m.Value == nil {
			return nil
		}
		s, err := parseSnapshot(m.Value)
		if err != nil {
			return fmt.Errorf("%s/%d@%d: %w", topic, part, m.Offset, err)
		}
		wm = max(wm, s.Watermark)
		last = &s
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	switch {
	case last == nil: // only tombstones at the end: read it all
	case !withIDs && last.Version < stateVersion:
	default:
		if !withIDs {
			h = newHorizon(time.Duration(last.Horizon) * time.Millisecond)
			rp.h = h
		}
		at, err := client.OffsetAt(ctx, topic, part, time.UnixMilli(h.since(wm)))
		if err != nil {
			return nil, 0, err
		}
		if at > rp.from {
			rp.from = at
		}
	}
	err = kafka.ReadRange(ctx, client, topic, part, rp.from, end, func(m envelope.Record) error {
		if err := rp.read(m); err != nil {
			return fmt.Errorf("%s/%d@%d: %w", topic, part, m.Offset, err)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return rp, end, nil
}
