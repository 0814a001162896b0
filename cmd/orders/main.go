// Command orders runs the retry-topic order pipeline: an embedded broker,
// topic creation, the producer, each stage as its own process, stats and a
// one-process demo.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/spf13/cobra"
)

// exitError carries a specific exit code out of a command.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit code %d", e.code) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	var ee exitError
	switch {
	case errors.As(err, &ee):
		os.Exit(ee.code)
	case err != nil:
		fmt.Fprintln(os.Stderr, "orders:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	s := newSettings()
	var cpuProfile, memProfile string
	var stopProfile func()
	root := &cobra.Command{
		Use:   "orders",
		Short: "A retry-topic staged order pipeline on Kafka",
		Long: `orders runs a Kafka order pipeline in which every stage is its own process:
main (orders -> orders_processed), retry stages 1..N (each waits its delay), the DLQ,
and an aggregator that keeps the running average price.

Every setting is a flag and an environment variable, which a command's --help
shows as [$NAME]; a flag wins over its variable. Each command has the settings
it uses: the Kafka and pipeline settings are on the commands that talk to
Kafka (see orders run main --help).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd.Flags()); err != nil {
				return err
			}
			var err error
			stopProfile, err = startProfiles(cpuProfile, memProfile)
			return err
		},
		PersistentPostRun: func(*cobra.Command, []string) {
			if stopProfile != nil {
				stopProfile()
			}
		},
	}
	// For profiling a stage under load (make bench writes its profiles
	// with it); not a setting, so it has no environment variable.
	root.PersistentFlags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the command to this file")
	_ = root.PersistentFlags().MarkHidden("cpuprofile")
	root.PersistentFlags().StringVar(&memProfile, "memprofile", "", "write the allocations of the command to this file when it ends")
	_ = root.PersistentFlags().MarkHidden("memprofile")
	// The embedded broker is no Kafka client: it takes the log settings only.
	root.AddCommand(withFlags(brokerCmd(s), s.logFlags))
	for _, cmd := range []*cobra.Command{
		topicsCmd(s), produceCmd(s), runCmd(s), statsCmd(s), demoCmd(s), aclsCmd(s),
		inspectCmd(s), traceCmd(s), dlqCmd(s),
	} {
		root.AddCommand(withFlags(cmd, s.logFlags, s.clientFlags, s.pipelineFlags, s.valueFlags))
	}
	return root
}

// startProfiles starts a CPU profile to cpu and an allocation profile to
// mem, each if not empty, and returns the function that writes them.
func startProfiles(cpu, mem string) (func(), error) {
	stopCPU := func() {}
	if cpu != "" {
		f, err := os.Create(cpu)
		if err != nil {
			return nil, fmt.Errorf("--cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("--cpuprofile: %w", err)
		}
		stopCPU = func() {
			pprof.StopCPUProfile()
			f.Close()
		}
	}
	return func() {
		stopCPU()
		if mem == "" {
			return
		}
		f, err := os.Create(mem)
		if err != nil {
			fmt.Fprintln(os.Stderr, "--memprofile:", err)
			return
		}
		defer f.Close()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			fmt.Fprintln(os.Stderr, "--memprofile:", err)
		}
	}, nil
}
