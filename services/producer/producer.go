// Package producer writes random orders to the orders topic, like the
// original assignment's producer: orderIds counting up, products Item1 to
// Item4, prices between 10.00 and 100.00 with two decimals.
package producer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/wait"
	"github.com/orderflow/orders/topology"
)

// Products are the products the generator picks from.
var Products = []string{"Item1", "Item2", "Item3", "Item4"}

// Generator makes orders with unique, increasing orderIds.
type Generator struct {
	next uint64
	rnd  *rand.Rand
}

// NewGenerator starts orderIds at startID; seed makes the sequence repeat.
func NewGenerator(startID uint64, seed uint64) *Generator {
	return &Generator{next: startID, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Next returns the next order.
func (g *Generator) Next() schemas.Order {
	id := g.next
	g.next++
	cents := 1000 + g.rnd.IntN(9001) // 10.00 .. 100.00
	return schemas.Order{
		OrderID: strconv.FormatUint(id, 10),
		Product: Products[g.rnd.IntN(len(Products))],
		Price:   float32(math.Round(float64(cents)) / 100),
	}
}

// Config of a producer run.
type Config struct {
	// Count of orders to produce; 0 produces until stopped.
	Count int
	// Rate in orders per second; 0 is as fast as the broker takes them.
	Rate float64
	// StartID is the first orderId. Optional, default 1001.
	StartID uint64
	// Seed of the random products and prices. Optional, default random.
	Seed uint64
	// BatchSize is the most orders written in one request. Optional, default 500.
	BatchSize int
	// Values writes the orders as record values. Optional, default plain
	// Avro of order.avsc.
	Values schemas.Values
}

func (c *Config) setDefaults() {
	if c.StartID == 0 {
		c.StartID = 1001
	}
	if c.Seed == 0 {
		c.Seed = rand.Uint64()
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 500
	}
	c.Values = schemas.OrPlain(c.Values)
}

// Validate reports a setting a user must fix.
func (c Config) Validate() error {
	switch {
	case c.Count < 0:
		return fmt.Errorf("--count: %d is negative", c.Count)
	case c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0):
		return fmt.Errorf("--rate: %v is not a rate in orders per second", c.Rate)
	}
	return nil
}

// Producer writes orders to the orders topic.
type Producer struct {
	cfg    Config
	top    topology.Topology
	log    *zap.Logger
	client kafka.Client
	writer *kafka.Writer
	sent   atomic.Int64
	errs   atomic.Int64
	done   chan struct{}
	err    error // set before done is closed
}

// New returns a producer; it writes nothing until Run.
func New(cfg Config, client kafka.Client, top topology.Topology, log *zap.Logger) (*Producer, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := client.Validate(); err != nil {
		return nil, err
	}
	return &Producer{
		cfg: cfg, top: top, log: log.Named("producer"), client: client,
		writer: client.NewWriter(kafka.WriterConfig{BatchSize: cfg.BatchSize}, log),
		done:   make(chan struct{}),
	}, nil
}

// Sent is the number of orders acknowledged so far.
func (p *Producer) Sent() int64 { return p.sent.Load() }

// Errors is the number of failed write attempts so far (each retried).
func (p *Producer) Errors() int64 { return p.errs.Load() }

// Done is closed when Run returns.
func (p *Producer) Done() <-chan struct{} { return p.done }

// Err is the error Run returned; read it after Done is closed.
func (p *Producer) Err() error { return p.err }

// Run produces until Count orders are acknowledged or ctx ends.
func (p *Producer) Run(ctx context.Context) (err error) {
	defer func() {
		p.err = err
		close(p.done)
	}()
	defer p.writer.Close()
	gen := NewGenerator(p.cfg.StartID, p.cfg.Seed)
	start := time.Now()
	batch := make([]envelope.Output, 0, p.cfg.BatchSize)
	orders := make([]schemas.Order, 0, p.cfg.BatchSize)
	for produced := 0; p.cfg.Count == 0 || produced < p.cfg.Count; {
		n := p.cfg.BatchSize
		if p.cfg.Count > 0 {
			n = min(n, p.cfg.Count-produced)
		}
		if p.cfg.Rate > 0 {
			// Send what is due by now, waiting for the next order if none is.
			due := int(time.Since(start).Seconds()*p.cfg.Rate) + 1 - produced
			if due <= 0 {
				next := start.Add(time.Duration(float64(produced) / p.cfg.Rate * float64(time.Second)))
				if !wait.Until(ctx, time.Now, next) {
					return nil
				}
				continue
			}
			n = min(n, due)
		}
		batch, orders = batch[:0], orders[:0]
		for range n {
			o := gen.Next()
			v, err := p.cfg.Values.Encode(ctx, o)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			orders = append(orders, o)
			batch = append(batch, envelope.Output{Topic: p.top.Orders, Partition: envelope.AnyPartition, Key: []byte(o.OrderID), Value: v})
		}
		if err := p.write(ctx, batch); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for _, o := range orders {
			if ce := p.log.Check(zap.InfoLevel, "order sent"); ce != nil { // mostly sampled out at high rates
				ce.Write(zap.String("orderId", o.OrderID), zap.String("product", o.Product), zap.Float32("price", o.Price))
			}
		}
		produced += n
		p.sent.Add(int64(n))
	}
	return nil
}

// write retries until the batch is acknowledged or ctx ends.
func (p *Producer) write(ctx context.Context, batch []envelope.Output) error {
	for b := wait.NewBackoff(); ; {
		err := p.writer.Write(ctx, batch)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Unlike a stage, which waits for an ACL to be granted, a producer
		// run stops: it is a command someone is watching.
		if err := p.client.ExplainWrite(ctx, err, batch); errors.Is(err, kafka.ErrDenied) {
			return fmt.Errorf("produce to %s: %w", p.top.Orders, err)
		}
		// A topic the lookup did not find fails the whole call; a record
		// refused for a partition whose leader moves does not.
		if _, some := errors.AsType[kafka.WriteErrors](err); !some && kafka.UnknownTopic(err) {
			return fmt.Errorf("produce to %s: %w (run orders topics)", p.top.Orders, err)
		}
		p.errs.Add(1)
		p.log.Warn("produce; retrying", zap.Error(err))
		if !b.Wait(ctx) {
			return ctx.Err()
		}
	}
}
