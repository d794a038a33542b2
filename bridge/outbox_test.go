package bridge

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lrstanley/girc"

	"github.com/zkchat/zkchat/internal/irctest"
	"github.com/zkchat/zkchat/protocol"
)

// A flood of commands to the bot, with the output paced, neither holds up
// the handling of what comes after it (a JOIN, the server's PING) nor
// delays a delivery's proof beyond what the proof path's own queue takes:
// the bot's replies wait in a bounded queue of their own, and what does not
// fit is dropped (and counted), never a delivery line or a PING.
func TestFakeCommandFloodDoesNotDelayProofs(t *testing.T) {
	t.Parallel()
	s := startFake(t, func(c *Config) { c.Rate, c.Burst = 200, 1 }, "alice") // 5 ms a line
	s.net.mu.Lock()
	s.net.registered["carol"] = true
	s.net.mu.Unlock()
	waitUntil(t, "alice online", func() bool { return s.net.isOnline("alice") })

	const flood = 2000
	for range flood {
		s.from("flood", "PRIVMSG zkchat :help")
	}
	// The server relays the flood at once; a JOIN right behind it is
	// handled as promptly as if there were none.
	start := time.Now()
	s.from("carol", "JOIN #chatroom")
	deadline := time.Now().Add(20 * time.Second)
	for !s.net.isOnline("carol") {
		if time.Now().After(deadline) {
			t.Fatal("carol not online 20 s after her JOIN")
		}
		time.Sleep(2 * time.Millisecond)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("carol online %v after her JOIN behind the flood, want < 1 s", d)
	}

	// The server's PING is answered at once (girc's path, not the outbox).
	start = time.Now()
	s.srv.Send("PING :srv-ping-1")
	s.srv.Wait(20*time.Second, irctest.Command("PONG", "srv-ping-1"))
	if d := time.Since(start); d > time.Second {
		t.Errorf("the server's PING answered after %v, want < 1 s", d)
	}

	// A delivery is proved (PING, PONG) and committed within twice the
	// time the writer takes to send a full proof path: replies take at most
	// every other line.
	bound := 2*time.Duration(s.b.out.capacity)*s.b.out.interval + time.Second
	start = time.Now()
	s.net.put("bob", "alice", "behind the flood")
	deadline = time.Now().Add(30 * time.Second)
	for s.net.committedOf("alice") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("not committed 30 s after the message")
		}
		time.Sleep(2 * time.Millisecond)
	}
	if d := time.Since(start); d > bound {
		t.Errorf("a delivery behind a flood of commands was proved after %v, want < %v", d, bound)
	}
	// What did not fit was dropped and counted: the flood's replies, not
	// the delivery or its proof.
	if s.b.out.droppedReplies() == 0 {
		t.Error("no reply dropped after a flood of commands")
	}
}

// girc's write drops a line it could not queue within 30 s, silently. A
// line the outbox handed to a send that took that long may be lost: every
// proof in flight (numbered after it) must fail, and so must every later
// proof on that connection, or a later PONG would commit the lost line.
func TestOutboxLostLineFailsProof(t *testing.T) {
	t.Parallel()
	conn, connStop := context.WithCancel(context.Background())
	defer connStop()
	snd := &lossySender{stuck: 200 * time.Millisecond}
	o := newOutbox(snd, -1, 0)
	snd.o = o
	o.lostAfter = 100 * time.Millisecond // girc's 30 s, scaled
	lost := make(chan struct{}, 1)
	o.onLost = func() { lost <- struct{}{} }
	o.open(conn)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); o.run(ctx) }()
	defer func() { cancel(); <-done }()

	if !o.enqueue(ctx, &girc.Event{Command: girc.PRIVMSG, Params: []string{"alice", "lost"}}) {
		t.Fatal("enqueue failed")
	}
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	defer pcancel()
	if err := o.prove(pctx, conn); err == nil {
		t.Fatal("a proof succeeded behind a line the sender dropped")
	}
	// Nor does a later proof on the same connection prove it.
	if err := o.prove(pctx, conn); err == nil {
		t.Fatal("a later proof on the same connection succeeded after a line was dropped")
	}
	select {
	case <-lost: // the bridge reconnects
	default:
		t.Fatal("onLost not called")
	}
	// A line taken in time is no loss: on the next connection proofs work.
	conn2, stop2 := context.WithCancel(context.Background())
	defer stop2()
	o.open(conn2)
	o.enqueue(ctx, &girc.Event{Command: girc.PRIVMSG, Params: []string{"alice", "fine"}})
	if err := o.prove(pctx, conn2); err != nil {
		t.Fatal(err)
	}
}

// Lines queued on one connection are not proved by a PONG on the next: a
// delivery's proof counts only on the connection its lines went out on.
func TestOutboxProofOnlyOnItsConnection(t *testing.T) {
	t.Parallel()
	snd := &lossySender{}
	o := newOutbox(snd, -1, 0)
	snd.o = o
	connA, stopA := context.WithCancel(context.Background())
	o.open(connA)
	// Queued on A, and lost with it (the writer had not run; girc drops
	// what it is handed while disconnected).
	o.enqueue(context.Background(), &girc.Event{Command: girc.PRIVMSG, Params: []string{"alice", "on A"}})
	stopA()
	o.shut()
	o.mu.Lock()
	o.queue = nil
	o.mu.Unlock()
	connB, stopB := context.WithCancel(context.Background())
	defer stopB()
	o.open(connB)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); o.run(ctx) }()
	defer func() { cancel(); <-done }()
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	defer pcancel()
	if err := o.prove(pctx, connA); err == nil {
		t.Fatal("the lines of a delivery on connection A were proved by a PONG on B")
	}
	// B's own lines are proved on B.
	if err := o.prove(pctx, connB); err != nil {
		t.Fatal(err)
	}
}

// A proof whose context ends while it waits for room in a full queue
// leaves nothing behind: its PING is never queued, and no entry waits for
// a PONG.
func TestOutboxProofGivenUpLeavesNoEntry(t *testing.T) {
	t.Parallel()
	o := newOutbox(&lossySender{}, -1, 0) // no writer: the queue stays full
	conn, connStop := context.WithCancel(context.Background())
	defer connStop()
	o.open(conn)
	for range o.capacity {
		o.enqueue(context.Background(), &girc.Event{Command: girc.PRIVMSG, Params: []string{"alice", "x"}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := o.prove(ctx, conn); err == nil {
		t.Fatal("a proof succeeded with no writer")
	}
	o.mu.Lock()
	n := len(o.pong)
	o.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d PING(s) waiting for a PONG after the proof gave up before queuing one", n)
	}
}

// lossySender is girc's Send as the outbox sees it: a line it is stuck on
// for longer than girc's write timeout is dropped (here: every PRIVMSG
// "lost" is held for stuck, then dropped); a PING is answered (PONG) at
// once, as a server would.
type lossySender struct {
	o     *outbox
	stuck time.Duration

	mu   sync.Mutex
	sent []string
}

func (s *lossySender) Send(e *girc.Event) {
	switch {
	case e.Command == girc.PING:
		go s.o.pongFor(e.Last())
	case e.Command == girc.PRIVMSG && e.Last() == "lost":
		time.Sleep(s.stuck)
		return // dropped
	}
	s.mu.Lock()
	s.sent = append(s.sent, fmt.Sprint(e.Command, " ", e.Params))
	s.mu.Unlock()
}

// After Run returns nothing of the bridge runs or waits to run: no
// goroutine of the package (its users', deliveries', writer, a timer's
// callback), no timer pending (the rejoin, a netsplit's grace, a user's
// retry), and every user's chat client closed, one a failed GoOnline
// (online elsewhere) left open included.
func TestFakeRunLeavesNothingRunning(t *testing.T) {
	// Not parallel: the goroutine count must see no other test's bridge.
	before := goroutineIDs()
	srv := irctest.NewServer(t)
	srv.Members("alice", "bob")
	n := newFakeNet()
	n.registered["alice"], n.registered["bob"] = true, true
	n.online["alice"] = onlineMeta{Via: "cli"} // alice's GoOnline fails: online elsewhere
	cfg := Config{Server: srv.Addr, ZooKeeper: "127.0.0.1:1", Rate: -1, SplitGrace: time.Minute,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	b, err := newBridge(cfg, nil, fakeDir{n: n})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var workers []*closeTracker
	b.newWorker = func(id string) worker {
		w := &closeTracker{worker: &fakeWorker{n: n, id: id, meta: onlineMeta{Via: "irc", Bridge: "zkchat", Channel: "#chatroom"}}}
		mu.Lock()
		workers = append(workers, w)
		mu.Unlock()
		return w
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = b.Run(ctx) }()
	s := &fakeSetup{srv: srv, net: n, b: b}
	s.waitSynced(t)
	waitUntil(t, "bob online", func() bool { return n.isOnline("bob") })
	s.notice(t, "alice", "alice is online elsewhere")
	s.from("bob", "QUIT :irc.left.net irc.right.net") // a netsplit: bob's grace timer
	srv.Send(":irc.test 474 zkchat #chatroom :Cannot join channel (+b)")
	waitUntil(t, "a rejoin and a grace timer pending", func() bool {
		u := b.lookup("bob")
		if u == nil {
			return false
		}
		u.mu.Lock()
		split := u.splitTimer != nil
		u.mu.Unlock()
		b.m.mu.Lock()
		defer b.m.mu.Unlock()
		return split && b.m.rejoin != nil
	})

	cancel()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return 15 s after its context ended")
	}

	b.m.mu.Lock()
	if b.m.rejoin != nil {
		t.Error("the rejoin timer outlives Run")
	}
	for id, u := range b.m.users {
		u.mu.Lock()
		if !u.stopped || u.retry != nil || u.splitTimer != nil {
			t.Errorf("user %s after Run: stopped %v, retry pending %v, grace pending %v", id, u.stopped, u.retry != nil, u.splitTimer != nil)
		}
		u.mu.Unlock()
	}
	b.m.mu.Unlock()
	mu.Lock()
	for _, w := range workers {
		if w.open.Load() {
			t.Errorf("the chat client of %s is still open after Run returned", w.worker.(*fakeWorker).id)
		}
	}
	mu.Unlock()
	var left []string
	for range 100 { // goroutines that have returned may take a moment to go
		left = bridgeGoroutines(before)
		if len(left) == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, g := range left {
		t.Errorf("still running after Run returned:\n%s", g)
	}
}

// closeTracker is a worker that knows whether it is open: used (a session
// may be open) since its last GoOffline.
type closeTracker struct {
	worker
	open atomic.Bool
}

func (w *closeTracker) Register(ctx context.Context) (protocol.Status, error) {
	w.open.Store(true)
	return w.worker.Register(ctx)
}

func (w *closeTracker) Quit(ctx context.Context) (protocol.Status, error) {
	w.open.Store(true)
	st, err := w.worker.Quit(ctx)
	if err == nil {
		w.open.Store(false) // Quit goes offline
	}
	return st, err
}

func (w *closeTracker) GoOnline(ctx context.Context) error {
	w.open.Store(true)
	return w.worker.GoOnline(ctx)
}

func (w *closeTracker) SendMessage(ctx context.Context, to, text string) error {
	w.open.Store(true)
	return w.worker.SendMessage(ctx, to, text)
}

func (w *closeTracker) GoOffline() {
	w.worker.GoOffline()
	w.open.Store(false)
}

// goroutineIDs returns the ids of the goroutines running now.
func goroutineIDs() map[string]bool {
	ids := map[string]bool{}
	for _, g := range goroutineStacks() {
		id, _, _ := strings.Cut(strings.TrimPrefix(g, "goroutine "), " ")
		ids[id] = true
	}
	return ids
}

// bridgeGoroutines returns the stacks of the goroutines not in before that
// run code of this package (or of girc), other than tests.
func bridgeGoroutines(before map[string]bool) []string {
	var out []string
	for _, g := range goroutineStacks() {
		id, _, _ := strings.Cut(strings.TrimPrefix(g, "goroutine "), " ")
		if before[id] || strings.Contains(g, "bridge.Test") || strings.Contains(g, "testing.tRunner") {
			continue
		}
		if strings.Contains(g, "zkchat/zkchat/bridge.") || strings.Contains(g, "lrstanley/girc.") {
			out = append(out, g)
		}
	}
	return out
}

func goroutineStacks() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Split(string(buf[:n]), "\n\n")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// A rejoin timer that fired as Run was stopping: its callback has ended by
// the time the members' stop returns (stop waits for it), so it does not
// run after Run.
func TestRejoinCallbackEndsWithStop(t *testing.T) {
	t.Parallel()
	b, err := newBridge(Config{Server: "127.0.0.1:1", ZooKeeper: "127.0.0.1:1",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, nil, fakeDir{n: newFakeNet()})
	if err != nil {
		t.Fatal(err)
	}
	inCallback := func() bool {
		for _, g := range goroutineStacks() {
			if strings.Contains(g, "rejoinLocked.func") {
				return true
			}
		}
		return false
	}
	b.m.mu.Lock()
	b.rejoinLocked(0) // fires at once, and waits for members.mu
	for !inCallback() {
		time.Sleep(time.Millisecond)
	}
	b.m.mu.Unlock()
	b.m.stop()
	if inCallback() {
		t.Fatal("the rejoin timer's callback still runs after the members' stop returned")
	}
}
