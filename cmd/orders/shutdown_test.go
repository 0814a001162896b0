package main_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orderflow/orders/services/outcome"
	"github.com/orderflow/orders/services/testkit"
	"github.com/orderflow/orders/topology"
)

// A retry stage waiting out a long delay stops at once on SIGTERM, and the
// record it waited for stays in its topic for the next run.
func TestSigtermDuringLongDelay(t *testing.T) {
	c := newCluster(t, []time.Duration{time.Minute})
	c.start("run", "main")
	retry := c.start("run", "retry", "--stage", "1")
	if out, err := testkit.Run(t, c.bin, c.env, "produce", "--count", "20", "--seed", "5"); err != nil {
		t.Fatalf("produce: %v\n%s", err, out)
	}
	// Wait until the retry stage holds a record that is due in a minute.
	testkit.Eventually(t, time.Minute, func() (bool, string) {
		return strings.Contains(c.retryBacklog(t), "orders_retry_1"), "no record in orders_retry_1 yet"
	})
	if err := retry.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if exited, err := retry.Wait(10 * time.Second); !exited || err != nil {
		t.Fatalf("retry stage after SIGTERM: exited %v, %v\n%s", exited, err, retry.Output())
	}
	tally := outcome.NewTally()
	if err := tally.Poll(context.Background(), c.client, c.top); err != nil {
		t.Fatal(err)
	}
	for id, d := range tally.Dead {
		t.Errorf("order %s dead-lettered before its retry was due: %s", id, d.Letter.Error)
	}
}

// retryBacklog lists the retry topics that hold records.
func (c *cluster) retryBacklog(t *testing.T) string {
	admin := c.client.Admin()
	defer admin.Close()
	var have []string
	for k := 1; k <= c.top.Stages(); k++ {
		topic := c.top.RetryTopic(k)
		n, err := countRecords(context.Background(), admin, topic, c.top.Partitions)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			have = append(have, topic)
		}
	}
	return strings.Join(have, ",")
}

// Stopping the main stage with SIGTERM while orders flow duplicates
// nothing: the batch in hand is written and committed before it exits.
func TestSigtermDuplicatesNothing(t *testing.T) {
	c := newCluster(t, []time.Duration{100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond})
	for k := 1; k <= 3; k++ {
		c.start("run", "retry", "--stage", fmt.Sprint(k))
	}
	c.start("run", "aggregator")
	const n = 4000
	prod := c.start("produce", "--count", fmt.Sprint(n), "--rate", "2000", "--seed", "11")
	tally := outcome.NewTally()
	for round := 1; round <= 3; round++ {
		main := c.start("run", "main")
		// Stop it only once it works: a signal before the process has set
		// up its handler would kill it, which is not what is tested here.
		testkit.Eventually(t, 30*time.Second, func() (bool, string) {
			return strings.Contains(main.Output(), "assigned partitions"), "main has not joined its group"
		})
		threshold := round * n / 4
		testkit.Eventually(t, time.Minute, func() (bool, string) {
			if err := tally.Poll(context.Background(), c.client, c.top); err != nil {
				return false, err.Error()
			}
			return tally.Final() >= threshold, fmt.Sprintf("%d of %d outcomes", tally.Final(), threshold)
		})
		if err := main.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if exited, err := main.Wait(10 * time.Second); !exited || err != nil {
			t.Fatalf("main after SIGTERM: exited %v, %v", exited, err)
		}
	}
	c.start("run", "main")
	if exited, err := prod.Wait(time.Minute); !exited || err != nil {
		t.Fatalf("producer: %v %v", exited, err)
	}
	final, _ := c.wait(n, 2*time.Minute)
	c.checkOutcomes(expected(n, 11), final)
	if d := final.Duplicates(); d != 0 {
		t.Errorf("%d duplicate records in %s after three clean stops", d, c.top.Processed)
	}
}

// A stage started before its broker keeps trying, says so, and works once
// the broker is up.
func TestStageWaitsForTheBroker(t *testing.T) {
	bin := testkit.Binary(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	env := []string{"KAFKA_BROKERS=" + addr, "RETRY_DELAYS=100ms", "SESSION_TIMEOUT=6s"}
	main := testkit.Start(t, bin, env, "run", "main")
	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		return strings.Contains(main.Output(), "retrying"), "no retry log line yet:\n" + main.Output()
	})
	_, _ = startBrokerProcAt(t, bin, addr, t.TempDir())
	if out, err := testkit.Run(t, bin, env, "topics"); err != nil {
		t.Fatalf("topics: %v\n%s", err, out)
	}
	if out, err := testkit.Run(t, bin, env, "produce", "--count", "20", "--seed", "3"); err != nil {
		t.Fatalf("produce: %v\n%s", err, out)
	}
	top, _ := topology.New(topology.Topology{Delays: []time.Duration{100 * time.Millisecond}})
	c := &cluster{t: t, bin: bin, env: env, top: top}
	c.client.Brokers = []string{addr}
	c.start("run", "retry", "--stage", "1")
	c.start("run", "aggregator")
	final, _ := c.wait(20, time.Minute)
	c.checkOutcomes(expected(20, 3), final)
}
