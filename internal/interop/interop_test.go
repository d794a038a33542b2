package interop

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/client"
	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/kafka"
	"github.com/zkchat/zkchat/manager"
	"github.com/zkchat/zkchat/protocol"
)

// The tests run zkchat with no topic prefix, its default, so that a topic
// is the id as the course has it; the ids carry a random tag so that tests
// sharing the Kafka cluster do not meet, and their topics and groups are
// deleted at the end (testenv removes only those under the test's prefix).

// setup is the test's environment and its ids, one per name, tagged.
func setup(t *testing.T, names ...string) (*testenv.Env, []string) {
	t.Helper()
	e := testenv.New(t)
	tag := testenv.Tag()
	ids := make([]string, len(names))
	for i, n := range names {
		ids[i] = n + "-" + tag
	}
	// Registered first, so run last: after the workers and managers.
	t.Cleanup(func() {
		a := e.Admin(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := a.DeleteTopics(ctx, ids); err != nil {
			t.Logf("cleanup topics: %v", err)
		}
		_, _ = a.DeleteConsumerGroups(ctx, ids)
	})
	return e, ids
}

// zkchatKafka is a zkchat process's Kafka clients, without topic prefix.
func zkchatKafka(t *testing.T, e *testenv.Env) *kafka.Clients {
	t.Helper()
	k, err := kafka.New(kafka.Config{Brokers: e.Kafka, Logger: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return k
}

// zkchatWorker is zkchat's worker of id on the test's chroot.
func zkchatWorker(t *testing.T, e *testenv.Env, id string, k *kafka.Clients, timeout time.Duration) *client.Worker {
	t.Helper()
	cfg := client.Config{ZooKeeper: e.ZooKeeper, RequestTimeout: timeout, SessionTimeout: 4 * time.Second,
		Logger: testenv.Logger(t).With("zkchat_worker", id)}
	if k != nil {
		cfg.Kafka = k
	}
	w, err := client.New(id, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

// zkchatManager runs zkchat's manager on the test's chroot, without topic
// prefix, and waits until it leads.
func zkchatManager(t *testing.T, e *testenv.Env, mod func(*manager.Config)) {
	t.Helper()
	m, _ := e.RunManager(t, "zkchat-manager", func(c *manager.Config) {
		c.Topics = protocol.Topics{}
		if mod != nil {
			mod(c)
		}
	})
	testenv.WaitFor(t, 15*time.Second, "zkchat manager leads", m.Leading)
}

// texts are n messages from sender: UTF-8 beyond ASCII, spaces, a colon
// and a newline, growing lengths, and one of 4000 bytes (under the 4096 a
// zkchat worker sends at most).
func texts(sender string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s #%d: grüße, 你好 ✓ a:b\nline two %s", sender, i, strings.Repeat("x", i))
	}
	big := fmt.Sprintf("%s #%d big: ", sender, n/2)
	out[n/2] = big + strings.Repeat("0123456789abcdef", 4000/16)[:4000-len(big)]
	return out
}

// sendAll sends texts in order with send; it returns the first error.
func sendAll(texts []string, send func(string) error) error {
	for i, s := range texts {
		if err := send(s); err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
	}
	return nil
}

// same fails the test unless got is want in order: every message once,
// complete, nothing lost.
func same(t *testing.T, what string, got, want []string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	short := func(s string) string {
		if len(s) > 60 {
			return fmt.Sprintf("%q… (%d bytes)", s[:60], len(s))
		}
		return fmt.Sprintf("%q", s)
	}
	t.Errorf("%s: got %d messages, want %d", what, len(got), len(want))
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Fatalf("%s: first difference at %d: got %s, want %s", what, i, short(g), short(w))
		}
	}
}

// collect follows w's messages in the background until it has n of them
// or the test's time is up; wait returns what it read.
func collect(t *testing.T, w *client.Worker, n int, timeout time.Duration) (wait func() []protocol.Message) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	var got []protocol.Message
	done := make(chan error, 1)
	go func() {
		done <- w.FollowMessages(ctx, func(m protocol.Message) error {
			got = append(got, m)
			if len(got) == n {
				cancel()
			}
			return nil
		})
	}()
	var once sync.Once
	wait = func() []protocol.Message {
		once.Do(func() {
			if err := <-done; err != nil {
				t.Errorf("follow %s: %v", w.ID(), err)
			}
			cancel()
		})
		return got
	}
	t.Cleanup(func() { cancel(); wait() })
	return wait
}

const chatN = 60

// TestForeignWorkerWithZkchatManager: a worker of the second implementation
// registers through zkchat's manager, goes online (zkchat's manager makes
// its topic), chats both ways with zkchat's worker (every message arrives
// complete, once, in order), sees zkchat's user online, and quits through
// zkchat's manager, which deletes its registry node and topic. A second
// foreign worker that never deletes its answered request has it removed by
// zkchat's leader after AnswerGrace.
func TestForeignWorkerWithZkchatManager(t *testing.T) {
	t.Parallel()
	e, ids := setup(t, "ana", "bob", "sloppy")
	ana, bobID, sloppyID := ids[0], ids[1], ids[2]
	const grace = time.Second
	zkchatManager(t, e, func(c *manager.Config) { c.AnswerGrace = grace })

	fw := newForeignWorker(t, e.ZKServers, e.Chroot, e.Kafka, ana)
	code, err := fw.request("enroll", 20*time.Second, false)
	if err != nil || code != codeDone {
		t.Fatalf("foreign register: code %q, %v; want %q", code, err, codeDone)
	}
	conn := e.Conn(t)
	if ok, _, err := conn.Exists(e.Path("/request/enroll/" + ana)); err != nil || ok {
		t.Fatalf("foreign worker's request still there after it removed it: %v %v", ok, err)
	}
	if err := fw.goOnline(20 * time.Second); err != nil {
		t.Fatal(err)
	}

	k := zkchatKafka(t, e)
	bob := zkchatWorker(t, e, bobID, k, 20*time.Second)
	ctx := context.Background()
	if st, err := bob.Register(ctx); err != nil || st != protocol.StatusDone {
		t.Fatalf("zkchat register: %v %v", st, err)
	}
	if err := bob.GoOnline(ctx); err != nil {
		t.Fatal(err)
	}
	users, err := fw.online()
	slices.Sort(users)
	if err != nil || !slices.Equal(users, []string{ana, bobID}) {
		t.Fatalf("foreign GetOnlineUsers = %v, %v; want both", users, err)
	}
	if users, err := bob.GetOnlineUsers(ctx); err != nil || !slices.Equal(users, []string{ana, bobID}) {
		t.Fatalf("zkchat GetOnlineUsers = %v, %v; want both", users, err)
	}

	toBob, toAna := texts(ana, chatN), texts(bobID, chatN)
	bobGot := collect(t, bob, len(toBob), 60*time.Second)
	errs := make(chan error, 2)
	go func() { errs <- sendAll(toBob, func(s string) error { return fw.send(bobID, s) }) }()
	go func() { errs <- sendAll(toAna, func(s string) error { return bob.SendMessage(ctx, ana, s) }) }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	anaGot, err := fw.read(len(toAna), 60*time.Second)
	if err != nil {
		t.Error(err)
	}
	var fromBob, textsAna []string
	for _, m := range anaGot {
		fromBob = append(fromBob, m.from)
		textsAna = append(textsAna, m.text)
	}
	same(t, "zkchat → foreign", textsAna, toAna)
	if slices.IndexFunc(fromBob, func(s string) bool { return s != bobID }) >= 0 {
		t.Errorf("foreign worker read keys %v, want all %q", slices.Compact(fromBob), bobID)
	}
	var textsBob []string
	for _, m := range bobGot() {
		textsBob = append(textsBob, m.Text)
		if m.From != ana || m.To != bobID {
			t.Errorf("zkchat worker read a message %q → %q, want %q → %q", m.From, m.To, ana, bobID)
		}
	}
	same(t, "foreign → zkchat", textsBob, toBob)
	// Nothing more arrives: once means once.
	if extra, err := fw.read(1, 2*time.Second); err == nil || len(extra) > 0 {
		t.Errorf("foreign worker read more than was sent: %v", extra)
	}
	if n, err := bob.ReadMessages(ctx, func(protocol.Message) error { return nil }); err != nil || n != 0 {
		t.Errorf("zkchat worker has %d unread after following everything (%v), want 0", n, err)
	}

	// Quit through zkchat's manager, online but no longer reading
	// (TestForeignWorkerQuitsWhileReading: while reading).
	fw.stopReading()
	code, err = fw.request("quit", 20*time.Second, false)
	if err != nil || code != codeDone {
		t.Fatalf("foreign quit: code %q, %v; want %q", code, err, codeDone)
	}
	if ok, _, err := conn.Exists(e.Path("/registry/" + ana)); err != nil || ok {
		t.Fatalf("registry node after quit: %v %v", ok, err)
	}
	admin := e.Admin(t)
	testenv.WaitFor(t, 30*time.Second, "foreign user's topic deleted by zkchat's manager", func() bool {
		md, err := admin.GetMetadata(&ana, false, 2000)
		return err == nil && md.Topics[ana].Error.Code() != 0
	})
	// zkchat's manager also takes the quitting user's online node down.
	testenv.WaitFor(t, 10*time.Second, "foreign user offline after quit", func() bool {
		ok, _, err := conn.Exists(e.Path("/online/" + ana))
		return err == nil && !ok
	})

	// An implementation that never deletes its answered request: zkchat's
	// leader deletes it once it has stood answered for AnswerGrace.
	sloppy := newForeignWorker(t, e.ZKServers, e.Chroot, e.Kafka, sloppyID)
	if code, err := sloppy.request("enroll", 20*time.Second, true); err != nil || code != codeDone {
		t.Fatalf("sloppy register: code %q, %v", code, err)
	}
	testenv.WaitFor(t, grace+10*time.Second, "answered request removed by zkchat's leader", func() bool {
		ok, _, err := conn.Exists(e.Path("/request/enroll/" + sloppyID))
		return err == nil && !ok
	})
	if ok, _, err := conn.Exists(e.Path("/registry/" + sloppyID)); err != nil || !ok {
		t.Errorf("sloppy worker not registered after its request was cleaned up: %v %v", ok, err)
	}
}

// TestForeignWorkerQuitsWhileReading: a foreign worker that reads its
// topic the ordinary way, a consumer subscribed under the group <id> (the
// group zkchat commits its users' positions under), quits through zkchat's
// manager while it reads, as the course allows. The quit must succeed; and
// a quit that fails must lose nothing (the user stays registered with its
// topic and messages).
func TestForeignWorkerQuitsWhileReading(t *testing.T) {
	t.Parallel()
	e, ids := setup(t, "ana", "bob")
	ana, bobID := ids[0], ids[1]
	zkchatManager(t, e, nil)
	fw := newForeignWorker(t, e.ZKServers, e.Chroot, e.Kafka, ana)
	if code, err := fw.request("enroll", 20*time.Second, false); err != nil || code != codeDone {
		t.Fatalf("foreign register: code %q, %v", code, err)
	}
	if err := fw.goOnline(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	k := zkchatKafka(t, e)
	bob := zkchatWorker(t, e, bobID, k, 20*time.Second)
	ctx := context.Background()
	if _, err := bob.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if err := bob.GoOnline(ctx); err != nil {
		t.Fatal(err)
	}
	if err := bob.SendMessage(ctx, ana, "hello"); err != nil {
		t.Fatal(err)
	}
	if _, err := fw.read(1, 30*time.Second); err != nil { // a member of its group now
		t.Fatal(err)
	}
	if err := bob.SendMessage(ctx, ana, "unread when ana quits"); err != nil {
		t.Fatal(err)
	}

	code, err := fw.request("quit", 40*time.Second, false)
	if err != nil {
		t.Fatal(err)
	}
	conn := e.Conn(t)
	registered, _, err := conn.Exists(e.Path("/registry/" + ana))
	if err != nil {
		t.Fatal(err)
	}
	admin := e.Admin(t)
	md, err := admin.GetMetadata(&ana, false, 5000)
	if err != nil {
		t.Fatal(err)
	}
	topic := md.Topics[ana].Error.Code() == 0 && len(md.Topics[ana].Partitions) > 0
	t.Logf("quit while reading: answered %q; afterwards registered %v, topic exists %v", code, registered, topic)
	if code != codeDone {
		t.Errorf("quit while reading answered %q, want %q", code, codeDone)
		if registered && !topic {
			t.Errorf("the failed quit deleted the topic anyway: the user stays registered, and its unread messages are gone")
		}
	} else if registered {
		t.Errorf("quit answered %q but /registry/%s is still there", code, ana)
	}
}

// TestZkchatWorkersWithForeignManager: zkchat's workers register, go
// online, chat, unregister and register again through the second
// implementation's leaderless manager, on a tree it made (registry nodes
// without data, no /election). That manager answers a second registration
// 0 as the course says, which zkchat's worker reports as ErrRequestFailed;
// a quit of a user not registered is 2, success.
func TestZkchatWorkersWithForeignManager(t *testing.T) {
	t.Parallel()
	e, ids := setup(t, "alice", "bob")
	aliceID, bobID := ids[0], ids[1]
	startForeignManager(t, e.ZKServers, e.Chroot, e.Kafka)
	k := zkchatKafka(t, e)
	alice := zkchatWorker(t, e, aliceID, k, 20*time.Second)
	bob := zkchatWorker(t, e, bobID, k, 20*time.Second)
	ctx := context.Background()
	for _, w := range []*client.Worker{alice, bob} {
		if st, err := w.Register(ctx); err != nil || st != protocol.StatusDone {
			t.Fatalf("register %s: %v %v", w.ID(), st, err)
		}
	}
	conn := e.Conn(t)
	if ok, _, err := conn.Exists(e.Path("/request/enroll/" + aliceID)); err != nil || ok {
		t.Fatalf("zkchat worker's request left behind: %v %v", ok, err)
	}
	if reg, err := alice.GetRegisteredUsers(ctx); err != nil || !slices.Equal(reg, []string{aliceID, bobID}) {
		t.Fatalf("registered = %v, %v", reg, err)
	}
	// The course's enroll answers 0 when /registry/<id> cannot be created.
	st, err := alice.Register(ctx)
	if !errors.Is(err, protocol.ErrRequestFailed) || st != protocol.StatusFailed {
		t.Fatalf("second register through the foreign manager = %v, %v; want %v, ErrRequestFailed", st, err, protocol.StatusFailed)
	}
	for _, w := range []*client.Worker{alice, bob} {
		if err := w.GoOnline(ctx); err != nil {
			t.Fatalf("online %s: %v", w.ID(), err)
		}
	}

	toBob, toAlice := texts(aliceID, chatN), texts(bobID, chatN)
	bobGot := collect(t, bob, len(toBob), 60*time.Second)
	aliceGot := collect(t, alice, len(toAlice), 60*time.Second)
	errs := make(chan error, 2)
	go func() { errs <- sendAll(toBob, func(s string) error { return alice.SendMessage(ctx, bobID, s) }) }()
	go func() { errs <- sendAll(toAlice, func(s string) error { return bob.SendMessage(ctx, aliceID, s) }) }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	textsOf := func(ms []protocol.Message, from string) []string {
		var out []string
		for _, m := range ms {
			if m.From != from {
				t.Errorf("message from %q, want %q", m.From, from)
			}
			out = append(out, m.Text)
		}
		return out
	}
	same(t, "alice → bob", textsOf(bobGot(), aliceID), toBob)
	same(t, "bob → alice", textsOf(aliceGot(), bobID), toAlice)

	// Unregister: 1, the registry node and the topic go; again: 2.
	if st, err := alice.Quit(ctx); err != nil || st != protocol.StatusDone {
		t.Fatalf("quit: %v %v", st, err)
	}
	if ok, _, err := conn.Exists(e.Path("/registry/" + aliceID)); err != nil || ok {
		t.Fatalf("registry node after quit: %v %v", ok, err)
	}
	admin := e.Admin(t)
	testenv.WaitFor(t, 30*time.Second, "topic deleted by the foreign manager", func() bool {
		md, err := admin.GetMetadata(&aliceID, false, 2000)
		return err == nil && md.Topics[aliceID].Error.Code() != 0
	})
	if st, err := alice.Quit(ctx); err != nil || st != protocol.StatusAlready {
		t.Fatalf("second quit: %v %v; want %v", st, err, protocol.StatusAlready)
	}

	// Registering again starts on a new topic; the foreign manager leaves
	// the consumer group, and the new topic's messages are still read.
	if st, err := alice.Register(ctx); err != nil || st != protocol.StatusDone {
		t.Fatalf("register again: %v %v", st, err)
	}
	if err := alice.GoOnline(ctx); err != nil {
		t.Fatal(err)
	}
	if err := bob.SendMessage(ctx, aliceID, "welcome back"); err != nil {
		t.Fatal(err)
	}
	var again []string
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for len(again) == 0 && rctx.Err() == nil {
		if _, err := alice.ReadMessages(rctx, func(m protocol.Message) error { again = append(again, m.Text); return nil }); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	same(t, "after registering again", again, []string{"welcome back"})
}

// TestForeignRecordsAreShown: records written to a zkchat user's topic by
// something else are handed over as they are, in order, none dropped: a
// key that is a valid id nobody registered, a key that is no id at all, no
// key, and a value that is not UTF-8. zkchat's worker does not check the
// key against /registry (From is the key as stored); the front ends make
// it printable (cmd/zkchat printable, bridge.Sanitize).
func TestForeignRecordsAreShown(t *testing.T) {
	t.Parallel()
	e, ids := setup(t, "bob", "ghost")
	bobID, ghost := ids[0], ids[1]
	zkchatManager(t, e, nil)
	k := zkchatKafka(t, e)
	bob := zkchatWorker(t, e, bobID, k, 20*time.Second)
	ctx := context.Background()
	if _, err := bob.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if err := bob.GoOnline(ctx); err != nil {
		t.Fatal(err)
	}
	raw := newForeignWorker(t, e.ZKServers, e.Chroot, e.Kafka, ghost) // never registers
	records := []struct{ key, value []byte }{
		{[]byte(ghost), []byte("from a valid id nobody registered")},
		{[]byte("Not An Id!"), []byte("from a key that is no id")},
		{nil, []byte("from no key at all")},
		{[]byte(ghost), []byte("not UTF-8: \xff\xfe")},
		{[]byte(ghost), []byte(strings.Repeat("longer than any zkchat worker sends ", 300))},
	}
	for _, r := range records {
		if err := produce(raw.prod, bobID, r.key, r.value); err != nil {
			t.Fatal(err)
		}
	}
	var got []protocol.Message
	n, err := bob.ReadMessages(ctx, func(m protocol.Message) error { got = append(got, m); return nil })
	if err != nil || n != len(records) {
		t.Fatalf("read %d records (%v), want %d", n, err, len(records))
	}
	for i, r := range records {
		if got[i].From != string(r.key) || got[i].Text != string(r.value) || got[i].To != bobID {
			t.Errorf("record %d read as %q → %q: %q; want %q → %q: %q", i, got[i].From, got[i].To, got[i].Text, r.key, bobID, r.value)
		}
	}
	if n, err := bob.ReadMessages(ctx, func(protocol.Message) error { return nil }); err != nil || n != 0 {
		t.Errorf("unread after reading all: %d, %v", n, err)
	}
}

// TestAnsweredRequestLeftBehind: a request node that another
// implementation answered and left (its worker never deleted it) is not
// read as the answer to zkchat's next request of that id: with no manager
// running, zkchat's Register and Quit run into ErrManagerTimeout rather
// than taking the old "1" or "2" for success, and remove the old node;
// with the foreign manager running, the worker's own new node is answered
// and the user is really registered.
func TestAnsweredRequestLeftBehind(t *testing.T) {
	t.Parallel()
	e, ids := setup(t, "carol", "dave")
	carol, dave := ids[0], ids[1]
	conn := e.Conn(t)
	if err := createZkTreeStructure(conn, e.Chroot); err != nil {
		t.Fatal(err)
	}
	leave := func(path, code string) {
		t.Helper()
		if _, err := conn.Create(e.Path(path), []byte(code), 0, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
	}
	exists := func(path string) bool {
		t.Helper()
		ok, _, err := conn.Exists(e.Path(path))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	ctx := context.Background()
	w := zkchatWorker(t, e, carol, nil, 2*time.Second)

	// No manager: an old "1" must not register carol.
	leave("/request/enroll/"+carol, codeDone)
	st, err := w.Register(ctx)
	if !errors.Is(err, protocol.ErrManagerTimeout) {
		t.Fatalf("register with an old answered node and no manager = %v, %v; want ErrManagerTimeout", st, err)
	}
	if exists("/registry/"+carol) || exists("/request/enroll/"+carol) {
		t.Fatalf("after the timeout: registered %v, request node left %v; want neither",
			exists("/registry/"+carol), exists("/request/enroll/"+carol))
	}

	// No manager: an old "2" must not unregister carol.
	leave("/registry/"+carol, "")
	leave("/request/quit/"+carol, codeAlready)
	st, err = w.Quit(ctx)
	if !errors.Is(err, protocol.ErrManagerTimeout) {
		t.Fatalf("quit with an old answered node and no manager = %v, %v; want ErrManagerTimeout", st, err)
	}
	if !exists("/registry/"+carol) || exists("/request/quit/"+carol) {
		t.Fatalf("after the timeout: registered %v (want true), request node left %v (want false)",
			exists("/registry/"+carol), exists("/request/quit/"+carol))
	}

	// The foreign manager answers the worker's own node: dave is registered.
	leave("/request/enroll/"+dave, codeDone)
	startForeignManager(t, e.ZKServers, e.Chroot, e.Kafka)
	wd := zkchatWorker(t, e, dave, nil, 20*time.Second)
	if st, err := wd.Register(ctx); err != nil || st != protocol.StatusDone {
		t.Fatalf("register with an old answered node and the foreign manager = %v, %v", st, err)
	}
	if !exists("/registry/"+dave) || exists("/request/enroll/"+dave) {
		t.Fatalf("after register: registered %v (want true), request node left %v (want false)",
			exists("/registry/"+dave), exists("/request/enroll/"+dave))
	}
}

// TestZkchatManagerAndForeignNodes: what zkchat's leader does with nodes
// another implementation may leave in its tree. A request whose data is no
// status code and a request for a name that is no valid id are answered 0
// and, like every answered request, removed after AnswerGrace; an online
// node of an id not registered is deleted, and so is one that is not
// ephemeral (of a registered id); a registry node without data
// (a manager following the course writes none) is a registered user, who
// goes online (zkchat's leader makes the topic) and quits.
func TestZkchatManagerAndForeignNodes(t *testing.T) {
	t.Parallel()
	e, ids := setup(t, "erin", "frank", "gina")
	erin, frank, gina := ids[0], ids[1], ids[2]
	const grace = 3 * time.Second
	zkchatManager(t, e, func(c *manager.Config) { c.AnswerGrace = grace })
	conn := e.Conn(t)
	create := func(path, data string, flags int32) {
		t.Helper()
		if _, err := conn.Create(e.Path(path), []byte(data), flags, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
	}
	// answeredThenGone waits until each of paths holds want (all at once:
	// they are answered together, and each stays for the grace only), then
	// until they are gone.
	answeredThenGone := func(want string, paths ...string) {
		t.Helper()
		seen := map[string]bool{}
		testenv.WaitFor(t, 10*time.Second, fmt.Sprint(paths, " answered ", want), func() bool {
			for _, p := range paths {
				if d, _, err := conn.Get(e.Path(p)); err == nil && string(d) == want {
					seen[p] = true
				}
			}
			return len(seen) == len(paths)
		})
		testenv.WaitFor(t, grace+10*time.Second, fmt.Sprint(paths, " removed after the grace"), func() bool {
			for _, p := range paths {
				if ok, _, err := conn.Exists(e.Path(p)); err != nil || ok {
					return false
				}
			}
			return true
		})
	}
	create("/request/enroll/"+erin, "please", 0)
	create("/request/enroll/Not.An-ID", codePending, 0)
	answeredThenGone(codeFailed, "/request/enroll/"+erin, "/request/enroll/Not.An-ID")
	for _, p := range []string{"/registry/" + erin, "/registry/Not.An-ID"} {
		if ok, _, err := conn.Exists(e.Path(p)); err != nil || ok {
			t.Errorf("%s exists after a refused request: %v %v", p, ok, err)
		}
	}

	// An online node of an id nobody registered, in another session.
	other := dialZK(t, e.ZKServers)
	if _, err := other.Create(e.Path("/online/"+frank), nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "unregistered online node deleted", func() bool {
		ok, _, err := conn.Exists(e.Path("/online/" + frank))
		return err == nil && !ok
	})

	// A persistent online node, of a registered id: presence that outlives
	// every session is removed.
	create("/registry/"+frank, "", 0)
	create("/online/"+frank, "", 0)
	testenv.WaitFor(t, 10*time.Second, "persistent online node deleted", func() bool {
		ok, _, err := conn.Exists(e.Path("/online/" + frank))
		return err == nil && !ok
	})

	// A registry node with no data, as the course's manager writes it.
	create("/registry/"+gina, "", 0)
	k := zkchatKafka(t, e)
	w := zkchatWorker(t, e, gina, k, 20*time.Second)
	ctx := context.Background()
	if err := w.GoOnline(ctx); err != nil {
		t.Fatalf("online with a registry node without data: %v", err)
	}
	if st, err := w.Register(ctx); err != nil || st != protocol.StatusAlready {
		t.Fatalf("register of a user a foreign manager registered = %v, %v; want %v", st, err, protocol.StatusAlready)
	}
	if st, err := w.Quit(ctx); err != nil || st != protocol.StatusDone {
		t.Fatalf("quit = %v, %v", st, err)
	}
	if ok, _, err := conn.Exists(e.Path("/registry/" + gina)); err != nil || ok {
		t.Fatalf("registry node after quit: %v %v", ok, err)
	}
}
