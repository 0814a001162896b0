package aggregator

import (
	"hash/maphash"
	"math/bits"
)

// orderKey stands for an orderId in the de-duplication set: 112 bits of
// two 64-bit hashes of it under independent seeds, and in the top 16 bits
// the time bucket it was counted in (modulo 2^16), which says when the set
// forgets it. The set then holds no pointers, so the garbage collector
// never scans it however many orders it holds, and an order costs a 16-byte
// slot instead of a string and its header.
//
// The seeds are drawn per process. That is enough: a process builds its
// sets from the orderIds in the state topic when it restores a partition,
// and the state topic keeps the orderIds themselves. Two distinct orders
// share a key with probability about n²/2¹¹³ among n orders remembered at
// once (below 10⁻¹⁶ for a billion), and the aggregator would then count
// them as one.
type orderKey [2]uint64

// hashBits are the bits of orderKey[1] that hash the orderId; the others
// hold the bucket.
const hashBits = 1<<48 - 1

var orderKeySeeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

// keyOf is the key of orderID, in bucket 0.
func keyOf(orderID string) orderKey {
	k := orderKey{maphash.String(orderKeySeeds[0], orderID), maphash.String(orderKeySeeds[1], orderID) & hashBits}
	if k == (orderKey{}) {
		k[1] = 1 // the zero key marks an empty slot of an orderSet
	}
	return k
}

// keyOfBytes is keyOf(string(orderID)), without the string.
func keyOfBytes(orderID []byte) orderKey {
	k := orderKey{maphash.Bytes(orderKeySeeds[0], orderID), maphash.Bytes(orderKeySeeds[1], orderID) & hashBits}
	if k == (orderKey{}) {
		k[1] = 1
	}
	return k
}

// in is k in bucket b.
func (k orderKey) in(b int64) orderKey {
	k[1] = k[1]&hashBits | uint64(uint16(b))<<48
	return k
}

// bucket is the bucket of k nearest to, and not after, last: the set only
// holds keys of the buckets a horizon spans, far fewer than 2^16.
func (k orderKey) bucket(last int64) int64 {
	return last - int64(uint16(last)-uint16(k[1]>>48))
}

// sameOrder reports whether a and b stand for one orderId, whatever their
// buckets.
func sameOrder(a, b orderKey) bool { return a[0] == b[0] && (a[1]^b[1])&hashBits == 0 }

// orderSet is the de-duplication set of one partition: open addressing with
// linear probing over the keys themselves, which are already uniform hashes.
// Asking for an order not seen before, the usual case, and adding it take
// one probe, mostly within one cache line, where a map would search and
// then insert. It keeps 16 bytes a slot and fills at most three quarters of
// its slots, between 21 and 43 bytes per order as it grows (up to twice
// that when a batch of duplicates made room it did not use: prefetch makes
// room for all of a batch); a set restored or swept is made 60% full, 27
// bytes per order. The zero key marks an empty slot; keyOf never returns it.
type orderSet struct {
	slots []orderKey // any number of them, or none
	n     int
	sink  uint64 // what prefetch read, so that its loads are not left out
}

// prefetch makes room for keys and loads the slot where the search for each
// begins. The loads do not depend on one another, so the processor makes
// them together instead of waiting on one cache miss after another as add
// would, and adding keys then finds their slots in the cache. In a set of
// a million orders, a slot is almost never in the cache otherwise.
func (s *orderSet) prefetch(keys []orderKey) {
	for 4*(s.n+len(keys)) > 3*len(s.slots) {
		s.grow()
	}
	var x uint64
	for _, k := range keys {
		x += s.slots[s.home(k)][1]
	}
	s.sink = x
}

// add adds k and reports whether it was new; an orderId already there
// keeps its bucket.
func (s *orderSet) add(k orderKey) bool {
	if 4*(s.n+1) > 3*len(s.slots) {
		s.grow()
	}
	i, found := s.find(k)
	if !found {
		s.slots[i] = k
		s.n++
	}
	return !found
}

// home is the slot where the search for k begins: k[0] scaled to the
// number of slots, which need not be a power of two.
func (s *orderSet) home(k orderKey) uint64 {
	hi, _ := bits.Mul64(k[0], uint64(len(s.slots)))
	return hi
}

// find is the slot that holds k, or else the empty slot where k would go.
func (s *orderSet) find(k orderKey) (slot uint64, found bool) {
	n := uint64(len(s.slots))
	for i := s.home(k); ; i++ {
		if i == n {
			i = 0
		}
		switch sl := s.slots[i]; {
		case sl == orderKey{}:
			return i, false
		case sameOrder(sl, k):
			return i, true
		}
	}
}

// grow doubles the slots and places every key again.
func (s *orderSet) grow() { s.resize(max(2*len(s.slots), 1024)) }

// resize places every key again in n slots.
func (s *orderSet) resize(n int) {
	old := s.slots
	s.slots, s.n = make([]orderKey, n), 0
	for _, k := range old {
		if k != (orderKey{}) {
			s.add(k)
		}
	}
}

// keep forgets every key keep refuses, and makes the set as small as
// what is left needs (slotsFor).
func (s *orderSet) keep(keep func(orderKey) bool) {
	old := s.slots
	n := 0
	for _, k := range old {
		if k != (orderKey{}) && keep(k) {
			n++
		}
	}
	s.slots, s.n = make([]orderKey, slotsFor(n)), 0
	for _, k := range old {
		if k != (orderKey{}) && keep(k) {
			s.add(k)
		}
	}
}

// slotsFor is the number of slots that n keys fill to 60%: a quarter more
// keys fill them to three quarters, when the set grows. Under a horizon
// the orders it forgets make room for the new ones.
func slotsFor(n int) int { return max(1024, n*5/3+1) }

// newOrderSet returns a set of keys (slotsFor).
func newOrderSet(keys []orderKey) *orderSet {
	s := &orderSet{}
	s.resize(slotsFor(len(keys)))
	for _, k := range keys {
		s.add(k)
	}
	return s
}
