package bench

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/orderflow/orders/services/admin"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/testkit"
)

const (
	loopRecords    = 3000
	loopPartitions = 3
	loopMaxBatch   = 100
)

// loopCluster is a broker whose topic "in" holds loopRecords records with
// history headers, as a retry topic's backlog.
func loopCluster(t *testing.T) (*kfake.Cluster, kafka.Client) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(loopPartitions, "in", "out"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	client := kafka.Client{Brokers: c.ListenAddrs()}
	if err := fill(t.Context(), client, "in", loopRecords, 1, true); err != nil {
		t.Fatal(err)
	}
	return c, client
}

// startLoop runs b on franz-go until the test ends and returns once it is
// assigned.
func startLoop(t *testing.T, b bare) {
	t.Helper()
	b.On, b.Topic, b.MaxBatch, b.Partitions = franzGo, "in", loopMaxBatch, loopPartitions
	ctx, cancel := context.WithCancel(t.Context())
	ready, errc := make(chan struct{}), make(chan error, 1)
	go func() { errc <- b.run(ctx, ready) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("loop: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-errc:
		errc <- err // for the cleanup to report
		t.FailNow()
	case <-time.After(30 * time.Second):
		t.Fatal("not assigned")
	}
}

// waitLag waits until the group's lag on "in" is lag.
func waitLag(t *testing.T, client kafka.Client, group string, lag int64) {
	t.Helper()
	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		n, _, err := admin.GroupLag(t.Context(), client, group, "in")
		return err == nil && n == lag, fmt.Sprintf("group %s: lag %d (%v), want %d", group, n, err, lag)
	})
}

// records are the key, value and headers of each record of topic, sorted.
func records(t *testing.T, client kafka.Client, topic string, n int) []string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(client.Brokers...), kgo.ConsumeTopics(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out []string
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("%s: %d records, want %d: %v", topic, len(out), n, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			out = append(out, fmt.Sprintf("%q %q %q", r.Key, r.Value, r.Headers))
		})
	}
	slices.Sort(out)
	return out
}

// produceSizes observes the records of each produce request.
func produceSizes(c *kfake.Cluster) (most, total *atomic.Int64) {
	most, total = new(atomic.Int64), new(atomic.Int64)
	// Not handled: the broker answers the request as ever. Control
	// functions run one at a time.
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		n := int64(0)
		for _, tp := range req.(*kmsg.ProduceRequest).Topics {
			for _, p := range tp.Partitions {
				var rb kmsg.RecordBatch
				if rb.ReadFrom(p.Records) == nil {
					n += int64(rb.NumRecords)
				}
			}
		}
		total.Add(n)
		if n > most.Load() {
			most.Store(n)
		}
		return nil, nil, false
	})
	return most, total
}

// The copy loop writes every record unchanged, in produce requests of no
// more than a poll's records (MaxBatch for each partition of the topic),
// and commits to the end.
func TestFranzGoCopy(t *testing.T) {
	c, client := loopCluster(t)
	most, total := produceSizes(c)
	startLoop(t, bare{Client: client, Group: "copy", Out: "out"})
	waitLag(t, client, "copy", 0)
	in, out := records(t, client, "in", loopRecords), records(t, client, "out", loopRecords)
	if !slices.Equal(in, out) {
		t.Errorf("out differs from in: %d records, want %d", len(out), len(in))
	}
	if total.Load() != loopRecords || most.Load() > loopMaxBatch*loopPartitions {
		t.Errorf("produced %d records, at most %d a request; want %d, at most %d", total.Load(), most.Load(), loopRecords, loopMaxBatch*loopPartitions)
	}
}

// The consume-and-commit loop commits to the end and produces nothing.
func TestFranzGoConsume(t *testing.T) {
	c, client := loopCluster(t)
	_, total := produceSizes(c)
	startLoop(t, bare{Client: client, Group: "consume"})
	waitLag(t, client, "consume", 0)
	if total.Load() != 0 {
		t.Errorf("produced %d records, want none", total.Load())
	}
}

// A batch whose produce fails is never committed: the loop stops with the
// error and the group has committed nothing.
func TestFranzGoCommitsOnlyAcknowledged(t *testing.T) {
	c, client := loopCluster(t)
	h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.InvalidRecord, Count: -1})
	defer h.Remove()
	b := bare{Client: client, Group: "refused", Out: "out", On: franzGo, Topic: "in", MaxBatch: loopMaxBatch, Partitions: loopPartitions}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := b.run(ctx, make(chan struct{})); err == nil || ctx.Err() != nil {
		t.Fatalf("loop: %v (%v), want a produce error", err, ctx.Err())
	}
	if h.Hits() == 0 {
		t.Fatal("no produce request refused")
	}
	waitLag(t, client, "refused", loopRecords)
}
