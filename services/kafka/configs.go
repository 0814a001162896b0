package kafka

import (
	"context"
	"fmt"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// TopicConfigs returns the values of the named configs of topic as the
// broker applies them: a topic's own setting, else the broker's default.
// A name the broker does not report is absent.
func (c Client) TopicConfigs(ctx context.Context, topic string, names ...string) (map[string]string, error) {
	admin := c.Admin()
	defer admin.Close()
	res, err := admin.DescribeConfigs(ctx, &kafkago.DescribeConfigsRequest{Resources: []kafkago.DescribeConfigRequestResource{{
		ResourceType: kafkago.ResourceTypeTopic, ResourceName: topic, ConfigNames: names,
	}}})
	if err != nil {
		return nil, fmt.Errorf("describe configs of %s: %w", topic, ExplainDenied(err, "DESCRIBE_CONFIGS", "topic", topic))
	}
	out := map[string]string{}
	for _, r := range res.Resources {
		if r.Error != nil {
			return nil, fmt.Errorf("describe configs of %s: %w", topic, ExplainDenied(r.Error, "DESCRIBE_CONFIGS", "topic", topic))
		}
		for _, e := range r.ConfigEntries {
			out[e.ConfigName] = e.ConfigValue
		}
	}
	return out, nil
}

// OffsetAt is the offset of the first record of topic/part stamped at or
// after t, or -1 if there is none.
func (c Client) OffsetAt(ctx context.Context, topic string, part int, t time.Time) (int64, error) {
	f := c.NewFetcher()
	defer f.Close()
	o, err := f.offsetAt(ctx, topic, part, t)
	if err != nil {
		return 0, fmt.Errorf("offset of %s/%d at %v: %w", topic, part, t.UTC().Format(time.RFC3339Nano), ExplainDenied(err, "DESCRIBE", "topic", topic))
	}
	return o, nil
}
