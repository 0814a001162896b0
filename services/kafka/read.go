package kafka

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/wait"
)

// ReadNew calls fn for every record of topics from the offsets in next
// (per topic and partition, updated as it reads) up to the end offsets
// at the time of the call.
func ReadNew(ctx context.Context, client Client, topics []string, next map[string]map[int]int64, fn func(envelope.Record) error) error {
	admin := client.Admin()
	defer admin.Close()
	meta, err := admin.Metadata(ctx, &kafkago.MetadataRequest{Topics: topics})
	if err != nil {
		return fmt.Errorf("metadata: %w", ExplainDenied(err, "DESCRIBE", "topics", strings.Join(topics, ", ")))
	}
	req := &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{}}
	for _, tm := range meta.Topics {
		if tm.Error != nil {
			return fmt.Errorf("topic %s: %w", tm.Name, ExplainDenied(tm.Error, "DESCRIBE", "topic", tm.Name))
		}
		for _, p := range tm.Partitions {
			req.Topics[tm.Name] = append(req.Topics[tm.Name], kafkago.FirstOffsetOf(p.ID), kafkago.LastOffsetOf(p.ID))
		}
	}
	res, err := admin.ListOffsets(ctx, req)
	if err != nil {
		return fmt.Errorf("list offsets: %w", err)
	}
	for topic, parts := range res.Topics {
		if next[topic] == nil {
			next[topic] = map[int]int64{}
		}
		for _, po := range parts {
			if po.Error != nil {
				return fmt.Errorf("list offsets of %s/%d: %w", topic, po.Partition, po.Error)
			}
			from, ok := next[topic][po.Partition]
			if !ok || from < po.FirstOffset {
				from = po.FirstOffset
			}
			if from >= po.LastOffset {
				continue
			}
			if err := ReadRange(ctx, client, topic, po.Partition, from, po.LastOffset, fn); err != nil {
				return err
			}
			next[topic][po.Partition] = po.LastOffset
		}
	}
	return nil
}

// ReadRange calls fn for the records of one partition from offset from up
// to, not including, end. It reads with the stages' fetcher, so it ends at
// end even when transaction markers, which are not records, come last. A
// throttled answer is no failure: the next request waits it out. A
// request that fails for a reason that may pass is sent again a few times;
// any other failure is returned.
func ReadRange(ctx context.Context, client Client, topic string, part int, from, end int64, fn func(envelope.Record) error) error {
	f := client.NewFetcher()
	defer f.Close()
	r := f.partitionReader(topic, part, zap.NewNop())
	defer r.close()
	var (
		fnErr  error
		atEnd  bool
		failed int
	)
	emit := func(m envelope.Record) bool {
		if m.Offset >= end {
			atEnd = true
			return false
		}
		fnErr = fn(m)
		return fnErr == nil
	}
	for b := wait.Between(50*time.Millisecond, time.Second); from < end && !atEnd; {
		next, err := r.read(ctx, from, emit)
		if fnErr != nil {
			return fnErr
		}
		from = next
		switch {
		case err == nil:
			continue
		case errors.Is(err, errOldBroker):
			return readRangeWithReader(ctx, client, topic, part, from, end, fn)
		}
		if failed++; ctx.Err() != nil || !retriable(err) || failed > readAttempts || !b.Wait(ctx) {
			return fmt.Errorf("read %s/%d: %w", topic, part, ExplainDenied(err, "READ", "topic", topic))
		}
	}
	return nil
}

// readAttempts is how many times ReadRange sends a request again after a
// failure that may pass.
const readAttempts = 5

// readRangeWithReader is ReadRange with kafka-go's Reader, for brokers too
// old for the fetcher.
func readRangeWithReader(ctx context.Context, client Client, topic string, part int, from, end int64, fn func(envelope.Record) error) error {
	r := kafkaGoReader(client, zap.NewNop(), topic, part)
	defer r.Close()
	if err := r.SetOffset(from); err != nil {
		return err
	}
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return fmt.Errorf("read %s/%d: %w", topic, part, ExplainDenied(err, "READ", "topic", topic))
		}
		if err := fn(FromKafkaGo(m)); err != nil {
			return err
		}
		if m.Offset+1 >= end {
			return nil
		}
	}
}
