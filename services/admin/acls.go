package admin

import (
	"context"
	"fmt"
	"strconv"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/topology"
)

// Principal names, after the prefix, of the pipeline's principals besides
// the stages (main, retry-K, aggregator).
const (
	PrincipalProducer = "producer"
	PrincipalAdmin    = "admin"
	PrincipalOperator = "operator"
)

// ACLs is the least-privilege ACL set of the pipeline: each principal may
// touch only its own topics and group. prefix and a stage name make a
// principal, for example "User:orders-" and "main". Every entry allows, on
// any host, a literal resource name.
//
//   - main and retry stage K: READ on its input topic and group; WRITE on
//     the next retry topic (none after the last), the processed topic and
//     the DLQ.
//   - aggregator: READ on the processed topic and its group; READ, WRITE
//     and DESCRIBE_CONFIGS (its max.message.bytes bounds a state record) on
//     its state topic; WRITE on the DLQ, for processed records that are not
//     orders.
//   - producer: WRITE on the orders topic.
//   - admin (`orders topics`): CREATE, DESCRIBE, ALTER (adding partitions)
//     and DESCRIBE_CONFIGS (retention and cleanup policy checks) on every
//     pipeline topic.
//   - operator (`inspect`, `trace`, `dlq`): READ and DESCRIBE on every
//     pipeline topic, DESCRIBE on every stage group, WRITE on the topics a
//     replay may target (orders, the retry topics) and the replay log.
//
// READ and WRITE imply DESCRIBE, which metadata, offset and group requests need.
func ACLs(top topology.Topology, prefix string) []kafkago.ACLEntry {
	var out []kafkago.ACLEntry
	add := func(stage string, rt kafkago.ResourceType, name string, ops ...kafkago.ACLOperationType) {
		for _, op := range ops {
			out = append(out, kafkago.ACLEntry{
				Principal: prefix + stage, Host: "*",
				ResourceType: rt, ResourceName: name, ResourcePatternType: kafkago.PatternTypeLiteral,
				Operation: op, PermissionType: kafkago.ACLPermissionTypeAllow,
			})
		}
	}
	read, write := kafkago.ACLOperationTypeRead, kafkago.ACLOperationTypeWrite
	for k := 0; k <= top.Stages(); k++ {
		stage := top.StageName(k)
		add(stage, kafkago.ResourceTypeTopic, top.InputTopic(k), read)
		add(stage, kafkago.ResourceTypeGroup, top.Group(stage), read)
		if next, retry := top.NextOnFailure(k); retry {
			add(stage, kafkago.ResourceTypeTopic, next, write)
		}
		add(stage, kafkago.ResourceTypeTopic, top.Processed, write)
		add(stage, kafkago.ResourceTypeTopic, top.DLQ, write)
	}
	agg := topology.StageAggregator
	add(agg, kafkago.ResourceTypeTopic, top.Processed, read)
	add(agg, kafkago.ResourceTypeGroup, top.Group(agg), read)
	add(agg, kafkago.ResourceTypeTopic, top.State, read, write, kafkago.ACLOperationTypeDescribeConfigs)
	add(agg, kafkago.ResourceTypeTopic, top.DLQ, write)
	add(PrincipalProducer, kafkago.ResourceTypeTopic, top.Orders, write)
	for _, t := range top.Topics() {
		// orders topics creates topics, adds partitions and reads their
		// configs (retention, cleanup policy).
		add(PrincipalAdmin, kafkago.ResourceTypeTopic, t, kafkago.ACLOperationTypeCreate, kafkago.ACLOperationTypeDescribe,
			kafkago.ACLOperationTypeAlter, kafkago.ACLOperationTypeDescribeConfigs)
	}
	// The operator runs inspect, trace and dlq: it reads every topic and
	// the stages' committed offsets, and dlq replay writes orders, the
	// retry topics and the replay log.
	for _, t := range top.Topics() {
		add(PrincipalOperator, kafkago.ResourceTypeTopic, t, read, kafkago.ACLOperationTypeDescribe)
	}
	for k := 0; k <= top.Stages(); k++ {
		add(PrincipalOperator, kafkago.ResourceTypeGroup, top.Group(top.StageName(k)), kafkago.ACLOperationTypeDescribe)
		add(PrincipalOperator, kafkago.ResourceTypeTopic, top.InputTopic(k), write)
	}
	add(PrincipalOperator, kafkago.ResourceTypeGroup, top.Group(agg), kafkago.ACLOperationTypeDescribe)
	add(PrincipalOperator, kafkago.ResourceTypeTopic, top.Replays, write)
	return out
}

// FormatACL is one ACL on one line, as `orders acls` prints it.
func FormatACL(a kafkago.ACLEntry) string {
	return fmt.Sprintf("%-28s %-5s %-8s %-5s %s", a.Principal, "ALLOW", operation(a.Operation), resource(a.ResourceType), a.ResourceName)
}

func operation(op kafkago.ACLOperationType) string {
	switch op {
	case kafkago.ACLOperationTypeRead:
		return "READ"
	case kafkago.ACLOperationTypeWrite:
		return "WRITE"
	case kafkago.ACLOperationTypeCreate:
		return "CREATE"
	case kafkago.ACLOperationTypeDescribe:
		return "DESCRIBE"
	case kafkago.ACLOperationTypeAlter:
		return "ALTER"
	case kafkago.ACLOperationTypeDescribeConfigs:
		return "DESCRIBE_CONFIGS"
	}
	return strconv.Itoa(int(op))
}

func resource(rt kafkago.ResourceType) string {
	switch rt {
	case kafkago.ResourceTypeTopic:
		return "topic"
	case kafkago.ResourceTypeGroup:
		return "group"
	}
	return strconv.Itoa(int(rt))
}

// ApplyACLs creates acls on the cluster. Creating an ACL that exists is a
// no-op, so it is idempotent. The client's principal needs ALTER on the
// cluster (a superuser has it).
func ApplyACLs(ctx context.Context, client kafka.Client, acls []kafkago.ACLEntry) error {
	if err := client.Ping(ctx); err != nil {
		return err
	}
	admin := client.Admin()
	defer admin.Close()
	res, err := admin.CreateACLs(ctx, &kafkago.CreateACLsRequest{ACLs: acls})
	if err != nil {
		return fmt.Errorf("create ACLs: %w", kafka.ExplainDenied(err, "ALTER", "cluster", "(create ACLs)"))
	}
	for i, e := range res.Errors {
		if e != nil {
			return fmt.Errorf("create ACL %q: %w", FormatACL(acls[i]), kafka.ExplainDenied(e, "ALTER", "cluster", "(create ACLs)"))
		}
	}
	return nil
}
