// Package retry runs the delayed stages of the retry ladder. Stage k reads
// its retry topic, holds each record until the due time in its headers
// (never early, without holding back other partitions), then decides it
// again: processed, the next retry topic, or the DLQ after the last stage.
package retry

import (
	"fmt"

	"go.uber.org/fx"

	"github.com/orderflow/orders/services/processor"
	"github.com/orderflow/orders/topology"
)

// Module runs retry stage k (1-based) of top.
func Module(top topology.Topology, k int) (fx.Option, error) {
	if k < 1 || k > top.Stages() {
		return nil, fmt.Errorf("--stage: %d is not a retry stage; RETRY_DELAYS configures stages 1 to %d", k, top.Stages())
	}
	return processor.StepModule(k), nil
}
