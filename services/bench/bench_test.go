package bench_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orders/services/bench"
	"github.com/orderflow/orders/services/testkit"
)

// TestBenchSmoke runs every measurement but the Avro one on a small scale:
// each yields a positive figure, no retry is early, and the report and
// plots are written. The figures themselves are not checked: they depend
// on the machine.
func TestBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker and stage processes")
	}
	dir := t.TempDir()
	rep, err := bench.Run(t.Context(), bench.Config{
		Binary: testkit.Binary(t), Orders: 20000, Rounds: 1, Procs: []int{1},
		DelayOrders: 300, DelayRate: 500, Delays: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond},
		RestoreHistory: 20000, RestoreInside: 2000,
		OutDir: dir, Timeout: 2 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	pairs := map[string][]bench.Pair{
		"main, franz-go": rep.MainFranzGo, "retry, franz-go": rep.RetryFranzGo, "aggregator, franz-go": rep.AggregatorFranzGo,
		"main": rep.Main, "main, own client": rep.MainOwnClient, "retry": rep.Retry, "retry, own client": rep.RetryOwnClient,
		"aggregator": rep.Aggregator, "aggregator, own client": rep.AggregatorOwnClient, "failures": rep.Failures,
	}
	for name, ps := range pairs {
		if len(ps) != 1 || ps[0].Stage.Rate() <= 0 || ps[0].Base.Rate() <= 0 || ps[0].Stage.CPU <= 0 || ps[0].Base.CPU <= 0 {
			t.Errorf("%s: %+v, want one round with positive rates and CPU times", name, ps)
		}
	}
	for _, curve := range [][][]bench.Throughput{rep.Scaling, rep.ScalingOneCore} {
		if len(curve) != 1 || len(curve[0]) != 1 || curve[0][0].Rate() <= 0 || curve[0][0].CPU <= 0 {
			t.Errorf("scaling: %+v", curve)
		}
	}
	if rep.MainRSS <= 0 {
		t.Errorf("main stage peak RSS %d", rep.MainRSS)
	}
	if len(rep.Lateness) != 2 {
		t.Fatalf("lateness of %d stages, want 2", len(rep.Lateness))
	}
	for _, l := range rep.Lateness {
		if l.N != 300 || l.Early != 0 {
			t.Errorf("retry-%d: %d records, %d early; want 300, 0", l.Stage, l.N, l.Early)
		}
	}
	if res := rep.Restore; res == nil || res.History != 20000 || res.Inside != 2000 {
		t.Errorf("restore: %+v", res)
	} else {
		for _, c := range []bench.Catchup{res.First, res.Horizon, res.Everything} {
			if c.Elapsed <= 0 || c.PeakRSS <= 0 || c.Orders < 20000 {
				t.Errorf("restore: %+v, want a positive time and peak RSS", c)
			}
		}
		if res.Horizon.Orders != 21000 || res.Everything.Orders != 21000 {
			t.Errorf("restore: the restarts counted %d and %d orders, want 21000 each: each history's 20000 and 1000 more",
				res.Horizon.Orders, res.Everything.Orders)
		}
	}
	if md := rep.Markdown(); strings.Count(md, "1. main stage") != 3 || strings.Count(md, "2. retry stage 1") != 3 || strings.Count(md, "3. aggregator") != 3 || strings.Count(md, "8. main stage scaling") != 2 || strings.Count(md, "| 9. ") != 2 {
		t.Errorf("table:\n%s", md)
	}
	for _, f := range []string{"scaling.svg", "lateness.svg"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || !strings.Contains(string(b), "<svg") || !strings.HasSuffix(strings.TrimSpace(string(b)), "</svg>") {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// at is one round for each ratio: a stage at q times a yardstick's 1000/s.
func at(qs ...float64) []bench.Pair {
	var ps []bench.Pair
	for _, q := range qs {
		ps = append(ps, bench.Pair{
			Stage: bench.Throughput{Records: int64(q * 1000), Elapsed: time.Second},
			Base:  bench.Throughput{Records: 1000, Elapsed: time.Second},
		})
	}
	return ps
}

// TestRowsTargets checks the lines of rows 1 to 3 and 5: the franz-go
// yardstick heads each of rows 1 to 3 with a target of its own, the
// kafka-go and own-client lines keep theirs, and row 5 is a measurement
// that is never missed.
func TestRowsTargets(t *testing.T) {
	rep := bench.Report{
		MainFranzGo: at(0.85, 0.89, 0.95), Main: at(0.85), MainOwnClient: at(0.79),
		RetryFranzGo: at(0.9), Retry: at(0.5), RetryOwnClient: at(1.2),
		Aggregator: at(2), AggregatorOwnClient: at(0.8), // no franz-go round
		Failures: at(0.1),
	}
	want := []struct {
		what, target, ratio string
		met                 bool
	}{
		{"1. main stage vs bare franz-go copy loop", ">= 0.90", "**0.89** (0.85, 0.89, 0.95)", false},
		{"1. main stage vs bare kafka-go copy loop", ">= 0.80", "**0.85** (0.85)", true},
		{"1. main stage vs the copy loop on the stages' client", ">= 0.80", "**0.79** (0.79)", false},
		{"2. retry stage 1 (due backlog) vs bare franz-go copy loop", ">= 0.90", "**0.90** (0.90)", true},
		{"2. retry stage 1 (due backlog) vs bare kafka-go copy loop", ">= 0.80", "**0.50** (0.50)", false},
		{"2. retry stage 1 vs the copy loop on the stages' client", ">= 0.80", "**1.20** (1.20)", true},
		{"3. aggregator vs bare franz-go consume-and-commit loop", ">= 0.90", "**0.00** ()", false},
		{"3. aggregator vs bare kafka-go consume-and-commit loop", ">= 0.80", "**2.00** (2.00)", true},
		{"3. aggregator vs the consume-and-commit loop on the stages' client", ">= 0.80", "**0.80** (0.80)", true},
		{"5. main stage, 50% failing vs 0% failing", "-", "**0.10** (0.10)", true},
	}
	rows := rep.Rows()
	if len(rows) < len(want) {
		t.Fatalf("%d rows, want at least %d", len(rows), len(want))
	}
	for i, w := range want {
		r := rows[i]
		if r.What != w.what || r.Target != w.target || r.Ratio != w.ratio || r.Met != w.met {
			t.Errorf("row %d: %q target %q ratio %q met %v; want %q target %q ratio %q met %v",
				i, r.What, r.Target, r.Ratio, r.Met, w.what, w.target, w.ratio, w.met)
		}
	}
	md := rep.Markdown()
	for _, line := range []string{
		"| 1. main stage vs bare franz-go copy loop | 890/s | 1000/s | **0.89** (0.85, 0.89, 0.95) | >= 0.90 | **no** |",
		"| 2. retry stage 1 (due backlog) vs bare franz-go copy loop | 900/s | 1000/s | **0.90** (0.90) | >= 0.90 | yes |",
		"| 5. main stage, 50% failing vs 0% failing | 100/s | 1000/s | **0.10** (0.10) | - | - |",
	} {
		if !strings.Contains(md, line+"\n") {
			t.Errorf("table lacks\n%s\n%s", line, md)
		}
	}
}

// TestRestoreRow checks row 9: the restart with the horizon against the
// one covering every order, met only within 2 s and 100 MiB, and the
// first count as a measurement only.
func TestRestoreRow(t *testing.T) {
	catchup := func(s float64, mib int64) bench.Catchup {
		return bench.Catchup{Elapsed: time.Duration(s * float64(time.Second)), PeakRSS: mib << 20}
	}
	for _, c := range []struct {
		horizon bench.Catchup
		met     bool
	}{
		{catchup(1.5, 90), true}, {catchup(2, 100), true}, {catchup(2.1, 90), false},
		{catchup(1.5, 101), false}, {catchup(0, 90), false}, {catchup(1.5, 0), false},
	} {
		rep := bench.Report{Config: bench.Config{Only: []string{bench.PartRestore}}, Restore: &bench.Restore{
			History: 10_000_000, Inside: 1_000_000, First: catchup(10, 800), Horizon: c.horizon, Everything: catchup(6, 1300),
		}}
		rows := rep.Rows()
		if len(rows) != 2 {
			t.Fatalf("%d rows, want the 2 of row 9:\n%s", len(rows), rep.Markdown())
		}
		if r := rows[0]; r.What != "9. restarted aggregator catch-up, 1M of 10M orders inside the horizon" ||
			r.Baseline != "6.00 s, 1300.0 MiB peak RSS" || r.Target != "<= 2 s and <= 100 MiB" || r.Met != c.met {
			t.Errorf("%+v: %+v, met %v", c.horizon, r, c.met)
		}
		if r := rows[1]; r.Target != "-" || r.Stage != "1000000/s (10.0 s), 800.0 MiB peak RSS" {
			t.Errorf("first count: %+v", r)
		}
	}
	rep := bench.Report{Config: bench.Config{Only: []string{bench.PartRestore}}, Restore: &bench.Restore{
		History: 200_000, Inside: 20_000, First: catchup(0.2, 40), Horizon: catchup(0.5, 50), Everything: catchup(1, 60),
	}}
	line := "| 9. restarted aggregator catch-up, 20k of 200k orders inside the horizon | 0.50 s, 50.0 MiB peak RSS | 1.00 s, 60.0 MiB peak RSS | **0.50** | <= 2 s and <= 100 MiB | yes |\n"
	if md := rep.Markdown(); !strings.Contains(md, line) {
		t.Errorf("table lacks\n%s%s", line, md)
	}
	if rows := (bench.Report{Config: bench.Config{Skip: []string{bench.PartRestore}}}).Rows(); len(rows) == 0 || strings.HasPrefix(rows[len(rows)-1].What, "9.") {
		t.Errorf("row 9 without its measurement: %+v", rows)
	}
}

// TestRunRefusesBadParts checks that a run fails before it starts anything
// when told of a part that does not exist or of more orders inside the
// horizon than in the history.
func TestRunRefusesBadParts(t *testing.T) {
	for _, cfg := range []bench.Config{
		{Binary: "/nonexistent", Only: []string{"restores"}},
		{Binary: "/nonexistent", Skip: []string{"Stages"}},
		{Binary: "/nonexistent", Only: []string{bench.PartRestore}, RestoreHistory: 10, RestoreInside: 11},
	} {
		if _, err := bench.Run(t.Context(), cfg); err == nil || strings.Contains(err.Error(), "nonexistent") {
			t.Errorf("%+v: %v, want an error about the configuration", cfg, err)
		}
	}
}
