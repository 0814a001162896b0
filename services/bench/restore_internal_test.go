package bench

import (
	"testing"
	"time"
)

// TestHistoryTime checks the spread of row 9's history: evenly spaced over
// history/inside horizons before now, the newest inside orders, and no
// others, less than a horizon old, none in the future.
func TestHistoryTime(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []struct{ n, inside int }{{200_000, 20_000}, {1000, 1}, {7, 3}, {5, 5}, {1, 1}} {
		step := time.Hour / time.Duration(c.inside)
		var in int
		for i := range c.n {
			at := historyTime(now, i, c.n, c.inside, time.Hour)
			age := now.Sub(at)
			if age <= 0 || age >= time.Duration(c.n/c.inside+1)*time.Hour {
				t.Fatalf("%d of %d: %v old", i, c.n, age)
			}
			if age < time.Hour {
				in++
				if i < c.n-c.inside {
					t.Fatalf("%d of %d, not among the newest %d: %v old, inside the horizon", i, c.n, c.inside, age)
				}
			}
			if i > 0 {
				if d := at.Sub(historyTime(now, i-1, c.n, c.inside, time.Hour)); d < step-time.Microsecond || d > step+time.Microsecond {
					t.Fatalf("%d of %d: %v after the one before, want %v", i, c.n, d, step)
				}
			}
		}
		if in != c.inside {
			t.Errorf("%d of %d inside the horizon, want %d", in, c.n, c.inside)
		}
	}
}

// TestHistoryTimeEdges checks the orders on either side of the horizon's
// edge at full size: half a step inside and half a step outside.
func TestHistoryTimeEdges(t *testing.T) {
	now := time.Now()
	const n, inside = 10_000_000, 1_000_000
	half := time.Hour / inside / 2
	if age := now.Sub(historyTime(now, n-inside, n, inside, time.Hour)); age != time.Hour-half {
		t.Errorf("oldest inside: %v old, want %v", age, time.Hour-half)
	}
	if age := now.Sub(historyTime(now, n-inside-1, n, inside, time.Hour)); age != time.Hour+half {
		t.Errorf("newest outside: %v old, want %v", age, time.Hour+half)
	}
	if age := now.Sub(historyTime(now, 0, n, inside, time.Hour)); age != 10*time.Hour-half {
		t.Errorf("oldest: %v old, want %v", age, 10*time.Hour-half)
	}
}

func TestShort(t *testing.T) {
	for n, want := range map[int]string{10_000_000: "10M", 1_000_000: "1M", 1_500_000: "1.5M", 200_000: "200k", 20_000: "20k", 2_500: "2.5k", 1_234: "1234", 999: "999", 1_234_567: "1234567"} {
		if got := short(n); got != want {
			t.Errorf("short(%d) = %q, want %q", n, got, want)
		}
	}
}
