// Package processor is the main stage: it decides the outcome of each order
// (processed, retried later, or dead-lettered) by the processing rule. The
// retry stages reuse the same decision with their own place in the ladder.
package processor

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strconv"

	"github.com/orderflow/orders/schemas"
)

// Rule is the business processing of one order, as in the original
// assignment: some products always fail, and optionally any attempt fails
// transiently with a fixed probability.
type Rule struct {
	// FailProducts always fail. Optional, default none.
	FailProducts []string
	// FlakyRate is the probability in [0, 1] that an attempt fails
	// transiently. It is decided by a hash of orderId and attempt, so a run
	// repeats exactly. Optional, default 0.
	FlakyRate float64
}

// Validate reports a setting a user must fix.
func (r Rule) Validate() error {
	if math.IsNaN(r.FlakyRate) || r.FlakyRate < 0 || r.FlakyRate > 1 {
		return fmt.Errorf("FLAKY_RATE: %v is not a probability between 0 and 1", r.FlakyRate)
	}
	return nil
}

// ErrFailingProduct is the failure of a product listed in FailProducts.
var ErrFailingProduct = errors.New("product fails processing")

// failingProduct is ErrFailingProduct for one product, made without fmt:
// with many failing orders it is on the hot path.
type failingProduct string

func (p failingProduct) Error() string { return ErrFailingProduct.Error() + ": " + string(p) }
func (p failingProduct) Unwrap() error { return ErrFailingProduct }

// ErrTransient is a flaky failure that a later attempt may not see.
var ErrTransient = errors.New("transient processing failure")

// ErrorClass names the kind of a processing failure for metrics and DLQ
// filtering: failing_product, transient or other.
func ErrorClass(err error) string {
	switch {
	case errors.Is(err, ErrFailingProduct):
		return "failing_product"
	case errors.Is(err, ErrTransient):
		return "transient"
	}
	return "other"
}

// Process handles one valid order on its attempt-th try (1-based). A non-nil
// error is retryable.
func (r Rule) Process(o schemas.Order, attempt int) error {
	if r.failing(o.Product) >= 0 {
		return failingProduct(o.Product)
	}
	return r.flaky(o, attempt)
}

// flaky is the transient failure of an attempt, if it draws one.
func (r Rule) flaky(o schemas.Order, attempt int) error {
	if r.FlakyRate > 0 && flakyDraw(o.OrderID, attempt) < r.FlakyRate {
		return fmt.Errorf("%w (attempt %d)", ErrTransient, attempt)
	}
	return nil
}

// failing is the index of product in FailProducts, or -1.
func (r Rule) failing(product string) int { return slices.Index(r.FailProducts, product) }

// flakyDraw maps (orderId, attempt) to a number in [0, 1), independently
// for each attempt. FNV-1a alone barely moves its high bits when only the
// last byte changes, so its sum goes through splitmix64's finalizer.
func flakyDraw(orderID string, attempt int) float64 {
	h := fnv.New64a()
	h.Write([]byte(orderID))
	h.Write([]byte{0})
	h.Write([]byte(strconv.Itoa(attempt)))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}
