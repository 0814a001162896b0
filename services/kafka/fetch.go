package kafka

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"go.uber.org/zap"

	"github.com/orderflow/orders/services/envelope"
	"github.com/orderflow/orders/services/kafka/wire"
	"github.com/orderflow/orders/services/wait"
)

// fetchMaxBytes bounds the records one fetch request asks a partition for:
// a thousand orders or more, in memory that the records handed on share.
// Larger fetches cost no less CPU per record here, and more memory.
const fetchMaxBytes = 256 << 10

// fetchMaxWait is how long the broker may hold a fetch request open when it
// has no record to give yet.
const fetchMaxWait = 250 * time.Millisecond

// errOldBroker means the partition's leader cannot answer fetch requests of
// version 4; kafka-go's Reader reads the partition instead.
var errOldBroker = errors.New("broker older than Kafka 0.11")

// followFor is how long the fetcher reads from a preferred read replica
// before it asks the leader again, which may name another: as long as
// Kafka's consumer keeps one (metadata.max.age.ms) and franz-go
// (RecheckPreferredReplicaInterval).
const followFor = 5 * time.Minute

// Fetcher reads partitions with fetch requests it encodes and record
// batches it decodes itself, on a connection of its own to each
// partition's leader, dialled and authenticated by kafka-go's Dialer.
// Records are cut out of the response they came in, without a copy or an
// allocation of their own (wire.Decoder). A partition whose leader is older
// than Kafka 0.11 is read with kafka-go's Reader.
type Fetcher struct {
	client Client
	admin  *Admin // offsets: where a partition begins and ends
}

// NewFetcher returns a fetcher of the cluster's partitions, which Close
// releases.
func (c Client) NewFetcher() *Fetcher { return &Fetcher{client: c, admin: c.Admin()} }

// Close releases the fetcher's connections for offsets.
func (f *Fetcher) Close() { f.admin.Close() }

// Fetch sends the records of topic/partition from offset on to queue, in
// order, until ctx ends, and then closes queue. A negative offset, such as
// kafkago.FirstOffset, is the partition's first record. If position is not
// nil, Fetch stores in it, after sending the records of each response, the
// offset it fetches from next: past those records and past any
// transaction markers, which are not records and are never sent. A failed request is logged and sent
// again, on a new connection, after a backoff: a broker that is down, a
// leader that moved or a denied READ (logged as an error) hold the
// partition up but never skip a record. A throttled answer is no failure:
// the next request waits it out, on the same connection. Only records the
// broker no longer has are skipped, as kafka-go's Reader does, with a
// warning that says how many; a partition cut back below offset is read on
// from the first record written since the cut, with an error that says
// how many offsets were lost.
func (f *Fetcher) Fetch(ctx context.Context, log *zap.Logger, topic string, partition int, offset int64, queue chan<- envelope.Record, position *atomic.Int64) {
	f.FetchAfter(ctx, log, topic, partition, offset, Mark{Offset: offset - 1}, queue, position)
}

// Mark is the last record of a partition that a reader handled: its
// offset and time. Committed with the offset after it (Mark.String is the
// commit's metadata), it lets the next reader of the partition tell
// whether the partition still holds that record, and so whether it was
// cut back and written again meanwhile.
type Mark struct {
	Offset int64
	Time   time.Time // zero if not known
}

const markPrefix = "orders-mark:v1:"

// String encodes m for the metadata of a commit.
func (m Mark) String() string {
	if m.Offset < 0 || m.Time.IsZero() {
		return ""
	}
	return markPrefix + strconv.FormatInt(m.Offset, 10) + ":" + strconv.FormatInt(m.Time.UnixMilli(), 10)
}

// ParseMark decodes the metadata of a commit that Mark.String made.
func ParseMark(s string) (Mark, bool) {
	rest, ok := strings.CutPrefix(s, markPrefix)
	if !ok {
		return Mark{}, false
	}
	o, t, ok := strings.Cut(rest, ":")
	offset, err1 := strconv.ParseInt(o, 10, 64)
	ms, err2 := strconv.ParseInt(t, 10, 64)
	if !ok || err1 != nil || err2 != nil || offset < 0 {
		return Mark{}, false
	}
	return Mark{Offset: offset, Time: time.UnixMilli(ms)}, true
}

// FetchAfter is Fetch, knowing the record read before offset: after, whose
// time, if known, Fetch checks before it reads on, as it does after a
// failed request.
func (f *Fetcher) FetchAfter(ctx context.Context, log *zap.Logger, topic string, partition int, offset int64, after Mark, queue chan<- envelope.Record, position *atomic.Int64) {
	defer close(queue)
	r := f.partitionReader(topic, partition, log)
	defer r.close()
	// last and lastOffset are the time and offset of the last record sent,
	// at first those of after. After a failed request, the fetcher checks
	// that the partition still holds that record, with that time, before
	// it reads on: a partition cut back and written again past offset
	// while the fetcher could not ask (an unclean leader election, a topic
	// deleted and made again) would otherwise be read on from offset,
	// skipping every record written since the cut. FetchAfter begins with
	// that check too, which is how it learns the time when after has none.
	last, lastOffset := after.Time, after.Offset
	check := lastOffset >= 0
	emit := func(m envelope.Record) bool {
		last, lastOffset = m.Time, m.Offset
		select {
		case queue <- m: // the usual case, without waiting
			return true
		default:
		}
		select {
		case queue <- m:
			return true
		case <-ctx.Done():
			return false
		}
	}
	b := wait.Between(50*time.Millisecond, time.Second)
	// fail logs a failed request, an error an operator must fix (a denial)
	// as an error, and waits to try again.
	fail := func(msg string, err error) bool {
		if err = ExplainDenied(err, "READ", "topic", topic); errors.Is(err, ErrDenied) {
			log.Error(msg, zap.Error(err))
		} else {
			log.Warn(msg, zap.Error(err))
		}
		return b.Wait(ctx)
	}
	// rewind reads on from the first record stamped since last, less
	// truncationSlack for the producers' clocks: those were written since
	// the cut. Knowing no time, it reads the partition from its first
	// record: records handled before may be handled again, but none is
	// skipped. Records the cut took with it are lost: the broker no longer
	// has them.
	rewind := func(msg string, first, end int64) error {
		from := first
		if !last.IsZero() {
			from = min(offset, end)
			at, err := f.offsetAt(ctx, topic, partition, last.Add(-truncationSlack))
			if err != nil {
				return err
			}
			if at >= first && at < from {
				from = at
			}
		}
		log.Error(msg, zap.Int64("offset", offset), zap.Int64("end", end), zap.Int64("from", from), zap.Int64("lost", max(offset-end, 0)))
		offset = from
		if position != nil {
			position.Store(offset)
		}
		return nil
	}
	for ctx.Err() == nil {
		if offset < 0 {
			first, _, err := f.bounds(ctx, topic, partition)
			if err != nil {
				if ctx.Err() != nil || !fail("list offsets; retrying", err) {
					return
				}
				continue
			}
			offset = first
		}
		if check {
			t, found, err := r.recordAt(ctx, lastOffset)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil && !errors.Is(err, kafkago.OffsetOutOfRange):
				if !fail("fetch; retrying", fmt.Errorf("%s/%d@%d: %w", topic, partition, lastOffset, err)) {
					return
				}
				continue
			case err != nil: // cut back below it: the fetch below says so
			case found && (last.IsZero() || t.Equal(last)):
				last = t
			case !last.IsZero():
				// The record is gone, or another stands in its place.
				first, end, err := f.bounds(ctx, topic, partition)
				if err != nil {
					if !fail("list offsets; retrying", err) {
						return
					}
					continue
				}
				if err := rewind("partition written again below the offset to read from; reading on from the first record written since", first, end); err != nil {
					if !fail("list offsets; retrying", err) {
						return
					}
					continue
				}
			}
			check = false
		}
		next, err := r.read(ctx, offset, emit)
		if ctx.Err() != nil {
			return
		}
		// What was sent before a failure stays sent: the next request
		// begins after it.
		if next > offset {
			offset = next
			if position != nil {
				position.Store(offset)
			}
		}
		switch {
		case err == nil:
			b = wait.Between(50*time.Millisecond, time.Second)
			continue
		case errors.Is(err, errOldBroker):
			f.readWithReader(ctx, log, topic, partition, offset, emit)
			return
		case errors.Is(err, kafkago.OffsetOutOfRange):
			first, end, lerr := f.bounds(ctx, topic, partition)
			switch {
			case lerr == nil && offset < first:
				log.Warn("skipping records the broker has deleted", zap.Int64("offset", offset),
					zap.Int64("first_offset", first), zap.Int64("skipped", first-offset))
				offset = first
				continue
			case lerr == nil && offset > end:
				// The log lost its end. Waiting for it to grow back to
				// offset, as kafka-go's Reader does, would skip every
				// record written meanwhile, and so would reading on from
				// the new end: records written since the cut lie below it.
				if err := rewind("partition cut back below the offset to read from; reading on from the first record written since", first, end); err != nil && !fail("list offsets; retrying", err) {
					return
				}
				continue
			}
		}
		check = lastOffset >= 0
		if !fail("fetch; retrying", fmt.Errorf("%s/%d@%d: %w", topic, partition, offset, err)) {
			return
		}
	}
}

// partitionReader reads one partition, a request at a time, on a
// connection to its leader, or to the replica the leader names, that it
// makes when it has none.
type partitionReader struct {
	f         *Fetcher
	log       *zap.Logger
	topic     string
	partition int
	conn      *fetchConn
	dec       *wire.Decoder
	// replica is the preferred read replica (KIP-392) that conn is to,
	// since followed; -1 while conn is to the leader.
	replica  int32
	followed time.Time
}

func (f *Fetcher) partitionReader(topic string, partition int, log *zap.Logger) *partitionReader {
	return &partitionReader{f: f, log: log, topic: topic, partition: partition, dec: wire.NewDecoder(topic, partition), replica: -1}
}

// read asks for the records from offset on and emits them, until emit
// returns false, and returns the offset to read from next: past what it
// emitted and skipped, even when it fails part of the way. A failure
// closes the connection, so that the next read makes a new one, to the
// leader. errOldBroker means the leader is too old for the fetcher.
func (r *partitionReader) read(ctx context.Context, offset int64, emit func(envelope.Record) bool) (int64, error) {
	next, err := r.readOnce(ctx, offset, emit)
	if err != nil {
		r.close()
		if r.replica >= 0 {
			err = fmt.Errorf("read replica %d: %w", r.replica, err)
			r.replica = -1
		}
	}
	return next, err
}

func (r *partitionReader) readOnce(ctx context.Context, offset int64, emit func(envelope.Record) bool) (int64, error) {
	if r.replica >= 0 && time.Since(r.followed) > followFor {
		r.close()
		r.replica = -1
	}
	var res wire.FetchResult
	for {
		if r.conn == nil {
			conn, err := r.f.dial(ctx, r.topic, r.partition, r.replica)
			if err != nil {
				return offset, err
			}
			r.conn = conn
		}
		var err error
		if res, err = r.conn.fetch(ctx, r.topic, r.partition, offset); err != nil {
			return offset, err
		}
		if res.Replica < 0 {
			break
		}
		// A leader that names a preferred read replica sends no records:
		// this request is sent again to the replica, as franz-go does. A
		// replica that names one in turn would send it round in circles.
		if r.replica >= 0 {
			return offset, fmt.Errorf("names read replica %d in turn, and sends no records", res.Replica)
		}
		r.log.Info("reading from the preferred read replica", zap.Int32("replica", res.Replica))
		r.close()
		r.replica, r.followed = res.Replica, time.Now()
	}
	stopped := false
	next, err := r.dec.Decode(res.Records, offset, func(m envelope.Record) bool {
		stopped = !emit(m)
		return !stopped
	})
	if err == nil && next == offset && len(res.Records) > 0 && !stopped {
		// Brokers since Kafka 0.10.1 send a whole batch even when it is
		// larger than the request asks for; older ones cut it.
		err = fmt.Errorf("the answer holds no whole record batch: one is larger than the %d bytes asked for", fetchMaxBytes)
	}
	return next, err
}

func (r *partitionReader) close() {
	if r.conn != nil {
		r.conn.Close()
		r.conn = nil
	}
}

// kafkaGoReader is kafka-go's Reader of a partition, for brokers too old
// for the fetcher's requests.
func kafkaGoReader(client Client, log *zap.Logger, topic string, partition int) *kafkago.Reader {
	return kafkago.NewReader(kafkago.ReaderConfig{
		Brokers: client.Brokers, Dialer: client.Dialer(), Topic: topic, Partition: partition,
		MinBytes: 1, MaxBytes: fetchMaxBytes, MaxWait: fetchMaxWait,
		ReadBackoffMin: 50 * time.Millisecond, ReadBackoffMax: time.Second,
		Logger: kafkaLogger(log, false), ErrorLogger: kafkaLogger(log, true),
	})
}

// readWithReader reads the partition with kafka-go's Reader, for brokers
// too old for the fetcher's requests.
func (f *Fetcher) readWithReader(ctx context.Context, log *zap.Logger, topic string, partition int, offset int64, emit func(envelope.Record) bool) {
	r := kafkaGoReader(f.client, log, topic, partition)
	defer r.Close()
	if err := r.SetOffset(offset); err != nil {
		log.Error("set offset", zap.Int64("offset", offset), zap.Error(err))
		return
	}
	for b := wait.Between(50*time.Millisecond, time.Second); ; {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("fetch message; retrying", zap.Error(ExplainDenied(err, "READ", "topic", topic)))
			if !b.Wait(ctx) {
				return
			}
			continue
		}
		if !emit(FromKafkaGo(m)) {
			return
		}
	}
}

// recordAt reads the time of the record at offset; found is false if the
// partition holds none there.
func (r *partitionReader) recordAt(ctx context.Context, offset int64) (t time.Time, found bool, err error) {
	_, err = r.read(ctx, offset, func(m envelope.Record) bool {
		if m.Offset == offset {
			t, found = m.Time, true
		}
		return false
	})
	return t, found, err
}

// truncationSlack is how much earlier than the last record it sent the
// fetcher looks for records written since, in a partition cut back below
// the offset it reads from. A record may be appended that long after its
// producer stamped it: the Java producer's delivery.timeout.ms is 2
// minutes, and this project's writer keeps a record's time through its
// attempts. Clocks of the producers may differ a little more. It costs at
// most the records of that span again.
const truncationSlack = 2 * time.Minute

// offsetAt is the offset of the first record of a partition stamped at or
// after t, -1 if there is none.
func (f *Fetcher) offsetAt(ctx context.Context, topic string, partition int, t time.Time) (int64, error) {
	po, err := f.listOffsets(ctx, topic, partition, kafkago.TimeOffsetOf(partition, t))
	if err != nil {
		return 0, err
	}
	for o := range po.Offsets { // one, if a record is stamped so late
		return o, nil
	}
	return -1, nil
}

// bounds are the first offset of a partition and the offset after its last
// record.
func (f *Fetcher) bounds(ctx context.Context, topic string, partition int) (first, end int64, err error) {
	po, err := f.listOffsets(ctx, topic, partition, kafkago.FirstOffsetOf(partition), kafkago.LastOffsetOf(partition))
	return po.FirstOffset, po.LastOffset, err
}

// listOffsets asks the partition's leader for offsets. A leader that moved
// (or a topic made again) makes the fetcher's admin client learn the
// cluster's layout again and ask once more at once, instead of when its
// metadata expires.
func (f *Fetcher) listOffsets(ctx context.Context, topic string, partition int, reqs ...kafkago.OffsetRequest) (kafkago.PartitionOffsets, error) {
	var err error
	for attempt := range 2 {
		var res *kafkago.ListOffsetsResponse
		res, err = f.admin.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{topic: reqs}})
		if err == nil {
			err = fmt.Errorf("list offsets of %s/%d: %w", topic, partition, kafkago.UnknownTopicOrPartition)
			for _, po := range res.Topics[topic] {
				if po.Partition == partition {
					if po.Error == nil {
						return po, nil
					}
					err = po.Error
				}
			}
		}
		if attempt > 0 || ctx.Err() != nil || !leaderMoved(err) {
			break
		}
		f.admin.forgetLayout()
	}
	return kafkago.PartitionOffsets{}, err
}

// dial connects to the leader of topic/partition, or to the replica of
// that id if replica is not negative, asking a broker where it is: a
// leader that moved is found at once, where cached metadata would point to
// the old one until it expires.
func (f *Fetcher) dial(ctx context.Context, topic string, partition int, replica int32) (*fetchConn, error) {
	d := f.client.Dialer()
	var err error
	for _, b := range f.client.Brokers {
		var p kafkago.Partition
		lctx, cancel := context.WithTimeout(ctx, 2*f.client.dialTimeout())
		p, err = d.LookupPartition(lctx, "tcp", b, topic, partition)
		cancel()
		to := p.Leader
		if replica >= 0 {
			to = kafkago.Broker{}
			for _, r := range p.Replicas {
				if int32(r.ID) == replica {
					to = r
				}
			}
		}
		switch {
		case err == nil && to.Host == "" && replica >= 0:
			err = fmt.Errorf("not a replica of %s/%d in the metadata", topic, partition)
		case err == nil && to.Host == "":
			err = kafkago.LeaderNotAvailable
		}
		if err == nil {
			return dialFetchConn(ctx, f.client, net.JoinHostPort(to.Host, strconv.Itoa(to.Port)))
		}
		if ctx.Err() != nil {
			break
		}
	}
	if replica >= 0 {
		return nil, err
	}
	return nil, fmt.Errorf("leader of %s/%d: %w", topic, partition, err)
}

// fetchConn is a connection to one broker that fetch requests are written
// to and read from directly.
type fetchConn struct {
	kc      *kafkago.Conn // owns the connection: closing it closes conn
	conn    net.Conn      // TLS, if any, included; authenticated
	rd      *bufio.Reader
	version int16
	corr    int32
	req     []byte
	// mutedUntil is when the broker, which throttled the last answer,
	// reads from the connection again.
	mutedUntil time.Time
}

// dialFetchConn connects to addr with the client's Dialer, so that TLS and
// SASL work as for every other connection, and keeps the connection the
// Dialer authenticated on. TLS is set up here rather than by the Dialer,
// so that what is kept is the encrypted connection.
func dialFetchConn(ctx context.Context, c Client, addr string) (*fetchConn, error) {
	d := c.Dialer()
	tlsConfig := d.TLS
	d.TLS = nil
	var (
		mu   sync.Mutex
		conn net.Conn
	)
	d.DialFunc = func(ctx context.Context, network, address string) (net.Conn, error) {
		nc, err := (&net.Dialer{}).DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		// kafka-go's handshake on the connection (SASL) has this long;
		// each request then sets its own.
		_ = nc.SetDeadline(time.Now().Add(c.dialTimeout()))
		if tlsConfig != nil {
			cfg := tlsConfig
			if cfg.ServerName == "" {
				cfg = tlsConfig.Clone()
				cfg.ServerName = address[:max(strings.LastIndexByte(address, ':'), 0)]
			}
			tc := tls.Client(nc, cfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				nc.Close()
				return nil, err
			}
			nc = tc
		}
		mu.Lock()
		conn = nc
		mu.Unlock()
		return nc, nil
	}
	kc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer context.AfterFunc(ctx, func() { kc.Close() })()
	// kafkago.Conn puts its own deadlines on the connection.
	if err := kc.SetDeadline(time.Now().Add(c.dialTimeout())); err != nil {
		kc.Close()
		return nil, err
	}
	versions, err := kc.ApiVersions()
	if err != nil {
		kc.Close()
		return nil, err
	}
	version, least := int16(-1), int16(0)
	for _, v := range versions {
		if v.ApiKey == int16(protocol.Fetch) {
			version, least = min(v.MaxVersion, wire.MaxFetchVersion), v.MinVersion
		}
	}
	switch {
	case version < wire.MinFetchVersion:
		kc.Close()
		return nil, errOldBroker
	case least > version:
		kc.Close()
		return nil, fmt.Errorf("%s speaks fetch versions from %d, this client up to %d", addr, least, wire.MaxFetchVersion)
	}
	mu.Lock()
	defer mu.Unlock()
	return &fetchConn{kc: kc, conn: conn, rd: bufio.NewReaderSize(conn, 64<<10), version: version}, nil
}

// Close closes the connection.
func (c *fetchConn) Close() { c.kc.Close() }

// fetch asks for the records of topic/partition from offset on and returns
// what the response says of the partition, its record batches as they
// came, in memory of their own.
func (c *fetchConn) fetch(ctx context.Context, topic string, partition int, offset int64) (wire.FetchResult, error) {
	// A broker that throttles a client answers at once, since KIP-219
	// (fetch version 8), and then reads nothing from the connection for
	// the throttle time; before, it held the answer back that long. The
	// next request waits it out here, on this connection, as the Java
	// client and franz-go do: on a new one it would escape the mute that
	// the quota asks for.
	if wait := time.Until(c.mutedUntil); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return wire.FetchResult{}, ctx.Err()
		case <-t.C:
		}
	}
	c.corr++
	c.req = wire.FetchRequest{
		Version: c.version, Correlation: c.corr, Topic: topic, Partition: partition, Offset: offset,
		MaxWait: fetchMaxWait, MaxBytes: fetchMaxBytes,
	}.Append(c.req[:0])
	deadline := time.Now().Add(fetchMaxWait + 30*time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.conn.SetDeadline(deadline); err != nil {
		return wire.FetchResult{}, err
	}
	// Ending ctx cuts a request short: the connection is then closed.
	defer context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(time.Now()) })()
	if _, err := c.conn.Write(c.req); err != nil {
		return wire.FetchResult{}, err
	}
	var size [4]byte
	if _, err := io.ReadFull(c.rd, size[:]); err != nil {
		return wire.FetchResult{}, err
	}
	// A response may hold one batch larger than the request asks for, up
	// to the topic's max.message.bytes; past 256 MiB it is no answer of a
	// broker's.
	n := int32(binary.BigEndian.Uint32(size[:]))
	if n < 4 || n > 256<<20 {
		return wire.FetchResult{}, fmt.Errorf("fetch response of %d bytes", n)
	}
	res := make([]byte, n)
	if _, err := io.ReadFull(c.rd, res); err != nil {
		return wire.FetchResult{}, err
	}
	fr, err := wire.ParseFetchResponse(res, c.version, c.corr, topic, partition)
	if code, ok := errors.AsType[wire.ErrorCode](err); ok {
		err = kafkago.Error(code)
	}
	if fr.Throttle > 0 && c.version >= 8 {
		c.mutedUntil = time.Now().Add(fr.Throttle)
	}
	return fr, err
}
