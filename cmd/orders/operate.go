package main

import (
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/orderflow/orders/services/dlq"
	"github.com/orderflow/orders/services/inspect"
	"github.com/orderflow/orders/services/wait"
)

func inspectCmd(s *settings) *cobra.Command {
	var (
		asJSON, watch, follow bool
		tail, partition       int
		key                   string
	)
	cmd := &cobra.Command{
		Use:   "inspect [TOPIC]",
		Short: "Show where every stage stands, or the records of one topic, decoded",
		Long: `Without a topic: one row per pipeline topic in stage order with its partitions,
records, the consumer group of its stage, the group's lag, the age of the oldest
record the group has not committed and, for retry topics, how many records wait
for their due time; then the running average. --watch refreshes it every second.

With a topic: its records, decoded (Avro orders and DLQ records as JSON), with
partition, offset, timestamp and headers. --json prints one JSON object per line.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := s.load()
			if err != nil {
				return err
			}
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			if err := c.client.Ping(ctx); err != nil {
				return err
			}
			if len(args) == 0 {
				for {
					ov, err := inspect.Inspect(ctx, c.client, c.topology, time.Now())
					if err != nil {
						return err
					}
					if watch && !asJSON {
						fmt.Fprint(out, "\033[H\033[2J") // home and clear: refresh in place
					}
					if asJSON {
						if err := json.NewEncoder(out).Encode(ov); err != nil {
							return err
						}
					} else {
						printOverview(out, ov)
					}
					if !watch || !wait.For(ctx, time.Second) {
						return nil
					}
				}
			}
			if err := c.checkRegistry(ctx); err != nil {
				return err
			}
			q := inspect.Query{Topic: args[0], Tail: tail, Partition: partition, Key: key, Values: c.values}
			recs, next, err := inspect.Records(ctx, c.client, c.topology, q)
			if err != nil {
				return err
			}
			print := func(r inspect.Record) error { return printRecord(out, r, asJSON) }
			for _, r := range recs {
				if err := print(r); err != nil {
					return err
				}
			}
			if follow {
				return inspect.Follow(ctx, c.client, c.topology, q, next, 500*time.Millisecond, print)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&watch, "watch", false, "refresh the overview every second")
	cmd.Flags().IntVar(&tail, "tail", 0, "only the last N records (0: all)")
	cmd.Flags().BoolVar(&follow, "follow", false, "keep printing records as they arrive")
	cmd.Flags().IntVar(&partition, "partition", -1, "only this partition (-1: all)")
	cmd.Flags().StringVar(&key, "key", "", "only records with this key (orderId)")
	return cmd
}

func printOverview(out io.Writer, ov inspect.Overview) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITIONS\tRECORDS\tGROUP\tLAG\tOLDEST UNCONSUMED\tWAITING (NOT DUE)")
	for _, t := range ov.Topics {
		group, lag, age, waiting := t.Group, fmt.Sprint(t.Lag), "-", "-"
		if group == "" {
			group, lag = "-", "-"
		} else if t.Lag > 0 {
			age = (time.Duration(t.OldestAgeS * float64(time.Second))).Round(time.Millisecond).String()
		}
		if t.Waiting != nil {
			waiting = fmt.Sprint(*t.Waiting)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\n", t.Topic, t.Partitions, t.Records, group, lag, age, waiting)
	}
	tw.Flush()
	fmt.Fprintf(out, "running average: %.4f over %d orders (sum %.2f)\n", ov.Average.Average, ov.Average.Count, ov.Average.Sum)
}

func printRecord(out io.Writer, r inspect.Record, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(out).Encode(r)
	}
	var hs []string
	for k, v := range r.Headers {
		hs = append(hs, k+"="+v)
	}
	value := string(r.Value)
	if value == "" {
		value = "undecodable (" + r.Error + "): " + r.RawHex
	}
	_, err := fmt.Fprintf(out, "%s %d@%d %s key=%s %s\n", r.Topic, r.Partition, r.Offset,
		r.Time.UTC().Format(time.RFC3339Nano), r.Key, value)
	if err == nil && len(hs) > 0 {
		_, err = fmt.Fprintf(out, "    headers: %s\n", strings.Join(slices.Sorted(slices.Values(hs)), " "))
	}
	return err
}

func traceCmd(s *settings) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "trace ORDERID",
		Short: "Show the path one order took through every topic, with times and errors",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := s.load()
			if err != nil {
				return err
			}
			if err := c.client.Ping(cmd.Context()); err != nil {
				return err
			}
			steps, err := inspect.Trace(cmd.Context(), c.client, c.topology, args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(steps)
			}
			if len(steps) == 0 {
				return fmt.Errorf("order %s: no record in any pipeline topic", args[0])
			}
			for _, st := range steps {
				fmt.Fprintln(out, st.Describe())
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the steps as a JSON array")
	return cmd
}

func dlqCmd(s *settings) *cobra.Command {
	cmd := &cobra.Command{Use: "dlq", Short: "List dead-lettered orders and send them back through the pipeline"}
	var (
		errRE, key string
		since      time.Duration
		asJSON     bool
	)
	filter := func() (dlq.Filter, error) {
		f := dlq.Filter{Since: since, Key: key}
		if errRE != "" {
			re, err := regexp.Compile(errRE)
			if err != nil {
				return f, fmt.Errorf("--error: %w", err)
			}
			f.Error = re
		}
		return f, nil
	}
	addFilter := func(c *cobra.Command) {
		c.Flags().StringVar(&errRE, "error", "", "only records whose error matches this regular expression")
		c.Flags().DurationVar(&since, "since", 0, "only records dead-lettered within this long (e.g. 1h)")
		c.Flags().StringVar(&key, "key", "", "only the records of this orderId")
		c.Flags().BoolVar(&asJSON, "json", false, "print JSON, one object per line")
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List dead-lettered orders with their error, stage, attempts and decoded order",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := s.load()
			if err != nil {
				return err
			}
			f, err := filter()
			if err != nil {
				return err
			}
			if err := c.client.Ping(cmd.Context()); err != nil {
				return err
			}
			if err := c.checkRegistry(cmd.Context()); err != nil {
				return err
			}
			entries, err := dlq.List(cmd.Context(), c.client, c.topology, c.values, f, time.Now())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				for _, e := range entries {
					if err := enc.Encode(e); err != nil {
						return err
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DLQ RECORD\tKEY\tREASON\tSTAGE\tATTEMPTS\tREPLAYS\tORDER\tERROR")
			for _, e := range entries {
				order := "-"
				if e.Order != nil {
					order = fmt.Sprintf("%s %.2f", e.Order.Product, e.Order.Price)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", e.ID(), e.Letter.Key, e.Letter.Reason, e.Letter.Stage,
					e.Letter.Attempts, e.Letter.Replays, order, e.Letter.Error)
			}
			tw.Flush()
			fmt.Fprintf(out, "%d dead-lettered records\n", len(entries))
			return nil
		},
	}
	addFilter(list)

	var rc dlq.ReplayConfig
	replay := &cobra.Command{
		Use:   "replay",
		Short: "Send dead-lettered orders back to orders (or a retry topic), each at most once",
		Long: `Send the original value of each selected DLQ record back to the orders topic (or,
with --to, to a retry topic, due at once), with headers x-replay-count and
x-replay-source. A replay log topic records every record sent, so running the
command again, or after an interruption, never sends the same DLQ record twice;
--from-start ignores the log. Records already replayed --max-replays times are
left where they are and reported.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := s.load()
			if err != nil {
				return err
			}
			if rc.Filter, err = filter(); err != nil {
				return err
			}
			if rc.MaxReplays < 1 {
				return fmt.Errorf("--max-replays: %d, want at least 1", rc.MaxReplays)
			}
			if err := c.client.Ping(cmd.Context()); err != nil {
				return err
			}
			outcomes, err := dlq.Replay(cmd.Context(), c.client, c.topology, rc, c.log)
			out := cmd.OutOrStdout()
			counts := map[string]int{}
			for _, o := range outcomes {
				counts[o.Action]++
				if asJSON {
					if err := json.NewEncoder(out).Encode(o); err != nil {
						return err
					}
					continue
				}
				fmt.Fprintf(out, "%-17s %s key=%s -> %s (replays so far %d, %s)\n", o.Action, o.Entry.ID(), o.Entry.Letter.Key,
					o.To, o.Entry.Letter.Replays, o.Entry.Letter.Error)
			}
			if !asJSON {
				fmt.Fprintf(out, "sent %d, would send %d, already replayed %d, interrupted %d, too many replays %d, truncated %d\n",
					counts[dlq.ActionSent], counts[dlq.ActionWouldSend], counts[dlq.ActionAlreadySent],
					counts[dlq.ActionInterrupted], counts[dlq.ActionTooManyReplays], counts[dlq.ActionTruncated])
			}
			return err
		},
	}
	addFilter(replay)
	replay.Flags().IntVar(&rc.Limit, "limit", 0, "send at most N records (0: no limit)")
	replay.Flags().StringVar(&rc.To, "to", "", "topic to send to: orders (default) or a retry topic")
	replay.Flags().Float64Var(&rc.Rate, "rate", 0, "records per second (0: as fast as possible)")
	replay.Flags().BoolVar(&rc.DryRun, "dry-run", false, "only print what would be sent")
	replay.Flags().BoolVar(&rc.FromStart, "from-start", false, "ignore the replay log and consider every DLQ record again")
	replay.Flags().IntVar(&rc.MaxReplays, "max-replays", 3, "leave records already replayed this many times")
	cmd.AddCommand(list, replay)
	return cmd
}
