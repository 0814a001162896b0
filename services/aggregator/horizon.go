package aggregator

import "time"

// DefaultHorizon is how long the aggregator remembers an orderId unless
// configured otherwise: copies of an order reach the processed topic within
// seconds to minutes of each other, so a week covers every redelivery with
// room for a stage that was down for days.
const DefaultHorizon = 7 * 24 * time.Hour

// buckets is how many time buckets a horizon spans. An orderId is
// remembered in the bucket of its batch's watermark and forgotten with the
// whole bucket, so it is remembered for at least the horizon and at most
// one bucket (a sixteenth of the horizon) longer.
const buckets = 16

// horizon is the de-duplication horizon cut into time buckets of whole
// milliseconds, measured against a partition's watermark: the newest
// processed-record timestamp it has handled, never past the wall clock.
type horizon struct {
	width int64 // milliseconds per bucket, at least 1
}

func newHorizon(d time.Duration) horizon {
	return horizon{width: max((d.Milliseconds()+buckets-1)/buckets, 1)} // rounded up: never less than d
}

// bucket is the bucket of a time, in Unix milliseconds.
func (h horizon) bucket(ms int64) int64 {
	if ms < 0 {
		return (ms - h.width + 1) / h.width
	}
	return ms / h.width
}

// live reports whether what was recorded in bucket b is still remembered
// under the watermark wm.
func (h horizon) live(b, wm int64) bool { return h.bucket(wm)-b <= buckets }

// since is the start of the oldest bucket still remembered under wm, in
// Unix milliseconds: state records stamped before it hold nothing a
// restore needs but totals, which every later record repeats.
func (h horizon) since(wm int64) int64 { return (h.bucket(wm) - buckets) * h.width }
