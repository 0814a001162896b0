package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/orderflow/orders/services/pipeline"
	"github.com/orderflow/orders/services/processor"
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
}

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
		{"max-batch", "MAX_BATCH", "500", "most records a stage handles, writes and commits together", &s.maxBatch},
		{"log-level", "LOG_LEVEL", "info", "debug, info, warn or error", &s.logLevel},
		{"log-format", "LOG_FORMAT", "console", "console or json", &s.logFormat},
		{"log-sample", "LOG_SAMPLE", "100", "per second, each log message's first N lines, then one in N; 0 logs every line", &s.logSample},
	}
}

func (s *settings) register(fs *pflag.FlagSet) {
	for _, st := range s.list() {
		fs.StringVar(st.dst, st.flag, st.def, st.usage+" (env "+st.env+")")
	}
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

func (s *settings) client() (pipeline.Client, error) {
	var brokers []string
	for _, b := range strings.Split(s.brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			brokers = append(brokers, b)
		}
	}
	c := pipeline.Client{Brokers: brokers}
	if err := c.Validate(); err != nil {
		return c, bad("KAFKA_BROKERS", "brokers", s.brokers, errors.New("want host:port[,host:port...]"))
	}
	return c, nil
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

func (s *settings) options() (pipeline.Options, error) {
	st, err := time.ParseDuration(s.sessionTimeout)
	if err != nil || st < time.Second {
		return pipeline.Options{}, bad("SESSION_TIMEOUT", "session-timeout", s.sessionTimeout, errors.New("want a duration of at least 1s"))
	}
	mb, err := strconv.Atoi(s.maxBatch)
	if err != nil || mb < 1 {
		return pipeline.Options{}, bad("MAX_BATCH", "max-batch", s.maxBatch, errors.New("want a positive integer"))
	}
	return pipeline.Options{SessionTimeout: st, MaxBatch: mb}, nil
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
		core = zapcore.NewSamplerWithOptions(core, time.Second, sample, sample)
	}
	return zap.New(core), nil
}

// config is everything a stage or command needs, parsed and checked.
type config struct {
	client   pipeline.Client
	topology topology.Topology
	rule     processor.Rule
	options  pipeline.Options
	log      *zap.Logger
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
	return c, nil
}
