package main_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"go.uber.org/zap"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/outcome"
	"github.com/orderflow/orders/services/producer"
	"github.com/orderflow/orders/services/registry"
	"github.com/orderflow/orders/services/testkit"
)

// newerSchema is order.avsc as a team evolves it: two fields added, each
// with a default, so that readers of order.avsc still read it.
var newerSchema = strings.Replace(schemas.OrderSchemaJSON(),
	`{ "name": "price", "type": "float" }`,
	`{ "name": "price", "type": "float" },
    { "name": "quantity", "type": "int", "default": 1 },
    { "name": "currency", "type": "string", "default": "EUR" }`, 1)

// newerFields are the fields of newerSchema that Order lacks.
type newerFields struct {
	OrderID  string `avro:"orderId"`
	Quantity int32  `avro:"quantity"`
	Currency string `avro:"currency"`
}

func schemaFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "order.avsc")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// generated regenerates the orders `orders produce --start-id --seed` wrote.
func generated(n int, start, seed uint64) []schemas.Order {
	g := producer.NewGenerator(start, seed)
	out := make([]schemas.Order, n)
	for i := range out {
		out[i] = g.Next()
	}
	return out
}

// checkNewerFields reads every processed record of the orders in ids back
// with newerSchema (after the header, if framed) and fails unless each
// still holds the newer fields as the producer wrote them.
func checkNewerFields(t *testing.T, c *cluster, ids map[string]bool, framed bool) {
	t.Helper()
	newer := avro.MustParse(newerSchema)
	seen := 0
	err := kafka.ReadNew(context.Background(), c.client, []string{c.top.Processed}, map[string]map[int]int64{}, func(m envelope.Record) error {
		if !ids[string(m.Key)] {
			return nil
		}
		body := m.Value
		if framed {
			var err error
			if _, body, err = schemas.Unframe(m.Value); err != nil {
				return err
			}
		}
		var f newerFields
		if err := avro.Unmarshal(newer, body, &f); err != nil {
			return fmt.Errorf("%s@%d: %w", m.Topic, m.Offset, err)
		}
		if f.OrderID != string(m.Key) || f.Quantity != 1 || f.Currency != "EUR" {
			return fmt.Errorf("%s@%d holds %+v", m.Topic, m.Offset, f)
		}
		seen++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen < len(ids) {
		t.Fatalf("read %d processed records of the newer producer, want at least %d", seen, len(ids))
	}
}

// processedIDs are the orderIds of orders whose product does not fail.
func processedIDs(orders []schemas.Order) map[string]bool {
	ids := map[string]bool{}
	for _, o := range orders {
		if o.Product != "Item3" {
			ids[o.OrderID] = true
		}
	}
	return ids
}

// TestAnEvolvedOrderSchemaNeedsNoCodeChange runs every process with a
// newer order.avsc in plain Avro, where the writer's schema is the
// processes' own: 10,000 orders reach their outcomes, the average is
// exact, and the processed records keep the newer fields.
func TestAnEvolvedOrderSchemaNeedsNoCodeChange(t *testing.T) {
	c := newCluster(t, testDelays)
	c.env = append(c.env, "ORDER_SCHEMA="+schemaFile(t, newerSchema))
	c.startAll(1)
	const n = 10000
	if out, err := testkit.Run(t, c.bin, c.env, "produce", "--count", fmt.Sprint(n), "--seed", "11"); err != nil {
		t.Fatalf("orders produce: %v\n%s", err, out)
	}
	orders := generated(n, 1001, 11)
	codec, err := schemas.NewCodec(newerSchema)
	if err != nil {
		t.Fatal(err)
	}
	c.values = codec.Values()
	tally, _ := c.wait(n, 3*time.Minute)
	if failing := c.checkOutcomes(orders, tally); failing == 0 {
		t.Fatal("no failing order: the retry ladder was not crossed")
	}
	checkNewerFields(t, c, processedIDs(orders), false)
}

// TestConfluentProducersOfTwoSchemaVersions runs the pipeline in the
// Schema Registry wire format through the embedded registry, with an older
// producer (order.avsc) and a newer one (newerSchema) writing at once: the
// stages, on order.avsc, take both; then a value of a schema id the
// registry does not know and one of a schema that does not resolve against
// order.avsc each end as one DLQ record with its reason, and orders after
// them still flow.
func TestConfluentProducersOfTwoSchemaVersions(t *testing.T) {
	c := newCluster(t, testDelays)
	reg, err := registry.Serve("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	c.env = append(c.env, "VALUE_FORMAT=confluent", "SCHEMA_REGISTRY_URL="+reg.URL())
	stages, err := registry.New(registry.Config{URL: reg.URL()}, schemas.Plain, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	c.values = stages
	c.startAll(1)

	const n = 5000
	older := c.start("produce", "--count", fmt.Sprint(n), "--seed", "21", "--rate", "0")
	newerEnv := append(append([]string{}, c.env...), "ORDER_SCHEMA="+schemaFile(t, newerSchema))
	newer := testkit.Start(t, c.bin, newerEnv, "produce", "--count", fmt.Sprint(n), "--seed", "22", "--start-id", "100001", "--rate", "0")
	for name, p := range map[string]*testkit.Proc{"older": older, "newer": newer} {
		if exited, err := p.Wait(time.Minute); !exited || err != nil {
			t.Fatalf("%s producer: exited %v, %v\n%s", name, exited, err, p.Output())
		}
	}
	newerOrders := generated(n, 100001, 22)
	orders := append(generated(n, 1001, 21), newerOrders...)
	tally, _ := c.wait(2*n, 3*time.Minute)
	c.checkOutcomes(orders, tally)
	checkNewerFields(t, c, processedIDs(newerOrders), true)

	// A writer schema whose price is a string, registered under the
	// orders' subject (the embedded registry checks no compatibility), and
	// an id nobody registered.
	incompatible, err := stages.RegisterAs(context.Background(), registry.Subject,
		strings.Replace(schemas.OrderSchemaJSON(), `"type": "float"`, `"type": "string"`, 1))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := avro.Marshal(avro.MustParse(`{"type":"record","name":"Order","namespace":"com.example","fields":[
		{"name":"orderId","type":"string"},{"name":"product","type":"string"},{"name":"price","type":"string"}]}`),
		map[string]any{"orderId": "bad-1", "product": "Item1", "price": "cheap"})
	plain, _ := schemas.Encode(schemas.Order{OrderID: "bad-2", Product: "Item1", Price: 10})
	w := c.client.NewWriter(kafka.WriterConfig{}, testLogger(t))
	defer w.Close()
	if err := w.Write(context.Background(), []envelope.Output{
		{Topic: c.top.Orders, Partition: envelope.AnyPartition, Key: []byte("bad-1"), Value: append(schemas.AppendFrame(nil, uint32(incompatible)), body...)},
		{Topic: c.top.Orders, Partition: envelope.AnyPartition, Key: []byte("bad-2"), Value: append(schemas.AppendFrame(nil, 4242), plain...)},
		{Topic: c.top.Orders, Partition: envelope.AnyPartition, Key: []byte("bad-3"), Value: plain},
	}); err != nil {
		t.Fatal(err)
	}
	if out, err := testkit.Run(t, c.bin, c.env, "produce", "--count", "100", "--seed", "23", "--start-id", "200001"); err != nil {
		t.Fatalf("orders produce: %v\n%s", err, out)
	}
	orders = append(orders, generated(100, 200001, 23)...)
	tally, _ = c.wait(len(orders)+3, 2*time.Minute)
	for key, want := range map[string]struct{ reason, text string }{
		"bad-1": {envelope.ReasonIncompatibleSchema, "reader schema float not compatible with writer schema string"},
		"bad-2": {envelope.ReasonUnknownSchema, "4242"},
		"bad-3": {envelope.ReasonUndecodable, "not the magic byte"},
	} {
		d := tally.Dead[key]
		if d == nil {
			t.Errorf("%s: not dead-lettered", key)
			continue
		}
		if d.Deliveries != 1 || d.Letter.Reason != want.reason || d.Letter.Stage != "main" || !strings.Contains(d.Letter.Error, want.text) {
			t.Errorf("%s: %d DLQ records, reason %q, stage %q, error %q; want one, %s naming %q",
				key, d.Deliveries, d.Letter.Reason, d.Letter.Stage, d.Letter.Error, want.reason, want.text)
		}
	}
	delete(tally.Dead, "bad-1")
	delete(tally.Dead, "bad-2")
	delete(tally.Dead, "bad-3")
	c.checkOutcomes(orders, tally)
}

// TestARegistryOutageDeadLettersNoGoodOrder takes the registry away from
// the stages (every request answered 503) before they have seen the
// producer's schema id: they wait, with backoff, and once it is back every
// order reaches the outcome its product calls for.
func TestARegistryOutageDeadLettersNoGoodOrder(t *testing.T) {
	c := newCluster(t, testDelays)
	reg, err := registry.Serve("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	target, _ := url.Parse(reg.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	var down atomic.Bool
	var refused atomic.Int64
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			refused.Add(1)
			http.Error(w, `{"error_code":50003,"message":"unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	stagesEnv := append(append([]string{}, c.env...), "VALUE_FORMAT=confluent", "SCHEMA_REGISTRY_URL="+front.URL)
	values, err := registry.New(registry.Config{URL: reg.URL()}, schemas.Plain, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	c.values = values
	c.env = stagesEnv
	procs := c.startAll(1)
	for name, ps := range procs {
		testkit.Eventually(t, 30*time.Second, func() (bool, string) {
			return strings.Contains(ps[0].Output(), "assigned partitions"), name + " has not joined its group"
		})
	}
	// The stages started (they check the registry at start); now it goes.
	down.Store(true)

	const n = 500
	producerEnv := append(append([]string{}, c.env[:len(c.env)-1]...), "SCHEMA_REGISTRY_URL="+reg.URL())
	if out, err := testkit.Run(t, c.bin, producerEnv, "produce", "--count", fmt.Sprint(n), "--seed", "31"); err != nil {
		t.Fatalf("orders produce: %v\n%s", err, out)
	}
	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		return refused.Load() >= 5, fmt.Sprintf("%d requests refused", refused.Load())
	})
	tally := outcome.NewTally()
	tally.Values = values
	if err := tally.Poll(context.Background(), c.client, c.top); err != nil {
		t.Fatal(err)
	}
	if tally.Final() != 0 {
		t.Fatalf("%d outcomes while the registry was down", tally.Final())
	}
	down.Store(false)
	final, _ := c.wait(n, 2*time.Minute)
	c.checkOutcomes(generated(n, 1001, 31), final)
	t.Logf("%d registry requests refused during the outage", refused.Load())
}

// TestAStageFailsAtStartWithoutItsRegistry: a registry that cannot be
// reached at start stops the process with a message naming it.
func TestAStageFailsAtStartWithoutItsRegistry(t *testing.T) {
	c := newCluster(t, testDelays)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	env := append(append([]string{}, c.env...), "VALUE_FORMAT=confluent", "SCHEMA_REGISTRY_URL="+closed.URL)
	out, err := testkit.Run(t, c.bin, env, "run", "main")
	if err == nil || !strings.Contains(out, "schema registry "+closed.URL+" unreachable") {
		t.Fatalf("orders run main with the registry down: %v\n%s", err, out)
	}
}
