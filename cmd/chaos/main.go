// Command chaos runs the pipeline's fault-injection harness against the
// orders binary and exits non-zero on any violation of its guarantees.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/orderflow/orders/services/broker"
	"github.com/orderflow/orders/services/chaos"
)

func main() {
	var (
		cfg   chaos.Config
		mode  string
		kinds string
	)
	flag.StringVar(&cfg.Binary, "bin", "bin/orders", "the orders binary")
	flag.StringVar(&mode, "mode", string(chaos.ModeFull), "full: kill, stop and scale processes, kill the broker and inject protocol faults; cluster: protocol faults only, for -fault-time")
	flag.IntVar(&cfg.Nodes, "nodes", 3, "broker nodes")
	flag.IntVar(&cfg.Orders, "orders", 100000, "orders to produce")
	flag.Float64Var(&cfg.Rate, "rate", 2000, "orders per second")
	flag.IntVar(&cfg.Procs, "procs", 2, "processes of main and of each retry stage (and of the aggregator with -mode cluster)")
	flag.IntVar(&cfg.Partitions, "partitions", 6, "partitions of every topic")
	flag.IntVar(&cfg.MinKills, "kills", 20, "least number of SIGKILLs (-mode full)")
	flag.DurationVar(&cfg.SessionTimeout, "session-timeout", broker.DefaultGroupMinSessionTimeout, "SESSION_TIMEOUT of every stage")
	flag.DurationVar(&cfg.GroupMinSessionTimeout, "group-min-session-timeout", 0, "the broker's least session timeout (default Kafka's 6s)")
	flag.StringVar(&kinds, "faults", "", "comma-separated protocol fault kinds (default all: "+joinKinds(broker.FaultKinds)+"); \"none\" for none")
	flag.DurationVar(&cfg.FaultTime, "fault-time", 40*time.Second, "how long -mode cluster injects protocol faults")
	flag.DurationVar(&cfg.MinFaultGap, "min-fault-gap", time.Second, "least time from one protocol fault to the next")
	flag.DurationVar(&cfg.MaxFaultGap, "max-fault-gap", 2*time.Second, "longest time from one protocol fault to the next")
	flag.DurationVar(&cfg.MaxCatchUp, "max-catch-up", 15*time.Second, "with -mode cluster, the longest the groups may take to catch up after the faults")
	flag.Uint64Var(&cfg.Seed, "seed", 1, "seed of the orders and of the fault schedule")
	flag.StringVar(&cfg.WorkDir, "work-dir", "", "keep the broker data and process logs here (default: a temporary directory)")
	flag.DurationVar(&cfg.Timeout, "timeout", 20*time.Minute, "give up after this long")
	flag.Parse()
	cfg.Mode = chaos.Mode(mode)
	switch kinds {
	case "":
	case "none":
		cfg.Kinds = []broker.FaultKind{}
	default:
		for _, k := range strings.Split(kinds, ",") {
			cfg.Kinds = append(cfg.Kinds, broker.FaultKind(strings.TrimSpace(k)))
		}
	}

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

func joinKinds(ks []broker.FaultKind) string {
	var s []string
	for _, k := range ks {
		s = append(s, string(k))
	}
	return strings.Join(s, ",")
}
