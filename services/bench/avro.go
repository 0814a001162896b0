package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// AvroResult compares one schemas benchmark with the direct hamba/avro call.
type AvroResult struct {
	Name                     string // Decode or Encode
	NsOp, DirectNsOp         float64
	AllocsOp, DirectAllocsOp float64
	Raw                      string // the go test output, for benchstat
}

// RunAvro runs the schemas benchmarks count times in moduleDir and returns
// the median of each, Decode and Encode against their Direct twins. The
// test binary is built once and run count times, each run taking every
// benchmark in turn, so that a burst of load on a shared machine falls on
// both sides of a comparison alike.
func RunAvro(ctx context.Context, moduleDir string, count int) ([]AvroResult, error) {
	dir, err := os.MkdirTemp("", "orders-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "schemas.test")
	build := exec.CommandContext(ctx, "go", "test", "-c", "-o", bin, "./schemas/")
	build.Dir = moduleDir
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go test -c ./schemas/: %w\n%s", err, out)
	}
	var out []byte
	for range count {
		run := exec.CommandContext(ctx, bin, "-test.run=NONE", "-test.bench=.", "-test.benchmem", "-test.count=1")
		run.Dir = filepath.Join(moduleDir, "schemas")
		o, err := run.CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("schemas benchmarks: %w\n%s", err, o)
		}
		out = append(out, o...)
	}
	ns, allocs := map[string][]float64{}, map[string][]float64{}
	s := bufio.NewScanner(strings.NewReader(string(out)))
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) < 8 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(f[0], "Benchmark"), "-")
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				ns[name] = append(ns[name], v)
			case "allocs/op":
				allocs[name] = append(allocs[name], v)
			}
		}
	}
	var res []AvroResult
	for _, name := range []string{"Decode", "Encode"} {
		if len(ns[name]) == 0 || len(ns[name+"Direct"]) == 0 {
			return nil, fmt.Errorf("no %s benchmark in the output:\n%s", name, out)
		}
		res = append(res, AvroResult{
			Name: name, NsOp: median(ns[name]), DirectNsOp: median(ns[name+"Direct"]),
			AllocsOp: median(allocs[name]), DirectAllocsOp: median(allocs[name+"Direct"]), Raw: string(out),
		})
	}
	return res, nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
