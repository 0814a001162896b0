package admin

import (
	"context"
	"fmt"
	"strconv"

	"github.com/segmentio/kafka-go"

	"github.com/orderflow/orders/services/pipeline"
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
//   - aggregator: READ on the processed topic and its group; READ and WRITE
//     on its state topic.
//   - producer: WRITE on the orders topic.
//   - admin (`orders topics`): CREATE, DESCRIBE, ALTER (adding partitions)
//     and DESCRIBE_CONFIGS (retention checks) on every pipeline topic.
//   - operator (`inspect`, `trace`, `dlq`): READ and DESCRIBE on every
//     pipeline topic, DESCRIBE on every stage group, WRITE on the topics a
//     replay may target (orders, the retry topics) and the replay log.
//
// READ and WRITE imply DESCRIBE, which metadata, offset and group requests need.
func ACLs(top topology.Topology, prefix string) []kafka.ACLEntry {
	var out []kafka.ACLEntry
	add := func(stage string, rt kafka.ResourceType, name string, ops ...kafka.ACLOperationType) {
		for _, op := range ops {
			out = append(out, kafka.ACLEntry{
				Principal: prefix + stage, Host: "*",
				ResourceType: rt, ResourceName: name, ResourcePatternType: kafka.PatternTypeLiteral,
				Operation: op, PermissionType: kafka.ACLPermissionTypeAllow,
			})
		}
	}
	read, write := kafka.ACLOperationTypeRead, kafka.ACLOperationTypeWrite
	for k := 0; k <= top.Stages(); k++ {
		stage := top.StageName(k)
		add(stage, kafka.ResourceTypeTopic, top.InputTopic(k), read)
		add(stage, kafka.ResourceTypeGroup, top.Group(stage), read)
		if next, retry := top.NextOnFailure(k); retry {
			add(stage, kafka.ResourceTypeTopic, next, write)
		}
		add(stage, kafka.ResourceTypeTopic, top.Processed, write)
		add(stage, kafka.ResourceTypeTopic, top.DLQ, write)
	}
	agg := topology.StageAggregator
	add(agg, kafka.ResourceTypeTopic, top.Processed, read)
	add(agg, kafka.ResourceTypeGroup, top.Group(agg), read)
	add(agg, kafka.ResourceTypeTopic, top.State, read, write)
	add(PrincipalProducer, kafka.ResourceTypeTopic, top.Orders, write)
	for _, t := range top.Topics() {
		// orders topics creates topics, adds partitions and reads their
		// retention.
		add(PrincipalAdmin, kafka.ResourceTypeTopic, t, kafka.ACLOperationTypeCreate, kafka.ACLOperationTypeDescribe,
			kafka.ACLOperationTypeAlter, kafka.ACLOperationTypeDescribeConfigs)
	}
	// The operator runs inspect, trace and dlq: it reads every topic and
	// the stages' committed offsets, and dlq replay writes orders, the
	// retry topics and the replay log.
	for _, t := range top.Topics() {
		add(PrincipalOperator, kafka.ResourceTypeTopic, t, read, kafka.ACLOperationTypeDescribe)
	}
	for k := 0; k <= top.Stages(); k++ {
		add(PrincipalOperator, kafka.ResourceTypeGroup, top.Group(top.StageName(k)), kafka.ACLOperationTypeDescribe)
		add(PrincipalOperator, kafka.ResourceTypeTopic, top.InputTopic(k), write)
	}
	add(PrincipalOperator, kafka.ResourceTypeGroup, top.Group(agg), kafka.ACLOperationTypeDescribe)
	add(PrincipalOperator, kafka.ResourceTypeTopic, top.Replays, write)
	return out
}

// FormatACL is one ACL on one line, as `orders acls` prints it.
func FormatACL(a kafka.ACLEntry) string {
	return fmt.Sprintf("%-28s %-5s %-8s %-5s %s", a.Principal, "ALLOW", operation(a.Operation), resource(a.ResourceType), a.ResourceName)
}

func operation(op kafka.ACLOperationType) string {
	switch op {
	case kafka.ACLOperationTypeRead:
		return "READ"
	case kafka.ACLOperationTypeWrite:
		return "WRITE"
	case kafka.ACLOperationTypeCreate:
		return "CREATE"
	case kafka.ACLOperationTypeDescribe:
		return "DESCRIBE"
	case kafka.ACLOperationTypeAlter:
		return "ALTER"
	case kafka.ACLOperationTypeDescribeConfigs:
		return "DESCRIBE_CONFIGS"
	}
	return strconv.Itoa(int(op))
}

func resource(rt kafka.ResourceType) string {
	switch rt {
	case kafka.ResourceTypeTopic:
		return "topic"
	case kafka.ResourceTypeGroup:
		return "group"
	}
	return strconv.Itoa(int(rt))
}

// ApplyACLs creates acls on the cluster. Creating an ACL that exists is a
// no-op, so it is idempotent. The client's principal needs ALTER on the
// cluster (a superuser has it).
func ApplyACLs(ctx context.Context, client pipeline.Client, acls []kafka.ACLEntry) error {
	if err := client.Ping(ctx); err != nil {
		return err
	}
	admin := client.Admin()
	defer admin.Close()
	res, err := admin.CreateACLs(ctx, &kafka.CreateACLsRequest{ACLs: acls})
	if err != nil {
		return fmt.Errorf("create ACLs: %w", pipeline.Denied(err, "ALTER", "cluster", "(create ACLs)"))
	}
	for i, e := range res.Errors {
		if e != nil {
			return fmt.Errorf("create ACL %q: %w", FormatACL(acls[i]), pipeline.Denied(e, "ALTER", "cluster", "(create ACLs)"))
		}
	}
	return nil
}
