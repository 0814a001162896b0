package schemas_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"

	"github.com/orderflow/orders/schemas"
)

// orderWith is order.avsc with fields appended.
func orderWith(fields ...string) string {
	s := schemas.OrderSchemaJSON()
	i := strings.LastIndex(s, "}")
	i = strings.LastIndex(s[:i], "}") + 1
	return s[:i] + ", " + strings.Join(fields, ", ") + s[i:]
}

const (
	quantity   = `{ "name": "quantity", "type": "int", "default": 1 }`
	customerID = `{ "name": "customerId", "type": "string", "default": "" }`
)

// evolved is a newer order schema: two fields added with defaults.
var evolved = orderWith(quantity, customerID)

// evolvedOrder is an order of the evolved schema, with its own values.
type evolvedOrder struct {
	OrderID    string  `avro:"orderId"`
	Product    string  `avro:"product"`
	Price      float32 `avro:"price"`
	Quantity   int32   `avro:"quantity"`
	CustomerID string  `avro:"customerId"`
}

func TestCodecOfAnEvolvedSchemaWritesTheDefaults(t *testing.T) {
	c, err := schemas.NewCodec(evolved)
	if err != nil {
		t.Fatal(err)
	}
	o := schemas.Order{OrderID: "7", Product: "Item1", Price: 12.5}
	b, err := c.Encode(o)
	if err != nil {
		t.Fatal(err)
	}
	var full evolvedOrder
	if err := avro.Unmarshal(avro.MustParse(evolved), b, &full); err != nil {
		t.Fatal(err)
	}
	if full != (evolvedOrder{"7", "Item1", 12.5, 1, ""}) {
		t.Fatalf("wrote %+v", full)
	}
	if back, err := c.Decode(b); err != nil || back != o {
		t.Fatalf("Decode = %+v, %v", back, err)
	}
}

func TestNewCodecRefusesSchemasThatCannotCarryAnOrder(t *testing.T) {
	base := schemas.OrderSchemaJSON()
	cases := map[string]string{
		"not json":              `{"type":`,
		"not a record":          `"string"`,
		"field renamed":         strings.Replace(base, `"product"`, `"item"`, 1),
		"price a double":        strings.Replace(base, `"type": "float"`, `"type": "double"`, 1),
		"field without default": orderWith(`{ "name": "qty", "type": "int" }`),
	}
	for name, text := range cases {
		if text == base {
			t.Fatalf("%s: the schema did not change", name)
		}
		if _, err := schemas.NewCodec(text); err == nil {
			t.Errorf("%s: NewCodec accepted %s", name, text)
		}
	}
}

func TestResolveReadsANewerWriter(t *testing.T) {
	w := evolvedOrder{"42", "Item2", 19.25, 3, "c-9"}
	b, err := avro.Marshal(avro.MustParse(evolved), w)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := schemas.Plain.Resolve(avro.MustParse(evolved))
	if err != nil {
		t.Fatal(err)
	}
	o, err := rs.Decode(b)
	if want := (schemas.Order{OrderID: "42", Product: "Item2", Price: 19.25}); err != nil || o != want {
		t.Fatalf("Decode = %+v, %v; want %+v", o, err, want)
	}
	// The resolved decoder holds the same limits.
	if _, err := rs.Decode(append(b, 0)); !errors.Is(err, schemas.ErrDecode) {
		t.Fatalf("trailing byte: %v", err)
	}
}

func TestResolveFillsAFieldTheWriterRemoved(t *testing.T) {
	// Ours has a field with a default; the writer never had it.
	ours, err := schemas.NewCodec(orderWith(customerID))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := ours.Resolve(schemas.Plain.Schema())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := schemas.Encode(schemas.Order{OrderID: "1", Product: "Item4", Price: 2})
	if o, err := rs.Decode(b); err != nil || o.OrderID != "1" || o.Price != 2 {
		t.Fatalf("Decode = %+v, %v", o, err)
	}
}

func TestResolveNamesTheIncompatibility(t *testing.T) {
	base := schemas.OrderSchemaJSON()
	cases := map[string]string{
		"price a string":    strings.Replace(base, `"type": "float"`, `"type": "string"`, 1),
		"product missing":   strings.Replace(base, `{ "name": "product", "type": "string" },`, "", 1),
		"another record":    strings.Replace(base, `"name": "Order"`, `"name": "Invoice"`, 1),
		"not even a record": `"string"`,
	}
	for name, text := range cases {
		_, err := schemas.Plain.Resolve(avro.MustParse(text))
		if !errors.Is(err, schemas.ErrIncompatible) {
			t.Errorf("%s: Resolve = %v, want ErrIncompatible", name, err)
			continue
		}
		t.Logf("%s: %v", name, err)
	}
}

func TestUnframe(t *testing.T) {
	body, _ := schemas.Encode(schemas.Order{OrderID: "1", Product: "Item1", Price: 1})
	framed := append(schemas.AppendFrame(nil, 258), body...)
	if framed[0] != 0 || framed[3] != 1 || framed[4] != 2 {
		t.Fatalf("header %x", framed[:5])
	}
	id, got, err := schemas.Unframe(framed)
	if err != nil || id != 258 || string(got) != string(body) {
		t.Fatalf("Unframe = %d, %x, %v", id, got, err)
	}
	for name, b := range map[string][]byte{"empty": nil, "plain avro": body, "short": {0, 0, 1}} {
		if _, _, err := schemas.Unframe(b); !errors.Is(err, schemas.ErrDecode) {
			t.Errorf("%s: Unframe = %v, want ErrDecode", name, err)
		}
	}
}

func TestPlainValues(t *testing.T) {
	v := schemas.Plain.Values()
	o := schemas.Order{OrderID: "1006", Product: "Item3", Price: 39.79}
	b, err := v.Encode(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if back, err := v.Decode(context.Background(), b); err != nil || back != o {
		t.Fatalf("Decode = %+v, %v", back, err)
	}
	if _, err := v.Decode(context.Background(), b[:3]); !schemas.IsValueError(err) {
		t.Fatalf("truncated: %v is not a value error", err)
	}
}
