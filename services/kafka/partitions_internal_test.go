package kafka

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol/metadata"
)

// countingTransport answers metadata requests with one partition per call
// made so far, so a cached answer shows as a smaller count.
type countingTransport struct {
	calls int
	fail  map[string]bool // topics answered with an error code
}

func (t *countingTransport) RoundTrip(_ context.Context, _ net.Addr, req kafkago.Request) (kafkago.Response, error) {
	t.calls++
	m, ok := req.(*metadata.Request)
	if !ok {
		return nil, errors.New("not metadata")
	}
	res := &metadata.Response{}
	for _, name := range m.TopicNames {
		topic := metadata.ResponseTopic{Name: name, Partitions: make([]metadata.ResponsePartition, t.calls)}
		if t.fail[name] {
			topic.ErrorCode = 3 // UNKNOWN_TOPIC_OR_PARTITION
		}
		res.Topics = append(res.Topics, topic)
	}
	return res, nil
}

func partitionsOf(t *testing.T, c *partitionCounts, topics ...string) int {
	t.Helper()
	r, err := c.RoundTrip(context.Background(), nil, &metadata.Request{TopicNames: topics})
	if err != nil {
		t.Fatal(err)
	}
	return len(r.(*metadata.Response).Topics[0].Partitions)
}

func TestPartitionCountsAnswerEachTopicOncePerTTL(t *testing.T) {
	next := &countingTransport{fail: map[string]bool{"missing": true}}
	c := newPartitionCounts(next, time.Second)
	t0 := time.Now()
	c.expire(t0)
	for range 100 {
		if n := partitionsOf(t, c, "a"); n != 1 {
			t.Fatalf("a has %d partitions, want the first answer's 1", n)
		}
	}
	if n := partitionsOf(t, c, "b"); n != 2 {
		t.Fatalf("b has %d partitions, want its own answer's 2", n)
	}
	if next.calls != 2 {
		t.Fatalf("%d calls for 101 lookups of 2 topics, want 2", next.calls)
	}

	// Errors and requests of another shape are never kept.
	partitionsOf(t, c, "missing")
	partitionsOf(t, c, "missing")
	partitionsOf(t, c, "a", "b")
	if _, err := c.RoundTrip(context.Background(), nil, &metadata.Request{TopicNames: []string{"a"}, AllowAutoTopicCreation: true}); err != nil {
		t.Fatal(err)
	}
	if next.calls != 6 {
		t.Fatalf("%d calls, want 6: an error, another, two topics and auto-creation all go through", next.calls)
	}

	c.expire(t0.Add(time.Second - time.Nanosecond))
	if n := partitionsOf(t, c, "a"); n != 1 {
		t.Fatalf("before the TTL a has %d partitions, want the kept 1", n)
	}
	c.expire(t0.Add(time.Second))
	if n := partitionsOf(t, c, "a"); n != 7 {
		t.Fatalf("after the TTL a has %d partitions, want a fresh answer's 7", n)
	}
}
