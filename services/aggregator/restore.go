package aggregator

import (
	"context"
	"fmt"
	"time"

	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka"
)

// tailRecords is how many of a state partition's last records a restore
// reads first, for where to read from: the last is nearly always a batch's
// state record, since a batch's tombstones are written before it, and a
// restore that finds none among them reads sixteen times as many.
const tailRecords = 16

// restore replays one state partition up to its end offset at the time of
// the call, which it returns. It reads from the first state record stamped
// at or after the From of the partition's last record, asking the broker
// where that is: every record before it has a tombstone, so it holds only
// orderIds the horizon forgot and totals that later records repeat. A
// partition whose last records are of the older format is read from the
// start of the horizon h, or whole if read for totals only (withIDs false).
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
	// The last records may all be tombstones, a batch's written before a
	// crash kept its state record from following them: look further back.
	var last *Snapshot
	for window := int64(tailRecords); last == nil; window *= 16 {
		from := max(first, end-window)
		err = kafka.ReadRange(ctx, client, topic, part, from, end, func(m envelope.Record) error {
			if m.Value == nil {
				return nil
			}
			s, err := parseSnapshot(m.Value)
			if err != nil {
				return fmt.Errorf("%s/%d@%d: %w", topic, part, m.Offset, err)
			}
			if s.Version < stateVersion {
				s.Watermark = m.Time.UnixMilli()
			}
			last = &s
			return nil
		})
		if err != nil {
			return nil, 0, err
		}
		if from == first {
			break
		}
	}
	wm := int64(0)
	if last != nil {
		wm = last.Watermark
	}
	var since int64
	switch {
	case last == nil: // only tombstones at the end: read it all
	case last.Version >= stateVersion:
		since = last.From
	case withIDs:
		since = h.since(wm)
	}
	if since != 0 {
		at, err := client.OffsetAt(ctx, topic, part, time.UnixMilli(since))
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
