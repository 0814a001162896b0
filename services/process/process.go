// Package process starts child processes and supervises them: bench, chaos
// and the integration tests run the orders binary through it. A Process
// keeps a bounded tail of what its child writes, signals it, stops it with
// SIGTERM and then SIGKILL, and reports how it ended and what it cost.
//
// The child's resources while it runs are read from /proc, so they need
// Linux; how it ended, its CPU time and its peak RSS at exit come from
// wait4's rusage on any Unix.
package process

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Config of a child process.
type Config struct {
	// Path of the program. Required.
	Path string
	// Args after the program's name. Optional.
	Args []string
	// Env is added to this process's environment; an entry overrides an
	// inherited one of the same name. Optional.
	Env []string
	// Name of the process in errors. Optional, default Path and Args
	// joined by spaces.
	Name string
	// Output receives everything the child writes to stdout and stderr.
	// Both go through one pipe, so they arrive in the order written, from
	// one goroutine. Optional. After Output's first error nothing more is
	// written to it, and State.Err reports the error; the tail and OnLine
	// go on.
	Output io.Writer
	// OnLine is called with each line of output, without its newline and
	// cut to MaxLine bytes, in order, from the goroutine that reads the
	// output: while it runs, the child's writes may block. Optional.
	OnLine func(line string)
	// TailLines is how many of the last lines of output Tail and WaitLine
	// keep. Optional, default 100.
	TailLines int
}

// MaxLine is the most of a line that OnLine, Tail and WaitLine see; the
// rest of a longer line reaches only Config.Output.
const MaxLine = 64 << 10

// pipeGrace is how long Wait goes on reading output once the child has
// exited. Only a grandchild that inherited the pipe keeps it open longer,
// and what it writes is not the child's.
const pipeGrace = time.Second

// ErrExited is the error of WaitLine when the process ends first.
var ErrExited = errors.New("process exited")

// Process is a running child process, or one that has ended. Its methods
// are safe for concurrent use.
//
// A goroutine waits for the child from Start until it exits; Wait, Stop
// and Kill are how the owner of a Process waits for that goroutine too.
type Process struct {
	name      string
	cmd       *exec.Cmd
	onLine    func(string)
	tailLines int
	done      chan struct{}
	state     State // written before done is closed

	// Owned by the goroutine that copies the output; read by wait after
	// cmd.Wait, which waits for that goroutine.
	out     io.Writer
	outErr  error
	partial []byte

	mu      sync.Mutex
	tail    []string // the last tailLines complete lines
	waiters []*waiter
}

type waiter struct {
	match func(string) bool
	found chan string // buffered: the line that matched
}

// Start starts cfg's program.
func Start(cfg Config) (*Process, error) {
	if cfg.Path == "" {
		return nil, errors.New("start process: no path")
	}
	if cfg.Name == "" {
		cfg.Name = strings.Join(append([]string{cfg.Path}, cfg.Args...), " ")
	}
	if cfg.TailLines <= 0 {
		cfg.TailLines = 100
	}
	p := &Process{name: cfg.Name, onLine: cfg.OnLine, tailLines: cfg.TailLines, out: cfg.Output, done: make(chan struct{})}
	p.cmd = exec.Command(cfg.Path, cfg.Args...)
	p.cmd.Env = append(os.Environ(), cfg.Env...)
	// The same writer for both: exec then gives the child one pipe for
	// stdout and stderr, which keeps their order.
	s := &sink{p}
	p.cmd.Stdout, p.cmd.Stderr = s, s
	p.cmd.WaitDelay = pipeGrace
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", p.name, err)
	}
	go p.wait()
	return p, nil
}

func (p *Process) wait() {
	err := p.cmd.Wait()
	// exec has copied the last of the output: a line without its newline
	// is complete now.
	if len(p.partial) > 0 {
		p.endLine()
	}
	if p.outErr != nil {
		err = errors.Join(err, fmt.Errorf("output of %s: %w", p.name, p.outErr))
	}
	p.state = newState(p.cmd.ProcessState, err)
	close(p.done)
}

// Name is Config.Name.
func (p *Process) Name() string { return p.name }

// Pid is the child's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the child has exited and its output has been read.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether Done is closed.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// State is how the child ended, and false while it runs.
func (p *Process) State() (State, bool) {
	select {
	case <-p.done:
		return p.state, true
	default:
		return State{}, false
	}
}

// Wait waits until the child has exited or ctx ends; its error is ctx's.
func (p *Process) Wait(ctx context.Context) (State, error) {
	select {
	case <-p.done:
		return p.state, nil
	case <-ctx.Done():
		return State{}, ctx.Err()
	}
}

// Signal sends sig to the child (not to its own children). Once the child
// has exited it returns os.ErrProcessDone.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Kill sends SIGKILL and waits for the child to exit.
func (p *Process) Kill() State {
	_ = p.cmd.Process.Kill()
	<-p.done
	return p.state
}

// Stop sends SIGTERM, and SIGCONT so that a stopped child acts on it,
// waits up to grace for the child to exit, then kills it and waits.
func (p *Process) Stop(grace time.Duration) State {
	if p.Signal(syscall.SIGTERM) == nil {
		_ = p.Signal(syscall.SIGCONT)
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-p.done:
			return p.state
		case <-t.C:
		}
	}
	return p.Kill()
}

// Tail is the last n complete lines of output, at most Config.TailLines,
// joined by newlines. Once the child has exited, a last line without a
// newline counts as complete.
func (p *Process) Tail(n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail[max(0, len(p.tail)-n):], "\n")
}

// WaitLine returns the first line of output, of those in the tail and
// those written later, that match accepts. It fails with ErrExited if the
// child exits first, or with ctx's error. match is called with the
// Process's lock held, from the caller's goroutine or the one reading the
// output: it must be quick and must not call the Process's methods.
func (p *Process) WaitLine(ctx context.Context, match func(line string) bool) (string, error) {
	p.mu.Lock()
	for _, line := range p.tail {
		if match(line) {
			p.mu.Unlock()
			return line, nil
		}
	}
	w := &waiter{match: match, found: make(chan string, 1)}
	p.waiters = append(p.waiters, w)
	p.mu.Unlock()
	defer p.unwait(w)
	select {
	case line := <-w.found:
		return line, nil
	case <-p.done:
		// The last line is handled before done is closed.
		select {
		case line := <-w.found:
			return line, nil
		default:
			return "", fmt.Errorf("%s: %w (%v) before the line waited for", p.name, ErrExited, p.state)
		}
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (p *Process) unwait(w *waiter) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, o := range p.waiters {
		if o == w {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			return
		}
	}
}

// sink is the child's stdout and stderr, written by exec's copying
// goroutine.
type sink struct{ p *Process }

func (s *sink) Write(b []byte) (int, error) {
	p := s.p
	if p.out != nil {
		if _, err := p.out.Write(b); err != nil {
			p.out, p.outErr = nil, err
		}
	}
	for rest := b; len(rest) > 0; {
		line, after, ended := bytes.Cut(rest, []byte{'\n'})
		if room := MaxLine - len(p.partial); room > 0 {
			p.partial = append(p.partial, line[:min(len(line), room)]...)
		}
		if !ended {
			break
		}
		p.endLine()
		rest = after
	}
	return len(b), nil
}

// endLine ends the line in p.partial: into the tail, to the waiters it
// matches and to OnLine.
func (p *Process) endLine() {
	line := string(p.partial)
	p.partial = p.partial[:0]
	p.mu.Lock()
	if p.tail = append(p.tail, line); len(p.tail) > p.tailLines {
		p.tail = p.tail[1:]
	}
	kept := p.waiters[:0]
	for _, w := range p.waiters {
		if w.match(line) {
			w.found <- line
		} else {
			kept = append(kept, w)
		}
	}
	clear(p.waiters[len(kept):])
	p.waiters = kept
	p.mu.Unlock()
	if p.onLine != nil {
		p.onLine(line)
	}
}
