package aggregator

import (
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/orderflow/orders/services/metrics"
	"github.com/orderflow/orders/services/pipeline"
	"github.com/orderflow/orders/topology"
)

// Module runs the aggregator as one member of its consumer group.
var Module = fx.Module(topology.StageAggregator,
	fx.Provide(func(client pipeline.Client, top topology.Topology, reg *metrics.Registry, log *zap.Logger) *Aggregator {
		a := New(client, top, log)
		a.OnTotals = func(t Totals) { reg.SetAverage(t.Count, t.Average) }
		return a
	}),
	fx.Provide(fx.Private, func(client pipeline.Client, opts pipeline.Options, top topology.Topology, a *Aggregator, reg *metrics.Registry, log *zap.Logger) (*pipeline.Loop, error) {
		return pipeline.NewLoop(pipeline.Config{
			Client: client, Group: top.Group(topology.StageAggregator), Topic: top.Processed, Options: opts,
			Observer: reg.Stage(topology.StageAggregator),
		}, a, log.Named(topology.StageAggregator))
	}),
	fx.Invoke(func(lc fx.Lifecycle, sh fx.Shutdowner, log *zap.Logger, loop *pipeline.Loop) {
		pipeline.RunInBackground(lc, sh, log, topology.StageAggregator, loop)
	}),
)
