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
	errs := make([]Failure, 0, MaxErrors)
	if n := len(h.Errors); n >= MaxErrors {
		errs = append(errs, h.Errors[n-MaxErrors+1:]...)
	} else {
		errs = append(errs, h.Errors...)
	}
	h.Errors = append(errs, Failure{Stage: stage, Attempt: h.Attempts, At: at, Error: msg})
	return h
}

// historyKeys are the history headers in the order Headers writes them.
var historyKeys = [...]string{
	HeaderAttempts, HeaderOriginalTopic, HeaderOriginalPartition, HeaderOriginalOffset, HeaderFirstFailureAt,
	HeaderLastFailureAt, HeaderLastStage, HeaderLastError, HeaderDueAt, HeaderErrors,
	HeaderErrorClass, HeaderReplays, // optional when parsing
}

// historyKeyIndex is the index of key in historyKeys, or -1.
func historyKeyIndex(key string) int {
	switch key {
	case HeaderAttempts:
		return 0
	case HeaderOriginalTopic:
		return 1
	case HeaderOriginalPartition:
		return 2
	case HeaderOriginalOffset:
		return 3
	case HeaderFirstFailureAt:
		return 4
	case HeaderLastFailureAt:
		return 5
	case HeaderLastStage:
		return 6
	case HeaderLastError:
		return 7
	case HeaderDueAt:
		return 8
	case HeaderErrors:
		return 9
	case HeaderErrorClass:
		return 10
	case HeaderReplays:
		return 11
	}
	return -1
}

// Headers encodes h as record headers. Their values share one buffer.
func (h History) Headers() []Header {
	b := make([]byte, 0, 192+len(h.OriginalTopic)+2*len(h.LastStage)+2*len(h.LastError)+len(h.Errors)*(96+MaxErrorLen/4))
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
	b = appendTime(b, h.LastFailureAt)
	end[5] = len(b)
	b = append(b, h.LastStage...)
	end[6] = len(b)
	b = append(b, h.LastError...)
	end[7] = len(b)
	b = appendTime(b, h.DueAt)
	end[8] = len(b)
	b = appendFailures(b, h.Errors)
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

// ParseDueAt is ParseHistory(r).DueAt with the same errors, without
// decoding the error list, which never makes a history invalid. A retry
// stage asks it of every record it waits for.
func ParseDueAt(r Record) (time.Time, error) {
	h, err := parseScalars(r)
	return h.DueAt, err
}

// parseScalars reads every history header but the error list.
func parseScalars(r Record) (History, error) {
	var h History
	var err error
	// One pass over the headers finds every history header; the last of a
	// name wins, as with Record.Header.
	var found [len(historyKeys)][]byte
	var seen [len(historyKeys)]bool
	for _, hd := range r.Headers {
		if i := historyKeyIndex(hd.Key); i >= 0 {
			found[i], seen[i] = hd.Value, true
		}
	}
	get := func(key string) string {
		if err != nil {
			return ""
		}
		i := historyKeyIndex(key)
		v, ok := found[i], seen[i]
		switch {
		case !ok:
			err = fmt.Errorf("%w: missing %s", ErrHeaders, key)
		case len(v) > maxHeaderLen:
			err = fmt.Errorf("%w: %s is %d bytes long", ErrHeaders, key, len(v))
		}
		return string(v)
	}
	num := func(key string) int64 {
		s := get(key)
		if err != nil {
			return 0
		}
		n, perr := strconv.ParseInt(s, 10, 64)
		if perr != nil || n < 0 {
			err = fmt.Errorf("%w: %s is not a count: %q", ErrHeaders, key, truncate(s, 32))
		}
		return n
	}
	when := func(key string) time.Time {
		s := get(key)
		if err != nil {
			return time.Time{}
		}
		t, perr := time.Parse(time.RFC3339Nano, s)
		if perr != nil {
			err = fmt.Errorf("%w: %s is not an RFC 3339 time: %q", ErrHeaders, key, truncate(s, 40))
		}
		return t
	}
	h.Attempts = int(num(HeaderAttempts))
	h.OriginalTopic = get(HeaderOriginalTopic)
	h.OriginalPartition = int(num(HeaderOriginalPartition))
	h.OriginalOffset = num(HeaderOriginalOffset)
	h.FirstFailureAt = when(HeaderFirstFailureAt)
	h.LastFailureAt = when(HeaderLastFailureAt)
	h.LastStage = get(HeaderLastStage)
	h.LastError = get(HeaderLastError)
	h.DueAt = when(HeaderDueAt)
	if err != nil {
		return History{}, err
	}
	if h.Attempts < 1 {
		return History{}, fmt.Errorf("%w: %s is %d, want at least 1", ErrHeaders, HeaderAttempts, h.Attempts)
	}
	if v := found[10]; seen[10] && len(v) <= 64 {
		h.ErrorClass = string(v)
	}
	if seen[11] {
		h.Replays = parseReplays(found[11])
	}
	return h, nil
}

func appendTime(b []byte, t time.Time) []byte { return t.UTC().AppendFormat(b, time.RFC3339Nano) }

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
