package producer

import (
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/lifecycle"
	"github.com/orderflow/orders/topology"
)

// Module runs a producer with the Config supplied to the app.
var Module = fx.Module("producer",
	fx.Provide(func(cfg Config, client kafka.Client, top topology.Topology, values schemas.Values, log *zap.Logger) (*Producer, error) {
		cfg.Values = values
		return New(cfg, client, top, log)
	}),
	fx.Invoke(func(lc fx.Lifecycle, sh fx.Shutdowner, log *zap.Logger, p *Producer) {
		lifecycle.RunInBackground(lc, sh, log, "producer", p)
	}),
)
