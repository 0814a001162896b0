// Package aggregator keeps the running average price over distinct
// processed orders. Its state lives in Kafka, in a compacted state topic:
// for each partition of the processed topic, one record per handled batch
// in the same partition of the state topic, carrying the cumulative count
// and sum, the next input offset and the orderIds the batch counted.
// Position and totals travel in one record, so a restart resumes exactly
// where the state says, and a redelivered order is recognised by its
// orderId.
//
// OrderIds are remembered for a de-duplication horizon only, measured
// against the processed records' timestamps. Each state record has a key
// of its own and is stamped with its batch's watermark; once the horizon
// has passed it, the aggregator writes a tombstone for it, and compaction
// removes both. A restore asks the broker for the first state record
// stamped inside the horizon and reads from there, so what it reads, and
// what it holds in memory, is bounded by the orders inside the horizon, not
// by all history.
package aggregator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/orderflow/orders/services/envelope"
)

// stateVersion marks the records of this format. A record without it was
// written by the format before horizons, with one key per partition; such
// records are read as they are and their orderIds carried over.
const stateVersion = 2

// Snapshot is the value of one state record.
type Snapshot struct {
	// Version is stateVersion; 0 in a record of the older format.
	Version int `json:"v,omitempty"`
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
	// Watermark is the newest processed-record timestamp handled up to
	// Next, in Unix milliseconds, never past the writer's clock.
	Watermark int64 `json:"wm,omitempty"`
	// Horizon is the writer's de-duplication horizon in milliseconds.
	Horizon int64 `json:"horizon,omitempty"`
	// From is where a restore reads from, in Unix milliseconds: every state
	// record stamped before it has a tombstone, acknowledged before this
	// record was written.
	From int64 `json:"from,omitempty"`
	// IDs are the orderIds this record counted for the first time.
	IDs []string `json:"ids,omitempty"`
}

// stateKey is the key of a state record of this format: the partition,
// the writer and the record's next offset, which no other record of the
// writer repeats. carried numbers the records that carry orderIds over
// from the older format, -1 for others.
func stateKey(part int, s Snapshot, carried int) []byte {
	b := strconv.AppendInt(nil, int64(part), 10)
	for _, n := range []int64{int64(s.Generation), s.Base, s.Next} {
		b = strconv.AppendInt(append(b, '/'), n, 10)
	}
	if carried >= 0 {
		b = strconv.AppendInt(append(b, "/c"...), int64(carried), 10)
	}
	return b
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

// parseSnapshotIDs is parseSnapshot, with the orderIds left as the JSON
// strings of b, appended to ids: a restore reads a million of them, and
// hashes most straight from the record's bytes instead of making a string
// of each.
func parseSnapshotIDs(b []byte, ids [][]byte) (Snapshot, [][]byte, error) {
	t := &idTokens{list: ids}
	v := struct {
		Snapshot
		IDs *idTokens `json:"ids"`
	}{IDs: t}
	if err := json.Unmarshal(b, &v); err != nil {
		return v.Snapshot, ids, fmt.Errorf("state record: %w", err)
	}
	return v.Snapshot, t.list, nil // v.IDs is nil after "ids":null
}

// idTokens collects the JSON strings of an array of them, quotes
// included, as slices of the array's bytes; encoding/json has checked that
// the array is JSON before it hands it over.
type idTokens struct{ list [][]byte }

var errIDs = errors.New("ids: not a list of strings")

func (t *idTokens) UnmarshalJSON(b []byte) error {
	i := 0
	skip := func() {
		for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
			i++
		}
	}
	if skip(); i == len(b) || b[i] != '[' {
		return errIDs
	}
	i++
	if skip(); i < len(b) && b[i] == ']' {
		return nil
	}
	for {
		if skip(); i == len(b) || b[i] != '"' {
			return errIDs
		}
		j := i + 1
		for ; j < len(b) && b[j] != '"'; j++ {
			if b[j] == '\\' {
				j++ // the escaped byte
			}
		}
		if j >= len(b) {
			return errIDs
		}
		t.list = append(t.list, b[i:j+1])
		i = j + 1
		switch skip(); {
		case i < len(b) && b[i] == ',':
			i++
		case i < len(b) && b[i] == ']':
			return nil
		default:
			return errIDs
		}
	}
}

// idKey is the key of the orderId whose JSON string is tok.
func idKey(tok []byte) orderKey {
	if raw := tok[1 : len(tok)-1]; bytes.IndexByte(raw, '\\') < 0 {
		return keyOfBytes(raw)
	}
	return keyOf(idString(tok))
}

// idString is the orderId whose JSON string is tok.
func idString(tok []byte) string {
	var s string
	_ = json.Unmarshal(tok, &s) // encoding/json checked it
	return s
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

// writer is who wrote a state record. Writers succeed one another in the
// order they restored the partition, which their Base gives; two that
// restored the same state are ordered by their group generation. A group
// removed once its offsets expired comes back at generation 1, so the
// generation alone would put its writers before those of the group it
// replaces.
type writer struct {
	base int64
	gen  int32
}

func (w writer) before(o writer) bool { return w.base < o.base || w.base == o.base && w.gen < o.gen }

// replay rebuilds the state of one partition from its state records, in
// offset order. A record from a writer older than one already seen was
// written by a process that had lost the partition, and is ignored. When a
// newer writer starts, orderIds recorded at or after its Base were
// invisible to it, which therefore counted them again itself or has yet
// to: they are forgotten so that they are not skipped as duplicates.
//
// OrderIds are kept as keys in the bucket of their record's watermark,
// and only while the horizon remembers that bucket.
type replay struct {
	h       horizon
	withIDs bool

	w       writer
	any     bool
	cur     Snapshot
	wm      int64 // the newest watermark read, Unix milliseconds
	from    int64 // the offset it read from
	records int   // how many records it read

	recs    []recorded       // the records whose orderIds are kept, in offset order
	keys    []orderKey       // their orderIds, each in its record's bucket
	carried []string         // the orderIds of the older format's records, to write again
	live    map[string]int64 // key of each state record read -> its bucket, until a tombstone
	tokens  [][]byte         // the orderIds of the record being read, as JSON strings
	curKey  string           // the key of the record cur comes from
	// carriedOver is set once a record of this format follows those of the
	// older one: their orderIds are written again already.
	carriedOver bool
}

// recorded is where the orderIds of one state record start in keys and
// carried.
type recorded struct {
	offset        int64
	bucket        int64
	keys, carried int
}

func newReplay(h horizon, withIDs bool) *replay {
	r := &replay{h: h, withIDs: withIDs}
	if withIDs {
		r.live = map[string]int64{}
	}
	return r
}

// read applies one state record.
func (r *replay) read(m envelope.Record) error {
	r.records++
	if m.Value == nil { // a tombstone
		r.wm = max(r.wm, m.Time.UnixMilli())
		if r.withIDs {
			delete(r.live, string(m.Key))
		}
		return nil
	}
	var (
		s   Snapshot
		err error
	)
	if r.withIDs {
		s, r.tokens, err = parseSnapshotIDs(m.Value, r.tokens[:0])
	} else {
		s, err = parseSnapshot(m.Value)
	}
	if err != nil {
		return err
	}
	if s.Version < stateVersion {
		s.Watermark = m.Time.UnixMilli() // the older format's records are stamped when written
	}
	r.apply(m.Offset, string(m.Key), s, r.tokens)
	return nil
}

// apply applies the state record s at offset, under key; its orderIds are
// s.IDs, or else the JSON strings tokens.
func (r *replay) apply(offset int64, key string, s Snapshot, tokens [][]byte) {
	var b int64
	if r.withIDs {
		b = r.h.bucket(s.Watermark)
	}
	if r.withIDs && key != "" {
		// The older format's records share one key, which its last one keeps.
		r.live[key] = max(r.live[key], b)
	}
	w := writer{s.Base, s.Generation}
	if r.any && w.before(r.w) {
		return
	}
	r.wm = max(r.wm, s.Watermark)
	if s.Version >= stateVersion {
		r.carriedOver = true // its writer carried the older format's orderIds over before it
	}
	if r.any && r.w.before(w) {
		i := sort.Search(len(r.recs), func(i int) bool { return r.recs[i].offset >= s.Base })
		if i < len(r.recs) {
			r.keys, r.carried = r.keys[:r.recs[i].keys], r.carried[:r.recs[i].carried]
			r.recs = r.recs[:i]
		}
	}
	r.w = w
	if r.withIDs && len(s.IDs)+len(tokens) > 0 && r.h.live(b, r.wm) {
		r.recs = append(r.recs, recorded{offset: offset, bucket: b, keys: len(r.keys), carried: len(r.carried)})
		for _, id := range s.IDs {
			r.keys = append(r.keys, keyOf(id).in(b))
		}
		for _, tok := range tokens {
			r.keys = append(r.keys, idKey(tok).in(b))
		}
		if s.Version < stateVersion {
			r.carried = append(r.carried, s.IDs...)
			for _, tok := range tokens {
				r.carried = append(r.carried, idString(tok))
			}
		}
	}
	s.IDs = nil
	r.cur, r.curKey = s, key
	r.any = true
}

// carry is orderIds of the older format to write again, in this format,
// in the bucket they were recorded in.
type carry struct {
	bucket int64
	ids    []string
}

// restored is what a replay leaves for the partition that resumes: the
// orderIds the horizon still remembers, the keys of state records to
// write tombstones for, now or once the horizon passes them, and the
// older format's orderIds to carry over.
func (r *replay) restored() (seen *orderSet, keys map[int64][]string, carries []carry) {
	live := r.keys[:0]
	for i, rec := range r.recs {
		end, carriedEnd := len(r.keys), len(r.carried)
		if i+1 < len(r.recs) {
			end, carriedEnd = r.recs[i+1].keys, r.recs[i+1].carried
		}
		if !r.h.live(rec.bucket, r.wm) {
			continue
		}
		live = append(live, r.keys[rec.keys:end]...) // never ahead of what it reads
		if rec.carried < carriedEnd && !r.carriedOver {
			carries = append(carries, carry{bucket: rec.bucket, ids: r.carried[rec.carried:carriedEnd]})
		}
	}
	seen = newOrderSet(live)
	r.keys, r.recs = nil, nil
	keys = map[int64][]string{}
	for k, b := range r.live {
		keys[b] = append(keys[b], k)
	}
	return seen, keys, carries
}
