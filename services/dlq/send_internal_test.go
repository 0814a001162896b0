package dlq

import (
	"encoding/hex"
	"reflect"
	"testing"
	"time"

	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/topology"
)

// A replay to a retry topic carries a history the retry stage reads: the
// DLQ record's place and failures, then the replay, due at once.
func TestSendToARetryTopicWritesAHistory(t *testing.T) {
	top := topology.Default()
	at := time.Date(2026, 11, 29, 18, 14, 46, 0, time.UTC)
	failures := []envelope.Failure{
		{Stage: "main", Attempt: 1, At: at, Error: "product fails processing: Item3"},
		{Stage: "retry-1", Attempt: 2, At: at.Add(time.Second), Error: "product fails processing: Item3"},
	}
	raw := []byte("\x08\x31\x30\x30\x36\x0aItem3\xf6\x28\x1f\x42")
	e := Entry{Partition: 4, Offset: 17, Letter: envelope.DeadLetter{
		Error: "product fails processing: Item3", Topic: "orders", Partition: 2, Offset: 99, Key: "1006",
		RawValueHex: hex.EncodeToString(raw), Replays: 1, Stage: "retry-1", Attempts: 2,
		FirstFailureAt: at, LastFailureAt: at.Add(time.Second), Errors: failures,
	}}
	var outs []envelope.Output
	write := func(o envelope.Output) error { outs = append(outs, o); return nil }
	before := time.Now()
	if err := send(write, top, top.RetryTopic(2), 2, e); err != nil {
		t.Fatal(err)
	}
	var order *envelope.Output
	for i := range outs {
		if outs[i].Topic == top.RetryTopic(2) {
			order = &outs[i]
		}
	}
	if order == nil || len(outs) != 3 {
		t.Fatalf("wrote %d records, none to %s; want a mark, the order and a mark", len(outs), top.RetryTopic(2))
	}
	if string(order.Value) != string(raw) || string(order.Key) != "1006" {
		t.Fatalf("order %q keyed %q, want the DLQ record's raw value keyed 1006", order.Value, order.Key)
	}
	r := envelope.Record{Topic: order.Topic, Headers: order.Headers}
	h, err := envelope.ParseHistory(r)
	if err != nil {
		t.Fatalf("the retry stage cannot read the replayed history: %v", err)
	}
	if h.Attempts != 2 || h.OriginalTopic != "orders" || h.OriginalPartition != 2 || h.OriginalOffset != 99 {
		t.Fatalf("attempts %d from %s/%d@%d, want 2 from orders/2@99", h.Attempts, h.OriginalTopic, h.OriginalPartition, h.OriginalOffset)
	}
	if h.Replays != 2 || h.ErrorClass != "replay" || h.LastStage != "replay" || h.LastError != e.Letter.Error {
		t.Fatalf("replays %d, class %q, last %q: %q", h.Replays, h.ErrorClass, h.LastStage, h.LastError)
	}
	if !reflect.DeepEqual(h.Errors[:2], failures) || len(h.Errors) != 3 || h.Errors[2].Attempt != 2 {
		t.Fatalf("errors %+v, want the DLQ record's two, then the replay as attempt 2", h.Errors)
	}
	if !h.FirstFailureAt.Equal(at) {
		t.Fatalf("first failure at %v, want %v", h.FirstFailureAt, at)
	}
	if h.DueAt.Before(before) || h.DueAt.After(time.Now()) {
		t.Fatalf("due at %v, want the time of the send", h.DueAt)
	}
	if v, ok := r.Header(envelope.HeaderReplaySource); !ok || string(v) != top.DLQ+"/4@17" {
		t.Fatalf("%s = %q, want %s/4@17", envelope.HeaderReplaySource, v, top.DLQ)
	}
}
