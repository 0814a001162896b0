package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/orderflow/orders/services/admin"
	"github.com/orderflow/orders/services/aggregator"
	"github.com/orderflow/orders/services/broker"
	"github.com/orderflow/orders/services/metrics"
	"github.com/orderflow/orders/services/outcome"
	"github.com/orderflow/orders/services/processor"
	"github.com/orderflow/orders/services/producer"
	"github.com/orderflow/orders/services/registry"
)

func demoCmd(s *settings) *cobra.Command {
	var pcfg producer.Config
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole pipeline in one process on an embedded broker",
		Long: `Start an embedded broker on a free port (unless --brokers or KAFKA_BROKERS is
given), create the topics, run every stage and the producer in this process
and stream their log. With --count N it stops once all N orders have reached
an outcome and prints a summary; with --count 0 it runs until interrupted.
With --value-format confluent it also starts an embedded schema registry
(unless --schema-registry-url or SCHEMA_REGISTRY_URL is given).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			embedded := !s.given("brokers")
			if embedded {
				s.brokers = []string{"127.0.0.1:0"}
			}
			if s.valueFormat == formatConfluent && s.registryURL == "" {
				reg, err := registry.Serve("127.0.0.1:0")
				if err != nil {
					return fmt.Errorf("embedded schema registry: %w", err)
				}
				defer reg.Close()
				s.registryURL = reg.URL()
			}
			c, err := s.load()
			if err != nil {
				return err
			}
			if err := pcfg.Validate(); err != nil {
				return err
			}
			ctx := cmd.Context()
			if embedded {
				b, err := broker.Start(broker.Config{Listen: "127.0.0.1:0", Partitions: c.topology.Partitions}, c.log)
				if err != nil {
					return err
				}
				defer b.Close()
				c.client.Brokers = []string{b.Addr()}
				c.log.Info("embedded broker started", zap.String("addr", b.Addr()))
			}
			if _, err := admin.EnsureTopics(ctx, c.client, c.topology, c.check); err != nil {
				return err
			}
			modules := []fx.Option{c.provide(), metrics.Module, processor.MainModule, aggregator.Module, producer.Module, fx.Supply(pcfg)}
			for k := 1; k <= c.topology.Stages(); k++ {
				m, err := processor.RetryModule(c.topology, k)
				if err != nil {
					return err
				}
				modules = append(modules, m)
			}
			done := make(chan struct{})
			var summary outcome.Summary
			var waitErr error
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			if pcfg.Count > 0 {
				go func() {
					defer close(done)
					t, tot, err := outcome.Wait(wctx, c.client, c.topology, c.values, pcfg.Count, 500*time.Millisecond)
					summary, waitErr = t.Summary(tot), err
				}()
			}
			if err := runApp(ctx, c.log, done, modules...); err != nil {
				return err
			}
			cancel()
			if pcfg.Count == 0 {
				return nil
			}
			<-done
			if waitErr != nil {
				if ctx.Err() != nil {
					return nil
				}
				return waitErr
			}
			out := cmd.OutOrStdout()
			fmt.Fprintln(out, "demo summary")
			fmt.Fprintf(out, "  produced:             %d\n", pcfg.Count)
			fmt.Fprintf(out, "  processed:            %d\n", summary.Processed)
			fmt.Fprintf(out, "  dead-lettered:        %d\n", summary.DeadLettered)
			fmt.Fprintf(out, "  recovered by a retry: %d\n", summary.Recovered)
			fmt.Fprintf(out, "  running average:      %.4f over %d orders\n", summary.Average, summary.AverageCount)
			return nil
		},
	}
	producerFlags(cmd, &pcfg, 20, "orders to produce; the demo stops once all have an outcome (0: run until interrupted)", 5)
	return cmd
}
