package wire

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Fetch API versions this package encodes and decodes: from 4 (Kafka 0.11,
// record batches) to 11, the last whose messages are not "flexible".
const (
	MinFetchVersion = 4
	MaxFetchVersion = 11
)

// fetchKey is the Fetch API's key.
const fetchKey = 1

// FetchRequest is a fetch request for one partition, from Offset, that
// reads what is written without waiting for transactions
// (read_uncommitted, as kafka-go's Reader does).
type FetchRequest struct {
	Version     int16
	Correlation int32
	Topic       string
	Partition   int
	Offset      int64
	// MaxWait is how long the broker may hold the request when it has no
	// record to give yet; MaxBytes bounds the records it gives.
	MaxWait  time.Duration
	MaxBytes int32
}

// Append appends the request, with its length first, as it goes on the
// connection.
func (q FetchRequest) Append(b []byte) []byte {
	version, topic, partition, offset := q.Version, q.Topic, q.Partition, q.Offset
	start := len(b)
	b = binary.BigEndian.AppendUint32(b, 0) // size, set below
	b = binary.BigEndian.AppendUint16(b, fetchKey)
	b = binary.BigEndian.AppendUint16(b, uint16(version))
	b = binary.BigEndian.AppendUint32(b, uint32(q.Correlation))
	b = appendString(b, "orders")                                            // client id
	b = binary.BigEndian.AppendUint32(b, 0xffffffff)                         // replica id -1
	b = binary.BigEndian.AppendUint32(b, uint32(q.MaxWait/time.Millisecond)) // max wait
	b = binary.BigEndian.AppendUint32(b, 1)                                  // min bytes
	b = binary.BigEndian.AppendUint32(b, uint32(q.MaxBytes))                 // max bytes (v3+)
	b = append(b, 0)                                                         // isolation level (v4+)
	if version >= 7 {
		b = binary.BigEndian.AppendUint32(b, 0)          // session id: no session
		b = binary.BigEndian.AppendUint32(b, 0xffffffff) // session epoch -1
	}
	b = binary.BigEndian.AppendUint32(b, 1) // topics
	b = appendString(b, topic)
	b = binary.BigEndian.AppendUint32(b, 1) // partitions
	b = binary.BigEndian.AppendUint32(b, uint32(partition))
	if version >= 9 {
		b = binary.BigEndian.AppendUint32(b, 0xffffffff) // current leader epoch: unknown
	}
	b = binary.BigEndian.AppendUint64(b, uint64(offset))
	if version >= 5 {
		b = binary.BigEndian.AppendUint64(b, 0xffffffffffffffff) // log start offset -1
	}
	b = binary.BigEndian.AppendUint32(b, uint32(q.MaxBytes)) // partition max bytes
	if version >= 7 {
		b = binary.BigEndian.AppendUint32(b, 0) // forgotten topics
	}
	if version >= 11 {
		b = appendString(b, "") // rack id
	}
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-4))
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// FetchResult is what a fetch response says of the partition asked for.
type FetchResult struct {
	Records  []byte        // its record batches; none if it was left out
	Throttle time.Duration // how long the broker throttles the client for
	Replica  int32         // the preferred read replica (KIP-392, v11), or -1
}

// ErrorCode is an error code a broker answered with, for the caller to
// name.
type ErrorCode int16

func (c ErrorCode) Error() string { return fmt.Sprintf("broker error code %d", int16(c)) }

// ParseFetchResponse returns what a fetch response of the given version
// and correlation id says of topic/partition, or the error the broker
// gave, an ErrorCode. A response may leave the partition out: one that
// throttles the client holds no topic at all (KafkaApis answers with an
// empty response and the throttle time), which is no records, not a
// failure. Each count is checked against the bytes left, so that a hostile
// one is refused at once rather than counted through.
func ParseFetchResponse(res []byte, version int16, corr int32, topic string, partition int) (FetchResult, error) {
	out := FetchResult{Replica: -1}
	r := &fields{b: res}
	if got := r.int32(); r.err == nil && got != corr {
		return out, fmt.Errorf("fetch response %d to request %d", got, corr)
	}
	out.Throttle = time.Duration(r.int32()) * time.Millisecond
	if version >= 7 {
		if code := r.int16(); code != 0 {
			return out, ErrorCode(code)
		}
		r.int32() // session id
	}
	// The fewest bytes a partition takes: id, error, high watermark, last
	// stable offset, aborted transactions and the records' size.
	partitionSize := 4 + 2 + 8 + 8 + 4 + 4
	if version >= 5 {
		partitionSize += 8 // log start offset
	}
	if version >= 11 {
		partitionSize += 4 // preferred read replica
	}
	for range r.count("topics", 2+4) {
		name := r.string()
		for range r.count("partitions", partitionSize) {
			p := r.int32()
			code := r.int16()
			r.int64() // high watermark
			r.int64() // last stable offset (v4+)
			if version >= 5 {
				r.int64() // log start offset
			}
			r.take(16 * r.count("aborted transactions", 16))
			replica := int32(-1)
			if version >= 11 {
				replica = r.int32()
			}
			size := r.int32()
			var rs []byte
			if size > 0 {
				rs = r.take(int(size))
			}
			if r.err != nil {
				return out, fmt.Errorf("fetch response: %w", r.err)
			}
			if name == topic && int(p) == partition {
				if code != 0 {
					return out, ErrorCode(code)
				}
				out.Records, out.Replica = rs, replica
			}
		}
	}
	if r.err != nil {
		return out, fmt.Errorf("fetch response: %w", r.err)
	}
	return out, nil
}
