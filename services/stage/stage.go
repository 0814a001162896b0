// Package stage is what every stage of the pipeline is made of: the
// contract a stage implements (Stage, Partition and the interfaces a
// Partition may add) and the loop that runs it, one member of a consumer
// group, consuming one topic.
//
// For each batch of a partition the loop waits until its records are due
// (Delayer), hands it to Partition.Handle, writes what Handle returns and
// waits for every output to be acknowledged, and only then commits the
// batch's offsets: at least once, in order, per partition. The Kafka side,
// group membership, fetching and writing, is package kafka's.
package stage

import (
	"context"
	"time"

	"github.com/orderflow/orders/services/envelope"
)

// Stage is what a loop runs: it opens a handler for each partition the
// process is assigned.
type Stage interface {
	// Open prepares the handling of one assigned partition and returns the
	// offset to read from, usually a.Committed.
	Open(ctx context.Context, a Assignment) (Partition, int64, error)
}

// Assignment is one partition given to this process by its consumer group.
type Assignment struct {
	Topic      string
	Partition  int
	Committed  int64 // kafka.FirstOffset when the group has not committed yet
	Generation int32
}

// Partition handles the records of one partition, in order.
type Partition interface {
	// Handle returns the records to produce for a batch of consecutive
	// records. The loop writes them, waits for their acknowledgement and
	// only then commits the batch; it is done with them when it calls
	// Handle again, so a partition may reuse their array. An error stops
	// the loop: business failures are outputs (a retry or DLQ record), not
	// errors. Handle may wait (for a schema registry) until ctx ends; an
	// error once ctx has ended only ends the partition's turn.
	Handle(ctx context.Context, batch []envelope.Record) ([]envelope.Output, error)
}

// Delayer is implemented by partitions whose records may not be handled
// before a due time. The loop never hands Handle a record before its due
// time and waits without holding back other partitions.
type Delayer interface {
	DueAt(r envelope.Record) time.Time
}

// Acker is implemented by partitions that want to know when a batch's
// outputs are acknowledged and its offsets committed (for a Resumer, when
// its outputs are acknowledged).
type Acker interface {
	Acked(batch []envelope.Record)
}

// Resumer is implemented by partitions whose outputs to ResumeTopic record
// the offset the stage resumes from, the one Stage.Open returns, as the
// aggregator's state records do. The loop writes those outputs one at a
// time, in order, after the batch's other outputs are acknowledged, so that
// resuming from them never skips a record whose outputs were not written.
// Tombstones (a nil Value) to ResumeTopic go with the other outputs.
// The group's committed offset then only reports progress, so the loop
// commits it when the partition has caught up with what was fetched, and
// otherwise at most every ResumerCommitInterval, instead of after every
// batch.
type Resumer interface {
	ResumeTopic() string
}

// Refuser is implemented by partitions that give another outcome to an
// output the broker refuses for good: a record larger than the topic
// takes, or one it calls invalid. Retrying such a record would hold its
// partition for ever. Refused returns what to write instead of outs[i],
// where outs are what Handle returned for batch, or false if there is
// nothing else to write; the loop then holds the partition, retrying, and
// reports it (Observer.Holding). The processor stages dead-letter the
// order with reason output_refused.
type Refuser interface {
	Refused(batch []envelope.Record, outs []envelope.Output, i int, err error) (envelope.Output, bool)
}

// ResumerCommitInterval is how long a Resumer's progress may go uncommitted
// while records keep coming.
const ResumerCommitInterval = time.Second

// idleCommitInterval is how often a loop with no record to handle looks
// whether the fetcher has skipped transaction markers it may commit past.
const idleCommitInterval = time.Second

// Observer is told what a loop does, for metrics. Its methods must be
// cheap and safe for concurrent use; a nil Observer is allowed.
type Observer interface {
	// Joined reports that the loop has joined its group.
	Joined()
	// Handled reports a batch whose outputs were acknowledged and whose
	// offsets were committed (for a Resumer, handed to the next commit);
	// its handling began at fetchedAt.
	Handled(batch []envelope.Record, outs []envelope.Output, fetchedAt time.Time)
	// Late reports a delayed record handled late after its due time.
	Late(late time.Duration)
	// Waiting reports how many records of a partition wait for their due time.
	Waiting(partition int, n int)
	// Refused reports an output the broker refused for good, which the
	// partition gave another outcome (Refuser).
	Refused(err error)
	// Holding reports that a partition cannot go on until an operator acts
	// (an output refused for good that has no other outcome, a denied
	// write), with the reason; nil when it goes on again.
	Holding(partition int, err error)
}

type noObserver struct{}

func (noObserver) Joined()                                                 {}
func (noObserver) Handled([]envelope.Record, []envelope.Output, time.Time) {}
func (noObserver) Late(time.Duration)                                      {}
func (noObserver) Waiting(int, int)                                        {}
func (noObserver) Refused(error)                                           {}
func (noObserver) Holding(int, error)                                      {}
