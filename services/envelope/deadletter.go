package envelope

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	"github.com/orderflow/orders/schemas"
)

// Reasons an order is dead-lettered.
const (
	ReasonRetriesExhausted = "retries_exhausted"
	ReasonUndecodable      = "undecodable"
	ReasonInvalid          = "invalid"
	ReasonBadHeaders       = "bad_headers"
	// ReasonOutputRefused: the broker refused for good what the stage
	// wrote for the order (a record larger than the topic takes, one it
	// calls invalid); the error names the topic and the broker's error.
	ReasonOutputRefused = "output_refused"
	// ReasonIncompatibleSchema: the value's writer schema (by its schema
	// id) does not resolve against the stages' order schema.
	ReasonIncompatibleSchema = "incompatible_schema"
	// ReasonUnknownSchema: the registry has no schema of the value's id.
	ReasonUnknownSchema = "unknown_schema"
)

// DecodeReason is the reason to dead-letter a value whose decoding failed
// with err, one of schemas.IsValueError's.
func DecodeReason(err error) string {
	switch {
	case errors.Is(err, schemas.ErrIncompatible):
		return ReasonIncompatibleSchema
	case errors.Is(err, schemas.ErrUnknownSchema):
		return ReasonUnknownSchema
	}
	return ReasonUndecodable
}

// MaxRawValue is the most bytes of an original value a DLQ record carries.
const MaxRawValue = 64 << 10

// DeadLetter is the JSON value of a DLQ record. Its first six fields are the
// original assignment's DLQ format; the rest tell how the order got there.
type DeadLetter struct {
	Error       string `json:"error"`
	Topic       string `json:"topic"`
	Partition   int    `json:"partition"`
	Offset      int64  `json:"offset"`
	Key         string `json:"key"`
	RawValueHex string `json:"raw_value_hex"`
	// RawValueSize is the size of the original value in bytes; when it is
	// above MaxRawValue, RawValueHex holds only its first MaxRawValue bytes
	// and RawValueTruncated is set, so a DLQ record always fits the broker.
	RawValueSize      int  `json:"raw_value_size"`
	RawValueTruncated bool `json:"raw_value_truncated,omitempty"`

	Reason         string    `json:"reason"`
	Attempts       int       `json:"attempts"`
	Replays        int       `json:"replays"`
	Stage          string    `json:"stage"`
	FirstFailureAt time.Time `json:"first_failure_at"`
	LastFailureAt  time.Time `json:"last_failure_at"`
	Errors         []Failure `json:"errors"`
}

// NewDeadLetter describes record r, whose history is h, failing for good in
// stage for reason. The topic, partition and offset are the order's place in
// the input topic, taken from h.
func NewDeadLetter(r Record, h History, reason string) DeadLetter {
	errs := h.Errors
	if errs == nil {
		errs = []Failure{}
	}
	raw := r.Value
	if len(raw) > MaxRawValue {
		raw = raw[:MaxRawValue]
	}
	key := r.Key
	if len(key) > MaxRawValue {
		key = key[:MaxRawValue]
	}
	return DeadLetter{
		Error:             h.LastError,
		Topic:             h.OriginalTopic,
		Partition:         h.OriginalPartition,
		Offset:            h.OriginalOffset,
		Key:               string(key),
		RawValueHex:       hex.EncodeToString(raw),
		RawValueSize:      len(r.Value),
		RawValueTruncated: len(raw) < len(r.Value),
		Reason:            reason,
		Attempts:          h.Attempts,
		Replays:           h.Replays,
		Stage:             h.LastStage,
		FirstFailureAt:    h.FirstFailureAt,
		LastFailureAt:     h.LastFailureAt,
		Errors:            errs,
	}
}

// Marshal encodes d as JSON.
func (d DeadLetter) Marshal() []byte {
	b, _ := json.Marshal(d) // strings, numbers and times always marshal
	return b
}

// ParseDeadLetter decodes the JSON value of a DLQ record.
func ParseDeadLetter(b []byte) (DeadLetter, error) {
	var d DeadLetter
	err := json.Unmarshal(b, &d)
	return d, err
}

// RawValue decodes RawValueHex.
func (d DeadLetter) RawValue() ([]byte, error) { return hex.DecodeString(d.RawValueHex) }
