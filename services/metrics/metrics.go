// Package metrics exposes what each stage does in the Prometheus format,
// and the process's health: /metrics, /healthz (alive) and /readyz (every
// stage joined its group and the broker answers).
package metrics

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/topology"
)

// Registry holds the metrics of every stage run by one process.
type Registry struct {
	reg *prometheus.Registry
	top topology.Topology

	consumed, processed *prometheus.CounterVec
	retried, dead       *prometheus.CounterVec
	handling, lateness  *prometheus.HistogramVec
	waiting, held       *prometheus.GaugeVec
	refused             *prometheus.CounterVec
	average, count      prometheus.Gauge

	mu     sync.Mutex
	stages []*Stage
}

// New returns a registry for the stages of top.
func New(top topology.Topology) *Registry {
	r := &Registry{reg: prometheus.NewRegistry(), top: top}
	r.consumed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "orders_records_consumed_total", Help: "Records a stage read, handled and committed.",
	}, []string{"stage"})
	r.processed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "orders_records_processed_total", Help: "Orders a stage processed successfully.",
	}, []string{"stage"})
	r.retried = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "orders_records_retried_total", Help: "Orders a stage sent to the next retry topic, by error class.",
	}, []string{"stage", "error_class"})
	r.dead = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "orders_records_dead_lettered_total", Help: "Records a stage sent to the DLQ, by reason.",
	}, []string{"stage", "reason"})
	r.handling = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "orders_handling_seconds", Help: "Time from when a record may be handled to its committed offset.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"stage"})
	r.lateness = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "orders_retry_lateness_seconds", Help: "How long after its due time a retry stage took up a record.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	}, []string{"stage"})
	r.waiting = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "orders_retry_waiting", Help: "Records a retry stage holds until their due time.",
	}, []string{"stage"})
	r.held = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "orders_partitions_held", Help: "Partitions a stage cannot go on with until an operator acts (an output refused for good with no other outcome, a denied write).",
	}, []string{"stage"})
	r.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "orders_outputs_refused_total", Help: "Outputs the broker refused for good, which the stage gave another outcome (the DLQ, reason output_refused).",
	}, []string{"stage"})
	r.average = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "orders_running_average_price", Help: "The aggregator's running average over the partitions this process owns.",
	})
	r.count = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "orders_aggregated_orders", Help: "Distinct orders the aggregator counted in the partitions this process owns.",
	})
	r.reg.MustRegister(r.consumed, r.processed, r.retried, r.dead, r.handling, r.lateness, r.waiting, r.held, r.refused, r.average, r.count)
	return r
}

// Gatherer is what /metrics serves.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// SetAverage publishes the aggregator's running totals.
func (r *Registry) SetAverage(count int64, average float64) {
	r.count.Set(float64(count))
	r.average.Set(average)
}

// Stage returns the observer of one stage's loop.
func (r *Registry) Stage(name string) *Stage {
	s := &Stage{
		r: r, name: name, waiting: map[int]int{}, held: map[int]bool{},
		consumed: r.consumed.WithLabelValues(name), handling: r.handling.WithLabelValues(name),
		lateness:    sync.OnceValue(func() prometheus.Observer { return r.lateness.WithLabelValues(name) }),
		retryPrefix: r.top.Orders + "_retry_",
	}
	r.mu.Lock()
	r.stages = append(r.stages, s)
	r.mu.Unlock()
	return s
}

// Ready reports whether every stage has joined its group and holds no
// partition (Stage.Holding).
func (r *Registry) Ready() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.stages {
		if !s.joined.Load() || s.holding.Load() > 0 {
			return false
		}
	}
	return len(r.stages) > 0
}

// Stage observes one stage's loop; it implements stage.Observer.
type Stage struct {
	r      *Registry
	name   string
	joined atomic.Bool
	// The series of this stage that every batch updates; the others appear
	// once they count something.
	consumed prometheus.Counter
	handling prometheus.Observer
	// lateness is the stage's series of how late it took up records. Only
	// retry stages have one, made at their first late record; a backlog is
	// late record after record, so it is looked up once, not every time.
	lateness func() prometheus.Observer
	// retryPrefix begins the name of every retry topic.
	retryPrefix string

	mu      sync.Mutex
	waiting map[int]int
	held    map[int]bool
	holding atomic.Int32 // partitions held
}

// Joined marks the stage ready.
func (s *Stage) Joined() { s.joined.Store(true) }

// Handled counts a committed batch by the outcome of each output.
func (s *Stage) Handled(batch []envelope.Record, outs []envelope.Output, began time.Time) {
	r := s.r
	s.consumed.Add(float64(len(batch)))
	took := time.Since(began).Seconds()
	for range batch {
		s.handling.Observe(took)
	}
	// Outputs are counted by label value first, so that each series is
	// looked up once per batch, not once per record.
	processed := 0
	var deadBuf, retriedBuf [4]tally
	dead, retried := deadBuf[:0], retriedBuf[:0]
	for _, o := range outs {
		switch {
		case o.Topic == r.top.Processed:
			processed++
		case o.Topic == r.top.DLQ:
			dead = count(dead, header(o, envelope.HeaderDLQReason, "unknown"))
		case strings.HasPrefix(o.Topic, s.retryPrefix):
			retried = count(retried, header(o, envelope.HeaderErrorClass, "other"))
		}
	}
	if processed > 0 {
		r.processed.WithLabelValues(s.name).Add(float64(processed))
	}
	for _, t := range dead {
		r.dead.WithLabelValues(s.name, t.label).Add(float64(t.n))
	}
	for _, t := range retried {
		r.retried.WithLabelValues(s.name, t.label).Add(float64(t.n))
	}
}

// tally is how many outputs of a batch carry one label value.
type tally struct {
	label string
	n     int
}

func count(ts []tally, label []byte) []tally {
	for i := range ts {
		if ts[i].label == string(label) {
			ts[i].n++
			return ts
		}
	}
	return append(ts, tally{string(label), 1})
}

// Late records how late a delayed record was taken up.
func (s *Stage) Late(late time.Duration) {
	s.lateness().Observe(late.Seconds())
}

// Waiting records how many records of a partition wait for their due time.
func (s *Stage) Waiting(partition, n int) {
	s.mu.Lock()
	s.waiting[partition] = n
	total := 0
	for _, w := range s.waiting {
		total += w
	}
	s.mu.Unlock()
	s.r.waiting.WithLabelValues(s.name).Set(float64(total))
}

func header(o envelope.Output, key, def string) []byte {
	for _, h := range o.Headers {
		if h.Key == key && len(h.Value) > 0 {
			return h.Value
		}
	}
	return []byte(def)
}

// Refused counts an output the broker refused for good.
func (s *Stage) Refused(error) { s.r.refused.WithLabelValues(s.name).Inc() }

// Holding records whether a partition is held until an operator acts; while
// any is, the process is not ready.
func (s *Stage) Holding(partition int, err error) {
	s.mu.Lock()
	if err != nil {
		s.held[partition] = true
	} else {
		delete(s.held, partition)
	}
	n := len(s.held)
	s.holding.Store(int32(n))
	s.mu.Unlock()
	s.r.held.WithLabelValues(s.name).Set(float64(n))
}
