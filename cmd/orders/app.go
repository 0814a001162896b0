package main

import (
	"context"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/metrics"
)

const startStopTimeout = 15 * time.Second

// provide supplies the parsed configuration to an fx app.
func (c config) provide() fx.Option {
	return fx.Options(
		fx.Supply(c.client, c.topology, c.rule, c.options, c.log, c.metrics, c.agg),
		fx.Provide(metrics.New),
		fx.Provide(func() schemas.Values { return c.values }),
		fx.Invoke(func(lc fx.Lifecycle) {
			lc.Append(fx.Hook{OnStart: c.checkRegistry})
		}),
		fx.WithLogger(func() fxevent.Logger {
			l := &fxevent.ZapLogger{Logger: c.log.Named("fx")}
			l.UseLogLevel(zapcore.DebugLevel)
			return l
		}),
	)
}

// checkRegistry fails if the schema registry the values use, if any,
// cannot be reached or refuses the credentials: a process fails at start,
// not once records come.
func (c config) checkRegistry(ctx context.Context) error {
	if c.registry == nil {
		return nil
	}
	return c.registry.Check(ctx)
}

// runApp starts an fx app and runs it until ctx ends, the app shuts itself
// down, or until (if not nil) is closed; then it stops the app.
func runApp(ctx context.Context, log *zap.Logger, until <-chan struct{}, opts ...fx.Option) error {
	app := fx.New(opts...)
	if err := app.Err(); err != nil {
		return err
	}
	startCtx, cancel := context.WithTimeout(ctx, startStopTimeout)
	defer cancel()
	if err := app.Start(startCtx); err != nil {
		if ctx.Err() != nil {
			// A signal during the start (or the broker check before it) is
			// a clean stop, not a failure.
			stopCtx, cancelStop := context.WithTimeout(context.Background(), startStopTimeout)
			defer cancelStop()
			_ = app.Stop(stopCtx)
			return nil
		}
		return err
	}
	code := 0
	select {
	case <-ctx.Done():
		log.Info("stopping on signal")
	case sig := <-app.Wait():
		code = sig.ExitCode
	case <-until:
	}
	stopCtx, cancelStop := context.WithTimeout(context.Background(), startStopTimeout)
	defer cancelStop()
	if err := app.Stop(stopCtx); err != nil {
		return err
	}
	if code != 0 {
		return exitError{code}
	}
	return nil
}
