package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap/zapcore"
)

// help runs `orders args... --help` in process and returns what it prints.
func help(t *testing.T, args ...string) string {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append(args, "--help"))
	if err := root.Execute(); err != nil {
		t.Fatalf("orders %s --help: %v", strings.Join(args, " "), err)
	}
	return out.String()
}

// settingFlags are the flags of the settings, hidden ones left out.
func settingFlags(sets ...*pflag.FlagSet) []*pflag.Flag {
	var flags []*pflag.Flag
	for _, fs := range sets {
		fs.VisitAll(func(f *pflag.Flag) {
			if !f.Hidden {
				flags = append(flags, f)
			}
		})
	}
	return flags
}

func TestHelpShowsTypesDefaultsAndVariables(t *testing.T) {
	out := help(t, "run", "main")
	for _, want := range []string{
		`--brokers strings +comma-separated Kafka bootstrap addresses \[\$KAFKA_BROKERS\] \(default \[127\.0\.0\.1:9092\]\)`,
		`--retry-delays durations .* \[\$RETRY_DELAYS\] \(default \[2s,5s,10s\]\)`,
		`--session-timeout duration .* \[\$SESSION_TIMEOUT\] \(default 10s\)`,
		`--dlq-min-retention duration .* \(default 168h0m0s\)`,
		`--partitions int .* \[\$PARTITIONS\] \(default 6\)`,
		`--flaky-rate float .* \[\$FLAKY_RATE\]\n`,
		`--tls on\|off .* \[\$KAFKA_TLS\] \(default off\)`,
		`--tls-insecure-skip-verify on\|off `,
		`--sasl-mechanism plain\|scram-sha-256\|scram-sha-512 .* \[\$KAFKA_SASL_MECHANISM\]\n`,
		`--log-level level .* \[\$LOG_LEVEL\] \(default info\)`,
		`--log-format console\|json .* \(default console\)`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("run main --help lacks %s:\n%s", want, out)
		}
	}
	s := newSettings()
	for _, f := range settingFlags(s.logFlags, s.clientFlags, s.pipelineFlags, s.valueFlags) {
		env := envOf(f)
		if env == "" {
			t.Errorf("--%s has no environment variable", f.Name)
			continue
		}
		if !strings.Contains(out, "--"+f.Name+" ") || !strings.Contains(out, "[$"+env+"]") {
			t.Errorf("run main --help does not list --%s with [$%s]", f.Name, env)
		}
	}
}

// The embedded broker is no Kafka client: its help lists the log flags
// and none of the client's or the pipeline's. Every command that talks
// to Kafka lists them all.
func TestOnlyKafkaCommandsHaveKafkaFlags(t *testing.T) {
	s := newSettings()
	kafkaFlags := settingFlags(s.clientFlags, s.pipelineFlags)
	if s.clientFlags.Lookup("brokers") == nil || s.pipelineFlags.Lookup("retry-delays") == nil || len(kafkaFlags) < 19 {
		t.Fatalf("%d Kafka and pipeline flags, want --brokers, --retry-delays and the 17 others", len(kafkaFlags))
	}
	out := help(t, "broker")
	for _, f := range kafkaFlags {
		if strings.Contains(out, "--"+f.Name+" ") || strings.Contains(out, "$"+envOf(f)) {
			t.Errorf("broker --help lists --%s:\n%s", f.Name, out)
		}
	}
	for _, f := range settingFlags(s.logFlags) {
		if !strings.Contains(out, "--"+f.Name+" ") {
			t.Errorf("broker --help lacks --%s", f.Name)
		}
	}
	for _, args := range [][]string{
		{"topics"}, {"produce"}, {"run", "main"}, {"run", "retry"}, {"run", "aggregator"}, {"stats"},
		{"demo"}, {"acls"}, {"inspect"}, {"trace"}, {"dlq", "list"}, {"dlq", "replay"},
	} {
		out := help(t, args...)
		for _, f := range kafkaFlags {
			if !strings.Contains(out, "--"+f.Name+" ") {
				t.Errorf("%s --help lacks --%s", strings.Join(args, " "), f.Name)
			}
		}
	}
}

// parse parses args as a command line of every settings flag, then sets
// the flags it left alone from the environment.
func parse(t *testing.T, args ...string) (*settings, error) {
	t.Helper()
	s := newSettings()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	for _, set := range []*pflag.FlagSet{s.logFlags, s.clientFlags, s.pipelineFlags, s.valueFlags} {
		fs.AddFlagSet(set)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return s, applyEnv(fs)
}

func TestFlagWinsOverVariableOverDefault(t *testing.T) {
	t.Setenv("PARTITIONS", "4")
	t.Setenv("REPLICATION", "2")
	t.Setenv("KAFKA_TLS", "not a switch") // never read: the flag is given
	s, err := parse(t, "--partitions", "3", "--tls", "on")
	if err != nil {
		t.Fatal(err)
	}
	if s.partitions != 3 || s.replication != 2 || s.maxBatch != 500 || !s.tls {
		t.Errorf("partitions %d (flag 3), replication %d (env 2), max-batch %d (default 500), tls %v (flag on)",
			s.partitions, s.replication, s.maxBatch, s.tls)
	}
	if !s.given("partitions") || !s.given("replication") || s.given("max-batch") {
		t.Errorf("given: partitions %v, replication %v, max-batch %v; want true, true, false",
			s.given("partitions"), s.given("replication"), s.given("max-batch"))
	}
}

// Each form a setting took before it was a typed flag is taken as it was,
// and each form it refused is refused.
func TestVariablesTakeTheFormsTheyTook(t *testing.T) {
	cases := []struct {
		env, value string
		got        func(*settings) any
		want       any // nil: refused
	}{
		{"KAFKA_TLS", "on", func(s *settings) any { return s.tls }, true},
		{"KAFKA_TLS", " ON ", func(s *settings) any { return s.tls }, true},
		{"KAFKA_TLS", "yes", func(s *settings) any { return s.tls }, true},
		{"KAFKA_TLS", "true", func(s *settings) any { return s.tls }, true},
		{"KAFKA_TLS", "1", func(s *settings) any { return s.tls }, true},
		{"KAFKA_TLS", "off", func(s *settings) any { return s.tls }, false},
		{"KAFKA_TLS", "No", func(s *settings) any { return s.tls }, false},
		{"KAFKA_TLS", "0", func(s *settings) any { return s.tls }, false},
		{"KAFKA_TLS", "", func(s *settings) any { return s.tls }, false},
		{"KAFKA_TLS", "maybe", nil, nil},
		{"KAFKA_TLS_INSECURE_SKIP_VERIFY", "on", func(s *settings) any { return s.tlsInsecureSkipVerify }, true},
		{"RETRY_DELAYS", "1s,5s", func(s *settings) any { return s.retryDelays }, []time.Duration{time.Second, 5 * time.Second}},
		{"RETRY_DELAYS", "100ms, 1m", func(s *settings) any { return s.retryDelays }, []time.Duration{100 * time.Millisecond, time.Minute}},
		{"RETRY_DELAYS", "2s,soon", nil, nil},
		{"RETRY_DELAYS", "1s,", nil, nil},
		{"RETRY_DELAYS", "", nil, nil},
		{"RETRY_DELAYS", "5", nil, nil},
		{"KAFKA_BROKERS", " a:1, b:2,", func(s *settings) any { return nonEmpty(s.brokers) }, []string{"a:1", "b:2"}},
		{"KAFKA_BROKERS", "a:1\nb:2", nil, nil},
		{"RETRY_DELAYS", "1s\n", func(s *settings) any { return s.retryDelays }, []time.Duration{time.Second}},
		{"FAIL_PRODUCTS", "Item1 , Item2", func(s *settings) any { return nonEmpty(s.failProducts) }, []string{"Item1", "Item2"}},
		{"FAIL_PRODUCTS", "", func(s *settings) any { return nonEmpty(s.failProducts) }, []string(nil)},
		{"PARTITIONS", "12", func(s *settings) any { return s.partitions }, 12},
		{"PARTITIONS", "08", func(s *settings) any { return s.partitions }, 8},
		{"PARTITIONS", "010", func(s *settings) any { return s.partitions }, 10},
		{"PARTITIONS", "+3", func(s *settings) any { return s.partitions }, 3},
		{"PARTITIONS", "0x10", nil, nil},
		{"PARTITIONS", "6.0", nil, nil},
		{"MAX_BATCH", "1000", func(s *settings) any { return s.maxBatch }, 1000},
		{"LOG_SAMPLE", "0", func(s *settings) any { return s.logSample }, 0},
		{"FLAKY_RATE", "0.25", func(s *settings) any { return s.flakyRate }, 0.25},
		{"FLAKY_RATE", "1e-1", func(s *settings) any { return s.flakyRate }, 0.1},
		{"FLAKY_RATE", "x", nil, nil},
		{"SESSION_TIMEOUT", "6s", func(s *settings) any { return s.sessionTimeout }, 6 * time.Second},
		{"SESSION_TIMEOUT", "5", nil, nil},
		{"DLQ_MIN_RETENTION", "1h30m", func(s *settings) any { return s.dlqMinRet }, 90 * time.Minute},
		{"LOG_LEVEL", "DEBUG", func(s *settings) any { return s.logLevel }, zapcore.DebugLevel},
		{"LOG_LEVEL", "warn", func(s *settings) any { return s.logLevel }, zapcore.WarnLevel},
		{"LOG_LEVEL", "", func(s *settings) any { return s.logLevel }, zapcore.InfoLevel},
		{"LOG_LEVEL", "loud", nil, nil},
		{"LOG_FORMAT", "json", func(s *settings) any { return s.logFormat }, "json"},
		{"LOG_FORMAT", "JSON", nil, nil},
		{"LOG_FORMAT", "", nil, nil},
		{"KAFKA_SASL_MECHANISM", "SCRAM-SHA-512", func(s *settings) any { return s.saslMechanism }, "scram-sha-512"},
		{"KAFKA_SASL_MECHANISM", "plain", func(s *settings) any { return s.saslMechanism }, "plain"},
		{"KAFKA_SASL_MECHANISM", "", func(s *settings) any { return s.saslMechanism }, ""},
		{"KAFKA_SASL_MECHANISM", "md5", nil, nil},
		{"KAFKA_SASL_MECHANISM", " plain", nil, nil},
		{"ACL_PRINCIPAL_PREFIX", "User:team-", func(s *settings) any { return s.principalPrefix }, "User:team-"},
	}
	for _, c := range cases {
		t.Run(c.env+"="+c.value, func(t *testing.T) {
			t.Setenv(c.env, c.value)
			s, err := parse(t)
			if c.want == nil {
				if err == nil {
					t.Fatalf("taken, want refused")
				}
				if want := c.env + "=" + c.value + " (--"; !strings.HasPrefix(err.Error(), want) {
					t.Errorf("error %q does not start with %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.got(s); !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
}

func TestEveryVariableErrorIsReported(t *testing.T) {
	t.Setenv("KAFKA_TLS", "maybe")
	t.Setenv("PARTITIONS", "many")
	_, err := parse(t)
	if err == nil || !strings.Contains(err.Error(), "KAFKA_TLS=maybe (--tls): must be on or off") ||
		!strings.Contains(err.Error(), "PARTITIONS=many (--partitions): must be a whole number") {
		t.Fatalf("error %v, want both settings named", err)
	}
}

// A value that parses but is out of range is reported once, naming where
// it came from first and the other name after.
func TestRangeErrorsNameFlagAndVariable(t *testing.T) {
	s, err := parse(t, "--partitions", "0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.load(); err == nil || err.Error() != "--partitions=0 (PARTITIONS): must be at least 1" {
		t.Errorf("--partitions 0: %v", err)
	}
	t.Setenv("RETRY_DELAYS", "1s,-1s")
	s, err = parse(t)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.load(); err == nil || !strings.HasPrefix(err.Error(), "RETRY_DELAYS=1s,-1s (--retry-delays): ") {
		t.Errorf("RETRY_DELAYS=1s,-1s: %v", err)
	}
}

// The settings table of the README names each variable, its flag and its
// default as the binary has them.
func TestSettingsMatchTheREADME(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([A-Z_]+)` \\| `--([a-z-]+)` \\| ([^|]+) \\|")
	rows := row.FindAllStringSubmatch(string(b), -1)
	s := newSettings()
	seen := map[string]bool{}
	for _, r := range rows {
		env, name, def := r[1], r[2], strings.TrimSpace(r[3])
		var f *pflag.Flag
		for _, fs := range []*pflag.FlagSet{s.logFlags, s.clientFlags, s.pipelineFlags, s.valueFlags} {
			if f == nil {
				f = fs.Lookup(name)
			}
		}
		if f == nil {
			t.Errorf("README lists --%s, which no command has", name)
			continue
		}
		seen[name] = true
		if envOf(f) != env {
			t.Errorf("README binds --%s to %s, the binary to %s", name, env, envOf(f))
		}
		// A default in backquotes is a value; words (none, off, the
		// system's CAs) say the flag is empty by default.
		got := strings.Trim(f.DefValue, "[]")
		switch want := strings.Trim(def, "`"); {
		case !strings.HasPrefix(def, "`"):
			if got != "" {
				t.Errorf("--%s: README's default is %q, the binary's %s", name, def, got)
			}
		case f.Value.Type() == "duration":
			dw, errW := time.ParseDuration(want)
			dg, errG := time.ParseDuration(got)
			if errW != nil || errG != nil || dw != dg {
				t.Errorf("--%s: README's default %s, the binary's %s", name, want, got)
			}
		case got != want:
			t.Errorf("--%s: README's default %s, the binary's %s", name, want, got)
		}
	}
	for _, f := range settingFlags(s.logFlags, s.clientFlags, s.pipelineFlags, s.valueFlags) {
		if !seen[f.Name] {
			t.Errorf("--%s (%s) is missing from the README's settings table", f.Name, envOf(f))
		}
	}
}

func TestValueSettingsFailAtStart(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.avsc")
	if err := os.WriteFile(bad, []byte(`{"type":"record","name":"Order","fields":[{"name":"orderId","type":"string"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--schema-registry-url", "http://127.0.0.1:8081"}, "--schema-registry-url=http://127.0.0.1:8081 (SCHEMA_REGISTRY_URL): set VALUE_FORMAT (--value-format) to confluent to use it"},
		{[]string{"--value-format", "confluent"}, "SCHEMA_REGISTRY_URL (--schema-registry-url): required with --value-format=confluent (VALUE_FORMAT)"},
		{[]string{"--value-format", "confluent", "--schema-registry-url", "127.0.0.1:8081"}, "must be an http:// or https:// URL"},
		{[]string{"--value-format", "confluent", "--schema-registry-url", "http://r:8081", "--schema-registry-ca-file", "ca.pem"}, "is not https://"},
		{[]string{"--value-format", "confluent", "--schema-registry-url", "http://r:8081", "--schema-registry-password", "hunter2"}, "never accepted on the command line"},
		{[]string{"--schema", bad}, "(ORDER_SCHEMA): not an order schema"},
		{[]string{"--schema", filepath.Join(t.TempDir(), "missing.avsc")}, "(ORDER_SCHEMA): no such file or directory"},
	}
	for _, c := range cases {
		s, err := parse(t, c.args...)
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		_, err = s.load()
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%v: load() = %v, want an error with %q", c.args, err, c.want)
		}
	}
	if err := newSettings().valueFlags.Set("value-format", "xml"); err == nil || !strings.Contains(err.Error(), "avro or confluent") {
		t.Errorf("--value-format xml: %v", err)
	}
	s, err := parse(t, "--value-format", "confluent", "--schema-registry-url", "http://127.0.0.1:8081")
	if err != nil {
		t.Fatal(err)
	}
	if c, err := s.load(); err != nil || c.registry == nil {
		t.Errorf("a confluent setting: %v, registry %v", err, c.registry)
	}
}
