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
		OutDir: dir, Timeout: 2 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	pairs := map[string][]bench.Pair{
		"main": rep.Main, "main, own client": rep.MainOwnClient, "retry": rep.Retry, "retry, own client": rep.RetryOwnClient,
		"aggregator": rep.Aggregator, "aggregator, own client": rep.AggregatorOwnClient, "failures": rep.Failures,
	}
	for name, ps := range pairs {
		if len(ps) != 1 || ps[0].Stage.Rate() <= 0 || ps[0].Base.Rate() <= 0 {
			t.Errorf("%s: %+v, want one round with positive rates", name, ps)
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
	if md := rep.Markdown(); strings.Count(md, "1. main stage") != 2 || strings.Count(md, "2. retry stage 1") != 2 || strings.Count(md, "3. aggregator") != 2 || strings.Count(md, "8. main stage scaling") != 2 {
		t.Errorf("table:\n%s", md)
	}
	for _, f := range []string{"scaling.svg", "lateness.svg"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || !strings.Contains(string(b), "<svg") || !strings.HasSuffix(strings.TrimSpace(string(b)), "</svg>") {
			t.Errorf("%s: %v", f, err)
		}
	}
}
