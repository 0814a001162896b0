package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/producer"
	"github.com/orderflow/orders/topology"
)

// Lateness of one retry stage: how long after its due time each record was
// handled.
type Lateness struct {
	Stage         int
	Delay         time.Duration
	N, Early      int
	P50, P99, Max time.Duration
}

// latenesses computes each retry stage's lateness from the failure
// histories of DLQ records: a record retried by stage k was due at the
// time of failure k plus delay k and handled at the time of failure k+1.
func latenesses(dls []envelope.DeadLetter, delays []time.Duration) []Lateness {
	per := make([][]time.Duration, len(delays))
	for _, d := range dls {
		for i := 1; i < len(d.Errors); i++ {
			k := d.Errors[i].Attempt - 1 // the retry stage that made attempt i+1
			if k < 1 || k > len(delays) || d.Errors[i-1].Attempt != k {
				continue
			}
			due := d.Errors[i-1].At.Add(delays[k-1])
			per[k-1] = append(per[k-1], d.Errors[i].At.Sub(due))
		}
	}
	out := make([]Lateness, len(delays))
	for k, ls := range per {
		slices.Sort(ls)
		l := Lateness{Stage: k + 1, Delay: delays[k], N: len(ls)}
		for _, d := range ls {
			if d < 0 {
				l.Early++
			}
		}
		if len(ls) > 0 {
			l.P50, l.P99, l.Max = quantile(ls, 0.50), quantile(ls, 0.99), ls[len(ls)-1]
		}
		out[k] = l
	}
	return out
}

// quantile of sorted values, nearest rank.
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(float64(len(sorted))*q+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// delays measures row 4: orders that always fail, produced at a steady
// rate through main and every retry stage, each stage one process.
func (r *runner) delays(ctx context.Context, rep *Report) error {
	top, err := topology.New(topology.Topology{Partitions: r.cfg.Partitions, Delays: r.cfg.Delays})
	if err != nil {
		return err
	}
	return r.withBroker(ctx, top, func(client kafka.Client) error {
		env := r.env(client, top, strings.Join(producer.Products, ","))
		var ps []*proc
		defer func() {
			for _, p := range ps {
				p.stop()
			}
		}()
		args := [][]string{{"run", "main"}}
		for k := 1; k <= top.Stages(); k++ {
			args = append(args, []string{"run", "retry", "--stage", fmt.Sprint(k)})
		}
		for _, a := range args {
			p, err := start(r.cfg.Binary, env, a...)
			if err != nil {
				return err
			}
			ps = append(ps, p)
		}
		ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		defer cancel()
		if err := waitFor(ctx, func() (bool, error) {
			for _, p := range ps {
				if err := p.exitErr(); err != nil {
					return false, err
				}
				if g, n := p.assignment(); g < 0 || n != top.Partitions {
					return false, nil
				}
			}
			return true, nil
		}); err != nil {
			return fmt.Errorf("stages not ready: %w", err)
		}
		r.logf("delays %v: %d failing orders at %.0f/s through main and %d retry stages", r.cfg.Delays, r.cfg.DelayOrders, r.cfg.DelayRate, top.Stages())
		prod, err := producer.New(producer.Config{Count: r.cfg.DelayOrders, Rate: r.cfg.DelayRate, Seed: 3}, client, top, nopLogger())
		if err != nil {
			return err
		}
		if err := prod.Run(ctx); err != nil {
			return err
		}
		dls := map[string]envelope.DeadLetter{}
		next := map[string]map[int]int64{}
		err = waitFor(ctx, func() (bool, error) {
			err := kafka.ReadNew(ctx, client, []string{top.DLQ}, next, func(m envelope.Record) error {
				d, err := envelope.ParseDeadLetter(m.Value)
				if err != nil {
					return fmt.Errorf("DLQ record %d/%d: %w", m.Partition, m.Offset, err)
				}
				if _, ok := dls[d.Key]; !ok {
					dls[d.Key] = d
				}
				return nil
			})
			return len(dls) >= r.cfg.DelayOrders, err
		})
		if err != nil {
			return fmt.Errorf("waiting for %d DLQ records (%d so far): %w", r.cfg.DelayOrders, len(dls), err)
		}
		all := make([]envelope.DeadLetter, 0, len(dls))
		for _, d := range dls {
			all = append(all, d)
		}
		rep.Lateness = latenesses(all, r.cfg.Delays)
		for _, l := range rep.Lateness {
			r.logf("  retry-%d: %d records, p50 %v, p99 %v, max %v, %d early", l.Stage, l.N, l.P50, l.P99, l.Max, l.Early)
		}
		return nil
	})
}

// waitFor polls cond every 100ms until it holds, fails or ctx ends.
func waitFor(ctx context.Context, cond func() (bool, error)) error {
	return waitEvery(ctx, 100*time.Millisecond, cond)
}

// waitEvery is waitFor, asking cond every d.
func waitEvery(ctx context.Context, d time.Duration, cond func() (bool, error)) error {
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
