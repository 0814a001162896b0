package envelope_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/orderflow/orders/services/envelope"
)

// FuzzParseHistory feeds arbitrary header values to ParseHistory: it never
// panics, fails only with ErrHeaders, agrees with ParseDueAt on every history
// it accepts and every due time ParseDueAt refuses, and whatever it
// accepts survives a Headers round trip unchanged. The seed corpus is in
// testdata/fuzz/FuzzParseHistory.
func FuzzParseHistory(f *testing.F) {
	keys := []string{
		envelope.HeaderAttempts, envelope.HeaderOrigin, envelope.HeaderDueAt, envelope.HeaderErrors,
		envelope.HeaderErrorClass, envelope.HeaderReplays,
	}
	f.Fuzz(func(t *testing.T, attempts, origin, due, errs, class, replays string) {
		values := []string{attempts, origin, due, errs, class, replays}
		var hs []envelope.Header
		for i, k := range keys {
			hs = append(hs, envelope.Header{Key: k, Value: []byte(values[i])})
		}
		h, err := envelope.ParseHistory(envelope.Record{Headers: hs})
		dueAt, dueErr := envelope.ParseDueAt(envelope.Record{Headers: hs})
		if err == nil && (dueErr != nil || !dueAt.Equal(h.DueAt)) {
			t.Fatalf("ParseDueAt = %v, %v; ParseHistory = due %v, %v", dueAt, dueErr, h.DueAt, err)
		}
		if err != nil {
			if !errors.Is(err, envelope.ErrHeaders) {
				t.Fatalf("error %v does not wrap ErrHeaders", err)
			}
			return
		}
		again, err := envelope.ParseHistory(envelope.Record{Headers: h.Headers()})
		if err != nil {
			t.Fatalf("re-parse of %+v: %v", h, err)
		}
		if !reflect.DeepEqual(normalize(again), normalize(h)) {
			t.Fatalf("round trip changed\n%+v\ninto\n%+v", h, again)
		}
	})
}

// normalize puts times in UTC, as Headers writes them.
func normalize(h envelope.History) envelope.History {
	h.FirstFailureAt = h.FirstFailureAt.UTC()
	h.LastFailureAt = h.LastFailureAt.UTC()
	h.DueAt = h.DueAt.UTC()
	errs := make([]envelope.Failure, len(h.Errors))
	for i, e := range h.Errors {
		e.At = e.At.UTC()
		errs[i] = e
	}
	h.Errors = errs
	return h
}
