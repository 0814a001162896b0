package stage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/orderflow/orders/services/kafka"
)

// Config is the consumer side of a stage.
type Config struct {
	Client kafka.Client
	// Group is the consumer group. Required.
	Group string
	// Topic is the input topic. Required.
	Topic string
	Options
	// Observer is told what the loop does. Optional.
	Observer Observer
}

// DefaultMaxBatch is the most records a stage handles, writes and commits
// together unless told otherwise (MAX_BATCH).
const DefaultMaxBatch = 500

// Options tune every loop of a process.
type Options struct {
	// MaxBatch is the most records handled, written and committed together.
	// Optional, default DefaultMaxBatch.
	MaxBatch int
	// SessionTimeout after which the group gives a silent member's
	// partitions to others. Optional, default 10s.
	SessionTimeout time.Duration
	// Writer tunes the output writer.
	Writer kafka.WriterConfig
	// StopGrace is how long a stopping loop may take to write and commit the
	// batch in hand, so a stop does not make the next owner repeat it.
	// Optional, default 5s.
	StopGrace time.Duration
	// Now is the clock for due times. Optional, default time.Now.
	Now func() time.Time
}

func (c *Options) setDefaults() {
	if c.MaxBatch <= 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = 10 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.StopGrace <= 0 {
		c.StopGrace = 5 * time.Second
	}
	if c.Writer.BatchSize <= 0 {
		c.Writer.BatchSize = c.MaxBatch
	}

}

// Errors of Options.Validate, one per setting out of its range.
var (
	ErrSessionTimeout = errors.New("the session timeout must be at least 1s")
	ErrMaxBatch       = errors.New("the batch must hold at least 1 record")
)

// Validate reports a setting out of its range, as ErrSessionTimeout or
// ErrMaxBatch; zero values are out of range too, so it is for settings a
// user gave (NewLoop gives defaults first).
func (c Options) Validate() error {
	if c.SessionTimeout < time.Second {
		return fmt.Errorf("%w: %v", ErrSessionTimeout, c.SessionTimeout)
	}
	if c.MaxBatch < 1 {
		return fmt.Errorf("%w: %d", ErrMaxBatch, c.MaxBatch)
	}
	return nil
}

func (c Config) validate() error {
	if err := c.Client.Validate(); err != nil {
		return err
	}
	if err := c.Options.Validate(); err != nil {
		return err
	}
	if c.Group == "" || c.Topic == "" {
		return errors.New("stage: group and topic are required")
	}
	return nil
}

// Loop consumes one topic as one member of a consumer group.
type Loop struct {
	cfg     Config
	stage   Stage
	log     *zap.Logger
	writer  *kafka.Writer
	fetcher *kafka.Fetcher
}

// NewLoop checks cfg and returns a loop that runs stage.
func NewLoop(cfg Config, stage Stage, log *zap.Logger) (*Loop, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Observer == nil {
		cfg.Observer = noObserver{}
	}
	return &Loop{
		cfg:     cfg,
		stage:   stage,
		log:     log,
		writer:  cfg.Client.NewWriter(cfg.Writer, log),
		fetcher: cfg.Client.NewFetcher(),
	}, nil
}

// Run consumes until ctx is done. It returns nil on cancellation and an
// error only for a failure that restarting the loop would not fix: the
// group's (kafka.Group.Next) or a partition's Handle. When ctx ends, the
// batch in hand is still written and committed, for at most
// Config.StopGrace.
func (l *Loop) Run(ctx context.Context) error {
	defer l.writer.Close()
	defer l.fetcher.Close()
	group, err := l.cfg.Client.JoinGroup(kafka.GroupConfig{Group: l.cfg.Group, Topic: l.cfg.Topic, SessionTimeout: l.cfg.SessionTimeout}, l.log)
	if err != nil {
		return err
	}
	defer group.Close()

	// A partition's fatal failure ends the wait for the next generation.
	nctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	for joined := false; ; joined = true {
		gen, err := group.Next(nctx)
		if err != nil {
			if cause := context.Cause(nctx); ctx.Err() == nil && nctx.Err() != nil {
				return cause
			}
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if !joined {
			l.cfg.Observer.Joined()
		}
		var parts []int
		for _, c := range gen.Partitions {
			a := Assignment{Topic: l.cfg.Topic, Partition: c.Partition, Committed: c.Committed, Generation: gen.ID}
			parts = append(parts, a.Partition)
			gen.Start(func(gctx context.Context) {
				pctx, cancel := context.WithCancel(ctx)
				defer cancel()
				defer context.AfterFunc(gctx, cancel)()
				wctx, wcancel := l.writeContext(ctx, pctx)
				defer wcancel()
				if err := l.runPartition(pctx, wctx, gen, a); err != nil {
					fail(err)
				}
			})
		}
		l.log.Info("assigned partitions", zap.String("group", l.cfg.Group), zap.String("topic", l.cfg.Topic),
			zap.Ints("partitions", parts), zap.Int32("generation", gen.ID))
	}
}

// writeContext is the context the writes and commits of one partition's
// batches use: it ends a grace period after part ends, so that the batch in
// hand is still written and committed when the process stops (StopGrace)
// or the generation ends. In the second case the grace is at most half the
// rebalance timeout: kafka-go joins the next generation only once every
// partition of this one has returned, and a member that joins late is
// dropped from the group, so a write the brokers keep refusing must not
// hold the member past it. The next owner of the partition then handles
// the batch again.
func (l *Loop) writeContext(process, part context.Context) (context.Context, context.CancelFunc) {
	wctx, cancel := context.WithCancel(context.WithoutCancel(part))
	stop := context.AfterFunc(part, func() {
		grace := min(l.cfg.StopGrace, l.cfg.SessionTimeout/2)
		if process.Err() != nil {
			grace = l.cfg.StopGrace
		}
		time.AfterFunc(grace, cancel)
	})
	return wctx, func() { stop(); cancel() }
}
