package main

import (
	"testing"

	"go.uber.org/fx"

	"github.com/orderflow/orders/services/aggregator"
	"github.com/orderflow/orders/services/processor"
	"github.com/orderflow/orders/services/producer"
	"github.com/orderflow/orders/services/retry"
)

// Every fx app the binary builds is complete: each dependency is provided.
func TestAppsValidate(t *testing.T) {
	s := &settings{}
	for _, st := range s.list() {
		*st.dst = st.def
	}
	c, err := s.load()
	if err != nil {
		t.Fatal(err)
	}
	retries := []fx.Option{}
	for k := 1; k <= c.topology.Stages(); k++ {
		m, err := retry.Module(c.topology, k)
		if err != nil {
			t.Fatal(err)
		}
		retries = append(retries, m)
		if err := fx.ValidateApp(c.provide(), m); err != nil {
			t.Errorf("retry stage %d: %v", k, err)
		}
	}
	apps := map[string][]fx.Option{
		"main":       {processor.Module},
		"aggregator": {aggregator.Module},
		"producer":   {producer.Module, fx.Supply(producer.Config{Count: 1})},
		"demo":       append([]fx.Option{processor.Module, aggregator.Module, producer.Module, fx.Supply(producer.Config{Count: 1})}, retries...),
	}
	for name, opts := range apps {
		if err := fx.ValidateApp(append([]fx.Option{c.provide()}, opts...)...); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
