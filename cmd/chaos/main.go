// Command chaos runs the pipeline's fault-injection harness against the
// orders binary and exits non-zero on any violation of its guarantees.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/orderflow/orders/services/chaos"
)

func main() {
	var cfg chaos.Config
	flag.StringVar(&cfg.Binary, "bin", "bin/orders", "the orders binary")
	flag.IntVar(&cfg.Orders, "orders", 100000, "orders to produce")
	flag.Float64Var(&cfg.Rate, "rate", 2000, "orders per second")
	flag.IntVar(&cfg.Procs, "procs", 2, "processes of main and of each retry stage")
	flag.IntVar(&cfg.Partitions, "partitions", 6, "partitions of every topic")
	flag.IntVar(&cfg.MinKills, "kills", 20, "least number of SIGKILLs")
	flag.Uint64Var(&cfg.Seed, "seed", 1, "seed of the orders and of the fault schedule")
	flag.StringVar(&cfg.WorkDir, "work-dir", "", "keep the broker data and process logs here (default: a temporary directory)")
	flag.DurationVar(&cfg.Timeout, "timeout", 20*time.Minute, "give up after this long")
	flag.Parse()

	log, _ := zap.NewDevelopment()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	rep, err := chaos.Run(ctx, cfg, log)
	stop()
	fmt.Print(rep)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
	if len(rep.Violations) > 0 {
		os.Exit(1)
	}
}
