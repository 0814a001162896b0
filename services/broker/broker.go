// Package broker runs an embedded Kafka-protocol broker (franz-go's kfake)
// of one or more nodes in one process, for machines without a Kafka
// cluster. Real clients (kafka-go, librdkafka, kcat) talk to it as to Kafka.
// For tests and trials it can also inject faults a real cluster shows
// (faults.go), from this process or, with FaultControl, from another one.
package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/zap"
)

// Kafka's defaults for group.min.session.timeout.ms and
// group.max.session.timeout.ms: a JoinGroup asking for a session timeout
// outside them is refused with INVALID_SESSION_TIMEOUT.
const (
	DefaultGroupMinSessionTimeout = 6 * time.Second
	DefaultGroupMaxSessionTimeout = 30 * time.Minute
)

// Config of the embedded broker.
type Config struct {
	// Nodes is how many brokers the cluster has, each on its own address.
	// Optional, default 1.
	Nodes int
	// Listen is where the nodes listen: one host:port per node, comma
	// separated, or a single host:port for all of them. With a single
	// address, port 0 gives every node a free port, and any other port P
	// gives the nodes P, P+1, ... P+Nodes-1. Optional, default
	// 127.0.0.1:9092.
	Listen string
	// DataDir keeps topics, records, offsets and groups across restarts.
	// Restart a cluster of several nodes on the same addresses: each
	// partition keeps its leader's node ID. Optional: without it everything
	// lives in memory.
	DataDir string
	// Partitions of topics created without a partition count. Optional, default 6.
	Partitions int
	// SyncWrites fsyncs every produced batch before acknowledging it, so
	// acknowledged records survive a machine crash, not only a process
	// crash. Optional, default off (the OS page cache, like Kafka's default).
	SyncWrites bool
	// GroupMinSessionTimeout and GroupMaxSessionTimeout bound the session
	// timeout a consumer group member may ask for, as Kafka's
	// group.min.session.timeout.ms and group.max.session.timeout.ms do.
	// Optional, default Kafka's: 6s and 30m. Lower the minimum only where a
	// test needs members to time out quickly; a real cluster refuses less.
	GroupMinSessionTimeout, GroupMaxSessionTimeout time.Duration
	// TLSCertFile and TLSKeyFile, both PEM, make the listener speak TLS
	// only. Optional.
	TLSCertFile, TLSKeyFile string
	// Users, when any, make the broker require SASL authentication (PLAIN,
	// SCRAM-SHA-256 or SCRAM-SHA-512) of every client. Optional.
	Users []User
	// ACLs makes the broker enforce ACLs: a user that is not Super may do
	// only what an ACL allows. Requires Users. Optional, default off.
	ACLs bool
	// FaultControl is a loopback host:port on which the broker serves its
	// fault API over HTTP (see FaultControl), for tests and trials that
	// run the broker as a process of its own. Port 0 picks a free one.
	// Optional, default off. It has no authentication: never expose it.
	FaultControl string
}

func (c *Config) setDefaults() {
	if c.Nodes <= 0 {
		c.Nodes = 1
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:9092"
	}
	if c.Partitions <= 0 {
		c.Partitions = 6
	}
	if c.GroupMinSessionTimeout == 0 {
		c.GroupMinSessionTimeout = DefaultGroupMinSessionTimeout
	}
	if c.GroupMaxSessionTimeout == 0 {
		c.GroupMaxSessionTimeout = DefaultGroupMaxSessionTimeout
	}
}

func (c *Config) validate() error {
	if c.GroupMinSessionTimeout < time.Millisecond {
		return fmt.Errorf("--group-min-session-timeout: %v is below 1ms", c.GroupMinSessionTimeout)
	}
	if c.GroupMaxSessionTimeout < c.GroupMinSessionTimeout {
		return fmt.Errorf("--group-max-session-timeout: %v is below --group-min-session-timeout %v", c.GroupMaxSessionTimeout, c.GroupMinSessionTimeout)
	}
	if c.FaultControl != "" {
		host, _, err := net.SplitHostPort(c.FaultControl)
		if err != nil {
			return fmt.Errorf("--fault-control: %q is not host:port", c.FaultControl)
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("--fault-control: %q is not a loopback address; the fault API has no authentication", c.FaultControl)
		}
	}
	return nil
}

// listenAddrs is the address of each node.
func (c *Config) listenAddrs() ([]string, error) {
	addrs := strings.Split(c.Listen, ",")
	for i, a := range addrs {
		addrs[i] = strings.TrimSpace(a)
		if _, _, err := net.SplitHostPort(addrs[i]); err != nil {
			return nil, fmt.Errorf("--listen: %q is not host:port", addrs[i])
		}
	}
	switch {
	case len(addrs) == c.Nodes:
		return addrs, nil
	case len(addrs) != 1:
		return nil, fmt.Errorf("--listen: %d addresses for %d nodes; give one per node, or one for all", len(addrs), c.Nodes)
	}
	host, portText, _ := net.SplitHostPort(addrs[0])
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port+c.Nodes-1 > 65535 {
		return nil, fmt.Errorf("--listen: port %q: want 0, or a port with room for %d nodes after it", portText, c.Nodes)
	}
	addrs = make([]string, c.Nodes)
	for i := range addrs {
		p := port
		if port != 0 {
			p += i
		}
		addrs[i] = net.JoinHostPort(host, strconv.Itoa(p))
	}
	return addrs, nil
}

// Broker is a running embedded broker.
type Broker struct {
	cluster *kfake.Cluster
	addrs   []string
	// client is the broker's own connection to its nodes, for the reaper
	// and the faults that need to ask what the cluster holds.
	client    *kafka.Client
	transport *kafka.Transport
	dialer    *kafka.Dialer
	// ctx ends at Close: it stops the reaper, the fault control and every
	// fault still in force.
	ctx     context.Context
	stop    context.CancelFunc
	workers sync.WaitGroup
	control *http.Server
	ctlAddr string
}

// Start listens and serves until Close.
func Start(cfg Config, log *zap.Logger) (*Broker, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	addrs, err := cfg.listenAddrs()
	if err != nil {
		return nil, err
	}
	sec, err := cfg.security()
	if err != nil {
		return nil, err
	}
	// kfake asks for one listener per node, in node order.
	next := 0
	listen := func(network, _ string) (net.Listener, error) {
		addr := addrs[min(next, len(addrs)-1)]
		next++
		l, err := net.Listen(network, addr)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", addr, err)
		}
		return l, nil
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(cfg.Nodes),
		kfake.DefaultNumPartitions(cfg.Partitions),
		kfake.ListenFn(listen),
		kfake.WithLogger(zapLogger{log.Named("broker").Sugar()}),
		kfake.GroupMinSessionTimeout(cfg.GroupMinSessionTimeout),
		kfake.GroupMaxSessionTimeout(cfg.GroupMaxSessionTimeout),
		// As broker configs too, so that DescribeConfigs reports the bounds
		// it enforces (kfake's own default for the maximum says 5m).
		kfake.BrokerConfigs(map[string]string{
			"group.min.session.timeout.ms": strconv.FormatInt(cfg.GroupMinSessionTimeout.Milliseconds(), 10),
			"group.max.session.timeout.ms": strconv.FormatInt(cfg.GroupMaxSessionTimeout.Milliseconds(), 10),
		}),
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
			return nil, err
		}
		return nil, fmt.Errorf("start broker: %w", err)
	}
	b := &Broker{cluster: c, addrs: c.ListenAddrs()}
	b.ctx, b.stop = context.WithCancel(context.Background())
	// With TLS or SASL on, the broker's own client connects with the
	// broker's own credentials: its certificate and an internal superuser.
	b.transport = &kafka.Transport{ClientID: "orders-broker-internal", TLS: sec.clientTLS, SASL: sec.clientSASL}
	b.client = &kafka.Client{Addr: kafka.TCP(b.addrs...), Transport: b.transport, Timeout: 5 * time.Second}
	b.dialer = &kafka.Dialer{ClientID: "orders-broker-internal", Timeout: 5 * time.Second, TLS: sec.clientTLS, SASLMechanism: sec.clientSASL}
	if cfg.FaultControl != "" {
		if err := b.serveFaultControl(cfg.FaultControl, log.Named("broker")); err != nil {
			b.Close()
			return nil, err
		}
	}
	r := newReaper(log.Named("broker"))
	r.watch(c)
	b.workers.Go(func() { r.run(b.ctx, b.client) })
	return b, nil
}

// Addr is the comma-separated host:port of every node, the bootstrap
// addresses clients connect to (KAFKA_BROKERS).
func (b *Broker) Addr() string { return strings.Join(b.addrs, ",") }

// Addrs is the host:port of each node, in node ID order.
func (b *Broker) Addrs() []string { return append([]string(nil), b.addrs...) }

// Nodes is the number of nodes; their IDs are 0 to Nodes()-1.
func (b *Broker) Nodes() int { return len(b.addrs) }

// Compact compacts every topic whose cleanup.policy says compact, at once:
// of each key only its latest record stays, and tombstones go once older
// than delete.retention.ms. The broker also does so by itself, every
// log.cleaner.backoff.ms.
func (b *Broker) Compact() { b.cluster.Compact() }

// Close stops the broker, flushing its data dir if it has one.
func (b *Broker) Close() {
	b.stop()
	if b.control != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = b.control.Shutdown(ctx) // the faults in force end with b.ctx
		cancel()
	}
	b.workers.Wait()
	b.transport.CloseIdleConnections()
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
