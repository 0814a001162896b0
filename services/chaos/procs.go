package chaos

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one OS process of the orders binary.
type proc struct {
	role string // "main", "retry-2", "aggregator", "broker", "producer"
	args []string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  *os.File
	// exitedAt is when it exited; read it after done is closed.
	exitedAt time.Time
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
	p := &proc{role: role, args: args, done: make(chan struct{}), log: f}
	p.cmd = exec.Command(ps.bin, args...)
	p.cmd.Env = append(append(os.Environ(), ps.env...), env...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", role, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		p.exitedAt = time.Now()
		f.Close()
		close(p.done)
	}()
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
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(p.log.Name())
		if strings.Contains(string(b), "broker listening on ") {
			_, ctl, _ := strings.Cut(string(b), "fault control listening on ")
			ctl, _, _ = strings.Cut(ctl, "\n")
			return p, strings.TrimSpace(ctl), nil
		}
		select {
		case <-p.done:
			return nil, "", fmt.Errorf("broker exited: %v\n%s", p.err, b)
		case <-time.After(50 * time.Millisecond):
		}
	}
	p.kill()
	return nil, "", fmt.Errorf("broker did not start listening on %s", strings.Join(a.listen, ","))
}

func (p *proc) signal(sig syscall.Signal) { _ = p.cmd.Process.Signal(sig) }

func (p *proc) kill() {
	p.signal(syscall.SIGKILL)
	<-p.done
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// killAll stops every process still running, stages before the broker.
func (ps *procs) killAll() {
	ps.mu.Lock()
	all := append([]*proc(nil), ps.all...)
	ps.mu.Unlock()
	for _, p := range all {
		if p.role != "broker" {
			p.signal(syscall.SIGCONT)
			p.kill()
		}
	}
	for _, p := range all {
		if p.role == "broker" {
			p.kill()
		}
	}
}

// tail returns the last lines of a process's log.
func (p *proc) tail(n int) string {
	f, err := os.Open(p.log.Name())
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(io.LimitReader(f, 64<<20))
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		lines = append(lines, s.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
