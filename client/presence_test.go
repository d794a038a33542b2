package client_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/protocol"
)

// TestPresenceComesBack: a worker's /online node deleted by someone else
// (a manager that refused it for a moment, an operator) while the id is
// still registered is made again in the worker's session. Before: the
// worker stayed "online" without its node, and every send failed with "not
// online" for good.
func TestPresenceComesBack(t *testing.T) {
	e := newFakeEnv(t)
	(&fakeManager{e: e}).start(t)
	e.register(t, "alice", "bob")
	alice, bob := e.worker(t, "alice", true), e.worker(t, "bob", true)
	if err := alice.GoOnline(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := bob.GoOnline(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	other := e.zk.Connect()
	if err := other.Delete(ctxT(t), e.paths.OnlineNode("alice"), -1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := alice.SendMessage(ctxT(t), "bob", "still here")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("send after /online/alice was deleted: %v (presence never came back)", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-alice.Lost():
		t.Fatalf("presence reported lost: %v", alice.LostErr())
	default:
	}
}

// TestPresenceLostWhenUnregistered: a worker unregistered elsewhere while
// online (its registry and online nodes deleted by the manager) is told:
// Lost is closed, LostErr and every send say why. Before: it stayed
// "online", and the bridge's delivery failed and restarted every 2 s for
// good.
func TestPresenceLostWhenUnregistered(t *testing.T) {
	e := newFakeEnv(t)
	(&fakeManager{e: e}).start(t)
	e.register(t, "alice", "bob")
	alice, bob := e.worker(t, "alice", true), e.worker(t, "bob", true)
	if err := alice.GoOnline(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := bob.GoOnline(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	other := e.zk.Connect()
	for _, p := range []string{e.paths.Registered("alice"), e.paths.OnlineNode("alice")} {
		if err := other.Delete(ctxT(t), p, -1); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-alice.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("presence lost not reported")
	}
	if err := alice.LostErr(); !errors.Is(err, protocol.ErrNotRegistered) {
		t.Fatalf("LostErr = %v, want ErrNotRegistered", err)
	}
	err := alice.SendMessage(ctxT(t), "bob", "hello?")
	if !errors.Is(err, protocol.ErrNotOnline) || !strings.Contains(err.Error(), "not registered") {
		t.Fatalf("send after being unregistered elsewhere: %v; want not online, saying why", err)
	}
	// Going online again says the real reason too.
	if err := alice.GoOnline(ctxT(t)); !errors.Is(err, protocol.ErrNotRegistered) {
		t.Fatalf("GoOnline after being unregistered: %v", err)
	}
}

// TestPresenceLostToAnotherSession: the node re-made by another session
// (the same id online elsewhere) is reported, not fought over.
func TestPresenceLostToAnotherSession(t *testing.T) {
	e := newFakeEnv(t)
	(&fakeManager{e: e}).start(t)
	e.register(t, "alice")
	alice := e.worker(t, "alice", true)
	if err := alice.GoOnline(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	other := e.zk.Connect()
	if _, err := other.Multi(ctxT(t),
		&zk.DeleteRequest{Path: e.paths.OnlineNode("alice"), Version: -1},
		&zk.CreateRequest{Path: e.paths.OnlineNode("alice"), Data: []byte("{}"), Flags: zk.FlagEphemeral, Acl: zk.WorldACL(zk.PermAll)},
	); err != nil {
		t.Fatal(err)
	}
	select {
	case <-alice.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("presence lost to another session not reported")
	}
	if err := alice.LostErr(); !errors.Is(err, protocol.ErrAlreadyOnline) {
		t.Fatalf("LostErr = %v, want ErrAlreadyOnline", err)
	}
}
