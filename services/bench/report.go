package bench

import (
	"fmt"
	"strings"
	"time"
)

// Row is one line of the results table.
type Row struct {
	What, Stage, Baseline, Ratio, Target string
	Met                                  bool
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// Rows is the results table.
func (r Report) Rows() []Row {
	tp := func(what string, s, b Throughput, target float64) Row {
		q := ratio(s.Rate(), b.Rate())
		return Row{What: what, Stage: s.String(), Baseline: b.String(), Ratio: fmt.Sprintf("%.2f", q),
			Target: fmt.Sprintf(">= %.2f", target), Met: q >= target}
	}
	rows := []Row{
		tp("1. main stage vs bare copy loop", r.Main, r.MainBare, 0.8),
		tp("2. retry stage 1 (due backlog) vs bare copy loop", r.Retry, r.RetryBare, 0.8),
		tp("3. aggregator vs bare consume-and-commit loop", r.Aggregator, r.AggBare, 0.8),
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
	rows = append(rows, tp("5. main stage, 50% failing vs 0% failing", r.Fail50, r.Fail0, 0.85))
	for _, a := range r.Avro {
		q := ratio(a.NsOp, a.DirectNsOp)
		rows = append(rows, Row{
			What:     fmt.Sprintf("6. Avro %s vs hamba/avro direct", strings.ToLower(a.Name)),
			Stage:    fmt.Sprintf("%.0f ns/op, %.0f allocs/op", a.NsOp, a.AllocsOp),
			Baseline: fmt.Sprintf("%.0f ns/op, %.0f allocs/op", a.DirectNsOp, a.DirectAllocsOp),
			Ratio:    fmt.Sprintf("%.2f", q),
			Target:   "<= 1.20, allocs <= direct",
			Met:      q <= 1.2 && a.AllocsOp <= a.DirectAllocsOp,
		})
	}
	rows = append(rows, Row{
		What:  "7. peak RSS of the main stage under row 1",
		Stage: fmt.Sprintf("%.1f MiB", mib(r.MainRSS)), Baseline: "-", Ratio: "-", Target: "< 64 MiB",
		Met: r.MainRSS > 0 && r.MainRSS < 64<<20,
	})
	if len(r.Scaling) > 0 {
		var parts []string
		rising := true
		for i, t := range r.Scaling {
			parts = append(parts, fmt.Sprintf("%d: %.0f/s", r.Config.Procs[i], t.Rate()))
			if i > 0 && t.Rate() < r.Scaling[i-1].Rate() {
				rising = false
			}
		}
		last := r.Scaling[len(r.Scaling)-1]
		rows = append(rows, Row{
			What:  "8. main stage scaling, processes on 6 partitions",
			Stage: strings.Join(parts, ", "), Baseline: fmt.Sprintf("1: %.0f/s", r.Scaling[0].Rate()),
			Ratio: fmt.Sprintf("%.2f", ratio(last.Rate(), r.Scaling[0].Rate())), Target: "does not fall", Met: rising,
		})
	}
	return rows
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// Markdown is the results table as Markdown.
func (r Report) Markdown() string {
	var b strings.Builder
	b.WriteString("| row | stage | baseline | ratio | target | met |\n|---|---|---|---|---|---|\n")
	for _, row := range r.Rows() {
		met := "yes"
		if !row.Met {
			met = "**no**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", row.What, row.Stage, row.Baseline, row.Ratio, row.Target, met)
	}
	return b.String()
}

// String is the report as printed by cmd/bench.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "bench: %d orders per throughput run, %d partitions, %d orders at %.0f/s for the delays, in %v\n",
		r.Config.Orders, r.Config.Partitions, r.Config.DelayOrders, r.Config.DelayRate, r.Elapsed.Round(time.Second))
	fmt.Fprintf(&b, "machine: %s\n", r.Machine)
	fmt.Fprintf(&b, "peak RSS: main %.1f MiB, retry-1 %.1f MiB, aggregator %.1f MiB\n\n", mib(r.MainRSS), mib(r.RetryRSS), mib(r.AggRSS))
	b.WriteString(r.Markdown())
	return b.String()
}
