package schemas_test

import (
	"bytes"
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

// FuzzDecodeMatchesHamba holds the hand-written Decode to hamba/avro's
// reading of order.avsc with the same limits: the same bytes are accepted,
// into the same order, and the same are rejected.
func FuzzDecodeMatchesHamba(f *testing.F) {
	f.Add([]byte{0x08, '1', '0', '0', '6', 0x0a, 'I', 't', 'e', 'm', '3', 0xf6, 0x28, 0x1f, 0x42})
	f.Add([]byte{0x00, 0x00, 0x00, 0x00, 0x80, 0x7f})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00})
	f.Add([]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00})
	f.Add([]byte{0x80, 0x40, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := schemas.Decode(b)
		want, werr := hambaDecode(b)
		if (err == nil) != (werr == nil) {
			t.Fatalf("Decode(%x) = %+v, %v; hamba/avro: %+v, %v", b, got, err, want, werr)
		}
		if err == nil && (got.OrderID != want.OrderID || got.Product != want.Product ||
			math.Float32bits(got.Price) != math.Float32bits(want.Price)) {
			t.Fatalf("Decode(%x) = %+v; hamba/avro: %+v", b, got, want)
		}
	})
}

// hambaDecode reads b with hamba/avro under Decode's limits, rejecting
// empty input and trailing bytes as Decode does.
func hambaDecode(b []byte) (schemas.Order, error) {
	var o schemas.Order
	if len(b) == 0 {
		return o, errors.New("empty")
	}
	cfg := avro.Config{MaxByteSliceSize: schemas.MaxStringSize, MaxSliceAllocSize: schemas.MaxStringSize}.Freeze()
	r := avro.NewReader(bytes.NewReader(b), 16, avro.WithReaderConfig(cfg))
	r.ReadVal(hambaSchema, &o)
	if r.Error != nil {
		return o, r.Error
	}
	if r.Peek(); r.Error == nil {
		return o, errors.New("trailing bytes")
	}
	return o, nil
}

var hambaSchema = avro.MustParse(schemas.OrderSchemaJSON())
