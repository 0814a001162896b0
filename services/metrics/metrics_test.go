package metrics_test

import (
	"testing"
	"time"

	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/metrics"
	"github.com/orderflow/orders/topology"
)

// A batch's outputs are counted by outcome and by label value, whatever
// their mix and order.
func TestHandledCountsEachOutcome(t *testing.T) {
	top, err := topology.New(topology.Topology{})
	if err != nil {
		t.Fatal(err)
	}
	r := metrics.New(top)
	s := r.Stage("main")
	retry := func(class string) envelope.Output {
		o := envelope.Output{Topic: top.RetryTopic(1)}
		if class != "" {
			o.Headers = []envelope.Header{{Key: envelope.HeaderErrorClass, Value: []byte(class)}}
		}
		return o
	}
	dead := func(reason string) envelope.Output {
		return envelope.Output{Topic: top.DLQ, Headers: []envelope.Header{{Key: envelope.HeaderDLQReason, Value: []byte(reason)}}}
	}
	processed := envelope.Output{Topic: top.Processed}
	outs := []envelope.Output{
		retry("failing_product"), processed, retry("flaky"), dead("undecodable"), retry("failing_product"),
		processed, dead("invalid"), retry(""), dead("undecodable"), retry("failing_product"),
		retry("a"), retry("b"), retry("c"), retry("d"), retry("a"),
	}
	batch := make([]envelope.Record, len(outs))
	s.Handled(batch, outs, time.Now())
	s.Handled(batch[:1], outs[:1], time.Now())

	want := map[string]float64{
		`orders_records_consumed_total{stage="main"}`:                              16,
		`orders_records_processed_total{stage="main"}`:                             2,
		`orders_records_retried_total{error_class="failing_product",stage="main"}`: 4,
		`orders_records_retried_total{error_class="flaky",stage="main"}`:           1,
		`orders_records_retried_total{error_class="other",stage="main"}`:           1,
		`orders_records_retried_total{error_class="a",stage="main"}`:               2,
		`orders_records_retried_total{error_class="d",stage="main"}`:               1,
		`orders_records_dead_lettered_total{reason="undecodable",stage="main"}`:    2,
		`orders_records_dead_lettered_total{reason="invalid",stage="main"}`:        1,
		`orders_handling_seconds_count{stage="main"}`:                              16,
	}
	got := gather(t, r)
	for series, n := range want {
		if got[series] != n {
			t.Errorf("%s = %v, want %v", series, got[series], n)
		}
	}
}

// gather returns every counter and histogram count of r by series.
func gather(t *testing.T, r *metrics.Registry) map[string]float64 {
	t.Helper()
	mfs, err := r.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			labels := ""
			for i, l := range m.GetLabel() {
				if i > 0 {
					labels += ","
				}
				labels += l.GetName() + `="` + l.GetValue() + `"`
			}
			switch {
			case m.GetCounter() != nil:
				out[name+"{"+labels+"}"] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				out[name+"_count{"+labels+"}"] = float64(m.GetHistogram().GetSampleCount())
				out[name+"_sum{"+labels+"}"] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

// Lateness has a series for each stage that took up a record late, and
// none for the others.
func TestLateObservesPerStage(t *testing.T) {
	top, err := topology.New(topology.Topology{})
	if err != nil {
		t.Fatal(err)
	}
	r := metrics.New(top)
	main, retry := r.Stage("main"), r.Stage("retry-1")
	main.Handled(make([]envelope.Record, 1), []envelope.Output{{Topic: top.Processed}}, time.Now())
	for _, late := range []time.Duration{time.Millisecond, 3 * time.Millisecond, 30 * time.Millisecond} {
		retry.Late(late)
	}
	got := gather(t, r)
	if n := got[`orders_retry_lateness_seconds_count{stage="retry-1"}`]; n != 3 {
		t.Errorf("retry-1 lateness count %v, want 3", n)
	}
	if s := got[`orders_retry_lateness_seconds_sum{stage="retry-1"}`]; s < 0.0339 || s > 0.0341 {
		t.Errorf("retry-1 lateness sum %v, want 0.034", s)
	}
	if _, ok := got[`orders_retry_lateness_seconds_count{stage="main"}`]; ok {
		t.Error("main, which took up nothing late, has a lateness series")
	}
}
