// Command bench measures every stage of the pipeline against the bare Kafka
// client (make bench): it prints the results table and writes the plots.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/orderflow/orders/services/bench"
	"github.com/orderflow/orders/services/stage"
)

func main() {
	var cfg bench.Config
	flag.StringVar(&cfg.Binary, "bin", "bin/orders", "the orders binary")
	flag.IntVar(&cfg.Orders, "orders", 500000, "orders pre-filled for each throughput run")
	flag.IntVar(&cfg.DelayOrders, "delay-orders", 10000, "failing orders produced for the delay accuracy")
	flag.Float64Var(&cfg.DelayRate, "delay-rate", 1000, "orders per second for the delay accuracy")
	flag.IntVar(&cfg.MaxBatch, "max-batch", stage.DefaultMaxBatch, "most records a stage or a bare loop handles, writes and commits together")
	flag.IntVar(&cfg.Rounds, "rounds", 5, "rounds of each throughput measurement; the table gives the medians")
	flag.StringVar(&cfg.ProfileDir, "profile", "", "write a CPU profile of each stage process of the first round here")
	flag.StringVar(&cfg.ModuleDir, "module", ".", "module root for the Avro benchmarks; empty skips them")
	flag.StringVar(&cfg.OutDir, "out", "services/bench/results", "directory for the plots and the table; empty writes none")
	flag.IntVar(&cfg.RestoreHistory, "restore-history", 10_000_000, "processed orders the aggregator counts before row 9 restarts it")
	flag.IntVar(&cfg.RestoreInside, "restore-inside", 1_000_000, "the newest of them, inside the de-duplication horizon of row 9's restart")
	parts := strings.Join(bench.Parts, ", ")
	flag.Func("only", "run only these parts, comma-separated: "+parts, list(&cfg.Only))
	flag.Func("skip", "skip these parts, comma-separated: "+parts, list(&cfg.Skip))
	flag.Parse()
	cfg.Progress = os.Stderr
	if cfg.Binary != "" {
		abs, err := filepath.Abs(cfg.Binary)
		if err == nil {
			cfg.Binary = abs
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	rep, err := bench.Run(ctx, cfg)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	fmt.Println(rep)
	if cfg.OutDir != "" {
		files := map[string]string{"results.md": rep.String()}
		if len(rep.Avro) > 0 {
			files["avro-bench.txt"] = rep.Avro[0].Raw // for benchstat
		}
		for name, text := range files {
			if err := os.WriteFile(filepath.Join(cfg.OutDir, name), []byte(text), 0o644); err != nil {
				fmt.Fprintln(os.Stderr, "bench:", err)
				os.Exit(1)
			}
		}
	}
}

// list sets *to to the comma-separated names of a flag's value.
func list(to *[]string) func(string) error {
	return func(v string) error {
		for _, n := range strings.Split(v, ",") {
			if n = strings.TrimSpace(n); n != "" {
				*to = append(*to, n)
			}
		}
		return nil
	}
}
