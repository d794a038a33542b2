package reliability

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/zkchat/zkchat/internal/testenv"
)

// Cluster is the suite's ZooKeeper ensemble and Kafka cluster, controlled
// through scripts/cluster.sh (same ZKCHAT_CLUSTER_BASE and ZKCHAT_DATA_DIR as
// the script that started it: both come from the environment).
type Cluster struct {
	// ZooKeeper and Kafka are the connection strings of all members.
	ZooKeeper, Kafka string
	root             string
}

// ZKMembers and KafkaMembers name the members as scripts/cluster.sh does.
var (
	ZKMembers    = []string{"zk1", "zk2", "zk3"}
	KafkaMembers = []string{"kafka1", "kafka2", "kafka3"}
)

// Need skips t unless the fault suite runs (ZKCHAT_RELIABILITY=1, set by
// scripts/reliability.sh), and fails it when the cluster is not healthy: the
// suite started it, so a missing cluster is a failure, not a skip.
func Need(t testing.TB) *Cluster {
	t.Helper()
	if os.Getenv("ZKCHAT_RELIABILITY") != "1" {
		t.Skip("fault suite: runs under scripts/reliability.sh (make test runs it), which starts the replicated cluster")
	}
	c := &Cluster{root: testenv.RepoRoot(t)}
	out := c.script(t, "env")
	for _, f := range strings.Fields(out) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "ZKCHAT_ZOOKEEPER":
			c.ZooKeeper = v
		case "ZKCHAT_KAFKA":
			c.Kafka = v
		}
	}
	if c.ZooKeeper == "" || c.Kafka == "" {
		t.Fatalf("cluster.sh env printed %q", out)
	}
	c.WaitHealthy(t, 2*time.Minute)
	return c
}

func (c *Cluster) script(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(c.root, "scripts", "cluster.sh"), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("cluster.sh %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// Healthy reports whether every member runs and answers.
func (c *Cluster) Healthy() bool {
	cmd := exec.Command(filepath.Join(c.root, "scripts", "cluster.sh"), "status")
	return cmd.Run() == nil
}

// WaitHealthy waits until every member runs and answers.
func (c *Cluster) WaitHealthy(t testing.TB, d time.Duration) time.Duration {
	t.Helper()
	t0 := time.Now()
	for !c.Healthy() {
		if time.Since(t0) > d {
			t.Fatalf("cluster not healthy after %v:\n%s", d, c.status())
		}
		time.Sleep(250 * time.Millisecond)
	}
	return time.Since(t0)
}

func (c *Cluster) status() string {
	out, _ := exec.Command(filepath.Join(c.root, "scripts", "cluster.sh"), "status").CombinedOutput()
	return string(out)
}

// PID is the member's process id (0 when it is down).
func (c *Cluster) PID(t testing.TB, name string) int {
	t.Helper()
	for _, line := range strings.Split(c.script(t, "pids"), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == name {
			pid, _ := strconv.Atoi(f[1])
			return pid
		}
	}
	return 0
}

// Kill SIGKILLs a member; Start starts it again and waits until it serves.
func (c *Cluster) Kill(t testing.TB, name string)  { t.Helper(); c.script(t, "kill", name) }
func (c *Cluster) Start(t testing.TB, name string) { t.Helper(); c.script(t, "start", name) }

// Stop stops a member gracefully.
func (c *Cluster) Stop(t testing.TB, name string) { t.Helper(); c.script(t, "stop", name) }

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
	c.script(t, "start")
	c.WaitHealthy(t, 3*time.Minute)
}

// ZKLeader names the ZooKeeper member that leads the ensemble.
func (c *Cluster) ZKLeader(t testing.TB) string {
	t.Helper()
	return strings.TrimSpace(c.script(t, "zk-leader"))
}

// PartitionLeader names the broker (kafka1..3) leading partition 0 of topic.
func (c *Cluster) PartitionLeader(t testing.TB, topic string) string {
	t.Helper()
	a, err := ckafka.NewAdminClient(&ckafka.ConfigMap{"bootstrap.servers": c.Kafka})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
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
