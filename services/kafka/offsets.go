package kafka

import (
	"context"
	"errors"
	"fmt"

	kafkago "github.com/segmentio/kafka-go"
)

// Bounds are where a partition's records are: the offset of its first and
// the offset after its last.
type Bounds struct {
	First, End int64
}

// Partitions is the number of partitions of topic. A topic the brokers do
// not know is an error that says to make the topics.
func (c Client) Partitions(ctx context.Context, topic string) (int, error) {
	admin := c.Admin()
	defer admin.Close()
	ids, err := partitionIDs(ctx, admin, topic)
	return len(ids), err
}

// Offsets are the bounds of every partition of topic.
func (c Client) Offsets(ctx context.Context, topic string) (map[int]Bounds, error) {
	admin := c.Admin()
	defer admin.Close()
	ids, err := partitionIDs(ctx, admin, topic)
	if err != nil {
		return nil, err
	}
	return listBounds(ctx, admin, topic, ids...)
}

// partitionIDs are the partitions of topic, from the metadata.
func partitionIDs(ctx context.Context, admin *Admin, topic string) ([]int, error) {
	meta, err := admin.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", topic, ExplainDenied(err, "DESCRIBE", "topic", topic))
	}
	if len(meta.Topics) != 1 || meta.Topics[0].Error != nil {
		var terr error = errors.New("not found")
		if len(meta.Topics) == 1 {
			terr = meta.Topics[0].Error
		}
		if errors.Is(terr, kafkago.TopicAuthorizationFailed) {
			return nil, fmt.Errorf("topic %s: %w", topic, ExplainDenied(terr, "DESCRIBE", "topic", topic))
		}
		return nil, fmt.Errorf("topic %s: %w (run orders topics)", topic, terr)
	}
	ids := make([]int, 0, len(meta.Topics[0].Partitions))
	for _, p := range meta.Topics[0].Partitions {
		ids = append(ids, p.ID)
	}
	return ids, nil
}

// PartitionBounds are the bounds of topic/part.
func (c Client) PartitionBounds(ctx context.Context, topic string, part int) (Bounds, error) {
	admin := c.Admin()
	defer admin.Close()
	bounds, err := listBounds(ctx, admin, topic, part)
	if err != nil {
		return Bounds{}, err
	}
	b, ok := bounds[part]
	if !ok || b.First < 0 || b.End < 0 {
		return Bounds{}, fmt.Errorf("list offsets of %s/%d: partition not found", topic, part)
	}
	return b, nil
}

func listBounds(ctx context.Context, admin *Admin, topic string, parts ...int) (map[int]Bounds, error) {
	req := &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{}}
	for _, p := range parts {
		req.Topics[topic] = append(req.Topics[topic], kafkago.FirstOffsetOf(p), kafkago.LastOffsetOf(p))
	}
	res, err := admin.ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s%s: %w", topic, partitionsText(parts), ExplainDenied(err, "DESCRIBE", "topic", topic))
	}
	out := map[int]Bounds{}
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("list offsets of %s/%d: %w", topic, po.Partition, ExplainDenied(po.Error, "DESCRIBE", "topic", topic))
		}
		out[po.Partition] = Bounds{First: po.FirstOffset, End: po.LastOffset}
	}
	return out, nil
}

// partitionsText is "/P" for one partition, else nothing.
func partitionsText(parts []int) string {
	if len(parts) == 1 {
		return fmt.Sprintf("/%d", parts[0])
	}
	return ""
}

// UnknownTopic reports whether err, of a write or a read, says a topic
// does not exist (or that the principal may not see it).
func UnknownTopic(err error) bool { return unknownTopic(err) }
