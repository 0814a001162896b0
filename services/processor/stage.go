package processor

import (
	"context"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/pipeline"
	"github.com/orderflow/orders/topology"
)

// Stage decides the outcome of orders read at one step of the retry ladder:
// step 0 is the main stage, step k the k-th retry stage.
type Stage struct {
	Step     int
	Topology topology.Topology
	Rule     Rule
	Log      *zap.Logger
	// Now is the clock. Optional, default time.Now.
	Now func() time.Time

	once      sync.Once
	name      string
	processed [][]envelope.Header // by attempt - 1
	failures  []failure           // of Rule.FailProducts, by index
	next      string              // where a failed order goes
	retry     bool                // whether next is a retry topic
	delay     time.Duration       // of the retry stage next, if retry
}

// prepare computes once what every record of the stage shares.
func (s *Stage) prepare() {
	s.name = s.Topology.StageName(s.Step)
	s.next, s.retry = s.Topology.NextOnFailure(s.Step)
	if s.retry {
		s.delay = s.Topology.Delay(s.Step + 1)
	}
	s.failures = make([]failure, len(s.Rule.FailProducts))
	for i, p := range s.Rule.FailProducts {
		s.failures[i] = failureOf(failingProduct(p))
	}
	s.processed = make([][]envelope.Header, s.Step+1)
	for i := range s.processed {
		s.processed[i] = []envelope.Header{
			{Key: envelope.HeaderAttempts, Value: []byte(strconv.Itoa(i + 1))},
			{Key: envelope.HeaderProcessedBy, Value: []byte(s.name)},
		}
	}
}

// Open serves each partition with the stage, which is stateless, and an
// output array of the partition's own.
func (s *Stage) Open(_ context.Context, a pipeline.Assignment) (pipeline.Partition, int64, error) {
	return &partition{Stage: s}, a.Committed, nil
}

// Handle returns one output per input record.
func (s *Stage) Handle(_ context.Context, batch []envelope.Record) ([]envelope.Output, error) {
	return s.appendOutputs(make([]envelope.Output, 0, len(batch)), batch, new(envelope.Buffer)), nil
}

// appendOutputs appends the outputs of batch to outs, with their history
// headers in buf.
func (s *Stage) appendOutputs(outs []envelope.Output, batch []envelope.Record, buf *envelope.Buffer) []envelope.Output {
	now := s.now() // one clock reading per batch: the batch is handled at once
	log := s.logAt(now)
	for _, r := range batch {
		outs = append(outs, s.decide(r, now, log, buf))
	}
	return outs
}

// logAt is the stage's logger for a batch handled at now (see
// pipeline.LoggerAt).
func (s *Stage) logAt(now time.Time) *zap.Logger { return pipeline.LoggerAt(s.Log, now) }

// partition is the stage on one partition.
type partition struct {
	*Stage
	outs []envelope.Output
	buf  envelope.Buffer
}

// Handle is Stage.Handle into the array and the header buffer of the
// previous batch's outputs, which the loop is done with.
func (p *partition) Handle(_ context.Context, batch []envelope.Record) ([]envelope.Output, error) {
	clear(p.outs) // nothing of the previous batch stays reachable from here
	p.buf.Reset()
	p.outs = p.appendOutputs(p.outs[:0], batch, &p.buf)
	return p.outs, nil
}

// DueAt is when a retry record may be handled: the due time in its
// headers. Records without a readable one are due at once, and Decide
// dead-letters them; so does it, when due, a record whose other history
// headers are broken.
func (s *Stage) DueAt(r envelope.Record) time.Time { return s.dueAt(r, nil) }

// DueAt is Stage.DueAt with the partition's buffer.
func (p *partition) DueAt(r envelope.Record) time.Time { return p.dueAt(r, &p.buf) }

func (s *Stage) dueAt(r envelope.Record, buf *envelope.Buffer) time.Time {
	if s.Step == 0 {
		return time.Time{}
	}
	due, err := buf.ParseDueAt(r)
	if err != nil {
		return time.Time{}
	}
	return due
}

func (s *Stage) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

// Decide returns where record r goes from this stage.
func (s *Stage) Decide(r envelope.Record) envelope.Output {
	now := s.now()
	return s.decide(r, now, s.logAt(now), new(envelope.Buffer))
}

func (s *Stage) decide(r envelope.Record, now time.Time, log *zap.Logger, buf *envelope.Buffer) envelope.Output {
	s.once.Do(s.prepare)
	name := s.name
	var h envelope.History
	if s.Step == 0 {
		h = envelope.Begin(r)
	} else {
		var err error
		if h, err = buf.ParseHistory(r); err != nil {
			h = envelope.Begin(r).Failed(name, now, err.Error())
			return s.deadLetter(r, h, envelope.ReasonBadHeaders, log)
		}
	}
	o, err := schemas.Decode(r.Value)
	if err != nil {
		return s.deadLetter(r, h.Failed(name, now, err.Error()), envelope.ReasonUndecodable, log)
	}
	if err := schemas.Validate(o); err != nil {
		return s.deadLetter(r, h.Failed(name, now, err.Error()), envelope.ReasonInvalid, log)
	}
	attempt := h.Attempts + 1
	if f, failed := s.process(o, attempt); failed {
		h = h.Failed(name, now, f.text)
		h.ErrorClass = f.class
		if !s.retry {
			return s.deadLetter(r, h, envelope.ReasonRetriesExhausted, log)
		}
		next := s.next
		h.DueAt = now.Add(s.delay)
		// Check first: at high rates most lines are sampled out (LOG_SAMPLE),
		// and then their fields are not even built.
		if ce := log.Check(zap.InfoLevel, "retry scheduled"); ce != nil {
			ce.Write(zap.String("stage", name), zap.String("orderId", o.OrderID),
				zap.Int("attempt", attempt), zap.String("next", next), zap.Time("due", h.DueAt), zap.Error(f.err))
		}
		return envelope.Output{Topic: next, Partition: envelope.AnyPartition, Key: r.Key, Value: r.Value, Headers: h.AppendHeaders(buf)}
	}
	if ce := log.Check(zap.InfoLevel, "order processed"); ce != nil {
		ce.Write(zap.String("stage", name), zap.String("orderId", o.OrderID),
			zap.Int("attempt", attempt), zap.String("product", o.Product), zap.Float32("price", o.Price))
	}
	key := r.Key
	if string(key) != o.OrderID {
		key = []byte(o.OrderID)
	}
	return envelope.Output{
		Topic: s.Topology.Processed, Partition: envelope.AnyPartition,
		Key: key, Value: r.Value, Headers: s.processedHeaders(attempt, name),
	}
}

// failure is a processing failure with its text and class.
type failure struct {
	err         error
	text, class string
}

func failureOf(err error) failure { return failure{err, err.Error(), ErrorClass(err)} }

// process is Rule.Process, with the failure of a failing product made once
// for the stage instead of once per order.
func (s *Stage) process(o schemas.Order, attempt int) (failure, bool) {
	if i := s.Rule.failing(o.Product); i >= 0 {
		return s.failures[i], true
	}
	if err := s.Rule.flaky(o, attempt); err != nil {
		return failureOf(err), true
	}
	return failure{}, false
}

// processedHeaders are the headers of an order this stage processed on its
// attempt-th try. Outputs are only read, so each attempt's are shared.
func (s *Stage) processedHeaders(attempt int, name string) []envelope.Header {
	if attempt >= 1 && attempt <= len(s.processed) {
		return s.processed[attempt-1]
	}
	return []envelope.Header{
		{Key: envelope.HeaderAttempts, Value: []byte(strconv.Itoa(attempt))},
		{Key: envelope.HeaderProcessedBy, Value: []byte(name)},
	}
}

func (s *Stage) deadLetter(r envelope.Record, h envelope.History, reason string, log *zap.Logger) envelope.Output {
	if reason != envelope.ReasonRetriesExhausted {
		h.ErrorClass = reason
	}
	dl := envelope.NewDeadLetter(r, h, reason)
	log.Warn("order dead-lettered", zap.String("stage", h.LastStage), zap.String("key", string(r.Key)),
		zap.Int("attempt", h.Attempts), zap.String("reason", reason), zap.String("error", h.LastError))
	headers := append(h.Headers(), envelope.Header{Key: envelope.HeaderDLQReason, Value: []byte(reason)})
	return envelope.Output{Topic: s.Topology.DLQ, Partition: envelope.AnyPartition, Key: r.Key, Value: dl.Marshal(), Headers: headers}
}
