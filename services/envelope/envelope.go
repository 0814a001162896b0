// Package envelope is what travels with an order between stages: the record
// as a stage sees it, the history headers a failed order carries from hop to
// hop, and the JSON record written to the dead-letter queue. It knows nothing
// of Kafka clients.
package envelope

import "time"

// Header is one record header.
type Header struct {
	Key   string
	Value []byte
}

// Record is one consumed record.
type Record struct {
	Topic     string
	Partition int
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []Header
	Time      time.Time
}

// Header returns the value of the last header named key and whether it exists.
func (r Record) Header(key string) ([]byte, bool) {
	for i := len(r.Headers) - 1; i >= 0; i-- {
		if r.Headers[i].Key == key {
			return r.Headers[i].Value, true
		}
	}
	return nil, false
}

// AnyPartition lets the producer choose a partition from the key.
const AnyPartition = -1

// Output is one record a stage produces for an input record.
type Output struct {
	Topic string
	// Partition is the target partition, or AnyPartition to partition by key.
	Partition int
	Key       []byte
	Value     []byte
	Headers   []Header
	// Time is the record's timestamp; the zero time stamps it when it is
	// written.
	Time time.Time
}
