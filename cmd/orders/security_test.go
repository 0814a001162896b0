package main_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orders/services/broker"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/testkit"
	"github.com/orderflow/orders/topology"
)

// securedCluster is an embedded broker with TLS (certificates made for the
// test), SCRAM users and ACLs enforced, and one user per principal.
type securedCluster struct {
	*cluster
	certs     testkit.Certs
	base      []string          // environment every principal shares
	passwords map[string]string // user -> password
	dir       string
	mechOf    map[string]string // user -> mechanism name as KAFKA_SASL_MECHANISM takes it
}

// Users of the secured broker: a superuser for the test's own reads and
// `orders acls --apply`, and the default principal of every stage.
var securedUsers = []string{"orders-super", "orders-main", "orders-retry-1", "orders-retry-2", "orders-aggregator", "orders-producer", "orders-admin"}

func newSecuredCluster(t *testing.T) *securedCluster {
	certs := testkit.NewCerts(t)
	sc := &securedCluster{certs: certs, passwords: map[string]string{}, dir: t.TempDir()}
	var users []broker.User
	for i, u := range securedUsers {
		// Distinctive passwords, so a leak into any log is easy to find.
		sc.passwords[u] = "Pw-" + u + "-7hK2q9"
		mech := "SCRAM-SHA-512"
		if i%2 == 1 {
			mech = "SCRAM-SHA-256"
		}
		users = append(users, broker.User{Mechanism: mech, Name: u, Password: sc.passwords[u], Super: u == "orders-super"})
	}
	// Each user logs in with the mechanism the broker has it under.
	mechOf := map[string]string{}
	for _, u := range users {
		mechOf[u.Name] = strings.ToLower(u.Mechanism)
	}
	b := testkit.Broker(t, broker.Config{TLSCertFile: certs.CertFile, TLSKeyFile: certs.KeyFile, Users: users, ACLs: true})
	delays := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}
	top, err := topology.New(topology.Topology{Delays: delays})
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := kafka.LoadTLS(kafka.TLSFiles{CAFile: certs.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	super, err := kafka.NewSASL("scram-sha-512", "orders-super", sc.passwords["orders-super"])
	if err != nil {
		t.Fatal(err)
	}
	sc.base = []string{
		"KAFKA_BROKERS=" + b.Addr(), "KAFKA_TLS=on", "KAFKA_TLS_CA_FILE=" + certs.CAFile,
		"RETRY_DELAYS=100ms,200ms", "SESSION_TIMEOUT=6s", "LOG_LEVEL=debug",
	}
	sc.cluster = &cluster{
		t: t, bin: testkit.Binary(t), top: top,
		client: kafka.Client{Brokers: []string{b.Addr()}, TLS: tlsCfg, SASL: super},
	}
	sc.mechOf = mechOf
	return sc
}

// as is the environment of a process running as user: the password in
// KAFKA_SASL_PASSWORD for some users and in a file for the others, so
// both ways are exercised.
func (sc *securedCluster) as(user string) []string {
	env := append([]string{}, sc.base...)
	env = append(env, "KAFKA_SASL_MECHANISM="+sc.mechOf[user], "KAFKA_SASL_USERNAME="+user)
	if strings.Contains(user, "retry") || user == "orders-producer" {
		f := filepath.Join(sc.dir, user+".password")
		if err := os.WriteFile(f, []byte(sc.passwords[user]+"\n"), 0o600); err != nil {
			sc.t.Fatal(err)
		}
		return append(env, "KAFKA_SASL_PASSWORD_FILE="+f)
	}
	return append(env, "KAFKA_SASL_PASSWORD="+sc.passwords[user])
}

// noSecrets fails the test if any password appears in out.
func (sc *securedCluster) noSecrets(what, out string) {
	sc.t.Helper()
	for u, p := range sc.passwords {
		if strings.Contains(out, p) {
			sc.t.Errorf("%s shows the password of %s", what, u)
		}
	}
}

func (sc *securedCluster) run(user string, args ...string) (string, error) {
	sc.t.Helper()
	out, err := testkit.Run(sc.t, sc.bin, sc.as(user), args...)
	sc.noSecrets("orders "+strings.Join(args, " ")+" as "+user, out)
	return out, err
}

// The whole pipeline runs over TLS with SCRAM, one principal per stage,
// with only the ACLs `orders acls --apply` creates. No password appears in
// any process's output.
func TestSecuredPipelineOnePrincipalPerStage(t *testing.T) {
	sc := newSecuredCluster(t)
	out, err := sc.run("orders-super", "acls", "--apply")
	if err != nil || !strings.Contains(out, "applied ") || !strings.Contains(out, "User:orders-retry-2") {
		t.Fatalf("acls --apply: %v\n%s", err, out)
	}
	if out, err := sc.run("orders-admin", "topics"); err != nil || strings.Count(out, "created") != len(sc.top.Topics()) {
		t.Fatalf("topics as orders-admin: %v\n%s", err, out)
	}
	procs := []*testkit.Proc{
		testkit.Start(t, sc.bin, sc.as("orders-main"), "run", "main"),
		testkit.Start(t, sc.bin, sc.as("orders-retry-1"), "run", "retry", "--stage", "1"),
		testkit.Start(t, sc.bin, sc.as("orders-retry-2"), "run", "retry", "--stage", "2"),
		testkit.Start(t, sc.bin, sc.as("orders-aggregator"), "run", "aggregator"),
	}
	const n = 300
	if out, err := sc.run("orders-producer", "produce", "--count", "300", "--seed", "21"); err != nil {
		t.Fatalf("produce as orders-producer: %v\n%s", err, out)
	}
	final, _ := sc.wait(n, time.Minute)
	sc.env = sc.as("orders-aggregator") // `orders stats` runs as the aggregator
	sc.checkOutcomes(expected(n, 21), final)
	for id, d := range final.Dead {
		if d.Letter.Attempts != 3 {
			t.Errorf("DLQ record of %s after %d attempts, want 3 (main and both retry stages)", id, d.Letter.Attempts)
		}
	}
	for _, p := range procs {
		out := p.Output()
		sc.noSecrets(p.Name, out)
		if strings.Contains(out, "not authorized") {
			t.Errorf("%s was refused something its ACLs should allow:\n%s", p.Name, out)
		}
	}
}

// Each principal is refused what its ACLs do not grant, and the error
// names the operation and the resource.
func TestPrincipalsAreRefusedOutsideTheirGrants(t *testing.T) {
	sc := newSecuredCluster(t)
	if out, err := sc.run("orders-super", "acls", "--apply"); err != nil {
		t.Fatalf("acls --apply: %v\n%s", err, out)
	}
	if out, err := sc.run("orders-admin", "topics"); err != nil {
		t.Fatalf("topics: %v\n%s", err, out)
	}
	// Applying the ACLs again changes nothing and succeeds.
	if out, err := sc.run("orders-super", "acls", "--apply"); err != nil {
		t.Fatalf("acls --apply a second time: %v\n%s", err, out)
	}
	// Skipping verification works without the CA, and says loudly that it is insecure.
	insecure := append(sc.as("orders-admin"), "KAFKA_TLS_CA_FILE=", "KAFKA_TLS_INSECURE_SKIP_VERIFY=on")
	out, err := testkit.Run(t, sc.bin, insecure, "topics")
	if err != nil || !strings.Contains(out, "WARN") || !strings.Contains(out, "NOT verified") {
		t.Errorf("topics with KAFKA_TLS_INSECURE_SKIP_VERIFY=on: %v, want success and a warning\n%s", err, out)
	}
	sc.noSecrets("topics with KAFKA_TLS_INSECURE_SKIP_VERIFY=on", out)
	for _, c := range []struct {
		user string
		args []string
		says string
	}{
		// The aggregator writing orders.
		{"orders-aggregator", []string{"produce", "--count", "1"}, "not authorized: WRITE on topic orders"},
		// The producer creating topics, or ACLs.
		{"orders-producer", []string{"topics"}, "not authorized: DESCRIBE_CONFIGS on topic orders"},
		{"orders-producer", []string{"acls", "--apply"}, "not authorized: ALTER on the cluster"},
		// The admin, which may see every topic, writing orders.
		{"orders-admin", []string{"produce", "--count", "1"}, "not authorized: WRITE on topic orders"},
	} {
		out, err := sc.run(c.user, c.args...)
		if err == nil || !strings.Contains(out, c.says) {
			t.Errorf("orders %s as %s: %v, want a failure saying %q\n%s", strings.Join(c.args, " "), c.user, err, c.says, out)
		}
	}
	// A stage run under another stage's principal cannot join the group,
	// says so, and keeps trying (an ACL may be granted while it runs).
	p := testkit.Start(t, sc.bin, sc.as("orders-main"), "run", "aggregator")
	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		return strings.Contains(p.Output(), "not authorized: READ on group orders-aggregator"), "no denial logged yet:\n" + p.Output()
	})
	sc.noSecrets(p.Name, p.Output())
	// The retry-1 principal writing to orders_retry_1's input is fine, but
	// not to orders, which only the producer writes.
	client := sc.client
	mech, err := kafka.NewSASL(sc.mechOf["orders-retry-1"], "orders-retry-1", sc.passwords["orders-retry-1"])
	if err != nil {
		t.Fatal(err)
	}
	client.SASL = mech
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = kafka.ReadRange(ctx, client, sc.top.Orders, 0, 0, 1, nil)
	if err == nil || !strings.Contains(err.Error(), "READ on topic orders") {
		t.Errorf("orders-retry-1 reading orders: %v, want a denial naming READ on topic orders", err)
	}
}

// Wrong credentials, a missing CA and TLS/plaintext mismatches fail every
// command at start, saying which, without the password.
func TestSecurityMisconfigurationFailsAtStart(t *testing.T) {
	sc := newSecuredCluster(t)
	plain := testkit.Broker(t, broker.Config{})
	wrong := append(sc.as("orders-main"), "KAFKA_SASL_PASSWORD=Wrong-"+sc.passwords["orders-main"])
	cases := []struct {
		name string
		env  []string
		says string
	}{
		{"wrong password", wrong, "SASL authentication failed"},
		{"CA not given", append(sc.as("orders-main"), "KAFKA_TLS_CA_FILE="), "unknown authority"},
		{"CA of another authority", append(sc.as("orders-main"), "KAFKA_TLS_CA_FILE="+sc.certs.OtherCAFile), "KAFKA_TLS_CA_FILE"},
		{"plaintext to TLS", append(sc.as("orders-main"), "KAFKA_TLS=off", "KAFKA_TLS_CA_FILE="), "set KAFKA_TLS=on"},
		{"TLS to plaintext", append(sc.as("orders-main"), "KAFKA_BROKERS="+plain.Addr()), "listener is plaintext"},
		{"no SASL", sc.base, "requires SASL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, args := range [][]string{{"run", "main"}, {"produce", "--count", "1"}, {"topics"}} {
				start := time.Now()
				out, err := testkit.Run(t, sc.bin, c.env, args...)
				if err == nil || !strings.Contains(out, c.says) {
					t.Errorf("orders %s: %v, want a failure saying %q\n%s", strings.Join(args, " "), err, c.says, out)
				}
				if d := time.Since(start); d > 15*time.Second {
					t.Errorf("orders %s took %v to fail", strings.Join(args, " "), d)
				}
				sc.noSecrets("orders "+strings.Join(args, " "), out)
				if strings.Contains(out, "Wrong-") {
					t.Errorf("orders %s shows the wrong password", strings.Join(args, " "))
				}
			}
		})
	}
}

// A password is refused on the command line, and never shown by a settings
// error or --help.
func TestPasswordSettings(t *testing.T) {
	bin := testkit.Binary(t)
	const secret = "Never-Show-Me-5x"
	env := []string{"KAFKA_BROKERS=127.0.0.1:1", "KAFKA_SASL_PASSWORD=" + secret}
	for _, c := range []struct {
		env  []string
		args []string
		says string
	}{
		{nil, []string{"run", "main", "--sasl-mechanism", "plain", "--sasl-username", "u", "--sasl-password", secret}, "never accepted on the command line"},
		{[]string{"KAFKA_SASL_MECHANISM=md5", "KAFKA_SASL_USERNAME=u"}, []string{"run", "main"}, "KAFKA_SASL_MECHANISM"},
		{[]string{"KAFKA_SASL_MECHANISM=plain"}, []string{"run", "main"}, "KAFKA_SASL_USERNAME"},
		{nil, []string{"run", "main"}, "KAFKA_SASL_MECHANISM"},
		{[]string{"KAFKA_SASL_MECHANISM=plain", "KAFKA_SASL_USERNAME=u", "KAFKA_SASL_PASSWORD_FILE=/nonexistent"}, []string{"topics"}, "KAFKA_SASL_PASSWORD_FILE"},
		{[]string{"KAFKA_TLS=on", "KAFKA_TLS_CA_FILE=/nonexistent", "KAFKA_SASL_MECHANISM=plain", "KAFKA_SASL_USERNAME=u"}, []string{"topics"}, "KAFKA_TLS_CA_FILE"},
		{[]string{"KAFKA_TLS=maybe"}, []string{"topics"}, "KAFKA_TLS"},
		{[]string{"KAFKA_TLS_CA_FILE=/x.pem"}, []string{"topics"}, "KAFKA_TLS_CA_FILE"},
		{[]string{"ACL_PRINCIPAL_PREFIX=orders", "KAFKA_SASL_MECHANISM=plain", "KAFKA_SASL_USERNAME=u"}, []string{"acls"}, "ACL_PRINCIPAL_PREFIX"},
	} {
		out, err := testkit.Run(t, bin, append(env, c.env...), c.args...)
		if err == nil || !strings.Contains(out, c.says) {
			t.Errorf("orders %s %v: %v, want a failure naming %q\n%s", strings.Join(c.args, " "), c.env, err, c.says, out)
		}
		if strings.Contains(out, secret) {
			t.Errorf("orders %s shows the password:\n%s", strings.Join(c.args, " "), out)
		}
	}
	for _, args := range [][]string{{"--help"}, {"run", "main", "--help"}, {"broker", "--help"}, {"acls", "--help"}} {
		out, err := testkit.Run(t, bin, append(env, "KAFKA_SASL_MECHANISM=plain", "KAFKA_SASL_USERNAME=u"), args...)
		if err != nil || strings.Contains(out, secret) || strings.Contains(out, "--sasl-password ") {
			t.Errorf("orders %s: %v; it must succeed, without the password or a --sasl-password flag:\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// A stage started before its broker waits for it; when the broker comes up
// and refuses the password, the stage stops with the clear error instead
// of retrying forever.
func TestStageWaitingForASecuredBrokerStopsOnWrongPassword(t *testing.T) {
	bin := testkit.Binary(t)
	certs := testkit.NewCerts(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	const secret = "Right-Pa55-w0rd"
	env := []string{
		"KAFKA_BROKERS=" + addr, "KAFKA_TLS=on", "KAFKA_TLS_CA_FILE=" + certs.CAFile,
		"KAFKA_SASL_MECHANISM=scram-sha-256", "KAFKA_SASL_USERNAME=orders-main",
		"KAFKA_SASL_PASSWORD=Wrong-" + secret, "SESSION_TIMEOUT=6s",
	}
	main := testkit.Start(t, bin, env, "run", "main")
	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		return strings.Contains(main.Output(), "retrying"), "no retry log line yet:\n" + main.Output()
	})
	testkit.Broker(t, broker.Config{
		Listen: addr, TLSCertFile: certs.CertFile, TLSKeyFile: certs.KeyFile,
		Users: []broker.User{{Mechanism: "SCRAM-SHA-256", Name: "orders-main", Password: secret}},
	})
	exited, err := main.Wait(30 * time.Second)
	if !exited || err == nil {
		t.Fatalf("run main after the broker came up refusing its password: exited %v, %v\n%s", exited, err, main.Output())
	}
	if out := main.Output(); !strings.Contains(out, "SASL authentication failed") || strings.Contains(out, secret) {
		t.Errorf("want the SASL failure named, without the password:\n%s", out)
	}
}
