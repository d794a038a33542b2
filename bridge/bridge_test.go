package bridge_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/bridge"
	"github.com/zkchat/zkchat/client"
	"github.com/zkchat/zkchat/internal/irctest"
	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/kafka"
	"github.com/zkchat/zkchat/manager"
	"github.com/zkchat/zkchat/protocol"
)

type setup struct {
	paced   bool // see TestPacedUnderFloodLimits
	env     *testenv.Env
	users   string // IRC address for users
	bot     string // the bot's nick
	channel string
	kafka   *kafka.Clients
	b       *bridge.Bridge
	stop    func()
}

// start runs a manager and a bridge for the test, on its own channel.
// With a proxy function, the bridge reaches the server through it.
func start(t *testing.T, via ...func(string) string) *setup {
	t.Helper()
	return startSetup(t, &setup{}, via...)
}

func startSetup(t *testing.T, s *setup, via ...func(string) string) *setup {
	t.Helper()
	users, bots := testenv.IRC(t)
	for _, f := range via {
		bots = f(bots)
	}
	if s.paced {
		// The users' connect class, with its flood limits, and the bridge's
		// default pacing.
		return launch(t, s, users, users, func(c *bridge.Config) { c.Rate, c.Burst = 0, 0 })
	}
	return launch(t, s, bots, users, nil)
}

// launch runs a manager and a bridge on server (users: where the test's IRC
// users connect) for s, with the bridge's config changed by mod; both stop
// at cleanup (or at s.stop).
func launch(t testing.TB, s *setup, server, users string, mod func(*bridge.Config)) *setup {
	t.Helper()
	env := testenv.New(t)
	tag := testenv.Tag()
	s.env, s.users, s.bot, s.channel = env, users, "zk"+tag, "#t"+tag
	log := testenv.Logger(t)
	m, err := manager.New(manager.Config{ZooKeeper: env.ZooKeeper, Kafka: env.Kafka,
		Topics: protocol.Topics{Prefix: env.Prefix}, Logger: log.With("test", "manager")})
	if err != nil {
		t.Fatal(err)
	}
	s.kafka, err = kafka.New(kafka.Config{Brokers: env.Kafka,
		Topics: protocol.Topics{Prefix: env.Prefix}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cfg := bridge.Config{Server: server, Nick: s.bot, Channel: s.channel,
		ZooKeeper: env.ZooKeeper, Kafka: s.kafka, Rate: -1, Logger: log.With("test", "bridge"),
		SessionTimeout: 4 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	s.b, err = bridge.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	mDone, bDone := make(chan struct{}), make(chan struct{})
	go func() { _ = m.Run(ctx); close(mDone) }()
	go func() { _ = s.b.Run(ctx); close(bDone) }()
	stopped := false
	s.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		<-bDone
		<-mDone
		m.Close()
		s.kafka.Close()
	}
	t.Cleanup(s.stop)
	s.waitSynced(t)
	return s
}

func (s *setup) waitSynced(t testing.TB) { waitSynced(t, s.b, "bridge "+s.bot) }

// waitSynced waits up to 30 s for b to have joined its channel and read its
// member list.
func waitSynced(t testing.TB, b *bridge.Bridge, what string) {
	t.Helper()
	ch, ok := b.Synced()
	if ok {
		return
	}
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not join its channel", what)
	}
}

// join connects nick and joins the test channel.
func (s *setup) join(t *testing.T, nick string) *irctest.Client {
	u := irctest.Dial(t, s.users, nick)
	u.Send("JOIN " + s.channel)
	u.Wait(20*time.Second, func(l string) bool { return strings.Contains(l, " 366 ") })
	return u
}

func (s *setup) waitNode(t *testing.T, c *zk.Conn, path string, want bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, _, err := c.Exists(path)
		if err == nil && ok == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s exists=%v, want %v", path, ok, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestConversation(t *testing.T) {
	t.Parallel()
	s := start(t)
	c := s.env.Conn(t)
	tag := testenv.Tag()
	an, bn := "Al"+tag, "bo["+tag+"]"
	alice, bob := s.join(t, an), s.join(t, bn)
	aid, _ := bridge.NickToID(an, bridge.RFC1459)
	bid, _ := bridge.NickToID(bn, bridge.RFC1459)

	alice.WaitFrom(s.bot, "NOTICE", "not registered")
	for _, u := range []*irctest.Client{alice, bob} {
		u.Send("PRIVMSG " + s.bot + " :register")
		u.WaitFrom(s.bot, "NOTICE", "Registered")
	}
	s.waitNode(t, c, s.env.Path("/online/"+aid), true)
	s.waitNode(t, c, s.env.Path("/online/"+bid), true)

	alice.Send("PRIVMSG " + s.bot + " :msg " + bn + " hello bob, ünïcode ✓")
	bob.WaitFrom(s.bot, "PRIVMSG", "<"+an+"> hello bob, ünïcode ✓")
	bob.Send("PRIVMSG " + s.bot + " :" + an + ": hi back")
	alice.WaitFrom(s.bot, "PRIVMSG", "<"+bn+"> hi back")

	alice.Send("PRIVMSG " + s.bot + " :who")
	l := alice.WaitFrom(s.bot, "NOTICE", "Online (2)")
	if !strings.Contains(l, strings.ToLower(an)) {
		t.Fatalf("who: %q", l)
	}
	alice.Send("PRIVMSG " + s.bot + " :dance")
	alice.WaitFrom(s.bot, "NOTICE", `Unknown command "dance"`)

	// Bob leaves: offline; a message to him is refused with a notice.
	bob.Send("PART " + s.channel)
	s.waitNode(t, c, s.env.Path("/online/"+bid), false)
	alice.Send("PRIVMSG " + s.bot + " :msg " + bn + " are you there?")
	alice.WaitFrom(s.bot, "NOTICE", "is offline")

	alice.Send("PRIVMSG " + s.bot + " :quit")
	alice.WaitFrom(s.bot, "NOTICE", "send `quit confirm`")
	alice.Send("PRIVMSG " + s.bot + " :quit")
	alice.WaitFrom(s.bot, "NOTICE", "Unregistered")
	s.waitNode(t, c, s.env.Path("/registry/"+aid), false)
	s.waitNode(t, c, s.env.Path("/online/"+aid), false)
}

// TestCLIAndIRC: a CLI worker and an IRC user talk both ways, and 300
// messages arrive complete, in order, once.
func TestCLIAndIRC(t *testing.T) {
	t.Parallel()
	s := start(t)
	tag := testenv.Tag()
	nick := "irc" + tag
	u := s.join(t, nick)
	u.Send("PRIVMSG " + s.bot + " :register")
	u.WaitFrom(s.bot, "NOTICE", "Registered")

	cli, err := client.New("cli"+tag, client.Config{ZooKeeper: s.env.ZooKeeper, Kafka: s.kafka})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := cli.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if err := cli.GoOnline(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := cli.SendMessage(ctx, nick, "from the cli")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("send to IRC user: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // the IRC user's online node comes with the bridge's reconcile
	}
	u.WaitFrom(s.bot, "PRIVMSG", "<cli"+tag+"> from the cli")

	u.Send("PRIVMSG " + s.bot + " :cli" + tag + ": from irc")
	got := make(chan string, 1)
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel()
	go func() {
		_ = cli.FollowMessages(rctx, func(m protocol.Message) error {
			got <- m.From + "|" + m.Text
			rcancel()
			return nil
		})
	}()
	select {
	case g := <-got:
		if want := "irc" + tag + "|from irc"; g != want {
			t.Fatalf("cli got %q, want %q", g, want)
		}
	case <-rctx.Done():
		t.Fatal("cli got nothing from the IRC user")
	}

	const n = 300
	for i := 0; i < n; i++ {
		if err := cli.SendMessage(ctx, nick, fmt.Sprintf("seq %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		l := u.WaitFrom(s.bot, "PRIVMSG", "seq ")
		if !strings.HasSuffix(l, fmt.Sprintf(" seq %d", i)) {
			t.Fatalf("message %d: got %q", i, l)
		}
	}
	time.Sleep(300 * time.Millisecond)
	for _, l := range u.All() {
		if strings.Contains(l, " seq ") {
			t.Fatalf("duplicate or extra: %q", l)
		}
	}
}

// TestReconnect: the IRC connection of the bridge breaks in the middle of
// a delivery; it reconnects, the user is still online, and every message
// arrives, in order. Messages written but not yet proven read (no PONG) are
// sent again: duplicates are bounded by one delivery batch, and counted.
func TestReconnect(t *testing.T) {
	t.Parallel()
	var p *proxy
	s := start(t, func(addr string) string { p = newProxy(t, addr); return p.addr() })
	tag := testenv.Tag()
	nick := "rc" + tag
	u, c := s.onlineUser(t, nick)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	sender := mustRegisterOnline(t, ctx, s, "snd"+tag)
	const n = 200
	for i := 0; i < n; i++ {
		if i == n/2 {
			p.cut() // the server "goes away" for the bridge
		}
		if err := sender.SendMessage(ctx, nick, fmt.Sprintf("seq %d", i)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	seen := map[int]int{}
	last := -1
	for len(seen) < n {
		l := u.WaitFrom(s.bot, "PRIVMSG", " seq ")
		var i int
		if _, err := fmt.Sscanf(l[strings.LastIndex(l, " seq ")+1:], "seq %d", &i); err != nil {
			t.Fatalf("bad line %q", l)
		}
		seen[i]++
		if seen[i] == 1 {
			if i != last+1 {
				t.Fatalf("message %d arrived after %d: lost or reordered", i, last)
			}
			last = i
		}
	}
	dups := 0
	for _, k := range seen {
		dups += k - 1
	}
	t.Logf("reconnect: %d messages, %d duplicates after %d cut(s)", n, dups, p.cuts)
	if dups > 300 {
		t.Fatalf("%d duplicates: more than one delivery batch", dups)
	}
	if ok, _, _ := c.Exists(s.env.Path("/online/" + nick)); !ok {
		t.Fatal("user offline after the bridge reconnected")
	}
}

func (s *setup) worker(t *testing.T, id string) *client.Worker {
	w, err := client.New(id, client.Config{ZooKeeper: s.env.ZooKeeper, Kafka: s.kafka})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

func mustRegisterOnline(t *testing.T, ctx context.Context, s *setup, id string) *client.Worker {
	w := s.worker(t, id)
	if _, err := w.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.GoOnline(ctx); err != nil {
		t.Fatal(err)
	}
	return w
}

// TestBadInput: long multi-byte texts with control characters from a
// foreign sender reach the IRC user split under the line limit and
// reassemble to the sanitized text; odd but legal nicks work; nonsense gets
// a notice.
func TestBadInput(t *testing.T) {
	t.Parallel()
	s := start(t)
	tag := testenv.Tag()
	nick := "[x]`^{}|_-" + tag[:3]
	u := s.join(t, nick)
	u.Send("PRIVMSG " + s.bot + " :register")
	u.WaitFrom(s.bot, "NOTICE", "Registered")
	id, err := bridge.NickToID(nick, bridge.RFC1459)
	if err != nil {
		t.Fatal(err)
	}
	c := s.env.Conn(t)
	s.waitNode(t, c, s.env.Path("/online/"+id), true)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sender := mustRegisterOnline(t, ctx, s, "foreign"+tag)
	text := strings.Repeat("ünï€😀 ", 150) + "\r\nline two\x00\x01ACTION dcc\x01 end \xff"
	if err := sender.SendMessage(ctx, id, text); err != nil {
		t.Fatal(err)
	}
	want := "<foreign" + tag + "> " + bridge.Sanitize(text)
	var got strings.Builder
	for got.Len() < len(want) {
		l := u.WaitFrom(s.bot, "PRIVMSG", "")
		if len(l)+2 > 512 {
			t.Fatalf("line of %d bytes", len(l)+2)
		}
		if strings.ContainsAny(l, "\x00\x01\r\n") {
			t.Fatalf("control character on the wire: %q", l)
		}
		got.WriteString(l[strings.Index(l[1:], " :")+3:])
	}
	if got.String() != want {
		t.Fatalf("reassembled text differs:\n got %q\nwant %q", got.String(), want)
	}
	for _, cmd := range []string{"msg", "msg nobody-" + tag + " hi", "\x02bold\x02", "register extra words", ": :"} {
		u.Send("PRIVMSG " + s.bot + " :" + cmd)
		u.WaitFrom(s.bot, "NOTICE", "")
	}
}

// runBridge starts another bridge for s's channel on server; stop ends it.
func (s *setup) runBridge(t *testing.T, server string) (stop func()) {
	t.Helper()
	b, err := bridge.New(bridge.Config{Server: server, Nick: s.bot, Channel: s.channel,
		ZooKeeper: s.env.ZooKeeper, Kafka: s.kafka, Rate: -1, Logger: testenv.Logger(t).With("test", "bridge2"),
		SessionTimeout: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = b.Run(ctx); close(done) }()
	var once bool
	stop = func() {
		if !once {
			once = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}

// TestUnreadDeliveredOnce: messages that reached a user's topic but not
// the user (the bridge lost the IRC server, then stopped: the user went
// offline) are delivered once, in order, when a bridge is back.
func TestUnreadDeliveredOnce(t *testing.T) {
	t.Parallel()
	var p *proxy
	s := start(t, func(addr string) string { p = newProxy(t, addr); return p.addr() })
	tag := testenv.Tag()
	nick := "un" + tag
	u, c := s.onlineUser(t, nick)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	sender := mustRegisterOnline(t, ctx, s, "snd"+tag)

	p.setDown(true)
	p.cut() // the bridge loses the server and cannot come back
	const n = 50
	for i := 0; i < n; i++ {
		if err := sender.SendMessage(ctx, nick, fmt.Sprintf("unread %d", i)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	s.stop() // the bridge stops: the user goes offline with n unread
	s.waitNode(t, c, s.env.Path("/online/"+nick), false)
	for _, l := range u.All() {
		if strings.Contains(l, " unread ") {
			t.Fatalf("delivered while the bridge was cut off: %q", l)
		}
	}
	// A new process: new Kafka clients, a new bridge on the real server.
	s.kafka = s.env.NewKafka(t)
	_, bots := testenv.IRC(t)
	s.runBridge(t, bots)
	for i := 0; i < n; i++ {
		l := u.WaitFrom(s.bot, "PRIVMSG", " unread ")
		if !strings.HasSuffix(l, fmt.Sprintf(" unread %d", i)) {
			t.Fatalf("message %d: got %q", i, l)
		}
	}
	time.Sleep(500 * time.Millisecond)
	for _, l := range u.All() {
		if strings.Contains(l, " unread ") {
			t.Fatalf("delivered twice: %q", l)
		}
	}
}

// TestIdentity, on the network with services accounts (InspIRCd linked to
// Atheme): a nick registered while logged in is bound to its account; the
// nick taken by someone without the account can neither go online (read),
// nor send, nor unregister it.
func TestIdentity(t *testing.T) {
	t.Parallel()
	users, bots := testenv.IRCAccounts(t)
	s := start(t, func(string) string { return bots })
	s.users = users
	c := s.env.Conn(t)
	tag := testenv.Tag()
	nick, pass := "id"+tag, "pw-"+tag
	alice := s.join(t, nick)
	alice.Send("PRIVMSG NickServ :REGISTER " + pass + " " + nick + "@example.com")
	alice.Wait(20*time.Second, func(l string) bool { return strings.Contains(l, " 900 ") })
	// No wait for account-notify: the bot reads the account from the
	// message (account-tag).
	alice.Send("PRIVMSG " + s.bot + " :register")
	alice.WaitFrom(s.bot, "NOTICE", "bound to your services account")
	s.waitNode(t, c, s.env.Path("/online/"+nick), true)
	if d, _, err := c.Get(s.env.Path("/accounts/" + nick)); err != nil || string(d) != nick {
		t.Fatalf("binding = %q, %v", d, err)
	}

	// Logging out takes the nick offline.
	alice.Send("PRIVMSG NickServ :LOGOUT")
	alice.WaitFrom(s.bot, "NOTICE", "registered to the services account")
	s.waitNode(t, c, s.env.Path("/online/"+nick), false)
	// Logging in again brings it back.
	alice.Send("PRIVMSG NickServ :IDENTIFY " + pass)
	s.waitNode(t, c, s.env.Path("/online/"+nick), true)
	alice.Send("QUIT :bye")
	s.waitNode(t, c, s.env.Path("/online/"+nick), false)

	// Mallory takes the nick, without the account.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sender := mustRegisterOnline(t, ctx, s, "snd"+tag)
	mallory := s.join(t, nick)
	mallory.WaitFrom(s.bot, "NOTICE", "registered to the services account")
	time.Sleep(500 * time.Millisecond)
	if ok, _, _ := c.Exists(s.env.Path("/online/" + nick)); ok {
		t.Fatal("impostor is online")
	}
	if err := sender.SendMessage(ctx, nick, "secret"); err == nil {
		t.Fatal("a message could be sent to the impostor's id while it should be offline")
	}
	mallory.Send("PRIVMSG " + s.bot + " :msg snd" + tag + " I am " + nick)
	mallory.WaitFrom(s.bot, "NOTICE", "you are not online")
	mallory.Send("PRIVMSG " + s.bot + " :quit")
	mallory.WaitFrom(s.bot, "NOTICE", "registered to the services account")
	if ok, _, _ := c.Exists(s.env.Path("/registry/" + nick)); !ok {
		t.Fatal("impostor unregistered the nick")
	}
	for _, l := range mallory.All() {
		if strings.Contains(l, " PRIVMSG ") && strings.Contains(l, "secret") {
			t.Fatalf("impostor got a message: %q", l)
		}
	}
}

// TestIdentityRegisterBeforeJoin: a nick logged in to its account that
// registers BEFORE it joins the channel (the bot has seen no JOIN, so no
// extended-join, account-notify or WHOX about it) is bound all the same:
// the bridge takes the account from the message itself (account-tag).
// Whoever takes the nick later without the account cannot unregister it
// from outside the channel, nor go online by joining.
func TestIdentityRegisterBeforeJoin(t *testing.T) {
	t.Parallel()
	users, bots := testenv.IRCAccounts(t)
	s := start(t, func(string) string { return bots })
	s.users = users
	c := s.env.Conn(t)
	tag := testenv.Tag()
	nick, pass := "rb"+tag, "pw-"+tag
	alice := irctest.Dial(t, s.users, nick)
	alice.Send("PRIVMSG NickServ :REGISTER " + pass + " " + nick + "@example.com")
	alice.Wait(20*time.Second, func(l string) bool { return strings.Contains(l, " 900 ") })
	alice.Send("PRIVMSG " + s.bot + " :register")
	alice.WaitFrom(s.bot, "NOTICE", "Registered "+nick)
	alice.WaitFrom(s.bot, "NOTICE", "bound to your services account")
	if d, _, err := c.Get(s.env.Path("/accounts/" + nick)); err != nil || string(d) != nick {
		t.Fatalf("binding = %q, %v", d, err)
	}
	alice.Send("JOIN " + s.channel)
	s.waitNode(t, c, s.env.Path("/online/"+nick), true)
	alice.Send("QUIT :bye")
	s.waitNode(t, c, s.env.Path("/online/"+nick), false)

	// Mallory takes the nick, without the account, and stays out of the
	// channel: the bot knows nothing of her but what her messages say.
	mallory := irctest.Dial(t, s.users, nick)
	mallory.Send("PRIVMSG " + s.bot + " :quit")
	mallory.WaitFrom(s.bot, "NOTICE", "registered to the services account")
	if ok, _, _ := c.Exists(s.env.Path("/registry/" + nick)); !ok {
		t.Fatal("impostor unregistered the nick")
	}
	mallory.Send("PRIVMSG " + s.bot + " :register")
	mallory.WaitFrom(s.bot, "NOTICE", "is registered already")
	if d, _, err := c.Get(s.env.Path("/accounts/" + nick)); err != nil || string(d) != nick {
		t.Fatalf("binding after the impostor's register = %q, %v", d, err)
	}
	mallory.Send("JOIN " + s.channel)
	mallory.WaitFrom(s.bot, "NOTICE", "registered to the services account")
	time.Sleep(500 * time.Millisecond)
	if ok, _, _ := c.Exists(s.env.Path("/online/" + nick)); ok {
		t.Fatal("impostor is online")
	}
}

// TestPacedUnderFloodLimits: a bot in the users' connect class (burst 50,
// then 20 lines a second) delivering a backlog is never disconnected for
// flooding: its default pacing (20 lines/s, bursts of 40) stays under the
// limit, and every message arrives.
func TestPacedUnderFloodLimits(t *testing.T) {
	t.Parallel()
	s := startSetup(t, &setup{paced: true})
	tag := testenv.Tag()
	nick := "pc" + tag
	u, _ := s.onlineUser(t, nick)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	sender := mustRegisterOnline(t, ctx, s, "snd"+tag)
	// 40 at once, then 20/s: about 15 s, longer than a 10 s wait for the
	// PONG behind the queue would allow (once a source of duplicates).
	const n = 300
	for i := 0; i < n; i++ {
		if err := sender.SendMessage(ctx, nick, fmt.Sprintf("paced %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		l := u.WaitFrom(s.bot, "PRIVMSG", " paced ")
		if !strings.HasSuffix(l, fmt.Sprintf(" paced %d", i)) {
			t.Fatalf("message %d: got %q", i, l)
		}
	}
	t.Logf("%d messages through the flood-limited class in %s", n, time.Since(start).Round(time.Millisecond))
	time.Sleep(time.Second)
	for _, l := range u.All() {
		if strings.Contains(l, " paced ") {
			t.Fatalf("duplicate: %q", l)
		}
	}
	if _, ok := s.b.Synced(); !ok {
		t.Fatal("the bot lost its connection")
	}
}

// TestBotKicked: an operator kicks the bot. Everyone it served goes
// offline (it can no longer see the channel), and when it has rejoined
// (after a pause, not in a loop) they are online again.
func TestBotKicked(t *testing.T) {
	t.Parallel()
	s := start(t)
	tag := testenv.Tag()
	nick := "kk" + tag
	u, c := s.onlineUser(t, nick)

	op := irctest.Dial(t, s.users, "op"+tag)
	op.Send("OPER zkadmin zkadmin")
	op.Wait(20*time.Second, func(l string) bool { return strings.Contains(l, " 381 ") })
	op.Send("SAKICK " + s.channel + " " + s.bot + " :test kick")
	s.waitNode(t, c, s.env.Path("/online/"+nick), false)
	// The bot rejoins after 5-10 s and reads the member list again.
	u.Wait(30*time.Second, func(l string) bool {
		return strings.HasPrefix(strings.ToLower(l), ":"+strings.ToLower(s.bot)+"!") && strings.Contains(l, " JOIN ")
	})
	s.waitNode(t, c, s.env.Path("/online/"+nick), true)
}

// TestVisitorsLeakNoSession: nicks that talk to the bot without being in
// the channel, or join without registering and leave, leave no ZooKeeper
// session behind (each command may open one).
func TestVisitorsLeakNoSession(t *testing.T) {
	// Not parallel: it counts this process's ZooKeeper connections.
	s := start(t)
	tag := testenv.Tag()
	before := zkConnections(t)
	for i := 0; i < 10; i++ {
		v := irctest.Dial(t, s.users, fmt.Sprintf("v%d%s", i, tag))
		v.Send("PRIVMSG " + s.bot + " :who") // a command from outside the channel
		v.WaitFrom(s.bot, "NOTICE", "Online")
		v.Send("JOIN " + s.channel) // joins unregistered, is told, leaves
		v.WaitFrom(s.bot, "NOTICE", "not registered")
		v.Send("PART " + s.channel)
		v.Send("QUIT :bye")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		after := zkConnections(t)
		if after <= before+2 { // the bridge's own listing session, and slack
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ZooKeeper connections from this process: %d before, %d after 10 visitors", before, after)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// zkConnections counts this process's TCP connections to ZooKeeper.
func zkConnections(t *testing.T) int {
	t.Helper()
	port := ""
	if i := strings.LastIndexByte(strings.Split(os.Getenv("ZKCHAT_ZOOKEEPER"), "/")[0], ':'); i >= 0 {
		port = strings.Split(os.Getenv("ZKCHAT_ZOOKEEPER"), "/")[0][i+1:]
	}
	if port == "" {
		port = "2181"
	}
	data, err := os.ReadFile("/proc/self/net/tcp")
	if err != nil {
		t.Skip("no /proc/self/net/tcp")
	}
	p, _ := strconv.Atoi(port)
	want := fmt.Sprintf(":%04X ", p)
	n := 0
	for _, l := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(l)
		// remote address is field 2; state 01 is ESTABLISHED
		if len(f) > 3 && strings.HasSuffix(f[2]+" ", want) && f[3] == "01" {
			n++
		}
	}
	return n
}

// onlineUser joins nick to the channel, registers it with the bot, and
// waits until it is online; it returns the user and a ZooKeeper connection.
func (s *setup) onlineUser(t *testing.T, nick string) (*irctest.Client, *zk.Conn) {
	t.Helper()
	u := s.join(t, nick)
	u.Send("PRIVMSG " + s.bot + " :register")
	u.WaitFrom(s.bot, "NOTICE", "Registered")
	c := s.env.Conn(t)
	s.waitNode(t, c, s.env.Path("/online/"+nick), true)
	return u, c
}
