package aggregator

import (
	"bytes"
	"encoding/json"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// testHorizon is a horizon of an hour: 16 buckets of 225,000 ms.
var testHorizon = newHorizon(time.Hour)

// wantSeen checks the orderIds the replay keeps, each with the offset of
// the state record that counted it.
func wantSeen(t *testing.T, rp *replay, want map[string]int64) {
	t.Helper()
	got := map[orderKey]int64{}
	for i, rec := range rp.recs {
		end := len(rp.keys)
		if i+1 < len(rp.recs) {
			end = rp.recs[i+1].keys
		}
		for _, k := range rp.keys[rec.keys:end] {
			got[k.in(0)] = rec.offset
		}
	}
	keyed := make(map[orderKey]int64, len(want))
	for id, at := range want {
		keyed[keyOf(id)] = at
	}
	if !maps.Equal(got, keyed) {
		t.Fatalf("seen = %v, want the keys of %v", got, want)
	}
}

func TestReplayEmpty(t *testing.T) {
	rp := newReplay(testHorizon, true)
	if rp.any || !reflect.DeepEqual(rp.cur, Snapshot{}) || len(rp.keys) != 0 || rp.live == nil {
		t.Fatalf("new replay = %+v", rp)
	}
}

func TestReplayRecordsIDsAndTakesTheLastSnapshot(t *testing.T) {
	rp := newReplay(testHorizon, true)
	rp.apply(0, "", Snapshot{Generation: 1, Next: 3, Count: 2, Sum: 30, IDs: []string{"a", "b"}}, nil)
	rp.apply(1, "", Snapshot{Generation: 1, Next: 5, Count: 3, Sum: 42.5, IDs: []string{"c"}}, nil)
	rp.apply(2, "", Snapshot{Generation: 1, Next: 6, Count: 3, Sum: 42.5}, nil) // a batch of duplicates
	if !rp.any {
		t.Fatal("any is false after three records")
	}
	want := Snapshot{Generation: 1, Next: 6, Count: 3, Sum: 42.5}
	if !reflect.DeepEqual(rp.cur, want) {
		t.Fatalf("cur = %+v, want %+v", rp.cur, want)
	}
	wantSeen(t, rp, map[string]int64{"a": 0, "b": 0, "c": 1})
}

func TestReplayIgnoresOlderGenerations(t *testing.T) {
	rp := newReplay(testHorizon, true)
	rp.apply(0, "", Snapshot{Generation: 2, Next: 10, Count: 3, Sum: 30, IDs: []string{"a", "b", "c"}}, nil)
	// A process that lost the partition writes late: its state is stale.
	rp.apply(1, "", Snapshot{Generation: 1, Base: 0, Next: 20, Count: 9, Sum: 99, IDs: []string{"x"}}, nil)
	want := Snapshot{Generation: 2, Next: 10, Count: 3, Sum: 30}
	if !reflect.DeepEqual(rp.cur, want) {
		t.Fatalf("cur = %+v, want %+v", rp.cur, want)
	}
	wantSeen(t, rp, map[string]int64{"a": 0, "b": 0, "c": 0})
	// The current generation goes on.
	rp.apply(2, "", Snapshot{Generation: 2, Next: 12, Count: 4, Sum: 40, IDs: []string{"d"}}, nil)
	if rp.cur.Count != 4 || rp.cur.Next != 12 {
		t.Fatalf("cur = %+v after the current generation wrote again", rp.cur)
	}
	wantSeen(t, rp, map[string]int64{"a": 0, "b": 0, "c": 0, "d": 2})
}

func TestReplayNewerGenerationForgetsWhatItCouldNotSee(t *testing.T) {
	rp := newReplay(testHorizon, true)
	rp.apply(0, "", Snapshot{Generation: 1, Next: 1, Count: 1, Sum: 10, IDs: []string{"a"}}, nil)
	rp.apply(1, "", Snapshot{Generation: 1, Next: 2, Count: 2, Sum: 20, IDs: []string{"b"}}, nil)
	// Generation 2 restored the state up to offset 2; generation 1 then
	// wrote offsets 2 and 3 before it noticed it had lost the partition.
	rp.apply(2, "", Snapshot{Generation: 1, Next: 3, Count: 3, Sum: 30, IDs: []string{"c"}}, nil)
	rp.apply(3, "", Snapshot{Generation: 1, Next: 4, Count: 4, Sum: 40, IDs: []string{"d"}}, nil)
	rp.apply(4, "", Snapshot{Generation: 2, Base: 2, Next: 3, Count: 3, Sum: 31, IDs: []string{"c2"}}, nil)
	wantSeen(t, rp, map[string]int64{"a": 0, "b": 1, "c2": 4})
	want := Snapshot{Generation: 2, Base: 2, Next: 3, Count: 3, Sum: 31}
	if !reflect.DeepEqual(rp.cur, want) {
		t.Fatalf("cur = %+v, want the newer generation's %+v", rp.cur, want)
	}
	// More records of generation 2 forget nothing; late ones of 1 are ignored.
	rp.apply(5, "", Snapshot{Generation: 1, Next: 5, Count: 5, Sum: 50, IDs: []string{"e"}}, nil)
	rp.apply(6, "", Snapshot{Generation: 2, Base: 2, Next: 4, Count: 4, Sum: 41, IDs: []string{"d"}}, nil)
	wantSeen(t, rp, map[string]int64{"a": 0, "b": 1, "c2": 4, "d": 6})
	if rp.cur.Count != 4 || rp.cur.Sum != 41 || rp.cur.Generation != 2 {
		t.Fatalf("cur = %+v", rp.cur)
	}
	// A third generation that saw everything up to offset 6 keeps what
	// was recorded before it.
	rp.apply(7, "", Snapshot{Generation: 5, Base: 7, Next: 9, Count: 5, Sum: 51, IDs: []string{"f"}}, nil)
	wantSeen(t, rp, map[string]int64{"a": 0, "b": 1, "c2": 4, "d": 6, "f": 7})
}

func TestReplayFirstRecordForgetsNothing(t *testing.T) {
	rp := newReplay(testHorizon, true)
	// A retention cut may leave a log starting above the writer's base.
	rp.apply(10, "", Snapshot{Generation: 3, Base: 50, Next: 7, Count: 1, Sum: 5, IDs: []string{"a"}}, nil)
	wantSeen(t, rp, map[string]int64{"a": 10})
	if rp.cur.Count != 1 || !rp.any {
		t.Fatalf("cur = %+v, any = %v", rp.cur, rp.any)
	}
}

func TestReplayWithoutIDsKeepsTotals(t *testing.T) {
	rp := newReplay(horizon{}, false)
	rp.apply(0, "", Snapshot{Generation: 1, Next: 2, Count: 2, Sum: 20, IDs: []string{"a", "b"}}, nil)
	rp.apply(1, "", Snapshot{Generation: 0, Next: 9, Count: 9, Sum: 90, IDs: []string{"z"}}, nil)
	rp.apply(2, "", Snapshot{Generation: 2, Base: 1, Next: 3, Count: 3, Sum: 33, IDs: []string{"c"}}, nil)
	if len(rp.keys) != 0 {
		t.Fatalf("a totals-only replay keeps %d orderIds", len(rp.keys))
	}
	want := Snapshot{Generation: 2, Base: 1, Next: 3, Count: 3, Sum: 33}
	if !reflect.DeepEqual(rp.cur, want) {
		t.Fatalf("cur = %+v, want %+v", rp.cur, want)
	}
}

func TestReplayDoesNotKeepTheCallersIDs(t *testing.T) {
	rp := newReplay(testHorizon, true)
	ids := []string{"a"}
	rp.apply(0, "", Snapshot{Generation: 1, IDs: ids}, nil)
	if rp.cur.IDs != nil {
		t.Fatalf("cur keeps ids %v", rp.cur.IDs)
	}
}

func TestSnapshotJSON(t *testing.T) {
	s := Snapshot{Generation: 3, Base: 17, Next: 1234, Count: 10, Sum: 512.25, IDs: []string{"1001", "1002"}}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(s.marshal(), &m); err != nil {
		t.Fatal(err)
	}
	keys := slices.Sorted(maps.Keys(m))
	if want := []string{"base", "count", "gen", "ids", "next", "sum"}; !slices.Equal(keys, want) {
		t.Fatalf("fields %v, want %v", keys, want)
	}
	got, err := parseSnapshot(s.marshal())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Fatalf("parseSnapshot(marshal()) = %+v, want %+v", got, s)
	}
	if b := (Snapshot{Next: 1}).marshal(); strings.Contains(string(b), "ids") {
		t.Fatalf("a snapshot without ids marshals as %s", b)
	}
}

func TestParseSnapshotRejectsGarbage(t *testing.T) {
	for _, b := range [][]byte{nil, []byte("{"), []byte(`{"next":"x"}`), []byte(`[1]`)} {
		_, err := parseSnapshot(b)
		if err == nil {
			t.Errorf("parseSnapshot(%q) succeeded", b)
			continue
		}
		if !strings.Contains(err.Error(), "state record") {
			t.Errorf("error %q lacks context", err)
		}
	}
}

func TestTotalsAdd(t *testing.T) {
	var z Totals
	if got := z.add(Snapshot{}); got != (Totals{}) {
		t.Fatalf("adding nothing = %+v", got)
	}
	tot := z.add(Snapshot{Count: 2, Sum: 30})
	if tot != (Totals{Count: 2, Sum: 30, Average: 15}) {
		t.Fatalf("add = %+v", tot)
	}
	tot = tot.add(Snapshot{Count: 1, Sum: 45, Next: 99, IDs: []string{"ignored"}})
	if tot.Count != 3 || tot.Sum != 75 || tot.Average != 25 {
		t.Fatalf("add = %+v, want count 3 sum 75 average 25", tot)
	}
	tot = tot.add(Snapshot{Count: 1, Sum: 10.5})
	if want := 85.5 / 4; math.Abs(tot.Average-want) > 1e-12 {
		t.Fatalf("average %v, want %v", tot.Average, want)
	}
	if z != (Totals{}) {
		t.Fatal("add changed its receiver")
	}
}

// FuzzSnapshotMarshal holds marshal to encoding/json byte for byte, on
// orderIds of any bytes (the input split at each '|') and any totals.
func FuzzSnapshotMarshal(f *testing.F) {
	for _, ids := range []string{
		"", "1001", "1001|1002|1003", "|", "a<b|c>d|e&f", `q"uote|back\slash`,
		"tab\there|nl\n|\x00|\x7f", "héllo|\u2028|\u2029|日本", "\xff\xfe|ok|\xc3", " |~|!#$%'()*+,-./:;=?@[]^_`{}",
	} {
		f.Add(ids, int64(3), 512.25)
	}
	f.Add("1", int64(-1), math.Inf(1)) // json refuses the sum: never written, but not to panic
	f.Fuzz(func(t *testing.T, ids string, count int64, sum float64) {
		s := Snapshot{Generation: 2, Base: 5, Next: count + 1, Count: count, Sum: sum}
		if ids != "" {
			s.IDs = strings.Split(ids, "|")
		}
		want, err := json.Marshal(s)
		if err != nil {
			return // a sum that is not a number; the aggregator only adds prices it has validated
		}
		if got := s.marshal(); !bytes.Equal(got, want) {
			t.Fatalf("marshal() = %s\nwant          %s", got, want)
		}
	})
}

// A restore reads the orderIds of a state record as they are in its
// bytes; a record whose ids are not a list of strings is an error, never a
// panic or orderIds made up.
func TestParseSnapshotIDs(t *testing.T) {
	s := Snapshot{Version: stateVersion, Next: 3, Count: 2, IDs: []string{"1001", `q"uote`, "日本"}}
	got, toks, err := parseSnapshotIDs(s.marshal(), nil)
	if err != nil || got.Next != 3 || len(toks) != 3 {
		t.Fatalf("parseSnapshotIDs = %+v, %q, %v", got, toks, err)
	}
	for i, tok := range toks {
		if idString(tok) != s.IDs[i] || idKey(tok) != keyOf(s.IDs[i]) {
			t.Fatalf("token %q: %q, want %q with its key", tok, idString(tok), s.IDs[i])
		}
	}
	for _, b := range []string{`{"next":1,"ids":null}`, `{"next":1,"ids":[]}`, `{"next":1, "ids" : [ "a" , "b" ] }`} {
		if _, _, err := parseSnapshotIDs([]byte(b), nil); err != nil {
			t.Errorf("parseSnapshotIDs(%s): %v", b, err)
		}
	}
	for _, b := range []string{`{"ids":"x"}`, `{"ids":{"a":1}}`, `{"ids":[["a"],"b"]}`, `{"ids":[1]}`, `{"ids":["a",2]}`} {
		if _, _, err := parseSnapshotIDs([]byte(b), nil); err == nil {
			t.Errorf("parseSnapshotIDs(%s) succeeded", b)
		}
	}
}
