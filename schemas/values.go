package schemas

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
)

// Values turns orders into record values and back, in one wire format.
type Values interface {
	// Encode returns the record value of o.
	Encode(ctx context.Context, o Order) ([]byte, error)
	// Decode returns the order in a record value. An error wrapping
	// ErrDecode, ErrIncompatible or ErrUnknownSchema is the value's: it
	// will never decode. Any other (ctx ended, a registry unreachable)
	// says nothing about the value.
	Decode(ctx context.Context, b []byte) (Order, error)
}

// Values are the codec's orders in plain Avro: no header, so the writer's
// schema is the codec's by definition.
func (c *Codec) Values() Values { return plainValues{c} }

type plainValues struct{ c *Codec }

// OrPlain is v, or if v is nil plain Avro of order.avsc: the default of
// every option that takes Values.
func OrPlain(v Values) Values {
	if v == nil {
		return Plain.Values()
	}
	return v
}

func (p plainValues) Encode(_ context.Context, o Order) ([]byte, error) { return p.c.Encode(o) }
func (p plainValues) Decode(_ context.Context, b []byte) (Order, error) { return p.c.Decode(b) }

// IsValueError reports whether err, from Values.Decode, is about the value
// itself rather than the moment (a registry unreachable, ctx ended).
func IsValueError(err error) bool {
	return errors.Is(err, ErrDecode) || errors.Is(err, ErrIncompatible) || errors.Is(err, ErrUnknownSchema)
}

// ErrUnknownSchema marks a value whose schema id the registry does not know.
var ErrUnknownSchema = errors.New("unknown schema id")

// The Confluent wire format: a magic byte 0, the writer schema's id as 4
// bytes big-endian, then the Avro body.
const (
	confluentMagic = 0
	// FrameLen is the length of the Confluent header.
	FrameLen = 5
)

// AppendFrame appends the Confluent header naming schema id to dst.
func AppendFrame(dst []byte, id uint32) []byte {
	return binary.BigEndian.AppendUint32(append(dst, confluentMagic), id)
}

// Unframe splits a value in the Confluent wire format into its writer
// schema's id and its Avro body. The error wraps ErrDecode.
func Unframe(b []byte) (id uint32, body []byte, err error) {
	switch {
	case len(b) == 0:
		return 0, nil, fmt.Errorf("%w: empty value", ErrDecode)
	case b[0] != confluentMagic:
		return 0, nil, fmt.Errorf("%w: not in the Confluent wire format: first byte 0x%02x, not the magic byte 0x00", ErrDecode, b[0])
	case len(b) < FrameLen:
		return 0, nil, fmt.Errorf("%w: not in the Confluent wire format: %d bytes, shorter than its %d-byte header", ErrDecode, len(b), FrameLen)
	}
	return binary.BigEndian.Uint32(b[1:FrameLen]), b[FrameLen:], nil
}
