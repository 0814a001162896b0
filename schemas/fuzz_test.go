package schemas_test

import (
	"errors"
	"math"
	"testing"

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
