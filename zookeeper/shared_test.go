package zookeeper_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/zookeeper"
)

func dialShared(t *testing.T, e *testenv.Env, cfg zookeeper.SessionConfig) *zookeeper.Session {
	t.Helper()
	cfg.Connect = e.ZooKeeper
	s, err := zookeeper.Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.CreateTree(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestSharedViews: views of one session behave towards each other's
// ephemeral nodes as separate sessions would, and closing a view removes
// its nodes (and only its).
func TestSharedViews(t *testing.T) {
	e := testenv.New(t)
	ctx := context.Background()
	s := dialShared(t, e, zookeeper.SessionConfig{})
	sh := zookeeper.NewShared(s)
	defer sh.Close()
	other := e.Conn(t)
	alice, bob := s.Paths.OnlineNode("alice"), s.Paths.OnlineNode("bob")

	a, b := sh.View(), sh.View()
	if _, err := a.Create(ctx, alice, nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Create(ctx, alice, nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); !errors.Is(err, zk.ErrNodeExists) {
		t.Fatalf("second view made the first one's node: %v, want ErrNodeExists", err)
	}
	if _, err := b.Create(ctx, bob, nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	_, st, err := other.Exists(alice)
	if err != nil || st.EphemeralOwner != s.SessionID() {
		t.Fatalf("alice's node: %+v, %v; want owned by the shared session", st, err)
	}
	a.Close()
	if ok, _, _ := other.Exists(alice); ok {
		t.Fatal("closing the view left its node")
	}
	if ok, _, _ := other.Exists(bob); !ok {
		t.Fatal("closing one view removed another's node")
	}
	if _, _, err := a.Get(ctx, bob); !errors.Is(err, zk.ErrClosing) {
		t.Fatalf("a closed view's Get: %v, want ErrClosing", err)
	}
	a.Close() // idempotent
	if _, err := b.Create(ctx, alice, nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatalf("alice's node after its view closed: %v", err)
	}
	b.Close()
	for _, p := range []string{alice, bob} {
		if ok, _, _ := other.Exists(p); ok {
			t.Fatalf("%s left by a closed view", p)
		}
	}

	// A node of this session that no view holds (a Close that gave up) is
	// taken over; one of another session is not.
	if _, err := s.Create(ctx, alice, nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	c := sh.View()
	if _, err := c.Create(ctx, alice, nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatalf("leftover of the same session not taken over: %v", err)
	}
	c.Close()
	if ok, _, _ := other.Exists(alice); ok {
		t.Fatal("a taken-over node outlived its view")
	}
	if _, err := other.Create(alice, nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	d := sh.View()
	if _, err := d.Create(ctx, alice, nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); !errors.Is(err, zk.ErrNodeExists) {
		t.Fatalf("another session's node: %v, want ErrNodeExists", err)
	}
	d.Close()
	if ok, _, _ := other.Exists(alice); !ok {
		t.Fatal("closing a view removed another session's node")
	}
}

// TestSharedStopping: a view closed after its Shared (the bridge is
// stopping) leaves its node to the session's close, which removes it.
func TestSharedStopping(t *testing.T) {
	e := testenv.New(t)
	ctx := context.Background()
	s := dialShared(t, e, zookeeper.SessionConfig{})
	sh := zookeeper.NewShared(s)
	v := sh.View()
	n := s.Paths.OnlineNode("carol")
	if _, err := v.Create(ctx, n, nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	sh.Close()
	v.Close() // skips the delete: the session's close below removes it
	other := e.Conn(t)
	if ok, _, _ := other.Exists(n); !ok {
		t.Fatal("a view closed after Stopping deleted its node; want it left to the session's close")
	}
	s.Close()
	waitUntil(t, "the node to go with the session", func() bool { ok, _, _ := other.Exists(n); return !ok })
}

// TestCacheFollowsChanges: the cache answers from memory until a node
// changes, and follows creation, change and deletion through its watches.
func TestCacheFollowsChanges(t *testing.T) {
	e := testenv.New(t)
	ctx := context.Background()
	c := zookeeper.NewCache(0)
	s := dialShared(t, e, zookeeper.SessionConfig{OnWatch: c.Event})
	other := e.Conn(t)
	p := s.Paths.Account("dave")
	get := func() (string, bool) {
		t.Helper()
		data, _, ok, err := c.Get(ctx, s, p)
		if err != nil {
			t.Fatal(err)
		}
		return string(data), ok
	}
	if _, ok := get(); ok {
		t.Fatal("a missing node read as existing")
	}
	for range 10 {
		get()
	}
	if hits, misses := c.Stats(); misses != 1 || hits != 10 {
		t.Fatalf("11 reads of a missing node: %d hits, %d misses; want 10, 1", hits, misses)
	}
	if _, err := other.Create(p, []byte("acct1"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the creation", func() bool { d, ok := get(); return ok && d == "acct1" })
	if _, err := other.Set(p, []byte("acct2"), -1); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the change", func() bool { d, _ := get(); return d == "acct2" })
	_, m0 := c.Stats()
	for range 10 {
		if d, _ := get(); d != "acct2" {
			t.Fatalf("read %q after the change", d)
		}
	}
	if _, m := c.Stats(); m != m0 {
		t.Fatalf("%d reads of an unchanged node went to the server", m-m0)
	}
	if err := other.Delete(p, -1); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the deletion", func() bool { _, ok := get(); return !ok })

	// A bounded cache reads the rest from the server.
	small := zookeeper.NewCache(1)
	if _, _, _, err := small.Get(ctx, s, s.Paths.Account("x")); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, _, _, err := small.Get(ctx, s, s.Paths.Account("y")); err != nil {
			t.Fatal(err)
		}
	}
	if _, misses := small.Stats(); misses != 4 {
		t.Fatalf("full cache: %d misses of 4 reads, want 4", misses)
	}
}
