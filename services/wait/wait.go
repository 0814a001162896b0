// Package wait holds the two ways the project waits: until a due time,
// and between the attempts of a call that fails.
package wait

import (
	"context"
	"time"
)

// Until waits until now() reaches t, or ctx ends (false). It checks the
// clock again after the timer fires, so a record is never handled early.
func Until(ctx context.Context, now func() time.Time, t time.Time) bool {
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

// For waits d, or less if ctx ends first (false).
func For(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Backoff spaces out retries of a failing call: a first step, doubling up
// to a longest.
type Backoff struct{ d, longest time.Duration }

// NewBackoff returns a backoff of 100ms, doubling up to 5s, at its first
// step.
func NewBackoff() *Backoff { return Between(100*time.Millisecond, 5*time.Second) }

// Between returns a backoff of first, doubling up to longest.
func Between(first, longest time.Duration) *Backoff {
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
