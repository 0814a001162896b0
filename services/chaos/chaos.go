// Package chaos is a fault-injection harness for the pipeline: it runs the
// real binary (broker, every stage as separate processes, the producer),
// kills, stops, scales and cuts off the broker while orders flow, then reads
// the topics back and checks that every order has exactly one outcome, that
// duplicates stay within the stated bound, that the running average is
// exact and that no retry ran before it was due.
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
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/admin"
	"github.com/orderflow/orders/services/aggregator"
	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/outcome"
	"github.com/orderflow/orders/services/pipeline"
	"github.com/orderflow/orders/services/producer"
	"github.com/orderflow/orders/topology"
)

// Config of one chaos run.
type Config struct {
	// Binary is the orders binary. Required.
	Binary string
	// Orders to produce. Optional, default 20000.
	Orders int
	// Rate of the producer in orders per second. Optional, default 1000.
	Rate float64
	// Procs is the number of processes of main and of each retry stage.
	// Optional, default 2.
	Procs int
	// Partitions of every topic. Optional, default 4.
	Partitions int
	// Delays of the retry ladder. Optional, default 200ms,400ms,600ms.
	Delays []time.Duration
	// SessionTimeout of every group. Optional, default 3s.
	SessionTimeout time.Duration
	// MaxBatch of every stage. Optional, default pipeline.DefaultMaxBatch.
	MaxBatch int
	// MinKills is the least number of SIGKILLs, one every 1-3s. Optional, default 20.
	MinKills int
	// BrokerOutage is how long the broker stays down. Optional, default 3s.
	BrokerOutage time.Duration
	// Seed of the producer and of the fault schedule. Optional, default 1.
	Seed uint64
	// WorkDir keeps the broker's data and every process's log. Optional,
	// default a new temporary directory.
	WorkDir string
	// Timeout of the whole run. Optional, default 10m.
	Timeout time.Duration
}

func (c *Config) setDefaults() {
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
		c.SessionTimeout = 3 * time.Second
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = pipeline.DefaultMaxBatch
	}
	if c.MinKills == 0 {
		c.MinKills = 20
	}
	if c.BrokerOutage == 0 {
		c.BrokerOutage = 3 * time.Second
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Minute
	}
}

// Report is what a run did and found.
type Report struct {
	Orders, Kills, Stops, ScaleSteps, BrokerRestarts int
	Processed, DeadLettered                          int
	Duplicates, DuplicateBound, DLQDuplicates        int
	Lost, InBoth, GoodDead, BadProcessed, Early      int
	AverageRelErr                                    float64
	Elapsed                                          time.Duration
	Violations                                       []string
	WorkDir                                          string
}

func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos run: %d orders in %v (work dir %s)\n", r.Orders, r.Elapsed.Round(time.Second), r.WorkDir)
	fmt.Fprintf(&b, "  faults:     %d SIGKILLs and restarts, %d SIGSTOPs past the session timeout, %d scaling steps, %d broker kills\n",
		r.Kills, r.Stops, r.ScaleSteps, r.BrokerRestarts)
	fmt.Fprintf(&b, "  outcomes:   %d processed, %d dead-lettered, %d lost, %d in both\n", r.Processed, r.DeadLettered, r.Lost, r.InBoth)
	fmt.Fprintf(&b, "  wrong:      %d good orders dead-lettered, %d failing orders processed, %d retries before due\n", r.GoodDead, r.BadProcessed, r.Early)
	fmt.Fprintf(&b, "  duplicates: %d in processed (bound %d), %d in the DLQ\n", r.Duplicates, r.DuplicateBound, r.DLQDuplicates)
	fmt.Fprintf(&b, "  average:    relative error %.3g\n", r.AverageRelErr)
	if len(r.Violations) == 0 {
		b.WriteString("  result:     OK\n")
	} else {
		fmt.Fprintf(&b, "  result:     %d VIOLATIONS\n", len(r.Violations))
		for _, v := range r.Violations {
			fmt.Fprintf(&b, "    - %s\n", v)
		}
	}
	return b.String()
}

// Run performs one chaos run. It returns an error when the run could not
// be carried out; violations of the guarantees are in the report.
func Run(ctx context.Context, cfg Config, log *zap.Logger) (Report, error) {
	cfg.setDefaults()
	if cfg.Binary == "" {
		return Report{}, errors.New("chaos: the orders binary is required")
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	start := time.Now()
	rep := Report{Orders: cfg.Orders}
	var err error
	if cfg.WorkDir == "" {
		if cfg.WorkDir, err = os.MkdirTemp("", "orders-chaos-"); err != nil {
			return rep, err
		}
	}
	rep.WorkDir = cfg.WorkDir
	logDir := filepath.Join(cfg.WorkDir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return rep, err
	}
	addr, err := freeAddr()
	if err != nil {
		return rep, err
	}
	var delays []string
	for _, d := range cfg.Delays {
		delays = append(delays, d.String())
	}
	ps := &procs{bin: cfg.Binary, logDir: logDir, env: []string{
		"KAFKA_BROKERS=" + addr, "RETRY_DELAYS=" + strings.Join(delays, ","),
		"PARTITIONS=" + strconv.Itoa(cfg.Partitions), "SESSION_TIMEOUT=" + cfg.SessionTimeout.String(),
		"MAX_BATCH=" + strconv.Itoa(cfg.MaxBatch), "LOG_LEVEL=warn", "FAIL_PRODUCTS=Item3", "FLAKY_RATE=0",
	}}
	defer ps.killAll()

	top, err := topology.New(topology.Topology{Delays: cfg.Delays, Partitions: cfg.Partitions})
	if err != nil {
		return rep, err
	}
	client := pipeline.Client{Brokers: []string{addr}}
	dataDir := filepath.Join(cfg.WorkDir, "broker-data")
	brokerProc, err := ps.startBroker(addr, dataDir)
	if err != nil {
		return rep, err
	}
	if _, err := admin.EnsureTopics(ctx, client, top, admin.CheckConfig{}); err != nil {
		return rep, err
	}

	// The stage processes, by role. The aggregator is the stage that is
	// scaled: 1 process, then one more than there are partitions, then 1.
	stages := map[string][]*proc{}
	roles := []string{topology.StageMain}
	for k := 1; k <= top.Stages(); k++ {
		roles = append(roles, topology.RetryStageName(k))
	}
	startRole := func(role string) (*proc, error) {
		switch {
		case role == topology.StageMain:
			return ps.start(role, "run", "main")
		case role == topology.StageAggregator:
			return ps.start(role, "run", "aggregator")
		default:
			return ps.start(role, "run", "retry", "--stage", strings.TrimPrefix(role, "retry-"))
		}
	}
	for _, role := range roles {
		for range cfg.Procs {
			p, err := startRole(role)
			if err != nil {
				return rep, err
			}
			stages[role] = append(stages[role], p)
		}
	}
	p, err := startRole(topology.StageAggregator)
	if err != nil {
		return rep, err
	}
	stages[topology.StageAggregator] = []*proc{p}
	roles = append(roles, topology.StageAggregator)

	prod, err := ps.start("producer", "produce", "--count", strconv.Itoa(cfg.Orders),
		"--rate", strconv.FormatFloat(cfg.Rate, 'f', -1, 64), "--seed", strconv.FormatUint(cfg.Seed, 10))
	if err != nil {
		return rep, err
	}

	// The fault schedule, as fractions of the production time.
	rnd := rand.New(rand.NewPCG(cfg.Seed, 7))
	prodTime := time.Duration(float64(cfg.Orders) / cfg.Rate * float64(time.Second))
	at := func(f float64) time.Time { return start.Add(time.Duration(f * float64(prodTime))) }
	var (
		nextKill   = time.Now().Add(time.Second)
		stopAt     = at(0.15)
		scaleUpAt  = at(0.35)
		scaleDnAt  = at(0.55)
		brokerAt   = at(0.70)
		stopped    *proc
		contAt     time.Time
		brokerDown bool
		brokerUpAt time.Time
		scaledUp   bool
		scaledDown bool
	)
	log.Info("chaos run started", zap.String("broker", addr), zap.String("work_dir", cfg.WorkDir),
		zap.Int("orders", cfg.Orders), zap.Duration("production", prodTime))
	for {
		if ctx.Err() != nil {
			return rep, fmt.Errorf("chaos: %w after %d kills; producer: %s", ctx.Err(), rep.Kills, prod.tail(5))
		}
		now := time.Now()
		done := prod.exited() && rep.Kills >= cfg.MinKills && stopped == nil && !brokerDown && scaledDown && rep.BrokerRestarts > 0
		if done {
			break
		}
		switch {
		case brokerDown && now.After(brokerUpAt):
			if brokerProc, err = ps.startBroker(addr, dataDir); err != nil {
				return rep, err
			}
			brokerDown = false
			rep.BrokerRestarts++
			log.Info("broker restarted")
		case brokerDown:
		case stopped != nil && now.After(contAt):
			stopped.signal(syscall.SIGCONT)
			log.Info("continued", zap.String("role", stopped.role))
			stopped = nil
		case stopped == nil && rep.Stops == 0 && now.After(stopAt):
			role := roles[rnd.IntN(len(roles))]
			stopped = stages[role][rnd.IntN(len(stages[role]))]
			stopped.signal(syscall.SIGSTOP)
			contAt = now.Add(cfg.SessionTimeout + 2*time.Second)
			rep.Stops++
			log.Info("stopped", zap.String("role", role))
		case !scaledUp && now.After(scaleUpAt):
			for len(stages[topology.StageAggregator]) < cfg.Partitions+1 {
				p, err := startRole(topology.StageAggregator)
				if err != nil {
					return rep, err
				}
				stages[topology.StageAggregator] = append(stages[topology.StageAggregator], p)
				rep.ScaleSteps++
			}
			scaledUp = true
			log.Info("scaled up", zap.Int("aggregators", len(stages[topology.StageAggregator])))
		case scaledUp && !scaledDown && now.After(scaleDnAt):
			aggs := stages[topology.StageAggregator]
			for len(aggs) > 1 {
				p := aggs[len(aggs)-1]
				if p == stopped {
					break
				}
				p.signal(syscall.SIGTERM)
				<-p.done
				aggs = aggs[:len(aggs)-1]
				rep.ScaleSteps++
			}
			stages[topology.StageAggregator] = aggs
			scaledDown = len(aggs) == 1
			log.Info("scaled down", zap.Int("aggregators", len(aggs)))
		case rep.BrokerRestarts == 0 && now.After(brokerAt):
			brokerProc.kill()
			brokerDown = true
			brokerUpAt = now.Add(cfg.BrokerOutage)
			log.Info("broker killed")
		case now.After(nextKill) && rep.Kills < cfg.MinKills || now.After(nextKill) && !prod.exited():
			role := roles[rnd.IntN(len(roles))]
			i := rnd.IntN(len(stages[role]))
			if victim := stages[role][i]; victim != stopped {
				victim.kill()
				p, err := startRole(role)
				if err != nil {
					return rep, err
				}
				stages[role][i] = p
				rep.Kills++
				log.Info("killed and restarted", zap.String("role", role), zap.Int("kills", rep.Kills))
			}
			nextKill = now.Add(time.Second + time.Duration(rnd.Int64N(int64(2*time.Second))))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := prod.err; err != nil {
		return rep, fmt.Errorf("producer failed: %v\n%s", err, prod.tail(20))
	}
	log.Info("faults done; waiting for every group to catch up", zap.Int("kills", rep.Kills))
	if err := waitCaughtUp(ctx, client, top, roles); err != nil {
		return rep, err
	}
	err = check(ctx, client, top, cfg, &rep)
	rep.Elapsed = time.Since(start)
	return rep, err
}

// waitCaughtUp waits until every stage's group has committed every record
// of its input topic.
func waitCaughtUp(ctx context.Context, client pipeline.Client, top topology.Topology, roles []string) error {
	for {
		var total int64
		var last error
		for _, role := range roles {
			topic := top.Processed
			if role != topology.StageAggregator {
				step := 0
				if role != topology.StageMain {
					step, _ = strconv.Atoi(strings.TrimPrefix(role, "retry-"))
				}
				topic = top.InputTopic(step)
			}
			lag, _, err := admin.GroupLag(ctx, client, top.Group(role), topic)
			if err != nil {
				last = err
				total++
				continue
			}
			total += lag
		}
		if total == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("groups still lag by %d records (%v): %w", total, last, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// check reads the topics back and fills in the report.
func check(ctx context.Context, client pipeline.Client, top topology.Topology, cfg Config, rep *Report) error {
	tally := outcome.NewTally()
	if err := tally.Poll(ctx, client, top); err != nil {
		return err
	}
	rep.Processed, rep.DeadLettered, rep.Duplicates = len(tally.Processed), len(tally.Dead), tally.Duplicates()
	for _, d := range tally.Dead {
		rep.DLQDuplicates += d.Deliveries - 1
	}
	gen := producer.NewGenerator(1001, cfg.Seed)
	var sum float64
	var good int
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
	err := pipeline.ReadNew(ctx, client, []string{top.DLQ}, map[string]map[int]int64{}, func(m kafka.Message) error {
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

	totals, err := aggregator.ReadTotals(ctx, client, top)
	if err != nil {
		return err
	}
	exact := sum / float64(good)
	rep.AverageRelErr = math.Abs(totals.Average-exact) / exact
	if totals.Count != int64(good) {
		rep.Violations = append(rep.Violations, fmt.Sprintf("aggregator counted %d orders, %d were processed", totals.Count, good))
	}

	// Each disruption (a kill, a stop, a scaling step, and the broker's
	// death for every stage at once) may repeat at most one batch per
	// partition of the stage it hits.
	disruptions := rep.Kills + rep.Stops + rep.ScaleSteps + rep.BrokerRestarts*(top.Stages()+1)
	rep.DuplicateBound = disruptions * cfg.Partitions * cfg.MaxBatch
	for _, v := range []struct {
		n    int
		what string
	}{
		{rep.Lost, "orders lost"}, {rep.InBoth, "orders both processed and dead-lettered"},
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
	slices.Sort(rep.Violations)
	return nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
