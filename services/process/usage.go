package process

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// State is how a child ended and what it used.
type State struct {
	// Err is nil if the child exited with status 0 and its output was
	// copied whole; an *exec.ExitError if it exited otherwise; joined with
	// Config.Output's error, if any.
	Err error
	// ExitCode is the child's exit status, or -1 if a signal ended it.
	ExitCode int
	// Signal is the signal that ended the child; 0 if it exited.
	Signal syscall.Signal
	// ExitedAt is when the child was seen to have exited.
	ExitedAt time.Time
	// User and System are the CPU time the child used, in user and kernel
	// mode.
	User, System time.Duration
	// PeakRSS is the child's peak resident set size in bytes.
	PeakRSS int64
}

// CPU is the user and system CPU time the child used.
func (s State) CPU() time.Duration { return s.User + s.System }

// String is how the child ended: "exit status 1", "signal: killed".
func (s State) String() string {
	if s.Signal != 0 {
		return "signal: " + s.Signal.String()
	}
	return "exit status " + strconv.Itoa(s.ExitCode)
}

func newState(ps *os.ProcessState, err error) State {
	s := State{Err: err, ExitCode: -1, ExitedAt: time.Now()}
	if ps == nil {
		return s
	}
	s.ExitCode, s.User, s.System = ps.ExitCode(), ps.UserTime(), ps.SystemTime()
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		s.Signal = ws.Signal()
	}
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		s.PeakRSS = int64(ru.Maxrss)
		if runtime.GOOS != "darwin" { // Linux and the BSDs give KiB, macOS bytes
			s.PeakRSS <<= 10
		}
	}
	return s
}

// CPUTime is the user and system CPU time the child has used so far: from
// /proc while it runs, then from its State.
func (p *Process) CPUTime() (time.Duration, error) {
	if s, ok := p.State(); ok {
		return s.CPU(), nil
	}
	d, err := CPUTime(p.Pid())
	if s, ok := p.State(); ok && err != nil { // it exited meanwhile
		return s.CPU(), nil
	}
	return d, err
}

// PeakRSS is the child's peak resident set size in bytes so far: from
// /proc while it runs, then from its State.
func (p *Process) PeakRSS() (int64, error) {
	if s, ok := p.State(); ok {
		return s.PeakRSS, nil
	}
	n, err := PeakRSS(p.Pid())
	if s, ok := p.State(); ok && err != nil {
		return s.PeakRSS, nil
	}
	return n, err
}

// CPUTime is the user and system CPU time process pid, any process, has
// used so far, from /proc/PID/stat, in steps of 10ms.
func CPUTime(pid int) (time.Duration, error) {
	path := "/proc/" + strconv.Itoa(pid) + "/stat"
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	// The command name, in brackets, may hold spaces: count fields after it.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("%s: %d fields after the command", path, len(f))
	}
	utime, err := strconv.ParseInt(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: utime: %w", path, err)
	}
	stime, err := strconv.ParseInt(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: stime: %w", path, err)
	}
	return time.Duration(utime+stime) * time.Second / 100, nil // USER_HZ is 100 on Linux
}

// PeakRSS is the peak resident set size in bytes of process pid, any
// process, so far: VmHWM in /proc/PID/status.
func PeakRSS(pid int) (int64, error) {
	path := "/proc/" + strconv.Itoa(pid) + "/status"
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmHWM:" && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: VmHWM: %w", path, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("%s: no VmHWM", path)
}
