package processor

import (
	"context"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/logs"
	"github.com/orderflow/orders/services/stage"
	"github.com/orderflow/orders/topology"
)

// Stage decides the outcome of orders read at one step of the retry ladder:
// step 0 is the main stage, step k the k-th retry stage.
type Stage struct {
	Step     int
	Topology topology.Topology
	Rule     Rule
	Log      *zap.Logger
	// Values reads the orders of the records. Optional, default plain Avro
	// of order.avsc. The stage decides on the order's fields and forwards
	// the record's bytes untouched, whatever other fields they hold.
	Values schemas.Values
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
	s.Values = schemas.OrPlain(s.Values)
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
func (s *Stage) Open(_ context.Context, a stage.Assignment) (stage.Partition, int64, error) {
	return &partition{Stage: s}, a.Committed, nil
}

// Handle returns one output per input record. It fails only if a record's
// order cannot be read for now (a schema registry unreachable until ctx
// ends); a record whose bytes are not an order is dead-lettered.
func (s *Stage) Handle(ctx context.Context, batch []envelope.Record) ([]envelope.Output, error) {
	outs, _, err := s.appendOutputs(ctx, make([]envelope.Output, 0, len(batch)), nil, batch, new(envelope.Buffer))
	return outs, err
}

// appendOutputs appends the outputs of batch to outs, with their history
// headers in buf, and logs the batch's orders, gathering the lines of those
// processed or retried in lines first.
func (s *Stage) appendOutputs(ctx context.Context, outs []envelope.Output, lines []line, batch []envelope.Record, buf *envelope.Buffer) ([]envelope.Output, []line, error) {
	now := s.now() // one clock reading per batch: the batch is handled at once
	log := s.logAt(now)
	for _, r := range batch {
		out, err := s.decide(ctx, r, now, log, buf, &lines)
		if err != nil {
			return outs, lines, err
		}
		outs = append(outs, out)
	}
	s.logLines(now, lines)
	return outs, lines, nil
}

// logAt is the stage's logger for a batch handled at now (see
// logs.LoggerAt).
func (s *Stage) logAt(now time.Time) *zap.Logger { return logs.LoggerAt(s.Log, now) }

// line is the log line of an order a batch processed or retried. A batch
// writes them once all its orders are decided, so that each message's
// lines pass LOG_SAMPLE together (logs.Batch) instead of one by one.
type line struct {
	retried bool // else processed
	attempt int32
	price   float32
	orderID string
	product string
	err     error // retried: why
}

// logLines writes the lines of a batch handled at now.
func (s *Stage) logLines(now time.Time, lines []line) {
	n := 0
	for _, l := range lines {
		if l.retried {
			n++
		}
	}
	retries := logs.Batch(s.Log, now, zap.InfoLevel, "retry scheduled", n)
	done := logs.Batch(s.Log, now, zap.InfoLevel, "order processed", len(lines)-n)
	due := now.Add(s.delay)
	for _, l := range lines {
		if l.retried {
			if ce := retries.Next(); ce != nil {
				ce.Write(zap.String("stage", s.name), zap.String("orderId", l.orderID),
					zap.Int32("attempt", l.attempt), zap.String("next", s.next), zap.Time("due", due), zap.Error(l.err))
			}
		} else if ce := done.Next(); ce != nil {
			ce.Write(zap.String("stage", s.name), zap.String("orderId", l.orderID),
				zap.Int32("attempt", l.attempt), zap.String("product", l.product), zap.Float32("price", l.price))
		}
	}
}

// partition is the stage on one partition.
type partition struct {
	*Stage
	outs  []envelope.Output
	lines []line
	buf   envelope.Buffer
}

// Handle is Stage.Handle into the arrays and the header buffer of the
// previous batch, which the loop is done with.
func (p *partition) Handle(ctx context.Context, batch []envelope.Record) ([]envelope.Output, error) {
	clear(p.outs) // nothing of the previous batch stays reachable from here
	clear(p.lines)
	p.buf.Reset()
	var err error
	p.outs, p.lines, err = p.appendOutputs(ctx, p.outs[:0], p.lines[:0], batch, &p.buf)
	return p.outs, err
}

// Refused dead-letters the order whose output outs[i] the broker refused
// for good, with reason output_refused. The stage makes one output per
// record, so it is batch[i]'s; a refused DLQ record has no other outcome.
func (p *partition) Refused(batch []envelope.Record, outs []envelope.Output, i int, err error) (envelope.Output, bool) {
	if i >= len(batch) || len(outs) != len(batch) || outs[i].Topic == p.Topology.DLQ {
		return envelope.Output{}, false
	}
	p.once.Do(p.prepare)
	r, now := batch[i], p.now()
	h := envelope.Begin(r)
	if p.Step > 0 {
		if parsed, perr := new(envelope.Buffer).ParseHistory(r); perr == nil {
			h = parsed
		}
	}
	h = h.Failed(p.name, now, "output to "+outs[i].Topic+" refused: "+err.Error())
	return p.deadLetter(r, h, envelope.ReasonOutputRefused, p.logAt(now)), true
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

// Decide returns where record r goes from this stage. It waits as long as
// Values does to read the order (for a schema registry, until it answers).
func (s *Stage) Decide(r envelope.Record) envelope.Output {
	outs, _, _ := s.appendOutputs(context.Background(), nil, nil, []envelope.Record{r}, new(envelope.Buffer))
	return outs[0]
}

// decide returns where r goes. It appends the line to log for a processed
// or retried order to lines, and logs a dead letter at once. It fails only
// if Values cannot read the order for now.
func (s *Stage) decide(ctx context.Context, r envelope.Record, now time.Time, log *zap.Logger, buf *envelope.Buffer, lines *[]line) (envelope.Output, error) {
	s.once.Do(s.prepare)
	name := s.name
	var h envelope.History
	if s.Step == 0 {
		h = envelope.Begin(r)
	} else {
		var err error
		if h, err = buf.ParseHistory(r); err != nil {
			h = envelope.Begin(r).Failed(name, now, err.Error())
			return s.deadLetter(r, h, envelope.ReasonBadHeaders, log), nil
		}
	}
	o, err := s.Values.Decode(ctx, r.Value)
	if err != nil {
		if !schemas.IsValueError(err) {
			return envelope.Output{}, err
		}
		return s.deadLetter(r, h.Failed(name, now, err.Error()), envelope.DecodeReason(err), log), nil
	}
	if err := schemas.Validate(o); err != nil {
		return s.deadLetter(r, h.Failed(name, now, err.Error()), envelope.ReasonInvalid, log), nil
	}
	attempt := h.Attempts + 1
	if f, failed := s.process(o, attempt); failed {
		h = buf.Failed(h, name, now, f.text)
		h.ErrorClass = f.class
		if !s.retry {
			return s.deadLetter(r, h, envelope.ReasonRetriesExhausted, log), nil
		}
		h.DueAt = now.Add(s.delay)
		*lines = append(*lines, line{retried: true, attempt: int32(attempt), orderID: o.OrderID, err: f.err})
		return envelope.Output{Topic: s.next, Partition: envelope.AnyPartition, Key: r.Key, Value: r.Value, Headers: h.AppendHeaders(buf)}, nil
	}
	key := r.Key
	if string(key) != o.OrderID {
		key = []byte(o.OrderID)
	}
	*lines = append(*lines, line{attempt: int32(attempt), price: o.Price, orderID: o.OrderID, product: o.Product})
	return envelope.Output{
		Topic: s.Topology.Processed, Partition: envelope.AnyPartition,
		Key: key, Value: r.Value, Headers: s.processedHeaders(attempt, name),
	}, nil
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
