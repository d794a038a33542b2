package manager_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/manager"
	"github.com/zkchat/zkchat/protocol"
)

// countingLog sends the manager's log to the test's log and to buf, where
// the test counts lines.
func countingLog(t *testing.T, buf *testenv.Buffer) func(*manager.Config) {
	return func(cfg *manager.Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
}

func linesWith(buf *testenv.Buffer, s string) int {
	n := 0
	for _, l := range strings.Split(buf.String(), "\n") {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

func gone(t *testing.T, c *zk.Conn, path string) func() bool {
	return func() bool {
		ok, _, err := c.Exists(path)
		if err != nil {
			t.Logf("exists %s: %v", path, err)
			return false
		}
		return !ok
	}
}

// TestUnconfirmedOnlineNodes: with ACLs on, an /online node the leader
// cannot use is removed. Seen before: a persistent /online/alice with a
// world-READ ACL that nobody may write stayed forever (alice "already
// online" for good, others "sent to alice"); an ephemeral one, never
// touched, stayed for as long as its hostile session lived.
func TestUnconfirmedOnlineNodes(t *testing.T) {
	const grace = 2 * time.Second
	env, admin, _ := aclEnv(t, func(cfg *manager.Config) { cfg.ConfirmGrace = grace })
	anon := authConn(t, env, "")
	zkchat := authConn(t, env, admin.User+":"+admin.Password)
	online := env.Path("/online")

	// Persistent: not presence at all (it outlives every session).
	start := time.Now()
	if _, err := anon.Create(online+"/alice", []byte("{}"), 0, zk.WorldACL(zk.PermRead)); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, grace, "persistent /online/alice removed at once", gone(t, zkchat, online+"/alice"))
	t.Logf("persistent online node removed after %s", time.Since(start).Round(time.Millisecond))

	// Ephemeral but never touched: removed once the grace is over.
	start = time.Now()
	if _, err := anon.Create(online+"/carol", []byte("{}"), zk.FlagEphemeral, zk.WorldACL(zk.PermRead)); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 4*grace, "untouched /online/carol removed after the grace", gone(t, zkchat, online+"/carol"))
	if d := time.Since(start); d < grace {
		t.Errorf("untouched node removed after %s, before the grace of %s", d, grace)
	}
}

// TestUnreadableOnlineNode: an /online node whose ACL hides it from
// zkchat's principal. Seen before: the leader looped on "read node … not
// authenticated", 1,754 log lines and 4,500 ZooKeeper packets a second, for
// as long as the node existed. Now it is looked at with backoff, logged
// a bounded number of times, and removed after the grace.
func TestUnreadableOnlineNode(t *testing.T) {
	const grace = 3 * time.Second
	var logs testenv.Buffer
	env, admin, _ := aclEnv(t, func(cfg *manager.Config) { cfg.ConfirmGrace = grace }, countingLog(t, &logs))
	mallory := authConn(t, env, "mallory:secret-"+testenv.Tag())
	zkchat := authConn(t, env, admin.User+":"+admin.Password)
	path := env.Path("/online/bob")
	if _, err := mallory.Create(path, []byte("{}"), zk.FlagEphemeral, zk.DigestACL(zk.PermAll, "mallory", "secret-x")); err != nil {
		// The ACL names an identity nobody has: not even mallory may read it.
		t.Fatal(err)
	}
	testenv.WaitFor(t, 4*grace, "unreadable /online/bob removed", gone(t, zkchat, path))
	if n := linesWith(&logs, "online/bob"); n > 10 {
		t.Errorf("%d log lines about /online/bob, want at most 10 (a flood)", n)
	}
	if n := strings.Count(logs.String(), "\n"); n > 200 {
		t.Errorf("%d log lines in all", n)
	}
}

// TestManyUnreadableRequests: thousands of request nodes nobody can read.
// Seen before with 5,000: 10,000 goroutines, 77 % of a core, a log flood,
// registrations 50× slower, the nodes never removed. Now the pending work
// is bounded (goroutines), a registration meanwhile is answered at once,
// and the nodes are removed after the grace.
func TestManyUnreadableRequests(t *testing.T) {
	const n = 2000
	const grace = 4 * time.Second
	var logs testenv.Buffer
	env, admin, _ := aclEnv(t, func(cfg *manager.Config) { cfg.ConfirmGrace = grace }, countingLog(t, &logs))
	mallory := authConn(t, env, "mallory:secret-"+testenv.Tag())
	zkchat := authConn(t, env, admin.User+":"+admin.Password)
	base := runtime.NumGoroutine()
	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() { // the peak, every 5 ms from before the nodes exist
		defer close(sampled)
		for {
			if g := int64(runtime.NumGoroutine() - base); g > peak.Load() {
				peak.Store(g)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	dir := env.Path("/request/enroll")
	acl := zk.DigestACL(zk.PermAll, "nobody", "x")
	for i := 0; i < n; i += 200 {
		var ops []any
		for j := i; j < i+200; j++ {
			ops = append(ops, &zk.CreateRequest{Path: fmt.Sprintf("%s/h%05d", dir, j), Data: []byte("-1"), Acl: acl})
		}
		if _, err := mallory.Multi(ops...); err != nil {
			t.Fatal(err)
		}
	}
	// A real registration while they are pending.
	k := env.NewKafka(t)
	w := authWorker(t, env, "dave", &protocol.Auth{User: "dave", Password: "pw-" + testenv.Tag()}, k)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := w.Register(ctx); err != nil {
		t.Fatalf("register with %d unreadable requests pending: %v", n, err)
	}
	t.Logf("register took %s with %d unreadable requests pending", time.Since(start).Round(time.Millisecond), n)
	testenv.WaitFor(t, 6*grace, "unreadable requests removed", func() bool {
		c, _, err := zkchat.Children(dir)
		return err == nil && len(c) == 0
	})
	close(stop)
	<-sampled
	t.Logf("goroutines over the baseline at most %d with %d nodes pending", peak.Load(), n)
	if p := peak.Load(); p > 400 {
		t.Errorf("%d goroutines over the baseline for %d pending nodes: not bounded", p, n)
	}
	if l := strings.Count(logs.String(), "\n"); l > 200 {
		t.Errorf("%d log lines for %d unreadable nodes: a flood", l, n)
	}
}

// TestHiddenRequestReplaced: a request node hidden from zkchat's principal
// does not hold up the real request that replaces it. Before, the leader
// had no watch on a node it could not read, so the user's own request
// (made after removing the hidden one) waited for the ConfirmGrace timer:
// one anonymous write per grace blocked an id's registration for good.
func TestHiddenRequestReplaced(t *testing.T) {
	env, _, _ := aclEnv(t, func(cfg *manager.Config) { cfg.ConfirmGrace = 30 * time.Second })
	mallory := authConn(t, env, "mallory:secret-"+testenv.Tag())
	if _, err := mallory.Create(env.Path("/request/enroll/alice"), []byte("-1"), 0, zk.DigestACL(zk.PermAll, "nobody", "x")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the leader has seen it, and cannot read it
	w := authWorker(t, env, "alice", &protocol.Auth{User: "alice", Password: "pw-" + testenv.Tag()}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if st, err := w.Register(ctx); err != nil || st != protocol.StatusDone {
		t.Fatalf("register after a hidden request node: %v, %v (want answered within 5 s, not after the 30 s grace)", st, err)
	}
}

// TestUnanswerableRequestsRemoved: request nodes the leader can read but
// not answer are removed after the grace too. Before, a request nobody may
// touch (world READ only) stayed for good, and so did a refused one whose
// ACL leaves zkchat's principal out (its "failed" answer was refused, and
// logged again at every change): anonymous clients could fill /request.
func TestUnanswerableRequestsRemoved(t *testing.T) {
	const grace = 2 * time.Second
	var logs testenv.Buffer
	env, admin, _ := aclEnv(t, func(cfg *manager.Config) { cfg.ConfirmGrace = grace }, countingLog(t, &logs))
	anon := authConn(t, env, "")
	pw := "secret-" + testenv.Tag()
	mallory := authConn(t, env, "mallory:"+pw)
	zkchat := authConn(t, env, admin.User+":"+admin.Password)
	untouched := env.Path("/request/enroll/carol")
	if _, err := anon.Create(untouched, []byte("-1"), 0, zk.WorldACL(zk.PermRead)); err != nil {
		t.Fatal(err)
	}
	// Refused (mallory may not register dave), touched, and zkchat may not
	// write it.
	refused := env.Path("/request/enroll/dave")
	acl := append(zk.DigestACL(zk.PermAll, "mallory", pw), zk.WorldACL(zk.PermRead)...)
	if _, err := mallory.Multi(&zk.CreateRequest{Path: refused, Data: []byte("-1"), Acl: acl},
		&zk.SetDataRequest{Path: refused, Data: []byte("-1"), Version: 0}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*grace, "untouched request removed", gone(t, zkchat, untouched))
	testenv.WaitFor(t, 5*grace, "unanswerable refused request removed", gone(t, zkchat, refused))
	if n := linesWith(&logs, "enroll/dave"); n > 10 {
		t.Errorf("%d log lines about the refused request", n)
	}
}

// TestKeyOfUnboundID: with ACLs on, an id registered by zkchat's principal
// (an IRC bridge's user) has no binding; a client calling itself
// "alice:<any password>" that goes online as alice must not get its key
// recorded for her (its forged messages would show verified).
func TestKeyOfUnboundID(t *testing.T) {
	env, admin, m := aclEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := m.RegisterUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	pw := "any-" + testenv.Tag()
	fake := authConn(t, env, "alice:"+pw)
	zkchat := authConn(t, env, admin.User+":"+admin.Password)
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	path := env.Path("/online/alice")
	data := []byte(`{"public_key":"` + protocol.EncodePublicKey(pub) + `"}`)
	acl := append(zk.DigestACL(zk.PermAll, "alice", pw), zk.DigestACL(zk.PermAll, admin.User, admin.Password)...)
	if _, err := fake.Multi(&zk.CreateRequest{Path: path, Data: data, Flags: zk.FlagEphemeral, Acl: append(acl, zk.WorldACL(zk.PermRead)...)},
		&zk.SetDataRequest{Path: path, Data: data, Version: 0}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the leader has handled it
	d, _, err := zkchat.Get(env.Path("/registry/alice"))
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := protocol.ParseRegistryData(d); r.Key() != nil {
		t.Fatalf("a key published by an unbound identity was recorded for alice: %s", d)
	}
}
