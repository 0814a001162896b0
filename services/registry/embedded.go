package registry

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/twmb/franz-go/pkg/sr/srfake"
)

// Embedded is a Confluent-compatible schema registry in this process
// (franz-go's srfake), for machines without one, as the embedded broker is
// for Kafka. It keeps its schemas in memory and checks no compatibility
// between a subject's versions; a real registry does both.
type Embedded struct {
	srv *http.Server
	ln  net.Listener
	url string
}

// Serve starts an embedded registry on addr ("127.0.0.1:0" picks a port).
func Serve(addr string) (*Embedded, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	e := &Embedded{
		srv: &http.Server{Handler: srfake.NewRegistry().Handler(), ReadHeaderTimeout: 10 * time.Second},
		ln:  ln,
		url: "http://" + ln.Addr().String(),
	}
	go func() {
		if err := e.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = ln.Close()
		}
	}()
	return e, nil
}

// URL is where the registry listens: http://HOST:PORT.
func (e *Embedded) URL() string { return e.url }

// Close stops the registry.
func (e *Embedded) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = e.srv.Shutdown(ctx)
}
