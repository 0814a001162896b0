// Package broker runs an embedded single-node Kafka-protocol broker
// (franz-go's kfake) for machines without a Kafka cluster. Real clients
// (kafka-go, librdkafka, kcat) talk to it as to Kafka.
package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/zap"
)

// Config of the embedded broker.
type Config struct {
	// Listen is the address to listen on; port 0 picks a free one.
	// Optional, default 127.0.0.1:9092.
	Listen string
	// DataDir keeps topics, records, offsets and groups across restarts.
	// Optional: without it everything lives in memory.
	DataDir string
	// Partitions of topics created without a partition count. Optional, default 6.
	Partitions int
	// SyncWrites fsyncs every produced batch before acknowledging it, so
	// acknowledged records survive a machine crash, not only a process
	// crash. Optional, default off (the OS page cache, like Kafka's default).
	SyncWrites bool
	// TLSCertFile and TLSKeyFile, both PEM, make the listener speak TLS
	// only. Optional.
	TLSCertFile, TLSKeyFile string
	// Users, when any, make the broker require SASL authentication (PLAIN,
	// SCRAM-SHA-256 or SCRAM-SHA-512) of every client. Optional.
	Users []User
	// ACLs makes the broker enforce ACLs: a user that is not Super may do
	// only what an ACL allows. Requires Users. Optional, default off.
	ACLs bool
}

func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:9092"
	}
	if c.Partitions <= 0 {
		c.Partitions = 6
	}
}

// Broker is a running embedded broker.
type Broker struct {
	cluster *kfake.Cluster
	addr    string
	stop    context.CancelFunc
	reaping sync.WaitGroup
}

// Start listens and serves until Close.
func Start(cfg Config, log *zap.Logger) (*Broker, error) {
	cfg.setDefaults()
	if _, _, err := net.SplitHostPort(cfg.Listen); err != nil {
		return nil, fmt.Errorf("--listen: %q is not host:port", cfg.Listen)
	}
	sec, err := cfg.security()
	if err != nil {
		return nil, err
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.DefaultNumPartitions(cfg.Partitions),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, cfg.Listen) }),
		kfake.WithLogger(zapLogger{log.Named("broker").Sugar()}),
		kfake.GroupMinSessionTimeout(time.Second),
	}
	opts = append(opts, sec.opts...)
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
		if cfg.SyncWrites {
			opts = append(opts, kfake.SyncWrites())
		}
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		var addrErr *net.OpError
		if errors.As(err, &addrErr) {
			return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
		}
		return nil, fmt.Errorf("start broker: %w", err)
	}
	b := &Broker{cluster: c, addr: strings.Join(c.ListenAddrs(), ",")}
	r := newReaper(log.Named("broker"))
	r.watch(c)
	ctx, stop := context.WithCancel(context.Background())
	b.stop = stop
	b.reaping.Add(1)
	go func() {
		defer b.reaping.Done()
		r.run(ctx, b.addr, sec.clientTLS, sec.clientSASL)
	}()
	return b, nil
}

// Addr is the host:port clients connect to.
func (b *Broker) Addr() string { return b.addr }

// Close stops the broker, flushing its data dir if it has one.
func (b *Broker) Close() {
	b.stop()
	b.reaping.Wait()
	b.cluster.Close()
}

type zapLogger struct{ s *zap.SugaredLogger }

func (l zapLogger) Logf(level kfake.LogLevel, msg string, args ...any) {
	switch level {
	case kfake.LogLevelError:
		l.s.Errorf(msg, args...)
	case kfake.LogLevelWarn:
		l.s.Debugf(msg, args...) // request failures clients retry; noisy at warn
	}
}
