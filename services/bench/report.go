package bench

import (
	"fmt"
	"strings"
	"time"
)

// Row is one line of the results table.
type Row struct {
	What, Stage, Baseline, Ratio string
	// Target is "-" for a row that is a measurement only: it is never
	// missed.
	Target string
	Met    bool
}

// noTarget is the Target of a measurement only.
const noTarget = "-"

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// medianRates are the median stage and yardstick rates of pairs and the
// median of their ratios, each ratio taken within its round.
func medianRates(pairs []Pair) (stage, base, q float64, ratios []string) {
	var ss, bs, qs []float64
	for _, p := range pairs {
		ss, bs, qs = append(ss, p.Stage.Rate()), append(bs, p.Base.Rate()), append(qs, p.Ratio())
		ratios = append(ratios, fmt.Sprintf("%.2f", p.Ratio()))
	}
	return median(ss), median(bs), median(qs), ratios
}

// medianCPU is the median CPU time per record of the consumer and of the
// broker, in microseconds.
func medianCPU(ts []Throughput) (consumer, broker float64) {
	var cs, bs []float64
	for _, t := range ts {
		c, b := t.CPUPerRecord()
		cs, bs = append(cs, float64(c)/1e3), append(bs, float64(b)/1e3)
	}
	return median(cs), median(bs)
}

func figure(ts []Throughput) string {
	var rates []float64
	for _, t := range ts {
		rates = append(rates, t.Rate())
	}
	c, b := medianCPU(ts)
	if c == 0 && b == 0 {
		return fmt.Sprintf("%.0f/s", median(rates))
	}
	return fmt.Sprintf("%.0f/s; CPU/record %.1f µs + broker %.1f µs", median(rates), c, b)
}

// ScalingMedians is the median rate of a scaling curve for each process
// count of Config.Procs.
func (r Report) ScalingMedians(curve [][]Throughput) []float64 {
	var out []float64
	for i := range r.Config.Procs {
		var rates []float64
		for _, t := range column(curve, i) {
			rates = append(rates, t.Rate())
		}
		out = append(out, median(rates))
	}
	return out
}

// column is the i-th process count's throughput of each round of curve.
func column(curve [][]Throughput, i int) []Throughput {
	var ts []Throughput
	for _, round := range curve {
		if i < len(round) {
			ts = append(ts, round[i])
		}
	}
	return ts
}

// scalingRow is row 8 for one curve.
func (r Report) scalingRow(what string, curve [][]Throughput) (Row, bool) {
	meds := r.ScalingMedians(curve)
	if len(curve) == 0 || len(meds) == 0 {
		return Row{}, false
	}
	var parts []string
	rising := true
	for i, m := range meds {
		part := fmt.Sprintf("%d: %.0f/s", r.Config.Procs[i], m)
		if c, b := medianCPU(column(curve, i)); c > 0 || b > 0 {
			part += fmt.Sprintf(" (CPU/record %.1f + %.1f µs)", c, b)
		}
		parts = append(parts, part)
		if i > 0 && m < meds[i-1] {
			rising = false
		}
	}
	return Row{
		What:  fmt.Sprintf("8. main stage scaling, processes on %d partitions, %s", r.Config.Partitions, what),
		Stage: strings.Join(parts, ", "), Baseline: fmt.Sprintf("1 process: %.0f/s", meds[0]),
		Ratio: fmt.Sprintf("**%.2f** (%d vs 1)", ratio(meds[len(meds)-1], meds[0]), r.Config.Procs[len(meds)-1]), Target: "does not fall", Met: rising,
	}, true
}

// Rows is the results table, with the rows of the parts that ran. Each of
// rows 1 to 3 is headed by the stage against the bare franz-go loop, its
// yardstick; the lines against the bare kafka-go loop, the yardstick
// before it, and against the loop on the stages' own client follow.
func (r Report) Rows() []Row {
	// tp is a throughput ratio row; target 0 makes it a measurement only.
	tp := func(what string, pairs []Pair, target float64) Row {
		_, _, q, ratios := medianRates(pairs)
		var st, bt []Throughput
		for _, p := range pairs {
			st, bt = append(st, p.Stage), append(bt, p.Base)
		}
		row := Row{What: what, Stage: figure(st), Baseline: figure(bt),
			Ratio:  fmt.Sprintf("**%.2f** (%s)", q, strings.Join(ratios, ", ")),
			Target: fmt.Sprintf(">= %.2f", target), Met: len(pairs) > 0 && q >= target}
		if target == 0 {
			row.Target, row.Met = noTarget, true
		}
		return row
	}
	var rows []Row
	if r.Config.runs(PartStages) {
		rows = append(rows,
			tp("1. main stage vs bare franz-go copy loop", r.MainFranzGo, 0.9),
			tp("1. main stage vs bare kafka-go copy loop", r.Main, 0.8),
			tp("1. main stage vs the copy loop on the stages' client", r.MainOwnClient, 0.8),
			tp("2. retry stage 1 (due backlog) vs bare franz-go copy loop", r.RetryFranzGo, 0.9),
			tp("2. retry stage 1 (due backlog) vs bare kafka-go copy loop", r.Retry, 0.8),
			tp("2. retry stage 1 vs the copy loop on the stages' client", r.RetryOwnClient, 0.8),
			tp("3. aggregator vs bare franz-go consume-and-commit loop", r.AggregatorFranzGo, 0.9),
			tp("3. aggregator vs bare kafka-go consume-and-commit loop", r.Aggregator, 0.8),
			tp("3. aggregator vs the consume-and-commit loop on the stages' client", r.AggregatorOwnClient, 0.8),
		)
	}
	for _, l := range r.Lateness {
		rows = append(rows, Row{
			What:     fmt.Sprintf("4. lateness, retry-%d (delay %v, %d records)", l.Stage, l.Delay, l.N),
			Stage:    fmt.Sprintf("p50 %s, p99 %s, max %s", ms(l.P50), ms(l.P99), ms(l.Max)),
			Baseline: fmt.Sprintf("%d early", l.Early),
			Ratio:    "-",
			Target:   "0 early, p99 < 100 ms",
			Met:      l.Early == 0 && l.P99 < 100*time.Millisecond && l.N > 0,
		})
	}
	if r.Config.runs(PartFailures) {
		rows = append(rows, tp("5. main stage, 50% failing vs 0% failing", r.Failures, 0))
	}
	for _, a := range r.Avro {
		q := ratio(a.NsOp, a.DirectNsOp)
		rows = append(rows, Row{
			What:     fmt.Sprintf("6. Avro %s vs hamba/avro direct", strings.ToLower(a.Name)),
			Stage:    fmt.Sprintf("%.0f ns/op, %.0f allocs/op", a.NsOp, a.AllocsOp),
			Baseline: fmt.Sprintf("%.0f ns/op, %.0f allocs/op", a.DirectNsOp, a.DirectAllocsOp),
			Ratio:    fmt.Sprintf("**%.2f**", q),
			Target:   "<= 1.20, allocs <= direct",
			Met:      q <= 1.2 && a.AllocsOp <= a.DirectAllocsOp,
		})
	}
	if r.Config.runs(PartStages) {
		rows = append(rows, Row{
			What:  "7. peak RSS of the main stage under row 1",
			Stage: fmt.Sprintf("%.1f MiB", mib(r.MainRSS)), Baseline: "-", Ratio: "-", Target: "< 64 MiB",
			Met: r.MainRSS > 0 && r.MainRSS < 64<<20,
		})
	}
	for _, c := range r.scalingCurves() {
		if row, ok := r.scalingRow(c.label(), *c.runs); ok {
			rows = append(rows, row)
		}
	}
	return append(rows, r.restoreRows()...)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// Markdown is the results table as Markdown.
func (r Report) Markdown() string {
	var b strings.Builder
	b.WriteString("| row | stage | baseline | ratio | target | met |\n|---|---|---|---|---|---|\n")
	for _, row := range r.Rows() {
		met := "yes"
		switch {
		case row.Target == noTarget:
			met = noTarget
		case !row.Met:
			met = "**no**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", row.What, row.Stage, row.Baseline, row.Ratio, row.Target, met)
	}
	return b.String()
}

// String is the report as printed by cmd/bench.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "bench: %d orders per throughput run (%d for scaling), %d partitions, batches of up to %d records, %d rounds (medians; ratios per round in brackets), %d orders at %.0f/s for the delays, in %v\n",
		r.Config.Orders, scalingBacklog*r.Config.Orders, r.Config.Partitions, r.Config.MaxBatch, r.Config.Rounds, r.Config.DelayOrders, r.Config.DelayRate, r.Elapsed.Round(time.Second))
	if len(r.Config.Only) > 0 || len(r.Config.Skip) > 0 {
		var ran []string
		for _, p := range Parts {
			if r.Config.runs(p) {
				ran = append(ran, p)
			}
		}
		fmt.Fprintf(&b, "parts run: %s\n", strings.Join(ran, ", "))
	}
	fmt.Fprintf(&b, "machine: %s\n", r.Machine)
	if r.Config.runs(PartStages) {
		fmt.Fprintf(&b, "peak RSS: main %.1f MiB, retry-1 %.1f MiB, aggregator %.1f MiB\n", mib(r.MainRSS), mib(r.RetryRSS), mib(r.AggRSS))
	}
	if res := r.Restore; res != nil {
		fmt.Fprintf(&b, "restore: %d processed orders written in %.1fs, the newest %d within %v of then; restarts after %d new orders each:\n  %s\n  %s\n  %s\n",
			res.History, res.Write.Seconds(), res.Inside, restoreHorizon, restoreNew, res.First, res.Horizon, res.Everything)
	}
	b.WriteString("\n")
	b.WriteString(r.Markdown())
	return b.String()
}
