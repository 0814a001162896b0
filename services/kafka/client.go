// Package kafka is the project's one Kafka adapter: the client and its
// security settings, group membership and commits (Group), the fetcher
// (Fetcher), the synchronous writer with acks from all replicas (Writer),
// the admin requests the stages and commands need, and errors explained in
// the terms of the project (Denied, Misconfigured). It takes and returns the
// project's own types, envelope.Record and envelope.Output; the bytes of
// fetches and record batches are package wire's. kafka-go dials, speaks
// the admin APIs and runs group membership.
package kafka

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	kafkago "github.com/segmentio/kafka-go"
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
	SASL *SASL
}

// mechanism is the client's SASL mechanism for kafka-go, nil if none.
func (c Client) mechanism() sasl.Mechanism {
	if c.SASL == nil {
		return nil
	}
	return c.SASL.mechanism
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
func (c Client) Dialer() *kafkago.Dialer {
	return &kafkago.Dialer{Timeout: c.dialTimeout(), DualStack: true, ClientID: "orders", TLS: c.TLS, SASLMechanism: c.mechanism()}
}

// Transport is the transport writers and admin requests use.
func (c Client) Transport() *kafkago.Transport {
	return &kafkago.Transport{DialTimeout: c.dialTimeout(), ClientID: "orders", MetadataTTL: 10 * time.Second, TLS: c.TLS, SASL: c.mechanism()}
}

// Admin is a client for metadata and admin requests with a connection pool
// of its own, which Close releases.
type Admin struct {
	*kafkago.Client
	transport *kafkago.Transport
}

// Admin returns a client for metadata and admin requests.
func (c Client) Admin() *Admin {
	t := c.Transport()
	return &Admin{Client: &kafkago.Client{Addr: kafkago.TCP(c.Brokers...), Transport: t, Timeout: 10 * time.Second}, transport: t}
}

// Close releases the client's connections.
func (a *Admin) Close() { a.transport.CloseIdleConnections() }

// forgetLayout makes the client learn the cluster's layout again before
// its next request, instead of when its metadata expires: closing its
// connection pools does that, and requests in flight finish first.
func (a *Admin) forgetLayout() { a.transport.CloseIdleConnections() }

func kafkaLogger(log *zap.Logger, errs bool) kafkago.LoggerFunc {
	s := log.WithOptions(zap.AddCallerSkip(1)).Sugar().With("component", "kafka-go")
	if errs {
		return func(msg string, args ...any) { s.Warnf(msg, args...) }
	}
	return func(msg string, args ...any) { s.Debugf(msg, args...) }
}
