package envelope

import (
	"math/rand/v2"
	"testing"
	"time"
)

// FuzzTimes checks the hand-written time codec against the time package:
// the same text for any time, and the same time or an error for any text.
func FuzzTimes(f *testing.F) {
	for _, s := range []string{
		"2024-03-05T06:07:08.123456789Z", "2024-03-05T06:07:08Z", "2024-02-29T23:59:59.5Z", "2023-02-29T00:00:00Z",
		"2024-03-05T06:07:08.1234567890Z", "2024-03-05T06:07:08.Z", "2024-03-05t06:07:08z", "2024-03-05T06:07:08+01:00",
		"0000-01-01T00:00:00Z", "9999-12-31T23:59:60Z", "2024-13-05T06:07:08Z", "2024-03-05T24:00:00Z", "2024-03-05T06:07:08,5Z",
	} {
		f.Add(s, int64(0), int64(0))
	}
	f.Add("", int64(1709618828123456789), int64(3600))
	f.Add("", int64(-62135596800000000), int64(0))
	f.Fuzz(func(t *testing.T, s string, unixNano, offset int64) {
		got, gotErr := parseRFC3339([]byte(s))
		want, wantErr := time.Parse(time.RFC3339Nano, s)
		gotZone, gotOff := got.Zone()
		wantZone, wantOff := want.Zone()
		if (gotErr == nil) != (wantErr == nil) || !got.Equal(want) || gotZone != wantZone || gotOff != wantOff {
			t.Fatalf("parse %q = %v, %v; time.Parse = %v, %v", s, got, gotErr, want, wantErr)
		}
		// Through a Buffer, twice (kept the first time, found the second),
		// and formatting the time read: the same as without.
		var buf Buffer
		for range 2 {
			bgot, bErr := buf.parseRFC3339([]byte(s))
			bZone, bOff := bgot.Zone()
			if (bErr == nil) != (gotErr == nil) || !bgot.Equal(got) || bZone != gotZone || bOff != gotOff {
				t.Fatalf("buffered parse %q = %v, %v; unbuffered %v, %v", s, bgot, bErr, got, gotErr)
			}
			if gotErr == nil {
				if b, want := string(buf.appendTime(nil, bgot)), string(appendTime(nil, got)); b != want {
					t.Fatalf("buffered append of %q read = %q, want %q", s, b, want)
				}
			}
		}
		zone := time.FixedZone("z", int(offset%(24*3600)))
		for _, tm := range []time.Time{time.Unix(0, unixNano), time.Unix(0, unixNano).In(zone), time.Unix(unixNano/7, unixNano%1e9).UTC()} {
			if got, want := string(appendRFC3339(nil, tm)), tm.Format(time.RFC3339Nano); got != want {
				t.Fatalf("append %v = %q, want %q", tm, got, want)
			}
			want := string(appendTime(nil, tm))
			for range 2 {
				if got := string(buf.appendTime(nil, tm)); got != want {
					t.Fatalf("buffered append %v = %q, want %q", tm, got, want)
				}
				back, err := buf.parseRFC3339([]byte(want))
				wantBack, wantErr := parseRFC3339([]byte(want))
				if (err == nil) != (wantErr == nil) || back != wantBack {
					t.Fatalf("buffered parse of %q = %v, %v; want %v, %v", want, back, err, wantBack, wantErr)
				}
			}
		}
	})
}

// TestTimesRoundTrip runs the codec over many times a stage could write.
func TestTimesRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		tm := time.Unix(rng.Int64N(1<<36), rng.Int64N(1e9)).UTC()
		if rng.IntN(4) == 0 {
			tm = tm.Truncate(time.Duration(1) * time.Millisecond)
		}
		text := appendRFC3339(nil, tm)
		if want := tm.Format(time.RFC3339Nano); string(text) != want {
			t.Fatalf("append %v = %q, want %q", tm, text, want)
		}
		back, ok := parseUTC(text)
		if !ok || !back.Equal(tm) || back.Location() != time.UTC {
			t.Fatalf("parse %q = %v, %v; want %v", text, back, ok, tm)
		}
	}
}
