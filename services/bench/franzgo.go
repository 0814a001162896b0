package bench

import (
	"context"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// runFranzGo is the bare loop on franz-go's kgo.Client, written as its
// documentation has a poll, process, commit loop written: one group member
// polls at most MaxBatch records times the partitions of Topic (kgo bounds
// the records of a poll, not those of a partition), produces every one
// unchanged to Out with ProduceSync, which returns once each is
// acknowledged, and only then commits what it polled (at least once). It
// keeps kgo's producer defaults but compression, off as the stages write:
// acks from all in-sync replicas (set again here, to be plain), idempotent
// writes, the partitioner that hashes keys with murmur2 as the stages do,
// and a linger that ProduceSync cuts short. Rebalances wait for the commit
// (BlockRebalanceOnPoll), so that it never names a partition the member
// has lost. It connects in plain text, as the bench's broker takes.
func (b bare) runFranzGo(ctx context.Context, ready chan<- struct{}) error {
	var once sync.Once
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(b.Client.Brokers...),
		kgo.ConsumerGroup(b.Group), kgo.ConsumeTopics(b.Topic),
		kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) {
			once.Do(func() { close(ready) })
		}),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerBatchCompression(kgo.NoCompression()),
	)
	if err != nil {
		return fmt.Errorf("franz-go client: %w", err)
	}
	defer cl.Close()
	// A poll holds rebalances, and leaving the group at Close, until
	// AllowRebalance, whatever ends the loop.
	defer cl.AllowRebalance()
	for {
		fetches := cl.PollRecords(ctx, b.MaxBatch*b.Partitions)
		if ctx.Err() != nil {
			return nil
		}
		if errs := fetches.Errors(); len(errs) > 0 {
			return fmt.Errorf("poll %s[%d]: %w", errs[0].Topic, errs[0].Partition, errs[0].Err)
		}
		if b.Out != "" {
			recs := make([]kgo.Record, 0, fetches.NumRecords())
			out := make([]*kgo.Record, 0, cap(recs))
			fetches.EachRecord(func(r *kgo.Record) {
				recs = append(recs, kgo.Record{Topic: b.Out, Key: r.Key, Value: r.Value, Headers: r.Headers})
				out = append(out, &recs[len(recs)-1])
			})
			if err := cl.ProduceSync(ctx, out...).FirstErr(); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("produce: %w", err)
			}
		}
		if err := cl.CommitUncommittedOffsets(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("commit: %w", err)
		}
		cl.AllowRebalance()
	}
}
