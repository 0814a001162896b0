// Package schemas holds the Avro schema of an order, embedded in the binary,
// and encodes and decodes orders as plain Avro binary (no registry header),
// byte for byte what the original Python producer writes.
package schemas

import (
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"

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

var (
	orderSchema = avro.MustParse(orderSchemaJSON)
	api         = avro.Config{
		MaxByteSliceSize:  MaxStringSize,
		MaxSliceAllocSize: MaxStringSize,
	}.Freeze()
	readers = sync.Pool{New: func() any { return avro.NewReader(nil, 0, avro.WithReaderConfig(api)) }}
)

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
func Decode(b []byte) (Order, error) {
	var o Order
	if len(b) == 0 {
		return o, fmt.Errorf("%w: empty value", ErrDecode)
	}
	r := readers.Get().(*avro.Reader)
	r.Reset(b)
	r.Error = nil
	r.ReadVal(orderSchema, &o)
	err := r.Error
	if err == nil {
		// Peek at the end sets io.EOF; anything else means bytes are left over.
		r.Peek()
		if r.Error == nil {
			err = errTrailing
		}
	}
	r.Reset(nil) // the pool must not keep b
	r.Error = nil
	readers.Put(r)
	switch {
	case err == nil:
		return o, nil
	case err == errTrailing:
		return Order{}, fmt.Errorf("%w: trailing bytes after the order", ErrDecode)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return Order{}, fmt.Errorf("%w: truncated after %d bytes: %v", ErrDecode, len(b), err)
	}
	return Order{}, fmt.Errorf("%w: %v", ErrDecode, err)
}

var errTrailing = errors.New("trailing bytes")

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
