// Package aggregator keeps the running average price over distinct
// processed orders. Its state lives in Kafka: for each partition of the
// processed topic, one record per handled batch in the same partition of a
// state topic, carrying the cumulative count and sum, the next input offset
// and the orderIds the batch counted. Position and totals travel in one
// record, so a restart resumes exactly where the state says, and a
// redelivered order is recognised by its orderId.
package aggregator

import (
	"encoding/json"
	"fmt"
)

// Snapshot is the value of one state record.
type Snapshot struct {
	// Generation is the consumer group generation of the writer.
	Generation int32 `json:"gen"`
	// Base is the state partition's end offset when the writer restored it:
	// the writer had not seen records at or after it.
	Base int64 `json:"base"`
	// Next is the next offset of the processed partition to read.
	Next int64 `json:"next"`
	// Count and Sum cover every distinct order up to Next.
	Count int64   `json:"count"`
	Sum   float64 `json:"sum"`
	// IDs are the orderIds this batch counted for the first time.
	IDs []string `json:"ids,omitempty"`
}

// marshal is json.Marshal(s), byte for byte. A state record carries a
// batch's orderIds, and encoding/json examines each through reflection and
// its escaping rules; an orderId that needs no escaping, the usual case, is
// copied as it is instead.
func (s Snapshot) marshal() []byte {
	ids := s.IDs
	s.IDs = nil
	b, err := json.Marshal(s)
	if err != nil || len(ids) == 0 { // err: a sum that is not a number, which validated prices never make
		return b
	}
	n := len(b) + len(`,"ids":[]`)
	for _, id := range ids {
		n += len(id) + len(`"",`)
	}
	out := append(make([]byte, 0, n), b[:len(b)-1]...) // without its '}'
	out = append(out, `,"ids":[`...)
	for i, id := range ids {
		if i > 0 {
			out = append(out, ',')
		}
		if plainJSON(id) {
			out = append(out, '"')
			out = append(out, id...)
			out = append(out, '"')
		} else {
			q, _ := json.Marshal(id) // strings always marshal
			out = append(out, q...)
		}
	}
	return append(out, "]}"...)
}

// plainJSON reports whether encoding/json writes id as it is, between
// quotes: printable ASCII that it neither escapes nor, for HTML, replaces.
func plainJSON(id string) bool {
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case c < 0x20 || c > 0x7e, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

func parseSnapshot(b []byte) (Snapshot, error) {
	var s Snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("state record: %w", err)
	}
	return s, nil
}

// Totals is the aggregate over some partitions.
type Totals struct {
	Count   int64   `json:"count"`
	Sum     float64 `json:"sum"`
	Average float64 `json:"average"`
}

func (t Totals) add(s Snapshot) Totals {
	t.Count += s.Count
	t.Sum += s.Sum
	if t.Count > 0 {
		t.Average = t.Sum / float64(t.Count)
	}
	return t
}

// replay rebuilds the state of one partition from its state records, in
// offset order. A record from an older generation than one already seen was
// written by a process that had lost the partition, and is ignored. When a
// newer generation starts, orderIds recorded at or after its Base were
// invisible to its writer, which therefore counted them again itself or has
// yet to: they are forgotten so that they are not skipped as duplicates.
type replay struct {
	gen  int32
	cur  Snapshot
	seen map[orderKey]int64 // orderId -> state offset that counted it; nil: totals only
	any  bool
}

func newReplay(withIDs bool) *replay {
	r := &replay{gen: -1}
	if withIDs {
		r.seen = make(map[orderKey]int64)
	}
	return r
}

func (r *replay) apply(offset int64, s Snapshot) {
	if s.Generation < r.gen {
		return
	}
	if s.Generation > r.gen {
		if r.any && r.seen != nil {
			for id, at := range r.seen {
				if at >= s.Base {
					delete(r.seen, id)
				}
			}
		}
		r.gen = s.Generation
	}
	if r.seen != nil {
		for _, id := range s.IDs {
			r.seen[keyOf(id)] = offset
		}
	}
	s.IDs = nil
	r.cur = s
	r.any = true
}
