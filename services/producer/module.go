package producer

import (
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/orderflow/orders/services/lifecycle"
)

// Module runs a producer with the Config supplied to the app.
var Module = fx.Module("producer",
	fx.Provide(New),
	fx.Invoke(func(lc fx.Lifecycle, sh fx.Shutdowner, log *zap.Logger, p *Producer) {
		lifecycle.RunInBackground(lc, sh, log, "producer", p)
	}),
)
