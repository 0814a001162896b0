package envelope_test

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/orderflow/orders/services/envelope"
)

// t0 has nanoseconds so that a lossy time encoding shows.
var t0 = time.Date(2024, 3, 5, 6, 7, 8, 123456789, time.UTC)

func TestBeginTakesThePlaceInTheInputTopic(t *testing.T) {
	r := envelope.Record{Topic: "orders", Partition: 4, Offset: 77}
	h := envelope.Begin(r)
	want := envelope.History{OriginalTopic: "orders", OriginalPartition: 4, OriginalOffset: 77}
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("Begin = %+v, want %+v", h, want)
	}
}

func TestFailedKeepsTheFirstAndTheLatestFailuresOldestFirst(t *testing.T) {
	h := envelope.Begin(envelope.Record{Topic: "orders", Partition: 1, Offset: 2})
	const n = envelope.MaxErrors + 3
	for i := 1; i <= n; i++ {
		at := t0.Add(time.Duration(i) * time.Second)
		h = h.Failed(fmt.Sprintf("s%d", i), at, fmt.Sprintf("e%d", i))

		if h.Attempts != i {
			t.Fatalf("after %d failures Attempts = %d", i, h.Attempts)
		}
		// Failure 1, then the latest ones, oldest first.
		want := []int{1}
		for k := max(2, i-envelope.MaxErrors+2); k <= i; k++ {
			want = append(want, k)
		}
		if i == 1 {
			want = want[:1]
		}
		var got []int
		for j, f := range h.Errors {
			k := want[min(j, len(want)-1)]
			w := envelope.Failure{
				Stage: fmt.Sprintf("s%d", k), Attempt: k,
				At: t0.Add(time.Duration(k) * time.Second), Error: fmt.Sprintf("e%d", k),
			}
			if !reflect.DeepEqual(f, w) {
				t.Fatalf("after %d failures Errors[%d] = %+v, want %+v", i, j, f, w)
			}
			got = append(got, f.Attempt)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("after %d failures the kept attempts are %v, want %v", i, got, want)
		}
		if h.LastStage != fmt.Sprintf("s%d", i) || h.LastError != fmt.Sprintf("e%d", i) || !h.LastFailureAt.Equal(at) {
			t.Fatalf("after %d failures last = %q %q %v", i, h.LastStage, h.LastError, h.LastFailureAt)
		}
	}
	if len(h.Errors) != envelope.MaxErrors {
		t.Fatalf("after %d failures %d are kept, want %d", n, len(h.Errors), envelope.MaxErrors)
	}
	if h.OriginalTopic != "orders" || h.OriginalPartition != 1 || h.OriginalOffset != 2 {
		t.Fatalf("Failed changed the original place: %+v", h)
	}
}

func TestFailedSetsFirstFailureAtOnce(t *testing.T) {
	h := envelope.Begin(envelope.Record{Topic: "orders"})
	if !h.FirstFailureAt.IsZero() {
		t.Fatalf("FirstFailureAt before any failure = %v", h.FirstFailureAt)
	}
	h = h.Failed("main", t0, "a")
	h = h.Failed("retry-1", t0.Add(time.Minute), "b")
	h = h.Failed("retry-2", t0.Add(time.Hour), "c")
	if !h.FirstFailureAt.Equal(t0) {
		t.Fatalf("FirstFailureAt = %v, want %v", h.FirstFailureAt, t0)
	}
	if !h.LastFailureAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("LastFailureAt = %v, want %v", h.LastFailureAt, t0.Add(time.Hour))
	}
}

func TestFailedDoesNotShareErrorsWithItsInput(t *testing.T) {
	base := envelope.History{Attempts: 0}
	for i := range envelope.MaxErrors {
		base = base.Failed("s", t0, fmt.Sprintf("e%d", i))
	}
	before := slices.Clone(base.Errors)
	a := base.Failed("a", t0, "a")
	b := base.Failed("b", t0, "b")
	if got := a.Errors[len(a.Errors)-1].Stage; got != "a" {
		t.Fatalf("a's last failure is in stage %q after b was derived from the same history", got)
	}
	if got := b.Errors[len(b.Errors)-1].Stage; got != "b" {
		t.Fatalf("b's last failure is in stage %q", got)
	}
	if !reflect.DeepEqual(base.Errors, before) {
		t.Fatalf("Failed changed its receiver's errors: %+v, was %+v", base.Errors, before)
	}
}

func TestFailedTruncatesLongErrors(t *testing.T) {
	long := strings.Repeat("x", envelope.MaxErrorLen) + "tail that must go"
	h := envelope.History{}.Failed("main", t0, long)
	want := long[:envelope.MaxErrorLen]
	if h.LastError != want {
		t.Fatalf("LastError has %d bytes, want the first %d", len(h.LastError), envelope.MaxErrorLen)
	}
	if h.Errors[0].Error != want {
		t.Fatalf("Errors[0].Error has %d bytes, want the first %d", len(h.Errors[0].Error), envelope.MaxErrorLen)
	}

	exact := strings.Repeat("y", envelope.MaxErrorLen)
	if h := (envelope.History{}).Failed("main", t0, exact); h.LastError != exact {
		t.Fatalf("an error of exactly MaxErrorLen bytes became %d bytes", len(h.LastError))
	}
}

// fullHistory has every field set, with times to the nanosecond in UTC.
func fullHistory() envelope.History {
	h := envelope.Begin(envelope.Record{Topic: "orders", Partition: 5, Offset: 1234567890123})
	h = h.Failed("main", t0, `product fails processing: "Item3"`)
	h = h.Failed("retry-1", t0.Add(2*time.Second+1), "second, with ünïcode")
	h.DueAt = t0.Add(7*time.Second + 999)
	h.ErrorClass = "transient"
	h.Replays = 2
	return h
}

func recordWith(hs []envelope.Header) envelope.Record {
	return envelope.Record{Topic: "orders_retry_2", Partition: 0, Offset: 9, Headers: hs}
}

func TestHeadersRoundTrip(t *testing.T) {
	h := fullHistory()
	got, err := envelope.ParseHistory(recordWith(h.Headers()))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, h) {
		t.Fatalf("ParseHistory(Headers()) =\n%+v\nwant\n%+v", got, h)
	}
	// Times come back exact and in UTC.
	for name, pair := range map[string][2]time.Time{
		"first": {got.FirstFailureAt, h.FirstFailureAt},
		"last":  {got.LastFailureAt, h.LastFailureAt},
		"due":   {got.DueAt, h.DueAt},
		"err1":  {got.Errors[1].At, h.Errors[1].At},
	} {
		if pair[0] != pair[1] || pair[0].Location() != time.UTC {
			t.Errorf("%s: %v (%v), want %v in UTC", name, pair[0], pair[0].Location(), pair[1])
		}
	}
}

func TestHeadersAreUTCWhateverTheInputZone(t *testing.T) {
	zone := time.FixedZone("UTC+3", 3*3600)
	h := fullHistory()
	for i := range h.Errors {
		h.Errors[i].At = h.Errors[i].At.In(zone)
	}
	h.DueAt = h.DueAt.In(zone)
	r := recordWith(h.Headers())
	if v, _ := r.Header(envelope.HeaderDueAt); string(v) != "2024-03-05T06:07:15.123457788Z" {
		t.Fatalf("%s = %q, want it in UTC", envelope.HeaderDueAt, v)
	}
	if v, _ := r.Header(envelope.HeaderErrors); !strings.Contains(string(v), `"at":"2024-03-05T06:07:08.123456789Z"`) {
		t.Fatalf("%s = %s, want its times in UTC", envelope.HeaderErrors, v)
	}
	got, err := envelope.ParseHistory(r)
	if err != nil {
		t.Fatal(err)
	}
	if got.FirstFailureAt != t0 || !got.DueAt.Equal(h.DueAt) || got.DueAt.Location() != time.UTC {
		t.Fatalf("times came back as %v and %v", got.FirstFailureAt, got.DueAt)
	}
}

func TestHeadersNamesEveryHistoryHeaderOnce(t *testing.T) {
	want := []string{
		envelope.HeaderAttempts, envelope.HeaderOrigin, envelope.HeaderDueAt, envelope.HeaderErrors,
		envelope.HeaderErrorClass, envelope.HeaderReplays,
	}
	var got []string
	for _, h := range fullHistory().Headers() {
		got = append(got, h.Key)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("header keys %v, want %v", got, want)
	}
	r := recordWith(fullHistory().Headers())
	for key, want := range map[string]string{
		envelope.HeaderAttempts: "2", envelope.HeaderOrigin: "orders/5@1234567890123",
		envelope.HeaderErrorClass: "transient", envelope.HeaderReplays: "2",
	} {
		if v, _ := r.Header(key); string(v) != want {
			t.Errorf("%s = %q, want %q", key, v, want)
		}
	}
}

func TestHeadersLeaveOutAnEmptyClassAndNoReplays(t *testing.T) {
	h := fullHistory()
	h.ErrorClass, h.Replays = "", 0
	var got []string
	for _, hd := range h.Headers() {
		got = append(got, hd.Key)
	}
	want := []string{envelope.HeaderAttempts, envelope.HeaderOrigin, envelope.HeaderDueAt, envelope.HeaderErrors}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("header keys %v, want %v", got, want)
	}
	back, err := envelope.ParseHistory(recordWith(h.Headers()))
	if err != nil || !reflect.DeepEqual(back, h) {
		t.Fatalf("ParseHistory = %+v, %v; want %+v", back, err, h)
	}
}

func TestTheLongestHistoryIsReadBack(t *testing.T) {
	// Every byte of every error escaped in six: the most Headers writes.
	h := envelope.Begin(envelope.Record{Topic: strings.Repeat("t", 249), Partition: 1<<31 - 1, Offset: 1<<63 - 1})
	for i := range envelope.MaxErrors + 1 {
		h = h.Failed(strings.Repeat("s", 64), t0.Add(time.Duration(i)), strings.Repeat("\x01", envelope.MaxErrorLen))
	}
	h.DueAt = t0
	back, err := envelope.ParseHistory(recordWith(h.Headers()))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, h) {
		t.Fatalf("ParseHistory = %+v, want %+v", back, h)
	}
}

func TestRecordHeaderReturnsTheLastOfAName(t *testing.T) {
	r := envelope.Record{Headers: []envelope.Header{{"a", []byte("1")}, {"b", []byte("x")}, {"a", []byte("2")}}}
	if v, ok := r.Header("a"); !ok || string(v) != "2" {
		t.Fatalf("Header(a) = %q, %v; want 2, true", v, ok)
	}
	if v, ok := r.Header("missing"); ok || v != nil {
		t.Fatalf("Header(missing) = %q, %v", v, ok)
	}
}

// replace returns hs with the value of key replaced.
func replace(hs []envelope.Header, key string, v []byte) []envelope.Header {
	out := slices.Clone(hs)
	for i := range out {
		if out[i].Key == key {
			out[i].Value = v
		}
	}
	return out
}

func without(hs []envelope.Header, key string) []envelope.Header {
	return slices.DeleteFunc(slices.Clone(hs), func(h envelope.Header) bool { return h.Key == key })
}

func wantHeaderError(t *testing.T, r envelope.Record, mention string) {
	t.Helper()
	h, err := envelope.ParseHistory(r)
	if !errors.Is(err, envelope.ErrHeaders) {
		t.Fatalf("ParseHistory = %+v, %v; want an error wrapping ErrHeaders", h, err)
	}
	if !strings.Contains(err.Error(), mention) {
		t.Fatalf("error %q does not mention %q", err, mention)
	}
	if !reflect.DeepEqual(h, envelope.History{}) {
		t.Fatalf("ParseHistory returned %+v with its error, want the zero History", h)
	}
}

func TestParseHistoryMissingHeader(t *testing.T) {
	required := []string{envelope.HeaderAttempts, envelope.HeaderOrigin, envelope.HeaderDueAt, envelope.HeaderErrors}
	for _, key := range required {
		t.Run(key, func(t *testing.T) {
			wantHeaderError(t, recordWith(without(fullHistory().Headers(), key)), key)
		})
	}
	t.Run("all", func(t *testing.T) {
		wantHeaderError(t, envelope.Record{Topic: "orders_retry_1"}, "missing")
	})
}

// failureList is a valid error list of n failures.
func failureList(n int) []byte {
	b := []byte{'['}
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"stage":"main","attempt":1,"at":"2024-03-05T06:07:08Z","error":"x"}`...)
	}
	return append(b, ']')
}

func TestParseHistoryBadValues(t *testing.T) {
	cases := []struct {
		name, key, value string
	}{
		{"non-numeric attempts", envelope.HeaderAttempts, "two"},
		{"empty attempts", envelope.HeaderAttempts, ""},
		{"fractional attempts", envelope.HeaderAttempts, "1.5"},
		{"negative attempts", envelope.HeaderAttempts, "-1"},
		{"zero attempts", envelope.HeaderAttempts, "0"},
		{"huge attempts", envelope.HeaderAttempts, "99999999999"},
		{"origin without a partition", envelope.HeaderOrigin, "orders@1"},
		{"origin without an offset", envelope.HeaderOrigin, "orders/1"},
		{"empty origin", envelope.HeaderOrigin, ""},
		{"non-numeric partition", envelope.HeaderOrigin, "orders/p3@1"},
		{"negative partition", envelope.HeaderOrigin, "orders/-3@1"},
		{"huge partition", envelope.HeaderOrigin, "orders/4294967296@1"},
		{"non-numeric offset", envelope.HeaderOrigin, "orders/1@0x10"},
		{"negative offset", envelope.HeaderOrigin, "orders/1@-10"},
		{"offset overflow", envelope.HeaderOrigin, "orders/1@99999999999999999999"},
		{"empty due time", envelope.HeaderDueAt, ""},
		{"unix due time", envelope.HeaderDueAt, "1709618828"},
		{"date only due time", envelope.HeaderDueAt, "2024-03-05"},
		{"errors not json", envelope.HeaderErrors, "garbled{"},
		{"errors not a list", envelope.HeaderErrors, `{"stage":"main"}`},
		{"errors with a bad time", envelope.HeaderErrors, `[{"stage":"main","attempt":1,"at":"never","error":"x"}]`},
		{"no errors", envelope.HeaderErrors, "[]"},
		{"null errors", envelope.HeaderErrors, "null"},
		{"empty errors", envelope.HeaderErrors, ""},
		{"too many errors", envelope.HeaderErrors, string(failureList(envelope.MaxErrors + 1))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantHeaderError(t, recordWith(replace(fullHistory().Headers(), c.key, []byte(c.value))), c.key)
		})
	}
}

func TestParseHistoryReadsFirstAndLastFromTheErrors(t *testing.T) {
	list := `[{"stage":"main","attempt":1,"at":"2024-03-05T06:07:08Z","error":"a"},` +
		`{"stage":"retry-2","attempt":3,"at":"2024-03-05T06:09:00Z","error":"c"}]`
	h, err := envelope.ParseHistory(recordWith(replace(fullHistory().Headers(), envelope.HeaderErrors, []byte(list))))
	if err != nil {
		t.Fatal(err)
	}
	first := time.Date(2024, 3, 5, 6, 7, 8, 0, time.UTC)
	last := time.Date(2024, 3, 5, 6, 9, 0, 0, time.UTC)
	if h.FirstFailureAt != first || h.LastFailureAt != last || h.LastStage != "retry-2" || h.LastError != "c" {
		t.Fatalf("first %v, last %v %q %q", h.FirstFailureAt, h.LastFailureAt, h.LastStage, h.LastError)
	}
}

func TestParseHistoryRejectsOversizedHeaders(t *testing.T) {
	const limit = 8 << 10
	t.Run("origin", func(t *testing.T) {
		topic := strings.Repeat("t", limit-len("/5@1"))
		h, err := envelope.ParseHistory(recordWith(replace(fullHistory().Headers(), envelope.HeaderOrigin, []byte(topic+"/5@1"))))
		if err != nil || h.OriginalTopic != topic {
			t.Fatalf("a %d-byte origin: %v", limit, err)
		}
		over := []byte("t" + topic + "/5@1")
		wantHeaderError(t, recordWith(replace(fullHistory().Headers(), envelope.HeaderOrigin, over)), envelope.HeaderOrigin)
	})
	t.Run("errors", func(t *testing.T) {
		const errorsLimit = 16 << 10
		pad := errorsLimit - len(failureList(1))
		list := strings.Replace(string(failureList(1)), `"error":"x"`, `"error":"x`+strings.Repeat("e", pad)+`"`, 1)
		h, err := envelope.ParseHistory(recordWith(replace(fullHistory().Headers(), envelope.HeaderErrors, []byte(list))))
		if err != nil || len(h.LastError) != pad+1 {
			t.Fatalf("a %d-byte error list: %v", len(list), err)
		}
		over := strings.Replace(list, `"error":"x`, `"error":"xe`, 1)
		wantHeaderError(t, recordWith(replace(fullHistory().Headers(), envelope.HeaderErrors, []byte(over))), envelope.HeaderErrors)
	})
	t.Run("oversized attempts", func(t *testing.T) {
		big := []byte(strings.Repeat("0", limit) + "1")
		wantHeaderError(t, recordWith(replace(fullHistory().Headers(), envelope.HeaderAttempts, big)), envelope.HeaderAttempts)
	})
}

func TestParseHistoryReadsTheLastDuplicateHeader(t *testing.T) {
	hs := append(fullHistory().Headers(), envelope.Header{Key: envelope.HeaderAttempts, Value: []byte("3")})
	h, err := envelope.ParseHistory(recordWith(hs))
	if err != nil {
		t.Fatal(err)
	}
	if h.Attempts != 3 {
		t.Fatalf("Attempts = %d, want the last header's 3", h.Attempts)
	}
}

func TestFailedTruncatesOnARuneBoundary(t *testing.T) {
	msg := strings.Repeat("x", envelope.MaxErrorLen-1) + "é and more"
	h := envelope.Begin(envelope.Record{Topic: "orders"}).Failed("main", t0, msg)
	if !utf8.ValidString(h.LastError) {
		t.Fatalf("truncated error is not valid UTF-8: ...%q", h.LastError[len(h.LastError)-4:])
	}
	got, err := envelope.ParseHistory(recordWith(h.Headers()))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Errors, h.Errors) {
		t.Fatalf("errors changed in the round trip: %d bytes, was %d", len(got.Errors[0].Error), len(h.Errors[0].Error))
	}
}

func TestReplayCountTravels(t *testing.T) {
	in := envelope.Record{Topic: "orders", Headers: []envelope.Header{{Key: envelope.HeaderReplays, Value: []byte("2")}}}
	h := envelope.Begin(in).Failed("main", t0, "x")
	h.ErrorClass = "transient"
	got, err := envelope.ParseHistory(recordWith(h.Headers()))
	if err != nil {
		t.Fatal(err)
	}
	if got.Replays != 2 || got.ErrorClass != "transient" {
		t.Fatalf("replays %d class %q after a hop, want 2 transient", got.Replays, got.ErrorClass)
	}
	if d := envelope.NewDeadLetter(in, got, envelope.ReasonRetriesExhausted); d.Replays != 2 {
		t.Fatalf("DLQ record says %d replays, want 2", d.Replays)
	}
	garbled := envelope.Record{Headers: []envelope.Header{{Key: envelope.HeaderReplays, Value: []byte("many")}}}
	if envelope.Begin(garbled).Replays != 0 {
		t.Fatal("a garbled replay count is not 0")
	}
}
