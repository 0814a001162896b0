package main_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/orderflow/orders/services/broker"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/outcome"
	"github.com/orderflow/orders/services/testkit"
	"github.com/orderflow/orders/topology"
)

func TestBadSettingsFailAtStartNamingTheSetting(t *testing.T) {
	bin := testkit.Binary(t)
	cases := []struct {
		env     []string
		args    []string
		setting string
	}{
		{[]string{"RETRY_DELAYS=2s,soon"}, []string{"run", "main"}, "RETRY_DELAYS"},
		{[]string{"RETRY_DELAYS="}, []string{"run", "main"}, "RETRY_DELAYS"},
		{[]string{"FLAKY_RATE=1.5"}, []string{"run", "main"}, "FLAKY_RATE"},
		{[]string{"PARTITIONS=0"}, []string{"topics"}, "PARTITIONS"},
		{[]string{"REPLICATION=x"}, []string{"topics"}, "REPLICATION"},
		{[]string{"KAFKA_BROKERS=nohostport"}, []string{"run", "aggregator"}, "KAFKA_BROKERS"},
		{[]string{"LOG_LEVEL=loud"}, []string{"run", "main"}, "LOG_LEVEL"},
		{[]string{"LOG_FORMAT=xml"}, []string{"run", "main"}, "LOG_FORMAT"},
		{[]string{"LOG_SAMPLE=-1"}, []string{"run", "main"}, "LOG_SAMPLE"},
		{[]string{"SESSION_TIMEOUT=5"}, []string{"run", "main"}, "SESSION_TIMEOUT"},
		{[]string{"MAX_BATCH=-1"}, []string{"run", "main"}, "MAX_BATCH"},
		{nil, []string{"run", "retry", "--stage", "4"}, "--stage"},
		{nil, []string{"produce", "--count", "-1"}, "--count"},
		{nil, []string{"--retry-delays", "1s,-1s", "run", "main"}, "RETRY_DELAYS"},
	}
	for _, c := range cases {
		t.Run(strings.Join(append(c.env, c.args...), " "), func(t *testing.T) {
			// An unreachable broker: a bad setting must fail before any connection.
			env := append([]string{"KAFKA_BROKERS=127.0.0.1:1"}, c.env...)
			out, err := testkit.Run(t, bin, env, c.args...)
			if err == nil {
				t.Fatalf("exit 0, want a failure naming %s\n%s", c.setting, out)
			}
			if !strings.Contains(out, c.setting) {
				t.Fatalf("error does not name %s:\n%s", c.setting, out)
			}
		})
	}
}

func TestNoBrokerFailsFastNamingTheAddress(t *testing.T) {
	bin := testkit.Binary(t)
	for _, cmd := range []string{"topics", "stats"} {
		out, err := testkit.Run(t, bin, []string{"KAFKA_BROKERS=127.0.0.1:1"}, cmd)
		if err == nil || !strings.Contains(out, "127.0.0.1:1") || !strings.Contains(out, "no broker reachable") {
			t.Errorf("orders %s without a broker: %v\n%s", cmd, err, out)
		}
	}
}

// Every command has help. The commands list the log settings, and those
// that talk to Kafka the client and pipeline settings too; the embedded
// broker lists no Kafka client setting.
func TestHelpOnEveryCommand(t *testing.T) {
	bin := testkit.Binary(t)
	for _, c := range []struct {
		args        []string
		logs, kafka bool
	}{
		{nil, false, false}, {[]string{"broker"}, true, false},
		{[]string{"topics"}, true, true}, {[]string{"produce"}, true, true}, {[]string{"run"}, true, true},
		{[]string{"run", "main"}, true, true}, {[]string{"run", "retry"}, true, true}, {[]string{"run", "aggregator"}, true, true},
		{[]string{"stats"}, true, true}, {[]string{"demo"}, true, true}, {[]string{"acls"}, true, true},
		{[]string{"inspect"}, true, true}, {[]string{"trace"}, true, true}, {[]string{"dlq", "list"}, true, true},
		{[]string{"dlq", "replay"}, true, true},
	} {
		out, err := testkit.Run(t, bin, nil, append(c.args, "--help")...)
		if err != nil || !strings.Contains(out, "Usage:") {
			t.Errorf("orders %s --help: %v\n%s", strings.Join(c.args, " "), err, out)
		}
		for flag, want := range map[string]bool{
			"--log-level level": c.logs, "[$LOG_LEVEL]": c.logs,
			"--brokers strings": c.kafka, "[$KAFKA_BROKERS]": c.kafka, "--tls on|off": c.kafka, "--sasl-mechanism ": c.kafka,
			"--retry-delays durations": c.kafka, "--session-timeout duration": c.kafka,
		} {
			if strings.Contains(out, flag) != want {
				t.Errorf("orders %s --help: listing %q is %v, want %v\n%s", strings.Join(c.args, " "), flag, !want, want, out)
			}
		}
	}
}

// A variable's bad value names the variable, the value and the flag; a bad
// value given with the flag names the flag and the variable.
func TestSettingErrorsNameFlagAndVariable(t *testing.T) {
	bin := testkit.Binary(t)
	for _, c := range []struct {
		env  []string
		args []string
		says string
	}{
		{[]string{"KAFKA_TLS=maybe"}, []string{"topics"}, "orders: KAFKA_TLS=maybe (--tls): must be on or off"},
		{[]string{"PARTITIONS=0"}, []string{"topics"}, "orders: PARTITIONS=0 (--partitions): must be at least 1"},
		{nil, []string{"topics", "--partitions", "0"}, "orders: --partitions=0 (PARTITIONS): must be at least 1"},
		{[]string{"SESSION_TIMEOUT=500ms"}, []string{"run", "main"}, "orders: SESSION_TIMEOUT=500ms (--session-timeout): must be at least 1s"},
		{[]string{"LOG_LEVEL=loud"}, []string{"broker"}, "orders: LOG_LEVEL=loud (--log-level): must be debug, info, warn or error"},
		{nil, []string{"acls", "--tls", "maybe"}, `invalid argument "maybe" for "--tls" flag: must be on or off`},
	} {
		out, err := testkit.Run(t, bin, append([]string{"KAFKA_BROKERS=127.0.0.1:1"}, c.env...), c.args...)
		if err == nil || !strings.Contains(out, c.says) {
			t.Errorf("%v orders %s: %v, want a failure saying %q\n%s", c.env, strings.Join(c.args, " "), err, c.says, out)
		}
	}
}

// A flag wins over its variable, which wins over the default; a variable
// the command line overrides is not even parsed. orders acls prints the
// ACLs without a broker, from ACL_PRINCIPAL_PREFIX and RETRY_DELAYS.
func TestFlagWinsOverVariable(t *testing.T) {
	bin := testkit.Binary(t)
	for _, c := range []struct {
		env       []string
		args      []string
		principal string
		stages    int
	}{
		{nil, nil, "User:orders-", 3},
		{[]string{"ACL_PRINCIPAL_PREFIX=User:env-", "RETRY_DELAYS=1s"}, nil, "User:env-", 1},
		{[]string{"ACL_PRINCIPAL_PREFIX=User:env-", "RETRY_DELAYS=1s"}, []string{"--acl-principal-prefix", "User:flag-", "--retry-delays", "1s,2s"}, "User:flag-", 2},
		{[]string{"KAFKA_TLS=maybe", "RETRY_DELAYS=soon"}, []string{"--tls", "off", "--retry-delays", "1s, 5s"}, "User:orders-", 2},
	} {
		out, err := testkit.Run(t, bin, c.env, append([]string{"acls"}, c.args...)...)
		if err != nil {
			t.Errorf("%v orders acls %v: %v\n%s", c.env, c.args, err, out)
			continue
		}
		if !strings.Contains(out, c.principal+"main ") || !strings.Contains(out, fmt.Sprintf("%sretry-%d ", c.principal, c.stages)) ||
			strings.Contains(out, fmt.Sprintf("retry-%d ", c.stages+1)) {
			t.Errorf("%v orders acls %v: want principals %s... with %d retry stages:\n%s", c.env, c.args, c.principal, c.stages, out)
		}
	}
}

// startBrokerProc runs `orders broker` on a free port and returns the
// address it prints.
func startBrokerProc(t *testing.T, bin, dataDir string) (addr string, stop func()) {
	t.Helper()
	return startBrokerProcAt(t, bin, "127.0.0.1:0", dataDir)
}

// startBrokerProcAt runs `orders broker --listen listen`.
func startBrokerProcAt(t *testing.T, bin, listen, dataDir string) (addr string, stop func()) {
	t.Helper()
	cmd := exec.Command(bin, "broker", "--listen", listen, "--data-dir", dataDir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), "broker listening on ") {
		_ = cmd.Process.Kill()
		t.Fatalf("broker printed %q", lines.Text())
	}
	addr = strings.TrimPrefix(lines.Text(), "broker listening on ")
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		go func() { _, _ = io.Copy(io.Discard, stdout) }()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("broker exit: %v", err)
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("broker did not stop within 15s of SIGTERM")
		}
	}
	t.Cleanup(stop)
	return addr, stop
}

func TestBrokerDataDirSurvivesRestart(t *testing.T) {
	bin := testkit.Binary(t)
	dir := t.TempDir()
	addr, stop := startBrokerProc(t, bin, dir)
	env := []string{"KAFKA_BROKERS=" + addr, "RETRY_DELAYS=100ms", "SESSION_TIMEOUT=6s"}
	if out, err := testkit.Run(t, bin, env, "topics"); err != nil {
		t.Fatalf("topics: %v\n%s", err, out)
	}
	if out, err := testkit.Run(t, bin, env, "produce", "--count", "50"); err != nil {
		t.Fatalf("produce: %v\n%s", err, out)
	}
	top, _ := topology.New(topology.Topology{Delays: []time.Duration{100 * time.Millisecond}})
	client := kafka.Client{Brokers: []string{addr}}
	main := testkit.Start(t, bin, env, "run", "main")
	retry := testkit.Start(t, bin, env, "run", "retry", "--stage", "1")
	tally := outcome.NewTally()
	testkit.Eventually(t, time.Minute, func() (bool, string) {
		if err := tally.Poll(context.Background(), client, top); err != nil {
			return false, err.Error()
		}
		return tally.Final() == 50, fmt.Sprintf("%d of 50 outcomes", tally.Final())
	})
	main.Kill()
	retry.Kill()
	stop()

	addr2, _ := startBrokerProc(t, bin, dir)
	env[0] = "KAFKA_BROKERS=" + addr2
	out, err := testkit.Run(t, bin, env, "topics")
	if err != nil || strings.Count(out, "exists") != len(top.Topics()) {
		t.Fatalf("topics after restart: %v\n%s", err, out)
	}
	client.Brokers = []string{addr2}
	again := outcome.NewTally()
	if err := again.Poll(context.Background(), client, top); err != nil {
		t.Fatal(err)
	}
	if again.Final() != 50 || len(again.Processed) != len(tally.Processed) {
		t.Fatalf("after restart the topics hold %d outcomes (%d processed), before %d (%d)",
			again.Final(), len(again.Processed), tally.Final(), len(tally.Processed))
	}
	// The main group's committed offsets survived: it has nothing left to read.
	admin := client.Admin()
	defer admin.Close()
	committed, err := admin.OffsetFetch(context.Background(), &kafkago.OffsetFetchRequest{GroupID: top.Group("main"), Topics: map[string][]int{top.Orders: {0, 1, 2, 3, 4, 5}}})
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, p := range committed.Topics[top.Orders] {
		if p.Error != nil {
			t.Fatalf("offset fetch: %v", p.Error)
		}
		total += max(p.CommittedOffset, 0)
	}
	if total != 50 {
		t.Fatalf("group %s committed %d records of orders after restart, want 50", top.Group("main"), total)
	}
}

func TestTopicsCheckCatchesEveryDrift(t *testing.T) {
	bin := testkit.Binary(t)
	b := testkit.Broker(t, broker.Config{})
	client := kafka.Client{Brokers: []string{b.Addr()}}
	admin := client.Admin()
	defer admin.Close()
	// A cluster that drifted every way: orders_retry_3 is missing,
	// orders_retry_1 is narrower than orders, orders_retry_2 keeps records
	// for less than its delay, the DLQ for less than the minimum, and the
	// aggregator's state is not compacted and expires.
	topic := func(name string, parts int, retentionMS string) kafkago.TopicConfig {
		tc := kafkago.TopicConfig{Topic: name, NumPartitions: parts, ReplicationFactor: 1}
		if retentionMS != "" {
			tc.ConfigEntries = []kafkago.ConfigEntry{{ConfigName: "retention.ms", ConfigValue: retentionMS}}
		}
		return tc
	}
	_, err := admin.CreateTopics(context.Background(), &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{
		topic("orders", 6, ""), topic("orders_retry_1", 3, ""), topic("orders_retry_2", 6, "1000"),
		topic("orders_dlq", 6, "3600000"), topic("orders_processed", 6, ""),
		topic("orders_aggregator_state", 6, "86400000"), topic("orders_dlq_replays", 6, "-1"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"KAFKA_BROKERS=" + b.Addr(), "RETRY_DELAYS=1s,5s,10s"}
	out, err := testkit.Run(t, bin, env, "topics", "--check")
	wantDrift := []string{
		"drift    orders_retry_1               has 3 partitions, fewer than the 6",
		"drift    orders_retry_2               retention.ms is 1000, not longer than its retry delay 5s",
		"drift    orders_retry_3               missing",
		"drift    orders_dlq                   retention.ms is 3600000, shorter than the 168h0m0s DLQ_MIN_RETENTION asks",
		"drift    orders_aggregator_state      cleanup.policy is delete with retention.ms 86400000: the state topic must be compacted (set cleanup.policy=compact), or its records expire",
		"topic    orders_aggregator_state      6 partitions, retention.ms 86400000\n",
		"topic    orders_dlq_replays           6 partitions, retention.ms -1\n",
		"5 drifts",
	}
	if err == nil {
		t.Errorf("--check exited 0 on a drifted cluster")
	}
	for _, w := range wantDrift {
		if !strings.Contains(out, w) {
			t.Errorf("--check output lacks %q:\n%s", w, out)
		}
	}
	// Apply fixes what it can and says what it cannot.
	out, err = testkit.Run(t, bin, env, "topics")
	for _, w := range []string{
		"created    orders_retry_3               6 partitions",
		"grown      orders_retry_1               has 3 partitions",
		"cannot-fix orders_retry_2               retention.ms is 1000",
		"cannot-fix orders_dlq",
		"cannot-fix orders_aggregator_state      cleanup.policy is delete",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("topics output lacks %q:\n%s", w, out)
		}
	}
	if err == nil {
		t.Errorf("topics exited 0 with drift it cannot fix")
	}
	out, _ = testkit.Run(t, bin, env, "topics", "--check")
	if !strings.Contains(out, "3 drifts") || strings.Contains(out, "missing") || strings.Contains(out, "fewer than") {
		t.Errorf("after apply, --check still reports fixable drift:\n%s", out)
	}
	if out, err := testkit.Run(t, bin, append(env, "DLQ_MIN_RETENTION=1h"), "topics", "--check"); !strings.Contains(out, "2 drifts") || err == nil {
		t.Errorf("with DLQ_MIN_RETENTION=1h: %v\n%s", err, out)
	}
	// The operator compacts the state topic: its drift goes, and its line
	// shows the policy instead of a retention that no longer applies.
	res, err := admin.IncrementalAlterConfigs(context.Background(), &kafkago.IncrementalAlterConfigsRequest{Resources: []kafkago.IncrementalAlterConfigsRequestResource{{
		ResourceType: kafkago.ResourceTypeTopic, ResourceName: "orders_aggregator_state",
		Configs: []kafkago.IncrementalAlterConfigsRequestConfig{{Name: "cleanup.policy", Value: "compact", ConfigOperation: kafkago.ConfigOperationSet}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Resources {
		if r.Error != nil {
			t.Fatal(r.Error)
		}
	}
	out, _ = testkit.Run(t, bin, env, "topics", "--check")
	if !strings.Contains(out, "2 drifts") || strings.Contains(out, "drift    orders_aggregator_state") ||
		!strings.Contains(out, "topic    orders_aggregator_state      6 partitions, cleanup.policy compact\n") {
		t.Errorf("after cleanup.policy=compact on the state topic:\n%s", out)
	}
}
