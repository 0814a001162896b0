package producer_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/broker"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/producer"
	"github.com/orderflow/orders/services/testkit"
	"github.com/orderflow/orders/topology"
)

func TestGeneratorCountsIDsUpFromTheStart(t *testing.T) {
	for _, startID := range []uint64{0, 1001, math.MaxUint64 - 3} {
		g := producer.NewGenerator(startID, 42)
		for i := range uint64(4) {
			if got, want := g.Next().OrderID, strconv.FormatUint(startID+i, 10); got != want {
				t.Fatalf("start %d: order %d has id %q, want %q", startID, i, got, want)
			}
		}
	}
}

func TestGeneratorProductsAndPrices(t *testing.T) {
	g := producer.NewGenerator(1001, 7)
	products := map[string]int{}
	minP, maxP := float32(math.Inf(1)), float32(math.Inf(-1))
	for range 1000 {
		o := g.Next()
		if !slices.Contains([]string{"Item1", "Item2", "Item3", "Item4"}, o.Product) {
			t.Fatalf("order %s has product %q", o.OrderID, o.Product)
		}
		products[o.Product]++
		if o.Price < 10 || o.Price > 100 {
			t.Fatalf("order %s has price %v outside [10, 100]", o.OrderID, o.Price)
		}
		// Two decimals: the float32 nearest to the price rounded to cents.
		if cents := float32(math.Round(float64(o.Price)*100) / 100); cents != o.Price {
			t.Fatalf("order %s has price %v, more than two decimals (nearest cent %v)", o.OrderID, o.Price, cents)
		}
		if err := schemas.Validate(o); err != nil {
			t.Fatalf("order %+v: %v", o, err)
		}
		minP, maxP = min(minP, o.Price), max(maxP, o.Price)
	}
	if len(products) != 4 {
		t.Fatalf("products over 1000 orders: %v, want all four", products)
	}
	// Not a constant price: the range is used.
	if minP > 20 || maxP < 90 {
		t.Fatalf("prices over 1000 orders span only [%v, %v]", minP, maxP)
	}
}

func TestGeneratorPricesSpanTheClosedRange(t *testing.T) {
	// 200000 draws of 9001 cents values: each bound appears with
	// overwhelming likelihood, and the seed makes the run repeat.
	g := producer.NewGenerator(1, 3)
	minP, maxP := float32(math.Inf(1)), float32(math.Inf(-1))
	for range 200_000 {
		p := g.Next().Price
		if p < 10 || p > 100 {
			t.Fatalf("price %v outside [10, 100]", p)
		}
		minP, maxP = min(minP, p), max(maxP, p)
	}
	if minP != 10 || maxP != 100 {
		t.Fatalf("prices span [%v, %v], want [10, 100]", minP, maxP)
	}
}

func TestGeneratorRepeatsWithTheSameSeed(t *testing.T) {
	a, b := producer.NewGenerator(1, 99), producer.NewGenerator(1, 99)
	other := producer.NewGenerator(1, 100)
	differ := false
	for i := range 500 {
		x, y, z := a.Next(), b.Next(), other.Next()
		if x != y {
			t.Fatalf("order %d: %+v and %+v from the same seed", i, x, y)
		}
		if x != z {
			differ = true
		}
	}
	if !differ {
		t.Fatal("seeds 99 and 100 made the same 500 orders")
	}
}

func TestConfigValidate(t *testing.T) {
	good := []producer.Config{
		{},
		{Count: 100, Rate: 50},
		{Count: 0, Rate: 0.5, StartID: 7, Seed: 1, BatchSize: 10},
	}
	for _, c := range good {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	bad := map[string]struct {
		cfg  producer.Config
		flag string
	}{
		"negative count": {producer.Config{Count: -1}, "--count"},
		"negative rate":  {producer.Config{Rate: -0.1}, "--rate"},
		"NaN rate":       {producer.Config{Rate: math.NaN()}, "--rate"},
		"infinite rate":  {producer.Config{Rate: math.Inf(1)}, "--rate"},
	}
	for name, c := range bad {
		err := c.cfg.Validate()
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if !strings.Contains(err.Error(), c.flag) {
			t.Errorf("%s: error %q does not name %s", name, err, c.flag)
		}
	}
}

func TestRunStopsWhenTheOrdersTopicIsMissing(t *testing.T) {
	brk := testkit.Broker(t, broker.Config{})
	p, err := producer.New(producer.Config{Count: 5}, kafka.Client{Brokers: []string{brk.Addr()}}, topology.Default(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = p.Run(ctx)
	if !errors.Is(err, kafkago.UnknownTopicOrPartition) || !strings.Contains(err.Error(), "run orders topics") {
		t.Fatalf("got %v, want an unknown topic error that says to run orders topics", err)
	}
	if p.Sent() != 0 {
		t.Fatalf("sent %d orders to a missing topic", p.Sent())
	}
}

// A partition refused as unknown while its leader moves is written once it
// is back: the topic exists, so the producer does not stop.
func TestRunWritesThroughAPartitionRefusedAsUnknown(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(6, topology.DefaultOrders))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// More refusals than one write's attempts, then none.
	refuse := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topology.DefaultOrders, Err: kerr.UnknownTopicOrPartition, Count: -1})
	defer refuse.Remove()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = refuse.Wait(ctx, 20)
		refuse.Remove()
	}()
	p, err := producer.New(producer.Config{Count: 5, Seed: 1}, kafka.Client{Brokers: c.ListenAddrs()}, topology.Default(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatalf("produce through a partition refused as unknown 20 times: %v", err)
	}
	if p.Sent() != 5 {
		t.Fatalf("sent %d orders, want 5", p.Sent())
	}
}
