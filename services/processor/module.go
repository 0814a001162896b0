package processor

import (
	"fmt"

	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/lifecycle"
	"github.com/orderflow/orders/services/metrics"
	"github.com/orderflow/orders/services/stage"
	"github.com/orderflow/orders/topology"
)

// MainModule runs the main stage: orders -> processed | retry 1 | DLQ.
var MainModule = stepModule(0)

// RetryModule runs retry stage k (1-based) of top: it reads its retry
// topic, holds each record until the due time in its headers (never
// early, without holding back other partitions), then decides it again:
// processed, the next retry topic, or the DLQ after the last stage.
func RetryModule(top topology.Topology, k int) (fx.Option, error) {
	if k < 1 || k > top.Stages() {
		return nil, fmt.Errorf("--stage: %d is not a retry stage; RETRY_DELAYS configures stages 1 to %d", k, top.Stages())
	}
	return stepModule(k), nil
}

// stepModule runs step k of the ladder (0 = main, k = retry stage k) as one
// member of the step's consumer group.
func stepModule(k int) fx.Option {
	name := topology.Default().StageName(k)
	return fx.Module(name,
		fx.Provide(fx.Private, func(client kafka.Client, opts stage.Options, top topology.Topology, rule Rule, values schemas.Values, reg *metrics.Registry, log *zap.Logger) (*stage.Loop, error) {
			name := top.StageName(k)
			st := &Stage{Step: k, Topology: top, Rule: rule, Values: values, Log: log.Named(name)}
			return stage.NewLoop(stage.Config{
				Client: client, Group: top.Group(name), Topic: top.InputTopic(k), Options: opts,
				Observer: reg.Stage(name),
			}, st, log.Named(name))
		}),
		fx.Invoke(func(lc fx.Lifecycle, sh fx.Shutdowner, log *zap.Logger, loop *stage.Loop) {
			lifecycle.RunInBackground(lc, sh, log, name, loop)
		}),
	)
}
