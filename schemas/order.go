// Package schemas holds the order: its Avro schema, embedded in the binary,
// the Go value stages decide on, and the ways an order travels as a record
// value. Plain Avro (no header, byte for byte what the original Python
// producer writes) is the default; the Confluent Schema Registry framing
// names each value's writer schema by id. Encoding and decoding are
// hamba/avro's, under limits on untrusted bytes.
package schemas

import (
	_ "embed"
	"errors"
	"fmt"
	"math"
)

//go:embed order.avsc
var orderSchemaJSON string

// OrderSchemaJSON is the text of order.avsc.
func OrderSchemaJSON() string { return orderSchemaJSON }

// Order is what a stage knows of an order: the fields it decides on. An
// order schema may have more fields; they travel in the record's bytes,
// which the stages forward untouched.
type Order struct {
	OrderID string  `avro:"orderId" json:"orderId"`
	Product string  `avro:"product" json:"product"`
	Price   float32 `avro:"price" json:"price"`
}

// MaxStringSize bounds each string or bytes field of an untrusted record,
// and the items of each array or map, so a forged length prefix cannot make
// the decoder allocate more than this.
const MaxStringSize = 4096

// MaxPrice is the largest price an order may carry.
const MaxPrice = 1_000_000

// ErrDecode marks bytes that are not an order.
var ErrDecode = errors.New("decode order")

// ErrInvalid marks a well-formed order whose fields cannot be processed.
var ErrInvalid = errors.New("invalid order")

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
