// Package schemas holds the Avro schema of an order, embedded in the binary,
// and encodes and decodes orders as plain Avro binary (no registry header),
// byte for byte what the original Python producer writes.
package schemas

import (
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/hamba/avro/v2"
)

//go:embed order.avsc
var orderSchemaJSON string

// OrderSchemaJSON is the text of order.avsc.
func OrderSchemaJSON() string { return orderSchemaJSON }

// Order is one record of the orders topic.
type Order struct {
	OrderID string  `avro:"orderId" json:"orderId"`
	Product string  `avro:"product" json:"product"`
	Price   float32 `avro:"price" json:"price"`
}

// MaxStringSize bounds each string field of an untrusted record, so a forged
// length prefix cannot make the decoder allocate more than this.
const MaxStringSize = 4096

// MaxPrice is the largest price an order may carry.
const MaxPrice = 1_000_000

// orderSchema is order.avsc parsed by hamba/avro. Encode and Decode are
// written for exactly its fields, so a binary whose schema differs fails at
// start instead of reading orders wrongly.
var orderSchema = func() avro.Schema {
	s := avro.MustParse(orderSchemaJSON)
	if err := checkCodec(s); err != nil {
		panic(err)
	}
	return s
}()

// codecFields are the fields, in order, that Encode and Decode read and write.
var codecFields = [...]struct {
	name string
	typ  avro.Type
}{{"orderId", avro.String}, {"product", avro.String}, {"price", avro.Float}}

// checkCodec reports whether s is the record Encode and Decode are written for.
func checkCodec(s avro.Schema) error {
	rec, ok := s.(*avro.RecordSchema)
	if !ok {
		return fmt.Errorf("schemas: order.avsc is a %s, not a record", s.Type())
	}
	fs := rec.Fields()
	if len(fs) != len(codecFields) {
		return fmt.Errorf("schemas: order.avsc has %d fields; the codec reads %d", len(fs), len(codecFields))
	}
	for i, f := range fs {
		if want := codecFields[i]; f.Name() != want.name || f.Type().Type() != want.typ {
			return fmt.Errorf("schemas: order.avsc field %d is %s %s; the codec reads %s %s",
				i+1, f.Name(), f.Type().Type(), want.name, want.typ)
		}
	}
	return nil
}

// ErrDecode marks bytes that are not an Avro-encoded order.
var ErrDecode = errors.New("decode order")

// ErrInvalid marks a well-formed order whose fields cannot be processed.
var ErrInvalid = errors.New("invalid order")

// Encode returns the Avro binary encoding of o: each string as its
// zig-zag varint length and its bytes, the price as 4 little-endian bytes.
// The record is this small and this fixed, so it is written by hand in one
// allocation; TestEncodeMatchesHamba holds it to hamba/avro's encoding of
// order.avsc.
func Encode(o Order) ([]byte, error) {
	b := make([]byte, 0, 2*binary.MaxVarintLen64+len(o.OrderID)+len(o.Product)+4)
	b = binary.AppendVarint(b, int64(len(o.OrderID)))
	b = append(b, o.OrderID...)
	b = binary.AppendVarint(b, int64(len(o.Product)))
	b = append(b, o.Product...)
	return binary.LittleEndian.AppendUint32(b, math.Float32bits(o.Price)), nil
}

// Decode parses untrusted bytes into an Order. It rejects truncated input,
// trailing bytes and strings longer than MaxStringSize; the error wraps
// ErrDecode. It does not validate the fields: see Validate.
//
// Like Encode it is written by hand for this one fixed record, reading
// lengths exactly as hamba/avro does (zig-zag varints of at most 10 bytes)
// and copying both strings in one allocation; FuzzDecodeMatchesHamba holds
// it to hamba/avro's reading of order.avsc, accepted bytes and errors alike.
func Decode(b []byte) (Order, error) {
	if len(b) == 0 {
		return Order{}, fmt.Errorf("%w: empty value", ErrDecode)
	}
	idStart, idEnd, err := stringAt(b, 0, "orderId")
	if err != nil {
		return Order{}, err
	}
	productStart, productEnd, err := stringAt(b, idEnd, "product")
	if err != nil {
		return Order{}, err
	}
	if len(b)-productEnd < 4 {
		return Order{}, truncated(b, "price")
	}
	if len(b) > productEnd+4 {
		return Order{}, fmt.Errorf("%w: trailing bytes after the order", ErrDecode)
	}
	// One copy holds both strings (and the length between them).
	text := string(b[idStart:productEnd])
	return Order{
		OrderID: text[:idEnd-idStart],
		Product: text[productStart-idStart:],
		Price:   math.Float32frombits(binary.LittleEndian.Uint32(b[productEnd:])),
	}, nil
}

// stringAt reads the Avro string whose length starts at b[i] and returns
// where its bytes start and end.
func stringAt(b []byte, i int, field string) (start, end int, err error) {
	// A long is a zig-zag varint of at most 10 bytes; bits past 64 are
	// dropped, as hamba/avro drops them.
	var v uint64
	for n := 0; ; n++ {
		if n == maxVarintLen {
			return 0, 0, fmt.Errorf("%w: %s: length is not a valid long", ErrDecode, field)
		}
		if i+n >= len(b) {
			return 0, 0, truncated(b, field)
		}
		c := b[i+n]
		v |= uint64(c&0x7f) << (7 * n)
		if c&0x80 == 0 {
			i += n + 1
			break
		}
	}
	size := int(int64(v>>1) ^ -int64(v&1))
	switch {
	case size < 0:
		return 0, 0, fmt.Errorf("%w: %s: negative length %d", ErrDecode, field, size)
	case size > MaxStringSize:
		return 0, 0, fmt.Errorf("%w: %s: length %d above %d", ErrDecode, field, size, MaxStringSize)
	case size > len(b)-i:
		return 0, 0, truncated(b, field)
	}
	return i, i + size, nil
}

const maxVarintLen = 10

func truncated(b []byte, field string) error {
	return fmt.Errorf("%w: truncated after %d bytes, in %s", ErrDecode, len(b), field)
}

// Validate reports why an order cannot be processed, wrapping ErrInvalid.
func Validate(o Order) error {
	p := float64(o.Price)
	switch {
	case o.OrderID == "":
		return fmt.Errorf("%w: empty orderId", ErrInvalid)
	case math.IsNaN(p):
		return fmt.Errorf("%w: price is NaN", ErrInvalid)
	case math.IsInf(p, 0):
		return fmt.Errorf("%w: price is infinite", ErrInvalid)
	case p < 0:
		return fmt.Errorf("%w: negative price %v", ErrInvalid, o.Price)
	case p > MaxPrice:
		return fmt.Errorf("%w: price %v above %d", ErrInvalid, o.Price, MaxPrice)
	}
	return nil
}
