package bench

import (
	"testing"
	"time"

	"github.com/orderflow/orders/services/envelope"
)

func TestLatenessesFromHistories(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	delays := []time.Duration{time.Second, 2 * time.Second}
	dl := func(late1, late2 time.Duration) envelope.DeadLetter {
		at1 := t0
		at2 := at1.Add(delays[0] + late1)
		at3 := at2.Add(delays[1] + late2)
		return envelope.DeadLetter{Errors: []envelope.Failure{
			{Stage: "main", Attempt: 1, At: at1}, {Stage: "retry-1", Attempt: 2, At: at2}, {Stage: "retry-2", Attempt: 3, At: at3},
		}}
	}
	ls := latenesses([]envelope.DeadLetter{
		dl(5*time.Millisecond, 0), dl(1*time.Millisecond, 7*time.Millisecond), dl(-time.Millisecond, 3*time.Millisecond),
	}, delays)
	if len(ls) != 2 {
		t.Fatalf("%d stages, want 2", len(ls))
	}
	want := []Lateness{
		{Stage: 1, Delay: time.Second, N: 3, Early: 1, P50: time.Millisecond, P99: 5 * time.Millisecond, Max: 5 * time.Millisecond},
		{Stage: 2, Delay: 2 * time.Second, N: 3, Early: 0, P50: 3 * time.Millisecond, P99: 7 * time.Millisecond, Max: 7 * time.Millisecond},
	}
	for i := range want {
		if ls[i] != want[i] {
			t.Errorf("stage %d: %+v, want %+v", i+1, ls[i], want[i])
		}
	}
}
