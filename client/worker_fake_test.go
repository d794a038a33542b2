package client_test

// The Worker against the in-memory fakes (fake_test.go): no server, a few
// milliseconds each. The real-server tests are in worker_test.go.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/client"
	"github.com/zkchat/zkchat/internal/fakezk"
	"github.com/zkchat/zkchat/protocol"
	"github.com/zkchat/zkchat/zookeeper"
)

func TestNewDialsNothing(t *testing.T) {
	_, err := client.New("alice", client.Config{ZooKeeper: fakeConnect,
		Dial: func(context.Context, zookeeper.SessionConfig) (client.Session, error) {
			t.Fatal("New dialled ZooKeeper")
			return nil, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRegisterQuit(t *testing.T) {
	e := newFakeEnv(t)
	(&fakeManager{e: e}).start(t)
	w := e.worker(t, "frank", false)
	ctx := ctxT(t)
	for i, want := range []protocol.Status{protocol.StatusDone, protocol.StatusAlready} {
		if st, err := w.Register(ctx); err != nil || st != want {
			t.Fatalf("register #%d = %v, %v; want %v", i+1, st, err, want)
		}
		if _, ok := e.zk.Data(e.paths.Enroll("frank")); ok {
			t.Fatal("worker left its request node")
		}
	}
	if ids, err := w.GetRegisteredUsers(ctx); err != nil || fmt.Sprint(ids) != "[frank]" {
		t.Fatalf("registered = %v, %v", ids, err)
	}
	for i, want := range []protocol.Status{protocol.StatusDone, protocol.StatusAlready} {
		if st, err := w.Quit(ctx); err != nil || st != want {
			t.Fatalf("quit #%d = %v, %v; want %v", i+1, st, err, want)
		}
		if _, ok := e.zk.Data(e.paths.Quit("frank")); ok {
			t.Fatal("worker left its request node")
		}
	}
	if ids, err := w.GetRegisteredUsers(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("registered after quit = %v, %v", ids, err)
	}
	if st, err := w.Register(ctx); err != nil || st != protocol.StatusDone {
		t.Fatalf("register again = %v, %v", st, err)
	}
}

// TestQuitWhileOnline: quit deletes the topic and takes the worker offline.
func TestQuitWhileOnline(t *testing.T) {
	e := newFakeEnv(t)
	(&fakeManager{e: e}).start(t)
	w := e.worker(t, "quinn", true)
	ctx := ctxT(t)
	if _, err := w.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.GoOnline(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := w.Quit(ctx); err != nil || st != protocol.StatusDone {
		t.Fatalf("quit = %v, %v", st, err)
	}
	if _, ok := e.zk.Data(e.paths.OnlineNode("quinn")); ok {
		t.Fatal("still online after quit")
	}
	if e.kafka.HasTopic("p-quinn") {
		t.Fatal("topic left after quit")
	}
	if err := w.SendMessage(ctx, "quinn", "hi"); !errors.Is(err, protocol.ErrNotOnline) {
		t.Fatalf("send after quit: %v, want ErrNotOnline", err)
	}
}

func TestRequestRefused(t *testing.T) {
	e := newFakeEnv(t)
	(&fakeManager{e: e, refuse: map[string]bool{"mallory": true}}).start(t)
	st, err := e.worker(t, "mallory", false).Register(ctxT(t))
	if !errors.Is(err, protocol.ErrRequestFailed) || st != protocol.StatusFailed {
		t.Fatalf("register = %v, %v; want StatusFailed, ErrRequestFailed", st, err)
	}
	if _, ok := e.zk.Data(e.paths.Enroll("mallory")); ok {
		t.Fatal("worker left its refused request")
	}
}

// TestRequestNoManager: without a manager a request times out with
// ErrManagerTimeout, and the worker withdraws it.
func TestRequestNoManager(t *testing.T) {
	e := newFakeEnv(t)
	w, err := client.New("hank", client.Config{ZooKeeper: fakeConnect, Dial: e.dial,
		RequestTimeout: 30 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Register(ctxT(t)); !errors.Is(err, protocol.ErrManagerTimeout) {
		t.Fatalf("register = %v, want ErrManagerTimeout", err)
	}
	if _, ok := e.zk.Data(e.paths.Enroll("hank")); ok {
		t.Fatal("request left after the timeout")
	}
}

// TestRequestStaleAnswerNotRead: a request node the worker did not create
// (an earlier attempt's, a crashed client's, another implementation's, or
// planted) is never read as the manager's answer, answered or not: the
// worker removes it, files its own and waits for a real answer.
func TestRequestStaleAnswerNotRead(t *testing.T) {
	for _, stale := range []string{"1", "2", "0", "-1"} {
		e := newFakeEnv(t)
		s := e.zk.Connect()
		for _, p := range []string{e.paths.Enroll("gina"), e.paths.Quit("gina")} {
			if _, err := s.Create(ctxT(t), p, []byte(stale), 0, zk.WorldACL(zk.PermAll)); err != nil {
				t.Fatal(err)
			}
		}
		w, err := client.New("gina", client.Config{ZooKeeper: fakeConnect, Dial: e.dial,
			RequestTimeout: 50 * time.Millisecond, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		// No manager: a stale "1" must not make the register a success.
		st, err := w.Register(ctxT(t))
		if !errors.Is(err, protocol.ErrManagerTimeout) {
			t.Fatalf("stale %s, no manager: register = %v, %v; want no answer", stale, st, err)
		}
		if !strings.Contains(err.Error(), "gina is not registered") || !strings.Contains(err.Error(), "no manager is running") {
			t.Errorf("no answer does not say what the tree shows: %v", err)
		}
		if _, err := w.Quit(ctxT(t)); !errors.Is(err, protocol.ErrManagerTimeout) {
			t.Fatalf("stale %s, no manager: quit = %v; want no answer", stale, err)
		}
		w.Close()
		// With a manager, the real answers.
		(&fakeManager{e: e}).start(t)
		if _, err := s.Create(ctxT(t), e.paths.Enroll("gina"), []byte(stale), 0, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
		w2 := e.worker(t, "gina", false)
		// A planted "-1" is a pending request for gina like any other: the
		// manager may answer it before the worker removes it, and then
		// gina's own request finds her registered already (2).
		st, err = w2.Register(ctxT(t))
		if err != nil || (st != protocol.StatusDone && (stale != "-1" || st != protocol.StatusAlready)) {
			t.Fatalf("stale %s: register = %v, %v; want 1 (registered now)", stale, st, err)
		}
		if _, ok := e.zk.Data(e.paths.Registered("gina")); !ok {
			t.Fatal("gina not registered")
		}
	}
}

// TestRequestReplaced: a request node deleted and made again, answered,
// while the worker waits (one multi, as a hostile client can) is not the
// worker's: it fails with ErrRequestReplaced instead of taking that answer.
func TestRequestReplaced(t *testing.T) {
	e := newFakeEnv(t)
	w := e.worker(t, "olga", false)
	res := make(chan error, 1)
	go func() { _, err := w.Register(ctxT(t)); res <- err }()
	p := e.paths.Enroll("olga")
	waitFor(t, 5*time.Second, "request filed", func() bool { _, ok := e.zk.Data(p); return ok })
	if _, err := e.zk.Connect().Multi(ctxT(t), &zk.DeleteRequest{Path: p, Version: -1},
		&zk.CreateRequest{Path: p, Data: []byte("1"), Acl: zk.WorldACL(zk.PermAll)}); err != nil {
		t.Fatal(err)
	}
	if err := <-res; !errors.Is(err, protocol.ErrRequestReplaced) {
		t.Fatalf("register = %v, want ErrRequestReplaced", err)
	}
	if data, ok := e.zk.Data(p); !ok || string(data) != "1" {
		t.Errorf("the replacing node was removed by the worker (%q, %v)", data, ok)
	}
	if _, ok := e.zk.Data(e.paths.Registered("olga")); ok {
		t.Error("olga registered")
	}
}

// TestRequestWithdrawn: a request deleted by someone else before it was
// answered fails at once.
func TestRequestWithdrawn(t *testing.T) {
	e := newFakeEnv(t)
	w := e.worker(t, "ivan", false)
	res := make(chan error, 1)
	go func() { _, err := w.Register(ctxT(t)); res <- err }()
	waitFor(t, 5*time.Second, "request created", func() bool { _, ok := e.zk.Data(e.paths.Enroll("ivan")); return ok })
	if err := e.zk.Connect().Delete(ctxT(t), e.paths.Enroll("ivan"), -1); err != nil {
		t.Fatal(err)
	}
	if err := <-res; err == nil || !strings.Contains(err.Error(), "deleted before it was answered") {
		t.Fatalf("register = %v", err)
	}
}

func TestNoTree(t *testing.T) {
	e := newFakeEnv(t)
	if err := e.zk.Connect().Delete(ctxT(t), e.paths.EnrollRequests(), -1); err != nil {
		t.Fatal(err)
	}
	_, err := e.worker(t, "judy", false).Register(ctxT(t))
	if !errors.Is(err, zk.ErrNoNode) || !strings.Contains(err.Error(), "zkchat init") {
		t.Fatalf("register without a tree = %v", err)
	}
}

// TestLockedTreeTouches: with ACLs on, the worker proves it made its nodes
// by writing them at version 0 (the manager takes them only then).
func TestLockedTreeTouches(t *testing.T) {
	e := newFakeEnv(t)
	e.zk.Locked = true
	e.register(t, "kate")
	w := e.worker(t, "kate", false)
	if err := w.GoOnline(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if st := e.zk.Stat(e.paths.OnlineNode("kate")); st == nil || st.Version != 1 {
		t.Fatalf("online node stat %+v, want version 1 (touched)", st)
	}
	// A request: touched, then answered by hand (a version-1 write).
	res := make(chan error, 1)
	go func() { _, err := w.Register(ctxT(t)); res <- err }()
	s := e.zk.Connect()
	waitFor(t, 5*time.Second, "request touched", func() bool {
		st := e.zk.Stat(e.paths.Enroll("kate"))
		return st != nil && st.Version == 1
	})
	if _, err := s.Set(ctxT(t), e.paths.Enroll("kate"), []byte("2"), 1); err != nil {
		t.Fatal(err)
	}
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	// Refused with ACLs on, the error says why a manager may refuse.
	go func() { _, err := w.Register(ctxT(t)); res <- err }()
	waitFor(t, 5*time.Second, "request touched", func() bool {
		st := e.zk.Stat(e.paths.Enroll("kate"))
		return st != nil && st.Version == 1
	})
	if _, err := s.Set(ctxT(t), e.paths.Enroll("kate"), []byte("0"), 1); err != nil {
		t.Fatal(err)
	}
	if err := <-res; !errors.Is(err, protocol.ErrRequestFailed) || !strings.Contains(err.Error(), "ACLs") {
		t.Fatalf("refused register = %v", err)
	}
}

func TestOnlineRules(t *testing.T) {
	e := newFakeEnv(t)
	(&fakeManager{e: e}).start(t)
	ctx := ctxT(t)
	if err := e.worker(t, "ghost", true).GoOnline(ctx); !errors.Is(err, protocol.ErrNotRegistered) {
		t.Fatalf("unregistered online: %v, want ErrNotRegistered", err)
	}
	e.register(t, "liam")
	w1 := e.worker(t, "liam", true)
	if err := w1.GoOnline(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w1.GoOnline(ctx); err != nil {
		t.Fatalf("online twice in one worker: %v, want a no-op", err)
	}
	if !e.kafka.HasTopic("p-liam") {
		t.Fatal("online before the topic exists")
	}
	st := e.zk.Stat(e.paths.OnlineNode("liam"))
	if st == nil || st.EphemeralOwner != e.lastSession(t).SessionID() {
		t.Fatalf("online node %+v not an ephemeral of the worker's session", st)
	}
	w2 := e.worker(t, "liam", false)
	if err := w2.GoOnline(ctx); !errors.Is(err, protocol.ErrAlreadyOnline) {
		t.Fatalf("second online: %v, want ErrAlreadyOnline", err)
	}
	if ids, err := w2.GetOnlineUsers(ctx); err != nil || fmt.Sprint(ids) != "[liam]" {
		t.Fatalf("online users = %v, %v", ids, err)
	}
	w1.GoOffline()
	w1.GoOffline() // idempotent
	if _, ok := e.zk.Data(e.paths.OnlineNode("liam")); ok {
		t.Fatal("offline left /online/liam")
	}
	if err := w2.GoOnline(ctx); err != nil {
		t.Fatalf("online after the other went offline: %v", err)
	}
}

// TestOnlineWaitsForTopic: a worker is online only once its topic exists;
// without a manager to make it, going online fails and leaves no node.
func TestOnlineWaitsForTopic(t *testing.T) {
	e := newFakeEnv(t)
	e.register(t, "mia")
	w, err := client.New("mia", client.Config{ZooKeeper: fakeConnect, Dial: e.dial, Kafka: e.kafka,
		RequestTimeout: 30 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	err = w.GoOnline(ctxT(t))
	if !errors.Is(err, protocol.ErrManagerTimeout) || !strings.Contains(err.Error(), "did not create the topic") {
		t.Fatalf("online without a manager = %v", err)
	}
	if _, ok := e.zk.Data(e.paths.OnlineNode("mia")); ok {
		t.Fatal("failed online left its node")
	}
	e.kafka.CreateTopic("p-mia")
	if err := w.GoOnline(ctxT(t)); err != nil {
		t.Fatalf("online once the topic exists: %v", err)
	}
}

func TestSendErrors(t *testing.T) {
	e := newFakeEnv(t)
	(&fakeManager{e: e}).start(t)
	ctx := ctxT(t)
	e.register(t, "nina", "omar")
	omar := e.onlineWorker(t, "omar")
	nina := e.worker(t, "nina", true)
	if err := nina.SendMessage(ctx, "omar", "hi"); !errors.Is(err, protocol.ErrNotOnline) {
		t.Fatalf("send while offline: %v, want ErrNotOnline", err)
	}
	if err := nina.GoOnline(ctx); err != nil {
		t.Fatal(err)
	}
	if err := nina.SendMessage(ctx, "omar", "hi"); err != nil {
		t.Fatal(err)
	}
	omar.GoOffline()
	for _, c := range []struct {
		to   string
		want error
	}{{"omar", protocol.ErrReceiverOffline}, {"nobody", protocol.ErrNotRegistered}, {"Bad/Id", protocol.ErrInvalidID}} {
		if err := nina.SendMessage(ctx, c.to, "lost"); !errors.Is(err, c.want) {
			t.Errorf("send to %s: %v, want %v", c.to, err, c.want)
		}
	}
	noKafka := e.worker(t, "nina", false)
	if err := noKafka.SendMessage(ctx, "omar", "hi"); !errors.Is(err, protocol.ErrNoKafka) {
		t.Fatalf("send without Kafka: %v, want ErrNoKafka", err)
	}
	if recs := e.kafka.Records("p-omar"); len(recs) != 1 || recs[0].From != "nina" || recs[0].Text != "hi" {
		t.Fatalf("omar's topic holds %+v, want the one message sent while both were online", recs)
	}
}

// TestSendNeedsOwnOnlineNode: a worker whose /online node belongs to
// another session (taken over after an expiry) is not online.
func TestSendNeedsOwnOnlineNode(t *testing.T) {
	e := newFakeEnv(t)
	(&fakeManager{e: e}).start(t)
	ctx := ctxT(t)
	e.register(t, "olga")
	e.onlineWorker(t, "peer")
	w := e.onlineWorker(t, "olga")
	s := e.lastSession(t)
	if err := s.Delete(ctx, e.paths.OnlineNode("olga"), -1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.zk.Connect().Create(ctx, e.paths.OnlineNode("olga"), nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if err := w.SendMessage(ctx, "peer", "hi"); !errors.Is(err, protocol.ErrNotOnline) {
		t.Fatalf("send = %v, want ErrNotOnline", err)
	}
	if _, err := w.ReadMessages(ctx, func(protocol.Message) error { return nil }); !errors.Is(err, protocol.ErrNotOnline) {
		t.Fatalf("read = %v, want ErrNotOnline", err)
	}
}

// TestSessionExpiryRecreatesOnline: after an expiry the connection has a
// new session without the ephemeral node; the worker creates it again.
func TestSessionExpiryRecreatesOnline(t *testing.T) {
	e := newFakeEnv(t)
	(&fakeManager{e: e}).start(t)
	e.onlineWorker(t, "bob")
	alice := e.onlineWorker(t, "alice")
	s := e.lastSession(t)
	old := s.SessionID()
	s.Expire()
	waitFor(t, 5*time.Second, "/online/alice re-created in the new session", func() bool {
		st := e.zk.Stat(e.paths.OnlineNode("alice"))
		return st != nil && st.EphemeralOwner == s.SessionID() && st.EphemeralOwner != old
	})
	if err := alice.SendMessage(ctxT(t), "bob", "still here"); err != nil {
		t.Fatalf("send after the expiry: %v", err)
	}
}

// TestReadCommits: a one-shot read commits what fn accepted; a failure
// leaves the failed message to be read again; nothing unread opens no
// reader.
func TestReadCommits(t *testing.T) {
	e := newFakeEnv(t)
	(&fakeManager{e: e}).start(t)
	ctx := ctxT(t)
	alice, bob := e.onlineWorker(t, "alice"), e.onlineWorker(t, "bob")
	for i := range 10 {
		if err := alice.SendMessage(ctx, "bob", fmt.Sprint("msg ", i)); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	collect := func(m protocol.Message) error {
		if m.From != "alice" || m.To != "bob" {
			t.Errorf("message %+v: wrong from/to", m)
		}
		got = append(got, m.Text)
		return nil
	}
	errStop := errors.New("stop")
	n, err := bob.ReadMessages(ctx, func(m protocol.Message) error {
		if len(got) == 4 {
			return errStop
		}
		return collect(m)
	})
	if !errors.Is(err, errStop) || n != 4 {
		t.Fatalf("partial read = %d, %v", n, err)
	}
	if off := e.kafka.Offset("p-bob", "p-bob"); off != 4 {
		t.Fatalf("committed %d after 4 accepted, want 4", off)
	}
	bob.GoOffline()
	if err := bob.GoOnline(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := bob.ReadMessages(ctx, collect); err != nil || n != 6 {
		t.Fatalf("read = %d, %v; want 6", n, err)
	}
	if fmt.Sprint(got) != "[msg 0 msg 1 msg 2 msg 3 msg 4 msg 5 msg 6 msg 7 msg 8 msg 9]" {
		t.Fatalf("read %q: order or duplicates", got)
	}
	e.kafka.Fault(func(op, topic string) error {
		if op == "OpenReader" {
			return errors.New("opened a reader with nothing to read")
		}
		return nil
	})
	if n, err := bob.ReadMessages(ctx, collect); err != nil || n != 0 {
		t.Fatalf("read again = %d, %v; want 0", n, err)
	}
	if e.kafka.Readers() != 0 {
		t.Fatal("a reader was left open")
	}
	bob.GoOffline()
	if _, err := bob.ReadMessages(ctx, collect); !errors.Is(err, protocol.ErrNotOnline) {
		t.Fatalf("read while offline: %v, want ErrNotOnline", err)
	}
}

// TestReadCommitFails: a one-shot read whose commit fails says so.
func TestReadCommitFails(t *testing.T) {
	e := newFakeEnv(t)
	(&fakeManager{e: e}).start(t)
	ctx := ctxT(t)
	alice, bob := e.onlineWorker(t, "alice"), e.onlineWorker(t, "bob")
	if err := alice.SendMessage(ctx, "bob", "hi"); err != nil {
		t.Fatal(err)
	}
	errDown := errors.New("coordinator down")
	e.kafka.Fault(func(op, topic string) error {
		if op == "Commit" {
			return errDown
		}
		return nil
	})
	if n, err := bob.ReadMessages(ctx, func(protocol.Message) error { return nil }); !errors.Is(err, errDown) || n != 1 {
		t.Fatalf("read = %d, %v; want 1 and the commit's error", n, err)
	}
}

// TestFollowCommits: a follower gets messages as they come and commits in
// the background; what it accepted is not read again.
func TestFollowCommits(t *testing.T) {
	e := newFakeEnv(t)
	(&fakeManager{e: e}).start(t)
	ctx := ctxT(t)
	alice, bob := e.onlineWorker(t, "alice"), e.onlineWorker(t, "bob")
	const total = 20
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	var got []string
	go func() {
		done <- bob.FollowMessages(fctx, func(m protocol.Message) error {
			got = append(got, m.Text)
			if len(got) == total {
				cancel()
			}
			return nil
		})
	}()
	for i := range total {
		if err := alice.SendMessage(ctx, "bob", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("follow = %v, want nil when its context ends", err)
	}
	if len(got) != total || got[total-1] != fmt.Sprint(total-1) {
		t.Fatalf("followed %q", got)
	}
	if off := e.kafka.Offset("p-bob", "p-bob"); off != total {
		t.Fatalf("committed %d, want %d", off, total)
	}
	if n, err := bob.ReadMessages(ctx, func(protocol.Message) error { return nil }); err != nil || n != 0 {
		t.Fatalf("read after follow = %d, %v; want 0", n, err)
	}
}

// TestFollowBeforeCommit: a failed delivery proof commits nothing and ends
// the follow with ErrNotCommitted; a transient Kafka failure is retried.
func TestFollowBeforeCommit(t *testing.T) {
	e := newFakeEnv(t)
	(&fakeManager{e: e}).start(t)
	ctx := ctxT(t)
	alice, bob := e.onlineWorker(t, "alice"), e.onlineWorker(t, "bob")
	if err := alice.SendMessage(ctx, "bob", "one"); err != nil {
		t.Fatal(err)
	}
	errNoPong := errors.New("no PONG")
	err := bob.FollowMessagesWith(ctx, client.ReadOptions{BeforeCommit: func(context.Context) error { return errNoPong }},
		func(protocol.Message) error { return nil })
	if !errors.Is(err, errNoPong) {
		t.Fatalf("follow = %v, want the proof's error", err)
	}
	if off := e.kafka.Offset("p-bob", "p-bob"); off != -1 {
		t.Fatalf("committed %d without a proof", off)
	}

	// Kafka refuses two commits for a while: the follower keeps going and
	// commits later.
	fails := 2
	e.kafka.Fault(func(op, topic string) error {
		if op == "Commit" && fails > 0 {
			fails--
			return fmt.Errorf("%w: coordinator moving", protocol.ErrTransient)
		}
		return nil
	})
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- bob.FollowMessagesWith(fctx, client.ReadOptions{}, func(protocol.Message) error { return nil })
	}()
	waitFor(t, 5*time.Second, "the commit after two transient failures", func() bool {
		off := e.kafka.Offset("p-bob", "p-bob")
		return off == 1
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("follow with transient commit failures = %v", err)
	}

	// A topic gone is not retried: the follow ends with ErrNotCommitted.
	if err := alice.SendMessage(ctx, "bob", "two"); err != nil {
		t.Fatal(err)
	}
	e.kafka.Fault(func(op, topic string) error {
		if op == "Commit" {
			return protocol.ErrNoTopic
		}
		return nil
	})
	fctx, cancel = context.WithCancel(ctx)
	defer cancel()
	err = bob.FollowMessagesWith(fctx, client.ReadOptions{}, func(protocol.Message) error { return nil })
	if !errors.Is(err, protocol.ErrNotCommitted) || !errors.Is(err, protocol.ErrNoTopic) {
		t.Fatalf("follow with the topic gone = %v, want ErrNotCommitted and ErrNoTopic", err)
	}
}

// TestOneReaderPerTopic: a second reader of the same topic in one process
// fails, and the first still reads.
func TestOneReaderPerTopic(t *testing.T) {
	e := newFakeEnv(t)
	(&fakeManager{e: e}).start(t)
	ctx := ctxT(t)
	alice, bob := e.onlineWorker(t, "alice"), e.onlineWorker(t, "bob")
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- bob.FollowMessages(fctx, func(protocol.Message) error { cancel(); return nil }) }()
	waitFor(t, 5*time.Second, "the follower's reader", func() bool { return e.kafka.Readers() == 1 })
	if _, err := bob.ReadMessages(ctx, func(protocol.Message) error { return nil }); err != nil {
		t.Fatalf("read with nothing unread = %v", err) // no reader needed
	}
	if err := alice.SendMessage(ctx, "bob", "hi"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestNoKafka(t *testing.T) {
	e := newFakeEnv(t)
	e.register(t, "nk")
	w := e.worker(t, "nk", false)
	if err := w.GoOnline(ctxT(t)); err != nil {
		t.Fatalf("online without Kafka: %v", err)
	}
	if _, err := w.ReadMessages(ctxT(t), nil); !errors.Is(err, protocol.ErrNoKafka) {
		t.Fatalf("read without Kafka = %v", err)
	}
	// A nil *kafka.Clients is no Kafka too (existing callers pass one).
	var k interface{ client.Kafka } = (*nilKafka)(nil)
	w2, err := client.New("nk", client.Config{ZooKeeper: fakeConnect, Dial: e.dial, Kafka: k})
	if err != nil {
		t.Fatal(err)
	}
	if err := w2.SendMessage(ctxT(t), "nk", "x"); !errors.Is(err, protocol.ErrNoKafka) {
		t.Fatalf("send with a nil pointer for Kafka = %v", err)
	}
}

// nilKafka is a pointer type that satisfies client.Kafka, for a nil of it.
type nilKafka struct{ client.Kafka }

// TestDialFails: a session that cannot be opened fails the call, and the
// next call tries again.
func TestDialFails(t *testing.T) {
	e := newFakeEnv(t)
	tries := 0
	w, err := client.New("dan", client.Config{ZooKeeper: fakeConnect, Logger: quietLogger(),
		Dial: func(ctx context.Context, cfg zookeeper.SessionConfig) (client.Session, error) {
			tries++
			if tries == 1 {
				return nil, errors.New("cannot reach ZooKeeper")
			}
			return e.dial(ctx, cfg)
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.GetOnlineUsers(ctxT(t)); err == nil || !strings.Contains(err.Error(), "cannot reach") {
		t.Fatalf("online users = %v", err)
	}
	if ids, err := w.GetOnlineUsers(ctxT(t)); err != nil || len(ids) != 0 {
		t.Fatalf("online users on the second try = %v, %v", ids, err)
	}
}

// blockingSession holds up the first Create of block once armed, until
// release is closed (outside the fake server's lock).
type blockingSession struct {
	client.Session
	block    string
	armed    *atomic.Bool
	once     *sync.Once
	entered  chan struct{}
	released chan struct{}
}

func (b *blockingSession) Create(ctx context.Context, path string, data []byte, flags int32, acl []zk.ACL) (string, error) {
	if path == b.block && b.armed.Load() {
		b.once.Do(func() { close(b.entered); <-b.released })
	}
	return b.Session.Create(ctx, path, data, flags, acl)
}

// TestGoOnlineDuringGoOffline: a GoOnline that runs while GoOffline waits
// for the presence goroutine must not return nil for a worker that ends
// offline: it either goes online after the GoOffline, or fails.
func TestGoOnlineDuringGoOffline(t *testing.T) {
	e := newFakeEnv(t)
	(&fakeManager{e: e}).start(t)
	e.register(t, "alice")
	online := e.paths.OnlineNode("alice")
	b := &blockingSession{block: online, armed: new(atomic.Bool), once: new(sync.Once),
		entered: make(chan struct{}), released: make(chan struct{})}
	var last *fakezk.Session
	dial := func(ctx context.Context, cfg zookeeper.SessionConfig) (client.Session, error) {
		s, err := e.dial(ctx, cfg)
		if err != nil {
			return nil, err
		}
		last = e.lastSession(t)
		b2 := *b
		b2.Session = s
		return &b2, nil
	}
	w, err := client.New("alice", client.Config{ZooKeeper: fakeConnect, Dial: dial, Kafka: e.kafka,
		RequestTimeout: 5 * time.Second, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.GoOnline(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	// The presence goroutine re-creates /online/alice after an expiry, and
	// is held in that Create (holding the worker's lock) while GoOffline and
	// GoOnline are called.
	b.armed.Store(true)
	last.Expire()
	<-b.entered
	offDone := make(chan struct{})
	go func() { w.GoOffline(); close(offDone) }()
	onErr := make(chan error, 1)
	go func() { time.Sleep(20 * time.Millisecond); onErr <- w.GoOnline(ctxT(t)) }()
	time.Sleep(100 * time.Millisecond)
	close(b.released)
	<-offDone
	if err := <-onErr; err != nil {
		t.Logf("GoOnline during GoOffline failed: %v", err) // allowed: it did not claim success
		return
	}
	if _, ok := e.zk.Data(online); !ok {
		t.Fatal("GoOnline returned nil, yet alice is not online")
	}
	if err := w.SendMessage(ctxT(t), "alice", "to myself"); err != nil {
		t.Fatalf("GoOnline returned nil, yet sending fails: %v", err)
	}
}

// TestSendReadsNoZooKeeper: with the sender's presence watched and the
// receiver's from Config.ReceiverOnline (the bridge's cache), a send calls
// ZooKeeper for nothing. Before, every send read both /online nodes: 0.2 ms
// of ZooKeeper CPU per message (issue 10).
func TestSendReadsNoZooKeeper(t *testing.T) {
	e := newFakeEnv(t)
	(&fakeManager{e: e}).start(t)
	ctx := ctxT(t)
	e.register(t, "nina", "omar")
	e.onlineWorker(t, "omar")
	var asked atomic.Int64
	nina, err := client.New("nina", client.Config{ZooKeeper: fakeConnect, Dial: e.dial, RequestTimeout: 5 * time.Second,
		Logger: quietLogger(), Kafka: e.kafka,
		ReceiverOnline: func(ctx context.Context, id string) (bool, error) {
			asked.Add(1)
			_, ok := e.zk.Data(e.paths.OnlineNode(id))
			return ok, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nina.Close)
	if err := nina.GoOnline(ctx); err != nil {
		t.Fatal(err)
	}
	var ops atomic.Int64
	var last atomic.Value
	e.zk.Fault(func(op, path string) error {
		ops.Add(1)
		last.Store(op + " " + path)
		return nil
	})
	// keepPresence confirms the node and sets its watch in the background.
	deadline := time.Now().Add(5 * time.Second)
	for {
		before := ops.Load()
		if err := nina.SendMessage(ctx, "omar", "hi"); err != nil {
			t.Fatal(err)
		}
		if ops.Load() == before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("every send still calls ZooKeeper (last: %v)", last.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	before, asks := ops.Load(), asked.Load()
	for range 100 {
		if err := nina.SendMessage(ctx, "omar", "hi"); err != nil {
			t.Fatal(err)
		}
	}
	if n := ops.Load() - before; n != 0 {
		t.Fatalf("100 sends made %d ZooKeeper calls (last: %v), want 0", n, last.Load())
	}
	if n := asked.Load() - asks; n != 100 {
		t.Fatalf("ReceiverOnline asked %d times for 100 sends", n)
	}
	// The watch fires when the node goes: the next send asks again and,
	// the node being made again by keepPresence, still goes out.
	e.zk.Fault(nil)
	if err := e.zk.Connect().Delete(ctx, e.paths.OnlineNode("nina"), -1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "nina's node made again", func() bool { _, ok := e.zk.Data(e.paths.OnlineNode("nina")); return ok })
	if err := nina.SendMessage(ctx, "omar", "after"); err != nil {
		t.Fatal(err)
	}
	nina.GoOffline()
	if err := nina.SendMessage(ctx, "omar", "offline"); !errors.Is(err, protocol.ErrNotOnline) {
		t.Fatalf("send after GoOffline: %v, want ErrNotOnline", err)
	}
}
