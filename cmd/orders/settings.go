package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go/sasl"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/orderflow/orders/services/admin"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/logs"
	"github.com/orderflow/orders/services/metrics"
	"github.com/orderflow/orders/services/processor"
	"github.com/orderflow/orders/services/stage"
	"github.com/orderflow/orders/topology"
)

// settings are the values every command shares: each is a flag whose
// default comes from an environment variable.
type settings struct {
	brokers        string
	retryDelays    string
	failProducts   string
	flakyRate      string
	partitions     string
	replication    string
	sessionTimeout string
	maxBatch       string
	logLevel       string
	logFormat      string
	logSample      string
	metricsAddr    string
	dlqMinRet      string

	tls                   string
	tlsCAFile             string
	tlsCertFile           string
	tlsKeyFile            string
	tlsInsecureSkipVerify string
	saslMechanism         string
	saslUsername          string
	saslPasswordFile      string
	principalPrefix       string
	// passwordFlag catches a password given on the command line, which is
	// refused: command lines show up in ps and shell histories.
	passwordFlag string
}

// passwordEnv holds the SASL password. It has no flag on purpose.
const passwordEnv = "KAFKA_SASL_PASSWORD"

// setting binds one flag to its environment variable.
type setting struct {
	flag, env, def, usage string
	dst                   *string
}

func (s *settings) list() []setting {
	return []setting{
		{"brokers", "KAFKA_BROKERS", "127.0.0.1:9092", "comma-separated Kafka bootstrap addresses", &s.brokers},
		{"retry-delays", "RETRY_DELAYS", "2s,5s,10s", "delay of each retry stage; the count is the number of stages", &s.retryDelays},
		{"fail-products", "FAIL_PRODUCTS", "Item3", "comma-separated products that always fail processing", &s.failProducts},
		{"flaky-rate", "FLAKY_RATE", "0", "probability in [0,1] that an attempt fails transiently (deterministic per orderId and attempt)", &s.flakyRate},
		{"partitions", "PARTITIONS", "6", "partitions of every pipeline topic", &s.partitions},
		{"replication", "REPLICATION", "1", "replication factor of every pipeline topic", &s.replication},
		{"session-timeout", "SESSION_TIMEOUT", "10s", "consumer group session timeout of every stage", &s.sessionTimeout},
		{"max-batch", "MAX_BATCH", strconv.Itoa(stage.DefaultMaxBatch), "most records a stage handles, writes and commits together", &s.maxBatch},
		{"log-level", "LOG_LEVEL", "info", "debug, info, warn or error", &s.logLevel},
		{"log-format", "LOG_FORMAT", "console", "console or json", &s.logFormat},
		{"log-sample", "LOG_SAMPLE", "100", "per second, each log message's first N lines, then one in N; 0 logs every line", &s.logSample},
		{"dlq-min-retention", "DLQ_MIN_RETENTION", "168h", "least retention orders topics --check accepts for the DLQ", &s.dlqMinRet},
		{"metrics-addr", "METRICS_ADDR", "", "serve /metrics, /healthz and /readyz on this address (\":0\" picks a port; empty: off)", &s.metricsAddr},
		{"tls", "KAFKA_TLS", "off", "on: connect to the brokers with TLS", &s.tls},
		{"tls-ca-file", "KAFKA_TLS_CA_FILE", "", "PEM file of the CAs that sign the brokers' certificates (default: the system's)", &s.tlsCAFile},
		{"tls-client-cert-file", "KAFKA_TLS_CERT_FILE", "", "PEM client certificate, for brokers that authenticate clients by certificate", &s.tlsCertFile},
		{"tls-client-key-file", "KAFKA_TLS_KEY_FILE", "", "PEM key of the client certificate", &s.tlsKeyFile},
		{"tls-insecure-skip-verify", "KAFKA_TLS_INSECURE_SKIP_VERIFY", "off", "on: accept any broker certificate (testing only; logged as a warning)", &s.tlsInsecureSkipVerify},
		{"sasl-mechanism", "KAFKA_SASL_MECHANISM", "", "plain, scram-sha-256 or scram-sha-512 (default: no SASL)", &s.saslMechanism},
		{"sasl-username", "KAFKA_SASL_USERNAME", "", "SASL username", &s.saslUsername},
		{"sasl-password-file", "KAFKA_SASL_PASSWORD_FILE", "", "file holding the SASL password (or set " + passwordEnv + "; never on the command line)", &s.saslPasswordFile},
		{"acl-principal-prefix", "ACL_PRINCIPAL_PREFIX", "User:orders-", "principal of each stage: this prefix and main, retry-K, aggregator, producer or admin", &s.principalPrefix},
	}
}

func (s *settings) register(fs *pflag.FlagSet) {
	for _, st := range s.list() {
		fs.StringVar(st.dst, st.flag, st.def, st.usage+" (env "+st.env+")")
	}
	fs.StringVar(&s.passwordFlag, "sasl-password", "", "refused: use "+passwordEnv+" or --sasl-password-file")
	_ = fs.MarkHidden("sasl-password")
}

// applyEnv fills every flag not given on the command line from its
// environment variable.
func applyEnv(cmd *cobra.Command, list []setting) {
	for _, st := range list {
		if f := cmd.Flags().Lookup(st.flag); f != nil && f.Changed {
			continue
		}
		if v, ok := os.LookupEnv(st.env); ok {
			*st.dst = v
		}
	}
}

// explicit reports whether the named setting came from a flag or the environment.
func explicit(cmd *cobra.Command, list []setting, flag string) bool {
	for _, st := range list {
		if st.flag != flag {
			continue
		}
		if f := cmd.Flags().Lookup(flag); f != nil && f.Changed {
			return true
		}
		_, ok := os.LookupEnv(st.env)
		return ok
	}
	return false
}

func bad(env, flag, value string, err error) error {
	return fmt.Errorf("%s (--%s) = %q: %w", env, flag, value, err)
}

func (s *settings) client() (kafka.Client, error) {
	var brokers []string
	for _, b := range strings.Split(s.brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			brokers = append(brokers, b)
		}
	}
	c := kafka.Client{Brokers: brokers}
	if err := c.Validate(); err != nil {
		return c, bad("KAFKA_BROKERS", "brokers", s.brokers, errors.New("want host:port[,host:port...]"))
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

func onOff(env, flag, value string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(value)) {
	case "on", "true", "1", "yes":
		return true, nil
	case "off", "false", "0", "no", "":
		return false, nil
	}
	return false, bad(env, flag, value, errors.New("want on or off"))
}

func (s *settings) tlsConfig() (*tls.Config, error) {
	on, err := onOff("KAFKA_TLS", "tls", s.tls)
	if err != nil {
		return nil, err
	}
	insecure, err := onOff("KAFKA_TLS_INSECURE_SKIP_VERIFY", "tls-insecure-skip-verify", s.tlsInsecureSkipVerify)
	if err != nil {
		return nil, err
	}
	if !on {
		for _, f := range []struct{ env, flag, value string }{
			{"KAFKA_TLS_CA_FILE", "tls-ca-file", s.tlsCAFile},
			{"KAFKA_TLS_CERT_FILE", "tls-client-cert-file", s.tlsCertFile},
			{"KAFKA_TLS_KEY_FILE", "tls-client-key-file", s.tlsKeyFile},
		} {
			if f.value != "" {
				return nil, bad(f.env, f.flag, f.value, errors.New("set KAFKA_TLS=on to use it"))
			}
		}
		if insecure {
			return nil, bad("KAFKA_TLS_INSECURE_SKIP_VERIFY", "tls-insecure-skip-verify", s.tlsInsecureSkipVerify, errors.New("set KAFKA_TLS=on to use it"))
		}
		return nil, nil
	}
	cfg, err := kafka.LoadTLS(kafka.TLSFiles{CAFile: s.tlsCAFile, CertFile: s.tlsCertFile, KeyFile: s.tlsKeyFile, InsecureSkipVerify: insecure})
	switch {
	case errors.Is(err, kafka.ErrCAFile):
		return nil, bad("KAFKA_TLS_CA_FILE", "tls-ca-file", s.tlsCAFile, err)
	case errors.Is(err, kafka.ErrKeyPair):
		return nil, fmt.Errorf("KAFKA_TLS_CERT_FILE (--tls-client-cert-file) = %q, KAFKA_TLS_KEY_FILE (--tls-client-key-file) = %q: %w", s.tlsCertFile, s.tlsKeyFile, err)
	case err != nil:
		return nil, err
	}
	return cfg, nil
}

func (s *settings) sasl() (sasl.Mechanism, error) {
	if s.passwordFlag != "" {
		return nil, fmt.Errorf("--sasl-password: a password is never accepted on the command line; set %s or KAFKA_SASL_PASSWORD_FILE (--sasl-password-file)", passwordEnv)
	}
	envPass, hasEnvPass := os.LookupEnv(passwordEnv)
	if s.saslMechanism == "" {
		switch {
		case s.saslUsername != "":
			return nil, bad("KAFKA_SASL_USERNAME", "sasl-username", s.saslUsername, errors.New("set KAFKA_SASL_MECHANISM to use it"))
		case s.saslPasswordFile != "":
			return nil, bad("KAFKA_SASL_PASSWORD_FILE", "sasl-password-file", s.saslPasswordFile, errors.New("set KAFKA_SASL_MECHANISM to use it"))
		case hasEnvPass:
			return nil, fmt.Errorf("%s is set: set KAFKA_SASL_MECHANISM to use it", passwordEnv)
		}
		return nil, nil
	}
	if s.saslUsername == "" {
		return nil, fmt.Errorf("KAFKA_SASL_USERNAME (--sasl-username): required with KAFKA_SASL_MECHANISM=%s", s.saslMechanism)
	}
	var pass string
	switch {
	case s.saslPasswordFile != "" && hasEnvPass:
		return nil, fmt.Errorf("KAFKA_SASL_PASSWORD_FILE (--sasl-password-file) and %s are both set: use one", passwordEnv)
	case s.saslPasswordFile != "":
		b, err := os.ReadFile(s.saslPasswordFile)
		if err != nil {
			return nil, bad("KAFKA_SASL_PASSWORD_FILE", "sasl-password-file", s.saslPasswordFile, errors.Unwrap(err))
		}
		pass = strings.TrimRight(string(b), "\r\n")
	case hasEnvPass:
		pass = envPass
	}
	if pass == "" {
		return nil, fmt.Errorf("KAFKA_SASL_MECHANISM=%s needs a password: set %s or KAFKA_SASL_PASSWORD_FILE (--sasl-password-file)", s.saslMechanism, passwordEnv)
	}
	m, err := kafka.NewSASL(s.saslMechanism, s.saslUsername, pass)
	if err != nil {
		return nil, bad("KAFKA_SASL_MECHANISM", "sasl-mechanism", s.saslMechanism, errors.New("want plain, scram-sha-256 or scram-sha-512"))
	}
	return m, nil
}

// principals names the principal of each stage: the prefix, then main,
// retry-K, aggregator, producer or admin.
func (s *settings) principals() (string, error) {
	if typ, name, ok := strings.Cut(s.principalPrefix, ":"); !ok || typ == "" || strings.ContainsAny(name, " ,") {
		return "", bad("ACL_PRINCIPAL_PREFIX", "acl-principal-prefix", s.principalPrefix, errors.New("want a principal prefix such as User:orders-"))
	}
	return s.principalPrefix, nil
}

func (s *settings) topology() (topology.Topology, error) {
	var delays []time.Duration
	for _, part := range strings.Split(s.retryDelays, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(part))
		if err != nil || d < 0 {
			return topology.Topology{}, bad("RETRY_DELAYS", "retry-delays", s.retryDelays, errors.New("want comma-separated non-negative durations such as 2s,5s,10s"))
		}
		delays = append(delays, d)
	}
	partitions, err := strconv.Atoi(s.partitions)
	if err != nil || partitions < 1 {
		return topology.Topology{}, bad("PARTITIONS", "partitions", s.partitions, errors.New("want a positive integer"))
	}
	replication, err := strconv.Atoi(s.replication)
	if err != nil || replication < 1 {
		return topology.Topology{}, bad("REPLICATION", "replication", s.replication, errors.New("want a positive integer"))
	}
	return topology.New(topology.Topology{Delays: delays, Partitions: partitions, Replication: replication})
}

func (s *settings) rule() (processor.Rule, error) {
	var r processor.Rule
	for _, p := range strings.Split(s.failProducts, ",") {
		if p = strings.TrimSpace(p); p != "" {
			r.FailProducts = append(r.FailProducts, p)
		}
	}
	rate, err := strconv.ParseFloat(s.flakyRate, 64)
	if err != nil {
		return r, bad("FLAKY_RATE", "flaky-rate", s.flakyRate, errors.New("want a number between 0 and 1"))
	}
	r.FlakyRate = rate
	if err := r.Validate(); err != nil {
		return r, bad("FLAKY_RATE", "flaky-rate", s.flakyRate, errors.New("want a number between 0 and 1"))
	}
	return r, nil
}

func (s *settings) options() (stage.Options, error) {
	st, err := time.ParseDuration(s.sessionTimeout)
	if err != nil || st < time.Second {
		return stage.Options{}, bad("SESSION_TIMEOUT", "session-timeout", s.sessionTimeout, errors.New("want a duration of at least 1s"))
	}
	mb, err := strconv.Atoi(s.maxBatch)
	if err != nil || mb < 1 {
		return stage.Options{}, bad("MAX_BATCH", "max-batch", s.maxBatch, errors.New("want a positive integer"))
	}
	return stage.Options{SessionTimeout: st, MaxBatch: mb}, nil
}

func (s *settings) logger() (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(s.logLevel)
	if err != nil {
		return nil, bad("LOG_LEVEL", "log-level", s.logLevel, errors.New("want debug, info, warn or error"))
	}
	var enc zapcore.Encoder
	switch s.logFormat {
	case "console":
		cfg := zap.NewDevelopmentEncoderConfig()
		cfg.EncodeTime = zapcore.TimeEncoderOfLayout("2006-01-02T15:04:05.000Z07:00")
		cfg.EncodeCaller = nil
		enc = zapcore.NewConsoleEncoder(cfg)
	case "json":
		cfg := zap.NewProductionEncoderConfig()
		cfg.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(cfg)
	default:
		return nil, bad("LOG_FORMAT", "log-format", s.logFormat, errors.New("want console or json"))
	}
	sample, err := strconv.Atoi(s.logSample)
	if err != nil || sample < 0 {
		return nil, bad("LOG_SAMPLE", "log-sample", s.logSample, errors.New("want a non-negative integer"))
	}
	core := zapcore.NewCore(enc, zapcore.Lock(os.Stderr), level)
	if sample > 0 {
		// A line per order is the demo's behaviour, and at 5 orders/s it
		// is kept whole. At benchmark rates an unbuffered write per order
		// would cost more than the order itself, so past the first N lines
		// of a message in a second only one in N is written.
		core = logs.NewSampler(core, sample)
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
	log      *zap.Logger
	// principalPrefix names each stage's principal in `orders acls`.
	principalPrefix string
}

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
	if s.metricsAddr != "" {
		if _, _, err := net.SplitHostPort(s.metricsAddr); err != nil {
			return c, bad("METRICS_ADDR", "metrics-addr", s.metricsAddr, errors.New("want host:port or :port"))
		}
	}
	c.metrics = metrics.Config{Addr: s.metricsAddr}
	ret, err := time.ParseDuration(s.dlqMinRet)
	if err != nil || ret < 0 {
		return c, bad("DLQ_MIN_RETENTION", "dlq-min-retention", s.dlqMinRet, errors.New("want a duration such as 168h"))
	}
	c.check = admin.CheckConfig{DLQMinRetention: ret}
	if c.principalPrefix, err = s.principals(); err != nil {
		return c, err
	}
	if c.client.TLS != nil && c.client.TLS.InsecureSkipVerify {
		c.log.Warn("KAFKA_TLS_INSECURE_SKIP_VERIFY is on: the brokers' certificates are NOT verified, so anyone on the network path can read and change the traffic and learn the SASL password; use it for testing only")
	}
	return c, nil
}
