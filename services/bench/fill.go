package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/processor"
	"github.com/orderflow/orders/services/producer"
	"github.com/orderflow/orders/topology"
)

// fill writes n generated orders (a quarter of them Item3) to topic, as
// fast as the broker takes them. With retry set, each carries the history
// headers of an order that failed in the main stage long enough ago to be
// due now, as a retry topic's backlog would.
func fill(ctx context.Context, client kafka.Client, topic string, n int, seed uint64, retry bool) error {
	w := client.NewWriter(kafka.WriterConfig{BatchSize: 1000}, nopLogger())
	defer w.Close()
	gen := producer.NewGenerator(1001, seed)
	failedAt := time.Now().Add(-time.Hour)
	const chunk = 12000
	outs := make([]envelope.Output, 0, chunk)
	for done := 0; done < n; {
		outs = outs[:0]
		for range min(chunk, n-done) {
			o := gen.Next()
			v, err := schemas.Encode(o)
			if err != nil {
				return err
			}
			out := envelope.Output{Topic: topic, Partition: envelope.AnyPartition, Key: []byte(o.OrderID), Value: v}
			if retry {
				h := envelope.History{OriginalTopic: topology.DefaultOrders, OriginalOffset: int64(done + len(outs))}
				failure := processor.Rule{FailProducts: []string{o.Product}}.Process(o, 1) // as main fails it
				h = h.Failed(topology.StageMain, failedAt, failure.Error())
				h.DueAt = failedAt.Add(time.Second)
				out.Headers = h.Headers()
			}
			outs = append(outs, out)
		}
		if err := w.Write(ctx, outs); err != nil {
			return fmt.Errorf("fill %s: %w", topic, err)
		}
		done += len(outs)
	}
	return nil
}

var errTimeout = errors.New("timed out")
