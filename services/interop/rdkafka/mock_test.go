package rdkafka_test

// librdkafka's mock cluster runs in a process of its own: this test binary,
// started again with mockEnv set, which TestMain turns into a server of
// the mock, with commands on its standard input and answers on its
// standard output.
//
// The mock cannot live in the test process. It takes each connection with
// accept(), not accept4(SOCK_CLOEXEC) (src/rdkafka_mock.c), so every orders
// process the test starts would inherit the mock's end of every connection
// accepted so far. A broker taken down then closes its copy, but the
// connection stays open through the copy a child holds and goes silent
// instead of ending: the clients see it end only when that child exits
// (here the producer, the last one started, seconds after the broker is
// back up). A process of its own, which starts none, keeps the mock's
// sockets to itself.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	rdk "github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// mockEnv, set to a number of brokers, makes the test binary serve a mock
// cluster of that many brokers instead of running tests.
const mockEnv = "ORDERS_RDKAFKA_MOCK_BROKERS"

func TestMain(m *testing.M) {
	if n := os.Getenv(mockEnv); n != "" {
		os.Exit(serveMock(n, os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

// serveMock runs a mock cluster of n brokers. It writes "bootstrap ADDRS",
// then answers each command line on in with "ok" or "error MESSAGE":
//
//	topic NAME PARTITIONS REPLICATION
//	down BROKER
//	up BROKER
//
// It closes the cluster and returns when in ends.
func serveMock(n string, in io.Reader, out io.Writer) int {
	brokers, err := strconv.Atoi(n)
	if err != nil {
		fmt.Fprintf(out, "error %s=%q: %v\n", mockEnv, n, err)
		return 2
	}
	mc, err := rdk.NewMockCluster(brokers)
	if err != nil {
		fmt.Fprintf(out, "error mock cluster: %v\n", err)
		return 1
	}
	defer mc.Close()
	fmt.Fprintf(out, "bootstrap %s\n", mc.BootstrapServers())
	for sc := bufio.NewScanner(in); sc.Scan(); {
		if err := mockCommand(mc, strings.Fields(sc.Text())); err != nil {
			fmt.Fprintf(out, "error %v\n", err)
		} else {
			fmt.Fprintln(out, "ok")
		}
	}
	return 0
}

func mockCommand(mc *rdk.MockCluster, f []string) error {
	ints := func(s []string) ([]int, error) {
		var out []int
		for _, v := range s {
			i, err := strconv.Atoi(v)
			if err != nil {
				return nil, err
			}
			out = append(out, i)
		}
		return out, nil
	}
	switch {
	case len(f) == 4 && f[0] == "topic":
		v, err := ints(f[2:])
		if err != nil {
			return err
		}
		return mc.CreateTopic(f[1], v[0], v[1])
	case len(f) == 2 && (f[0] == "down" || f[0] == "up"):
		v, err := ints(f[1:])
		if err != nil {
			return err
		}
		if f[0] == "down" {
			return mc.SetBrokerDown(v[0])
		}
		return mc.SetBrokerUp(v[0])
	}
	return fmt.Errorf("unknown command %q", strings.Join(f, " "))
}

// mockProc is a mock cluster served by a process of its own.
type mockProc struct {
	Bootstrap string

	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Scanner
	logs *lockedBuffer
	mu   sync.Mutex
}

// startMock starts a mock cluster of the given number of brokers in a
// process of its own. It ends when the test does.
func startMock(tb testing.TB, brokers int) *mockProc {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	m := &mockProc{logs: &lockedBuffer{}}
	m.cmd = exec.Command(exe, "-test.run=^$")
	m.cmd.Env = append(os.Environ(), mockEnv+"="+strconv.Itoa(brokers))
	m.cmd.Stderr = m.logs // librdkafka's own log lines
	if m.in, err = m.cmd.StdinPipe(); err != nil {
		tb.Fatal(err)
	}
	stdout, err := m.cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	m.out = bufio.NewScanner(stdout)
	if err := m.cmd.Start(); err != nil {
		tb.Fatalf("start the mock cluster: %v", err)
	}
	tb.Cleanup(func() {
		m.in.Close() // the mock closes its cluster and exits
		done := make(chan error, 1)
		go func() { done <- m.cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("mock cluster: %v\n%s", err, m.logs)
			}
		case <-time.After(30 * time.Second):
			_ = m.cmd.Process.Kill()
			<-done
			tb.Errorf("mock cluster did not stop within 30s of its input's end; killed")
		}
		if tb.Failed() {
			tb.Logf("--- librdkafka's log:\n%s", m.logs)
		}
	})
	line, err := m.answer()
	if err != nil {
		tb.Fatalf("mock cluster: %v\n%s", err, m.logs)
	}
	var ok bool
	if m.Bootstrap, ok = strings.CutPrefix(line, "bootstrap "); !ok {
		tb.Fatalf("mock cluster said %q\n%s", line, m.logs)
	}
	return m
}

// answer reads one line of the mock's output.
func (m *mockProc) answer() (string, error) {
	if !m.out.Scan() {
		return "", errors.Join(errors.New("the mock cluster stopped"), m.out.Err())
	}
	return m.out.Text(), nil
}

// do sends the mock one command and returns its error, if any.
func (m *mockProc) do(format string, args ...any) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cmd := fmt.Sprintf(format, args...)
	if _, err := fmt.Fprintln(m.in, cmd); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	line, err := m.answer()
	switch {
	case err != nil:
		return fmt.Errorf("%s: %w", cmd, err)
	case line == "ok":
		return nil
	}
	return fmt.Errorf("%s: %s", cmd, strings.TrimPrefix(line, "error "))
}

// CreateTopic creates a topic on the mock, as its own call does: no
// request goes through the Kafka protocol.
func (m *mockProc) CreateTopic(name string, partitions, replication int) error {
	return m.do("topic %s %d %d", name, partitions, replication)
}

// SetBroker takes a broker down, closing its connections and refusing new
// ones, or brings it back up. Neither moves a leader or a coordinator.
func (m *mockProc) SetBroker(id int, up bool) error {
	if up {
		return m.do("up %d", id)
	}
	return m.do("down %d", id)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
