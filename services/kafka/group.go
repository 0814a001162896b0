package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol/offsetcommit"
	"go.uber.org/zap"

	"github.com/orderflow/orders/services/wait"
)

// GroupConfig is a member's place in a consumer group.
type GroupConfig struct {
	// Group is the consumer group; Topic the one topic it consumes.
	Group, Topic string
	// SessionTimeout after which the group gives a silent member's
	// partitions to others. Required.
	SessionTimeout time.Duration
}

// Group is this process's membership of a consumer group. kafka-go's
// ConsumerGroup joins it and hands out partitions; offsets are committed
// with requests of the Group's own (Generation.Commit).
type Group struct {
	cfg    GroupConfig
	client Client
	log    *zap.Logger
	cg     *kafkago.ConsumerGroup
	admin  *Admin // commits, at the group's coordinator of now
}

// JoinGroup returns a membership of cfg.Group, which Next joins and Close
// leaves.
func (c Client) JoinGroup(cfg GroupConfig, log *zap.Logger) (*Group, error) {
	cg, err := kafkago.NewConsumerGroup(kafkago.ConsumerGroupConfig{
		ID:                    cfg.Group,
		Brokers:               c.Brokers,
		Dialer:                c.Dialer(),
		Topics:                []string{cfg.Topic},
		HeartbeatInterval:     min(time.Second, cfg.SessionTimeout/3),
		SessionTimeout:        cfg.SessionTimeout,
		RebalanceTimeout:      cfg.SessionTimeout,
		JoinGroupBackoff:      time.Second,
		WatchPartitionChanges: true,
		StartOffset:           kafkago.FirstOffset,
		Logger:                kafkaLogger(log, false),
		ErrorLogger:           kafkaLogger(log, true),
	})
	if err != nil {
		return nil, fmt.Errorf("consumer group: %w", err)
	}
	return &Group{cfg: cfg, client: c, log: log, cg: cg, admin: c.Admin()}, nil
}

// Close leaves the group, once every function a generation started has
// returned.
func (g *Group) Close() error {
	defer g.admin.Close()
	return g.cg.Close()
}

// Generation is one generation of the group: the partitions of the topic
// this member was given, each with the offset committed for it.
type Generation struct {
	ID         int32
	Partitions []Claim
	gen        *kafkago.Generation
	group      *Group
}

// Claim is a partition given to this member, and the offset the group
// committed for it (FirstOffset if none).
type Claim struct {
	Partition int
	Committed int64
}

// Next waits for the next generation: after the first call, for the
// current one to end. A failure that may pass (a broker down, a denied
// READ on the group, logged as an error) is logged and tried again. Next
// returns an error for a failure that trying again will not fix, the
// client's credentials or TLS settings, or a session timeout the broker
// refuses; and ctx's error once ctx ends.
func (g *Group) Next(ctx context.Context) (*Generation, error) {
	for {
		gen, err := g.cg.Next(ctx)
		if err == nil {
			out := &Generation{ID: gen.ID, gen: gen, group: g}
			for _, a := range gen.Assignments[g.cfg.Topic] {
				out.Partitions = append(out.Partitions, Claim{Partition: a.ID, Committed: a.Offset})
			}
			return out, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if perr := g.client.Ping(ctx); Misconfigured(perr) {
			return nil, perr
		}
		if errors.Is(err, kafkago.InvalidSessionTimeout) {
			return nil, g.sessionTimeoutRefused(ctx, err)
		}
		if err = ExplainDenied(err, "READ", "group", g.cfg.Group); errors.Is(err, ErrDenied) {
			g.log.Error("joining consumer group; retrying", zap.String("group", g.cfg.Group), zap.Error(err))
			continue
		}
		g.log.Warn("joining consumer group; retrying", zap.String("group", g.cfg.Group), zap.Error(err))
	}
}

// Start runs fn in a goroutine of the generation: its context ends when
// the generation does, and the next generation begins only once fn has
// returned.
func (g *Generation) Start(fn func(ctx context.Context)) { g.gen.Start(fn) }

// sessionTimeoutRefused is the error of a group whose broker refuses the
// session timeout: retrying would never help.
func (g *Group) sessionTimeoutRefused(ctx context.Context, err error) error {
	bounds := "Kafka's defaults are group.min.session.timeout.ms=6000 and group.max.session.timeout.ms=1800000"
	if lo, hi, ok := g.sessionBounds(ctx); ok {
		bounds = fmt.Sprintf("the broker takes %v to %v", lo, hi)
	}
	return fmt.Errorf("SESSION_TIMEOUT %v: the broker refuses it for group %s (%s): %w", g.cfg.SessionTimeout, g.cfg.Group, bounds, err)
}

// sessionBounds asks a broker for the session timeouts it takes.
func (g *Group) sessionBounds(ctx context.Context) (lo, hi time.Duration, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	meta, err := g.admin.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{}})
	if err != nil || len(meta.Brokers) == 0 {
		return 0, 0, false
	}
	res, err := g.admin.DescribeConfigs(ctx, &kafkago.DescribeConfigsRequest{Resources: []kafkago.DescribeConfigRequestResource{{
		ResourceType: kafkago.ResourceTypeBroker, ResourceName: strconv.Itoa(meta.Brokers[0].ID),
		ConfigNames: []string{"group.min.session.timeout.ms", "group.max.session.timeout.ms"},
	}}})
	if err != nil || len(res.Resources) != 1 || res.Resources[0].Error != nil {
		return 0, 0, false
	}
	// A broker may list a setting once for each place it is set; the one
	// in force has the lowest source (dynamic before static before
	// default).
	source := map[string]int8{}
	for _, e := range res.Resources[0].ConfigEntries {
		ms, err := strconv.ParseInt(e.ConfigValue, 10, 64)
		if was, seen := source[e.ConfigName]; err != nil || seen && e.ConfigSource >= was {
			continue
		}
		source[e.ConfigName] = e.ConfigSource
		switch e.ConfigName {
		case "group.min.session.timeout.ms":
			lo = time.Duration(ms) * time.Millisecond
		case "group.max.session.timeout.ms":
			hi = time.Duration(ms) * time.Millisecond
		}
	}
	return lo, hi, lo > 0 && hi > 0
}

// Commit commits next for partition, with mark as its metadata. It sends
// the commit to whichever broker coordinates the group now, and again
// while the coordinator has moved or cannot answer, until ctx ends: the
// generation may still be current there, and a commit that gets through
// keeps the next owner from handling the batch again. (kafka-go's
// Generation would send it to the coordinator the generation began with,
// and cannot carry metadata.) An error means the generation is over or
// the coordinator is gone: the partition is no longer this member's to
// commit.
func (g *Generation) Commit(ctx context.Context, partition int, next int64, mark Mark) error {
	req := &offsetcommit.Request{
		GroupID: g.gen.GroupID, GenerationID: g.gen.ID, MemberID: g.gen.MemberID,
		Topics: []offsetcommit.RequestTopic{{Name: g.group.cfg.Topic, Partitions: []offsetcommit.RequestPartition{{
			PartitionIndex: int32(partition), CommittedOffset: next, CommitTimestamp: -1,
			// No leader epoch is known: 0, which kafka-go's OffsetCommit
			// sends, would make a consumer that checks epochs (the Java
			// client, franz-go, librdkafka) think the log was truncated.
			CommittedLeaderEpoch: -1, CommittedMetadata: mark.String(),
		}}}},
	}
	for b := wait.NewBackoff(); ; {
		err := g.group.commitOnce(ctx, req)
		if err == nil || !coordinatorMayAnswer(err) || !b.Wait(ctx) {
			return err
		}
	}
}

func (g *Group) commitOnce(ctx context.Context, req *offsetcommit.Request) error {
	ctx, cancel := context.WithTimeout(ctx, g.admin.Timeout)
	defer cancel()
	r, err := g.admin.transport.RoundTrip(ctx, g.admin.Addr, req)
	if err != nil {
		return err
	}
	for _, t := range r.(*offsetcommit.Response).Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode != 0 {
				return kafkago.Error(p.ErrorCode)
			}
		}
	}
	return nil
}

// CommittedMark is the Mark committed with c's offset, if there is one for
// the record before it; else one that knows only that offset. kafka-go's
// Generation reads the committed offsets but keeps no metadata, so it asks
// once more.
func (g *Generation) CommittedMark(ctx context.Context, c Claim) Mark {
	none := Mark{Offset: c.Committed - 1}
	if c.Committed <= 0 {
		return none
	}
	topic := g.group.cfg.Topic
	res, err := g.group.admin.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: g.group.cfg.Group, Topics: map[string][]int{topic: {c.Partition}}})
	if err != nil {
		return none
	}
	for _, p := range res.Topics[topic] {
		if m, ok := ParseMark(p.Metadata); ok && p.Partition == c.Partition && p.CommittedOffset == c.Committed && m.Offset < c.Committed {
			return m
		}
	}
	return none
}

// coordinatorMayAnswer reports whether a failed commit may succeed at the
// group's coordinator: it moved, is loading, or the connection to it broke.
// A commit the coordinator refuses for the generation (ILLEGAL_GENERATION,
// UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS) will not.
func coordinatorMayAnswer(err error) bool {
	return retriable(err) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}

// RefusedForGood reports whether the broker will never take the record
// (or request) it refused with err, however often it is sent.
func RefusedForGood(err error) bool {
	return errors.Is(err, kafkago.MessageSizeTooLarge) || errors.Is(err, kafkago.RecordListTooLarge) ||
		errors.Is(err, kafkago.InvalidRecord)
}
