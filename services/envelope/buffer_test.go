package envelope_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orders/services/envelope"
)

// TestBufferHoldsABatchOfHeaders writes batches of histories into one
// Buffer, as a stage does with a partition's batches, and checks that each
// header written stays as Headers writes it until the buffer is reset,
// however often the buffer outgrows its memory, and that the histories
// read back through the buffer are those read without it.
func TestBufferHoldsABatchOfHeaders(t *testing.T) {
	var buf envelope.Buffer
	for batch := range 3 {
		now := t0.Add(time.Duration(batch) * time.Minute)
		var hs []envelope.History
		var written [][]envelope.Header
		for i := range 300 {
			h := envelope.Begin(envelope.Record{Topic: "orders", Partition: i % 6, Offset: int64(batch*1000 + i)})
			// Histories of 1 to 7 failures, some of them long enough to
			// outgrow the buffer's memory, with times shared and not.
			for k := range 1 + i%7 {
				msg := fmt.Sprintf("failure %d of order %d", k, i)
				if i%50 == 0 {
					msg = strings.Repeat("x", envelope.MaxErrorLen)
				}
				h = h.Failed(fmt.Sprintf("stage-%d", k), now.Add(time.Duration(k%3)*time.Second), msg)
			}
			h.ErrorClass, h.DueAt, h.Replays = "failing_product", now.Add(time.Duration(i%2)*time.Hour), i%3
			hs = append(hs, h)
			written = append(written, h.AppendHeaders(&buf))
		}
		for i, h := range hs {
			if want := h.Headers(); !reflect.DeepEqual(written[i], want) {
				t.Fatalf("batch %d, history %d: the buffer holds\n%q\nwant\n%q", batch, i, written[i], want)
			}
			r := envelope.Record{Headers: written[i]}
			want, wantErr := envelope.ParseHistory(r)
			for range 2 {
				got, err := buf.ParseHistory(r)
				if err != nil || wantErr != nil || !reflect.DeepEqual(got, want) {
					t.Fatalf("batch %d, history %d: buffered parse = %+v, %v; want %+v, %v", batch, i, got, err, want, wantErr)
				}
			}
		}
		buf.Reset()
	}
}

// TestBufferTimesAreThoseOfTheTimePackage checks that a time the buffer
// read in a form other than the one stages write (a trailing zero in the
// fraction, another zone) is still written in the stages' form.
func TestBufferTimesAreThoseOfTheTimePackage(t *testing.T) {
	var buf envelope.Buffer
	for _, text := range []string{"2024-03-05T06:07:08.500Z", "2024-03-05T06:07:08.0Z", "2024-03-05T07:07:08.5+01:00"} {
		h := fullHistory()
		r := envelope.Record{Headers: h.Headers()}
		for i := range r.Headers {
			if r.Headers[i].Key == envelope.HeaderDueAt {
				r.Headers[i].Value = []byte(text)
			}
		}
		read, err := buf.ParseHistory(r)
		if err != nil {
			t.Fatalf("%s: %v", text, err)
		}
		want, _ := time.Parse(time.RFC3339Nano, text)
		wantText := want.UTC().Format(time.RFC3339Nano)
		for _, hd := range read.AppendHeaders(&buf) {
			if hd.Key == envelope.HeaderDueAt && string(hd.Value) != wantText {
				t.Fatalf("read %s, wrote %s; want %s", text, hd.Value, wantText)
			}
		}
	}
}

// TestBufferSharesTheListsOfOrdersThatFailTogether checks that orders
// failing together through one Buffer (the same list before, the same
// failure) share one error list and one encoding of it, that each history
// is still the one History.Failed makes, and that a list encoded before a
// Reset is written again after it, not read from memory the buffer reuses.
func TestBufferSharesTheListsOfOrdersThatFailTogether(t *testing.T) {
	var buf envelope.Buffer
	msgs := []string{"product fails processing: Item1", "product fails processing: Item2"}
	for batch := range 4 {
		// Two batches at a time fail at one time, as with a clock that
		// did not move: they make the same lists.
		now := t0.Add(time.Duration(batch/2) * time.Minute)
		var hs []envelope.History
		var written [][]envelope.Header
		// Half the batches handle the orders of the second message first,
		// so that after a Reset another list takes the first list's place
		// in the buffer's memory.
		for i := range 40 {
			k := (i + batch) % 2
			r := envelope.Record{Topic: "orders", Partition: 0, Offset: int64(batch*100 + i)}
			h := buf.Failed(envelope.Begin(r), "main", now, msgs[k])
			if want := envelope.Begin(r).Failed("main", now, msgs[k]); !reflect.DeepEqual(h, want) {
				t.Fatalf("batch %d, order %d: through the buffer %+v, want %+v", batch, i, h, want)
			}
			// A retry of it: the list read back through the buffer, failing
			// once more.
			h.DueAt = now.Add(time.Second)
			read, err := buf.ParseHistory(envelope.Record{Headers: h.Headers()})
			if err != nil {
				t.Fatal(err)
			}
			again := buf.Failed(read, "retry-1", now, msgs[k])
			if want := read.Failed("retry-1", now, msgs[k]); !reflect.DeepEqual(again, want) {
				t.Fatalf("batch %d, order %d: retried through the buffer %+v, want %+v", batch, i, again, want)
			}
			hs = append(hs, h, again)
			written = append(written, h.AppendHeaders(&buf), again.AppendHeaders(&buf))
		}
		for i, h := range hs {
			if j := i % 4; i >= 4 && &h.Errors[0] != &hs[j].Errors[0] {
				t.Fatalf("batch %d, history %d: its list is not that of history %d, which failed the same way", batch, i, j)
			}
			if want := h.Headers(); !reflect.DeepEqual(written[i], want) {
				t.Fatalf("batch %d, history %d: the buffer holds\n%q\nwant\n%q", batch, i, written[i], want)
			}
		}
		if &hs[0].Errors[0] == &hs[2].Errors[0] {
			t.Fatal("orders that failed with different messages share a list")
		}
		buf.Reset()
	}
}
