package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/orderflow/orders/services/kafka"
)

// Config of the metrics and health endpoint.
type Config struct {
	// Addr to listen on; "" serves nothing and ":0" picks a free port.
	// Optional, default off.
	Addr string
}

// Handler serves /metrics, /healthz and /readyz. ping checks the broker.
func Handler(r *Registry, ping func(context.Context) error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(r.Gatherer(), promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, req *http.Request) {
		if !r.Ready() {
			http.Error(w, "not ready: a stage has not joined its consumer group yet", http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithTimeout(req.Context(), 2*time.Second)
		defer cancel()
		if err := ping(ctx); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}

// Module serves the registry on Config.Addr for the life of the app.
var Module = fx.Module("metrics",
	fx.Invoke(func(lc fx.Lifecycle, cfg Config, r *Registry, client kafka.Client, log *zap.Logger) {
		if cfg.Addr == "" {
			return
		}
		srv := &http.Server{Handler: Handler(r, client.Ping), ReadHeaderTimeout: 5 * time.Second}
		done := make(chan struct{})
		lc.Append(fx.Hook{
			OnStart: func(context.Context) error {
				l, err := net.Listen("tcp", cfg.Addr)
				if err != nil {
					close(done)
					return errors.New("METRICS_ADDR: " + err.Error())
				}
				log.Info("metrics listening", zap.String("addr", l.Addr().String()))
				go func() {
					defer close(done)
					if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
						log.Error("metrics server", zap.Error(err))
					}
				}()
				return nil
			},
			OnStop: func(ctx context.Context) error {
				err := srv.Shutdown(ctx)
				<-done
				return err
			},
		})
	}),
)
