package processor_test

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/processor"
)

func TestRuleValidate(t *testing.T) {
	for _, rate := range []float64{0, 0.3, 1} {
		if err := (processor.Rule{FlakyRate: rate}).Validate(); err != nil {
			t.Errorf("FlakyRate %v: %v", rate, err)
		}
	}
	for _, rate := range []float64{math.NaN(), -0.01, -1, 1.0001, 2, math.Inf(1), math.Inf(-1)} {
		err := (processor.Rule{FlakyRate: rate}).Validate()
		if err == nil {
			t.Errorf("FlakyRate %v accepted", rate)
			continue
		}
		if !strings.Contains(err.Error(), "FLAKY_RATE") {
			t.Errorf("FlakyRate %v: error %q does not name FLAKY_RATE", rate, err)
		}
	}
}

func order(id, product string) schemas.Order {
	return schemas.Order{OrderID: id, Product: product, Price: 39.79}
}

func TestProcessFailsFailProducts(t *testing.T) {
	r := processor.Rule{FailProducts: []string{"Item3", "Item4"}}
	for attempt := 1; attempt <= 4; attempt++ {
		for _, p := range []string{"Item3", "Item4"} {
			err := r.Process(order("1006", p), attempt)
			if !errors.Is(err, processor.ErrFailingProduct) {
				t.Fatalf("Process(%s, %d) = %v, want ErrFailingProduct", p, attempt, err)
			}
			if !strings.Contains(err.Error(), p) {
				t.Fatalf("error %q does not name the product %s", err, p)
			}
		}
		for _, p := range []string{"Item1", "Item2", "item3", ""} {
			if err := r.Process(order("1006", p), attempt); err != nil {
				t.Fatalf("Process(%q, %d) = %v, want success", p, attempt, err)
			}
		}
	}
	if err := (processor.Rule{}).Process(order("1", "Item3"), 1); err != nil {
		t.Fatalf("the zero Rule failed Item3: %v", err)
	}
}

func TestFlakyRateZeroNeverFails(t *testing.T) {
	r := processor.Rule{FlakyRate: 0}
	for i := range 10000 {
		for attempt := 1; attempt <= 4; attempt++ {
			if err := r.Process(order(strconv.Itoa(i), "Item1"), attempt); err != nil {
				t.Fatalf("order %d attempt %d: %v", i, attempt, err)
			}
		}
	}
}

func TestFlakyRateOneAlwaysFails(t *testing.T) {
	r := processor.Rule{FlakyRate: 1}
	for i := range 10000 {
		for attempt := 1; attempt <= 4; attempt++ {
			if err := r.Process(order(strconv.Itoa(i), "Item1"), attempt); !errors.Is(err, processor.ErrTransient) {
				t.Fatalf("order %d attempt %d: %v, want ErrTransient", i, attempt, err)
			}
		}
	}
}

func TestFlakyRateFailsAboutThatFraction(t *testing.T) {
	const n, rate = 10000, 0.3
	r := processor.Rule{FlakyRate: rate}
	for attempt := 1; attempt <= 4; attempt++ {
		failed := 0
		for i := range n {
			err := r.Process(order(strconv.Itoa(1001+i), "Item1"), attempt)
			switch {
			case err == nil:
			case errors.Is(err, processor.ErrTransient):
				failed++
			default:
				t.Fatalf("unexpected error %v", err)
			}
		}
		if got := float64(failed) / n; math.Abs(got-rate) > 0.03 {
			t.Errorf("attempt %d: %d of %d failed (%.3f), want %.2f +- 0.03", attempt, failed, n, got, rate)
		}
	}
}

func TestFlakyRateIsDeterministic(t *testing.T) {
	a, b := processor.Rule{FlakyRate: 0.3}, processor.Rule{FlakyRate: 0.3}
	failures := 0
	for i := range 2000 {
		for attempt := 1; attempt <= 4; attempt++ {
			o := order(strconv.Itoa(1001+i), "Item2")
			first := a.Process(o, attempt)
			for range 3 {
				if again := b.Process(o, attempt); (again == nil) != (first == nil) {
					t.Fatalf("order %s attempt %d: %v then %v", o.OrderID, attempt, first, again)
				}
			}
			if first != nil {
				failures++
			}
		}
	}
	if failures == 0 {
		t.Fatal("no order failed: the check above proved nothing")
	}
}

func TestFlakyFailureIsIndependentOfAttempt(t *testing.T) {
	const rate = 0.3
	r := processor.Rule{FlakyRate: rate}
	failed, recovered := 0, 0
	for i := range 10000 {
		o := schemas.Order{OrderID: strconv.Itoa(1001 + i), Product: "Item1", Price: 10}
		if r.Process(o, 1) != nil {
			failed++
			if r.Process(o, 2) == nil {
				recovered++
			}
		}
	}
	if got := float64(recovered) / float64(failed); math.Abs(got-(1-rate)) > 0.05 {
		t.Fatalf("%d of %d orders failing attempt 1 passed attempt 2 (%.3f), want about %.2f", recovered, failed, got, 1-rate)
	}
}
