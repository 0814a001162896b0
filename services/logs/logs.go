// Package logs holds what keeps a stage's logging cheap at high rates: the
// LOG_SAMPLE sampler, which a batch's per-record lines pass through at
// once, and loggers whose clock is the batch's.
package logs

import (
	"time"

	"go.uber.org/zap"
)

// LoggerAt is log with its clock stopped at now, for the lines of a batch
// handled at now. They carry the time its decisions were made at, and a
// line per record costs no clock reading, which is most of what a line
// the sampler drops (LOG_SAMPLE) would cost.
func LoggerAt(log *zap.Logger, now time.Time) *zap.Logger {
	return log.WithOptions(zap.WithClock(stoppedClock(now)))
}

// stoppedClock is a zapcore.Clock that always reads the same time.
type stoppedClock time.Time

func (c stoppedClock) Now() time.Time { return time.Time(c) }

func (c stoppedClock) NewTicker(d time.Duration) *time.Ticker { return time.NewTicker(d) }
