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
	s := &settings{}
	root := &cobra.Command{
		Use:   "orders",
		Short: "A retry-topic staged order pipeline on Kafka",
		Long: `orders runs a Kafka order pipeline in which every stage is its own process:
main (orders -> orders_processed), retry stages 1..N (each waits its delay), the DLQ,
and an aggregator that keeps the running average price.

Every setting is a flag and an environment variable; flags win.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			applyEnv(cmd, s.list())
		},
	}
	s.register(root.PersistentFlags())
	root.AddCommand(
		brokerCmd(s), topicsCmd(s), produceCmd(s), runCmd(s), statsCmd(s), demoCmd(s), aclsCmd(s),
		inspectCmd(s), traceCmd(s), dlqCmd(s),
	)
	return root
}
