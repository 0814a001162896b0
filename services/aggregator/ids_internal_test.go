package aggregator

import (
	"math/rand/v2"
	"strconv"
	"testing"
)

// TestOrderSetIsASet holds orderSet to a map through many additions,
// repeats and growths, with keys that crowd into few slots as well as
// orderIds' own keys.
func TestOrderSetIsASet(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct {
		adds int
		keys func(i int) orderKey
	}{
		{100000, func(i int) orderKey { return keyOf(strconv.Itoa(rng.IntN(60000))) }},
		// The same low bits: every key starts its probe at one of 4 slots.
		{5000, func(i int) orderKey { return orderKey{uint64(rng.IntN(4)) | uint64(rng.IntN(2000))<<32, 1} }},
	} {
		keys := c.keys
		s := &orderSet{}
		want := map[orderKey]bool{}
		var batch []orderKey
		for i := range c.adds {
			// Batches as the aggregator adds them, prefetched first, of
			// sizes that cross the set's growth at various points.
			if len(batch) == 0 {
				batch = make([]orderKey, min(1+rng.IntN(700), c.adds-i))
				for j := range batch {
					batch[j] = keys(i + j)
				}
				s.prefetch(batch)
			}
			slots := len(s.slots)
			k := batch[0]
			batch = batch[1:]
			if got := s.add(k); got != !want[k] {
				t.Fatalf("add(%x) = %v with %d keys, want %v", k, got, len(want), !want[k])
			}
			if len(s.slots) != slots {
				t.Fatalf("the set grew from %d slots while adding keys it had prefetched", slots)
			}
			want[k] = true
			if i%997 == 0 {
				probe := keys(i)
				if s.has(probe) != want[probe] {
					t.Fatalf("has(%x) = %v, want %v", probe, s.has(probe), want[probe])
				}
			}
		}
		if s.n != len(want) {
			t.Fatalf("len = %d, want %d", s.n, len(want))
		}
		for k := range want {
			if !s.has(k) {
				t.Fatalf("%x was added and is missing", k)
			}
		}
		if 4*s.n > 3*len(s.slots) {
			t.Fatalf("%d keys fill more than three quarters of %d slots", s.n, len(s.slots))
		}
		var restored []orderKey
		for k := range want {
			restored = append(restored, k.in(7))
		}
		r := newOrderSet(restored)
		for k := range want {
			if r.add(k) {
				t.Fatalf("a restored set takes %x as new", k)
			}
		}
		if r.n != len(want) || 5*r.n > 3*len(r.slots) || len(r.slots) > 2*len(want) {
			t.Fatalf("restored: %d keys in %d slots, want %d keys filling 60%% of them", r.n, len(r.slots), len(want))
		}
	}
	if keyOf("") == (orderKey{}) {
		t.Fatal("keyOf returned the empty slot's key")
	}
}

// TestOrderSetForgetsByBucket holds the buckets of keys: an orderId is one
// key whatever its bucket, keeps the bucket it was first added in, and keep
// forgets exactly the buckets it refuses, across the wrap of the 16 bits a
// bucket takes.
func TestOrderSetForgetsByBucket(t *testing.T) {
	const last = 1<<16 + 5 // buckets 65531..65541 straddle the wrap
	s := &orderSet{}
	for i := range 11000 {
		b := int64(last - 10 + i%11)
		if !s.add(keyOf(strconv.Itoa(i)).in(b)) {
			t.Fatalf("order %d taken as a copy", i)
		}
		if s.add(keyOf(strconv.Itoa(i)).in(last)) {
			t.Fatalf("order %d in another bucket taken as new", i)
		}
	}
	for _, k := range s.slots {
		if k == (orderKey{}) {
			continue
		}
		if b := k.bucket(last); b < last-10 || b > last {
			t.Fatalf("bucket %d of a key added in buckets %d..%d", b, last-10, last)
		}
	}
	s.keep(func(k orderKey) bool { return k.bucket(last) >= last-4 })
	if s.n != 5000 {
		t.Fatalf("%d keys kept, want the 5000 of the last 5 buckets", s.n)
	}
	for i := range 11000 {
		kept := i%11 >= 6
		if got := s.has(keyOf(strconv.Itoa(i))); got != kept {
			t.Fatalf("order %d (bucket %d) kept = %v, want %v", i, last-10+i%11, got, kept)
		}
	}
	if 5*s.n > 3*len(s.slots) || len(s.slots) > 2*s.n {
		t.Fatalf("%d keys in %d slots after keep", s.n, len(s.slots))
	}
}

// has reports whether k is in the set.
func (s *orderSet) has(k orderKey) bool {
	if len(s.slots) == 0 {
		return false
	}
	_, found := s.find(k)
	return found
}
