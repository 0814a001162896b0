package envelope

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// Header names of the retry history. Every hop replaces them all. They are
// few on purpose: a Kafka client encodes, and a broker stores, each header
// of each record on its own, so a failed order's cost grows with their
// number.
const (
	HeaderAttempts = "x-retry-attempts"
	// HeaderOrigin is where the order entered the pipeline, as
	// topic/partition@offset.
	HeaderOrigin = "x-retry-origin"
	HeaderDueAt  = "x-retry-due-at"
	// HeaderErrors is the JSON list of the failures: the first and the
	// latest ones, oldest first, at most MaxErrors.
	HeaderErrors = "x-retry-errors"
	// HeaderErrorClass is a short, stable name for the kind of the latest
	// failure (failing_product, transient, undecodable, ...), for metrics
	// and filtering. Optional when parsing.
	HeaderErrorClass = "x-retry-error-class"
	// HeaderReplays counts how many times the order was sent back from the
	// DLQ. Written only when it is not 0; it travels from hop to hop.
	HeaderReplays = "x-replay-count"
	// HeaderReplaySource names the DLQ record a replayed order came from,
	// as topic/partition@offset.
	HeaderReplaySource = "x-replay-source"
	// HeaderDLQReason is the reason of a DLQ record, beside its JSON value.
	HeaderDLQReason = "x-dlq-reason"
)

// HeaderProcessedBy names the stage that processed an order, on records of
// the processed topic, beside HeaderAttempts.
const HeaderProcessedBy = "x-processed-by"

// MaxErrors is how many failures the history keeps: the first and the
// latest ones.
const MaxErrors = 5

// MaxErrorLen bounds one error message in the history, in bytes.
const MaxErrorLen = 256

// maxHeaderLen bounds a history header read from an untrusted record.
const maxHeaderLen = 8 << 10

// maxErrorsLen bounds the error list read from an untrusted record. It holds
// what Headers writes at most: MaxErrors errors of MaxErrorLen bytes, each
// byte escaped in six.
const maxErrorsLen = 16 << 10

// ErrHeaders marks a retry record whose history headers are missing or garbled.
var ErrHeaders = errors.New("retry headers")

// Failure is one failed processing attempt.
type Failure struct {
	Stage   string    `json:"stage"`
	Attempt int       `json:"attempt"`
	At      time.Time `json:"at"`
	Error   string    `json:"error"`
}

// History is where an order came from and how it failed so far.
type History struct {
	// Attempts is the number of processing attempts made so far.
	Attempts          int
	OriginalTopic     string
	OriginalPartition int
	OriginalOffset    int64
	FirstFailureAt    time.Time
	LastFailureAt     time.Time
	LastStage         string
	LastError         string
	// ErrorClass is the kind of the latest failure.
	ErrorClass string
	// Replays is how many times the order was replayed from the DLQ.
	Replays int
	// DueAt is when the next stage may process the record.
	DueAt time.Time
	// Errors holds the first failure and the latest ones, oldest first, at
	// most MaxErrors. On the wire it stands for FirstFailureAt and the
	// Last fields too: Headers writes it alone, and ParseHistory sets them
	// from its first and last entries.
	Errors []Failure
}

// Begin starts the history of a record read from the input topic, keeping
// its replay count if it was sent back from the DLQ.
func Begin(r Record) History {
	h := History{OriginalTopic: r.Topic, OriginalPartition: r.Partition, OriginalOffset: r.Offset}
	h.Replays = replays(r)
	return h
}

// replays reads the replay count of a record; absent or garbled is 0.
func replays(r Record) int {
	v, _ := r.Header(HeaderReplays)
	return parseReplays(v)
}

// parseReplays reads a replay count; empty or garbled is 0.
func parseReplays(v []byte) int {
	if len(v) == 0 || len(v) > 10 {
		return 0
	}
	n, err := strconv.Atoi(string(v))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// Failed records one more failed attempt in stage at time at, failing
// with the error message msg.
func (h History) Failed(stage string, at time.Time, msg string) History {
	return h.failed(stage, at, msg, nil)
}

// Failed is History.Failed, with the new error list shared with the other
// histories buf saw fail the same way: the same list before, then the same
// failure. The list must not be changed.
func (buf *Buffer) Failed(h History, stage string, at time.Time, msg string) History {
	return h.failed(stage, at, msg, buf)
}

func (h History) failed(stage string, at time.Time, msg string, buf *Buffer) History {
	msg = truncate(msg, MaxErrorLen)
	h.Attempts++
	if h.FirstFailureAt.IsZero() {
		h.FirstFailureAt = at
	}
	h.LastFailureAt = at
	h.LastStage = stage
	h.LastError = msg
	f := Failure{Stage: stage, Attempt: h.Attempts, At: at, Error: msg}
	if errs, ok := buf.failedList(h.Errors, f); ok {
		h.Errors = errs
		return h
	}
	errs := make([]Failure, 0, min(len(h.Errors)+1, MaxErrors))
	if n := len(h.Errors); n >= MaxErrors {
		// The first failure stays: it tells when and how the order began
		// to fail. The oldest of the others give way.
		errs = append(errs, h.Errors[0])
		errs = append(errs, h.Errors[n-MaxErrors+2:]...)
	} else {
		errs = append(errs, h.Errors...)
	}
	errs = append(errs, f)
	buf.keepFailedList(h.Errors, f, errs)
	h.Errors = errs
	return h
}

// Indexes of historyKeys. The first four are required.
const (
	iAttempts = iota
	iOrigin
	iDueAt
	iErrors
	iErrorClass
	iReplays
)

// historyKeys are the history headers in the order Headers writes them.
var historyKeys = [...]string{HeaderAttempts, HeaderOrigin, HeaderDueAt, HeaderErrors, HeaderErrorClass, HeaderReplays}

// historyKeyIndex is the index of key in historyKeys, or -1. It is asked
// of every header of every retried record, so it compares one string at most.
func historyKeyIndex(key string) int {
	const retry = "x-retry-"
	if len(key) <= len(retry) || key[:len(retry)] != retry {
		if key == HeaderReplays {
			return iReplays
		}
		return -1
	}
	// The length of the rest, then its first letter, tell them apart; the
	// comparison at the end confirms the guess.
	var i int
	switch rest := key[len(retry):]; len(rest) {
	case len("attempts"):
		i = iAttempts
	case len("origin"): // and due-at, errors
		switch rest[0] {
		case 'o':
			i = iOrigin
		case 'd':
			i = iDueAt
		default:
			i = iErrors
		}
	case len("error-class"):
		i = iErrorClass
	default:
		return -1
	}
	if historyKeys[i] != key {
		return -1
	}
	return i
}

// Headers encodes h as record headers; their values share one buffer. The
// error list stands for the first and the latest failure: ParseHistory
// reads FirstFailureAt, LastFailureAt, LastStage and LastError from it.
func (h History) Headers() []Header {
	buf := Buffer{b: make([]byte, 0, h.headersSize()), hs: make([]Header, 0, len(historyKeys))}
	return h.AppendHeaders(&buf)
}

// AppendHeaders is Headers, written into buf: the headers and their values
// stay valid until buf is reset.
func (h History) AppendHeaders(buf *Buffer) []Header {
	buf.reserve(h.headersSize(), len(historyKeys))
	b := buf.b
	start := len(b)
	var end [len(historyKeys)]int
	b = strconv.AppendInt(b, int64(h.Attempts), 10)
	end[iAttempts] = len(b)
	b = append(b, h.OriginalTopic...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(h.OriginalPartition), 10)
	b = append(b, '@')
	b = strconv.AppendInt(b, h.OriginalOffset, 10)
	end[iOrigin] = len(b)
	b = buf.appendTime(b, h.DueAt)
	end[iDueAt] = len(b)
	// A list the buffer encoded before in this batch is not written again:
	// the header shares its text.
	errs, shared := buf.encodedFailures(h.Errors)
	if !shared {
		b = appendFailures(b, h.Errors, buf)
	}
	end[iErrors] = len(b)
	if h.ErrorClass != "" {
		b = append(b, h.ErrorClass...)
		end[iErrorClass] = len(b)
	}
	if h.Replays != 0 {
		b = strconv.AppendInt(b, int64(h.Replays), 10)
		end[iReplays] = len(b)
	}
	// Values past the room reserved moved b to new memory: the headers
	// point to wherever b is now.
	buf.b = b
	hs := buf.hs
	first := len(hs)
	for i, k := range historyKeys {
		if i > iErrors && end[i] == 0 {
			continue // not written
		}
		v := b[start:end[i]:end[i]]
		if i == iErrors {
			if shared {
				v = errs
			} else {
				buf.keepEncodedFailures(h.Errors, v)
			}
		}
		hs = append(hs, Header{k, v})
		start = end[i]
	}
	buf.hs = hs
	return hs[first:len(hs):len(hs)]
}

// headersSize is about the most bytes the values of h's headers take. The
// numbers and the due time take at most 100 bytes; an error in the list 80
// besides its texts, which are rarely escaped.
func (h History) headersSize() int {
	size := 100 + len(h.OriginalTopic) + len(h.ErrorClass)
	for _, f := range h.Errors {
		size += 80 + len(f.Stage) + len(f.Error)
	}
	return size
}

// ParseHistory reads the history headers of a record on a retry topic. A
// missing or garbled header is an error wrapping ErrHeaders.
func ParseHistory(r Record) (History, error) { return parseHistory(r, nil) }

// ParseHistory is ParseHistory with what recurs kept in buf. The history
// stays valid after buf is reset; its Errors may be those of other
// histories the buffer read, and must not be changed (Failed makes a new
// list).
func (buf *Buffer) ParseHistory(r Record) (History, error) { return parseHistory(r, buf) }

func parseHistory(r Record, buf *Buffer) (History, error) {
	// One pass over the headers finds every history header; the last of a
	// name wins, as with Record.Header.
	var found [len(historyKeys)][]byte
	var seen [len(historyKeys)]bool
	for _, hd := range r.Headers {
		if i := historyKeyIndex(hd.Key); i >= 0 {
			found[i], seen[i] = hd.Value, true
		}
	}
	// The required headers in the order their errors are reported.
	for i := range iErrorClass {
		limit := maxHeaderLen
		if i == iErrors {
			limit = maxErrorsLen
		}
		switch {
		case !seen[i]:
			return History{}, missing(historyKeys[i])
		case len(found[i]) > limit:
			return History{}, tooLong(historyKeys[i], found[i])
		}
	}
	var h History
	attempts, ok := count(found[iAttempts])
	if !ok {
		return History{}, fmt.Errorf("%w: %s is not a count: %q", ErrHeaders, HeaderAttempts, truncate(string(found[iAttempts]), 32))
	}
	if attempts < 1 || attempts > math.MaxInt32 {
		return History{}, fmt.Errorf("%w: %s is %d, want at least 1", ErrHeaders, HeaderAttempts, attempts)
	}
	h.Attempts = int(attempts)
	if h.OriginalTopic, h.OriginalPartition, h.OriginalOffset, ok = parseOrigin(found[iOrigin], buf); !ok {
		return History{}, fmt.Errorf("%w: %s is not topic/partition@offset: %q", ErrHeaders, HeaderOrigin, truncate(string(found[iOrigin]), 64))
	}
	var err error
	if h.DueAt, err = parseTime(HeaderDueAt, found[iDueAt], buf); err != nil {
		return History{}, err
	}
	errs, ok := parseFailures(found[iErrors], buf)
	if !ok || len(errs) == 0 || len(errs) > MaxErrors {
		return History{}, fmt.Errorf("%w: %s is not a JSON list of 1 to %d failures: %q", ErrHeaders, HeaderErrors, MaxErrors, truncate(string(found[iErrors]), 64))
	}
	h.Errors = errs
	first, last := errs[0], errs[len(errs)-1]
	h.FirstFailureAt, h.LastFailureAt, h.LastStage, h.LastError = first.At, last.At, last.Stage, last.Error
	if v := found[iErrorClass]; seen[iErrorClass] && len(v) <= 64 {
		h.ErrorClass = buf.string(v)
	}
	if seen[iReplays] {
		h.Replays = parseReplays(found[iReplays])
	}
	return h, nil
}

// parseOrigin reads topic/partition@offset. Kafka's topic names hold
// neither '/' nor '@', so the last of each splits it.
func parseOrigin(v []byte, buf *Buffer) (topic string, partition int, offset int64, ok bool) {
	at := bytes.LastIndexByte(v, '@')
	if at < 0 {
		return "", 0, 0, false
	}
	slash := bytes.LastIndexByte(v[:at], '/')
	if slash < 0 {
		return "", 0, 0, false
	}
	p, ok := count(v[slash+1 : at])
	if !ok || p > math.MaxInt32 {
		return "", 0, 0, false
	}
	o, ok := count(v[at+1:])
	if !ok {
		return "", 0, 0, false
	}
	return buf.string(v[:slash]), int(p), o, true
}

// ParseDueAt reads the due time alone, with the errors ParseHistory gives
// for it. A retry stage asks it of every record it waits for; the rest of
// the history is checked when the record is handled.
func ParseDueAt(r Record) (time.Time, error) { return parseDueAt(r, nil) }

// ParseDueAt is ParseDueAt with what recurs kept in buf.
func (buf *Buffer) ParseDueAt(r Record) (time.Time, error) { return parseDueAt(r, buf) }

func parseDueAt(r Record, buf *Buffer) (time.Time, error) {
	for i := len(r.Headers) - 1; i >= 0; i-- {
		if r.Headers[i].Key == HeaderDueAt {
			return parseTime(HeaderDueAt, r.Headers[i].Value, buf)
		}
	}
	return time.Time{}, missing(HeaderDueAt)
}

func missing(key string) error { return fmt.Errorf("%w: missing %s", ErrHeaders, key) }

// parseTime reads a time header.
func parseTime(key string, v []byte, buf *Buffer) (time.Time, error) {
	if len(v) > maxHeaderLen {
		return time.Time{}, tooLong(key, v)
	}
	t, err := buf.parseRFC3339(v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %s is not an RFC 3339 time: %q", ErrHeaders, key, truncate(string(v), 40))
	}
	return t, nil
}

func tooLong(key string, v []byte) error {
	return fmt.Errorf("%w: %s is %d bytes long", ErrHeaders, key, len(v))
}

// count reads a non-negative decimal that fits an int64, as
// strconv.ParseInt does with an optional sign.
func count(v []byte) (int64, bool) {
	if len(v) > 0 && len(v) <= 18 && v[0] != '+' && v[0] != '-' {
		return digits(v)
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	return n, err == nil && n >= 0
}

func appendTime(b []byte, t time.Time) []byte { return appendRFC3339(b, t.UTC()) }

// truncate cuts s to at most n bytes, on a UTF-8 character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
