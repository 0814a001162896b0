package kafka_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orders/services/broker"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/testkit"
)

const testPassword = "s3cret-Pa55word"

// Ping names what is wrong: TLS against plaintext and the reverse, an
// untrusted certificate, a wrong password, a missing SASL setting, or no
// broker at all, which alone is not a misconfiguration.
func TestPingClassifiesFailures(t *testing.T) {
	certs := testkit.NewCerts(t)
	secured := testkit.Broker(t, broker.Config{
		TLSCertFile: certs.CertFile, TLSKeyFile: certs.KeyFile,
		Users: []broker.User{{Mechanism: "SCRAM-SHA-512", Name: "alice", Password: testPassword}},
	})
	plain := testkit.Broker(t, broker.Config{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nobody := l.Addr().String()
	l.Close()

	trusted, err := kafka.LoadTLS(kafka.TLSFiles{CAFile: certs.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	untrusted, err := kafka.LoadTLS(kafka.TLSFiles{CAFile: certs.OtherCAFile})
	if err != nil {
		t.Fatal(err)
	}
	mech := func(user, pass string) *kafka.SASL {
		m, err := kafka.NewSASL("scram-sha-512", user, pass)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	cases := []struct {
		name   string
		client kafka.Client
		want   error // nil: Ping succeeds
		says   string
	}{
		{"tls and scram", kafka.Client{Brokers: []string{secured.Addr()}, TLS: trusted, SASL: mech("alice", testPassword)}, nil, ""},
		{"wrong password", kafka.Client{Brokers: []string{secured.Addr()}, TLS: trusted, SASL: mech("alice", "wrong-"+testPassword)}, kafka.ErrSASLFailed, `user "alice"`},
		{"unknown user", kafka.Client{Brokers: []string{secured.Addr()}, TLS: trusted, SASL: mech("mallory", testPassword)}, kafka.ErrSASLFailed, "SASL authentication failed"},
		{"no sasl", kafka.Client{Brokers: []string{secured.Addr()}, TLS: trusted}, kafka.ErrSASLRequired, "KAFKA_SASL_MECHANISM"},
		{"untrusted CA", kafka.Client{Brokers: []string{secured.Addr()}, TLS: untrusted, SASL: mech("alice", testPassword)}, kafka.ErrTLSUntrusted, "KAFKA_TLS_CA_FILE"},
		{"plaintext to tls", kafka.Client{Brokers: []string{secured.Addr()}, SASL: mech("alice", testPassword)}, kafka.ErrTLSMismatch, "KAFKA_TLS=on"},
		{"tls to plaintext", kafka.Client{Brokers: []string{plain.Addr()}, TLS: trusted}, kafka.ErrTLSMismatch, "listener is plaintext"},
		{"sasl to a broker without", kafka.Client{Brokers: []string{plain.Addr()}, SASL: mech("alice", testPassword)}, kafka.ErrSASLFailed, `user "alice"`},
		{"nothing listening", kafka.Client{Brokers: []string{nobody}, TLS: trusted, SASL: mech("alice", testPassword)}, kafka.ErrNoBroker, nobody},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := c.client.Ping(ctx)
			if c.want == nil {
				if err != nil {
					t.Fatalf("Ping: %v", err)
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("Ping = %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.says) {
				t.Errorf("Ping = %q, want it to say %q", err, c.says)
			}
			if strings.Contains(err.Error(), testPassword) {
				t.Errorf("the error holds the password: %q", err)
			}
			if got, want := kafka.Misconfigured(err), c.want != kafka.ErrNoBroker; got != want {
				t.Errorf("Misconfigured(%v) = %v, want %v", err, got, want)
			}
		})
	}
}
