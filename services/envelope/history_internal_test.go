package envelope

import "testing"

func TestHistoryKeyIndex(t *testing.T) {
	for i, k := range historyKeys {
		if got := historyKeyIndex(k); got != i {
			t.Errorf("historyKeyIndex(%q) = %d, want %d", k, got, i)
		}
	}
	for _, k := range []string{"", "x-retry-", "x-retry-x", "x-retry-attempt", "x-retry-attemptz", "x-retry-last-errox",
		"x-retry-lost-failure-at", "x-retry-due-on", "X-retry-attempts", "x-replay-source", HeaderProcessedBy, HeaderDLQReason} {
		if got := historyKeyIndex(k); got != -1 {
			t.Errorf("historyKeyIndex(%q) = %d, want -1", k, got)
		}
	}
}
