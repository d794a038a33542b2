package manager_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zkchat/zkchat/client"
	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/manager"
	"github.com/zkchat/zkchat/protocol"
)

// privateZooKeeper starts a ZooKeeper of the test's own and returns its
// address and pid, so the test can freeze it.
func privateZooKeeper(t *testing.T) (string, int) {
	t.Helper()
	testenv.Require(t)
	addr, dir, _ := testenv.PrivateServer(t, "zookeeper", "ZKCHAT_ZK_PORT")
	b, err := os.ReadFile(filepath.Join(dir, "zookeeper", "zookeeper.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return addr, pid
}

// TestLeaderSuspendsAndComesBack: the ZooKeeper server freezes for longer
// than the session timeout. The leader stops acting as soon as it loses the
// connection (it cannot know whether its session lives), and when the
// server is back and the session turns out expired, it joins the election
// again in a new session and leads again: requests made meanwhile are
// answered.
func TestLeaderSuspendsAndComesBack(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	addr, pid := privateZooKeeper(t)
	m, err := manager.New(manager.Config{ZooKeeper: addr + "/suspend", Kafka: env.Kafka,
		Topics: protocol.Topics{Prefix: env.Prefix}, SessionTimeout: 4 * time.Second,
		Name: "frozen", Logger: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; m.Close() })
	waitLeader(t, m)
	// A worker online before the freeze: its session expires with the
	// server's, and go-zookeeper quietly opens a new one; the worker must
	// put its ephemeral /online node back.
	wk, err := client.New("wkr", client.Config{ZooKeeper: addr + "/suspend",
		SessionTimeout: 4 * time.Second, RequestTimeout: 20 * time.Second, Logger: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer wk.Close()
	if _, err := wk.Register(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := wk.GoOnline(ctxT(t)); err != nil {
		t.Fatal(err)
	}

	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	// The client notices the silent server after 2/3 of the session
	// timeout; the leader must stop acting then, not later.
	waitFor(t, 10*time.Second, "leader stops acting", func() bool { return !m.Leading() })
	t.Logf("stopped leading %s after the server froze", time.Since(frozen).Round(10*time.Millisecond))
	time.Sleep(5 * time.Second) // past the session timeout
	if m.Leading() {
		t.Fatal("leading while the server is frozen")
	}
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitLeader(t, m)
	w, err := client.New("after", client.Config{ZooKeeper: addr + "/suspend", RequestTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if st, err := w.Register(ctxT(t)); err != nil || st != protocol.StatusDone {
		t.Fatalf("register after the freeze = %v, %v", st, err)
	}
	waitFor(t, 20*time.Second, "the worker is online again after its session expired", func() bool {
		ids, err := w.GetOnlineUsers(ctxT(t))
		return err == nil && len(ids) == 1 && ids[0] == "wkr"
	})
}
