package envelope_test

import (
	"encoding/hex"
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/orderflow/orders/services/envelope"
)

// seedValue is the Avro encoding of the seed's order 1006, Item3, 39.79.
var seedValue, _ = hex.DecodeString("08313030360a4974656d33f6281f42")

func exhausted(t *testing.T) (envelope.Record, envelope.History, envelope.DeadLetter) {
	t.Helper()
	orig := envelope.Record{Topic: "orders", Partition: 2, Offset: 41, Key: []byte("1006"), Value: seedValue}
	h := envelope.Begin(orig)
	stages := []string{"main", "retry-1", "retry-2", "retry-3"}
	for i, s := range stages {
		h = h.Failed(s, t0.Add(time.Duration(i)*time.Second), "product fails processing: Item3")
	}
	// The record failing for good is the copy on the last retry topic.
	last := envelope.Record{Topic: "orders_retry_3", Partition: 0, Offset: 7, Key: orig.Key, Value: orig.Value, Headers: h.Headers()}
	return last, h, envelope.NewDeadLetter(last, h, envelope.ReasonRetriesExhausted)
}

func TestNewDeadLetterFields(t *testing.T) {
	_, h, d := exhausted(t)
	want := envelope.DeadLetter{
		Error:          "product fails processing: Item3",
		Topic:          "orders",
		Partition:      2,
		Offset:         41,
		Key:            "1006",
		RawValueHex:    "08313030360a4974656d33f6281f42",
		RawValueSize:   15,
		Reason:         envelope.ReasonRetriesExhausted,
		Attempts:       4,
		Stage:          "retry-3",
		FirstFailureAt: t0,
		LastFailureAt:  t0.Add(3 * time.Second),
		Errors:         h.Errors,
	}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("NewDeadLetter =\n%+v\nwant\n%+v", d, want)
	}
	var stages []string
	for _, f := range d.Errors {
		stages = append(stages, f.Stage)
	}
	if want := []string{"main", "retry-1", "retry-2", "retry-3"}; !slices.Equal(stages, want) {
		t.Fatalf("error stages %v, want %v", stages, want)
	}
}

func TestNewDeadLetterErrorsAreNeverNull(t *testing.T) {
	r := envelope.Record{Topic: "orders", Partition: 1, Offset: 3, Key: nil, Value: []byte{0xff}}
	d := envelope.NewDeadLetter(r, envelope.Begin(r), envelope.ReasonUndecodable)
	if d.Errors == nil {
		t.Fatal("Errors is nil for a history without failures")
	}
	if len(d.Errors) != 0 {
		t.Fatalf("Errors = %+v, want empty", d.Errors)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(d.Marshal(), &m); err != nil {
		t.Fatal(err)
	}
	if got := string(m["errors"]); got != "[]" {
		t.Fatalf(`"errors" is %s, want []`, got)
	}
	if got := string(m["key"]); got != `""` {
		t.Fatalf(`"key" of a record without key is %s, want ""`, got)
	}
	if got := string(m["raw_value_hex"]); got != `"ff"` {
		t.Fatalf(`"raw_value_hex" is %s, want "ff"`, got)
	}
}

func TestDeadLetterJSONFieldNames(t *testing.T) {
	_, _, d := exhausted(t)
	var m map[string]json.RawMessage
	if err := json.Unmarshal(d.Marshal(), &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"attempts", "error", "errors", "first_failure_at", "key", "last_failure_at",
		"offset", "partition", "raw_value_hex", "raw_value_size", "reason", "replays", "stage", "topic"}
	if !slices.Equal(keys, want) {
		t.Fatalf("JSON fields %v, want %v", keys, want)
	}
	// Every field carries its JSON type and value.
	wantRaw := map[string]string{
		"error":            `"product fails processing: Item3"`,
		"topic":            `"orders"`,
		"partition":        `2`,
		"offset":           `41`,
		"key":              `"1006"`,
		"raw_value_hex":    `"08313030360a4974656d33f6281f42"`,
		"reason":           `"retries_exhausted"`,
		"attempts":         `4`,
		"stage":            `"retry-3"`,
		"first_failure_at": `"2024-03-05T06:07:08.123456789Z"`,
	}
	for k, v := range wantRaw {
		if got := string(m[k]); got != v {
			t.Errorf("%q = %s, want %s", k, got, v)
		}
	}
	var errs []map[string]json.RawMessage
	if err := json.Unmarshal(m["errors"], &errs); err != nil {
		t.Fatal(err)
	}
	if len(errs) != 4 || string(errs[3]["stage"]) != `"retry-3"` || string(errs[3]["attempt"]) != "4" {
		t.Fatalf(`"errors" = %s`, m["errors"])
	}
}

func TestParseDeadLetterRoundTrip(t *testing.T) {
	_, _, d := exhausted(t)
	got, err := envelope.ParseDeadLetter(d.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, d) {
		t.Fatalf("ParseDeadLetter(Marshal()) =\n%+v\nwant\n%+v", got, d)
	}
	raw, err := got.RawValue()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(raw, seedValue) {
		t.Fatalf("RawValue = %x, want %x", raw, seedValue)
	}
}

func TestParseDeadLetterRejectsGarbage(t *testing.T) {
	for _, b := range [][]byte{nil, []byte("not json"), []byte(`{"offset":"forty-one"}`)} {
		if _, err := envelope.ParseDeadLetter(b); err == nil {
			t.Errorf("ParseDeadLetter(%q) succeeded", b)
		}
	}
}

func TestRawValueRejectsBadHex(t *testing.T) {
	if _, err := (envelope.DeadLetter{RawValueHex: "0g"}).RawValue(); err == nil {
		t.Fatal("RawValue of bad hex succeeded")
	}
	if b, err := (envelope.DeadLetter{}).RawValue(); err != nil || len(b) != 0 {
		t.Fatalf("RawValue of an empty value = %x, %v", b, err)
	}
}

func TestDeadLetterOfAHugeValueFitsTheBroker(t *testing.T) {
	big := make([]byte, 900<<10)
	for i := range big {
		big[i] = byte(i)
	}
	r := envelope.Record{Topic: "orders", Key: []byte("k"), Value: big}
	d := envelope.NewDeadLetter(r, envelope.Begin(r).Failed("main", time.Now(), "boom"), envelope.ReasonUndecodable)
	if !d.RawValueTruncated || d.RawValueSize != len(big) || len(d.RawValueHex) != 2*envelope.MaxRawValue {
		t.Fatalf("truncated %v size %d hex %d bytes", d.RawValueTruncated, d.RawValueSize, len(d.RawValueHex))
	}
	raw, err := d.RawValue()
	if err != nil || string(raw) != string(big[:envelope.MaxRawValue]) {
		t.Fatalf("the kept prefix is not the value's: %v", err)
	}
	if n := len(d.Marshal()); n > 200<<10 {
		t.Fatalf("DLQ value of %d bytes", n)
	}
}
