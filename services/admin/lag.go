package admin

import (
	"context"
	"errors"
	"fmt"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/orderflow/orders/services/kafka"
)

// PartitionLag is one partition of a topic as seen by one consumer group.
type PartitionLag struct {
	Partition  int
	Start, End int64 // the log's first and next offsets
	Committed  int64 // the group's next offset to read; -1 if none
}

// Lag is how many records the group has yet to commit.
func (p PartitionLag) Lag() int64 {
	from := p.Committed
	if from < p.Start {
		from = p.Start
	}
	return max(p.End-from, 0)
}

// GroupLag returns the group's position in every partition of topic and the
// total lag. A group that does not exist, or group "", has committed
// nothing.
func GroupLag(ctx context.Context, client kafka.Client, group, topic string) (int64, []PartitionLag, error) {
	admin := client.Admin()
	defer admin.Close()
	return Lag(ctx, admin, group, topic)
}

// Lag is GroupLag on the connections of admin, for callers that ask often.
func Lag(ctx context.Context, admin *kafka.Admin, group, topic string) (int64, []PartitionLag, error) {
	counts, err := partitionCounts(ctx, admin, []string{topic})
	if err != nil {
		return 0, nil, err
	}
	n, ok := counts[topic]
	if !ok {
		return 0, nil, fmt.Errorf("topic %s does not exist (run orders topics)", topic)
	}
	req := &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{}}
	ids := make([]int, n)
	for p := range n {
		ids[p] = p
		req.Topics[topic] = append(req.Topics[topic], kafkago.FirstOffsetOf(p), kafkago.LastOffsetOf(p))
	}
	offs, err := admin.ListOffsets(ctx, req)
	if err != nil {
		return 0, nil, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	committed := &kafkago.OffsetFetchResponse{}
	if group != "" {
		committed, err = admin.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ids}})
		switch {
		case err != nil:
			return 0, nil, fmt.Errorf("offsets of group %s: %w", group, err)
		case errors.Is(committed.Error, kafkago.GroupIdNotFound):
			committed = &kafkago.OffsetFetchResponse{}
		case committed.Error != nil:
			return 0, nil, fmt.Errorf("offsets of group %s: %w", group, committed.Error)
		}
	}
	parts := make([]PartitionLag, n)
	for p := range parts {
		parts[p] = PartitionLag{Partition: p, Committed: -1}
	}
	for _, po := range offs.Topics[topic] {
		if po.Error != nil {
			return 0, nil, fmt.Errorf("list offsets of %s/%d: %w", topic, po.Partition, po.Error)
		}
		parts[po.Partition].Start, parts[po.Partition].End = po.FirstOffset, po.LastOffset
	}
	for _, c := range committed.Topics[topic] {
		if errors.Is(c.Error, kafkago.GroupIdNotFound) {
			continue
		}
		if c.Error != nil {
			return 0, nil, fmt.Errorf("offset of group %s on %s/%d: %w", group, topic, c.Partition, c.Error)
		}
		parts[c.Partition].Committed = c.CommittedOffset
	}
	var total int64
	for _, p := range parts {
		total += p.Lag()
	}
	return total, parts, nil
}
