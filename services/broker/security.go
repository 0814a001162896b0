package broker

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/scram"
	"github.com/twmb/franz-go/pkg/kfake"
)

// User is a SASL user of the embedded broker.
type User struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (any case).
	Mechanism string
	Name      string
	Password  string
	// Super users bypass ACLs.
	Super bool
}

// ReadUsersFile reads SASL users, one a line: `mechanism username
// password`. Blank lines and lines starting with # are skipped. Errors name
// the line, never its password.
func ReadUsersFile(path string) ([]User, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var users []User
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("%s line %d: want `mechanism username password`, found %d fields", path, n, len(f))
		}
		u := User{Mechanism: f[0], Name: f[1], Password: f[2]}
		if _, err := mechanism(u.Mechanism); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, n, err)
		}
		users = append(users, u)
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("%s holds no user", path)
	}
	return users, nil
}

func mechanism(name string) (string, error) {
	switch m := strings.ToUpper(name); m {
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		return m, nil
	}
	return "", fmt.Errorf("SASL mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", name)
}

// internalUser is the superuser the broker's own reaper authenticates as
// when SASL is on; its password is random and never leaves the process.
const internalUser = "orders-broker-internal"

// security is what the cluster and the reaper need for TLS and SASL.
type security struct {
	opts       []kfake.Opt
	clientTLS  *tls.Config
	clientSASL sasl.Mechanism
}

func (c Config) security() (security, error) {
	var s security
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return s, errors.New("--tls-cert-file and --tls-key-file: give both or neither")
	}
	if c.TLSCertFile != "" {
		pair, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			return s, fmt.Errorf("--tls-cert-file/--tls-key-file: %w", err)
		}
		s.opts = append(s.opts, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}))
		// The reaper talks to this very listener: it trusts exactly the
		// certificate the broker presents, whatever names it holds.
		leaf := pair.Certificate[0]
		s.clientTLS = &tls.Config{
			InsecureSkipVerify: true, //nolint:gosec // replaced by the pinning below
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, leaf) {
					return errors.New("not the broker's own certificate")
				}
				return nil
			},
		}
	}
	if c.ACLs && len(c.Users) == 0 {
		return s, errors.New("--acls needs --sasl-users-file: without SASL every client is User:ANONYMOUS")
	}
	if len(c.Users) == 0 {
		return s, nil
	}
	s.opts = append(s.opts, kfake.EnableSASL())
	for _, u := range c.Users {
		m, err := mechanism(u.Mechanism)
		if err != nil {
			return s, fmt.Errorf("user %s: %w", u.Name, err)
		}
		if u.Name == internalUser {
			return s, fmt.Errorf("user %s: the name is reserved for the broker itself", u.Name)
		}
		if u.Super {
			s.opts = append(s.opts, kfake.Superuser(m, u.Name, u.Password))
		} else {
			s.opts = append(s.opts, kfake.User(m, u.Name, u.Password))
		}
	}
	secret := make([]byte, 24)
	_, _ = rand.Read(secret) // never fails
	pass := hex.EncodeToString(secret)
	s.opts = append(s.opts, kfake.Superuser("SCRAM-SHA-512", internalUser, pass))
	m, err := scram.Mechanism(scram.SHA512, internalUser, pass)
	if err != nil {
		return s, err
	}
	s.clientSASL = m
	if c.ACLs {
		s.opts = append(s.opts, kfake.EnableACLs())
	}
	return s, nil
}
