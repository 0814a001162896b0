package envelope

import "time"

// Buffer is a stage's memory for the history headers of one partition:
// the headers of a batch's outputs are encoded into it, and it keeps what
// repeats from record to record. A stage handles a batch at one reading of
// the clock, and the records of a retry topic come in runs that failed
// together, so their histories share times, topics, stages and error
// texts; the buffer formats, parses and allocates each of those once for
// as long as it recurs. The zero value is ready to use; a Buffer is not
// safe for concurrent use. Methods that take one accept nil, and then
// keep nothing.
type Buffer struct {
	b     []byte
	hs    []Header
	times [MaxErrors + 1]formattedTime // a history's due time and failures
	next  int                          // the entry of times to replace next
	strs  [8]string
	nstr  int // strings interned so far
	// The error lists parsed last, as text and as read: the records of a
	// retry topic that failed together carry the same few.
	lists    [4]parsedList
	nextList int
	// The error lists Failed made last, and those AppendHeaders encoded
	// since the last Reset: the orders of a batch that fail together, at
	// one reading of the clock, get the same list.
	failed     [4]failedList
	nextFailed int
	encoded    [4]encodedList
	nextEnc    int
}

// failedList is the list Failed made from the list before, identified by
// its first element and length, and one failure more.
type failedList struct {
	before *Failure
	n      int
	f      Failure
	list   []Failure
}

// encodedList is the JSON text of a list, identified as in failedList.
type encodedList struct {
	first *Failure
	n     int
	text  []byte
}

// listID identifies a list by its memory: lists are never changed once
// made, and the buffer keeps every list it identifies reachable.
func listID(fs []Failure) (*Failure, int) {
	if len(fs) == 0 {
		return nil, 0
	}
	return &fs[0], len(fs)
}

// failedList is the list kept when Failed made one from before and f.
func (buf *Buffer) failedList(before []Failure, f Failure) ([]Failure, bool) {
	if buf == nil {
		return nil, false
	}
	p, n := listID(before)
	for i := range buf.failed {
		if e := &buf.failed[i]; e.list != nil && e.before == p && e.n == n && e.f == f {
			return e.list, true
		}
	}
	return nil, false
}

// keepFailedList remembers that Failed made list from before and f, in
// place of the list kept longest.
func (buf *Buffer) keepFailedList(before []Failure, f Failure, list []Failure) {
	if buf == nil {
		return
	}
	p, n := listID(before)
	buf.failed[buf.nextFailed] = failedList{before: p, n: n, f: f, list: list}
	buf.nextFailed = (buf.nextFailed + 1) % len(buf.failed)
}

// encodedFailures is the text of fs when the buffer encoded that list
// since the last Reset.
func (buf *Buffer) encodedFailures(fs []Failure) ([]byte, bool) {
	if buf == nil || len(fs) == 0 {
		return nil, false
	}
	p, n := listID(fs)
	for i := range buf.encoded {
		if e := &buf.encoded[i]; e.first == p && e.n == n {
			return e.text, true
		}
	}
	return nil, false
}

// keepEncodedFailures remembers that text, in the buffer's memory, is the
// encoding of fs, until the next Reset.
func (buf *Buffer) keepEncodedFailures(fs []Failure, text []byte) {
	if buf == nil || len(fs) == 0 {
		return
	}
	p, n := listID(fs)
	buf.encoded[buf.nextEnc] = encodedList{first: p, n: n, text: text}
	buf.nextEnc = (buf.nextEnc + 1) % len(buf.encoded)
}

// formattedTime is a UTC time and its RFC 3339 text, as appendRFC3339
// writes it.
type formattedTime struct {
	t    time.Time
	text [len("2006-01-02T15:04:05.999999999Z")]byte
	n    int // 0: the entry is empty
}

// Reset makes the buffer's memory free for new headers: every header
// written into it before is overwritten from here on.
func (buf *Buffer) Reset() {
	clear(buf.hs) // no header of the last batch stays reachable from here
	buf.b, buf.hs = buf.b[:0], buf.hs[:0]
	buf.encoded = [len(buf.encoded)]encodedList{} // their text is to be overwritten
}

// reserve makes room for n more bytes and k more headers. When the room
// runs out the buffer moves to new memory; what it held stays where it was,
// for the headers that point to it.
func (buf *Buffer) reserve(n, k int) {
	if cap(buf.b)-len(buf.b) < n {
		buf.b = make([]byte, 0, max(2*cap(buf.b), n, 4<<10))
	}
	if cap(buf.hs)-len(buf.hs) < k {
		buf.hs = make([]Header, 0, max(2*cap(buf.hs), k, 64))
	}
}

// appendTime appends t in UTC as appendTime does, from the text kept when
// t is one of the last times formatted or parsed.
func (buf *Buffer) appendTime(b []byte, t time.Time) []byte {
	if buf == nil {
		return appendTime(b, t)
	}
	t = t.UTC() // also drops the monotonic reading: equal instants compare equal
	for i := range buf.times {
		if e := &buf.times[i]; e.n > 0 && e.t == t {
			return append(b, e.text[:e.n]...)
		}
	}
	start := len(b)
	b = appendRFC3339(b, t)
	if y := t.Year(); y >= 0 && y <= 9999 { // the form parseUTC reads
		buf.keep(t, b[start:])
	}
	return b
}

// parseRFC3339 is parseRFC3339, from the time kept when v is the text of
// one of the last times formatted or parsed.
func (buf *Buffer) parseRFC3339(v []byte) (time.Time, error) {
	if t, ok := buf.parseUTC(v); ok {
		return t, nil
	}
	return parseRFC3339(v)
}

// parseUTC is parseUTC, from the time kept when v is the text of one of
// the last times formatted or parsed.
func (buf *Buffer) parseUTC(v []byte) (time.Time, bool) {
	if buf == nil {
		return parseUTC(v)
	}
	for i := range buf.times {
		if e := &buf.times[i]; e.n > 0 && string(e.text[:e.n]) == string(v) {
			return e.t, true
		}
	}
	t, ok := parseUTC(v)
	// appendRFC3339 writes no trailing zero in a fraction; other texts of
	// the same time are not what it would write, and are not kept.
	if ok && (len(v) == len("2006-01-02T15:04:05Z") || v[len(v)-2] != '0') {
		buf.keep(t, v)
	}
	return t, ok
}

// keep remembers that text is how appendRFC3339 writes the UTC time t, in
// place of the entry kept longest.
func (buf *Buffer) keep(t time.Time, text []byte) {
	e := &buf.times[buf.next]
	if len(text) > len(e.text) {
		return
	}
	e.t, e.n = t, copy(e.text[:], text)
	buf.next = (buf.next + 1) % len(buf.times)
}

// string is string(v), without allocating when v is one of the first
// strings the buffer was asked for: topics, stages, classes and error
// texts, of which a pipeline has few.
func (buf *Buffer) string(v []byte) string {
	if buf == nil {
		return string(v)
	}
	for _, s := range buf.strs[:buf.nstr] {
		if s == string(v) {
			return s
		}
	}
	s := string(v)
	if buf.nstr < len(buf.strs) && len(v) <= MaxErrorLen {
		buf.strs[buf.nstr] = s
		buf.nstr++
	}
	return s
}

// parsedList is an error list's text and what it reads as.
type parsedList struct {
	text []byte
	fs   []Failure
}

// parsedFailures is the list kept when v is the text of one of the error
// lists parsed last.
func (buf *Buffer) parsedFailures(v []byte) ([]Failure, bool) {
	if buf == nil {
		return nil, false
	}
	for i := range buf.lists {
		if l := &buf.lists[i]; l.fs != nil && string(l.text) == string(v) {
			return l.fs, true
		}
	}
	return nil, false
}

// keepFailures remembers that v reads as fs, in place of the list kept
// longest.
func (buf *Buffer) keepFailures(v []byte, fs []Failure) {
	if buf == nil || fs == nil || len(v) > maxErrorsLen {
		return
	}
	l := &buf.lists[buf.nextList]
	l.text, l.fs = append(l.text[:0], v...), fs
	buf.nextList = (buf.nextList + 1) % len(buf.lists)
}
