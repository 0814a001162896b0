package kafkajs_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/broker"
	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/outcome"
	"github.com/orderflow/orders/services/registry"
	"github.com/orderflow/orders/services/testkit"
	"github.com/orderflow/orders/topology"
)

// jsOrder is one order as produce.js reads it, with the two fields of the
// evolved schema it registers (order.avsc plus quantity and customerId).
type jsOrder struct {
	OrderID    string  `json:"orderId"`
	Product    string  `json:"product"`
	Price      float32 `json:"price"`
	Quantity   int32   `json:"quantity"`
	CustomerID string  `json:"customerId"`
}

// jsOrders are n orders, one in five of product Item3 (which always fails),
// each price a multiple of 0.25 (exact in a float32, so the average is
// exact), and quantity and customerId never their schema defaults (1 and
// ""), so that a reader falling back to the defaults shows.
func jsOrders(n int) []jsOrder {
	out := make([]jsOrder, n)
	for i := range out {
		out[i] = jsOrder{
			OrderID:    fmt.Sprintf("js-%04d", i+1),
			Product:    fmt.Sprintf("Item%d", i%5+1),
			Price:      1 + float32(i%97)*0.25,
			Quantity:   int32(2 + i%9),
			CustomerID: fmt.Sprintf("customer-%03d", i%37),
		}
	}
	return out
}

// produced is produce.js's report on stdout.
type produced struct {
	Subject  string `json:"subject"`
	SchemaID int    `json:"schemaId"`
	Topic    string `json:"topic"`
	Produced int    `json:"produced"`
}

// consumed is one line of consume.js: a record and the order its value
// decoded to through the registry.
type consumed struct {
	Topic      string            `json:"topic"`
	Partition  int               `json:"partition"`
	Offset     string            `json:"offset"`
	Key        string            `json:"key"`
	SchemaID   int               `json:"schemaId"`
	OrderID    string            `json:"orderId"`
	Product    string            `json:"product"`
	Price      float64           `json:"price"`
	Quantity   *int32            `json:"quantity"`
	CustomerID *string           `json:"customerId"`
	Error      string            `json:"error"`
	Headers    map[string]string `json:"headers"`
}

// requireNode fails the test unless node and this directory's
// node_modules are there: the test never skips.
func requireNode(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node not found (%v): install Node.js 20 or later, then run npm ci in services/interop/kafkajs", err)
	}
	for _, pkg := range []string{"kafkajs", "@kafkajs/confluent-schema-registry"} {
		if _, err := os.Stat(filepath.Join("node_modules", pkg, "package.json")); err != nil {
			t.Fatalf("%s is not installed (%v): run npm ci in services/interop/kafkajs", pkg, err)
		}
	}
}

// node runs `node args...` in this directory with env added to the
// environment, for at most timeout, and returns its stdout; it fails the
// test, with stderr, if the script fails.
func node(t *testing.T, timeout time.Duration, env []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node %s: %v (context: %v)\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, ctx.Err(), stdout.String(), stderr.String())
	}
	return stdout.String()
}

// TestKafkajsProducerAndConsumerThroughTheRegistry runs every stage in the
// Schema Registry wire format on an embedded broker and registry, with the
// orders produced by kafkajs under an evolved schema the JavaScript
// producer registers itself: every order reaches the outcome its product
// calls for (Item3 ends in the DLQ after every retry stage), the average
// is exact, and a kafkajs consumer decodes every processed record through
// the registry with the fields the stages, on order.avsc, never knew.
func TestKafkajsProducerAndConsumerThroughTheRegistry(t *testing.T) {
	requireNode(t)
	delays := []time.Duration{200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond}
	top, err := topology.New(topology.Topology{Delays: delays})
	if err != nil {
		t.Fatal(err)
	}
	b := testkit.Broker(t, broker.Config{})
	reg, err := registry.Serve("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	clients := []string{"KAFKA_BROKERS=" + b.Addr(), "SCHEMA_REGISTRY_URL=" + reg.URL()}
	env := append([]string{"RETRY_DELAYS=200ms,200ms,200ms", "VALUE_FORMAT=confluent", "LOG_LEVEL=info"}, clients...)
	bin := testkit.Binary(t)
	client := kafka.Client{Brokers: []string{b.Addr()}}

	if out, err := testkit.Run(t, bin, env, "topics"); err != nil {
		t.Fatalf("orders topics: %v\n%s", err, out)
	}
	testkit.Start(t, bin, env, "run", "main")
	for k := 1; k <= top.Stages(); k++ {
		testkit.Start(t, bin, env, "run", "retry", "--stage", fmt.Sprint(k))
	}
	testkit.Start(t, bin, env, "run", "aggregator")

	const n = 300
	orders := jsOrders(n)
	file := filepath.Join(t.TempDir(), "orders.json")
	data, err := json.Marshal(orders)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var prod produced
	out := node(t, 30*time.Second, clients, "produce.js", file)
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &prod); err != nil {
		t.Fatalf("produce.js printed %q: %v", out, err)
	}
	if prod.Subject != registry.Subject || prod.Topic != top.Orders || prod.Produced != n || prod.SchemaID <= 0 {
		t.Fatalf("produce.js: %+v, want %d orders to %s under %s", prod, n, top.Orders, registry.Subject)
	}

	values, err := registry.New(registry.Config{URL: reg.URL()}, schemas.Plain, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	tally, tot, err := outcome.Wait(ctx, client, top, values, n, 200*time.Millisecond)
	if err != nil {
		t.Fatalf("waiting for %d outcomes: %v (have %d: %d processed, %d dead, aggregator count %d)",
			n, err, tally.Final(), len(tally.Processed), len(tally.Dead), tot.Count)
	}

	// Every order's outcome, as the stages read it on order.avsc.
	base := make([]schemas.Order, n)
	byID := map[string]jsOrder{}
	failing := map[string]bool{}
	for i, o := range orders {
		base[i] = schemas.Order{OrderID: o.OrderID, Product: o.Product, Price: o.Price}
		byID[o.OrderID] = o
		if o.Product == "Item3" {
			failing[o.OrderID] = true
		}
	}
	problems, good, average := tally.Problems(base, top, func(o schemas.Order) bool { return failing[o.OrderID] })
	for _, p := range problems {
		t.Error(p)
	}
	if len(failing) == 0 || good == 0 {
		t.Fatalf("%d failing and %d good orders: the test proves nothing", len(failing), good)
	}
	testkit.CheckAverage(t, bin, env, good, average)

	// The DLQ holds exactly the Item3 orders, each once, with the bytes
	// kafkajs wrote: framed with the producer's schema id.
	if len(tally.Dead) != len(failing) {
		t.Errorf("the DLQ holds %d orders, want the %d of Item3", len(tally.Dead), len(failing))
	}
	for key, d := range tally.Dead {
		if !failing[key] {
			t.Errorf("the DLQ holds %s, not an Item3 order", key)
			continue
		}
		if d.Deliveries != 1 || d.Letter.Reason != envelope.ReasonRetriesExhausted {
			t.Errorf("%s: %d DLQ records, reason %q; want one, %s", key, d.Deliveries, d.Letter.Reason, envelope.ReasonRetriesExhausted)
		}
		raw, err := d.Letter.RawValue()
		if err != nil {
			t.Errorf("%s: raw value: %v", key, err)
			continue
		}
		if id, _, err := schemas.Unframe(raw); err != nil || int(id) != prod.SchemaID {
			t.Errorf("%s: DLQ raw value framed with schema id %d (%v), want the producer's %d", key, id, err, prod.SchemaID)
		}
		if o, err := values.Decode(ctx, raw); err != nil || o != (schemas.Order{OrderID: key, Product: "Item3", Price: byID[key].Price}) {
			t.Errorf("%s: DLQ raw value decodes to %+v (%v)", key, o, err)
		}
	}

	// kafkajs reads every processed record back through the registry with
	// the writer's schema: the stages forwarded the bytes untouched, so the
	// fields they do not know are there as the producer wrote them.
	out = node(t, 30*time.Second, clients, "consume.js", "--timeout-ms", "20000", top.Processed)
	seen := map[string]int{}
	lines := 0
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		lines++
		var c consumed
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatalf("consume.js printed %q: %v", sc.Text(), err)
		}
		at := fmt.Sprintf("%s/%d@%s", c.Topic, c.Partition, c.Offset)
		want, ok := byID[c.OrderID]
		switch {
		case c.Error != "":
			t.Errorf("%s: not decoded: %s", at, c.Error)
		case !ok || failing[c.OrderID] || c.Key != c.OrderID:
			t.Errorf("%s: key %q order %q is not a good order of the producer", at, c.Key, c.OrderID)
		case c.SchemaID != prod.SchemaID:
			t.Errorf("%s: schema id %d, want the producer's %d", at, c.SchemaID, prod.SchemaID)
		case c.Quantity == nil || c.CustomerID == nil:
			t.Errorf("%s: decoded without quantity or customerId: %s", at, sc.Text())
		case c.Product != want.Product || float32(c.Price) != want.Price || *c.Quantity != want.Quantity || *c.CustomerID != want.CustomerID:
			t.Errorf("%s: decoded %s, produced %+v", at, sc.Text(), want)
		case c.Headers[envelope.HeaderProcessedBy] == "":
			t.Errorf("%s: no %s header", at, envelope.HeaderProcessedBy)
		default:
			seen[c.OrderID]++
		}
	}
	if len(seen) != good {
		t.Errorf("consume.js decoded %d distinct processed orders, want %d", len(seen), good)
	}
	t.Logf("%d orders from kafkajs under schema id %d: %d processed (%d records read back by kafkajs), %d dead-lettered, average %.4f",
		n, prod.SchemaID, len(tally.Processed), lines, len(tally.Dead), tot.Average)
}
