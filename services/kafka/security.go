package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// TLSFiles are the files a TLS client configuration is built from.
type TLSFiles struct {
	// CAFile is a PEM bundle of the certificate authorities to trust.
	// Optional, default the system's roots.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// brokers that authenticate clients by certificate. Optional, both or neither.
	CertFile, KeyFile string
	// InsecureSkipVerify accepts any broker certificate. Optional, never in production.
	InsecureSkipVerify bool
}

// Errors LoadTLS and NewSASL wrap, so that the caller can name its setting.
var (
	ErrCAFile   = errors.New("CA file")
	ErrKeyPair  = errors.New("client certificate and key")
	ErrSASLName = errors.New("SASL mechanism")
)

// LoadTLS builds a client TLS configuration from files.
func LoadTLS(f TLSFiles) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: f.InsecureSkipVerify}
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCAFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: %s holds no PEM certificate", ErrCAFile, f.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (f.CertFile == "") != (f.KeyFile == "") {
		return nil, fmt.Errorf("%w: give both files or neither", ErrKeyPair)
	}
	if f.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			// The error of LoadX509KeyPair never quotes the key's bytes.
			return nil, fmt.Errorf("%w: %w", ErrKeyPair, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// SASL mechanisms NewSASL knows, by the names settings use.
const (
	SASLPlain       = "plain"
	SASLScramSHA256 = "scram-sha-256"
	SASLScramSHA512 = "scram-sha-512"
)

// SASL is how a client authenticates: a mechanism with a username and a
// password. The password stays inside the mechanism, which nothing logs;
// the username is kept for error messages.
type SASL struct {
	mechanism sasl.Mechanism
	user      string
}

// NewSASL returns the mechanism of the given name (plain, scram-sha-256,
// scram-sha-512) for user and password. Its error never quotes the
// password.
func NewSASL(name, user, password string) (*SASL, error) {
	var (
		m   sasl.Mechanism
		err error
	)
	switch strings.ToLower(name) {
	case SASLPlain:
		m = plain.Mechanism{Username: user, Password: password}
	case SASLScramSHA256:
		m, err = scram.Mechanism(scram.SHA256, user, password)
	case SASLScramSHA512:
		m, err = scram.Mechanism(scram.SHA512, user, password)
	default:
		return nil, fmt.Errorf("%w %q: want plain, scram-sha-256 or scram-sha-512", ErrSASLName, name)
	}
	if err != nil {
		// scram's error quotes the password.
		return nil, fmt.Errorf("%w %s: the username or the password holds characters the mechanism refuses", ErrSASLName, name)
	}
	return &SASL{mechanism: m, user: user}, nil
}

// Errors Ping wraps. Each but ErrNoBroker is a misconfiguration that
// retrying cannot fix; see Misconfigured.
var (
	// ErrTLSMismatch: the client speaks TLS to a plaintext listener or
	// plaintext to a TLS listener.
	ErrTLSMismatch = errors.New("TLS/plaintext mismatch")
	// ErrTLSUntrusted: the broker's certificate does not verify against
	// the trusted CAs, or does not name the broker's address.
	ErrTLSUntrusted = errors.New("broker certificate not trusted")
	// ErrTLSRefused: the broker ended the handshake, for example because it
	// wants a client certificate.
	ErrTLSRefused = errors.New("TLS handshake refused by the broker")
	// ErrSASLFailed: the broker refused the username or password.
	ErrSASLFailed = errors.New("SASL authentication failed")
	// ErrSASLMechanism: the broker does not accept the configured mechanism,
	// or does not take SASL on this listener.
	ErrSASLMechanism = errors.New("SASL mechanism not accepted")
	// ErrSASLRequired: the broker wants SASL and none is configured.
	ErrSASLRequired = errors.New("broker requires SASL authentication")
)

// Misconfigured reports whether err, from Ping, is a TLS or SASL setting
// that retrying will not fix, as opposed to a broker that is not up.
func Misconfigured(err error) bool {
	for _, e := range []error{ErrTLSMismatch, ErrTLSUntrusted, ErrTLSRefused, ErrSASLFailed, ErrSASLMechanism, ErrSASLRequired} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Ping checks that a broker answers with the client's TLS and SASL
// settings. It fails with ErrNoBroker, naming the addresses, when no broker
// answers, and with an error wrapping one of the other Err* values of this
// package when a broker answers but the settings do not fit it; the
// message says which. kafka-go alone reports most of these as an
// unexpected EOF.
func (c Client) Ping(ctx context.Context) error {
	var errs []error
	for _, b := range c.Brokers {
		err := c.pingOne(ctx, b)
		if err == nil {
			return nil
		}
		if Misconfigured(err) {
			return err
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("%w at %s: %w", ErrNoBroker, strings.Join(c.Brokers, ","), errors.Join(errs...))
}

func (c Client) pingOne(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, c.dialTimeout())
	defer cancel()
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	if c.TLS != nil {
		// A plaintext listener never answers a ClientHello: a shorter wait
		// tells it apart soon enough.
		hctx, cancel := context.WithTimeout(ctx, min(c.dialTimeout(), 3*time.Second))
		err := handshake(hctx, raw, c.tlsFor(addr))
		cancel()
		raw.Close()
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
			// A plaintext listener reads the ClientHello as the start of a
			// huge request and waits for the rest.
			if speaksPlaintext(addr, c.dialTimeout()) {
				return fmt.Errorf("%w at %s: KAFKA_TLS is on but the listener is plaintext: it answers Kafka requests without TLS", ErrTLSMismatch, addr)
			}
			return fmt.Errorf("TLS handshake with %s: %w", addr, err)
		}
		if err != nil {
			return classifyTLS(addr, err)
		}
	} else {
		raw.Close()
	}
	conn, err := c.Dialer().DialContext(ctx, "tcp", addr)
	if err != nil {
		switch {
		case c.TLS == nil && closed(err) && speaksTLS(ctx, addr):
			return fmt.Errorf("%w at %s: the broker speaks TLS and the client plaintext; set KAFKA_TLS=on", ErrTLSMismatch, addr)
		case errors.Is(err, kafkago.SASLAuthenticationFailed):
			return fmt.Errorf("%w at %s: the broker refused user %q with %s; check KAFKA_SASL_USERNAME and the password",
				ErrSASLFailed, addr, c.saslUser(), c.mechanism().Name())
		case errors.Is(err, kafkago.UnsupportedSASLMechanism), errors.Is(err, kafkago.IllegalSASLState):
			return fmt.Errorf("%w at %s: the broker does not take %s (KAFKA_SASL_MECHANISM): %w", ErrSASLMechanism, addr, c.mechanism().Name(), err)
		case c.mechanism() != nil && closed(err):
			return fmt.Errorf("%w at %s: the broker closed the connection during the SASL handshake; does this listener take SASL? (KAFKA_SASL_MECHANISM)", ErrSASLMechanism, addr)
		}
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline(ctx))
	if _, err := conn.ApiVersions(); err != nil {
		if c.TLS == nil && closed(err) && speaksTLS(ctx, addr) {
			return fmt.Errorf("%w at %s: the broker speaks TLS and the client plaintext; set KAFKA_TLS=on", ErrTLSMismatch, addr)
		}
		return err
	}
	if _, err := conn.Brokers(); err != nil {
		if c.mechanism() == nil && closed(err) {
			return fmt.Errorf("%w at %s: it closed the connection on the first request after ApiVersions; set KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and the password", ErrSASLRequired, addr)
		}
		return err
	}
	return nil
}

func (c Client) saslUser() string {
	if c.SASL == nil {
		return "(none)"
	}
	return c.SASL.user
}

// tlsFor is the client's TLS config with the server name kafka-go would use.
func (c Client) tlsFor(addr string) *tls.Config {
	cfg := c.TLS
	if cfg.ServerName == "" {
		cfg = cfg.Clone()
		host, _, _ := net.SplitHostPort(addr)
		cfg.ServerName = host
	}
	return cfg
}

func handshake(ctx context.Context, raw net.Conn, cfg *tls.Config) error {
	conn := tls.Client(raw, cfg)
	_ = raw.SetDeadline(deadline(ctx))
	return conn.HandshakeContext(ctx)
}

func deadline(ctx context.Context) time.Time {
	d, ok := ctx.Deadline()
	if !ok {
		return time.Now().Add(5 * time.Second)
	}
	return d
}

// speaksTLS reports whether addr completes a TLS handshake, trusting any
// certificate: it only tells a TLS listener from a plaintext one.
func speaksTLS(ctx context.Context, addr string) bool {
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer raw.Close()
	err = handshake(ctx, raw, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a probe: nothing is sent over it
	var alert tls.AlertError
	return err == nil || errors.As(err, &alert)
}

// speaksPlaintext reports whether addr answers an ApiVersions request sent
// without TLS.
func speaksPlaintext(addr string, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := (&kafkago.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline(ctx))
	_, err = conn.ApiVersions()
	return err == nil
}

func classifyTLS(addr string, err error) error {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		verify   *tls.CertificateVerificationError
		header   tls.RecordHeaderError
		alert    tls.AlertError
	)
	switch {
	case errors.As(err, &unknown):
		return fmt.Errorf("%w at %s: it is signed by an unknown authority; give its CA in KAFKA_TLS_CA_FILE: %w", ErrTLSUntrusted, addr, err)
	case errors.As(err, &hostname):
		return fmt.Errorf("%w at %s: it does not name this address: %w", ErrTLSUntrusted, addr, err)
	case errors.As(err, &invalid), errors.As(err, &verify):
		return fmt.Errorf("%w at %s: %w", ErrTLSUntrusted, addr, err)
	case errors.As(err, &header), closed(err):
		return fmt.Errorf("%w at %s: KAFKA_TLS is on but the listener does not answer the TLS handshake (a plaintext listener?)", ErrTLSMismatch, addr)
	case errors.As(err, &alert):
		return fmt.Errorf("%w at %s: %w (does it want a client certificate? KAFKA_TLS_CERT_FILE, KAFKA_TLS_KEY_FILE)", ErrTLSRefused, addr, err)
	}
	return err
}

// closed reports whether err is the peer closing or resetting the connection.
func closed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
