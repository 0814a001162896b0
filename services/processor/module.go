package processor

import (
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/orderflow/orders/services/metrics"
	"github.com/orderflow/orders/services/pipeline"
	"github.com/orderflow/orders/topology"
)

// Module runs the main stage: orders -> processed | retry 1 | DLQ.
var Module = StepModule(0)

// StepModule runs step k of the ladder (0 = main, k = retry stage k) as one
// member of the step's consumer group. The retry package names it.
func StepModule(k int) fx.Option {
	name := topology.Default().StageName(k)
	return fx.Module(name,
		fx.Provide(fx.Private, func(client pipeline.Client, opts pipeline.Options, top topology.Topology, rule Rule, reg *metrics.Registry, log *zap.Logger) (*pipeline.Loop, error) {
			name := top.StageName(k)
			stage := &Stage{Step: k, Topology: top, Rule: rule, Log: log.Named(name)}
			return pipeline.NewLoop(pipeline.Config{
				Client: client, Group: top.Group(name), Topic: top.InputTopic(k), Options: opts,
				Observer: reg.Stage(name),
			}, stage, log.Named(name))
		}),
		fx.Invoke(func(lc fx.Lifecycle, sh fx.Shutdowner, log *zap.Logger, loop *pipeline.Loop) {
			pipeline.RunInBackground(lc, sh, log, name, loop)
		}),
	)
}
