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
		// Through a Buffer: the same history read, twice (the second time
		// from what the buffer kept), and the same headers written.
		var buf envelope.Buffer
		for range 2 {
			bh, err := buf.ParseHistory(envelope.Record{Headers: hs})
			if err != nil || !reflect.DeepEqual(bh, h) {
				t.Fatalf("buffered parse = %+v, %v; want %+v", bh, err, h)
			}
			bt, err := buf.ParseDueAt(envelope.Record{Headers: hs})
			if err != nil || bt != dueAt {
				t.Fatalf("buffered due time = %v, %v; want %v", bt, err, dueAt)
			}
			if got, want := bh.AppendHeaders(&buf), h.Headers(); !reflect.DeepEqual(got, want) {
				t.Fatalf("buffered headers = %q, want %q", got, want)
			}
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
