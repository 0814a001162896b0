package main

import (
	"context"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/orderflow/orders/services/admin"
	"github.com/orderflow/orders/services/broker"
	"github.com/orderflow/orders/services/outcome"

	"github.com/orderflow/orders/services/aggregator"
	"github.com/orderflow/orders/services/processor"
	"github.com/orderflow/orders/services/producer"
)

// Every fx app the binary builds is complete: each dependency is provided.
func TestAppsValidate(t *testing.T) {
	s := newSettings()
	c, err := s.load()
	if err != nil {
		t.Fatal(err)
	}
	retries := []fx.Option{}
	for k := 1; k <= c.topology.Stages(); k++ {
		m, err := processor.RetryModule(c.topology, k)
		if err != nil {
			t.Fatal(err)
		}
		retries = append(retries, m)
		if err := fx.ValidateApp(c.provide(), m); err != nil {
			t.Errorf("retry stage %d: %v", k, err)
		}
	}
	apps := map[string][]fx.Option{
		"main":       {processor.MainModule},
		"aggregator": {aggregator.Module},
		"producer":   {producer.Module, fx.Supply(producer.Config{Count: 1})},
		"demo":       append([]fx.Option{processor.MainModule, aggregator.Module, producer.Module, fx.Supply(producer.Config{Count: 1})}, retries...),
	}
	for name, opts := range apps {
		if err := fx.ValidateApp(append([]fx.Option{c.provide()}, opts...)...); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Stopping an fx app leaves no goroutine behind: every stage, the
// producer and their Kafka connections are owned and waited for.
func TestAppStopLeavesNoGoroutines(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	b, err := broker.Start(broker.Config{Listen: "127.0.0.1:0"}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	s := newSettings()
	s.brokers = []string{b.Addr()}
	s.retryDelays = []time.Duration{50 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond}
	s.logLevel = zap.ErrorLevel
	c, err := s.load()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := admin.EnsureTopics(ctx, c.client, c.topology, c.check); err != nil {
		t.Fatal(err)
	}
	opts := []fx.Option{c.provide(), processor.MainModule, aggregator.Module, producer.Module, fx.Supply(producer.Config{Count: 50, Seed: 1})}
	for k := 1; k <= c.topology.Stages(); k++ {
		m, _ := processor.RetryModule(c.topology, k)
		opts = append(opts, m)
	}
	app := fx.New(opts...)
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	_, _, err = outcome.Wait(ctx, c.client, c.topology, nil, 50, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	b.Close()
	goleak.VerifyNone(t, ignore)
}
