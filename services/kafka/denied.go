package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/orderflow/orders/services/envelope"
)

// ErrDenied is wrapped by every authorization failure ExplainDenied and
// ExplainWrite describe.
var ErrDenied = errors.New("not authorized")

// ExplainDenied rewrites an authorization failure so that it names the operation
// and the resource, for example "not authorized: READ on group
// orders-main". kafka-go only says which kind of resource was refused.
// Other errors come back unchanged.
func ExplainDenied(err error, op, kind, name string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, kafkago.TopicAuthorizationFailed):
		if kind != "topic" {
			return fmt.Errorf("%w: %s on a topic, while working on %s %s (its principal lacks an ACL): %w", ErrDenied, op, kind, name, err)
		}
	case errors.Is(err, kafkago.GroupAuthorizationFailed):
		if kind != "group" {
			return fmt.Errorf("%w: %s on a group, while working on %s %s (its principal lacks an ACL): %w", ErrDenied, op, kind, name, err)
		}
	case errors.Is(err, kafkago.ClusterAuthorizationFailed):
		return fmt.Errorf("%w: %s on the cluster, for %s %s (its principal lacks an ACL): %w", ErrDenied, op, kind, name, err)
	default:
		return err
	}
	return fmt.Errorf("%w: %s on %s %s (the principal lacks an ACL for it): %w", ErrDenied, op, kind, name, err)
}

// writeError describes a failed write of outs: when the broker refused
// some topics, it names each of them.
func writeError(err error, outs []envelope.Output) error {
	msgs := outs
	var per WriteErrors
	if errors.As(err, &per) && len(per) == len(msgs) {
		var topics []string
		for i, e := range per {
			if errors.Is(e, kafkago.TopicAuthorizationFailed) && !slices.Contains(topics, msgs[i].Topic) {
				topics = append(topics, msgs[i].Topic)
			}
		}
		if len(topics) > 0 {
			slices.Sort(topics)
			return fmt.Errorf("%w: WRITE on topic %s (the principal lacks an ACL for it): %w", ErrDenied, strings.Join(topics, ", "), kafkago.TopicAuthorizationFailed)
		}
	}
	if errors.Is(err, kafkago.TopicAuthorizationFailed) {
		var topics []string
		for _, m := range msgs {
			if !slices.Contains(topics, m.Topic) {
				topics = append(topics, m.Topic)
			}
		}
		slices.Sort(topics)
		return fmt.Errorf("%w: WRITE on topic %s (the principal lacks an ACL for at least one of them): %w", ErrDenied, strings.Join(topics, ", "), err)
	}
	return err
}

// ExplainWrite is writeError, and more: a broker tells a principal that may
// not even DESCRIBE a topic that the topic does not exist, so when a write
// fails on an unknown topic it asks the broker which of the topics the
// principal is denied, and names them.
func (c Client) ExplainWrite(ctx context.Context, err error, msgs []envelope.Output) error {
	if err = writeError(err, msgs); errors.Is(err, ErrDenied) || !unknownTopic(err) {
		return err
	}
	var topics []string
	for _, m := range msgs {
		if !slices.Contains(topics, m.Topic) {
			topics = append(topics, m.Topic)
		}
	}
	// A connection of its own: a Transport answers metadata requests from
	// its cache, which leaves out the topics the principal may not see.
	var conn *kafkago.Conn
	for _, b := range c.Brokers {
		if conn, _ = c.Dialer().DialContext(ctx, "tcp", b); conn != nil {
			break
		}
	}
	if conn == nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline(ctx))
	var denied []string
	for _, t := range topics {
		if _, perr := conn.ReadPartitions(t); errors.Is(perr, kafkago.TopicAuthorizationFailed) {
			denied = append(denied, t)
		}
	}
	if len(denied) == 0 {
		return err
	}
	slices.Sort(denied)
	return fmt.Errorf("%w: WRITE on topic %s (the principal may not even DESCRIBE it, so the broker calls it unknown): %w",
		ErrDenied, strings.Join(denied, ", "), kafkago.TopicAuthorizationFailed)
}

func unknownTopic(err error) bool {
	var per WriteErrors
	if errors.As(err, &per) {
		return slices.ContainsFunc(per, func(e error) bool { return errors.Is(e, kafkago.UnknownTopicOrPartition) })
	}
	return errors.Is(err, kafkago.UnknownTopicOrPartition)
}
