package logs_test

import (
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/orderflow/orders/services/logs"
)

// line is what a test compares of a written line.
type line struct {
	level zapcore.Level
	msg   string
	at    time.Time
	seq   int64
}

func written(o *observer.ObservedLogs) []line {
	var ls []line
	for _, e := range o.AllUntimed() {
		ls = append(ls, line{e.Level, e.Message, e.Time, e.ContextMap()["seq"].(int64)})
	}
	return ls
}

// step is one line of a sequence: its message, level and time.
type step struct {
	level zapcore.Level
	msg   string
	at    time.Time
}

// steps are n lines of a few messages at two levels, at times that pass
// several seconds, some lines at the same instant.
func steps(rng *rand.Rand, n int) []step {
	at := time.Date(2026, 11, 30, 2, 0, 0, 0, time.UTC)
	msgs := []string{"order processed", "retry scheduled", "running average updated"}
	s := make([]step, n)
	for i := range s {
		if rng.IntN(20) == 0 {
			at = at.Add(time.Duration(rng.IntN(40)) * time.Millisecond)
		}
		lvl := zapcore.InfoLevel
		if rng.IntN(10) == 0 {
			lvl = zapcore.WarnLevel
		}
		s[i] = step{lvl, msgs[rng.IntN(len(msgs))], at}
	}
	return s
}

func TestSamplerKeepsWhatZapcoresSamplerKeeps(t *testing.T) {
	for _, n := range []int{2, 3, 100} {
		rng := rand.New(rand.NewPCG(uint64(n), 7))
		zapCore, zapLines := observer.New(zapcore.DebugLevel)
		ourCore, ourLines := observer.New(zapcore.DebugLevel)
		theirs := zapcore.NewSamplerWithOptions(zapCore, time.Second, n, n)
		ours := logs.NewSampler(ourCore, n)
		for i, s := range steps(rng, 20000) {
			ent := zapcore.Entry{Level: s.level, Message: s.msg, Time: s.at}
			for _, c := range []zapcore.Core{theirs, ours} {
				if ce := c.Check(ent, nil); ce != nil {
					ce.Write(zap.Int64("seq", int64(i)))
				}
			}
		}
		want, got := written(zapLines), written(ourLines)
		if len(want) == 0 || len(want) == 20000 {
			t.Fatalf("N=%d: zapcore kept %d of 20000 lines; the sequence does not test sampling", n, len(want))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("N=%d: kept %d lines, zapcore's sampler %d; first difference at %d", n, len(got), len(want), firstDiff(got, want))
		}
	}
}

func firstDiff(a, b []line) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestBatchKeepsWhatLinesOneByOneKeep logs the same lines in batches, one
// message per batch as a stage does, and one by one: the same are kept,
// also when a batch asks for more lines than it counted.
func TestBatchKeepsWhatLinesOneByOneKeep(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	oneCore, oneLines := observer.New(zapcore.InfoLevel)
	batchCore, batchLines := observer.New(zapcore.InfoLevel)
	one := zap.New(logs.NewSampler(oneCore, 10))
	batched := zap.New(logs.NewSampler(batchCore, 10))
	ss := steps(rng, 30000)
	for i := 0; i < len(ss); {
		// A batch: consecutive lines of one message and level at one time.
		j := i + 1
		for j < len(ss) && j-i < 1+rng.IntN(300) && ss[j].msg == ss[i].msg && ss[j].level == ss[i].level && ss[j].at.Equal(ss[i].at) {
			j++
		}
		s := ss[i]
		counted := j - i
		if rng.IntN(5) == 0 {
			counted = rng.IntN(j - i) // fewer than it logs
		}
		lines := logs.Batch(batched, s.at, s.level, s.msg, counted)
		at := logs.LoggerAt(one, s.at)
		for k := i; k < j; k++ {
			if ce := lines.Next(); ce != nil {
				ce.Write(zap.Int64("seq", int64(k)))
			}
			if ce := at.Check(s.level, s.msg); ce != nil {
				ce.Write(zap.Int64("seq", int64(k)))
			}
		}
		i = j
	}
	want, got := written(oneLines), written(batchLines)
	if len(want) == 0 || len(want) == len(ss) {
		t.Fatalf("one by one kept %d of %d lines; the sequence does not test sampling", len(want), len(ss))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("batches kept %d lines, one by one %d; first difference at %d", len(got), len(want), firstDiff(got, want))
	}
}

func TestBatchWithoutASamplerAsksTheLogger(t *testing.T) {
	core, observed := observer.New(zapcore.InfoLevel)
	log := zap.New(core)
	at := time.Date(2026, 11, 30, 2, 0, 0, 0, time.UTC)
	lines := logs.Batch(log, at, zapcore.InfoLevel, "order processed", 3)
	for range 5 {
		if ce := lines.Next(); ce != nil {
			ce.Write()
		}
	}
	debug := logs.Batch(log, at, zapcore.DebugLevel, "duplicate order ignored", 3)
	if ce := debug.Next(); ce != nil {
		t.Fatal("a debug line passed an info logger")
	}
	if n := observed.Len(); n != 5 {
		t.Fatalf("%d lines written, want all 5", n)
	}
}

func TestBatchAtADisabledLevelCountsNothing(t *testing.T) {
	core, observed := observer.New(zapcore.InfoLevel)
	log := zap.New(logs.NewSampler(core, 2))
	at := time.Date(2026, 11, 30, 2, 0, 0, 0, time.UTC)
	debug := logs.Batch(log, at, zapcore.DebugLevel, "m", 1000)
	if ce := debug.Next(); ce != nil {
		t.Fatal("a debug line passed an info logger")
	}
	log = logs.LoggerAt(log, at)
	for range 2 {
		if ce := log.Check(zapcore.DebugLevel, "m"); ce != nil {
			t.Fatal("a debug line passed an info logger")
		}
		log.Info("m")
	}
	if n := observed.Len(); n != 2 {
		t.Fatalf("%d of the first 2 info lines written, want both", n)
	}
}

// TestBatchesFromManyGoroutinesShareTheirCounts: partitions log at once;
// within one second the lines kept are exactly the first N and one in N
// after them, however the batches interleave.
func TestBatchesFromManyGoroutinesShareTheirCounts(t *testing.T) {
	core, observed := observer.New(zapcore.InfoLevel)
	log := zap.New(logs.NewSampler(core, 10)).With(zap.String("stage", "main"))
	at := time.Date(2026, 11, 30, 2, 0, 0, 0, time.UTC)
	const goroutines, batches, size = 6, 50, 97
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range batches {
				lines := logs.Batch(log, at, zapcore.InfoLevel, "order processed", size)
				for range size {
					if ce := lines.Next(); ce != nil {
						ce.Write()
					}
				}
			}
		})
	}
	wg.Wait()
	total := goroutines * batches * size
	if want := 10 + (total-10)/10; observed.Len() != want {
		t.Fatalf("%d of %d lines kept, want %d", observed.Len(), total, want)
	}
	if f := observed.All()[0].ContextMap()["stage"]; f != "main" {
		t.Fatalf("a kept line lost the logger's fields: stage=%v", f)
	}
}

// BenchmarkLines is the cost of a per-record line at benchmark rates, where
// nearly every one is dropped: asked of zapcore's sampler line by line, or
// of a Sampler in batches of 500.
func BenchmarkLines(b *testing.B) {
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zapcore.InfoLevel)
	at := time.Now()
	b.Run("zapcore-sampler", func(b *testing.B) {
		log := logs.LoggerAt(zap.New(zapcore.NewSamplerWithOptions(core, time.Second, 100, 100)), at)
		for range b.N {
			if ce := log.Check(zapcore.InfoLevel, "order processed"); ce != nil {
				ce.Write(zap.String("orderId", "1001"))
			}
		}
	})
	b.Run("batch", func(b *testing.B) {
		log := zap.New(logs.NewSampler(core, 100))
		for i := 0; i < b.N; i += 500 {
			lines := logs.Batch(log, at, zapcore.InfoLevel, "order processed", min(500, b.N-i))
			for range min(500, b.N-i) {
				if ce := lines.Next(); ce != nil {
					ce.Write(zap.String("orderId", "1001"))
				}
			}
		}
	})
}
