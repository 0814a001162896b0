package envelope

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// The error list is written and read by every hop of a retried order, so it
// is encoded by hand rather than through reflection. The text is JSON that
// encoding/json reads back to the same list; reading takes a fast path for
// exactly what appendFailures writes and hands anything else, such as a
// header written by another producer, to encoding/json.

// appendFailures appends fs as a JSON array, with the times in UTC,
// formatted through buf (which may be nil).
func appendFailures(b []byte, fs []Failure, buf *Buffer) []byte {
	if fs == nil {
		return append(b, "null"...)
	}
	for _, f := range fs {
		if y := f.At.UTC().Year(); y < 0 || y > 9999 {
			// encoding/json refuses such times; keep its behaviour.
			v, err := json.Marshal(fs)
			if err != nil {
				return append(b, "null"...)
			}
			return append(b, v...)
		}
	}
	b = append(b, '[')
	for i, f := range fs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"stage":`...)
		b = appendJSONString(b, f.Stage)
		b = append(b, `,"attempt":`...)
		b = strconv.AppendInt(b, int64(f.Attempt), 10)
		b = append(b, `,"at":"`...)
		b = buf.appendTime(b, f.At)
		b = append(b, `","error":`...)
		b = appendJSONString(b, f.Error)
		b = append(b, '}')
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes
// U+FFFD, as with encoding/json.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// parseFailures reads a JSON error list; ok is false if it is not valid.
func parseFailures(v []byte, buf *Buffer) ([]Failure, bool) {
	if fs, ok := buf.parsedFailures(v); ok {
		return fs, true
	}
	fs, ok := parseFailuresFast(v, buf)
	if !ok {
		if fs, ok = parseFailuresJSON(v); !ok {
			return nil, false
		}
	}
	buf.keepFailures(v, fs)
	return fs, true
}

func parseFailuresJSON(v []byte) (fs []Failure, ok bool) {
	if err := json.Unmarshal(v, &fs); err != nil {
		return nil, false
	}
	return fs, true
}

// parseFailuresFast reads the exact form appendFailures writes, with no
// escapes in strings and at most MaxErrors failures; ok is false for
// anything else. Its strings and times come from buf (which may be nil).
func parseFailuresFast(v []byte, buf *Buffer) ([]Failure, bool) {
	if string(v) == "null" {
		return nil, true
	}
	p := failureParser{b: v}
	if !p.lit("[") {
		return nil, false
	}
	if p.lit("]") {
		return []Failure{}, p.end()
	}
	// Each failure with where its stage and error are in v, until the list
	// is known to be whole.
	type parsed struct {
		f          Failure
		stage, msg span
	}
	var list [MaxErrors]parsed
	n := 0
	for {
		if n == len(list) {
			return nil, false
		}
		e := &list[n]
		var at span
		ok := p.lit(`{"stage":`) && p.raw(&e.stage) && p.lit(`,"attempt":`) && p.int(&e.f.Attempt) &&
			p.lit(`,"at":`) && p.raw(&at) && p.lit(`,"error":`) && p.raw(&e.msg) && p.lit("}")
		if !ok {
			return nil, false
		}
		if t, utc := buf.parseUTC(at.of(v)); utc {
			e.f.At = t
		} else if e.f.At.UnmarshalText(at.of(v)) != nil {
			return nil, false
		}
		n++
		if p.lit("]") {
			break
		}
		if !p.lit(",") {
			return nil, false
		}
	}
	if !p.end() {
		return nil, false
	}
	fs := make([]Failure, n)
	for i, e := range list[:n] {
		fs[i] = e.f
		fs[i].Stage, fs[i].Error = buf.string(e.stage.of(v)), buf.string(e.msg.of(v))
	}
	return fs, true
}

// span is where a string is in the bytes being parsed.
type span struct{ from, to int }

func (s span) of(b []byte) []byte { return b[s.from:s.to] }

type failureParser struct {
	b []byte
	i int
}

func (p *failureParser) end() bool { return p.i == len(p.b) }

func (p *failureParser) lit(s string) bool {
	if !bytes.HasPrefix(p.b[p.i:], []byte(s)) {
		return false
	}
	p.i += len(s)
	return true
}

// raw reads a string without escapes or control characters, in valid
// UTF-8, and gives where its bytes are, without the quotes.
func (p *failureParser) raw(out *span) bool {
	if !p.lit(`"`) {
		return false
	}
	rest := p.b[p.i:]
	n := bytes.IndexByte(rest, '"')
	if n < 0 {
		return false
	}
	s := rest[:n]
	for _, c := range s {
		if c < 0x20 || c == '\\' {
			return false
		}
	}
	if !utf8.Valid(s) {
		return false
	}
	*out = span{p.i, p.i + n}
	p.i += n + 1
	return true
}

// int reads a JSON integer that fits an int.
func (p *failureParser) int(out *int) bool {
	start := p.i
	if p.i < len(p.b) && p.b[p.i] == '-' {
		p.i++
	}
	digits := p.i
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	if p.i == digits || (p.b[digits] == '0' && p.i-digits > 1) {
		return false
	}
	if p.i < len(p.b) && (p.b[p.i] == '.' || p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		return false
	}
	n, err := strconv.Atoi(string(p.b[start:p.i]))
	if err != nil {
		return false
	}
	*out = n
	return true
}
