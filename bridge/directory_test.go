package bridge

import (
	"context"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/zookeeper"
)

// TestClearStaleRealZK: on a real ZooKeeper, ClearStale deletes an /online
// node only if a session the directory had before made it; a node of
// another process's session, or of its own session now, stays.
func TestClearStaleRealZK(t *testing.T) {
	env := testenv.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := newZKDirectory(zookeeper.SessionConfig{Connect: env.ZooKeeper, SessionTimeout: 4 * time.Second})
	defer d.Close()
	s, err := d.session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTree(ctx); err != nil {
		t.Fatal(err)
	}
	other, err := zookeeper.Dial(ctx, zookeeper.SessionConfig{Connect: env.ZooKeeper, SessionTimeout: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	mk := func(s *zookeeper.Session, id string) {
		t.Helper()
		if _, err := s.Create(ctx, s.Paths.OnlineNode(id), []byte("{}"), zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
	}
	exists := func(id string) bool {
		t.Helper()
		ok, _, err := s.Exists(ctx, s.Paths.OnlineNode(id))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	mk(other, "alice")
	mk(s, "bob")
	for _, id := range []string{"alice", "bob"} {
		if cleared, err := d.ClearStale(ctx, id); err != nil || cleared || !exists(id) {
			t.Fatalf("%s: cleared %v, err %v, exists %v; want the node kept", id, cleared, err, exists(id))
		}
	}
	if cleared, err := d.ClearStale(ctx, "carol"); err != nil || !cleared {
		t.Fatalf("no node: cleared %v, err %v; want cleared", cleared, err)
	}
	// other's session was the directory's before an outage.
	d.mu.Lock()
	d.sessions[other.SessionID()] = true
	d.mu.Unlock()
	if cleared, err := d.ClearStale(ctx, "alice"); err != nil || !cleared || exists("alice") {
		t.Fatalf("earlier session's node: cleared %v, err %v, exists %v", cleared, err, exists("alice"))
	}
}
