package envelope

import (
	"encoding/hex"
	"encoding/json"
	"time"
)

// Reasons an order is dead-lettered.
const (
	ReasonRetriesExhausted = "retries_exhausted"
	ReasonUndecodable      = "undecodable"
	ReasonInvalid          = "invalid"
	ReasonBadHeaders       = "bad_headers"
)

// DeadLetter is the JSON value of a DLQ record. Its first six fields are the
// original assignment's DLQ format; the rest tell how the order got there.
type DeadLetter struct {
	Error       string `json:"error"`
	Topic       string `json:"topic"`
	Partition   int    `json:"partition"`
	Offset      int64  `json:"offset"`
	Key         string `json:"key"`
	RawValueHex string `json:"raw_value_hex"`

	Reason         string    `json:"reason"`
	Attempts       int       `json:"attempts"`
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
	return DeadLetter{
		Error:          h.LastError,
		Topic:          h.OriginalTopic,
		Partition:      h.OriginalPartition,
		Offset:         h.OriginalOffset,
		Key:            string(r.Key),
		RawValueHex:    hex.EncodeToString(r.Value),
		Reason:         reason,
		Attempts:       h.Attempts,
		Stage:          h.LastStage,
		FirstFailureAt: h.FirstFailureAt,
		LastFailureAt:  h.LastFailureAt,
		Errors:         errs,
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
