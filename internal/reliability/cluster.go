package reliability

import (
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/zkchat/zkchat/internal/servers"
	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/kafka"
)

// Cluster is the suite's ZooKeeper ensemble and Kafka cluster, controlled
// through internal/servers (same ZKCHAT_CLUSTER_BASE and ZKCHAT_DATA_DIR as
// the devenv that started it: both come from the environment).
type Cluster struct {
	// ZooKeeper and Kafka are the connection strings of all members.
	ZooKeeper, Kafka string
	cl               *servers.Cluster
	log              *testenv.Buffer
}

// ZKMembers and KafkaMembers name the members as internal/servers does.
var (
	ZKMembers    = servers.ZKMembers
	KafkaMembers = servers.KafkaMembers
)

// Need skips t unless the fault suite runs (ZKCHAT_RELIABILITY=1, set by
// make reliability), and fails it when the cluster is not healthy: the
// suite started it, so a missing cluster is a failure, not a skip.
func Need(t testing.TB) *Cluster {
	t.Helper()
	if os.Getenv("ZKCHAT_RELIABILITY") != "1" {
		t.Skip("fault suite: runs under make reliability, which starts the replicated cluster")
	}
	cfg := testenv.ServerConfig(t)
	c := &Cluster{cl: cfg.Cluster(), log: cfg.Log.(*testenv.Buffer)}
	c.ZooKeeper, c.Kafka = c.cl.ZooKeeper(), c.cl.Kafka()
	c.WaitHealthy(t, 2*time.Minute)
	return c
}

func (c *Cluster) check(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("cluster %s: %v\n%s", what, err, c.log)
	}
}

// Healthy reports whether every member runs and answers.
func (c *Cluster) Healthy() bool { return c.cl.Healthy() }

// WaitHealthy waits until every member runs and answers.
func (c *Cluster) WaitHealthy(t testing.TB, d time.Duration) time.Duration {
	t.Helper()
	t0 := time.Now()
	for !c.Healthy() {
		if time.Since(t0) > d {
			t.Fatalf("cluster not healthy after %v:\n%s", d, c.cl.Status().Line)
		}
		time.Sleep(250 * time.Millisecond)
	}
	return time.Since(t0)
}

// PID is the member's process id (0 when it is down).
func (c *Cluster) PID(t testing.TB, name string) int { return c.cl.PID(name) }

// Kill SIGKILLs a member; Start starts it again and waits until it serves.
func (c *Cluster) Kill(t testing.TB, name string) {
	t.Helper()
	c.check(t, "kill "+name, c.cl.Kill(name))
}
func (c *Cluster) Start(t testing.TB, name string) {
	t.Helper()
	c.check(t, "start "+name, c.cl.StartMember(name))
}

// Stop stops a member gracefully.
func (c *Cluster) Stop(t testing.TB, name string) {
	t.Helper()
	c.check(t, "stop "+name, c.cl.StopMember(name))
}

// Pause freezes members with SIGSTOP; the returned function (also run at
// cleanup, once) thaws them with SIGCONT.
func (c *Cluster) Pause(t testing.TB, names ...string) (resume func()) {
	t.Helper()
	var pids []int
	for _, n := range names {
		pid := c.PID(t, n)
		if pid == 0 {
			t.Fatalf("pause %s: not running", n)
		}
		pids = append(pids, pid)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatalf("SIGSTOP %d: %v", pid, err)
		}
	}
	done := false
	resume = func() {
		if done {
			return
		}
		done = true
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	return resume
}

// Restore (run it at cleanup) thaws and starts every member again and waits
// until the cluster is healthy, so the next test starts from a whole cluster.
func (c *Cluster) Restore(t testing.TB) {
	t.Helper()
	for _, n := range append(append([]string{}, ZKMembers...), KafkaMembers...) {
		if pid := c.PID(t, n); pid != 0 {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	c.check(t, "start", c.cl.Start())
	c.WaitHealthy(t, 3*time.Minute)
}

// ZKLeader names the ZooKeeper member that leads the ensemble.
func (c *Cluster) ZKLeader(t testing.TB) string {
	t.Helper()
	return c.cl.ZKLeader()
}

// PartitionLeader names the broker (kafka1..3) leading partition 0 of topic.
func (c *Cluster) PartitionLeader(t testing.TB, topic string) string {
	t.Helper()
	ad, err := kafka.NewAdmin(kafka.Config{Brokers: c.Kafka, Logger: slog.New(slog.DiscardHandler)}, "zkchat-suite")
	if err != nil {
		t.Fatal(err)
	}
	defer ad.Close()
	a := ad.Client()
	md, err := a.GetMetadata(&topic, false, 10000)
	if err != nil {
		t.Fatalf("metadata %s: %v", topic, err)
	}
	tm, ok := md.Topics[topic]
	if !ok || len(tm.Partitions) == 0 {
		t.Fatalf("metadata %s: no partitions (%v)", topic, tm.Error)
	}
	return fmt.Sprintf("kafka%d", tm.Partitions[0].Leader)
}
