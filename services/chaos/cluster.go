package chaos

// Protocol faults, injected through the broker's fault control while
// orders flow: the broker runs as its own process, which the harness
// SIGKILLs for real, so the faults, which need the kfake cluster in that
// process, are asked for over its loopback fault control (orders broker
// --fault-control) rather than run in this one.

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/orderflow/orders/services/broker"
	"github.com/orderflow/orders/topology"
)

// control is the address of the running broker's fault control; it
// changes when the broker is restarted and is "" while it is down.
type control struct {
	mu   sync.Mutex
	addr string
}

func (c *control) set(addr string) {
	c.mu.Lock()
	c.addr = addr
	c.mu.Unlock()
}

func (c *control) get() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addr
}

// injector injects a protocol fault every MinFaultGap to MaxFaultGap, each
// in its own goroutine, so that a fault that lasts overlaps the next as on
// a real cluster. The kinds come in seeded shuffles of Kinds, so that
// every kind comes once in every len(Kinds) faults.
type injector struct {
	cfg     Config
	top     topology.Topology
	control *control
	log     *zap.Logger
	rnd     *rand.Rand
	// topics the produce faults hit: every topic a stage writes. The
	// producer's topic is left alone: it is the load, not the system
	// under test.
	topics []string

	mu       sync.Mutex
	results  []broker.FaultResult
	failures []string
	deck     []broker.FaultKind
}

func newInjector(cfg Config, top topology.Topology, ctl *control, log *zap.Logger) *injector {
	in := &injector{cfg: cfg, top: top, control: ctl, log: log, rnd: rand.New(rand.NewPCG(cfg.Seed, 11))}
	for _, t := range top.Topics() {
		if t != top.Orders {
			in.topics = append(in.topics, t)
		}
	}
	return in
}

// run injects faults until more reports false or ctx ends, then waits for
// the faults in force to end.
func (in *injector) run(ctx context.Context, more func() bool) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for len(in.cfg.Kinds) > 0 && more() {
		f := in.next()
		wg.Go(func() { in.inject(ctx, f) })
		gap := in.cfg.MinFaultGap + time.Duration(in.rnd.Int64N(int64(in.cfg.MaxFaultGap-in.cfg.MinFaultGap)+1))
		t := time.NewTimer(gap)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// next is the next fault of the schedule.
func (in *injector) next() broker.Fault {
	if len(in.deck) == 0 {
		in.deck = append([]broker.FaultKind(nil), in.cfg.Kinds...)
		in.rnd.Shuffle(len(in.deck), func(i, j int) { in.deck[i], in.deck[j] = in.deck[j], in.deck[i] })
	}
	f := broker.Fault{Kind: in.deck[0], Node: int32(in.rnd.IntN(in.cfg.Nodes)), For: in.cfg.FaultDuration,
		Throttle: in.cfg.Throttle, Topics: in.topics}
	in.deck = in.deck[1:]
	if f.Kind == broker.FaultTruncation {
		k := 1 + in.rnd.IntN(in.top.Stages())
		f.Topic, f.Group, f.Wait = in.top.InputTopic(k), in.top.Group(topology.RetryStageName(k)), 3*time.Second
	}
	return f
}

func (in *injector) inject(ctx context.Context, f broker.Fault) {
	addr := in.control.get()
	if addr == "" {
		in.fail(f, "the broker is down")
		return
	}
	res, err := broker.FaultControl{Addr: addr}.Inject(ctx, f)
	if err != nil {
		in.fail(f, err.Error())
		return
	}
	in.log.Info("fault injected", zap.String("kind", string(res.Kind)), zap.Int("hits", res.Hits), zap.String("detail", res.Detail))
	in.mu.Lock()
	in.results = append(in.results, res)
	in.mu.Unlock()
}

func (in *injector) fail(f broker.Fault, why string) {
	in.log.Info("fault not injected", zap.String("kind", string(f.Kind)), zap.String("why", why))
	in.mu.Lock()
	in.failures = append(in.failures, string(f.Kind)+": "+why)
	in.mu.Unlock()
}

func (in *injector) done() ([]broker.FaultResult, []string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]broker.FaultResult(nil), in.results...), append([]string(nil), in.failures...)
}
