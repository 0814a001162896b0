package process_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/orderflow/orders/services/process"
)

// childEnv switches the test binary into one of the children below.
const childEnv = "PROCESS_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(child(os.Args[1:]))
	}
	goleak.VerifyTestMain(m)
}

// child runs the test binary as the child args[0] names, with args[1:].
func child(args []string) int {
	arg := func(i int) int {
		n, err := strconv.Atoi(args[i])
		if err != nil {
			panic(err)
		}
		return n
	}
	ready := func() { fmt.Println("ready") }
	terms := func() chan os.Signal {
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		return c
	}
	switch args[0] {
	case "print": // N lines, odd ones to stderr, then a line without newline
		for i := 1; i <= arg(1); i++ {
			w := os.Stdout
			if i%2 == 1 {
				w = os.Stderr
			}
			fmt.Fprintf(w, "line %d\n", i)
		}
		fmt.Print("end")
	case "env":
		fmt.Println(os.Getenv(args[1]))
	case "exit":
		return arg(1)
	case "long": // a line of N bytes, then another
		fmt.Println(strings.Repeat("x", arg(1)))
		fmt.Println("after")
	case "term-exit": // exits with status N on SIGTERM
		c := terms()
		ready()
		<-c
		return arg(1)
	case "ignore-term":
		c := terms()
		ready()
		for range c {
			fmt.Println("SIGTERM ignored")
		}
	case "spin": // busy until killed
		ready()
		for {
		}
	case "spin-for": // busy for N ms of CPU, then exits
		for end := time.Now().Add(time.Duration(arg(1)) * time.Millisecond); time.Now().Before(end); {
		}
	case "alloc": // touches N MiB, then waits for SIGTERM
		b := make([]byte, arg(1)<<20)
		for i := range b {
			b[i] = byte(i)
		}
		c := terms()
		ready()
		<-c
		runtime.KeepAlive(b)
	default:
		fmt.Fprintln(os.Stderr, "unknown child", args[0])
		return 2
	}
	return 0
}

// start runs the test binary as the child named by args[0].
func start(t *testing.T, cfg process.Config, args ...string) *process.Process {
	t.Helper()
	cfg.Path, cfg.Args = os.Args[0], args
	// A child built with -race that exits 0 would wait 1s for its race
	// reports (atexit_sleep_ms).
	cfg.Env = append(cfg.Env, childEnv+"=1", "GORACE=atexit_sleep_ms=0")
	p, err := process.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Kill() })
	return p
}

func wait(t *testing.T, p *process.Process) process.State {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := p.Wait(ctx)
	if err != nil {
		t.Fatalf("%s has not exited: %v\n%s", p.Name(), err, p.Tail(20))
	}
	return s
}

func waitReady(t *testing.T, p *process.Process) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := p.WaitLine(ctx, func(l string) bool { return l == "ready" }); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond until it holds, failing t after 30s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s after 30s", what)
		}
		<-tick.C
	}
}

// runState is a process's state letter in /proc: R running, S sleeping,
// T stopped, ...
func runState(t *testing.T, pid int) byte {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Fields(b[bytes.LastIndexByte(b, ')')+1:])[0][0]
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

func TestOutputTailAndLines(t *testing.T) {
	var out lockedBuffer
	var lines []string
	p := start(t, process.Config{Output: &out, TailLines: 50, OnLine: func(l string) { lines = append(lines, l) }}, "print", "300")
	s := wait(t, p)
	if s.Err != nil || s.ExitCode != 0 || s.Signal != 0 || s.String() != "exit status 0" {
		t.Fatalf("state %+v (%v), want exit status 0", s, s)
	}
	var want []string
	for i := 1; i <= 300; i++ {
		want = append(want, fmt.Sprintf("line %d", i))
	}
	want = append(want, "end")
	// stdout and stderr share one pipe: the lines come in the order written.
	if got := out.String(); got != strings.Join(want, "\n") {
		t.Errorf("output is not every line in order:\n%.200s...", got)
	}
	// lines is written by the goroutine that read the output, which ended
	// before Wait returned.
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("OnLine got %d lines, want %d", len(lines), len(want))
	}
	if got, w := p.Tail(3), strings.Join(want[len(want)-3:], "\n"); got != w {
		t.Errorf("Tail(3) = %q, want %q", got, w)
	}
	if got, w := p.Tail(1000), strings.Join(want[len(want)-50:], "\n"); got != w {
		t.Errorf("Tail(1000) = %q, want the last 50 lines", got)
	}
}

func TestEnvIsAddedAndOverrides(t *testing.T) {
	t.Setenv("PROCESS_TEST_VALUE", "inherited")
	p := start(t, process.Config{Env: []string{"PROCESS_TEST_VALUE=given"}}, "env", "PROCESS_TEST_VALUE")
	wait(t, p)
	if got := p.Tail(1); got != "given" {
		t.Errorf("child saw %q, want given", got)
	}
	p = start(t, process.Config{}, "env", "PROCESS_TEST_VALUE")
	wait(t, p)
	if got := p.Tail(1); got != "inherited" {
		t.Errorf("child saw %q, want inherited", got)
	}
}

func TestExitStatus(t *testing.T) {
	p := start(t, process.Config{Name: "exit-7"}, "exit", "7")
	s := wait(t, p)
	var ee *exec.ExitError
	if s.ExitCode != 7 || s.Signal != 0 || !errors.As(s.Err, &ee) || s.String() != "exit status 7" {
		t.Errorf("state %+v (%v), want exit status 7 and an *exec.ExitError", s, s)
	}
	if got, ok := p.State(); !ok || got.ExitCode != 7 || !p.Exited() {
		t.Errorf("State() = %+v, %v after Wait", got, ok)
	}
	if p.Name() != "exit-7" {
		t.Errorf("Name() = %q", p.Name())
	}
	if err := p.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("Signal after exit: %v, want os.ErrProcessDone", err)
	}
}

func TestStopEndsAChildThatHandlesSIGTERM(t *testing.T) {
	p := start(t, process.Config{}, "term-exit", "3")
	waitReady(t, p)
	if _, ok := p.State(); ok || p.Exited() {
		t.Fatal("State reports a running child as ended")
	}
	if s := p.Stop(time.Minute); s.ExitCode != 3 || s.Signal != 0 {
		t.Errorf("state %+v (%v), want exit status 3", s, s)
	}
}

func TestStopKillsAChildThatIgnoresSIGTERM(t *testing.T) {
	p := start(t, process.Config{}, "ignore-term")
	waitReady(t, p)
	if s := p.Stop(200 * time.Millisecond); s.Signal != syscall.SIGKILL || s.ExitCode != -1 || s.String() != "signal: killed" {
		t.Errorf("state %+v (%v), want signal: killed", s, s)
	}
}

func TestStopContinuesAStoppedChild(t *testing.T) {
	p := start(t, process.Config{}, "term-exit", "4")
	waitReady(t, p)
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	eventually(t, "stopped", func() bool { return runState(t, p.Pid()) == 'T' })
	if s := p.Stop(time.Minute); s.ExitCode != 4 {
		t.Errorf("state %+v (%v), want exit status 4: SIGTERM handled once continued", s, s)
	}
}

func TestSignalStopsAndContinues(t *testing.T) {
	p := start(t, process.Config{}, "spin")
	waitReady(t, p)
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	eventually(t, "stopped", func() bool { return runState(t, p.Pid()) == 'T' })
	if err := p.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	eventually(t, "continued", func() bool { return runState(t, p.Pid()) != 'T' })
	if s := p.Kill(); s.Signal != syscall.SIGKILL {
		t.Errorf("state %+v after Kill", s)
	}
}

func TestCPUTime(t *testing.T) {
	p := start(t, process.Config{}, "spin")
	waitReady(t, p)
	var running time.Duration
	eventually(t, "using CPU", func() bool {
		d, err := p.CPUTime()
		if err != nil {
			t.Fatal(err)
		}
		running = d
		return d > 0
	})
	if s := p.Kill(); s.CPU() < running {
		t.Errorf("CPU at exit %v, less than %v while running", s.CPU(), running)
	}
	if d, err := p.CPUTime(); err != nil || d <= 0 {
		t.Errorf("CPUTime after exit: %v, %v", d, err)
	}

	p = start(t, process.Config{}, "spin-for", "300")
	if s := wait(t, p); s.Err != nil || s.CPU() < 100*time.Millisecond || s.User <= 0 {
		t.Errorf("a child busy for 300ms: %+v, CPU %v", s, s.CPU())
	}
	if d, err := process.CPUTime(os.Getpid()); err != nil || d <= 0 {
		t.Errorf("CPUTime of this process: %v, %v", d, err)
	}
}

func TestPeakRSS(t *testing.T) {
	const mib = 64
	p := start(t, process.Config{}, "alloc", strconv.Itoa(mib))
	waitReady(t, p)
	rss, err := p.PeakRSS()
	if err != nil || rss < mib<<20 {
		t.Errorf("peak RSS while running: %d, %v; want at least %d MiB", rss, err, mib)
	}
	s := p.Stop(time.Minute)
	if s.Err != nil || s.PeakRSS < mib<<20 {
		t.Errorf("peak RSS at exit: %d (%+v); want at least %d MiB", s.PeakRSS, s, mib)
	}
	if got, err := p.PeakRSS(); err != nil || got != s.PeakRSS {
		t.Errorf("PeakRSS after exit: %d, %v; want the State's %d", got, err, s.PeakRSS)
	}
}

func TestWaitLine(t *testing.T) {
	p := start(t, process.Config{}, "print", "5")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if l, err := p.WaitLine(ctx, func(l string) bool { return strings.HasPrefix(l, "line 4") }); err != nil || l != "line 4" {
		t.Errorf("WaitLine: %q, %v", l, err)
	}
	wait(t, p)
	// From the tail, after the child has ended; the last line had no newline.
	if l, err := p.WaitLine(ctx, func(l string) bool { return l == "end" }); err != nil || l != "end" {
		t.Errorf("WaitLine after exit: %q, %v", l, err)
	}
	if _, err := p.WaitLine(ctx, func(l string) bool { return l == "never" }); !errors.Is(err, process.ErrExited) {
		t.Errorf("WaitLine for a line never written: %v, want ErrExited", err)
	}

	p = start(t, process.Config{}, "spin")
	waitReady(t, p)
	done, stop := context.WithCancel(t.Context())
	stop()
	if _, err := p.WaitLine(done, func(l string) bool { return l == "never" }); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitLine with an ended context: %v", err)
	}
}

func TestLongLinesAreCut(t *testing.T) {
	var out lockedBuffer
	p := start(t, process.Config{Output: &out}, "long", strconv.Itoa(3*process.MaxLine))
	wait(t, p)
	lines := strings.Split(p.Tail(2), "\n")
	if len(lines) != 2 || lines[0] != strings.Repeat("x", process.MaxLine) || lines[1] != "after" {
		t.Errorf("tail of %d lines, the first %d bytes long", len(lines), len(lines[0]))
	}
	if got := len(out.String()); got != 3*process.MaxLine+len("\nafter\n") {
		t.Errorf("Output got %d bytes, want the whole line", got)
	}
}

type failingWriter struct{ n int }

func (w *failingWriter) Write(p []byte) (int, error) {
	w.n++
	return 0, errors.New("disk full")
}

func TestOutputErrorIsReported(t *testing.T) {
	w := &failingWriter{}
	p := start(t, process.Config{Output: w}, "print", "1000")
	s := wait(t, p)
	if s.Err == nil || !strings.Contains(s.Err.Error(), "disk full") || s.ExitCode != 0 {
		t.Errorf("state %+v, want exit status 0 and the output's error", s)
	}
	if w.n != 1 {
		t.Errorf("%d writes to a failed Output, want 1", w.n)
	}
	if p.Tail(1) != "end" {
		t.Errorf("the tail stopped with Output: %q", p.Tail(1))
	}
}

func TestStartFails(t *testing.T) {
	if _, err := process.Start(process.Config{}); err == nil {
		t.Error("Start without a path succeeded")
	}
	if _, err := process.Start(process.Config{Path: "/nonexistent/orders"}); err == nil || !strings.Contains(err.Error(), "/nonexistent/orders") {
		t.Errorf("Start of a missing program: %v", err)
	}
}
