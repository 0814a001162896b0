package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/orderflow/orders/services/admin"
	"github.com/orderflow/orders/services/aggregator"
	"github.com/orderflow/orders/services/broker"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/metrics"
	"github.com/orderflow/orders/services/processor"
	"github.com/orderflow/orders/services/producer"
	"github.com/orderflow/orders/services/registry"
)

func brokerCmd(s *settings) *cobra.Command {
	var (
		cfg          broker.Config
		usersFile    string
		superusers   []string
		registryAddr string
	)
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Run an embedded Kafka-protocol broker of one or more nodes",
		Long: `Run an embedded Kafka-protocol broker (franz-go's kfake) for machines without
Kafka: one node, or with --nodes N a cluster of N nodes in one process, whose
partitions' leaders are spread over the nodes. With --data-dir, topics,
records, committed offsets and groups survive a restart (restart a cluster on
the same --listen addresses). Stops on SIGINT or SIGTERM.

Consumer groups are held to Kafka's session-timeout bounds (6s to 30m by
default): a member asking for a session timeout outside them is refused with
INVALID_SESSION_TIMEOUT, as a real cluster refuses it.

Secured: --tls-cert-file/--tls-key-file make it speak TLS only,
--sasl-users-file makes it require SASL, and --acls makes it enforce ACLs
(see orders acls). Passwords in the users file are never logged.

--fault-control serves the broker's fault API (elections, coordinator moves,
refused, failed and timed-out produce requests, throttled fetches, truncated
partitions) on a loopback address, for tests and trials; never in production.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := s.logger()
			if err != nil {
				return err
			}
			if usersFile != "" {
				if cfg.Users, err = broker.ReadUsersFile(usersFile); err != nil {
					return fmt.Errorf("--sasl-users-file: %w", err)
				}
			}
			for _, name := range superusers {
				found := false
				for i := range cfg.Users {
					if cfg.Users[i].Name == name {
						cfg.Users[i].Super, found = true, true
					}
				}
				if !found {
					return fmt.Errorf("--superusers: %q is not a user of --sasl-users-file", name)
				}
			}
			if cfg.Nodes < 1 {
				return fmt.Errorf("--nodes: %d: want at least 1", cfg.Nodes)
			}
			if registryAddr != "" {
				reg, err := registry.Serve(registryAddr)
				if err != nil {
					return fmt.Errorf("--schema-registry: %w", err)
				}
				defer reg.Close()
				fmt.Fprintf(cmd.OutOrStdout(), "schema registry listening on %s\n", reg.URL())
			}
			b, err := broker.Start(cfg, log)
			if err != nil {
				return err
			}
			if a := b.FaultControlAddr(); a != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "fault control listening on %s\n", a)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "broker listening on %s\n", b.Addr())
			<-cmd.Context().Done()
			b.Close()
			fmt.Fprintln(cmd.OutOrStdout(), "broker stopped")
			return nil
		},
	}
	cmd.Flags().IntVar(&cfg.Nodes, "nodes", 1, "number of broker nodes, each on its own address")
	cmd.Flags().StringVar(&cfg.Listen, "listen", "127.0.0.1:9092", "address to listen on: with --nodes N, one host:port per node (comma-separated), or one whose port P gives the nodes P to P+N-1; port 0 gives every node a free port")
	cmd.Flags().StringVar(&cfg.DataDir, "data-dir", "", "directory that keeps the broker's data across restarts (default: in memory)")
	cmd.Flags().BoolVar(&cfg.SyncWrites, "sync-writes", false, "with --data-dir, fsync each produced batch before acknowledging it")
	cmd.Flags().DurationVar(&cfg.GroupMinSessionTimeout, "group-min-session-timeout", broker.DefaultGroupMinSessionTimeout, "least session timeout a group member may ask for (Kafka's group.min.session.timeout.ms)")
	cmd.Flags().DurationVar(&cfg.GroupMaxSessionTimeout, "group-max-session-timeout", broker.DefaultGroupMaxSessionTimeout, "greatest session timeout a group member may ask for (Kafka's group.max.session.timeout.ms)")
	cmd.Flags().StringVar(&cfg.TLSCertFile, "tls-cert-file", "", "PEM certificate: the listener speaks TLS only (with --tls-key-file)")
	cmd.Flags().StringVar(&cfg.TLSKeyFile, "tls-key-file", "", "PEM key of --tls-cert-file")
	cmd.Flags().StringVar(&usersFile, "sasl-users-file", "", "require SASL: a file of one user a line, \"mechanism username password\" (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)")
	cmd.Flags().StringVar(&registryAddr, "schema-registry", "", "also serve a Confluent-compatible schema registry, in memory, on this address (host:port; port 0 picks one)")
	cmd.Flags().StringSliceVar(&superusers, "superusers", nil, "comma-separated users of --sasl-users-file that bypass ACLs (for orders acls --apply)")
	cmd.Flags().BoolVar(&cfg.ACLs, "acls", false, "enforce ACLs: users other than --superusers may do only what an ACL allows (needs --sasl-users-file)")
	cmd.Flags().StringVar(&cfg.FaultControl, "fault-control", "", "for tests and trials: serve the fault API over HTTP on this loopback host:port (port 0 picks one; it prints 'fault control listening on ADDR')")
	return cmd
}

func topicsCmd(s *settings) *cobra.Command {
	var check bool
	cmd := &cobra.Command{
		Use:   "topics",
		Short: "Create the pipeline topics, or check the cluster against the topology",
		Long: `Create orders, the retry topics, the DLQ, orders_processed, the aggregator's
state topic (compacted) and the DLQ replay log with PARTITIONS partitions and
REPLICATION replicas, and add partitions where a topic has fewer than it needs.
Topics that fit are left alone. It says what it cannot fix (topic configs:
retention, cleanup policy, timestamp type) and then exits 1.

With --check it changes nothing and reports drift: missing topics, fewer
partitions than configured or than orders, a retry topic whose retention is not
longer than its delay, a DLQ kept for less than DLQ_MIN_RETENTION, a state
topic that is not compacted, whose records expire or carry LogAppendTime, a
replay log whose records expire. It exits 1 on any drift.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := s.load()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if check {
				states, drifts, err := admin.Check(cmd.Context(), c.client, c.topology, c.check)
				if err != nil {
					return err
				}
				for _, st := range states {
					if st.Partitions == 0 {
						continue // reported as a drift below
					}
					fmt.Fprintf(out, "%-8s %-28s %s\n", "topic", st.Topic, topicSummary(st))
				}
				for _, d := range drifts {
					fmt.Fprintf(out, "%-8s %-28s %s\n", "drift", d.Topic, d.Detail)
				}
				if len(drifts) > 0 {
					fmt.Fprintf(out, "%d drifts from the configured topology\n", len(drifts))
					return exitError{1}
				}
				fmt.Fprintln(out, "no drift")
				return nil
			}
			fixes, err := admin.EnsureTopics(cmd.Context(), c.client, c.topology, c.check)
			for _, f := range fixes {
				fmt.Fprintf(out, "%-10s %-28s %s\n", f.Action, f.Topic, f.Detail)
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&check, "check", false, "only report drift from the configured topology; exit 1 if any")
	return cmd
}

// topicSummary is a topic's line of orders topics --check: its partitions
// and what bounds it, retention.ms only where the cleanup policy deletes.
func topicSummary(st admin.TopicState) string {
	s := fmt.Sprintf("%d partitions", st.Partitions)
	if st.Compacted() {
		s += ", cleanup.policy " + st.CleanupPolicy
	}
	if st.Deletes() {
		s += fmt.Sprintf(", retention.ms %d", st.RetentionMS)
	}
	return s
}

func produceCmd(s *settings) *cobra.Command {
	var cfg producer.Config
	cmd := &cobra.Command{
		Use:   "produce",
		Short: "Produce random orders to the orders topic",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := s.load()
			if err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			if err := preflight(cmd.Context(), c); err != nil {
				return err
			}
			var p *producer.Producer
			done := make(chan struct{})
			out := cmd.OutOrStdout()
			start := time.Now()
			progress := func(final bool) {
				secs := time.Since(start).Seconds()
				line := fmt.Sprintf("produced %d orders to %s in %.1fs (%.0f/s, %d errors)",
					p.Sent(), c.topology.Orders, secs, float64(p.Sent())/secs, p.Errors())
				switch {
				case final && isTerminal(out):
					fmt.Fprintf(out, "\r\033[K%s\n", line)
				case final:
					fmt.Fprintln(out, line)
				default:
					fmt.Fprintf(out, "\r\033[K%s", line)
				}
			}
			var ticker sync.WaitGroup
			err = runApp(cmd.Context(), c.log, done,
				c.provide(), fx.Supply(cfg), producer.Module, fx.Populate(&p),
				fx.Invoke(func() {
					ticker.Add(1)
					go func() {
						defer ticker.Done()
						defer close(done)
						t := time.NewTicker(time.Second)
						defer t.Stop()
						for {
							select {
							case <-p.Done():
								return
							case <-t.C:
								if isTerminal(out) {
									progress(false) // a live line on a terminal only
								}
							}
						}
					}()
				}),
			)
			ticker.Wait()
			if p != nil {
				progress(true)
				// The producer may end on an error just before the app
				// sees its shutdown: the exit code must say so either way.
				// The error itself is already logged.
				if err == nil && p.Err() != nil {
					return exitError{1}
				}
			}
			return err
		},
	}
	producerFlags(cmd, &cfg, 10, "orders to produce; 0 produces until interrupted", 0)
	return cmd
}

// isTerminal reports whether w is a terminal, where a live progress line
// makes sense.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// producerFlags registers the producer's flags on cmd.
func producerFlags(cmd *cobra.Command, cfg *producer.Config, count int, countUsage string, rate float64) {
	cmd.Flags().IntVar(&cfg.Count, "count", count, countUsage)
	cmd.Flags().Float64Var(&cfg.Rate, "rate", rate, "orders per second; 0 is as fast as the broker takes them")
	cmd.Flags().Uint64Var(&cfg.StartID, "start-id", 1001, "first orderId")
	cmd.Flags().Uint64Var(&cfg.Seed, "seed", 0, "seed of products and prices; 0 picks one")
}

func runCmd(s *settings) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run one pipeline stage as a long-lived process",
		Long: `Run one stage as a member of its consumer group. Start more processes of the
same stage to share its partitions.`,
	}
	stageCmd := func(use, short string, module func(config) (fx.Option, error)) *cobra.Command {
		return &cobra.Command{
			Use:   use,
			Short: short,
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				c, err := s.load()
				if err != nil {
					return err
				}
				m, err := module(c)
				if err != nil {
					return err
				}
				if err := preflight(cmd.Context(), c); err != nil {
					return err
				}
				return runApp(cmd.Context(), c.log, nil, c.provide(), metrics.Module, m)
			},
		}
	}
	var stage int
	retryCmd := stageCmd("retry", "Run retry stage --stage K: orders_retry_K -> processed | next retry | DLQ",
		func(c config) (fx.Option, error) { return processor.RetryModule(c.topology, stage) })
	retryCmd.Flags().IntVar(&stage, "stage", 1, "retry stage number, 1 to the number of RETRY_DELAYS")
	cmd.AddCommand(
		stageCmd("main", "Run the main stage: orders -> processed | orders_retry_1 | DLQ",
			func(config) (fx.Option, error) { return processor.MainModule, nil }),
		retryCmd,
		stageCmd("aggregator", "Run the aggregator: orders_processed -> running average",
			func(config) (fx.Option, error) { return aggregator.Module, nil }),
	)
	return cmd
}

func statsCmd(s *settings) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Print the running average price as the aggregator's state holds it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := s.load()
			if err != nil {
				return err
			}
			if err := c.client.Ping(cmd.Context()); err != nil {
				return err
			}
			t, err := aggregator.ReadTotals(cmd.Context(), c.client, c.topology)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(t)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "orders: %d  sum: %s  average price: %s\n",
				t.Count, strconv.FormatFloat(t.Sum, 'f', 2, 64), strconv.FormatFloat(t.Average, 'f', 4, 64))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"count": N, "sum": S, "average": A} on one line`)
	return cmd
}

// preflight fails at once when the TLS or SASL settings do not fit the
// broker: retrying would never help. A broker that is merely unreachable
// is waited for, with backoff, by the stage itself.
func preflight(ctx context.Context, c config) error {
	err := c.client.Ping(ctx)
	switch {
	case err == nil:
		return nil
	case kafka.Misconfigured(err):
		return err
	case ctx.Err() != nil:
		return nil
	}
	c.log.Warn("no broker reachable yet; retrying with backoff", zap.Error(err))
	return nil
}

func aclsCmd(s *settings) *cobra.Command {
	var apply bool
	cmd := &cobra.Command{
		Use:   "acls",
		Short: "Print, or --apply, the least-privilege ACLs of every stage's principal",
		Long: `Print the ACLs that let each stage's principal touch only its own topics and
group; with --apply, create them on the cluster (idempotent; the client's
principal needs ALTER on the cluster, as a superuser has).

Principals are ACL_PRINCIPAL_PREFIX followed by main, retry-1..retry-N,
aggregator, producer and admin: User:orders-main and so on by default.
  main, retry-K  READ its input topic and group; WRITE the next retry topic,
                 orders_processed and orders_dlq
  aggregator     READ orders_processed and its group; READ and WRITE its state topic
  producer       WRITE orders
  admin          CREATE and DESCRIBE every pipeline topic (orders topics)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := s.load()
			if err != nil {
				return err
			}
			acls := admin.ACLs(c.topology, c.principalPrefix)
			out := cmd.OutOrStdout()
			for _, a := range acls {
				fmt.Fprintln(out, admin.FormatACL(a))
			}
			if !apply {
				return nil
			}
			if err := admin.ApplyACLs(cmd.Context(), c.client, acls); err != nil {
				return err
			}
			fmt.Fprintf(out, "applied %d ACLs\n", len(acls))
			return nil
		},
	}
	cmd.Flags().BoolVar(&apply, "apply", false, "create the ACLs on the cluster")
	return cmd
}
