package main_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/outcome"
	"github.com/orderflow/orders/services/testkit"
)

func encode(t *testing.T, o schemas.Order) []byte {
	t.Helper()
	b, err := schemas.Encode(o)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Hostile and broken records end as one DLQ record each, with a precise
// error and no retry, and the partition they sit on keeps flowing.
func TestHostileInputIsDeadLetteredOnce(t *testing.T) {
	c := newCluster(t, []time.Duration{100 * time.Millisecond})
	c.start("run", "main")
	c.start("run", "retry", "--stage", "1")

	seed, _ := hex.DecodeString("08313030360a4974656d33f6281f42")
	big := make([]byte, 900<<10)
	for i := range big {
		big[i] = byte(i * 7)
	}
	type hostile struct {
		key, topic, reason, errPart string
		attempts                    int // default 1
		value                       []byte
		headers                     []envelope.Header
	}
	valid := encode(t, schemas.Order{OrderID: "r1", Product: "Item1", Price: 10})
	failed := envelope.Begin(envelope.Record{Topic: "orders"}).Failed("main", time.Now(), "x")
	failed.DueAt = time.Now()
	history := failed.Headers()
	garbled := append([]envelope.Header(nil), history...)
	for i := range garbled {
		if garbled[i].Key == envelope.HeaderDueAt {
			garbled[i].Value = []byte("tomorrow")
		}
	}
	cases := []hostile{
		{key: "h-not-avro", value: []byte("hello, this is not avro"), reason: envelope.ReasonUndecodable, errPart: "decode order"},
		{key: "h-truncated", value: seed[:len(seed)-3], reason: envelope.ReasonUndecodable, errPart: "truncated"},
		{key: "h-huge-length", value: []byte{0xfe, 0xff, 0xff, 0xff, 0x0f, 'a'}, reason: envelope.ReasonUndecodable, errPart: "orderId: length above 4096 bytes"},
		{key: "h-empty", value: nil, reason: envelope.ReasonUndecodable, errPart: "empty value"},
		{key: "h-trailing", value: append(append([]byte{}, seed...), 0), reason: envelope.ReasonUndecodable, errPart: "trailing bytes"},
		{key: "h-big", value: big, reason: envelope.ReasonUndecodable, errPart: "decode order"},
		{key: "h-empty-id", value: encode(t, schemas.Order{Product: "Item1", Price: 10}), reason: envelope.ReasonInvalid, errPart: "empty orderId"},
		{key: "h-nan", value: encode(t, schemas.Order{OrderID: "n", Product: "Item1", Price: float32(math.NaN())}), reason: envelope.ReasonInvalid, errPart: "NaN"},
		{key: "h-inf", value: encode(t, schemas.Order{OrderID: "i", Product: "Item1", Price: float32(math.Inf(1))}), reason: envelope.ReasonInvalid, errPart: "infinite"},
		{key: "h-neg-inf", value: encode(t, schemas.Order{OrderID: "j", Product: "Item1", Price: float32(math.Inf(-1))}), reason: envelope.ReasonInvalid, errPart: "infinite"},
		{key: "h-negative", value: encode(t, schemas.Order{OrderID: "m", Product: "Item1", Price: -5}), reason: envelope.ReasonInvalid, errPart: "negative price"},
		{key: "h-absurd", value: encode(t, schemas.Order{OrderID: "a", Product: "Item1", Price: 3e38}), reason: envelope.ReasonInvalid, errPart: "above"},
		{key: "r-no-headers", topic: c.top.RetryTopic(1), value: valid, reason: envelope.ReasonBadHeaders, errPart: "missing x-retry-attempts"},
		{key: "r-garbled", topic: c.top.RetryTopic(1), value: valid, headers: garbled, reason: envelope.ReasonBadHeaders, errPart: "x-retry-due-at is not an RFC 3339 time"},
		{key: "r-undecodable", topic: c.top.RetryTopic(1), value: []byte("junk"), headers: history, reason: envelope.ReasonUndecodable, errPart: "decode order", attempts: 2},
	}
	w := c.client.NewWriter(kafka.WriterConfig{}, testLogger(t))
	defer w.Close()
	var outs []envelope.Output
	for _, h := range cases {
		topic := h.topic
		if topic == "" {
			topic = c.top.Orders
		}
		outs = append(outs, envelope.Output{Topic: topic, Partition: 0, Key: []byte(h.key), Value: h.value, Headers: h.headers})
	}
	// A good order behind them on the same partitions must still flow.
	good := encode(t, schemas.Order{OrderID: "9001", Product: "Item1", Price: 42})
	outs = append(outs,
		envelope.Output{Topic: c.top.Orders, Partition: 0, Key: []byte("9001"), Value: good},
		envelope.Output{Topic: c.top.RetryTopic(1), Partition: 0, Key: []byte("9002"),
			Value: encode(t, schemas.Order{OrderID: "9002", Product: "Item2", Price: 43}), Headers: history})
	for _, o := range outs {
		if err := w.Write(context.Background(), []envelope.Output{o}); err != nil {
			t.Fatalf("write %s: %v", o.Key, err)
		}
	}

	tally := outcome.NewTally()
	testkit.Eventually(t, time.Minute, func() (bool, string) {
		if err := tally.Poll(context.Background(), c.client, c.top); err != nil {
			return false, err.Error()
		}
		_, ok1 := tally.Processed["9001"]
		_, ok2 := tally.Processed["9002"]
		return len(tally.Dead) == len(cases) && ok1 && ok2,
			fmt.Sprintf("%d of %d dead-lettered, good orders processed: %v %v", len(tally.Dead), len(cases), ok1, ok2)
	})
	for _, h := range cases {
		d := tally.Dead[h.key]
		if d == nil {
			t.Errorf("%s: not in the DLQ", h.key)
			continue
		}
		l := d.Letter
		want := max(h.attempts, 1)
		if d.Deliveries != 1 || l.Reason != h.reason || l.Attempts != want || !strings.Contains(l.Error, h.errPart) {
			t.Errorf("%s: %d DLQ records, reason %s, attempts %d, error %q; want 1, %s, %d, an error with %q",
				h.key, d.Deliveries, l.Reason, l.Attempts, l.Error, h.reason, want, h.errPart)
		}
	}
	if l := tally.Dead["h-big"].Letter; !l.RawValueTruncated || l.RawValueSize != len(big) {
		t.Errorf("900 KiB value: DLQ record truncated %v size %d", l.RawValueTruncated, l.RawValueSize)
	}
	// None of them was retried.
	retried := map[string]bool{}
	err := kafka.ReadNew(context.Background(), c.client, []string{c.top.RetryTopic(1)}, map[string]map[int]int64{}, func(m envelope.Record) error {
		if strings.HasPrefix(string(m.Key), "h-") {
			retried[string(m.Key)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(retried) > 0 {
		t.Errorf("hostile records went to a retry topic: %v", retried)
	}
}
