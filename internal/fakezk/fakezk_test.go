package fakezk_test

import (
	"context"
	"errors"
	"testing"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/internal/fakezk"
)

var open = zk.WorldACL(zk.PermAll)

func TestTreeVersionsAndErrors(t *testing.T) {
	ctx := context.Background()
	srv := fakezk.New()
	s := srv.Connect()
	if _, err := s.Create(ctx, "/a/b", nil, 0, open); !errors.Is(err, zk.ErrNoNode) {
		t.Fatalf("create without parent: %v", err)
	}
	if p, err := s.Create(ctx, "/a", []byte("x"), 0, open); err != nil || p != "/a" {
		t.Fatalf("create = %q, %v", p, err)
	}
	if _, err := s.Create(ctx, "/a", nil, 0, open); !errors.Is(err, zk.ErrNodeExists) {
		t.Fatalf("create twice: %v", err)
	}
	if _, err := s.Set(ctx, "/a", []byte("y"), 1); !errors.Is(err, zk.ErrBadVersion) {
		t.Fatalf("set at a wrong version: %v", err)
	}
	if st, err := s.Set(ctx, "/a", []byte("y"), 0); err != nil || st.Version != 1 {
		t.Fatalf("set = %+v, %v", st, err)
	}
	if _, err := s.Create(ctx, "/a/c", nil, 0, open); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "/a", -1); !errors.Is(err, zk.ErrNotEmpty) {
		t.Fatalf("delete with children: %v", err)
	}
	if err := s.Delete(ctx, "/a/c", 3); !errors.Is(err, zk.ErrBadVersion) {
		t.Fatalf("delete at a wrong version: %v", err)
	}
	if _, err := s.Create(ctx, "bad/", nil, 0, open); !errors.Is(err, zk.ErrInvalidPath) {
		t.Fatalf("bad path: %v", err)
	}
	p1, _ := s.Create(ctx, "/a/n-", nil, zk.FlagSequence, open)
	p2, _ := s.Create(ctx, "/a/n-", nil, zk.FlagSequence, open)
	if p1 != "/a/n-0000000001" || p2 != "/a/n-0000000002" {
		t.Fatalf("sequential nodes %q %q", p1, p2)
	}
	if c, err := s.Children(ctx, "/a"); err != nil || len(c) != 3 || c[0] != "c" {
		t.Fatalf("children = %v, %v", c, err)
	}
	ctxDone, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := s.Exists(ctxDone, "/a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("call with an ended context: %v", err)
	}
}

func TestWatchesFireOnce(t *testing.T) {
	ctx := context.Background()
	srv := fakezk.New()
	srv.MustCreate("/d")
	a, b := srv.Connect(), srv.Connect()
	_, _, missing, _ := a.ExistsW(ctx, "/d/x")
	_, _, kids, _ := a.ChildrenW(ctx, "/d")
	if _, err := b.Create(ctx, "/d/x", []byte("1"), 0, open); err != nil {
		t.Fatal(err)
	}
	if ev := <-missing; ev.Type != zk.EventNodeCreated || ev.Path != "/d/x" {
		t.Fatalf("exists watch: %+v", ev)
	}
	if ev := <-kids; ev.Type != zk.EventNodeChildrenChanged || ev.Path != "/d" {
		t.Fatalf("children watch: %+v", ev)
	}
	if _, ok := <-kids; ok {
		t.Fatal("a watch fired twice")
	}
	_, _, data, _ := a.GetW(ctx, "/d/x")
	if _, err := b.Set(ctx, "/d/x", []byte("2"), -1); err != nil {
		t.Fatal(err)
	}
	if ev := <-data; ev.Type != zk.EventNodeDataChanged {
		t.Fatalf("data watch: %+v", ev)
	}
	_, _, data, _ = a.GetW(ctx, "/d/x")
	if err := b.Delete(ctx, "/d/x", -1); err != nil {
		t.Fatal(err)
	}
	if ev := <-data; ev.Type != zk.EventNodeDeleted {
		t.Fatalf("data watch on delete: %+v", ev)
	}
}

func TestEphemeralsAndExpiry(t *testing.T) {
	ctx := context.Background()
	srv := fakezk.New()
	srv.MustCreate("/online")
	s, other := srv.Connect(), srv.Connect()
	if _, err := s.Create(ctx, "/online/me", nil, zk.FlagEphemeral, open); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, "/online/me/x", nil, 0, open); !errors.Is(err, zk.ErrNoChildrenForEphemerals) {
		t.Fatalf("child of an ephemeral: %v", err)
	}
	ok, st, _ := other.Exists(ctx, "/online/me")
	if !ok || st.EphemeralOwner != s.SessionID() {
		t.Fatalf("exists = %v, %+v", ok, st)
	}
	_, _, gone, _ := other.ExistsW(ctx, "/online/me")
	_, _, mine, _ := s.GetW(ctx, "/online")
	old, changed := s.SessionID(), s.Changed()
	s.Expire()
	<-changed
	if s.SessionID() == old || s.State() != zk.StateHasSession {
		t.Fatalf("after expiry: session %d (was %d), state %v", s.SessionID(), old, s.State())
	}
	if ev := <-gone; ev.Type != zk.EventNodeDeleted {
		t.Fatalf("other's watch: %+v", ev)
	}
	if ev := <-mine; ev.Type != zk.EventNotWatching || !errors.Is(ev.Err, zk.ErrSessionExpired) {
		t.Fatalf("expired session's watch: %+v", ev)
	}
	s.Disconnect()
	if _, _, err := s.Exists(ctx, "/online"); !errors.Is(err, zk.ErrConnectionClosed) {
		t.Fatalf("call while disconnected: %v", err)
	}
	s.Reconnect()
	if _, err := s.Create(ctx, "/online/me", nil, zk.FlagEphemeral, open); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, ok := srv.Data("/online/me"); ok {
		t.Fatal("ephemeral node outlived its session")
	}
	if _, _, err := s.Exists(ctx, "/online"); !errors.Is(err, zk.ErrClosing) {
		t.Fatalf("call after Close: %v", err)
	}
}

func TestMultiAllOrNothing(t *testing.T) {
	ctx := context.Background()
	srv := fakezk.New()
	srv.MustCreate("/fence", "/req/x")
	s := srv.Connect()
	_, _, w, _ := s.ExistsW(ctx, "/reg")
	res, err := s.Multi(ctx,
		&zk.CheckVersionRequest{Path: "/fence", Version: -1},
		&zk.CreateRequest{Path: "/reg", Data: []byte("r"), Acl: open},
		&zk.SetDataRequest{Path: "/req/x", Data: []byte("1"), Version: 5})
	if !errors.Is(err, zk.ErrBadVersion) || res[0].Error != nil || !errors.Is(res[2].Error, zk.ErrBadVersion) {
		t.Fatalf("failed multi = %+v, %v", res, err)
	}
	if _, ok := srv.Data("/reg"); ok {
		t.Fatal("a failed multi applied its create")
	}
	select {
	case ev := <-w:
		t.Fatalf("a failed multi fired a watch: %+v", ev)
	default:
	}
	if _, err := s.Multi(ctx, &zk.CheckVersionRequest{Path: "/gone", Version: -1}); !errors.Is(err, zk.ErrNoNode) {
		t.Fatalf("fence on a missing node: %v", err)
	}
	res, err = s.Multi(ctx,
		&zk.CheckVersionRequest{Path: "/fence", Version: 0},
		&zk.CreateRequest{Path: "/reg", Data: []byte("r"), Acl: open},
		&zk.SetDataRequest{Path: "/req/x", Data: []byte("1"), Version: 0})
	if err != nil || res[1].String != "/reg" || res[2].Stat.Version != 1 {
		t.Fatalf("multi = %+v, %v", res, err)
	}
	if ev := <-w; ev.Type != zk.EventNodeCreated {
		t.Fatalf("watch after multi: %+v", ev)
	}
	srv.Fault(func(op, path string) error {
		if op == "Multi" {
			return zk.ErrConnectionClosed
		}
		return nil
	})
	if _, err := s.Multi(ctx, &zk.DeleteRequest{Path: "/reg", Version: -1}); !errors.Is(err, zk.ErrConnectionClosed) {
		t.Fatalf("faulted multi: %v", err)
	}
	if _, ok := srv.Data("/reg"); !ok {
		t.Fatal("a faulted multi applied")
	}
}
