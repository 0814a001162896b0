// Package chaos is a fault-injection harness for the pipeline: it runs the
// real binary (a broker of several nodes, every stage as separate
// processes, the producer), kills, stops, scales and cuts off the broker
// and injects faults at the protocol level (elections, coordinator moves,
// refused, failed and timed-out produce requests, throttled fetches,
// truncated partitions) while orders flow, then reads the topics back and
// checks that every order has exactly one outcome, that the duplicates
// stay within the bound of what caused them, that the running average is
// exact and that no retry ran before it was due. It measures how long
// partitions stall under each fault and how long the groups take to catch
// up once the faults stop.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/admin"
	"github.com/orderflow/orders/services/aggregator"
	"github.com/orderflow/orders/services/broker"
	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/outcome"
	"github.com/orderflow/orders/services/producer"
	"github.com/orderflow/orders/services/stage"
	"github.com/orderflow/orders/topology"

	"github.com/orderflow/orders/services/wait"
)

// Mode is what a run does to the pipeline.
type Mode string

const (
	// ModeFull kills, stops and scales processes, kills the broker, and
	// injects protocol faults while the orders flow.
	ModeFull Mode = "full"
	// ModeCluster injects only protocol faults, one every MinFaultGap to
	// MaxFaultGap for FaultTime, while orders flow at a steady rate, and
	// holds the groups to catching up within MaxCatchUp afterwards.
	ModeCluster Mode = "cluster"
)

// Config of one chaos run.
type Config struct {
	// Binary is the orders binary. Required.
	Binary string
	// Mode is what the run does. Optional, default ModeFull.
	Mode Mode
	// Nodes of the broker. Optional, default 3.
	Nodes int
	// Orders to produce. Optional, default 20000.
	Orders int
	// Rate of the producer in orders per second. Optional, default 1000.
	Rate float64
	// Procs is the number of processes of main and of each retry stage,
	// and in ModeCluster of the aggregator too (ModeFull scales it from 1).
	// Optional, default 2.
	Procs int
	// Partitions of every topic. Optional, default 4.
	Partitions int
	// Delays of the retry ladder. Optional, default 200ms,400ms,600ms.
	Delays []time.Duration
	// SessionTimeout of every group. Optional, default 6s, the least a
	// Kafka cluster takes by default.
	SessionTimeout time.Duration
	// GroupMinSessionTimeout is the broker's least session timeout.
	// Optional, default the broker's, Kafka's 6s; lower it only to run a
	// SessionTimeout a real cluster would refuse.
	GroupMinSessionTimeout time.Duration
	// MaxBatch of every stage. Optional, default stage.DefaultMaxBatch.
	MaxBatch int
	// MinKills is the least number of SIGKILLs in ModeFull, one every
	// 1-3s. Optional, default 20.
	MinKills int
	// BrokerOutage is how long the broker stays down in ModeFull.
	// Optional, default 3s.
	BrokerOutage time.Duration
	// Kinds of protocol faults to inject. Optional, default every kind
	// (broker.FaultKinds); empty after defaults only if set to a non-nil
	// empty slice, which injects none.
	Kinds []broker.FaultKind
	// MinFaultGap and MaxFaultGap bound the time from one protocol fault
	// to the next. Optional, default 1s and 2s.
	MinFaultGap, MaxFaultGap time.Duration
	// FaultTime is how long ModeCluster injects faults, from the time every
	// group works. Optional, default 40s.
	FaultTime time.Duration
	// FaultDuration is how long a node refuses produce requests or
	// throttles fetches. Optional, default 1s.
	FaultDuration time.Duration
	// Throttle is the throttle time of a throttled node's fetch answers.
	// Optional, default 300ms.
	Throttle time.Duration
	// MaxCatchUp bounds, in ModeCluster, the time from the end of the
	// faults (or of the production, if later) until no group lags.
	// Optional, default 15s.
	MaxCatchUp time.Duration
	// MaxElectionResume bounds the time a partition with lag takes to
	// make progress after an election. Optional, default 1s.
	MaxElectionResume time.Duration
	// Seed of the producer and of the fault schedule. Optional, default 1.
	Seed uint64
	// WorkDir keeps the broker's data and every process's log. Optional,
	// default a new temporary directory.
	WorkDir string
	// Timeout of the whole run. Optional, default 10m.
	Timeout time.Duration
}

func (c *Config) setDefaults() {
	if c.Mode == "" {
		c.Mode = ModeFull
	}
	if c.Nodes == 0 {
		c.Nodes = 3
	}
	if c.Orders == 0 {
		c.Orders = 20000
	}
	if c.Rate == 0 {
		c.Rate = 1000
	}
	if c.Procs == 0 {
		c.Procs = 2
	}
	if c.Partitions == 0 {
		c.Partitions = 4
	}
	if c.Delays == nil {
		c.Delays = []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 600 * time.Millisecond}
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = broker.DefaultGroupMinSessionTimeout
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = stage.DefaultMaxBatch
	}
	if c.MinKills == 0 {
		c.MinKills = 20
	}
	if c.BrokerOutage == 0 {
		c.BrokerOutage = 3 * time.Second
	}
	if c.Kinds == nil {
		c.Kinds = broker.FaultKinds
	}
	if c.MinFaultGap == 0 {
		c.MinFaultGap = time.Second
	}
	if c.MaxFaultGap == 0 {
		c.MaxFaultGap = 2 * time.Second
	}
	if c.FaultTime == 0 {
		c.FaultTime = 40 * time.Second
	}
	if c.FaultDuration == 0 {
		c.FaultDuration = time.Second
	}
	if c.Throttle == 0 {
		c.Throttle = 300 * time.Millisecond
	}
	if c.MaxCatchUp == 0 {
		c.MaxCatchUp = 15 * time.Second
	}
	if c.MaxElectionResume == 0 {
		c.MaxElectionResume = time.Second
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Minute
	}
}

func (c *Config) validate() error {
	switch {
	case c.Binary == "":
		return errors.New("chaos: the orders binary is required")
	case c.Mode != ModeFull && c.Mode != ModeCluster:
		return fmt.Errorf("chaos: mode %q: want %s or %s", c.Mode, ModeFull, ModeCluster)
	case c.MaxFaultGap < c.MinFaultGap:
		return fmt.Errorf("chaos: the longest gap between faults (%v) is below the shortest (%v)", c.MaxFaultGap, c.MinFaultGap)
	}
	for _, k := range c.Kinds {
		if !slices.Contains(broker.FaultKinds, k) {
			return fmt.Errorf("chaos: fault kind %q: want one of %v", k, broker.FaultKinds)
		}
	}
	return nil
}

// Report is what a run did and found.
type Report struct {
	Mode                                             Mode
	Nodes                                            int
	Orders, Kills, Stops, ScaleSteps, BrokerRestarts int
	// Faults is what the protocol faults of each kind hit, kind by kind
	// (broker.FaultKinds order); FaultFailures those that could not be
	// injected (the broker was down).
	Faults        []FaultCount
	FaultFailures int
	Processed     int
	DeadLettered  int
	// Duplicates are the processed records of an order beyond its first;
	// DuplicateBound what the unknowable-outcome events may explain.
	Duplicates, DuplicateBound, DLQDuplicates int
	// ByCause charges every duplicate (processed and DLQ) to a cause.
	ByCause []CauseCount
	// Ambiguous duplicates had both unknowable and definite candidates.
	Ambiguous                                   int
	Lost, InBoth, GoodDead, BadProcessed, Early int
	AverageRelErr                               float64
	// Stalls is what the watcher saw, by fault kind.
	Stalls []StallStat
	// CatchUp is the time from the end of the faults (FaultsEnd) or of
	// the production, whichever came later, until no group lagged.
	FaultsEnd, ProducedAt time.Time
	CatchUp               time.Duration
	Elapsed               time.Duration
	Violations            []string
	WorkDir               string
}

// FaultCount is the protocol faults of one kind.
type FaultCount struct {
	Kind     broker.FaultKind
	Injected int // faults the broker ran
	Hits     int // and what they hit (broker.FaultResult.Hits)
}

// CauseCount is the duplicates charged to one cause.
type CauseCount struct {
	Cause      string
	Duplicates int
	Bound      int // what the cause's events may explain; 0 for a definite refusal
}

// Run performs one chaos run. It returns an error when the run could not
// be carried out; violations of the guarantees are in the report.
func Run(ctx context.Context, cfg Config, log *zap.Logger) (Report, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return Report{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	r := &run{cfg: cfg, log: log, start: time.Now(), rep: Report{Mode: cfg.Mode, Nodes: cfg.Nodes, Orders: cfg.Orders}}
	err := r.do(ctx)
	r.rep.Elapsed = time.Since(r.start)
	return r.rep, err
}

// run is the state of one chaos run.
type run struct {
	cfg    Config
	log    *zap.Logger
	start  time.Time
	rep    Report
	top    topology.Topology
	client kafka.Client
	ps     *procs
	broker brokerArgs
	ctl    control
	watch  *watcher
	roles  []string
	stages map[string][]*proc

	mu     sync.Mutex
	events []event // the process faults; the protocol faults come from the injector
}

func (r *run) do(ctx context.Context) error {
	cfg := r.cfg
	var err error
	if cfg.WorkDir == "" {
		if cfg.WorkDir, err = os.MkdirTemp("", "orders-chaos-"); err != nil {
			return err
		}
	}
	r.rep.WorkDir = cfg.WorkDir
	logDir := filepath.Join(cfg.WorkDir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	addrs, err := freeAddrs(cfg.Nodes)
	if err != nil {
		return err
	}
	var delays []string
	for _, d := range cfg.Delays {
		delays = append(delays, d.String())
	}
	r.ps = &procs{bin: cfg.Binary, logDir: logDir, env: []string{
		"KAFKA_BROKERS=" + strings.Join(addrs, ","), "RETRY_DELAYS=" + strings.Join(delays, ","),
		"PARTITIONS=" + strconv.Itoa(cfg.Partitions), "SESSION_TIMEOUT=" + cfg.SessionTimeout.String(),
		"MAX_BATCH=" + strconv.Itoa(cfg.MaxBatch), "LOG_LEVEL=warn", "FAIL_PRODUCTS=Item3", "FLAKY_RATE=0",
	}}
	defer r.ps.killAll()

	if r.top, err = topology.New(topology.Topology{Delays: cfg.Delays, Partitions: cfg.Partitions}); err != nil {
		return err
	}
	r.client = kafka.Client{Brokers: addrs}
	r.broker = brokerArgs{listen: addrs, dataDir: filepath.Join(cfg.WorkDir, "broker-data"), minSession: cfg.GroupMinSessionTimeout}
	brokerProc, ctl, err := r.ps.startBroker(r.broker)
	if err != nil {
		return err
	}
	r.ctl.set(ctl)
	if _, err := admin.EnsureTopics(ctx, r.client, r.top, admin.CheckConfig{}); err != nil {
		return err
	}

	// The watcher runs from before the first order to the final check.
	r.roles = []string{topology.StageMain}
	for k := 1; k <= r.top.Stages(); k++ {
		r.roles = append(r.roles, topology.RetryStageName(k))
	}
	r.roles = append(r.roles, topology.StageAggregator)
	var groups []watched
	for _, role := range r.roles {
		groups = append(groups, watched{role: role, group: r.top.Group(role), topic: r.inputTopic(role)})
	}
	if r.watch, err = newWatcher(addrs, groups, []string{r.top.Processed, r.top.DLQ}, cfg.Partitions, 100*time.Millisecond); err != nil {
		return err
	}
	wctx, stopWatch := context.WithCancel(ctx)
	var watching sync.WaitGroup
	watching.Go(func() { r.watch.run(wctx) })
	defer func() { stopWatch(); watching.Wait() }()

	// The stage processes, by role. In ModeFull the aggregator is the
	// stage that is scaled: 1 process, then one more than there are
	// partitions, then 1.
	r.stages = map[string][]*proc{}
	for _, role := range r.roles {
		n := cfg.Procs
		if role == topology.StageAggregator && cfg.Mode == ModeFull {
			n = 1
		}
		for range n {
			p, err := r.startRole(role)
			if err != nil {
				return err
			}
			r.stages[role] = append(r.stages[role], p)
		}
	}
	prod, err := r.ps.start("producer", "produce", "--count", strconv.Itoa(cfg.Orders),
		"--rate", strconv.FormatFloat(cfg.Rate, 'f', -1, 64), "--seed", strconv.FormatUint(cfg.Seed, 10))
	if err != nil {
		return err
	}
	r.log.Info("chaos run started", zap.String("mode", string(cfg.Mode)), zap.Strings("brokers", addrs),
		zap.String("work_dir", cfg.WorkDir), zap.Int("orders", cfg.Orders))

	inj := newInjector(cfg, r.top, &r.ctl, r.log.Named("faults"))
	if cfg.Mode == ModeCluster {
		err = r.clusterFaults(ctx, inj)
	} else {
		err = r.allFaults(ctx, inj, prod, brokerProc)
	}
	if err != nil {
		return err
	}
	select {
	case <-prod.Done():
	case <-ctx.Done():
		return fmt.Errorf("chaos: %w waiting for the producer: %s", ctx.Err(), prod.Tail(5))
	}
	produced, _ := prod.State()
	if err := produced.Err; err != nil {
		return fmt.Errorf("producer failed: %v\n%s", err, prod.Tail(20))
	}
	r.rep.ProducedAt = produced.ExitedAt
	results, failures := inj.done()
	r.rep.FaultFailures = len(failures)
	for _, res := range results {
		if res.End.After(r.rep.FaultsEnd) {
			r.rep.FaultsEnd = res.End
		}
	}
	r.mu.Lock()
	events := append(faultEvents(results, cfg.MaxBatch), r.events...)
	r.mu.Unlock()
	for _, e := range events {
		if e.end.After(r.rep.FaultsEnd) {
			r.rep.FaultsEnd = e.end
		}
	}

	r.log.Info("faults done; waiting for every group to catch up", zap.Int("kills", r.rep.Kills), zap.Int("protocol_faults", len(results)))
	from := r.rep.FaultsEnd
	if r.rep.ProducedAt.After(from) {
		from = r.rep.ProducedAt
	}
	// A group that does not catch up is a finding, not a failed run: the
	// wait is bounded, and the topics are read back all the same.
	wait := 2 * time.Minute
	if cfg.Mode == ModeCluster {
		wait = cfg.MaxCatchUp + 30*time.Second
	}
	caughtUp, err := r.waitCaughtUp(ctx, from, wait)
	if err != nil {
		return err
	}
	if caughtUp.IsZero() {
		r.rep.CatchUp = -1
		r.rep.Violations = append(r.rep.Violations, fmt.Sprintf("the groups had not caught up %v after the faults: %s", wait, r.watch.behind()))
	} else {
		r.rep.CatchUp = caughtUp.Sub(from)
	}
	stopWatch()
	watching.Wait()
	return r.check(ctx, results, events)
}

func (r *run) inputTopic(role string) string {
	switch role {
	case topology.StageAggregator:
		return r.top.Processed
	case topology.StageMain:
		return r.top.InputTopic(0)
	}
	k, _ := strconv.Atoi(strings.TrimPrefix(role, "retry-"))
	return r.top.InputTopic(k)
}

func (r *run) startRole(role string) (*proc, error) {
	switch role {
	case topology.StageMain:
		return r.ps.start(role, "run", "main")
	case topology.StageAggregator:
		return r.ps.start(role, "run", "aggregator")
	}
	return r.ps.start(role, "run", "retry", "--stage", strings.TrimPrefix(role, "retry-"))
}

// death records a process fault in force from start to end.
func (r *run) death(start, end time.Time, partitions int) {
	r.mu.Lock()
	r.events = append(r.events, event{cause: CauseDeath, start: start, end: end,
		bound: partitions * r.cfg.MaxBatch, settle: r.cfg.SessionTimeout + 2*time.Second})
	r.mu.Unlock()
}

// clusterFaults waits for every group to work, then injects protocol
// faults for FaultTime.
func (r *run) clusterFaults(ctx context.Context, inj *injector) error {
	deadline := time.Now().Add(time.Minute)
	for !r.watch.working() {
		if time.Now().After(deadline) {
			return errors.New("chaos: the groups did not all commit within a minute")
		}
		if !wait.For(ctx, 100*time.Millisecond) {
			return ctx.Err()
		}
	}
	until := time.Now().Add(r.cfg.FaultTime)
	r.log.Info("every group works; injecting protocol faults", zap.Duration("for", r.cfg.FaultTime))
	inj.run(ctx, func() bool { return time.Now().Before(until) && ctx.Err() == nil })
	return ctx.Err()
}

// allFaults is ModeFull: the process faults on the schedule below, and
// protocol faults while the producer runs.
func (r *run) allFaults(ctx context.Context, inj *injector, prod, brokerProc *proc) error {
	cfg, rep := r.cfg, &r.rep
	ictx, stopFaults := context.WithCancel(ctx)
	var injecting sync.WaitGroup
	injecting.Go(func() { inj.run(ictx, func() bool { return !prod.Exited() && ictx.Err() == nil }) })
	defer func() { stopFaults(); injecting.Wait() }()

	// The schedule, as fractions of the production time.
	rnd := rand.New(rand.NewPCG(cfg.Seed, 7))
	prodTime := time.Duration(float64(cfg.Orders) / cfg.Rate * float64(time.Second))
	at := func(f float64) time.Time { return r.start.Add(time.Duration(f * float64(prodTime))) }
	var (
		nextKill   = time.Now().Add(time.Second)
		stopAt     = at(0.15)
		scaleUpAt  = at(0.35)
		scaleDnAt  = at(0.55)
		brokerAt   = at(0.70)
		stopped    *proc
		stoppedAt  time.Time
		contAt     time.Time
		brokerDown bool
		brokerUpAt time.Time
		brokerKill time.Time
		scaledUp   bool
		scaledDown bool
		err        error
	)
	roles := r.roles
	for {
		if ctx.Err() != nil {
			return fmt.Errorf("chaos: %w after %d kills; producer: %s", ctx.Err(), rep.Kills, prod.Tail(5))
		}
		now := time.Now()
		if prod.Exited() && rep.Kills >= cfg.MinKills && stopped == nil && !brokerDown && scaledDown && rep.BrokerRestarts > 0 {
			return nil
		}
		switch {
		case brokerDown && now.After(brokerUpAt):
			var ctl string
			if brokerProc, ctl, err = r.ps.startBroker(r.broker); err != nil {
				return err
			}
			r.ctl.set(ctl)
			brokerDown = false
			rep.BrokerRestarts++
			r.death(brokerKill, time.Now(), (r.top.Stages()+1)*cfg.Partitions)
			r.log.Info("broker restarted")
		case brokerDown:
		case stopped != nil && now.After(contAt):
			_ = stopped.Signal(syscall.SIGCONT)
			r.death(stoppedAt, now, cfg.Partitions)
			r.log.Info("continued", zap.String("role", stopped.role))
			stopped = nil
		case stopped == nil && rep.Stops == 0 && now.After(stopAt):
			role := roles[rnd.IntN(len(roles))]
			stopped = r.stages[role][rnd.IntN(len(r.stages[role]))]
			_ = stopped.Signal(syscall.SIGSTOP)
			stoppedAt, contAt = now, now.Add(cfg.SessionTimeout+2*time.Second)
			rep.Stops++
			r.log.Info("stopped", zap.String("role", role))
		case !scaledUp && now.After(scaleUpAt):
			for len(r.stages[topology.StageAggregator]) < cfg.Partitions+1 {
				p, err := r.startRole(topology.StageAggregator)
				if err != nil {
					return err
				}
				r.stages[topology.StageAggregator] = append(r.stages[topology.StageAggregator], p)
				rep.ScaleSteps++
				r.death(now, time.Now(), cfg.Partitions)
			}
			scaledUp = true
			r.log.Info("scaled up", zap.Int("aggregators", len(r.stages[topology.StageAggregator])))
		case scaledUp && !scaledDown && now.After(scaleDnAt):
			aggs := r.stages[topology.StageAggregator]
			for len(aggs) > 1 {
				p := aggs[len(aggs)-1]
				if p == stopped {
					break
				}
				t0 := time.Now()
				_ = p.Signal(syscall.SIGTERM)
				<-p.Done()
				aggs = aggs[:len(aggs)-1]
				rep.ScaleSteps++
				r.death(t0, time.Now(), cfg.Partitions)
			}
			r.stages[topology.StageAggregator] = aggs
			scaledDown = len(aggs) == 1
			r.log.Info("scaled down", zap.Int("aggregators", len(aggs)))
		case rep.BrokerRestarts == 0 && now.After(brokerAt):
			r.ctl.set("")
			brokerProc.Kill()
			brokerDown, brokerKill = true, now
			brokerUpAt = now.Add(cfg.BrokerOutage)
			r.log.Info("broker killed")
		case now.After(nextKill) && rep.Kills < cfg.MinKills || now.After(nextKill) && !prod.Exited():
			role := roles[rnd.IntN(len(roles))]
			i := rnd.IntN(len(r.stages[role]))
			if victim := r.stages[role][i]; victim != stopped {
				victim.Kill()
				p, err := r.startRole(role)
				if err != nil {
					return err
				}
				r.stages[role][i] = p
				rep.Kills++
				r.death(now, now, cfg.Partitions)
				r.log.Info("killed and restarted", zap.String("role", role), zap.Int("kills", rep.Kills))
			}
			nextKill = now.Add(time.Second + time.Duration(rnd.Int64N(int64(2*time.Second))))
		}
		if !wait.For(ctx, 50*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// waitCaughtUp waits up to within until the watcher sees no group lag at or
// after from; it returns the zero time if none did by then.
func (r *run) waitCaughtUp(ctx context.Context, from time.Time, within time.Duration) (time.Time, error) {
	deadline := time.Now().Add(within)
	for {
		if t, ok := r.watch.caughtUpAfter(from); ok {
			return t, nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, nil
		}
		if !wait.For(ctx, 100*time.Millisecond) {
			return time.Time{}, fmt.Errorf("chaos: %w waiting for the groups to catch up: %s", ctx.Err(), r.watch.behind())
		}
	}
}

// check reads the topics back and fills in the report.
func (r *run) check(ctx context.Context, results []broker.FaultResult, events []event) error {
	cfg, top, rep := r.cfg, r.top, &r.rep
	tally := outcome.NewTally()
	if err := tally.Poll(ctx, r.client, top); err != nil {
		return err
	}
	rep.Processed, rep.DeadLettered, rep.Duplicates = len(tally.Processed), len(tally.Dead), tally.Duplicates()
	for _, d := range tally.Dead {
		rep.DLQDuplicates += d.Deliveries - 1
	}
	gen := producer.NewGenerator(1001, cfg.Seed)
	var sum float64
	var good int
	var lost []string // the first few, to trace
	want := map[string]schemas.Order{}
	for range cfg.Orders {
		o := gen.Next()
		want[o.OrderID] = o
		_, processed := tally.Processed[o.OrderID]
		_, dead := tally.Dead[o.OrderID]
		failing := o.Product == "Item3"
		switch {
		case processed && dead:
			rep.InBoth++
		case !processed && !dead:
			rep.Lost++
			if len(lost) < 5 {
				lost = append(lost, o.OrderID)
			}
		case failing && processed:
			rep.BadProcessed++
		case !failing && dead:
			rep.GoodDead++
		}
		if processed {
			sum += float64(o.Price)
			good++
		}
	}
	for id := range tally.Processed {
		if _, ok := want[id]; !ok {
			rep.Violations = append(rep.Violations, "processed an order nobody produced: "+id)
		}
	}

	// Every DLQ record honoured every delay of its history.
	err := kafka.ReadNew(ctx, r.client, []string{top.DLQ}, map[string]map[int]int64{}, func(m envelope.Record) error {
		d, err := envelope.ParseDeadLetter(m.Value)
		if err != nil {
			return err
		}
		for k := 1; k < len(d.Errors); k++ {
			if d.Errors[k].At.Before(d.Errors[k-1].At.Add(top.Delay(k))) {
				rep.Early++
			}
		}
		if d.Attempts != top.Stages()+1 {
			rep.Violations = append(rep.Violations, fmt.Sprintf("DLQ record of %s has %d attempts", d.Key, d.Attempts))
		}
		return nil
	})
	if err != nil {
		return err
	}

	totals, err := aggregator.ReadTotals(ctx, r.client, top)
	if err != nil {
		return err
	}
	exact := sum / float64(good)
	rep.AverageRelErr = math.Abs(totals.Average-exact) / exact
	if totals.Count != int64(good) {
		rep.Violations = append(rep.Violations, fmt.Sprintf("aggregator counted %d orders, %d were processed", totals.Count, good))
	}

	r.faultCounts(results)
	if err := r.causes(ctx, events); err != nil {
		return err
	}
	r.stalls(results, events)

	for _, v := range []struct {
		n    int
		what string
	}{
		{rep.Lost, "orders lost" + examples(lost)}, {rep.InBoth, "orders both processed and dead-lettered"},
		{rep.GoodDead, "good orders dead-lettered"}, {rep.BadProcessed, "failing orders processed"},
		{rep.Early, "retries before their due time"},
	} {
		if v.n > 0 {
			rep.Violations = append(rep.Violations, fmt.Sprintf("%d %s", v.n, v.what))
		}
	}
	if rep.Duplicates > rep.DuplicateBound {
		rep.Violations = append(rep.Violations, fmt.Sprintf("%d duplicates, above the bound %d", rep.Duplicates, rep.DuplicateBound))
	}
	if rep.AverageRelErr > 1e-9 || math.IsNaN(rep.AverageRelErr) {
		rep.Violations = append(rep.Violations, fmt.Sprintf("average off by %.3g (relative)", rep.AverageRelErr))
	}
	if cfg.Mode == ModeCluster && rep.CatchUp > cfg.MaxCatchUp {
		rep.Violations = append(rep.Violations, fmt.Sprintf("the groups caught up %v after the faults, above %v", rep.CatchUp.Round(100*time.Millisecond), cfg.MaxCatchUp))
	}
	slices.Sort(rep.Violations)
	return nil
}

// examples names a few orders, for `orders trace`.
func examples(ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	return " (" + strings.Join(ids, ", ") + ", ...)"
}

func (r *run) faultCounts(results []broker.FaultResult) {
	for _, k := range r.cfg.Kinds {
		fc := FaultCount{Kind: k}
		for _, res := range results {
			if res.Kind == k {
				fc.Injected++
				fc.Hits += res.Hits
			}
		}
		r.rep.Faults = append(r.rep.Faults, fc)
	}
}

// causes charges the duplicates to their causes and checks each cause's
// bound.
func (r *run) causes(ctx context.Context, events []event) error {
	rep := &r.rep
	copies, err := readCopies(ctx, r.client, r.top, r.watch)
	if err != nil {
		return err
	}
	a := attribute(copies, events, r.top, 2*r.watch.every+300*time.Millisecond)
	rep.Ambiguous = a.ambiguous
	bounds := map[string]int{}
	for _, e := range events {
		bounds[e.cause] += e.bound
		rep.DuplicateBound += e.bound
	}
	causes := []string{CauseDeath}
	for _, k := range broker.FaultKinds {
		causes = append(causes, string(k))
	}
	causes = append(causes, CauseNone)
	for _, c := range causes {
		n, b := a.byCause[c], bounds[c]
		if n == 0 && b == 0 && !slices.ContainsFunc(events, func(e event) bool { return e.cause == c }) && c != CauseNone {
			continue // a cause this run had none of
		}
		rep.ByCause = append(rep.ByCause, CauseCount{Cause: c, Duplicates: n, Bound: b})
		switch {
		case n > b && !unknowable(c):
			rep.Violations = append(rep.Violations, fmt.Sprintf("%d duplicates charged to %s, which duplicates nothing", n, c))
		case n > b:
			rep.Violations = append(rep.Violations, fmt.Sprintf("%d duplicates charged to %s, above its bound %d", n, c, b))
		}
	}
	return nil
}

// stalls measures the stalls by kind and checks the resume after an
// election.
func (r *run) stalls(results []broker.FaultResult, events []event) {
	stats := stallStats(r.watch.allStalls(), events, results)
	order := []string{CauseDeath}
	for _, k := range broker.FaultKinds {
		order = append(order, string(k))
	}
	order = append(order, CauseNone)
	for _, c := range order {
		if s := stats[c]; s != nil {
			r.rep.Stalls = append(r.rep.Stalls, *s)
		}
	}
	if s := stats[string(broker.FaultElection)]; s != nil && s.Resume > r.cfg.MaxElectionResume {
		r.rep.Violations = append(r.rep.Violations, fmt.Sprintf("%s made no progress for %v after an election, above %v",
			s.ResumeWhere, s.Resume.Round(10*time.Millisecond), r.cfg.MaxElectionResume))
	}
}

// freeAddrs is n free loopback addresses, one per broker node, kept for
// every restart of the broker.
func freeAddrs(n int) ([]string, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var addrs []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}
