package broker

// The fault control: Inject over HTTP on loopback, for a harness that runs
// the broker as an OS process of its own. The faults need the kfake
// cluster, which lives in the broker's process, and that process has to
// stay separate so that the harness can SIGKILL it for real; a small JSON
// endpoint, on only with Config.FaultControl, is the narrowest bridge.
// POST /faults takes a Fault and answers its FaultResult once the fault is
// over.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// FaultControlAddr is the address the fault control listens on, "" when
// it is off.
func (b *Broker) FaultControlAddr() string { return b.ctlAddr }

func (b *Broker) serveFaultControl(addr string, log *zap.Logger) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--fault-control: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /faults", func(w http.ResponseWriter, r *http.Request) {
		var f Fault
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&f); err != nil {
			http.Error(w, "fault: "+err.Error(), http.StatusBadRequest)
			return
		}
		res, err := b.Inject(r.Context(), f)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		log.Info("fault injected", zap.String("kind", string(res.Kind)), zap.Int("hits", res.Hits), zap.String("detail", res.Detail))
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(res)
	})
	b.ctlAddr = l.Addr().String()
	b.control = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return b.ctx },
	}
	b.workers.Go(func() {
		if err := b.control.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("fault control stopped", zap.Error(err))
		}
	})
	return nil
}

// FaultControl injects faults into a broker started with
// Config.FaultControl (orders broker --fault-control), from another process.
type FaultControl struct {
	// Addr is the host:port the broker printed as its fault control
	// address. Required.
	Addr string
	// Client sends the requests. Optional, default http.DefaultClient.
	Client *http.Client
}

// Inject runs f on the broker and returns what it did, once it is over.
func (c FaultControl) Inject(ctx context.Context, f Fault) (FaultResult, error) {
	body, err := json.Marshal(f)
	if err != nil {
		return FaultResult{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c.Addr+"/faults", bytes.NewReader(body))
	if err != nil {
		return FaultResult{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	hc := c.Client
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return FaultResult{}, fmt.Errorf("fault %s: %w", f.Kind, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return FaultResult{}, fmt.Errorf("fault %s: %s: %s", f.Kind, resp.Status, bytes.TrimSpace(msg))
	}
	var res FaultResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return FaultResult{}, fmt.Errorf("fault %s: answer: %w", f.Kind, err)
	}
	return res, nil
}
