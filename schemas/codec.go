package schemas

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/hamba/avro/v2"
)

// Codec encodes and decodes orders in the Avro binary encoding of one order
// schema, with hamba/avro. The schema may have fields Order does not: each
// needs a default, which Encode writes, and Decode reads past them.
type Codec struct {
	schema  avro.Schema
	text    string
	api     avro.API
	readers sync.Pool // of *avro.Reader
}

// limits bound what hamba/avro allocates for a forged length.
var limits = avro.Config{MaxByteSliceSize: MaxStringSize, MaxSliceAllocSize: MaxStringSize}.Freeze()

// Plain is the codec of the embedded order.avsc.
var Plain = func() *Codec {
	c, err := NewCodec(orderSchemaJSON)
	if err != nil {
		panic("schemas: order.avsc: " + err.Error())
	}
	return c
}()

// probe is the order NewCodec writes and reads back to check a schema.
var probe = Order{OrderID: "probe", Product: "probe", Price: 1.5}

// NewCodec parses an order schema. It refuses a schema that cannot carry an
// Order both ways: not a record, a field of Order missing or of a type it
// cannot hold, or a field Order lacks that has no default.
func NewCodec(schemaJSON string) (*Codec, error) {
	s, err := avro.Parse(schemaJSON)
	if err != nil {
		return nil, fmt.Errorf("not an Avro schema: %w", err)
	}
	if s.Type() != avro.Record {
		return nil, fmt.Errorf("an order schema is a record, not a %s", s.Type())
	}
	c := &Codec{schema: s, text: schemaJSON, api: limits}
	c.readers.New = func() any { return avro.NewReader(nil, 0, avro.WithReaderConfig(limits)) }
	b, err := c.Encode(probe)
	if err != nil {
		return nil, fmt.Errorf("cannot write an order: %w", err)
	}
	if o, err := c.Decode(b); err != nil || o != probe {
		return nil, fmt.Errorf("cannot read an order back: got %+v, %v", o, err)
	}
	return c, nil
}

// Schema is the codec's order schema.
func (c *Codec) Schema() avro.Schema { return c.schema }

// SchemaJSON is the text the codec was made from.
func (c *Codec) SchemaJSON() string { return c.text }

// Encode returns the Avro binary encoding of o.
func (c *Codec) Encode(o Order) ([]byte, error) { return c.api.Marshal(c.schema, o) }

// Decode parses untrusted bytes written with the codec's schema. It rejects
// empty and truncated input, trailing bytes and strings, bytes, arrays and
// maps longer than MaxStringSize; the error wraps ErrDecode. It does not
// validate the fields: see Validate.
func (c *Codec) Decode(b []byte) (Order, error) { return c.decode(c.schema, b) }

// decode reads b as the record of schema s, which is c's schema or a
// writer's schema resolved against it.
func (c *Codec) decode(s avro.Schema, b []byte) (Order, error) {
	var o Order
	if len(b) == 0 {
		return o, fmt.Errorf("%w: empty value", ErrDecode)
	}
	r := c.readers.Get().(*avro.Reader)
	r.Reset(b)
	r.ReadVal(s, &o)
	err := r.Error
	if err == nil {
		if r.Peek(); r.Error == nil {
			err = errTrailing
		}
	}
	r.Error = nil
	r.Reset(nil)
	c.readers.Put(r)
	if err != nil {
		return Order{}, decodeError(b, err)
	}
	return o, nil
}

var errTrailing = errors.New("trailing bytes after the order")

// decodeError says why hamba/avro could not read b, in the schema's words.
func decodeError(b []byte, err error) error {
	switch {
	case err == errTrailing:
		return fmt.Errorf("%w: %v", ErrDecode, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), strings.HasSuffix(err.Error(), "EOF"):
		return fmt.Errorf("%w: truncated: %d bytes end inside the order", ErrDecode, len(b))
	}
	return fmt.Errorf("%w: %s", ErrDecode, hambaWords.Replace(err.Error()))
}

// hambaWords turns hamba/avro's error texts into the schema's words: its
// Go field names into order.avsc's, its limits into their sizes.
var hambaWords = strings.NewReplacer(
	"OrderID: ", "orderId: ", "Product: ", "product: ", "Price: ", "price: ",
	"avro: ", "", "ReadSTRING: ", "", "ReadBYTES: ", "", "ReadLONG: ", "", "ReadINT: ", "",
	"invalid string length", "negative length", "invalid bytes length", "negative length",
	"size is greater than `Config.MaxByteSliceSize`", fmt.Sprintf("length above %d bytes", MaxStringSize),
	"size is greater than `Config.MaxSliceAllocSize`", fmt.Sprintf("more than %d items", MaxStringSize),
)

// ErrIncompatible marks a writer's schema that cannot be read as an order
// schema: Avro's schema resolution fails between them.
var ErrIncompatible = errors.New("incompatible schema")

// Resolve returns the decoder of values written with writer, read as c's
// schema by Avro's schema resolution: fields only the writer has are
// skipped, fields only c's schema has take their defaults. The error wraps
// ErrIncompatible and names what differs.
func (c *Codec) Resolve(writer avro.Schema) (*Resolved, error) {
	if writer.Fingerprint() == c.schema.Fingerprint() {
		return &Resolved{c: c, schema: c.schema}, nil
	}
	s, err := avro.NewSchemaCompatibility().Resolve(c.schema, writer)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrIncompatible, strings.TrimPrefix(err.Error(), "avro: "))
	}
	return &Resolved{c: c, schema: s}, nil
}

// Resolved decodes values of one writer's schema as orders.
type Resolved struct {
	c      *Codec
	schema avro.Schema
}

// Decode is Codec.Decode for values of the resolved writer's schema.
func (r *Resolved) Decode(b []byte) (Order, error) { return r.c.decode(r.schema, b) }

// Encode is Plain.Encode: o in plain Avro of order.avsc.
func Encode(o Order) ([]byte, error) { return Plain.Encode(o) }

// Decode is Plain.Decode: an order from plain Avro of order.avsc.
func Decode(b []byte) (Order, error) { return Plain.Decode(b) }
