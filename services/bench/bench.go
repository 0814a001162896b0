// Package bench measures every stage against the bare Kafka client on the
// same broker and data, in the same run: main, retry and aggregator
// throughput, delay accuracy, the cost of failures, Avro, memory, scaling
// and how soon a restarted aggregator counts again. The yardstick of rows 1 to 3 is a bare loop on franz-go's
// kgo.Client doing a stage's work: poll, produce every record unchanged
// with acks from all replicas, wait for the acknowledgements, then commit
// (consume and commit only, for the aggregator). The same loop on
// kafka-go's Reader and Writer, and on the stages' own client path, is
// measured beside it. Stages run as real `orders run ...` processes on an
// `orders broker` process; the bare loops run in this process. cmd/bench
// runs it.
package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/orderflow/orders/services/admin"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/stage"
	"github.com/orderflow/orders/topology"
)

// Config of a benchmark run.
type Config struct {
	// Binary is the orders binary. Required.
	Binary string
	// Orders pre-filled for each throughput measurement. Optional, default
	// 500000: about a second of a stage's work.
	Orders int
	// Partitions of every topic. Optional, default 6.
	Partitions int
	// MaxBatch of the stages and of the bare loops alike. Optional,
	// default stage.DefaultMaxBatch, the stages' own default.
	MaxBatch int
	// DelayOrders produced at DelayRate for the delay accuracy; each is
	// retried by every retry stage. Optional, default 10000.
	DelayOrders int
	// DelayRate in orders per second. Optional, default 1000.
	DelayRate float64
	// Delays of the retry ladder in the delay measurement. Optional,
	// default 500ms,1s,2s.
	Delays []time.Duration
	// Procs are the process counts of the scaling curve. Optional, default 1,2,3.
	Procs []int
	// RestoreHistory is how many processed orders, each a distinct
	// orderId, the aggregator of row 9 counts before it is restarted;
	// the newest RestoreInside of them are inside the de-duplication
	// horizon it is restarted with. Optional, default 10,000,000 and
	// 1,000,000. RestoreInside may not be more than RestoreHistory.
	RestoreHistory, RestoreInside int
	// Only names the parts to run (see Parts); Skip those not to run.
	// Optional: by default every part runs.
	Only, Skip []string
	// ModuleDir is the module root, where `go test -bench` runs for the
	// Avro row. Optional: without it the row is skipped.
	ModuleDir string
	// OutDir receives the plots. Optional: without it none are written.
	OutDir string
	// Rounds of each throughput measurement; the table gives the medians.
	// Optional, default 5.
	Rounds int
	// ProfileDir receives a CPU profile of each stage process of the first
	// round of rows 1 to 3, and one of this process while it runs each
	// bare loop (bare-franz-go-STAGE.prof, bare-STAGE.prof for kafka-go,
	// bare-own-client-STAGE.prof). Optional: without it none are written.
	ProfileDir string
	// Progress receives a line per step. Optional.
	Progress io.Writer
	// Timeout of each measurement. Optional, default 10m.
	Timeout time.Duration
}

func (c *Config) setDefaults() {
	if c.Orders <= 0 {
		c.Orders = 500000
	}
	if c.Partitions <= 0 {
		c.Partitions = 6
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = stage.DefaultMaxBatch
	}
	if c.DelayOrders <= 0 {
		c.DelayOrders = 10000
	}
	if c.DelayRate <= 0 {
		c.DelayRate = 1000
	}
	if c.Delays == nil {
		c.Delays = []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second}
	}
	if c.Procs == nil {
		c.Procs = []int{1, 2, 3}
	}
	if c.RestoreHistory <= 0 {
		c.RestoreHistory = 10_000_000
	}
	if c.RestoreInside <= 0 {
		c.RestoreInside = 1_000_000
	}
	if c.Rounds <= 0 {
		c.Rounds = 5
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Minute
	}
}

func (c Config) validate() error {
	if c.RestoreInside > c.RestoreHistory {
		return fmt.Errorf("%d orders inside the horizon of a history of %d: make the history at least as long", c.RestoreInside, c.RestoreHistory)
	}
	for _, names := range [][]string{c.Only, c.Skip} {
		for _, n := range names {
			if !slices.Contains(Parts, n) {
				return fmt.Errorf("no part %q to run or skip; the parts are %s", n, strings.Join(Parts, ", "))
			}
		}
	}
	return nil
}

// The parts of a run, as Config.Only and Config.Skip name them.
const (
	PartStages   = "stages"   // rows 1, 2, 3 and 7
	PartDelays   = "delays"   // row 4
	PartFailures = "failures" // row 5
	PartAvro     = "avro"     // row 6, if Config.ModuleDir is set
	PartScaling  = "scaling"  // row 8
	PartRestore  = "restore"  // row 9
)

// Parts are the parts of a run, in the order they run.
var Parts = []string{PartStages, PartFailures, PartScaling, PartDelays, PartRestore, PartAvro}

// runs reports whether the part runs.
func (c Config) runs(part string) bool {
	return (len(c.Only) == 0 || slices.Contains(c.Only, part)) && !slices.Contains(c.Skip, part)
}

// Throughput is records handled over a time.
type Throughput struct {
	Records int64
	Elapsed time.Duration
	// CPU used by the consumer's processes (for a bare loop, this process)
	// and by the broker's, over the span the records are counted in.
	CPU, BrokerCPU time.Duration
}

// CPUPerRecord is the consumer's and the broker's CPU time per record.
func (t Throughput) CPUPerRecord() (consumer, broker time.Duration) {
	if t.Records == 0 {
		return 0, 0
	}
	return t.CPU / time.Duration(t.Records), t.BrokerCPU / time.Duration(t.Records)
}

// Rate is records per second.
func (t Throughput) Rate() float64 {
	if t.Elapsed <= 0 {
		return 0
	}
	return float64(t.Records) / t.Elapsed.Seconds()
}

func (t Throughput) String() string {
	return fmt.Sprintf("%.0f/s (%d in %.2fs)", t.Rate(), t.Records, t.Elapsed.Seconds())
}

// Report is everything one run measured.
type Report struct {
	Config Config
	// One pair per round: the stage and its yardstick, the bare franz-go
	// loop, measured one after the other on the same broker and data.
	MainFranzGo, RetryFranzGo, AggregatorFranzGo []Pair
	// The stages of the same rounds against the bare kafka-go loop, the
	// yardstick before franz-go's.
	Main, Retry, Aggregator []Pair
	// The stages of the same rounds against the bare loop on the stages'
	// own client path (kafka.Fetcher and kafka.Writer): what a stage adds
	// to the client path it runs on.
	MainOwnClient, RetryOwnClient, AggregatorOwnClient []Pair
	// Failures pairs 50% failing orders (Stage) with none (Base).
	Failures []Pair
	// Scaling holds, per round, the main stage's throughput with each
	// process count of Config.Procs; ScalingOneCore the same with each
	// process held to one core.
	Scaling, ScalingOneCore [][]Throughput
	Lateness                []Lateness // one per retry stage
	// Peak RSS of one process of each stage, the highest over the rounds.
	MainRSS, RetryRSS, AggRSS int64
	Avro                      []AvroResult
	// Restore is row 9, once per run; nil if it did not run.
	Restore *Restore
	Machine string
	Elapsed time.Duration
}

// Pair is a stage's throughput beside its yardstick's in the same round.
type Pair struct{ Stage, Base Throughput }

// Ratio is the stage's rate over the yardstick's.
func (p Pair) Ratio() float64 { return ratio(p.Stage.Rate(), p.Base.Rate()) }

type runner struct {
	cfg    Config
	top    topology.Topology
	broker *proc
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.cfg.Progress, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// Run runs every measurement, one after the other.
func Run(ctx context.Context, cfg Config) (Report, error) {
	cfg.setDefaults()
	rep := Report{Config: cfg, Machine: Machine()}
	if err := cfg.validate(); err != nil {
		return rep, err
	}
	began := time.Now()
	top, err := topology.New(topology.Topology{Partitions: cfg.Partitions, Delays: []time.Duration{time.Second, time.Second, time.Second}})
	if err != nil {
		return rep, err
	}
	r := &runner{cfg: cfg, top: top}
	if cfg.runs(PartStages) || cfg.runs(PartFailures) || cfg.runs(PartScaling) {
		for round := range cfg.Rounds {
			r.logf("round %d of %d", round+1, cfg.Rounds)
			if cfg.runs(PartStages) {
				if err := r.stages(ctx, &rep, round); err != nil {
					return rep, err
				}
			}
			if cfg.runs(PartFailures) {
				if err := r.failures(ctx, &rep, round); err != nil {
					return rep, err
				}
			}
			if cfg.runs(PartScaling) {
				if err := r.scaling(ctx, &rep); err != nil {
					return rep, err
				}
			}
		}
	}
	if cfg.runs(PartDelays) {
		if err := r.delays(ctx, &rep); err != nil {
			return rep, err
		}
	}
	if cfg.runs(PartRestore) {
		if err := r.restore(ctx, &rep); err != nil {
			return rep, err
		}
	}
	if cfg.ModuleDir != "" && cfg.runs(PartAvro) {
		r.logf("avro: the schemas benchmarks, 6 runs")
		if rep.Avro, err = RunAvro(ctx, cfg.ModuleDir, 6); err != nil {
			return rep, err
		}
	}
	rep.Elapsed = time.Since(began)
	if cfg.OutDir != "" {
		if err := rep.WritePlots(cfg.OutDir); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

const benchTopic = "bench_copy"

// withBroker runs fn against a fresh broker process with every topic created.
func (r *runner) withBroker(ctx context.Context, top topology.Topology, fn func(kafka.Client) error) error {
	b, addr, err := startBroker(ctx, r.cfg.Binary)
	if err != nil {
		return err
	}
	defer b.stop()
	r.broker = b
	client := kafka.Client{Brokers: []string{addr}}
	if _, err := admin.EnsureTopics(ctx, client, top, admin.CheckConfig{}); err != nil {
		return err
	}
	if err := admin.CreateTopic(ctx, client, benchTopic, top.Partitions); err != nil {
		return err
	}
	return fn(client)
}

// env is the environment of a stage process.
func (r *runner) env(client kafka.Client, top topology.Topology, failProducts string) []string {
	var ds []string
	for _, d := range top.Delays {
		ds = append(ds, d.String())
	}
	return []string{
		"KAFKA_BROKERS=" + strings.Join(client.Brokers, ","), "PARTITIONS=" + strconv.Itoa(top.Partitions),
		"RETRY_DELAYS=" + strings.Join(ds, ","), "FAIL_PRODUCTS=" + failProducts, "FLAKY_RATE=0",
		"LOG_FORMAT=json", "LOG_LEVEL=info", "MAX_BATCH=" + strconv.Itoa(r.cfg.MaxBatch),
	}
}

// stageRun starts n processes of a stage, measures them until the group's
// lag is 0 and stops them. It returns the peak RSS of the first process.
func (r *runner) stageRun(ctx context.Context, client kafka.Client, env []string, n int, profile, group, topic string, args ...string) (Throughput, int64, error) {
	if profile != "" && r.cfg.ProfileDir != "" {
		if err := os.MkdirAll(r.cfg.ProfileDir, 0o755); err != nil {
			return Throughput{}, 0, err
		}
		args = append(args, "--cpuprofile", filepath.Join(r.cfg.ProfileDir, profile+".prof"),
			"--memprofile", filepath.Join(r.cfg.ProfileDir, profile+".allocs"))
	}
	var ps []*proc
	defer func() {
		for _, p := range ps {
			p.stop()
		}
	}()
	for range n {
		p, err := start(r.cfg.Binary, env, args...)
		if err != nil {
			return Throughput{}, 0, err
		}
		ps = append(ps, p)
	}
	ready := func() (bool, error) {
		gen, total := int32(-1), 0
		for _, p := range ps {
			if err := p.exitErr(); err != nil {
				return false, err
			}
			g, parts := p.assignment()
			if g < 0 || (gen >= 0 && g != gen) {
				return false, nil
			}
			gen, total = g, total+parts
		}
		return total == r.top.Partitions, nil
	}
	var cpu cpuTimes
	stageCPU := func() (d time.Duration) {
		for _, p := range ps {
			d += cpu.of(p.CPUTime)
		}
		return d
	}
	var cpu0, bcpu0 time.Duration
	t, err := r.measure(ctx, client, group, topic, ready, func() {
		cpu0, bcpu0 = stageCPU(), cpu.of(r.broker.CPUTime)
	})
	if err != nil {
		return t, 0, err
	}
	t.CPU, t.BrokerCPU = stageCPU()-cpu0, cpu.of(r.broker.CPUTime)-bcpu0
	if cpu.err != nil {
		return t, 0, cpu.err
	}
	rss, err := ps[0].PeakRSS()
	return t, rss, err
}

// bareRun runs the bare loop b until its group's lag is 0.
func (r *runner) bareRun(ctx context.Context, b bare, profile string) (Throughput, error) {
	b.MaxBatch, b.Partitions = r.cfg.MaxBatch, r.top.Partitions
	if profile != "" && r.cfg.ProfileDir != "" {
		stop, err := startProfile(filepath.Join(r.cfg.ProfileDir, profile+".prof"))
		if err != nil {
			return Throughput{}, err
		}
		defer stop()
	}
	rctx, cancel := context.WithCancel(ctx)
	ready := make(chan struct{})
	errc := make(chan error, 1)
	go func() { errc <- b.run(rctx, ready) }()
	var cpu0, bcpu0 time.Duration
	var cpu cpuTimes
	t, err := r.measure(ctx, b.Client, b.Group, b.Topic, func() (bool, error) {
		select {
		case <-ready:
			return true, nil
		case err := <-errc:
			return false, fmt.Errorf("bare loop: %w", err)
		default:
			return false, nil
		}
	}, func() { cpu0, bcpu0 = cpu.of(ownCPUTime), cpu.of(r.broker.CPUTime) })
	t.CPU, t.BrokerCPU = cpu.of(ownCPUTime)-cpu0, cpu.of(r.broker.CPUTime)-bcpu0
	if err == nil {
		err = cpu.err
	}
	cancel()
	select {
	case <-errc:
	case <-time.After(30 * time.Second):
		return t, fmt.Errorf("bare loop did not stop")
	}
	return t, err
}

// measure waits until ready, then counts the records the group commits
// from then until its lag is 0; began is called as the count begins, for
// the CPU time to be taken over the same span. Starting and joining the
// group, and what processes that joined first did alone, are left out of
// the figures, for stages and bare loops alike.
func (r *runner) measure(ctx context.Context, client kafka.Client, group, topic string, ready func() (bool, error), began func()) (Throughput, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := ready()
		if err != nil {
			return Throughput{}, err
		}
		if ok {
			break
		}
		select {
		case <-ctx.Done():
			return Throughput{}, fmt.Errorf("%s: not ready: %w", group, ctx.Err())
		case <-tick.C:
		}
	}
	// One connection for every poll: a new one each time would make the
	// broker and this process accept and dial 40 connections a second.
	a := client.Admin()
	defer a.Close()
	began()
	t0 := time.Now()
	lag0, _, err := admin.Lag(ctx, a, group, topic)
	if err != nil {
		return Throughput{}, err
	}
	if lag0 == 0 {
		return Throughput{}, fmt.Errorf("%s: the backlog was gone before the measurement began; use more orders", group)
	}
	tick.Reset(25 * time.Millisecond)
	for {
		select {
		case <-ctx.Done():
			return Throughput{}, fmt.Errorf("%s: lag not 0: %w", group, ctx.Err())
		case <-tick.C:
		}
		lag, _, err := admin.Lag(ctx, a, group, topic)
		if err != nil {
			return Throughput{}, err
		}
		if _, err := ready(); err != nil {
			return Throughput{}, err
		}
		if lag == 0 {
			return Throughput{Records: lag0, Elapsed: time.Since(t0)}, nil
		}
	}
}

// yardsticks are the bare loops each of rows 1 to 3 is measured against,
// the headline first; prefix names their groups and profiles.
var yardsticks = []struct {
	on           clientPath
	what, prefix string
}{
	{franzGo, "bare franz-go loop", "bare-franz-go-"},
	{kafkaGo, "bare kafka-go loop", "bare-"},
	{ownClient, "bare loop on the stages' client", "bare-own-client-"},
}

// stages measures rows 1, 2, 3 and 7 on one broker: each bare loop, and
// its stage, on the same records.
func (r *runner) stages(ctx context.Context, rep *Report, round int) error {
	return r.withBroker(ctx, r.top, func(client kafka.Client) error {
		n := r.cfg.Orders
		r.logf("fill: %d orders in %s, %d due retries in %s", n, r.top.Orders, n, r.top.RetryTopic(1))
		if err := fill(ctx, client, r.top.Orders, n, 1, false); err != nil {
			return err
		}
		if err := fill(ctx, client, r.top.RetryTopic(1), n, 2, true); err != nil {
			return err
		}
		env := r.env(client, r.top, "Item3")
		runs := []struct {
			what, name string
			bare       bare
			args       []string
			pairs      []*[]Pair // one per yardstick, in their order
			rss        *int64
		}{
			{"main stage", topology.StageMain, bare{Topic: r.top.Orders, Out: benchTopic}, []string{"run", "main"},
				[]*[]Pair{&rep.MainFranzGo, &rep.Main, &rep.MainOwnClient}, &rep.MainRSS},
			{"retry stage 1", topology.RetryStageName(1), bare{Topic: r.top.RetryTopic(1), Out: benchTopic}, []string{"run", "retry", "--stage", "1"},
				[]*[]Pair{&rep.RetryFranzGo, &rep.Retry, &rep.RetryOwnClient}, &rep.RetryRSS},
			{"aggregator", topology.StageAggregator, bare{Topic: r.top.Processed}, []string{"run", "aggregator"},
				[]*[]Pair{&rep.AggregatorFranzGo, &rep.Aggregator, &rep.AggregatorOwnClient}, &rep.AggRSS},
		}
		for _, run := range runs {
			var stage Throughput
			var rss int64
			bases := make([]Throughput, len(yardsticks))
			steps := []func() error{func() (err error) {
				stage, rss, err = r.stageRun(ctx, client, env, 1, firstRound(round, run.name), r.top.Group(run.name), run.bare.Topic, run.args...)
				return err
			}}
			for i, y := range yardsticks {
				b := run.bare
				b.Client, b.Group, b.On = client, "bench-"+y.prefix+run.name, y.on
				steps = append(steps, func() (err error) {
					bases[i], err = r.bareRun(ctx, b, firstRound(round, y.prefix+run.name))
					return err
				})
			}
			// The order turns from round to round, so that no side always
			// runs on a broker that has just done more work.
			if err := rotate(round, steps...); err != nil {
				return err
			}
			*run.rss = max(*run.rss, rss)
			sc, sb := stage.CPUPerRecord()
			r.logf("  %s on %s: %.0f/s, peak RSS %.1f MiB; CPU per record %v + broker %v", run.what, run.bare.Topic, stage.Rate(), mib(rss), sc, sb)
			for i, y := range yardsticks {
				p := Pair{Stage: stage, Base: bases[i]}
				*run.pairs[i] = append(*run.pairs[i], p)
				bc, bb := p.Base.CPUPerRecord()
				r.logf("    against the %s: %.0f/s, ratio %.2f; CPU per record %v + broker %v", y.what, p.Base.Rate(), p.Ratio(), bc, bb)
			}
		}
		return nil
	})
}

// mainOnFreshBroker fills a fresh broker's orders topic and measures n
// main-stage processes on it, with extra in their environment.
func (r *runner) mainOnFreshBroker(ctx context.Context, n, orders int, failProducts, profile string, extra ...string) (Throughput, error) {
	var t Throughput
	err := r.withBroker(ctx, r.top, func(client kafka.Client) error {
		if err := fill(ctx, client, r.top.Orders, orders, 1, false); err != nil {
			return err
		}
		var err error
		env := append(r.env(client, r.top, failProducts), extra...)
		t, _, err = r.stageRun(ctx, client, env, n, profile, r.top.Group(topology.StageMain), r.top.Orders, "run", "main")
		return err
	})
	return t, err
}

// failures measures row 5: half the orders failing against none.
func (r *runner) failures(ctx context.Context, rep *Report, round int) error {
	var p Pair
	fifty := func() (err error) {
		p.Stage, err = r.mainOnFreshBroker(ctx, 1, r.cfg.Orders, "Item1,Item2", firstRound(round, "main-50-failing"))
		return err
	}
	none := func() (err error) {
		p.Base, err = r.mainOnFreshBroker(ctx, 1, r.cfg.Orders, "", firstRound(round, "main-0-failing"))
		return err
	}
	if err := rotate(round, fifty, none); err != nil {
		return err
	}
	rep.Failures = append(rep.Failures, p)
	r.logf("  main stage with 50%% failing: %.0f/s, with 0%% failing: %.0f/s, ratio %.2f", p.Stage.Rate(), p.Base.Rate(), p.Ratio())
	return nil
}

// scalingBacklog is how many times Config.Orders the scaling runs pre-fill.
// Processes that start together join the group one after the other: the
// first takes every partition and works alone until the rebalance, about a
// heartbeat (1s) later, and at 500,000 orders/s it would take most of a
// smaller backlog with it. The measurement starts once all are assigned.
const scalingBacklog = 5

// scaling measures row 8 twice: with each process free to use every core,
// as one process already does, and with each held to one core
// (GOMAXPROCS=1), like a container with one CPU, where processes add CPU
// until the machine has none left.
func (r *runner) scaling(ctx context.Context, rep *Report) error {
	for _, c := range rep.scalingCurves() {
		var ts []Throughput
		for _, n := range r.cfg.Procs {
			t, err := r.mainOnFreshBroker(ctx, n, scalingBacklog*r.cfg.Orders, "Item3", "", c.env...)
			if err != nil {
				return err
			}
			sc, sb := t.CPUPerRecord()
			r.logf("  main stage, %d processes, %s: %v; CPU per record %v + broker %v", n, c.name, t, sc, sb)
			ts = append(ts, t)
		}
		*c.runs = append(*c.runs, ts)
	}
	return nil
}

// scalingCurve is one line of row 8: how its processes run, and its rounds.
type scalingCurve struct {
	name string   // as the plot's legend gives it
	env  []string // added to each process's environment
	runs *[][]Throughput
}

// scalingCurves are the lines of row 8, in the order they are measured and
// shown.
func (r *Report) scalingCurves() []scalingCurve {
	return []scalingCurve{
		{"every core each", nil, &r.Scaling},
		{"one core each", []string{"GOMAXPROCS=1"}, &r.ScalingOneCore},
	}
}

// label is the curve's name in the table: with its environment, if any.
func (c scalingCurve) label() string {
	if len(c.env) == 0 {
		return c.name
	}
	return c.name + " (" + strings.Join(c.env, " ") + ")"
}

// startProfile writes a CPU profile of this process to path until stop.
func startProfile(path string) (stop func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// rotate runs steps in turn, beginning with step round % len(steps), so
// that no side of a ratio always runs first on a shared machine: with two,
// a then b in even rounds and b then a in odd ones.
func rotate(round int, steps ...func() error) error {
	for i := range steps {
		if err := steps[(round+i)%len(steps)](); err != nil {
			return err
		}
	}
	return nil
}

// firstRound is the name of a profile to write in round 0, and none later.
func firstRound(round int, name string) string {
	if round > 0 {
		return ""
	}
	return name
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func nopLogger() *zap.Logger { return zap.NewNop() }

// Machine describes the machine: CPUs, CPU model and Go version.
func Machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%d CPUs (%s), %s", runtime.NumCPU(), model, runtime.Version())
}
