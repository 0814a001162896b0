package schemas_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"

	"github.com/orderflow/orders/schemas"
)

// The seed's DLQ example: raw_value_hex of order 1006, Item3, 39.79.
const seedHex = "08313030360a4974656d33f6281f42"

func TestSeedVectorDecodes(t *testing.T) {
	raw, _ := hex.DecodeString(seedHex)
	o, err := schemas.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := schemas.Order{OrderID: "1006", Product: "Item3", Price: 39.79}
	if o != want {
		t.Fatalf("decoded %+v, want %+v", o, want)
	}
}

func TestSeedVectorEncodes(t *testing.T) {
	b, err := schemas.Encode(schemas.Order{OrderID: "1006", Product: "Item3", Price: 39.79})
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(b); got != seedHex {
		t.Fatalf("encoded %s, want %s", got, seedHex)
	}
}

func TestDecodeRejectsBadBytes(t *testing.T) {
	raw, _ := hex.DecodeString(seedHex)
	cases := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "empty value"},
		{"not avro", []byte("hello, world"), "truncated: 12 bytes end inside the order"},
		{"truncated", raw[:len(raw)-2], "truncated: 13 bytes end inside the order"},
		{"trailing", append(append([]byte{}, raw...), 0x01), "trailing bytes after the order"},
		{"huge length", []byte{0xfe, 0xff, 0xff, 0xff, 0x0f}, "orderId: length above 4096 bytes"},
		{"negative length", []byte{0x01}, "orderId: negative length"},
		{"only the id", raw[:5], "truncated: 5 bytes end inside the order"},
		{"product too long", append([]byte{0x02, 'x', 0x82, 0x40}, make([]byte, 4097)...), "product: length above 4096 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := schemas.Decode(c.b)
			if !errors.Is(err, schemas.ErrDecode) || err.Error() != "decode order: "+c.want {
				t.Fatalf("Decode(%x) = %v, want ErrDecode: %s", c.b, err, c.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	ok := schemas.Order{OrderID: "1", Product: "Item1", Price: 10}
	if err := schemas.Validate(ok); err != nil {
		t.Fatal(err)
	}
	bad := map[string]schemas.Order{
		"empty id": {Product: "Item1", Price: 1},
		"nan":      {OrderID: "1", Price: float32(math.NaN())},
		"+inf":     {OrderID: "1", Price: float32(math.Inf(1))},
		"-inf":     {OrderID: "1", Price: float32(math.Inf(-1))},
		"negative": {OrderID: "1", Price: -1},
		"absurd":   {OrderID: "1", Price: 1e30},
	}
	for name, o := range bad {
		err := schemas.Validate(o)
		if !errors.Is(err, schemas.ErrInvalid) {
			t.Errorf("%s: Validate = %v, want ErrInvalid", name, err)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	in := schemas.Order{OrderID: strings.Repeat("9", 40), Product: "Item4", Price: 99.99}
	b, err := schemas.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := schemas.Decode(b)
	if err != nil || out != in {
		t.Fatalf("round trip: %+v, %v", out, err)
	}
}

// TestEncodeMatchesHamba holds Encode, hamba/avro under the project's
// limits, to hamba/avro's default encoding of order.avsc, byte for byte.
func TestEncodeMatchesHamba(t *testing.T) {
	schema := avro.MustParse(schemas.OrderSchemaJSON())
	long := strings.Repeat("x", 300)
	orders := []schemas.Order{
		{}, {OrderID: "1006", Product: "Item3", Price: 39.79}, {OrderID: long, Product: long + long, Price: -1},
		{OrderID: "é\x00\xff", Product: "", Price: float32(math.Inf(1))}, {Price: float32(math.NaN())},
		{OrderID: strings.Repeat("y", 64), Product: strings.Repeat("z", 8191), Price: math.MaxFloat32},
	}
	for i := range 1000 {
		orders = append(orders, schemas.Order{OrderID: strconv.Itoa(i * 7919), Product: "Item" + strconv.Itoa(i%5), Price: float32(i) / 7})
	}
	for _, o := range orders {
		want, err := avro.Marshal(schema, o)
		if err != nil {
			t.Fatal(err)
		}
		got, err := schemas.Encode(o)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("Encode(%+v) = %x, %v; hamba/avro: %x", o, got, err, want)
		}
	}
}
