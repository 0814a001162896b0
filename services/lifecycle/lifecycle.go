// Package lifecycle ties the long-lived work of a service to an fx app.
package lifecycle

import (
	"context"

	"go.uber.org/fx"
	"go.uber.org/zap"
)

// Runner is a long-lived piece of work that ends when its context does.
type Runner interface {
	Run(ctx context.Context) error
}

// RunInBackground ties r to the lifecycle of an fx app: OnStart runs it in
// a goroutine with its own context and returns at once; OnStop cancels that
// context and waits for r to return. If r fails, the app shuts down with
// exit code 1.
func RunInBackground(lc fx.Lifecycle, sh fx.Shutdowner, log *zap.Logger, name string, r Runner) {
	var (
		cancel context.CancelFunc
		done   = make(chan struct{})
	)
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			var ctx context.Context
			ctx, cancel = context.WithCancel(context.Background())
			go func() {
				defer close(done)
				if err := r.Run(ctx); err != nil {
					log.Error("stopped on error", zap.String("service", name), zap.Error(err))
					_ = sh.Shutdown(fx.ExitCode(1))
				}
			}()
			return nil
		},
		OnStop: func(ctx context.Context) error {
			cancel()
			select {
			case <-done:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		},
	})
}
