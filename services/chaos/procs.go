package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/orderflow/orders/services/process"
)

// proc is one OS process of the orders binary.
type proc struct {
	*process.Process
	role string // "main", "retry-2", "aggregator", "broker", "producer"
	log  *os.File
}

// procs starts and tracks processes, each logging to a file of its own.
type procs struct {
	bin    string
	env    []string
	logDir string
	mu     sync.Mutex
	seq    int
	all    []*proc
}

func (ps *procs) start(role string, args ...string) (*proc, error) {
	return ps.startEnv(role, nil, args...)
}

// startEnv starts a process with env added to the common environment.
func (ps *procs) startEnv(role string, env []string, args ...string) (*proc, error) {
	ps.mu.Lock()
	ps.seq++
	name := fmt.Sprintf("%03d-%s.log", ps.seq, role)
	ps.mu.Unlock()
	f, err := os.Create(filepath.Join(ps.logDir, name))
	if err != nil {
		return nil, err
	}
	p := &proc{role: role, log: f}
	p.Process, err = process.Start(process.Config{Path: ps.bin, Args: args, Env: append(append([]string(nil), ps.env...), env...), Name: role, Output: f})
	if err != nil {
		f.Close()
		return nil, err
	}
	ps.mu.Lock()
	ps.all = append(ps.all, p)
	ps.mu.Unlock()
	return p, nil
}

// brokerArgs is how the harness starts `orders broker`.
type brokerArgs struct {
	listen     []string // one address per node, the same at every restart
	dataDir    string
	minSession time.Duration // 0: the broker's default, Kafka's 6s
}

// startBroker runs `orders broker` with its fault control on a free
// loopback port, and waits for its listening line. It returns the fault
// control's address.
func (ps *procs) startBroker(a brokerArgs) (*proc, string, error) {
	args := []string{"broker", "--nodes", strconv.Itoa(len(a.listen)), "--listen", strings.Join(a.listen, ","),
		"--data-dir", a.dataDir, "--fault-control", "127.0.0.1:0"}
	if a.minSession > 0 {
		args = append(args, "--group-min-session-timeout", a.minSession.String())
	}
	p, err := ps.startEnv("broker", []string{"LOG_LEVEL=info"}, args...)
	if err != nil {
		return nil, "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The broker prints the fault control's address before its own.
	var ctl string
	_, err = p.WaitLine(ctx, func(line string) bool {
		if a, ok := strings.CutPrefix(line, "fault control listening on "); ok {
			ctl = strings.TrimSpace(a)
		}
		return strings.HasPrefix(line, "broker listening on ")
	})
	if err != nil {
		p.Kill()
		return nil, "", fmt.Errorf("broker did not start listening on %s: %w\n%s", strings.Join(a.listen, ","), err, p.Tail(20))
	}
	return p, ctl, nil
}

// killAll kills every process still running, stages before the broker,
// and closes their logs.
func (ps *procs) killAll() {
	ps.mu.Lock()
	all := append([]*proc(nil), ps.all...)
	ps.mu.Unlock()
	for _, p := range all {
		if p.role != "broker" {
			_ = p.Signal(syscall.SIGCONT)
			p.Kill()
		}
	}
	for _, p := range all {
		if p.role == "broker" {
			p.Kill()
		}
		p.log.Close()
	}
}
