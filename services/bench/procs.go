package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/orderflow/orders/services/process"
)

// stopGrace is how long a process has to exit after SIGTERM before it is
// killed.
const stopGrace = 15 * time.Second

// proc is one OS process of the orders binary. It reads the process's
// JSON log to know which partitions it was assigned in which generation.
type proc struct {
	*process.Process

	mu         sync.Mutex
	generation int32
	partitions int
	// assigned is when the process first logged its partitions, restored
	// when it last logged one's state restored (the aggregator).
	assigned, restored time.Time
}

// start runs bin with args and env added to the environment.
func start(bin string, env []string, args ...string) (*proc, error) {
	p := &proc{generation: -1}
	var err error
	if p.Process, err = process.Start(process.Config{Path: bin, Args: args, Env: env, Name: strings.Join(args, " "), OnLine: p.scan}); err != nil {
		return nil, err
	}
	return p, nil
}

// scan follows the process's JSON log lines.
func (p *proc) scan(line string) {
	if strings.Contains(line, `"partition state restored"`) {
		p.mu.Lock()
		p.restored = time.Now()
		p.mu.Unlock()
		return
	}
	if !strings.Contains(line, `"assigned partitions"`) {
		return
	}
	var entry struct {
		Partitions []int `json:"partitions"`
		Generation int32 `json:"generation"`
	}
	if json.Unmarshal([]byte(line), &entry) != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if entry.Generation >= p.generation {
		p.generation, p.partitions = entry.Generation, len(entry.Partitions)
	}
	if p.assigned.IsZero() {
		p.assigned = time.Now()
	}
}

// assignment is the process's latest generation and how many partitions it
// got in it; -1 before it has joined.
func (p *proc) assignment() (int32, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.generation, p.partitions
}

// assignedAt is when the process first logged its partitions; zero before.
func (p *proc) assignedAt() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.assigned
}

// restoredAt is when the process last logged a partition's state restored;
// zero before.
func (p *proc) restoredAt() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.restored
}

// exitErr is an error if the process has exited, with its last lines.
func (p *proc) exitErr() error {
	if s, ok := p.State(); ok {
		return fmt.Errorf("%s exited: %v\n%s", p.Name(), s, p.Tail(20))
	}
	return nil
}

func (p *proc) stop() { p.Stop(stopGrace) }

// startBroker runs `orders broker` on a free port and returns it with its address.
func startBroker(ctx context.Context, bin string) (*proc, string, error) {
	p, err := start(bin, []string{"LOG_LEVEL=warn"}, "broker", "--listen", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	const prefix = "broker listening on "
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	line, err := p.WaitLine(wctx, func(l string) bool { return strings.HasPrefix(l, prefix) })
	if err != nil {
		p.stop()
		return nil, "", fmt.Errorf("broker did not print its address: %w\n%s", err, p.Tail(20))
	}
	return p, strings.TrimSpace(strings.TrimPrefix(line, prefix)), nil
}

// cpuTimes takes the CPU times of a measurement and keeps the first error,
// for it to be checked once.
type cpuTimes struct{ err error }

// of is what read returns; 0 on an error.
func (c *cpuTimes) of(read func() (time.Duration, error)) time.Duration {
	d, err := read()
	if err != nil {
		c.err = cmp.Or(c.err, fmt.Errorf("CPU time: %w", err))
	}
	return d
}

// ownCPUTime is the CPU time this process has used, on the same clock as
// a child's.
func ownCPUTime() (time.Duration, error) { return process.CPUTime(os.Getpid()) }
