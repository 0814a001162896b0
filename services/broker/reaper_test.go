package broker_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"

	"github.com/orderflow/orders/services/broker"
	"github.com/orderflow/orders/services/testkit"
)

// A member that dies while its join request is in flight is removed once
// its session timeout passes, and its partitions go back to the live
// member. kfake alone leaves it in the group for good: the broker's answer
// to the join fails, so it never starts the member's session timer, and the
// leader's sync clears the timer that would remove members that never sync.
func TestSilentMemberIsRemoved(t *testing.T) {
	// The members ask for a session timeout of 2s, below Kafka's minimum of
	// 6s, so that the reaper acts within seconds: the test waits for it.
	b, err := broker.Start(broker.Config{Listen: "127.0.0.1:0", GroupMinSessionTimeout: time.Second}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(b.Addr()), Transport: tr}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: "t", NumPartitions: 2, ReplicationFactor: 1}}}); err != nil {
		t.Fatal(err)
	}
	live, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID: "g", Brokers: []string{b.Addr()}, Topics: []string{"t"},
		SessionTimeout: 2 * time.Second, RebalanceTimeout: 2 * time.Second, HeartbeatInterval: 200 * time.Millisecond,
		JoinGroupBackoff: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	gen, err := live.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(gen.Assignments["t"]); n != 2 {
		t.Fatalf("alone, the live member owns %d partitions", n)
	}

	// The silent member joins, which rebalances the group, and then never
	// sends another request.
	// The dying member sends a join request and is gone before the answer
	// comes back: the broker then never starts its session timer.
	conn, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrJoinGroupRequest()
	req.Version = 3
	req.Group, req.ProtocolType = "g", "consumer"
	req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = 2000, 2000
	meta := kmsg.ConsumerMemberMetadata{Version: 0, Topics: []string{"t"}}
	req.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: meta.AppendTo(nil)}}
	if _, err := conn.Write(frame(req)); err != nil {
		t.Fatal(err)
	}
	// Close the connection only once the broker holds the join: the
	// group then has two members.
	testkit.Eventually(t, 10*time.Second, func() (bool, string) {
		res, err := client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{"g"}})
		if err != nil || len(res.Groups) != 1 {
			return false, fmt.Sprint(err)
		}
		return len(res.Groups[0].Members) == 2, fmt.Sprintf("%d members, %s", len(res.Groups[0].Members), res.Groups[0].GroupState)
	})
	conn.Close()

	sawShare := false
	for {
		gen, err := live.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for the live member to own every partition again (it shared them: %v): %v", sawShare, err)
		}
		n := len(gen.Assignments["t"])
		if n < 2 {
			sawShare = true
			continue
		}
		if sawShare {
			break
		}
	}
}

// frame encodes req as a request on the wire: size, key, version,
// correlation id, client id, body.
func frame(req kmsg.Request) []byte {
	var b []byte
	b = binary.BigEndian.AppendUint16(b, uint16(req.Key()))
	b = binary.BigEndian.AppendUint16(b, uint16(req.GetVersion()))
	b = binary.BigEndian.AppendUint32(b, 1)
	b = binary.BigEndian.AppendUint16(b, uint16(len("dying")))
	b = append(b, "dying"...)
	b = req.AppendTo(b)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)
}
