package aggregator

import (
	"time"

	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/lifecycle"
	"github.com/orderflow/orders/services/metrics"
	"github.com/orderflow/orders/services/stage"
	"github.com/orderflow/orders/topology"
)

// Config tunes the aggregator.
type Config struct {
	// Horizon is how long an orderId is remembered. Optional, default
	// DefaultHorizon.
	Horizon time.Duration
}

// Module runs the aggregator as one member of its consumer group. It needs
// a Config.
var Module = fx.Module(topology.StageAggregator,
	fx.Provide(func(client kafka.Client, top topology.Topology, cfg Config, values schemas.Values, reg *metrics.Registry, log *zap.Logger) *Aggregator {
		a := New(client, top, log)
		a.Values = values
		a.Horizon = cfg.Horizon
		a.OnTotals = func(t Totals) { reg.SetAverage(t.Count, t.Average) }
		return a
	}),
	fx.Provide(fx.Private, func(client kafka.Client, opts stage.Options, top topology.Topology, a *Aggregator, reg *metrics.Registry, log *zap.Logger) (*stage.Loop, error) {
		return stage.NewLoop(stage.Config{
			Client: client, Group: top.Group(topology.StageAggregator), Topic: top.Processed, Options: opts,
			Observer: reg.Stage(topology.StageAggregator),
		}, a, log.Named(topology.StageAggregator))
	}),
	fx.Invoke(func(lc fx.Lifecycle, sh fx.Shutdowner, log *zap.Logger, loop *stage.Loop) {
		lifecycle.RunInBackground(lc, sh, log, topology.StageAggregator, loop)
	}),
)
