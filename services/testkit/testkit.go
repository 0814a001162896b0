// Package testkit starts what integration tests need: an embedded broker
// on a free port, the orders binary built once per test binary, and stage
// processes started the way production starts them. Everything started is
// stopped when the test ends.
package testkit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/orderflow/orders/services/broker"
	"github.com/orderflow/orders/services/process"
)

// Broker starts an embedded broker on free ports (cfg.Nodes of them) and
// stops it when the test ends. It holds group members to Kafka's
// session-timeout bounds (6s to 30m) unless cfg lowers the minimum, which
// a test should do only where it waits for a dead member to time out.
func Broker(tb testing.TB, cfg broker.Config) *broker.Broker {
	tb.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	b, err := broker.Start(cfg, zap.NewNop())
	if err != nil {
		tb.Fatalf("start broker: %v", err)
	}
	tb.Cleanup(b.Close)
	return b
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds ./cmd/orders once per test binary and returns its path.
func Binary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "orders-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "orders")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/orders")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binPath
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

// Proc is one running orders process.
type Proc struct {
	Name string
	proc *process.Process
	out  *syncBuffer
}

// Start runs the binary with args and env added to the environment. The
// process is killed when the test ends if it is still running.
func Start(tb testing.TB, bin string, env []string, args ...string) *Proc {
	tb.Helper()
	p := &Proc{Name: strings.Join(args, " "), out: &syncBuffer{}}
	var err error
	if p.proc, err = process.Start(process.Config{Path: bin, Args: args, Env: env, Name: p.Name, Output: p.out}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		p.Kill()
		if tb.Failed() {
			tb.Logf("--- output of %s (last 4 KiB):\n%s", p.Name, tail(p.Output(), 4096))
		}
	})
	return p
}

// Run runs the binary to completion, for at most 2 minutes, and returns
// its combined output.
func Run(tb testing.TB, bin string, env []string, args ...string) (string, error) {
	tb.Helper()
	var out syncBuffer
	p, err := process.Start(process.Config{Path: bin, Args: args, Env: env, Name: strings.Join(args, " "), Output: &out})
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := p.Wait(ctx)
	if err != nil {
		st = p.Kill()
		st.Err = fmt.Errorf("%s: %w (%v)", p.Name(), err, st)
	}
	return out.String(), st.Err
}

// Output is everything the process wrote so far.
func (p *Proc) Output() string { return p.out.String() }

// Kill sends SIGKILL and waits for the process to end.
func (p *Proc) Kill() { p.proc.Kill() }

// Signal sends sig.
func (p *Proc) Signal(sig syscall.Signal) error { return p.proc.Signal(sig) }

// Wait waits up to timeout for the process to exit and returns its error.
func (p *Proc) Wait(timeout time.Duration) (exited bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	st, err := p.proc.Wait(ctx)
	if err != nil {
		return false, nil
	}
	return true, st.Err
}

// Eventually polls cond every 100ms until it holds or timeout passes; then
// it fails the test with cond's last message.
func Eventually(tb testing.TB, timeout time.Duration, cond func() (bool, string)) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("condition not met after %v: %s", timeout, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// CheckAverage runs `orders stats --json` and fails tb unless it reports
// count orders whose average is average (relative error at most 1e-9).
func CheckAverage(tb testing.TB, bin string, env []string, count int, average float64) {
	tb.Helper()
	out, err := Run(tb, bin, env, "stats", "--json")
	if err != nil {
		tb.Fatalf("orders stats: %v\n%s", err, out)
	}
	var st struct {
		Count   int64   `json:"count"`
		Average float64 `json:"average"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		tb.Fatalf("orders stats --json printed %q: %v", out, err)
	}
	if st.Count != int64(count) || math.Abs(st.Average-average)/average > 1e-9 {
		tb.Errorf("stats: count %d average %.12f, want count %d average %.12f", st.Count, st.Average, count, average)
	}
}
