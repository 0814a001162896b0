package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/admin"
	"github.com/orderflow/orders/services/aggregator"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/logs"
	"github.com/orderflow/orders/services/metrics"
	"github.com/orderflow/orders/services/processor"
	"github.com/orderflow/orders/services/registry"
	"github.com/orderflow/orders/services/stage"
	"github.com/orderflow/orders/topology"
)

// settings are the values the commands share, each a typed flag bound to an
// environment variable (see applyEnv). Parsing leaves only range checks,
// which load and logger make, naming the flag and its variable.
type settings struct {
	// Logging, on every command.
	logLevel  zapcore.Level
	logFormat string
	logSample int

	// The Kafka client, on the commands that talk to Kafka.
	brokers               []string
	tls                   bool
	tlsCAFile             string
	tlsCertFile           string
	tlsKeyFile            string
	tlsInsecureSkipVerify bool
	saslMechanism         string
	saslUsername          string
	saslPasswordFile      string
	// passwordFlag catches a password given on the command line, which is
	// refused: command lines show up in ps and shell histories.
	passwordFlag string

	// The pipeline, on the same commands.
	retryDelays     []time.Duration
	failProducts    []string
	flakyRate       float64
	partitions      int
	replication     int
	sessionTimeout  time.Duration
	maxBatch        int
	metricsAddr     string
	dlqMinRet       time.Duration
	dedupHorizon    time.Duration
	principalPrefix string

	// Order values, on the same commands.
	valueFormat          string
	schemaFile           string
	registryURL          string
	registryUsername     string
	registryPasswordFile string
	registryPasswordFlag string // refused, as passwordFlag
	registryCAFile       string
	registryCertFile     string
	registryKeyFile      string

	// The flags of each group above; a command takes the groups it uses
	// (withFlags).
	logFlags, clientFlags, pipelineFlags, valueFlags *pflag.FlagSet
}

// passwordEnv holds the SASL password, registryPasswordEnv the schema
// registry's. They have no flag on purpose.
const (
	passwordEnv         = "KAFKA_SASL_PASSWORD"
	registryPasswordEnv = "SCHEMA_REGISTRY_PASSWORD"
)

// The value formats.
const (
	formatAvro      = "avro"
	formatConfluent = "confluent"
)

// newSettings returns settings at their defaults, with their flags.
func newSettings() *settings {
	s := &settings{}
	s.logFlags = s.logSet()
	s.clientFlags = s.clientSet()
	s.pipelineFlags = s.pipelineSet()
	s.valueFlags = s.valueSet()
	return s
}

func (s *settings) logSet() *pflag.FlagSet {
	fs := pflag.NewFlagSet("log", pflag.ContinueOnError)
	s.logLevel = zapcore.InfoLevel
	fs.Var(level{&s.logLevel}, "log-level", "least level logged: debug, info, warn or error")
	choiceVar(fs, choice{p: &s.logFormat, words: []string{"console", "json"}}, "log-format", "console", "how log lines are written")
	decimalVar(fs, &s.logSample, "log-sample", 100, "per second, each log message's first N lines, then one in N; 0 logs every line")
	bindEnv(fs, map[string]string{
		"log-level":  "LOG_LEVEL",
		"log-format": "LOG_FORMAT",
		"log-sample": "LOG_SAMPLE",
	})
	return fs
}

func (s *settings) clientSet() *pflag.FlagSet {
	fs := pflag.NewFlagSet("client", pflag.ContinueOnError)
	fs.StringSliceVar(&s.brokers, "brokers", []string{"127.0.0.1:9092"}, "comma-separated Kafka bootstrap addresses")
	onOffVar(fs, &s.tls, "tls", false, "on: connect to the brokers with TLS")
	fs.StringVar(&s.tlsCAFile, "tls-ca-file", "", "PEM file of the CAs that sign the brokers' certificates (default: the system's)")
	fs.StringVar(&s.tlsCertFile, "tls-client-cert-file", "", "PEM client certificate, for brokers that authenticate clients by certificate")
	fs.StringVar(&s.tlsKeyFile, "tls-client-key-file", "", "PEM key of the client certificate")
	onOffVar(fs, &s.tlsInsecureSkipVerify, "tls-insecure-skip-verify", false, "on: accept any broker certificate (testing only; logged as a warning)")
	choiceVar(fs, choice{p: &s.saslMechanism, words: []string{kafka.SASLPlain, kafka.SASLScramSHA256, kafka.SASLScramSHA512}, fold: true, none: true},
		"sasl-mechanism", "", "SASL mechanism (default: no SASL)")
	fs.StringVar(&s.saslUsername, "sasl-username", "", "SASL username")
	fs.StringVar(&s.saslPasswordFile, "sasl-password-file", "", "file holding the SASL password (or set "+passwordEnv+"; never on the command line)")
	fs.StringVar(&s.passwordFlag, "sasl-password", "", "refused: use "+passwordEnv+" or --sasl-password-file")
	_ = fs.MarkHidden("sasl-password")
	bindEnv(fs, map[string]string{
		"brokers":                  "KAFKA_BROKERS",
		"tls":                      "KAFKA_TLS",
		"tls-ca-file":              "KAFKA_TLS_CA_FILE",
		"tls-client-cert-file":     "KAFKA_TLS_CERT_FILE",
		"tls-client-key-file":      "KAFKA_TLS_KEY_FILE",
		"tls-insecure-skip-verify": "KAFKA_TLS_INSECURE_SKIP_VERIFY",
		"sasl-mechanism":           "KAFKA_SASL_MECHANISM",
		"sasl-username":            "KAFKA_SASL_USERNAME",
		"sasl-password-file":       "KAFKA_SASL_PASSWORD_FILE",
	})
	trimLists(fs)
	return fs
}

func (s *settings) pipelineSet() *pflag.FlagSet {
	fs := pflag.NewFlagSet("pipeline", pflag.ContinueOnError)
	fs.DurationSliceVar(&s.retryDelays, "retry-delays", []time.Duration{2 * time.Second, 5 * time.Second, 10 * time.Second}, "delay of each retry stage; the count is the number of stages")
	fs.StringSliceVar(&s.failProducts, "fail-products", []string{"Item3"}, "comma-separated products that always fail processing")
	fs.Float64Var(&s.flakyRate, "flaky-rate", 0, "probability in [0,1] that an attempt fails transiently (deterministic per orderId and attempt)")
	decimalVar(fs, &s.partitions, "partitions", 6, "partitions of every pipeline topic")
	decimalVar(fs, &s.replication, "replication", 1, "replication factor of every pipeline topic")
	fs.DurationVar(&s.sessionTimeout, "session-timeout", 10*time.Second, "consumer group session timeout of every stage")
	decimalVar(fs, &s.maxBatch, "max-batch", stage.DefaultMaxBatch, "most records a stage handles, writes and commits together")
	fs.StringVar(&s.metricsAddr, "metrics-addr", "", "serve /metrics, /healthz and /readyz on this address (\":0\" picks a port; empty: off)")
	fs.DurationVar(&s.dlqMinRet, "dlq-min-retention", 168*time.Hour, "least retention orders topics --check accepts for the DLQ")
	fs.DurationVar(&s.dedupHorizon, "dedup-horizon", aggregator.DefaultHorizon, "how long the aggregator remembers an orderId, by the processed records' timestamps; a copy later than that is counted again")
	fs.StringVar(&s.principalPrefix, "acl-principal-prefix", "User:orders-", "principal of each stage: this prefix and main, retry-K, aggregator, producer or admin")
	bindEnv(fs, map[string]string{
		"retry-delays":         "RETRY_DELAYS",
		"fail-products":        "FAIL_PRODUCTS",
		"flaky-rate":           "FLAKY_RATE",
		"partitions":           "PARTITIONS",
		"replication":          "REPLICATION",
		"session-timeout":      "SESSION_TIMEOUT",
		"max-batch":            "MAX_BATCH",
		"metrics-addr":         "METRICS_ADDR",
		"dlq-min-retention":    "DLQ_MIN_RETENTION",
		"dedup-horizon":        "DEDUP_HORIZON",
		"acl-principal-prefix": "ACL_PRINCIPAL_PREFIX",
	})
	trimLists(fs)
	return fs
}

func (s *settings) valueSet() *pflag.FlagSet {
	fs := pflag.NewFlagSet("values", pflag.ContinueOnError)
	choiceVar(fs, choice{p: &s.valueFormat, words: []string{formatAvro, formatConfluent}, fold: true},
		"value-format", formatAvro, "order values: avro (plain Avro, no header) or confluent (Schema Registry wire format)")
	fs.StringVar(&s.schemaFile, "schema", "", "order schema file this process reads and writes orders with (default: the embedded order.avsc)")
	fs.StringVar(&s.registryURL, "schema-registry-url", "", "Schema Registry URL, http:// or https:// (with --value-format confluent)")
	fs.StringVar(&s.registryUsername, "schema-registry-username", "", "Schema Registry basic-auth username")
	fs.StringVar(&s.registryPasswordFile, "schema-registry-password-file", "", "file holding the Schema Registry password (or set "+registryPasswordEnv+"; never on the command line)")
	fs.StringVar(&s.registryPasswordFlag, "schema-registry-password", "", "refused: use "+registryPasswordEnv+" or --schema-registry-password-file")
	_ = fs.MarkHidden("schema-registry-password")
	fs.StringVar(&s.registryCAFile, "schema-registry-ca-file", "", "PEM file of the CAs that sign the registry's certificate (default: the system's)")
	fs.StringVar(&s.registryCertFile, "schema-registry-cert-file", "", "PEM client certificate, for a registry that authenticates clients by certificate")
	fs.StringVar(&s.registryKeyFile, "schema-registry-key-file", "", "PEM key of the registry client certificate")
	bindEnv(fs, map[string]string{
		"value-format":                  "VALUE_FORMAT",
		"schema":                        "ORDER_SCHEMA",
		"schema-registry-url":           "SCHEMA_REGISTRY_URL",
		"schema-registry-username":      "SCHEMA_REGISTRY_USERNAME",
		"schema-registry-password-file": "SCHEMA_REGISTRY_PASSWORD_FILE",
		"schema-registry-ca-file":       "SCHEMA_REGISTRY_CA_FILE",
		"schema-registry-cert-file":     "SCHEMA_REGISTRY_CERT_FILE",
		"schema-registry-key-file":      "SCHEMA_REGISTRY_KEY_FILE",
	})
	return fs
}

// withFlags gives cmd, and the commands under it, the flags of sets.
func withFlags(cmd *cobra.Command, sets ...*pflag.FlagSet) *cobra.Command {
	for _, fs := range sets {
		cmd.PersistentFlags().AddFlagSet(fs)
	}
	return cmd
}

// flag is the settings flag of that name.
func (s *settings) flag(name string) *pflag.Flag {
	for _, fs := range []*pflag.FlagSet{s.logFlags, s.clientFlags, s.pipelineFlags, s.valueFlags} {
		if f := fs.Lookup(name); f != nil {
			return f
		}
	}
	panic("no settings flag --" + name)
}

// given reports whether the named setting came from its flag or its
// environment variable rather than its default.
func (s *settings) given(name string) bool {
	f := s.flag(name)
	return f.Changed || fromEnv(f)
}

// names names a setting both ways: KAFKA_TLS (--tls).
func (s *settings) names(name string) string {
	return fmt.Sprintf("%s (--%s)", envOf(s.flag(name)), name)
}

// setting names a setting and its value, where the value came from first:
// PARTITIONS=0 (--partitions) from the environment, --partitions=0
// (PARTITIONS) from the command line or the default.
func (s *settings) setting(name string) string {
	f := s.flag(name)
	if fromEnv(f) {
		return fmt.Sprintf("%s=%s (--%s)", envOf(f), os.Getenv(envOf(f)), name)
	}
	v := f.Value.String()
	if l, ok := f.Value.(pflag.SliceValue); ok {
		v = strings.Join(l.GetSlice(), ",")
	}
	return fmt.Sprintf("--%s=%s (%s)", name, v, envOf(f))
}

// bad is the error of a setting whose value parsed but cannot be used.
func (s *settings) bad(name, format string, args ...any) error {
	return fmt.Errorf("%s: %w", s.setting(name), fmt.Errorf(format, args...))
}

// nonEmpty is items without the empty ones: "a,,b" lists a and b.
func nonEmpty(items []string) []string {
	var out []string
	for _, it := range items {
		if it != "" {
			out = append(out, it)
		}
	}
	return out
}

func (s *settings) client() (kafka.Client, error) {
	c := kafka.Client{Brokers: nonEmpty(s.brokers)}
	if err := c.Validate(); err != nil {
		return c, s.bad("brokers", "must be host:port[,host:port...]")
	}
	var err error
	if c.TLS, err = s.tlsConfig(); err != nil {
		return c, err
	}
	if c.SASL, err = s.sasl(); err != nil {
		return c, err
	}
	return c, nil
}

func (s *settings) tlsConfig() (*tls.Config, error) {
	if !s.tls {
		for _, f := range []struct{ name, value string }{
			{"tls-ca-file", s.tlsCAFile},
			{"tls-client-cert-file", s.tlsCertFile},
			{"tls-client-key-file", s.tlsKeyFile},
		} {
			if f.value != "" {
				return nil, s.bad(f.name, "set %s on to use it", s.names("tls"))
			}
		}
		if s.tlsInsecureSkipVerify {
			return nil, s.bad("tls-insecure-skip-verify", "set %s on to use it", s.names("tls"))
		}
		return nil, nil
	}
	return s.loadTLS(kafka.TLSFiles{CAFile: s.tlsCAFile, CertFile: s.tlsCertFile, KeyFile: s.tlsKeyFile, InsecureSkipVerify: s.tlsInsecureSkipVerify},
		"tls-ca-file", "tls-client-cert-file", "tls-client-key-file")
}

// loadTLS loads f, whose files the flags caFlag, certFlag and keyFlag name.
func (s *settings) loadTLS(f kafka.TLSFiles, caFlag, certFlag, keyFlag string) (*tls.Config, error) {
	cfg, err := kafka.LoadTLS(f)
	switch {
	case errors.Is(err, kafka.ErrCAFile):
		return nil, s.bad(caFlag, "%w", err)
	case errors.Is(err, kafka.ErrKeyPair):
		return nil, fmt.Errorf("%s, %s: %w", s.setting(certFlag), s.setting(keyFlag), err)
	case err != nil:
		return nil, err
	}
	return cfg, nil
}

// password reads a secret from the file fileFlag names or from the
// variable env, never both; given is false if neither is set.
func (s *settings) password(fileFlag, file, env string) (pass string, given bool, err error) {
	envPass, hasEnv := os.LookupEnv(env)
	switch {
	case file != "" && hasEnv:
		return "", true, fmt.Errorf("%s and %s are both set: use one", s.names(fileFlag), env)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", true, s.bad(fileFlag, "%w", errors.Unwrap(err))
		}
		return strings.TrimRight(string(b), "\r\n"), true, nil
	}
	return envPass, hasEnv, nil
}

func (s *settings) sasl() (*kafka.SASL, error) {
	if s.passwordFlag != "" {
		return nil, fmt.Errorf("--sasl-password: a password is never accepted on the command line; set %s or %s", passwordEnv, s.names("sasl-password-file"))
	}
	_, hasEnvPass := os.LookupEnv(passwordEnv)
	if s.saslMechanism == "" {
		switch {
		case s.saslUsername != "":
			return nil, s.bad("sasl-username", "set %s to use it", s.names("sasl-mechanism"))
		case s.saslPasswordFile != "":
			return nil, s.bad("sasl-password-file", "set %s to use it", s.names("sasl-mechanism"))
		case hasEnvPass:
			return nil, fmt.Errorf("%s is set: set %s to use it", passwordEnv, s.names("sasl-mechanism"))
		}
		return nil, nil
	}
	if s.saslUsername == "" {
		return nil, fmt.Errorf("%s: required with %s", s.names("sasl-username"), s.setting("sasl-mechanism"))
	}
	pass, _, err := s.password("sasl-password-file", s.saslPasswordFile, passwordEnv)
	if err != nil {
		return nil, err
	}
	if pass == "" {
		return nil, fmt.Errorf("%s needs a password: set %s or %s", s.setting("sasl-mechanism"), passwordEnv, s.names("sasl-password-file"))
	}
	m, err := kafka.NewSASL(s.saslMechanism, s.saslUsername, pass)
	if err != nil {
		// The error may quote the password: it is not shown.
		return nil, s.bad("sasl-mechanism", "the username or the password holds characters the mechanism refuses")
	}
	return m, nil
}

// values are how orders travel as record values. With the Confluent
// format, reg is the registry, for the check at start.
func (s *settings) values(log *zap.Logger) (v schemas.Values, reg *registry.Values, err error) {
	codec := schemas.Plain
	if s.schemaFile != "" {
		text, err := os.ReadFile(s.schemaFile)
		if err != nil {
			return nil, nil, s.bad("schema", "%w", errors.Unwrap(err))
		}
		if codec, err = schemas.NewCodec(string(text)); err != nil {
			return nil, nil, s.bad("schema", "not an order schema: %w", err)
		}
	}
	tlsFlags := []struct{ name, value string }{
		{"schema-registry-ca-file", s.registryCAFile}, {"schema-registry-cert-file", s.registryCertFile},
		{"schema-registry-key-file", s.registryKeyFile},
	}
	registryFlags := append([]struct{ name, value string }{
		{"schema-registry-url", s.registryURL}, {"schema-registry-username", s.registryUsername},
		{"schema-registry-password-file", s.registryPasswordFile},
	}, tlsFlags...)
	if s.registryPasswordFlag != "" {
		return nil, nil, fmt.Errorf("--schema-registry-password: a password is never accepted on the command line; set %s or %s", registryPasswordEnv, s.names("schema-registry-password-file"))
	}
	if s.valueFormat != formatConfluent {
		for _, f := range registryFlags {
			if f.value != "" {
				return nil, nil, s.bad(f.name, "set %s to confluent to use it", s.names("value-format"))
			}
		}
		if _, ok := os.LookupEnv(registryPasswordEnv); ok {
			return nil, nil, fmt.Errorf("%s is set: set %s to confluent to use it", registryPasswordEnv, s.names("value-format"))
		}
		return codec.Values(), nil, nil
	}
	if s.registryURL == "" {
		return nil, nil, fmt.Errorf("%s: required with %s", s.names("schema-registry-url"), s.setting("value-format"))
	}
	cfg := registry.Config{URL: s.registryURL, Username: s.registryUsername}
	pass, given, err := s.password("schema-registry-password-file", s.registryPasswordFile, registryPasswordEnv)
	switch {
	case err != nil:
		return nil, nil, err
	case given && cfg.Username == "":
		return nil, nil, fmt.Errorf("%s: required with a registry password", s.names("schema-registry-username"))
	}
	cfg.Password = pass
	https := strings.HasPrefix(strings.ToLower(s.registryURL), "https://")
	if https {
		if cfg.TLS, err = s.loadTLS(kafka.TLSFiles{CAFile: s.registryCAFile, CertFile: s.registryCertFile, KeyFile: s.registryKeyFile},
			"schema-registry-ca-file", "schema-registry-cert-file", "schema-registry-key-file"); err != nil {
			return nil, nil, err
		}
	} else {
		for _, f := range tlsFlags {
			if f.value != "" {
				return nil, nil, s.bad(f.name, "the registry URL %s is not https://", s.registryURL)
			}
		}
	}
	if reg, err = registry.New(cfg, codec, log); err != nil {
		return nil, nil, s.bad("schema-registry-url", "%w", err)
	}
	return reg, reg, nil
}

// principals names the principal of each stage: the prefix, then main,
// retry-K, aggregator, producer or admin.
func (s *settings) principals() (string, error) {
	if typ, name, ok := strings.Cut(s.principalPrefix, ":"); !ok || typ == "" || strings.ContainsAny(name, " ,") {
		return "", s.bad("acl-principal-prefix", "must be a principal prefix such as User:orders-")
	}
	return s.principalPrefix, nil
}

func (s *settings) topology() (topology.Topology, error) {
	if slices.ContainsFunc(s.retryDelays, func(d time.Duration) bool { return d < 0 }) {
		return topology.Topology{}, s.bad("retry-delays", "must be non-negative durations such as 2s,5s,10s")
	}
	if s.partitions < 1 {
		return topology.Topology{}, s.bad("partitions", "must be at least 1")
	}
	if s.replication < 1 {
		return topology.Topology{}, s.bad("replication", "must be at least 1")
	}
	return topology.New(topology.Topology{Delays: slices.Clone(s.retryDelays), Partitions: s.partitions, Replication: s.replication})
}

func (s *settings) rule() (processor.Rule, error) {
	r := processor.Rule{FailProducts: nonEmpty(s.failProducts), FlakyRate: s.flakyRate}
	if err := r.Validate(); err != nil {
		return r, s.bad("flaky-rate", "must be a number between 0 and 1")
	}
	return r, nil
}

func (s *settings) options() (stage.Options, error) {
	o := stage.Options{SessionTimeout: s.sessionTimeout, MaxBatch: s.maxBatch}
	switch err := o.Validate(); {
	case errors.Is(err, stage.ErrSessionTimeout):
		return o, s.bad("session-timeout", "must be at least 1s")
	case errors.Is(err, stage.ErrMaxBatch):
		return o, s.bad("max-batch", "must be at least 1")
	case err != nil:
		return o, err
	}
	return o, nil
}

func (s *settings) metricsConfig() (metrics.Config, error) {
	if s.metricsAddr != "" {
		if _, _, err := net.SplitHostPort(s.metricsAddr); err != nil {
			return metrics.Config{}, s.bad("metrics-addr", "must be host:port or :port")
		}
	}
	return metrics.Config{Addr: s.metricsAddr}, nil
}

func (s *settings) checkConfig() (admin.CheckConfig, error) {
	if s.dlqMinRet < 0 {
		return admin.CheckConfig{}, s.bad("dlq-min-retention", "must not be negative")
	}
	return admin.CheckConfig{DLQMinRetention: s.dlqMinRet}, nil
}

func (s *settings) aggregatorConfig() (aggregator.Config, error) {
	if s.dedupHorizon < time.Second {
		return aggregator.Config{}, s.bad("dedup-horizon", "must be at least 1s: it must cover the time between an order and its copies, minutes when a batch is redone")
	}
	return aggregator.Config{Horizon: s.dedupHorizon}, nil
}

func (s *settings) logger() (*zap.Logger, error) {
	if s.logSample < 0 {
		return nil, s.bad("log-sample", "must be 0 or more")
	}
	var enc zapcore.Encoder
	if s.logFormat == "json" {
		cfg := zap.NewProductionEncoderConfig()
		cfg.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(cfg)
	} else {
		cfg := zap.NewDevelopmentEncoderConfig()
		cfg.EncodeTime = zapcore.TimeEncoderOfLayout("2006-01-02T15:04:05.000Z07:00")
		cfg.EncodeCaller = nil
		enc = zapcore.NewConsoleEncoder(cfg)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(os.Stderr), s.logLevel)
	if s.logSample > 0 {
		// A line per order is the demo's behaviour, and at 5 orders/s it
		// is kept whole. At benchmark rates an unbuffered write per order
		// would cost more than the order itself, so past the first N lines
		// of a message in a second only one in N is written.
		core = logs.NewSampler(core, s.logSample)
	}
	return zap.New(core), nil
}

// config is everything a stage or command needs, parsed and checked.
type config struct {
	client   kafka.Client
	topology topology.Topology
	rule     processor.Rule
	options  stage.Options
	metrics  metrics.Config
	check    admin.CheckConfig
	agg      aggregator.Config
	log      *zap.Logger
	// principalPrefix names each stage's principal in `orders acls`.
	principalPrefix string
	// values read and write orders; registry, if not nil, is the schema
	// registry they use, checked at start.
	values   schemas.Values
	registry *registry.Values
}

// load checks the settings of a command that talks to Kafka and builds its
// config; its error names the setting to fix.
func (s *settings) load() (config, error) {
	var c config
	var err error
	if c.log, err = s.logger(); err != nil {
		return c, err
	}
	if c.client, err = s.client(); err != nil {
		return c, err
	}
	if c.topology, err = s.topology(); err != nil {
		return c, err
	}
	if c.rule, err = s.rule(); err != nil {
		return c, err
	}
	if c.options, err = s.options(); err != nil {
		return c, err
	}
	if c.metrics, err = s.metricsConfig(); err != nil {
		return c, err
	}
	if c.check, err = s.checkConfig(); err != nil {
		return c, err
	}
	if c.agg, err = s.aggregatorConfig(); err != nil {
		return c, err
	}
	if c.principalPrefix, err = s.principals(); err != nil {
		return c, err
	}
	if c.values, c.registry, err = s.values(c.log); err != nil {
		return c, err
	}
	if c.client.TLS != nil && c.client.TLS.InsecureSkipVerify {
		c.log.Warn("KAFKA_TLS_INSECURE_SKIP_VERIFY is on: the brokers' certificates are NOT verified, so anyone on the network path can read and change the traffic and learn the SASL password; use it for testing only")
	}
	return c, nil
}
