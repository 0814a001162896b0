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

func TestFailedKeepsTheLatestFailuresOldestFirst(t *testing.T) {
	h := envelope.Begin(envelope.Record{Topic: "orders", Partition: 1, Offset: 2})
	const n = envelope.MaxErrors + 3
	for i := 1; i <= n; i++ {
		at := t0.Add(time.Duration(i) * time.Second)
		h = h.Failed(fmt.Sprintf("s%d", i), at, fmt.Errorf("e%d", i))

		if h.Attempts != i {
			t.Fatalf("after %d failures Attempts = %d", i, h.Attempts)
		}
		if want := min(i, envelope.MaxErrors); len(h.Errors) != want {
			t.Fatalf("after %d failures len(Errors) = %d, want %d", i, len(h.Errors), want)
		}
		// The kept failures are the latest ones, oldest first.
		first := i - len(h.Errors) + 1
		for j, f := range h.Errors {
			k := first + j
			want := envelope.Failure{
				Stage: fmt.Sprintf("s%d", k), Attempt: k,
				At: t0.Add(time.Duration(k) * time.Second), Error: fmt.Sprintf("e%d", k),
			}
			if !reflect.DeepEqual(f, want) {
				t.Fatalf("after %d failures Errors[%d] = %+v, want %+v", i, j, f, want)
			}
		}
		if h.LastStage != fmt.Sprintf("s%d", i) || h.LastError != fmt.Sprintf("e%d", i) || !h.LastFailureAt.Equal(at) {
			t.Fatalf("after %d failures last = %q %q %v", i, h.LastStage, h.LastError, h.LastFailureAt)
		}
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
	h = h.Failed("main", t0, errors.New("a"))
	h = h.Failed("retry-1", t0.Add(time.Minute), errors.New("b"))
	h = h.Failed("retry-2", t0.Add(time.Hour), errors.New("c"))
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
		base = base.Failed("s", t0, fmt.Errorf("e%d", i))
	}
	before := slices.Clone(base.Errors)
	a := base.Failed("a", t0, errors.New("a"))
	b := base.Failed("b", t0, errors.New("b"))
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
	h := envelope.History{}.Failed("main", t0, errors.New(long))
	want := long[:envelope.MaxErrorLen]
	if h.LastError != want {
		t.Fatalf("LastError has %d bytes, want the first %d", len(h.LastError), envelope.MaxErrorLen)
	}
	if h.Errors[0].Error != want {
		t.Fatalf("Errors[0].Error has %d bytes, want the first %d", len(h.Errors[0].Error), envelope.MaxErrorLen)
	}

	exact := strings.Repeat("y", envelope.MaxErrorLen)
	if h := (envelope.History{}).Failed("main", t0, errors.New(exact)); h.LastError != exact {
		t.Fatalf("an error of exactly MaxErrorLen bytes became %d bytes", len(h.LastError))
	}
}

// fullHistory has every field set, with times to the nanosecond in UTC.
func fullHistory() envelope.History {
	h := envelope.Begin(envelope.Record{Topic: "orders", Partition: 5, Offset: 1234567890123})
	h = h.Failed("main", t0, errors.New(`product fails processing: "Item3"`))
	h = h.Failed("retry-1", t0.Add(2*time.Second+1), errors.New("second, with ünïcode"))
	h.DueAt = t0.Add(7*time.Second + 999)
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
	h.FirstFailureAt = h.FirstFailureAt.In(zone)
	h.LastFailureAt = h.LastFailureAt.In(zone)
	h.DueAt = h.DueAt.In(zone)
	r := recordWith(h.Headers())
	v, _ := r.Header(envelope.HeaderFirstFailureAt)
	if want := "2024-03-05T06:07:08.123456789Z"; string(v) != want {
		t.Fatalf("%s = %q, want %q", envelope.HeaderFirstFailureAt, v, want)
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
		envelope.HeaderAttempts, envelope.HeaderOriginalTopic, envelope.HeaderOriginalPartition,
		envelope.HeaderOriginalOffset, envelope.HeaderFirstFailureAt, envelope.HeaderLastFailureAt,
		envelope.HeaderLastStage, envelope.HeaderLastError, envelope.HeaderDueAt, envelope.HeaderErrors,
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
	if v, _ := r.Header(envelope.HeaderAttempts); string(v) != "2" {
		t.Fatalf("%s = %q, want 2", envelope.HeaderAttempts, v)
	}
	if v, _ := r.Header(envelope.HeaderOriginalOffset); string(v) != "1234567890123" {
		t.Fatalf("%s = %q", envelope.HeaderOriginalOffset, v)
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
	required := []string{
		envelope.HeaderAttempts, envelope.HeaderOriginalTopic, envelope.HeaderOriginalPartition,
		envelope.HeaderOriginalOffset, envelope.HeaderFirstFailureAt, envelope.HeaderLastFailureAt,
		envelope.HeaderLastStage, envelope.HeaderLastError, envelope.HeaderDueAt,
	}
	for _, key := range required {
		t.Run(key, func(t *testing.T) {
			wantHeaderError(t, recordWith(without(fullHistory().Headers(), key)), key)
		})
	}
	t.Run("all", func(t *testing.T) {
		wantHeaderError(t, envelope.Record{Topic: "orders_retry_1"}, "missing")
	})
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
		{"non-numeric partition", envelope.HeaderOriginalPartition, "p3"},
		{"negative partition", envelope.HeaderOriginalPartition, "-3"},
		{"non-numeric offset", envelope.HeaderOriginalOffset, "0x10"},
		{"negative offset", envelope.HeaderOriginalOffset, "-10"},
		{"offset overflow", envelope.HeaderOriginalOffset, "99999999999999999999"},
		{"bad first time", envelope.HeaderFirstFailureAt, "yesterday"},
		{"date only last time", envelope.HeaderLastFailureAt, "2024-03-05"},
		{"empty due time", envelope.HeaderDueAt, ""},
		{"unix due time", envelope.HeaderDueAt, "1709618828"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantHeaderError(t, recordWith(replace(fullHistory().Headers(), c.key, []byte(c.value))), c.key)
		})
	}
}

func TestParseHistoryRejectsOversizedHeaders(t *testing.T) {
	const limit = 8 << 10
	fields := map[string]func(envelope.History) string{
		envelope.HeaderLastError:     func(h envelope.History) string { return h.LastError },
		envelope.HeaderOriginalTopic: func(h envelope.History) string { return h.OriginalTopic },
		envelope.HeaderLastStage:     func(h envelope.History) string { return h.LastStage },
	}
	for key, field := range fields {
		t.Run(key, func(t *testing.T) {
			atLimit := strings.Repeat("e", limit)
			h, err := envelope.ParseHistory(recordWith(replace(fullHistory().Headers(), key, []byte(atLimit))))
			if err != nil {
				t.Fatalf("a %d-byte %s: %v", limit, key, err)
			}
			if field(h) != atLimit {
				t.Fatalf("the %d-byte %s was not read", limit, key)
			}
			over := []byte(strings.Repeat("e", limit+1))
			wantHeaderError(t, recordWith(replace(fullHistory().Headers(), key, over)), key)
		})
	}
	t.Run("oversized attempts", func(t *testing.T) {
		big := []byte(strings.Repeat("0", limit) + "1")
		wantHeaderError(t, recordWith(replace(fullHistory().Headers(), envelope.HeaderAttempts, big)), envelope.HeaderAttempts)
	})
}

func TestParseHistoryDropsGarbledErrors(t *testing.T) {
	tooMany := make([]byte, 0)
	tooMany = append(tooMany, '[')
	for i := range envelope.MaxErrors + 1 {
		if i > 0 {
			tooMany = append(tooMany, ',')
		}
		tooMany = append(tooMany, `{"stage":"main","attempt":1,"at":"2024-03-05T06:07:08Z","error":"x"}`...)
	}
	tooMany = append(tooMany, ']')
	cases := map[string][]byte{
		"not json":     []byte("garbled{"),
		"wrong type":   []byte(`{"stage":"main"}`),
		"bad time":     []byte(`[{"stage":"main","attempt":1,"at":"never","error":"x"}]`),
		"too many":     tooMany,
		"oversized":    []byte(`[{"stage":"main","attempt":1,"at":"2024-03-05T06:07:08Z","error":"` + strings.Repeat("x", 8<<10) + `"}]`),
		"empty header": {},
	}
	for name, v := range cases {
		t.Run(name, func(t *testing.T) {
			want := fullHistory()
			got, err := envelope.ParseHistory(recordWith(replace(want.Headers(), envelope.HeaderErrors, v)))
			if err != nil {
				t.Fatalf("ParseHistory: %v, want the garbled errors dropped without an error", err)
			}
			if got.Errors != nil {
				t.Fatalf("Errors = %+v, want nil", got.Errors)
			}
			want.Errors = nil
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("ParseHistory = %+v, want %+v", got, want)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		got, err := envelope.ParseHistory(recordWith(without(fullHistory().Headers(), envelope.HeaderErrors)))
		if err != nil || got.Errors != nil || got.Attempts != 2 {
			t.Fatalf("ParseHistory = %+v, %v; want the history without errors", got, err)
		}
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
	h := envelope.History{}.Failed("main", t0, errors.New(msg))
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
	h := envelope.Begin(in).Failed("main", t0, errors.New("x"))
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
