package rdkafka_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/orderflow/orders/services/kafka"
	"github.com/orderflow/orders/services/testkit"
	"github.com/orderflow/orders/topology"
)

// mockCluster is librdkafka's mock cluster holding the pipeline's topics,
// the orders binary, and the environment every orders process of a test
// runs with.
type mockCluster struct {
	t      *testing.T
	mock   *mockProc
	bin    string
	env    []string
	client kafka.Client
	top    topology.Topology
}

// newMockCluster builds the orders binary, starts a mock cluster of the
// given number of brokers and creates the topics of a pipeline with the
// given retry delays. The cluster stops when the test ends, after the
// processes the test started later are killed.
func newMockCluster(t *testing.T, brokers int, delays []time.Duration) *mockCluster {
	t.Helper()
	top, err := topology.New(topology.Topology{Delays: delays, Replication: brokers})
	if err != nil {
		t.Fatal(err)
	}
	bin := buildOrders(t) // before the cluster: a failed build leaves nothing running
	mock := startMock(t, brokers)
	var ds []string
	for _, d := range delays {
		ds = append(ds, d.String())
	}
	bootstrap := mock.Bootstrap
	c := &mockCluster{
		t:    t,
		mock: mock,
		bin:  bin,
		env: []string{
			"KAFKA_BROKERS=" + bootstrap, "RETRY_DELAYS=" + strings.Join(ds, ","),
			"PARTITIONS=" + fmt.Sprint(top.Partitions), "REPLICATION=" + fmt.Sprint(top.Replication),
			"SESSION_TIMEOUT=" + sessionTimeout.String(), "LOG_LEVEL=info",
		},
		client: kafka.Client{Brokers: strings.Split(bootstrap, ",")},
		top:    top,
	}
	c.createTopics()
	return c
}

// sessionTimeout is every stage's SESSION_TIMEOUT.
const sessionTimeout = 3 * time.Second

// buildOrders builds the main module's orders binary, as production
// builds it: pure Go, without this module's cgo.
func buildOrders(tb testing.TB) string {
	tb.Helper()
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		tb.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "go.mod")); err != nil || !strings.HasPrefix(string(b), "module github.com/orderflow/orders\n") {
		tb.Fatalf("%s is not the orders module's root: %v", root, err)
	}
	bin := filepath.Join(tb.TempDir(), "orders")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/orders")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build ./cmd/orders: %v\n%s", err, out)
	}
	return bin
}

// createTopics creates the pipeline's topics with `orders topics`, as an
// operator would, or, where the mock cannot, with the mock's own call.
// librdkafka 2.11's mock has no CreateTopics, CreatePartitions or
// DescribeConfigs handler (src/rdkafka_mock_handlers.c), and its Metadata
// answers name broker 0 as the controller, which is none of its brokers
// (1 to N), so kafka-go's client fails those requests with "[8] Broker Not
// Available" before sending them.
func (c *mockCluster) createTopics() {
	c.t.Helper()
	out, err := testkit.Run(c.t, c.bin, c.env, "topics")
	if err == nil {
		if n := strings.Count(out, "created"); n != len(c.top.Topics()) {
			c.t.Fatalf("orders topics created %d topics, want %d:\n%s", n, len(c.top.Topics()), out)
		}
		return
	}
	c.t.Logf("orders topics against the mock: %v: %s; creating the topics with the mock's CreateTopic", err, strings.TrimSpace(out))
	for _, name := range c.top.Topics() {
		if err := c.mock.CreateTopic(name, c.top.Partitions, c.top.Replication); err != nil {
			c.t.Fatalf("create topic %s on the mock: %v", name, err)
		}
	}
}

// start runs an orders process with the cluster's environment.
func (c *mockCluster) start(args ...string) *testkit.Proc {
	return testkit.Start(c.t, c.bin, c.env, args...)
}

// coordinator is the id of the broker that coordinates group.
func (c *mockCluster) coordinator(group string) int {
	c.t.Helper()
	admin := c.client.Admin()
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := admin.FindCoordinator(ctx, &kafkago.FindCoordinatorRequest{Key: group, KeyType: kafkago.CoordinatorKeyTypeConsumer})
	if err == nil {
		err = res.Error
	}
	if err != nil {
		c.t.Fatalf("find the coordinator of %s: %v", group, err)
	}
	return res.Coordinator.NodeID
}

// setBroker takes broker id down (closing its connections and refusing new
// ones) or brings it back up. Leaders and coordinators do not move.
func (c *mockCluster) setBroker(id int, up bool) {
	c.t.Helper()
	if err := c.mock.SetBroker(id, up); err != nil {
		c.t.Fatal(err)
	}
}

// running fails the test for every process of procs that has exited.
func running(tb testing.TB, procs []*testkit.Proc) {
	tb.Helper()
	for _, p := range procs {
		if exited, err := p.Wait(10 * time.Millisecond); exited {
			tb.Errorf("%s exited: %v", p.Name, errors.Join(err, errors.New(lastLines(p.Output(), 20))))
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
