package bridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/lrstanley/girc"

	"github.com/zkchat/zkchat/client"
	"github.com/zkchat/zkchat/internal/irctest"
	"github.com/zkchat/zkchat/protocol"
)

// fakeNet is zkchat in memory, as the bridge's workers and directory see
// it: who is registered and online, the account bindings, and each user's
// topic with its committed position.
type fakeNet struct {
	mu         sync.Mutex
	registered map[string]bool
	online     map[string]onlineMeta
	bindings   map[string]string
	topics     map[string][]protocol.Message
	committed  map[string]int
	workers    map[string]*fakeWorker // the last made for each id
	changed    chan struct{}          // closed and replaced at every change
	// The sessions: each bridge's directory and workers share one (sess;
	// 0 for a bridge alone). onlineSess: the session an /online node is
	// in; dead: sessions expired (kill), whose calls fail.
	onlineSess map[string]int
	dead       map[int]bool
	// earlier: session -> the session of the same bridge's directory
	// that it was before an outage (a test sets it), whose nodes that
	// directory may clear (ClearStale).
	earlier map[int]int
	// /bridges: the nodes, and the child watches set.
	bridges     map[string]fakeBridgeNode
	bridgeWatch []chan zk.Event
}

type fakeBridgeNode struct {
	data []byte
	sess int
}

func newFakeNet() *fakeNet {
	return &fakeNet{registered: map[string]bool{}, online: map[string]onlineMeta{},
		bindings: map[string]string{}, topics: map[string][]protocol.Message{},
		committed: map[string]int{}, workers: map[string]*fakeWorker{}, changed: make(chan struct{}),
		onlineSess: map[string]int{}, dead: map[int]bool{}, earlier: map[int]int{}, bridges: map[string]fakeBridgeNode{}}
}

// bridgesChangedLocked fires the child watches of /bridges; n.mu is held.
func (n *fakeNet) bridgesChangedLocked() {
	for _, ch := range n.bridgeWatch {
		ch <- zk.Event{Type: zk.EventNodeChildrenChanged, Path: "/bridges"}
		close(ch)
	}
	n.bridgeWatch = nil
}

// freeze is a SIGKILL of the bridge in session sess: its calls fail and
// it commits nothing from now on, but its nodes stay until expire.
func (n *fakeNet) freeze(sess int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.dead[sess] = true
}

// expire ends session sess, as ZooKeeper does a session timeout after its
// bridge was killed: its ephemeral nodes (its /bridges node, its users'
// /online nodes) go, together.
func (n *fakeNet) expire(sess int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.dead[sess] = true
	for id, s := range n.onlineSess {
		if s == sess {
			delete(n.online, id)
			delete(n.onlineSess, id)
		}
	}
	for id, b := range n.bridges {
		if b.sess == sess {
			delete(n.bridges, id)
		}
	}
	n.bridgesChangedLocked()
	n.changedLocked()
}

func (n *fakeNet) onlineVia(id string) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	m, ok := n.online[id]
	return m.Bridge, ok
}

// changedLocked wakes the readers; n.mu is held.
func (n *fakeNet) changedLocked() {
	close(n.changed)
	n.changed = make(chan struct{})
}

// put appends a message to to's topic, as if from sent it.
func (n *fakeNet) put(from, to, text string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.topics[to] = append(n.topics[to], protocol.Message{From: from, To: to, Text: text, Offset: int64(len(n.topics[to]))})
	n.changedLocked()
}

func (n *fakeNet) isOnline(id string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ok := n.online[id]
	return ok
}

func (n *fakeNet) committedOf(id string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.committed[id]
}

// fakeWorker is a worker over a fakeNet.
type fakeWorker struct {
	n    *fakeNet
	id   string
	meta onlineMeta
	sess int

	mu      sync.Mutex
	online  bool
	lost    chan struct{} // closed by lose
	lostErr error
}

func (w *fakeWorker) Lost() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lost
}

func (w *fakeWorker) LostErr() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lostErr
}

// lose ends the presence by itself, as client.Worker does when it cannot
// keep it.
func (w *fakeWorker) lose(why error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.online {
		w.n.mu.Lock()
		w.n.dropOnlineLocked(w.id, w.sess)
		w.n.mu.Unlock()
		w.online, w.lostErr = false, why
		close(w.lost)
	}
}

// dropOnlineLocked deletes id's /online node if session sess made it;
// n.mu is held.
func (n *fakeNet) dropOnlineLocked(id string, sess int) {
	if s, ok := n.onlineSess[id]; ok && s == sess && !n.dead[sess] {
		delete(n.online, id)
		delete(n.onlineSess, id)
	}
}

func (w *fakeWorker) Register(context.Context) (protocol.Status, error) {
	w.n.mu.Lock()
	defer w.n.mu.Unlock()
	if w.n.registered[w.id] {
		return protocol.StatusAlready, nil
	}
	w.n.registered[w.id] = true
	return protocol.StatusDone, nil
}

func (w *fakeWorker) Quit(context.Context) (protocol.Status, error) {
	w.GoOffline()
	w.n.mu.Lock()
	defer w.n.mu.Unlock()
	if !w.n.registered[w.id] {
		return protocol.StatusAlready, nil
	}
	delete(w.n.registered, w.id)
	delete(w.n.topics, w.id)
	return protocol.StatusDone, nil
}

func (w *fakeWorker) GoOnline(context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.online {
		return nil
	}
	w.n.mu.Lock()
	defer w.n.mu.Unlock()
	if w.n.dead[w.sess] {
		return errors.New("fake: session expired")
	}
	if !w.n.registered[w.id] {
		return protocol.ErrNotRegistered
	}
	if _, ok := w.n.online[w.id]; ok {
		return protocol.ErrAlreadyOnline
	}
	w.n.online[w.id] = w.meta
	w.n.onlineSess[w.id] = w.sess
	w.online, w.lost, w.lostErr = true, make(chan struct{}), nil
	return nil
}

func (w *fakeWorker) GoOffline() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.online {
		w.n.mu.Lock()
		w.n.dropOnlineLocked(w.id, w.sess)
		w.n.mu.Unlock()
		w.online = false
	}
}

func (w *fakeWorker) SendMessage(_ context.Context, to, text string) error {
	w.n.mu.Lock()
	defer w.n.mu.Unlock()
	if !w.n.registered[to] {
		return protocol.ErrNotRegistered
	}
	if _, ok := w.n.online[to]; !ok {
		return protocol.ErrReceiverOffline
	}
	w.n.topics[to] = append(w.n.topics[to], protocol.Message{From: w.id, To: to, Text: text, Offset: int64(len(w.n.topics[to]))})
	w.n.changedLocked()
	return nil
}

// FollowMessagesWith hands fn what is past the committed position, proves
// it with BeforeCommit and commits, like client.Worker.
func (w *fakeWorker) FollowMessagesWith(ctx context.Context, opts client.ReadOptions, fn func(protocol.Message) error) error {
	for {
		w.n.mu.Lock()
		pos := w.n.committed[w.id]
		msgs := slices.Clone(w.n.topics[w.id][min(pos, len(w.n.topics[w.id])):])
		changed := w.n.changed
		w.n.mu.Unlock()
		if len(msgs) > 0 {
			for _, m := range msgs {
				if err := fn(m); err != nil {
					return err
				}
			}
			pctx, cancel := context.WithTimeout(context.Background(), opts.BeforeCommitTimeout)
			err := opts.BeforeCommit(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("%w: %w", protocol.ErrNotCommitted, err)
			}
			w.n.mu.Lock()
			if w.n.dead[w.sess] { // a killed bridge commits nothing
				w.n.mu.Unlock()
				return errors.New("fake: session expired")
			}
			w.n.committed[w.id] = pos + len(msgs)
			w.n.changedLocked()
			w.n.mu.Unlock()
			continue
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil
		}
	}
}

// fakeDir is the directory over a fakeNet, in session sess.
type fakeDir struct {
	n    *fakeNet
	sess int
}

func (d fakeDir) list(online bool) []string {
	d.n.mu.Lock()
	defer d.n.mu.Unlock()
	var ids []string
	if online {
		for id := range d.n.online {
			ids = append(ids, id)
		}
	} else {
		for id := range d.n.registered {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

func (d fakeDir) OnlineUsers(context.Context) ([]string, error)     { return d.list(true), nil }
func (d fakeDir) RegisteredUsers(context.Context) ([]string, error) { return d.list(false), nil }
func (d fakeDir) OnlineMeta(_ context.Context, id string) (onlineMeta, bool, error) {
	d.n.mu.Lock()
	defer d.n.mu.Unlock()
	m, ok := d.n.online[id]
	return m, ok, nil
}
func (d fakeDir) ClearStale(_ context.Context, id string) (bool, error) {
	d.n.mu.Lock()
	defer d.n.mu.Unlock()
	s, ok := d.n.onlineSess[id]
	if !ok {
		return true, nil
	}
	if e, ok := d.n.earlier[s]; !ok || e != d.sess || s == d.sess {
		return false, nil
	}
	delete(d.n.online, id)
	delete(d.n.onlineSess, id)
	return true, nil
}

// OnlineWatch: the fake's watch never fires; a test that has puppets
// kicks them (kickPuppets).
func (d fakeDir) OnlineWatch(context.Context) ([]string, <-chan zk.Event, error) {
	return d.list(true), nil, nil
}
func (d fakeDir) Connected() bool                  { return true }
func (d fakeDir) SessionEvents() map[string]uint64 { return map[string]uint64{} }
func (d fakeDir) Managers(context.Context) ([]string, error) {
	return []string{"fake"}, nil
}
func (d fakeDir) IsRegistered(_ context.Context, id string) (bool, error) {
	d.n.mu.Lock()
	defer d.n.mu.Unlock()
	return d.n.registered[id], nil
}
func (d fakeDir) Binding(_ context.Context, id string) (string, error) {
	d.n.mu.Lock()
	defer d.n.mu.Unlock()
	return d.n.bindings[id], nil
}
func (d fakeDir) Bind(_ context.Context, id, account string) error {
	d.n.mu.Lock()
	defer d.n.mu.Unlock()
	d.n.bindings[id] = account
	return nil
}
func (d fakeDir) Unbind(_ context.Context, id string) error {
	d.n.mu.Lock()
	defer d.n.mu.Unlock()
	delete(d.n.bindings, id)
	return nil
}
func (d fakeDir) Bridges(_ context.Context, self string, data []byte, watch bool) ([]bridgeNode, <-chan zk.Event, error) {
	n := d.n
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.dead[d.sess] {
		return nil, nil, errors.New("fake: session expired")
	}
	if nd, ok := n.bridges[self]; !ok {
		n.bridges[self] = fakeBridgeNode{data: slices.Clone(data), sess: d.sess}
		n.bridgesChangedLocked()
	} else if nd.sess == d.sess {
		n.bridges[self] = fakeBridgeNode{data: slices.Clone(data), sess: d.sess}
	}
	var nodes []bridgeNode
	for id, nd := range n.bridges {
		nodes = append(nodes, bridgeNode{ID: id, Data: nd.data, Own: nd.sess == d.sess})
	}
	var ch chan zk.Event
	if watch {
		ch = make(chan zk.Event, 1)
		n.bridgeWatch = append(n.bridgeWatch, ch)
	}
	return nodes, ch, nil
}

func (d fakeDir) Stopping() {}

// Close ends the session: its /bridges node goes (a stopped bridge's
// users' nodes are gone already).
func (d fakeDir) Close() {
	n := d.n
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.dead[d.sess] { // killed: the session ends by expiring
		return
	}
	for id, b := range n.bridges {
		if b.sess == d.sess {
			delete(n.bridges, id)
			n.bridgesChangedLocked()
		}
	}
}

var (
	_ worker    = (*fakeWorker)(nil)
	_ directory = fakeDir{}
)

// fakeSetup is a bridge on a scripted IRC server, with zkchat in memory.
type fakeSetup struct {
	srv  *irctest.Server
	net  *fakeNet
	b    *Bridge
	stop func() // ends Run and waits for it (again at cleanup: a no-op)
}

// startFake runs a bridge (nick zkchat, #chatroom, unpaced) against a
// scripted server whose channel holds members, and waits until it is synced.
// Every member is registered.
func startFake(t *testing.T, mod func(*Config), members ...string) *fakeSetup {
	t.Helper()
	return startFakeOn(t, irctest.NewServer(t), mod, members...)
}

// startFakeOn is startFake on a scripted server the test has set up (with
// capabilities, say).
func startFakeOn(t *testing.T, srv *irctest.Server, mod func(*Config), members ...string) *fakeSetup {
	t.Helper()
	return startFakeNet(t, srv, newFakeNet(), 0, mod, members...)
}

// startFakeNet is startFakeOn on zkchat n, in session sess (bridges
// sharing a channel share n, each in a session of its own).
func startFakeNet(t *testing.T, srv *irctest.Server, n *fakeNet, sess int, mod func(*Config), members ...string) *fakeSetup {
	t.Helper()
	srv.Members(members...)
	n.mu.Lock()
	for _, m := range members {
		n.registered[m] = true
	}
	n.mu.Unlock()
	cfg := Config{Server: srv.Addr, ZooKeeper: "127.0.0.1:1", Rate: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(&tWriter{t}, nil))
	}
	if mod != nil {
		mod(&cfg)
	}
	b, err := newBridge(cfg, nil, fakeDir{n: n, sess: sess})
	if err != nil {
		t.Fatal(err)
	}
	b.newWorker = func(id string) worker {
		w := &fakeWorker{n: n, id: id, meta: onlineMeta{Via: "irc", Bridge: b.cfg.Nick, Channel: b.cfg.Channel}, sess: sess}
		n.mu.Lock()
		n.workers[id] = w
		n.mu.Unlock()
		return w
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = b.Run(ctx) }()
	stop := func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("Run did not return 15 s after its context ended")
		}
	}
	t.Cleanup(stop)
	s := &fakeSetup{srv: srv, net: n, b: b, stop: stop}
	s.waitSynced(t)
	return s
}

type tWriter struct{ t *testing.T }

func (w *tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func (s *fakeSetup) waitSynced(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ch, ok := s.b.Synced()
		if ok {
			return
		}
		select {
		case <-ch:
			return
		case <-time.After(time.Until(deadline)):
			t.Fatalf("not synced after 10 s; the bot wrote %q", s.srv.Lines())
		}
	}
}

// notice waits for a NOTICE from the bot to nick containing text.
func (s *fakeSetup) notice(t *testing.T, nick, text string) string {
	t.Helper()
	return s.srv.Wait(5*time.Second, irctest.Command("NOTICE", nick+" :"+text))
}

func (s *fakeSetup) privmsg(t *testing.T, nick, text string) string {
	t.Helper()
	return s.srv.Wait(5*time.Second, irctest.Command("PRIVMSG", nick+" :"+text))
}

// from sends a line from nick, as the server relays it.
func (s *fakeSetup) from(nick, line string) {
	s.srv.Send(":" + nick + "!" + nick + "@users.test " + line)
}

// whois waits for the bot's WHOIS of nick and answers it as a server does:
// the nick is there, logged in to account ("": to none).
func (s *fakeSetup) whois(t *testing.T, nick, account string) {
	t.Helper()
	s.srv.Wait(5*time.Second, irctest.Command("WHOIS", nick))
	s.srv.Send(":irc.test 311 zkchat " + nick + " " + nick + " users.test * :" + nick)
	if account != "" {
		s.srv.Send(":irc.test 330 zkchat " + nick + " " + account + " :is logged in as")
	}
	s.srv.Send(":irc.test 318 zkchat " + nick + " :End of /WHOIS list.")
}

func (s *fakeSetup) binding(id string) string {
	s.net.mu.Lock()
	defer s.net.mu.Unlock()
	return s.net.bindings[id]
}

func (s *fakeSetup) isRegistered(id string) bool {
	s.net.mu.Lock()
	defer s.net.mu.Unlock()
	return s.net.registered[id]
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 5 s: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// A nick joins, registers, goes online, and a message to it is delivered,
// proved by a PONG and only then committed.
func TestFakeRegisterDeliverCommit(t *testing.T) {
	t.Parallel()
	s := startFake(t, nil)
	s.from("alice", "JOIN #chatroom")
	s.notice(t, "alice", "Hi alice! You are not registered with zkchat")
	s.from("alice", "PRIVMSG zkchat :register")
	s.whois(t, "alice", "") // no account-tag on this server: the bot asks
	s.notice(t, "alice", "Registered alice (zkchat id alice). You are online while you are in #chatroom.")
	s.notice(t, "alice", "You are not logged in to a services account")
	waitUntil(t, "alice online", func() bool { return s.net.isOnline("alice") })

	s.srv.HoldPongs(true)
	s.net.put("bob", "alice", "hi alice")
	s.privmsg(t, "alice", "<bob> hi alice")
	s.srv.Wait(5*time.Second, irctest.Command("PING", "zkchat-"))
	time.Sleep(20 * time.Millisecond)
	if c := s.net.committedOf("alice"); c != 0 {
		t.Fatalf("committed %d before the PONG", c)
	}
	s.srv.HoldPongs(false)
	waitUntil(t, "the message committed after the PONG", func() bool { return s.net.committedOf("alice") == 1 })

	s.from("alice", "PART #chatroom")
	waitUntil(t, "alice offline after PART", func() bool { return !s.net.isOnline("alice") })
}

// A 401 for a delivered line fails the proof: the message is not committed
// and comes again.
func TestFakeNoSuchNickRedelivers(t *testing.T) {
	t.Parallel()
	s := startFake(t, nil, "alice")
	waitUntil(t, "alice online", func() bool { return s.net.isOnline("alice") })
	s.srv.HoldPongs(true)
	s.net.put("bob", "alice", "one")
	s.privmsg(t, "alice", "<bob> one")
	s.srv.Send(":irc.test 401 zkchat alice :No such nick/channel")
	s.srv.HoldPongs(false)
	s.privmsg(t, "alice", "<bob> one") // again, from the last commit
	waitUntil(t, "committed once proved", func() bool { return s.net.committedOf("alice") == 1 })
}

// The commands' answers, word for word.
func TestFakeCommands(t *testing.T) {
	t.Parallel()
	s := startFake(t, nil, "alice")
	s.net.mu.Lock()
	s.net.registered["carol"] = true
	s.net.mu.Unlock()
	waitUntil(t, "alice online", func() bool { return s.net.isOnline("alice") })
	s.from("bob", "JOIN #chatroom")
	s.notice(t, "bob", "Hi bob! You are not registered")

	s.from("alice", "PRIVMSG zkchat :who")
	s.notice(t, "alice", "Online (1): alice")
	s.from("alice", "PRIVMSG zkchat :users")
	s.notice(t, "alice", "Registered (2): alice carol")
	s.from("alice", "PRIVMSG zkchat :msg carol hello")
	s.notice(t, "alice", "Not sent: carol is offline.")
	s.from("alice", "PRIVMSG zkchat :dave: hello")
	s.notice(t, "alice", "Not sent: dave is not a registered user.")
	s.from("alice", "PRIVMSG zkchat :msg a*b hi")
	s.notice(t, "alice", `Not sent: "a*b" is neither a nick nor a zkchat id.`)
	s.from("bob", "PRIVMSG zkchat :msg alice hi")
	s.notice(t, "bob", "Not sent: you are not online: you are not registered. Register (/msg zkchat register) and join #chatroom.")
	s.from("alice", "PRIVMSG zkchat :frobnicate")
	s.notice(t, "alice", `Unknown command "frobnicate". Commands: register, quit, who, users, msg <nick> <text> (or <nick>: <text>), help.`)
	for _, typo := range []string{"msg", "msg carol", "MSG carol   ", "carol:", "carol: "} {
		s.from("alice", "PRIVMSG zkchat :"+typo)
		s.notice(t, "alice", "Usage: msg <nick> <text>   or   <nick>: <text>")
	}
	s.from("alice", "PRIVMSG zkchat :help")
	s.notice(t, "alice", "zkchat bridge: chat with registered users")
	s.from("alice", "PRIVMSG zkchat :register")
	s.whois(t, "alice", "")
	s.notice(t, "alice", "alice is registered already.")
	s.from("alice", "PRIVMSG zkchat :\x01VERSION\x01") // CTCP: not a command
	s.from("9x", "PRIVMSG zkchat :who")
	s.notice(t, "9x", "Your nick cannot be a zkchat user")

	s.from("bob", "PRIVMSG zkchat :register")
	s.whois(t, "bob", "")
	s.notice(t, "bob", "Registered bob")
	waitUntil(t, "bob online", func() bool { return s.net.isOnline("bob") })
	s.from("bob", "PRIVMSG zkchat :alice: hi there")
	s.privmsg(t, "alice", "<bob> hi there")
	s.from("bob", "PRIVMSG zkchat :quit confirm")
	s.notice(t, "bob", "Unregistered bob. Send `register` to come back.")
	waitUntil(t, "bob offline after quit", func() bool { return !s.net.isOnline("bob") })
	s.from("bob", "PRIVMSG zkchat :quit confirm")
	s.notice(t, "bob", "bob was not registered.")
}

// A netsplit's QUIT keeps the user online for the grace, then not.
func TestFakeNetsplitGrace(t *testing.T) {
	t.Parallel()
	s := startFake(t, func(c *Config) { c.SplitGrace = 300 * time.Millisecond }, "alice")
	waitUntil(t, "alice online", func() bool { return s.net.isOnline("alice") })
	s.from("alice", "QUIT :irc.left.net irc.right.net")
	time.Sleep(100 * time.Millisecond)
	if !s.net.isOnline("alice") {
		t.Fatal("offline at once after a netsplit's QUIT")
	}
	waitUntil(t, "alice offline after the grace", func() bool { return !s.net.isOnline("alice") })

	s.from("alice", "JOIN #chatroom")
	waitUntil(t, "alice back online", func() bool { return s.net.isOnline("alice") })
	s.from("alice", "QUIT :Client Quit")
	waitUntil(t, "alice offline at once after a plain QUIT", func() bool { return !s.net.isOnline("alice") })
}

// An id bound to an account is refused to a nick logged in to another
// (extended-join), and taken online when the account is right.
func TestFakeBoundAccount(t *testing.T) {
	t.Parallel()
	s := startFake(t, nil)
	s.net.mu.Lock()
	s.net.registered["alice"] = true
	s.net.bindings["alice"] = "alice-acct"
	s.net.mu.Unlock()
	s.from("alice", "JOIN #chatroom mallory :Mallory")
	s.notice(t, "alice", `alice is registered to the services account "alice-acct"`)
	if s.net.isOnline("alice") {
		t.Fatal("an impostor went online")
	}
	s.from("alice", "PRIVMSG zkchat :quit confirm")
	s.notice(t, "alice", `alice is registered to the services account "alice-acct"`)
	s.from("alice", "ACCOUNT alice-acct")
	waitUntil(t, "alice online once logged in", func() bool { return s.net.isOnline("alice") })
}

// With account-tag, the account comes with the message itself, whether or
// not the nick is in the channel: the tag is the sender's account, and no
// tag means none. Nothing is asked of the server (it would not answer here).
func TestFakeAccountTag(t *testing.T) {
	t.Parallel()
	srv := irctest.NewServer(t)
	srv.Caps("account-tag")
	s := startFakeOn(t, srv, nil)
	s.srv.Send("@account=alice-acct :alice!alice@users.test PRIVMSG zkchat :register")
	s.notice(t, "alice", "Registered alice (zkchat id alice).")
	s.notice(t, "alice", `Your nick is bound to your services account "alice-acct"`)
	if b := s.binding("alice"); b != "alice-acct" {
		t.Fatalf("binding %q, want alice-acct", b)
	}
	// The nick without the account (no tag): not alice.
	s.from("alice", "PRIVMSG zkchat :quit confirm")
	s.notice(t, "alice", `alice is registered to the services account "alice-acct"`)
	if !s.isRegistered("alice") {
		t.Fatal("unregistered by a nick without the account")
	}
	s.from("bob", "PRIVMSG zkchat :register")
	s.notice(t, "bob", "Registered bob")
	s.notice(t, "bob", "You are not logged in to a services account")
	s.srv.Send("@account=alice-acct :alice!alice@users.test PRIVMSG zkchat :quit confirm")
	s.notice(t, "alice", "Unregistered alice.")
}

// Without account-tag, a nick the bot knows nothing about is looked up
// (WHOIS), never assumed logged out: the answer binds (or not), and no
// answer in time, or no such nick, is "could not check", with nothing
// registered. A bound nick joining without extended-join is looked up too.
func TestFakeAccountWhois(t *testing.T) {
	t.Parallel()
	s := startFake(t, func(c *Config) { c.accountTimeout = 300 * time.Millisecond })
	s.from("alice", "PRIVMSG zkchat :register")
	s.whois(t, "alice", "alice-acct")
	s.notice(t, "alice", "Registered alice (zkchat id alice).")
	s.notice(t, "alice", `Your nick is bound to your services account "alice-acct"`)
	if b := s.binding("alice"); b != "alice-acct" {
		t.Fatalf("binding %q, want alice-acct", b)
	}

	s.from("bob", "PRIVMSG zkchat :register")
	s.whois(t, "bob", "")
	s.notice(t, "bob", "Registered bob")
	s.notice(t, "bob", "You are not logged in to a services account")

	s.from("carol", "PRIVMSG zkchat :register") // no answer
	s.srv.Wait(5*time.Second, irctest.Command("WHOIS", "carol"))
	s.notice(t, "carol", "Could not check your services account")
	s.from("dave", "PRIVMSG zkchat :register")
	s.srv.Wait(5*time.Second, irctest.Command("WHOIS", "dave"))
	s.srv.Send(":irc.test 401 zkchat dave :No such nick/channel")
	s.srv.Send(":irc.test 318 zkchat dave :End of /WHOIS list.")
	s.notice(t, "dave", "Could not check your services account")
	if s.isRegistered("carol") || s.isRegistered("dave") {
		t.Fatal("registered without knowing the account")
	}

	// The nick without the account cannot unregister alice.
	s.from("alice", "PRIVMSG zkchat :quit confirm")
	s.whois(t, "alice", "")
	s.notice(t, "alice", `alice is registered to the services account "alice-acct"`)

	s.from("alice", "JOIN #chatroom") // no extended-join here
	s.whois(t, "alice", "alice-acct")
	waitUntil(t, "alice online once her account is known", func() bool { return s.net.isOnline("alice") })
}

// An id online in another client: told once, no retry loop.
func TestFakeOnlineElsewhere(t *testing.T) {
	t.Parallel()
	s := startFake(t, nil)
	s.net.mu.Lock()
	s.net.registered["alice"] = true
	s.net.online["alice"] = onlineMeta{Via: "cli"}
	s.net.mu.Unlock()
	s.from("alice", "JOIN #chatroom")
	s.notice(t, "alice", "alice is online elsewhere (another zkchat client)")
	time.Sleep(100 * time.Millisecond)
	for _, l := range s.srv.Lines() {
		if irctest.Command("NOTICE", "online elsewhere")(l) {
			t.Fatalf("told again: %q", l)
		}
	}
}

// A dropped connection pauses delivery (the user stays online); after the
// reconnect the unproved message comes again and is committed.
func TestFakeReconnectRedelivers(t *testing.T) {
	t.Parallel()
	s := startFake(t, nil, "alice")
	waitUntil(t, "alice online", func() bool { return s.net.isOnline("alice") })
	s.srv.HoldPongs(true)
	s.net.put("bob", "alice", "in flight")
	s.privmsg(t, "alice", "<bob> in flight")
	s.srv.Wait(5*time.Second, irctest.Command("PING", "zkchat-"))
	s.srv.HoldPongs(false) // the held PING is answered on the old connection: lost below
	s.srv.Drop()
	waitUntil(t, "reconnected", func() bool { return s.srv.Connections() >= 2 })
	s.waitSynced(t)
	if !s.net.isOnline("alice") {
		t.Fatal("alice went offline over a reconnect")
	}
	waitUntil(t, "committed after the reconnect", func() bool { return s.net.committedOf("alice") == 1 })
}

// The bot kicked: everyone offline at once.
func TestFakeBotKicked(t *testing.T) {
	t.Parallel()
	s := startFake(t, nil, "alice")
	waitUntil(t, "alice online", func() bool { return s.net.isOnline("alice") })
	s.srv.Send(":op!op@users.test KICK #chatroom zkchat :out")
	waitUntil(t, "alice offline", func() bool { return !s.net.isOnline("alice") })
	if _, synced := s.b.Synced(); synced {
		t.Fatal("synced after losing the channel")
	}
}

// A refused JOIN is retried (and only one retry is pending).
func TestFakeJoinRefused(t *testing.T) {
	t.Parallel()
	s := startFake(t, nil)
	s.srv.Send(":irc.test 474 zkchat #chatroom :Cannot join channel (+b)")
	s.srv.Send(":irc.test 474 zkchat #chatroom :Cannot join channel (+b)")
	waitUntil(t, "a JOIN retry pending", func() bool {
		s.b.m.mu.Lock()
		defer s.b.m.mu.Unlock()
		return s.b.m.rejoin != nil && s.b.m.joinBackoff == 10*time.Second
	})
}

// The outbox writes lines in order, at most rate a second after a burst.
func TestOutboxPacing(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	o := newOutbox(rec, 200, 2) // 5 ms a line
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); o.run(ctx) }()
	defer func() { cancel(); <-done }()
	start := time.Now()
	for i := range 12 {
		o.notice("alice", fmt.Sprint(i))
	}
	waitUntil(t, "12 lines written", func() bool { return rec.len() == 12 })
	if d := time.Since(start); d < 45*time.Millisecond {
		t.Fatalf("12 lines at 200/s with a burst of 2 took %v, want >= 50 ms", d)
	}
	for i, e := range rec.all() {
		if e.Params[1] != fmt.Sprint(i) {
			t.Fatalf("line %d is %q", i, e.Params[1])
		}
	}
}

// One PING proves the lines of every caller queued before it; a shut
// outbox fails proofs at once; enqueue waits for room on the proof path, a
// handler's postNotice never waits (it drops, counted), and replies are not
// numbered: no proof waits for them.
func TestOutboxProofs(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	o := newOutbox(rec, -1, 0)
	conn, connStop := context.WithCancel(context.Background())
	if err := o.prove(context.Background(), conn); err == nil {
		t.Fatal("a proof without a connection succeeded")
	}
	o.open(conn)
	line := func(text string) *girc.Event {
		return &girc.Event{Command: girc.PRIVMSG, Params: []string{"alice", text}}
	}
	o.enqueue(context.Background(), line("a"))
	o.notice("alice", "a reply")
	errs := make(chan error, 2)
	pings := func() (int, uint64) { o.mu.Lock(); defer o.mu.Unlock(); return len(o.pong), o.seq }
	go func() { errs <- o.prove(context.Background(), conn) }()
	waitUntil(t, "a PING queued", func() bool { n, _ := pings(); return n == 1 })
	go func() { errs <- o.prove(context.Background(), conn) }() // nothing queued since: the same PING
	time.Sleep(10 * time.Millisecond)
	if n, seq := pings(); n != 1 || seq != 2 {
		t.Fatalf("%d PINGs in flight, %d lines queued; want 1 and 2", n, seq)
	}
	o.mu.Lock()
	tok := o.last.token
	o.mu.Unlock()
	o.pongFor(tok)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}

	// A proof in flight fails when the connection ends.
	o.enqueue(context.Background(), line("b"))
	go func() { errs <- o.prove(context.Background(), conn) }()
	waitUntil(t, "a second PING", func() bool { o.mu.Lock(); defer o.mu.Unlock(); return len(o.pong) == 1 })
	connStop()
	o.shut()
	if err := <-errs; err == nil {
		t.Fatal("a proof succeeded after its connection ended")
	}

	// Full: enqueue waits (until its context ends).
	for range o.capacity - len(o.queue) {
		o.enqueue(context.Background(), line("x"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if o.enqueue(ctx, line("y")) {
		t.Fatal("enqueue went past a full queue")
	}
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal(ctx.Err())
	}
	// A target's replies full: postNotice drops the whole notice, counted,
	// at once; another target still has room.
	for range repliesPerTarget - 1 {
		o.postNotice("alice", "r")
	}
	o.postNotice("alice", "does not fit")
	if d := o.droppedReplies(); d != 1 {
		t.Fatalf("%d reply lines dropped, want 1", d)
	}
	o.postNotice("bob", "fits")
	o.mu.Lock()
	n, nb := len(o.replies["alice"]), len(o.replies["bob"])
	o.mu.Unlock()
	if n != repliesPerTarget || nb != 1 {
		t.Fatalf("replies: alice %d, bob %d; want %d and 1", n, nb, repliesPerTarget)
	}
	// notice waits for room, until Run's context ends; then it drops.
	stop := make(chan struct{})
	o.stopWaiting(stop)
	noticed := make(chan struct{})
	go func() { defer close(noticed); o.notice("alice", "waits") }()
	select {
	case <-noticed:
		t.Fatal("notice went past a full target")
	case <-time.After(20 * time.Millisecond):
	}
	close(stop)
	<-noticed
	if d := o.droppedReplies(); d != 2 {
		t.Fatalf("%d reply lines dropped, want 2", d)
	}
}

type recorder struct {
	mu     sync.Mutex
	events []*struct{ Params []string }
}

func (r *recorder) Send(e *girc.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, &struct{ Params []string }{e.Params})
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

func (r *recorder) all() []*struct{ Params []string } {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func (n *fakeNet) worker(id string) *fakeWorker {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.workers[id]
}

// TestFakePresenceLost: a user whose presence the worker could not keep
// (unregistered by a quit from another client; online in another session
// now) is offline in the bridge too and is told why, once; the bridge does
// not put them back online in a loop. Before, the bridge kept them
// "online", and their delivery failed and restarted every 2 s for good.
func TestFakePresenceLost(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		why  error
		told string
	}{
		{protocol.ErrNotRegistered, "alice was unregistered (by a quit from another zkchat client)"},
		{protocol.ErrAlreadyOnline, "alice is online elsewhere"},
	} {
		s := startFake(t, nil, "alice")
		waitUntil(t, "alice online", func() bool { return s.net.isOnline("alice") })
		if c.why == protocol.ErrNotRegistered {
			s.net.mu.Lock()
			delete(s.net.registered, "alice")
			s.net.mu.Unlock()
		}
		s.net.worker("alice").lose(c.why)
		s.notice(t, "alice", c.told)
		time.Sleep(300 * time.Millisecond)
		if s.net.isOnline("alice") {
			t.Fatalf("%v: alice back online in the bridge", c.why)
		}
		for _, l := range s.srv.Lines() { // the lines after the one seen
			if irctest.Command("NOTICE", c.told)(l) {
				t.Fatalf("%v: told again: %q", c.why, l)
			}
		}
	}
}

// TestFakeWhoisKept: the account a WHOIS told for a nick in the channel is
// kept while the nick stays there. Before, it was thrown away: every
// command of a bound user, and every reconcile after it, asked the server
// again and waited (an unanswered one took the user offline).
func TestFakeWhoisKept(t *testing.T) {
	t.Parallel()
	s := startFake(t, nil)
	s.net.mu.Lock()
	s.net.registered["alice"] = true
	s.net.bindings["alice"] = "alice-acct"
	s.net.mu.Unlock()
	s.from("alice", "JOIN #chatroom") // no extended-join, no account-tag here
	s.whois(t, "alice", "alice-acct")
	waitUntil(t, "alice online", func() bool { return s.net.isOnline("alice") })
	for i := 0; i < 3; i++ {
		s.from("alice", "PRIVMSG zkchat :who")
		s.notice(t, "alice", "")
	}
	time.Sleep(200 * time.Millisecond)
	for _, l := range s.srv.Lines() {
		if irctest.Command("WHOIS", "alice")(l) {
			t.Fatalf("asked again: %q", l)
		}
	}
	if !s.net.isOnline("alice") {
		t.Fatal("alice went offline")
	}
}
