package aggregator

import "hash/maphash"

// orderKey stands for an orderId in the de-duplication set: two 64-bit
// hashes of it under independent seeds. The set then holds no pointers, so
// the garbage collector never scans it however many orders it holds, and
// an order costs 24 bytes of entry instead of a string and its header.
//
// The seeds are drawn per process. That is enough: a process builds its
// sets from the orderIds in the state topic when it restores a partition,
// and the state topic keeps the orderIds themselves. Two distinct orders
// share a key with probability about n²/2¹²⁹ among n orders (below 10⁻²⁰
// for a billion), and the aggregator would then count them as one.
type orderKey [2]uint64

var orderKeySeeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

func keyOf(orderID string) orderKey {
	return orderKey{maphash.String(orderKeySeeds[0], orderID), maphash.String(orderKeySeeds[1], orderID)}
}
