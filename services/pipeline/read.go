package pipeline

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// ReadNew calls fn for every record of topics from the offsets in next
// (per topic and partition, updated as it reads) up to the end offsets
// at the time of the call.
func ReadNew(ctx context.Context, client Client, topics []string, next map[string]map[int]int64, fn func(kafka.Message) error) error {
	admin := client.Admin()
	defer admin.Close()
	meta, err := admin.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return fmt.Errorf("metadata: %w", Denied(err, "DESCRIBE", "topics", strings.Join(topics, ", ")))
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, tm := range meta.Topics {
		if tm.Error != nil {
			return fmt.Errorf("topic %s: %w", tm.Name, Denied(tm.Error, "DESCRIBE", "topic", tm.Name))
		}
		for _, p := range tm.Partitions {
			req.Topics[tm.Name] = append(req.Topics[tm.Name], kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
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
// to, not including, end.
func ReadRange(ctx context.Context, client Client, topic string, part int, from, end int64, fn func(kafka.Message) error) error {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: client.Brokers, Dialer: client.Dialer(), Topic: topic, Partition: part,
		MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 100 * time.Millisecond,
	})
	defer r.Close()
	if err := r.SetOffset(from); err != nil {
		return err
	}
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return fmt.Errorf("read %s/%d: %w", topic, part, Denied(err, "READ", "topic", topic))
		}
		if err := fn(m); err != nil {
			return err
		}
		if m.Offset+1 >= end {
			return nil
		}
	}
}
