package kafka

import (
	"unsafe"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/orderflow/orders/services/envelope"
)

// FirstOffset is the offset of a partition that names its first record,
// whatever its number: where a group that has committed nothing begins.
const FirstOffset = kafkago.FirstOffset

// KafkaGoMessages converts outputs to kafka-go messages, for kafka-go's
// Writer: the writer of clusters older than record batches, and the
// baseline the benchmarks compare with. Headers are shared, not copied
// (see kafkaHeaders).
func KafkaGoMessages(outs []envelope.Output) []kafkago.Message {
	msgs := make([]kafkago.Message, 0, len(outs))
	for _, o := range outs {
		msgs = append(msgs, kafkago.Message{Topic: o.Topic, Partition: o.Partition, Key: o.Key, Value: o.Value, Headers: kafkaHeaders(o.Headers), Time: o.Time})
	}
	return msgs
}

// FromKafkaGo converts a record kafka-go's Reader read, without copying
// its headers.
func FromKafkaGo(m kafkago.Message) envelope.Record {
	return envelope.Record{
		Topic: m.Topic, Partition: m.Partition, Offset: m.Offset,
		Key: m.Key, Value: m.Value, Headers: envelopeHeaders(m.Headers), Time: m.Time,
	}
}

// kafkago.Header and envelope.Header are the same struct, which this
// conversion checks at compile time; so a slice of one is a slice of the
// other, and headers pass between kafka-go and the stages without a copy.
// Neither side changes headers it did not make.
var _ = kafkago.Header(envelope.Header{})

func envelopeHeaders(hs []kafkago.Header) []envelope.Header {
	if len(hs) == 0 {
		return nil
	}
	return unsafe.Slice((*envelope.Header)(unsafe.Pointer(unsafe.SliceData(hs))), len(hs))
}

func kafkaHeaders(hs []envelope.Header) []kafkago.Header {
	if len(hs) == 0 {
		return nil
	}
	return unsafe.Slice((*kafkago.Header)(unsafe.Pointer(unsafe.SliceData(hs))), len(hs))
}
