package manager_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/manager"
	"github.com/zkchat/zkchat/protocol"
	"github.com/zkchat/zkchat/zookeeper"
)

var acl = zk.WorldACL(zk.PermAll)

// TestRequestStatusCodes drives the manager the way a client in another
// language would, through bare ZooKeeper nodes, and checks every code.
func TestRequestStatusCodes(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	leadingManager(t, env)
	c := env.Conn(t)
	enroll := func(id string) string { return env.Path("/request/enroll/" + id) }
	quit := func(id string) string { return env.Path("/request/quit/" + id) }
	request := func(path, body, want string) {
		t.Helper()
		if _, err := c.Create(path, []byte(body), 0, acl); err != nil {
			t.Fatalf("create %s: %v", path, err)
		}
		waitData(t, c, path, want)
		if err := c.Delete(path, -1); err != nil {
			t.Fatalf("delete %s: %v", path, err)
		}
	}

	request(enroll("carol"), "-1", "1")
	if !exists(t, c, env.Path("/registry/carol")) {
		t.Fatal("registry node missing after code 1")
	}
	request(enroll("carol"), "-1", "2") // already registered
	request(enroll("Carol"), "-1", "0") // invalid id: upper case
	request(enroll("dave"), "hello", "0")
	if exists(t, c, env.Path("/registry/dave")) {
		t.Fatal("garbage request registered dave")
	}
	request(quit("carol"), "-1", "1")
	if exists(t, c, env.Path("/registry/carol")) {
		t.Fatal("registry node still there after quit code 1")
	}
	request(quit("carol"), "-1", "2") // not registered
	// An answered request is left alone, not answered again.
	if _, err := c.Create(enroll("erin"), []byte("1"), 0, acl); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if exists(t, c, env.Path("/registry/erin")) {
		t.Fatal("manager acted on an answered request")
	}
}

// TestRequestAnsweredWhenManagerStarts: requests made while no manager runs
// are answered by the manager that starts later.
func TestRequestAnsweredWhenManagerStarts(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	c := env.Conn(t)
	// The tree does not exist yet: create it as `zkchat init` would.
	s, err := zookeeper.Dial(ctxT(t), zookeeper.SessionConfig{Connect: env.ZooKeeper})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTree(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	raw := env.Path("/request/enroll/gina")
	if _, err := c.Create(raw, []byte("-1"), 0, acl); err != nil {
		t.Fatal(err)
	}
	w := env.NewWorker(t, "hank", nil)
	res := make(chan error, 1)
	go func() {
		_, err := w.Register(ctxT(t))
		res <- err
	}()
	time.Sleep(500 * time.Millisecond)
	if d, _ := data(t, c, raw); d != "-1" {
		t.Fatalf("answered without a manager: %q", d)
	}
	m, _ := runManager(t, env, "late")
	waitLeader(t, m)
	waitData(t, c, raw, "1")
	if err := <-res; err != nil {
		t.Fatalf("worker's register: %v", err)
	}
	for _, id := range []string{"gina", "hank"} {
		if !exists(t, c, env.Path("/registry/"+id)) {
			t.Errorf("%s not registered", id)
		}
	}
}

// TestAnsweredRequestsRemoved: answered requests nobody deletes (a
// crashed worker, another implementation, planted) are removed by the
// leader once they have stood answered for AnswerGrace; a pending one is
// answered first, and removed only after the same grace.
func TestAnsweredRequestsRemoved(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	c := env.Conn(t)
	s, err := zookeeper.Dial(ctxT(t), zookeeper.SessionConfig{Connect: env.ZooKeeper})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTree(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	left := map[string]string{"/request/enroll/ann": "1", "/request/quit/ann": "2",
		"/request/enroll/bo": "0", "/request/enroll/cy": "-1"}
	for p, d := range left {
		if _, err := c.Create(env.Path(p), []byte(d), 0, acl); err != nil {
			t.Fatal(err)
		}
	}
	const grace = 2 * time.Second
	m, _ := env.RunManager(t, "m1", func(cfg *manager.Config) { cfg.AnswerGrace = grace })
	waitLeader(t, m)
	waitData(t, c, env.Path("/request/enroll/cy"), "1") // pending: answered
	time.Sleep(grace / 2)
	if !exists(t, c, env.Path("/request/enroll/cy")) {
		t.Fatal("an answered request removed before its grace")
	}
	for p := range left {
		waitFor(t, 10*grace, p+" removed", func() bool { return !exists(t, c, env.Path(p)) })
	}
	if !exists(t, c, env.Path("/registry/cy")) || exists(t, c, env.Path("/registry/ann")) {
		t.Error("registry: cy should be registered (its request was pending), ann not (hers were answered)")
	}
}

// TestTwoManagers: only one acts; when the leader dies the other takes over
// and answers what is pending.
func TestTwoManagers(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	m1, stop1 := runManager(t, env, "m1")
	waitLeader(t, m1)
	m2, _ := runManager(t, env, "m2")
	time.Sleep(500 * time.Millisecond)
	if m2.Leading() {
		t.Fatal("two leaders")
	}
	c := env.Conn(t)
	req := env.Path("/request/enroll/ivan")
	if _, err := c.Create(req, []byte("-1"), 0, acl); err != nil {
		t.Fatal(err)
	}
	waitData(t, c, req, "1")
	// Kill the leader: its session ends, its election node goes.
	stop1()
	waitLeader(t, m2)
	req2 := env.Path("/request/enroll/judy")
	if _, err := c.Create(req2, []byte("-1"), 0, acl); err != nil {
		t.Fatal(err)
	}
	waitData(t, c, req2, "1")
}

// TestStaleLeaderIsFenced: the leader's election node disappears behind its
// back, as when its session expires while it cannot hear of it. Its next
// write must fail and it must step down; the other manager answers.
func TestStaleLeaderIsFenced(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	m1, _ := runManager(t, env, "m1")
	waitLeader(t, m1)
	m2, _ := runManager(t, env, "m2")
	c := env.Conn(t)
	var nodes []string
	waitFor(t, 10*time.Second, "two election nodes", func() bool {
		nodes, _, _ = c.Children(env.Path("/election"))
		return len(nodes) == 2
	})
	// The lowest sequence number is m1's.
	first := nodes[0]
	if len(nodes[1]) >= 10 && nodes[1][len(nodes[1])-10:] < first[len(first)-10:] {
		first = nodes[1]
	}
	if d, _ := data(t, c, env.Path("/election/"+first)); d != "m1" {
		t.Fatalf("first election node holds %q, want m1", d)
	}
	if err := c.Delete(env.Path("/election/"+first), -1); err != nil {
		t.Fatal(err)
	}
	waitLeader(t, m2)
	// Both think they lead. m1 steps down only when it tries a write and
	// its fence fails; if m2 answers a request first, m1 sees it answered
	// and tries nothing. So requests come until m1 has tried (each one a
	// race between the two), and every one must be answered exactly once.
	for i := 0; m1.Leading(); i++ {
		if i == 30 {
			t.Fatal("m1 still leads after 30 requests: it never tried a write, or its fence did not stop it")
		}
		req := env.Path(fmt.Sprintf("/request/enroll/kate%d", i))
		if _, err := c.Create(req, []byte("-1"), 0, acl); err != nil {
			t.Fatal(err)
		}
		waitData(t, c, req, "1")
		// Answered exactly once: version 1 means one write after creation.
		_, stat, err := c.Get(req)
		if err != nil {
			t.Fatal(err)
		}
		if stat.Version != 1 {
			t.Fatalf("request %d written %d times, want 1", i, stat.Version)
		}
		// m1 tried too, failed its fence and steps down (or it lost the race).
		deadline := time.Now().Add(2 * time.Second)
		for m1.Leading() && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if !m2.Leading() {
		t.Fatal("m2 does not lead")
	}
}

// TestOnlineRules: the manager makes a user's topic on the first online and
// deletes an /online node of an unregistered id; real ZooKeeper refuses a
// second online node. (The Worker's side: client's TestOnlineRules.)
func TestOnlineRules(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	leadingManager(t, env)
	k := env.NewKafka(t)
	ctx := ctxT(t)
	mustRegister(t, env, "liam")

	ghost := env.NewWorker(t, "ghost", k)
	if err := ghost.GoOnline(ctx); !errors.Is(err, protocol.ErrNotRegistered) {
		t.Fatalf("unregistered online: %v, want ErrNotRegistered", err)
	}
	w1 := env.NewWorker(t, "liam", k)
	if err := w1.GoOnline(ctx); err != nil {
		t.Fatal(err)
	}
	w2 := env.NewWorker(t, "liam", nil)
	if err := w2.GoOnline(ctx); !errors.Is(err, protocol.ErrAlreadyOnline) {
		t.Fatalf("second online: %v, want ErrAlreadyOnline", err)
	}
	if ids, err := w2.GetOnlineUsers(ctx); err != nil || len(ids) != 1 || ids[0] != "liam" {
		t.Fatalf("online users = %v, %v", ids, err)
	}
	// The manager created the topic on the first online.
	if topics := env.Topics(t); len(topics) != 1 || topics[0] != env.Prefix+"liam" {
		t.Fatalf("topics = %v", topics)
	}
	// An /online node written by hand for an unregistered id is removed.
	c := env.Conn(t)
	if _, err := c.Create(env.Path("/online/mallory"), []byte("{}"), zk.FlagEphemeral, acl); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "manager deletes unregistered /online/mallory", func() bool {
		return !exists(t, c, env.Path("/online/mallory"))
	})
	w1.GoOffline()
	waitFor(t, 10*time.Second, "offline removes /online/liam", func() bool {
		return !exists(t, c, env.Path("/online/liam"))
	})
	if err := w2.GoOnline(ctx); err != nil {
		t.Fatalf("online after the other went offline: %v", err)
	}
}

// TestDirectAPI covers the manager's own API, used without requests.
func TestDirectAPI(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	m := leadingManager(t, env)
	ctx := ctxT(t)
	if err := m.CreateZkTreeStructure(ctx); err != nil { // idempotent
		t.Fatal(err)
	}
	for i, want := range []protocol.Status{protocol.StatusDone, protocol.StatusAlready} {
		if st, err := m.RegisterUser(ctx, "rita"); err != nil || st != want {
			t.Fatalf("RegisterUser #%d = %v, %v", i+1, st, err)
		}
	}
	if _, err := m.RegisterUser(ctx, "Rita"); !errors.Is(err, protocol.ErrInvalidID) {
		t.Fatalf("RegisterUser(Rita) = %v", err)
	}
	if ids, err := m.GetRegisteredUsers(ctx); err != nil || len(ids) != 1 || ids[0] != "rita" {
		t.Fatalf("GetRegisteredUsers = %v, %v", ids, err)
	}
	if err := m.CreateKafkaTopic(ctx, "rita"); err != nil {
		t.Fatal(err)
	}
	if err := m.CreateKafkaTopic(ctx, "rita"); err != nil { // exists: success
		t.Fatalf("second CreateKafkaTopic: %v", err)
	}
	for i, want := range []protocol.Status{protocol.StatusDone, protocol.StatusAlready} {
		if st, err := m.RemoveUser(ctx, "rita"); err != nil || st != want {
			t.Fatalf("RemoveUser #%d = %v, %v", i+1, st, err)
		}
	}
	if err := m.DeleteKafkaTopic(ctx, "rita"); err != nil { // gone: success
		t.Fatalf("DeleteKafkaTopic of a deleted topic: %v", err)
	}
	if topics := env.Topics(t); len(topics) != 0 {
		t.Fatalf("topics left: %v", topics)
	}
}

// TestRegistrationsWhileKafkaIsAway: users going online wait for topics
// that cannot be created while Kafka is unreachable; registrations are
// still answered (topic retries do not hold the handling slots).
func TestRegistrationsWhileKafkaIsAway(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	m, err := manager.New(manager.Config{ZooKeeper: env.ZooKeeper, Kafka: "127.0.0.1:1",
		Topics: protocol.Topics{Prefix: env.Prefix}, Concurrency: 4, OnlineConcurrency: 4, Name: "nokafka",
		Logger: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; m.Close() })
	waitLeader(t, m)
	c := env.Conn(t)
	for i := 0; i < 10; i++ {
		id := fmt.Sprintf("w%d", i)
		if _, err := m.RegisterUser(ctxT(t), id); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Create(env.Path("/online/"+id), []byte("{}"), zk.FlagEphemeral, acl); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond) // the online handlers start retrying
	req := env.Path("/request/enroll/late")
	if _, err := c.Create(req, []byte("-1"), 0, acl); err != nil {
		t.Fatal(err)
	}
	waitData(t, c, req, "1")
}
