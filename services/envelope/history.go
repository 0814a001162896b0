package envelope

import (
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// Header names of the retry history. Every hop replaces them all.
const (
	HeaderAttempts          = "x-retry-attempts"
	HeaderOriginalTopic     = "x-retry-original-topic"
	HeaderOriginalPartition = "x-retry-original-partition"
	HeaderOriginalOffset    = "x-retry-original-offset"
	HeaderFirstFailureAt    = "x-retry-first-failure-at"
	HeaderLastFailureAt     = "x-retry-last-failure-at"
	HeaderLastStage         = "x-retry-last-stage"
	HeaderLastError         = "x-retry-last-error"
	HeaderDueAt             = "x-retry-due-at"
	HeaderErrors            = "x-retry-errors"
	// HeaderErrorClass is a short, stable name for the kind of the latest
	// failure (failing_product, transient, undecodable, ...), for metrics
	// and filtering. Optional when parsing.
	HeaderErrorClass = "x-retry-error-class"
	// HeaderReplays counts how many times the order was sent back from the
	// DLQ. Optional when parsing; it travels from hop to hop.
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

// MaxErrors is how many of the latest failures the history keeps.
const MaxErrors = 5

// MaxErrorLen bounds one error message in the history, in bytes.
const MaxErrorLen = 256

// maxHeaderLen bounds a history header read from an untrusted record.
const maxHeaderLen = 8 << 10

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
	// Errors holds the latest failures, oldest first, at most MaxErrors.
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

// Failed records one more failed attempt in stage at time at.
func (h History) Failed(stage string, at time.Time, err error) History {
	msg := truncate(err.Error(), MaxErrorLen)
	h.Attempts++
	if h.FirstFailureAt.IsZero() {
		h.FirstFailureAt = at
	}
	h.LastFailureAt = at
	h.LastStage = stage
	h.LastError = msg
	keep := h.Errors
	if n := len(keep); n >= MaxErrors {
		keep = keep[n-MaxErrors+1:]
	}
	errs := make([]Failure, 0, len(keep)+1)
	errs = append(errs, keep...)
	h.Errors = append(errs, Failure{Stage: stage, Attempt: h.Attempts, At: at, Error: msg})
	return h
}

// Indexes of historyKeys.
const (
	iAttempts = iota
	iOriginalTopic
	iOriginalPartition
	iOriginalOffset
	iFirstFailureAt
	iLastFailureAt
	iLastStage
	iLastError
	iDueAt
	iErrors
	iErrorClass
	iReplays
)

// historyKeys are the history headers in the order Headers writes them.
var historyKeys = [...]string{
	HeaderAttempts, HeaderOriginalTopic, HeaderOriginalPartition, HeaderOriginalOffset, HeaderFirstFailureAt,
	HeaderLastFailureAt, HeaderLastStage, HeaderLastError, HeaderDueAt, HeaderErrors,
	HeaderErrorClass, HeaderReplays, // optional when parsing
}

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
	// The length of the rest tells all but three pairs apart; one letter
	// tells those; the comparison at the end confirms the guess.
	var i int
	switch rest := key[len(retry):]; len(rest) {
	case len("attempts"):
		i = iAttempts
	case len("original-topic"):
		i = iOriginalTopic
	case len("original-partition"):
		i = iOriginalPartition
	case len("original-offset"): // and last-failure-at
		i = iOriginalOffset
		if rest[0] == 'l' {
			i = iLastFailureAt
		}
	case len("first-failure-at"):
		i = iFirstFailureAt
	case len("last-stage"): // and last-error
		i = iLastStage
		if rest[5] == 'e' {
			i = iLastError
		}
	case len("due-at"): // and errors
		i = iDueAt
		if rest[0] == 'e' {
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

// Headers encodes h as record headers. Their values share one buffer.
func (h History) Headers() []Header {
	// The numbers and 3 times take at most 136 bytes; an error in the
	// list 80 besides its texts, which are rarely escaped.
	size := 136 + len(h.OriginalTopic) + len(h.LastStage) + len(h.LastError) + len(h.ErrorClass)
	for _, f := range h.Errors {
		size += 80 + len(f.Stage) + len(f.Error)
	}
	b := make([]byte, 0, size)
	var end [len(historyKeys)]int
	b = strconv.AppendInt(b, int64(h.Attempts), 10)
	end[0] = len(b)
	b = append(b, h.OriginalTopic...)
	end[1] = len(b)
	b = strconv.AppendInt(b, int64(h.OriginalPartition), 10)
	end[2] = len(b)
	b = strconv.AppendInt(b, h.OriginalOffset, 10)
	end[3] = len(b)
	b = appendTime(b, h.FirstFailureAt)
	end[4] = len(b)
	if h.LastFailureAt.Equal(h.FirstFailureAt) { // a first failure: the same text again
		b = append(b, b[end[3]:end[4]]...)
	} else {
		b = appendTime(b, h.LastFailureAt)
	}
	end[5] = len(b)
	b = append(b, h.LastStage...)
	end[6] = len(b)
	b = append(b, h.LastError...)
	end[7] = len(b)
	b = appendTime(b, h.DueAt)
	end[8] = len(b)
	b = appendFailures(b, h.Errors, h.LastFailureAt, b[end[4]:end[5]])
	end[9] = len(b)
	b = append(b, h.ErrorClass...)
	end[10] = len(b)
	b = strconv.AppendInt(b, int64(h.Replays), 10)
	end[11] = len(b)
	hs := make([]Header, len(historyKeys))
	start := 0
	for i, k := range historyKeys {
		hs[i] = Header{k, b[start:end[i]:end[i]]}
		start = end[i]
	}
	return hs
}

// ParseHistory reads the history headers of a record on a retry topic. A
// missing or garbled header is an error wrapping ErrHeaders.
func ParseHistory(r Record) (History, error) {
	h, err := parseScalars(r)
	if err != nil {
		return History{}, err
	}
	if v, ok := r.Header(HeaderErrors); ok && len(v) <= maxHeaderLen {
		// The error history is informative only: a garbled one is dropped,
		// not a reason to dead-letter the order.
		if errs, ok := parseFailures(v); ok && len(errs) <= MaxErrors {
			h.Errors = errs
		}
	}
	return h, nil
}

// ParseDueAt reads the due time alone, with the errors ParseHistory gives
// for it. A retry stage asks it of every record it waits for; the rest of
// the history is checked when the record is handled.
func ParseDueAt(r Record) (time.Time, error) {
	for i := len(r.Headers) - 1; i >= 0; i-- {
		if r.Headers[i].Key == HeaderDueAt {
			return parseTime(HeaderDueAt, r.Headers[i].Value)
		}
	}
	return time.Time{}, missing(HeaderDueAt)
}

func missing(key string) error { return fmt.Errorf("%w: missing %s", ErrHeaders, key) }

// parseTime reads a time header.
func parseTime(key string, v []byte) (time.Time, error) {
	if len(v) > maxHeaderLen {
		return time.Time{}, tooLong(key, v)
	}
	t, err := parseRFC3339(v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %s is not an RFC 3339 time: %q", ErrHeaders, key, truncate(string(v), 40))
	}
	return t, nil
}

func tooLong(key string, v []byte) error {
	return fmt.Errorf("%w: %s is %d bytes long", ErrHeaders, key, len(v))
}

// parseScalars reads every history header but the error list.
func parseScalars(r Record) (History, error) {
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
	for i := range iErrors {
		switch {
		case !seen[i]:
			return History{}, missing(historyKeys[i])
		case len(found[i]) > maxHeaderLen:
			return History{}, tooLong(historyKeys[i], found[i])
		}
	}
	var (
		h   History
		err error
	)
	num := func(i int) int64 {
		if err != nil {
			return 0
		}
		n, ok := count(found[i])
		if !ok {
			err = fmt.Errorf("%w: %s is not a count: %q", ErrHeaders, historyKeys[i], truncate(string(found[i]), 32))
		}
		return n
	}
	when := func(i int) time.Time {
		if err != nil {
			return time.Time{}
		}
		var t time.Time
		t, err = parseTime(historyKeys[i], found[i])
		return t
	}
	h.Attempts = int(num(iAttempts))
	h.OriginalTopic = string(found[iOriginalTopic])
	h.OriginalPartition = int(num(iOriginalPartition))
	h.OriginalOffset = num(iOriginalOffset)
	h.FirstFailureAt = when(iFirstFailureAt)
	h.LastFailureAt = when(iLastFailureAt)
	h.LastStage = string(found[iLastStage])
	h.LastError = string(found[iLastError])
	h.DueAt = when(iDueAt)
	if err != nil {
		return History{}, err
	}
	if h.Attempts < 1 {
		return History{}, fmt.Errorf("%w: %s is %d, want at least 1", ErrHeaders, HeaderAttempts, h.Attempts)
	}
	if v := found[iErrorClass]; seen[iErrorClass] && len(v) <= 64 {
		h.ErrorClass = string(v)
	}
	if seen[iReplays] {
		h.Replays = parseReplays(found[iReplays])
	}
	return h, nil
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
