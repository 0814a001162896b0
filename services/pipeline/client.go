// Package pipeline is the consume-handle-produce-commit loop every stage
// runs, and the Kafka wiring it needs: one consumer group per stage, a
// fetch of its own for each assigned partition, a synchronous writer with
// acks from all replicas, and offsets committed only after the writes they
// cover.
package pipeline

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"go.uber.org/zap"
)

// Client is how every command reaches the Kafka cluster.
type Client struct {
	// Brokers are the bootstrap addresses. Required.
	Brokers []string
	// DialTimeout bounds one connection attempt. Optional, default 5s.
	DialTimeout time.Duration
	// TLS, when set, encrypts every connection: readers, consumer groups,
	// writers and admin requests alike. Optional (LoadTLS builds one).
	TLS *tls.Config
	// SASL, when set, authenticates every connection. Optional (NewSASL
	// builds one).
	SASL sasl.Mechanism
}

// ErrNoBroker means no bootstrap broker answered.
var ErrNoBroker = errors.New("no broker reachable")

// Validate reports a client setting a user must fix.
func (c Client) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("KAFKA_BROKERS: no broker address given")
	}
	for _, b := range c.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return fmt.Errorf("KAFKA_BROKERS: %q is not host:port", b)
		}
	}
	return nil
}

func (c Client) dialTimeout() time.Duration {
	if c.DialTimeout <= 0 {
		return 5 * time.Second
	}
	return c.DialTimeout
}

// Dialer is the dialer readers, fetchers and consumer groups use.
func (c Client) Dialer() *kafka.Dialer {
	return &kafka.Dialer{Timeout: c.dialTimeout(), DualStack: true, ClientID: "orders", TLS: c.TLS, SASLMechanism: c.SASL}
}

// Transport is the transport writers and admin requests use.
func (c Client) Transport() *kafka.Transport {
	return &kafka.Transport{DialTimeout: c.dialTimeout(), ClientID: "orders", MetadataTTL: 10 * time.Second, TLS: c.TLS, SASL: c.SASL}
}

// Admin is a client for metadata and admin requests with a connection pool
// of its own, which Close releases.
type Admin struct {
	*kafka.Client
	transport *kafka.Transport
}

// Admin returns a client for metadata and admin requests.
func (c Client) Admin() *Admin {
	t := c.Transport()
	return &Admin{Client: &kafka.Client{Addr: kafka.TCP(c.Brokers...), Transport: t, Timeout: 10 * time.Second}, transport: t}
}

// Close releases the client's connections.
func (a *Admin) Close() { a.transport.CloseIdleConnections() }

// forgetLayout makes the client learn the cluster's layout again before
// its next request, instead of when its metadata expires: closing its
// connection pools does that, and requests in flight finish first.
func (a *Admin) forgetLayout() { a.transport.CloseIdleConnections() }

func kafkaLogger(log *zap.Logger, errs bool) kafka.LoggerFunc {
	s := log.WithOptions(zap.AddCallerSkip(1)).Sugar().With("component", "kafka-go")
	if errs {
		return func(msg string, args ...any) { s.Warnf(msg, args...) }
	}
	return func(msg string, args ...any) { s.Debugf(msg, args...) }
}
