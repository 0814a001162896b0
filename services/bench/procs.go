package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one OS process of the orders binary. It reads the process's
// JSON log to know which partitions it was assigned in which generation.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error

	mu         sync.Mutex
	generation int32
	partitions int
	tail       []string
	stdout     bytes.Buffer
}

// start runs bin with args and env added to the environment.
func start(bin string, env []string, args ...string) (*proc, error) {
	p := &proc{name: strings.Join(args, " "), done: make(chan struct{}), generation: -1}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	p.cmd.Stdout = &lockedWriter{mu: &p.mu, w: &p.stdout}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", p.name, err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		p.scan(stderr)
	}()
	go func() {
		<-scanned
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// scan follows the process's JSON log lines.
func (p *proc) scan(r io.Reader) {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		line := s.Bytes()
		var entry struct {
			Msg        string `json:"msg"`
			Partitions []int  `json:"partitions"`
			Generation int32  `json:"generation"`
		}
		assigned := bytes.Contains(line, []byte(`"assigned partitions"`)) && json.Unmarshal(line, &entry) == nil
		p.mu.Lock()
		if assigned && entry.Generation >= p.generation {
			p.generation, p.partitions = entry.Generation, len(entry.Partitions)
		}
		if p.tail = append(p.tail, string(line)); len(p.tail) > 20 {
			p.tail = p.tail[1:]
		}
		p.mu.Unlock()
	}
	_, _ = io.Copy(io.Discard, r)
}

// assignment is the process's latest generation and how many partitions it
// got in it; -1 before it has joined.
func (p *proc) assignment() (int32, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.generation, p.partitions
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stdout.String() + strings.Join(p.tail, "\n")
}

// peakRSS is the process's peak resident set size (VmHWM) in bytes.
func (p *proc) peakRSS() (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmHWM:" && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", p.cmd.Process.Pid)
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits for the process, killing it after 15s.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// startBroker runs `orders broker` on a free port and returns it with its address.
func startBroker(ctx context.Context, bin string) (*proc, string, error) {
	p, err := start(bin, []string{"LOG_LEVEL=warn"}, "broker", "--listen", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	const prefix = "broker listening on "
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		out := p.output()
		if i := strings.Index(out, prefix); i >= 0 {
			if j := strings.IndexByte(out[i:], '\n'); j > 0 {
				return p, strings.TrimSpace(out[i+len(prefix) : i+j]), nil
			}
		}
		select {
		case <-p.done:
			return nil, "", fmt.Errorf("broker exited: %v\n%s", p.err, p.output())
		case <-ctx.Done():
			p.stop()
			return nil, "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	p.stop()
	return nil, "", fmt.Errorf("broker did not print its address")
}

// cpuTime is the user and system CPU time process pid has used so far.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name, in brackets, may hold spaces: count fields after it.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ is 100 on Linux
}
