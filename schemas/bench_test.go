package schemas_test

import (
	"testing"

	"github.com/hamba/avro/v2"

	"github.com/orderflow/orders/schemas"
)

// benchOrder is a typical order: a 7-digit orderId, as after a million
// orders, and one of the generator's products.
var benchOrder = schemas.Order{OrderID: "1234567", Product: "Item3", Price: 39.79}

var (
	sinkOrder schemas.Order
	sinkBytes []byte
)

// The Direct benchmarks call hamba/avro on the same struct and schema with
// its default configuration: the floor for Decode and Encode, which add
// input limits and the trailing-bytes check.

func BenchmarkDecode(b *testing.B) {
	v, err := schemas.Encode(benchOrder)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if sinkOrder, err = schemas.Decode(v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeDirect(b *testing.B) {
	schema := avro.MustParse(schemas.OrderSchemaJSON())
	v, err := avro.Marshal(schema, benchOrder)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		var o schemas.Order
		if err := avro.Unmarshal(schema, v, &o); err != nil {
			b.Fatal(err)
		}
		sinkOrder = o
	}
}

func BenchmarkEncode(b *testing.B) {
	b.ReportAllocs()
	var err error
	for b.Loop() {
		if sinkBytes, err = schemas.Encode(benchOrder); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeDirect(b *testing.B) {
	schema := avro.MustParse(schemas.OrderSchemaJSON())
	b.ReportAllocs()
	var err error
	for b.Loop() {
		if sinkBytes, err = avro.Marshal(schema, benchOrder); err != nil {
			b.Fatal(err)
		}
	}
}
