package logs

import (
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Sampler is LOG_SAMPLE: of each message at each level it keeps the first
// N lines in a second, then one in N, as zapcore's sampler does with N as
// both its first and its thereafter. It differs in one thing: a batch's
// per-record lines of one message ask it once for all of them (Batch),
// where zapcore's sampler hashes the message and updates a counter that
// every partition shares, once per line. At hundreds of thousands of
// records a second, nearly every line is dropped, and that was most of
// what a line cost.
type Sampler struct {
	zapcore.Core // where kept lines go
	n            uint64
	counts       *counts // shared with the cores With returns
}

// NewSampler keeps, of each message at each level, the first n lines in a
// second, then one in n, and writes them to core. n must be positive.
func NewSampler(core zapcore.Core, n int) *Sampler {
	return &Sampler{Core: core, n: uint64(n), counts: &counts{m: map[countKey]*count{}}}
}

// With adds fields to the lines written, which keep their counts.
func (s *Sampler) With(fields []zapcore.Field) zapcore.Core {
	return &Sampler{Core: s.Core.With(fields), n: s.n, counts: s.counts}
}

// Check keeps or drops one line.
func (s *Sampler) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if !s.Enabled(ent.Level) {
		return ce
	}
	if place := s.counts.take(ent.Level, ent.Message, ent.Time, 1); s.kept(place) != place {
		return ce
	}
	return s.Core.Check(ent, ce)
}

// kept is the first place, from place on, whose line is kept: the first n
// places of a message's lines in a second, then every n-th. Lines compare
// their place with it, and divide only once a line is kept.
func (s *Sampler) kept(place uint64) uint64 {
	if place <= s.n {
		return place
	}
	return place + (s.n-(place-s.n)%s.n)%s.n
}

// counts are the lines of each message in its current second.
type counts struct {
	mu sync.Mutex
	m  map[countKey]*count
}

type countKey struct {
	level zapcore.Level
	msg   string
}

type count struct {
	resetAt int64 // UnixNano at which the second ends
	n       uint64
}

// maxMessages bounds the messages counted apart; lines of any further
// message share one count per level. A stage's messages are constants, a
// few dozen.
const maxMessages = 4096

// take counts k lines of msg at lvl logged at t, and returns the place of
// the first among the message's lines of its second, from 1. A second
// begins with the first line after the previous one ended, as in zapcore.
func (c *counts) take(lvl zapcore.Level, msg string, t time.Time, k int) uint64 {
	at := t.UnixNano()
	key := countKey{lvl, msg}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.m[key]
	if n == nil {
		if len(c.m) >= maxMessages {
			key.msg = ""
		}
		if n = c.m[key]; n == nil {
			n = &count{}
			c.m[key] = n
		}
	}
	if at >= n.resetAt {
		n.resetAt, n.n = at+int64(time.Second), 0
	}
	first := n.n + 1
	n.n += uint64(k)
	return first
}

// Lines are the lines of one message that a batch logs, one per record,
// sampled together: where log writes through a Sampler, Batch counts them
// all at once, and each line then only compares its place; otherwise each
// line asks log, as log.Check would.
type Lines struct {
	log      *zap.Logger
	s        *Sampler // nil: ask log for every line
	ent      zapcore.Entry
	place    uint64 // of the next line
	keep     uint64 // the place of the next line kept, from place on
	reserved int    // lines counted and not yet asked for
}

// Batch returns the lines of msg at lvl that a batch handled at now logs
// with log, counting k of them (the batch's, one per record it logs it
// for). Lines asked for beyond k are counted one by one. Every line
// carries the time now, as with LoggerAt.
func Batch(log *zap.Logger, now time.Time, lvl zapcore.Level, msg string, k int) Lines {
	l := Lines{ent: zapcore.Entry{LoggerName: log.Name(), Time: now, Level: lvl, Message: msg}}
	s, ok := log.Core().(*Sampler)
	if !ok || !s.Enabled(lvl) {
		l.log = LoggerAt(log, now)
		return l
	}
	l.s = s
	if k > 0 {
		l.reserve(k)
	}
	return l
}

// reserve counts k more lines.
func (l *Lines) reserve(k int) {
	l.place, l.reserved = l.s.counts.take(l.ent.Level, l.ent.Message, l.ent.Time, k), k
	l.keep = l.s.kept(l.place)
}

// Next is the checked entry of the next line, to write its fields to; nil
// if the line is dropped.
func (l *Lines) Next() *zapcore.CheckedEntry {
	if l.s == nil {
		return l.log.Check(l.ent.Level, l.ent.Message)
	}
	if l.reserved == 0 {
		l.reserve(1)
	}
	place := l.place
	l.place++
	l.reserved--
	if place != l.keep {
		return nil
	}
	l.keep = l.s.kept(l.place)
	return l.s.Core.Check(l.ent, nil)
}
