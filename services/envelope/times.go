package envelope

import "time"

// Every hop of a retried order writes and reads several times, so the form
// stages write, UTC in RFC 3339 with nanoseconds, is encoded and decoded by
// hand. Anything else goes through the time package, and the results are
// the same (FuzzTimes checks both ways).

// appendRFC3339 appends t as t.AppendFormat(b, time.RFC3339Nano) does.
func appendRFC3339(b []byte, t time.Time) []byte {
	if _, off := t.Zone(); off != 0 {
		return t.AppendFormat(b, time.RFC3339Nano)
	}
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, time.RFC3339Nano)
	}
	hour, minute, sec := t.Clock()
	b = append(b, byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-')
	b = append2(b, int(month), '-')
	b = append2(b, day, 'T')
	b = append2(b, hour, ':')
	b = append2(b, minute, ':')
	b = append(b, byte('0'+sec/10), byte('0'+sec%10))
	if ns := t.Nanosecond(); ns != 0 {
		var frac [10]byte
		frac[0] = '.'
		for i := 9; i >= 1; i-- {
			frac[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := 10
		for frac[n-1] == '0' {
			n--
		}
		b = append(b, frac[:n]...)
	}
	return append(b, 'Z')
}

// append2 appends a two-digit number and a separator.
func append2(b []byte, n int, sep byte) []byte {
	return append(b, byte('0'+n/10), byte('0'+n%10), sep)
}

// parseRFC3339 reads v as time.Parse(time.RFC3339Nano, string(v)) does.
func parseRFC3339(v []byte) (time.Time, error) {
	if t, ok := parseUTC(v); ok {
		return t, nil
	}
	return time.Parse(time.RFC3339Nano, string(v))
}

// parseUTC reads exactly the form appendRFC3339 writes for a UTC time:
// YYYY-MM-DDTHH:MM:SS, an optional fraction of 1 to 9 digits, and Z, with
// every field in range. ok is false for anything else.
func parseUTC(v []byte) (t time.Time, ok bool) {
	if len(v) < 20 || v[len(v)-1] != 'Z' || v[4] != '-' || v[7] != '-' || v[10] != 'T' || v[13] != ':' || v[16] != ':' {
		return time.Time{}, false
	}
	year, ok1 := digitsInt(v[0:4])
	month, ok2 := digitsInt(v[5:7])
	day, ok3 := digitsInt(v[8:10])
	hour, ok4 := digitsInt(v[11:13])
	minute, ok5 := digitsInt(v[14:16])
	sec, ok6 := digitsInt(v[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || month < 1 || month > 12 || day < 1 ||
		day > daysIn(time.Month(month), year) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	ns := 0
	if frac := v[19 : len(v)-1]; len(frac) > 0 {
		if len(frac) < 2 || len(frac) > 10 || frac[0] != '.' {
			return time.Time{}, false
		}
		n, ok := digitsInt(frac[1:])
		if !ok {
			return time.Time{}, false
		}
		for range 10 - len(frac) {
			n *= 10
		}
		ns = n
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, ns, time.UTC), true
}

// digits reads a run of at most 18 ASCII digits.
func digits(b []byte) (int64, bool) {
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// digitsInt reads a run of at most 9 ASCII digits, which fit any int.
func digitsInt(b []byte) (int, bool) {
	n, ok := digits(b)
	return int(n), ok
}

func daysIn(m time.Month, year int) int {
	if m == time.February {
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	}
	return 31 - int((m-1)%7%2)
}
