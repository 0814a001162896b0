package envelope

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// FuzzFailures checks the hand-written error list against encoding/json:
// whatever appendFailures writes, encoding/json reads back as the same
// list, and parseFailures reads any input exactly as encoding/json does.
func FuzzFailures(f *testing.F) {
	f.Add("main", 1, int64(1700000000123456789), "product fails processing: Item3", []byte(`[{"stage":"main","attempt":1,"at":"2024-03-05T06:07:08.123456789Z","error":"x"}]`))
	f.Add("retry-1", 2, int64(0), "quote \" back\\slash \n\t\x01 <&> \xff \u2028 é", []byte(`null`))
	f.Add("", -3, int64(-5), "", []byte(`[{"stage":"a","attempt":01,"at":"2024-03-05T06:07:08Z","error":"b"}]`))
	f.Add("s", 0, int64(1), "e", []byte(` [ {"attempt":2, "stage":"b","at":"2024-03-05T06:07:08+02:00","error":"\u0041"} ] `))
	f.Fuzz(func(t *testing.T, stage string, attempt int, at int64, msg string, raw []byte) {
		fs := []Failure{{Stage: stage, Attempt: attempt, At: time.Unix(0, at).UTC(), Error: msg}, {Stage: msg, Attempt: -attempt, At: time.Unix(0, at/3).In(time.FixedZone("x", 5400)), Error: stage}}
		for _, list := range [][]Failure{nil, {}, fs} {
			enc := appendFailures(nil, list, nil)
			var want []Failure
			wantErr := json.Unmarshal(enc, &want)
			if wantErr != nil {
				t.Fatalf("encoding/json cannot read %s: %v", enc, wantErr)
			}
			got, ok := parseFailures(enc, nil)
			if !ok || !reflect.DeepEqual(got, want) {
				t.Fatalf("parseFailures(%s) = %+v, %v; encoding/json: %+v", enc, got, ok, want)
			}
			if len(list) > 0 {
				std, _ := json.Marshal(list)
				var back []Failure
				_ = json.Unmarshal(std, &back)
				if !reflect.DeepEqual(normalized(want), normalized(back)) {
					t.Fatalf("appendFailures wrote %s, encoding/json %s: they read back differently", enc, std)
				}
			}
		}
		var want []Failure
		wantErr := json.Unmarshal(raw, &want)
		got, ok := parseFailures(raw, nil)
		if ok != (wantErr == nil) || (ok && !reflect.DeepEqual(got, want)) {
			t.Fatalf("parseFailures(%q) = %+v, %v; encoding/json: %+v, %v", raw, got, ok, want, wantErr)
		}
	})
}

func normalized(fs []Failure) []Failure {
	out := make([]Failure, len(fs))
	for i, f := range fs {
		f.At = f.At.UTC()
		out[i] = f
	}
	return out
}
