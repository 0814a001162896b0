package schemas_test

import (
	"errors"
	"math"
	"testing"

	"github.com/hamba/avro/v2"

	"github.com/orderflow/orders/schemas"
)

// FuzzDecode feeds arbitrary bytes to Decode: it never panics, fails only
// with ErrDecode, and whatever it accepts encodes and decodes to the same
// order. The seed corpus is in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{0x08, '1', '0', '0', '6', 0x0a, 'I', 't', 'e', 'm', '3', 0xf6, 0x28, 0x1f, 0x42})
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := schemas.Decode(b)
		if err != nil {
			if !errors.Is(err, schemas.ErrDecode) {
				t.Fatalf("Decode error %v does not wrap ErrDecode", err)
			}
			return
		}
		if len(o.OrderID) > schemas.MaxStringSize || len(o.Product) > schemas.MaxStringSize {
			t.Fatalf("decoded a string over the limit: %d, %d", len(o.OrderID), len(o.Product))
		}
		again, err := schemas.Encode(o)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", o, err)
		}
		back, err := schemas.Decode(again)
		if err != nil {
			t.Fatalf("decode of re-encoded %+v: %v", o, err)
		}
		if back.OrderID != o.OrderID || back.Product != o.Product || math.Float32bits(back.Price) != math.Float32bits(o.Price) {
			t.Fatalf("round trip changed %+v into %+v", o, back)
		}
	})
}

// FuzzDecodeResolved feeds arbitrary bytes to the decoder of a newer
// writer's schema resolved against order.avsc: it never panics, fails only
// with ErrDecode, and reads whatever it accepts into the same order as the
// newer schema's own codec, which reads past the fields Order lacks.
func FuzzDecodeResolved(f *testing.F) {
	newer := avro.MustParse(evolved)
	rs, err := schemas.Plain.Resolve(newer)
	if err != nil {
		f.Fatal(err)
	}
	own, err := schemas.NewCodec(evolved)
	if err != nil {
		f.Fatal(err)
	}
	seed, _ := avro.Marshal(newer, evolvedOrder{"1006", "Item3", 39.79, 2, "c-1"})
	f.Add(seed)
	f.Add([]byte{0x08, '1', '0', '0', '6', 0x0a, 'I', 't', 'e', 'm', '3', 0xf6, 0x28, 0x1f, 0x42})
	f.Add([]byte{0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x7f, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := rs.Decode(b)
		want, werr := own.Decode(b)
		if err != nil && !errors.Is(err, schemas.ErrDecode) {
			t.Fatalf("Decode error %v does not wrap ErrDecode", err)
		}
		if (err == nil) != (werr == nil) {
			t.Fatalf("resolved Decode(%x) = %+v, %v; the newer codec: %+v, %v", b, got, err, want, werr)
		}
		if err == nil && (got.OrderID != want.OrderID || got.Product != want.Product ||
			math.Float32bits(got.Price) != math.Float32bits(want.Price)) {
			t.Fatalf("resolved Decode(%x) = %+v; the newer codec: %+v", b, got, want)
		}
	})
}
