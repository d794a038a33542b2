package bridge

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zkchat/zkchat/internal/irctest"
	"github.com/zkchat/zkchat/protocol"
)

// TestFakeDeliveryEscapes: what reaches an IRC user from a record, word for
// word. IRC's own formatting codes pass; terminal escapes, the other C0 and
// C1 controls, DEL, CR, LF, NUL and CTCP's \x01 are shown escaped (\xNN,
// \u0080-\u009f) and never split or end the line; a key that is not a valid
// id is shown quoted and escaped, and a valid id that decodes to no nick is
// shown as the id, so neither forges a different-looking sender.
func TestFakeDeliveryEscapes(t *testing.T) {
	t.Parallel()
	s := startFake(t, nil, "alice")
	waitUntil(t, "alice online", func() bool { return s.net.isOnline("alice") })
	for _, c := range []struct{ from, text, want string }{
		{"bob", "\x02bold\x02 \x0304,01red\x03 \x04ff0000hex\x0f \x11mono\x11 \x16rev\x16 \x1dit\x1d \x1estrike\x1e \x1fund\x1f",
			"<bob> \x02bold\x02 \x0304,01red\x03 \x04ff0000hex\x0f \x11mono\x11 \x16rev\x16 \x1dit\x1d \x1estrike\x1e \x1fund\x1f"},
		{"bob", "clear\x1b[2J\x1b[H bell\x07 csi\u009b2J del\x7f",
			`<bob> clear\x1b[2J\x1b[H bell\x07 csi\u009b2J del\x7f`},
		{"bob", "a\r\nPRIVMSG #chatroom :evil\x00nul \x01ACTION dcc\x01",
			`<bob> a\x0d\x0aPRIVMSG #chatroom :evil\x00nul \x01ACTION dcc\x01`},
		{"bob\x1b[2J", "key with ESC", `<"bob\x1b\x5b2J"> key with ESC`},
		{"eve> <bob", "forged sender", `<"eve\x3e\x20\x3cbob"> forged sender`},
		{"bob\r\n", "key with CR LF", `<"bob\x0d\x0a"> key with CR LF`},
		{"\x0304bob", "coloured key", `<"\x0304bob"> coloured key`},
		{"", "keyless", `<""> keyless`},
		{"evil_1b_5b2j_0d_0a", "decodes to controls", `<evil_1b_5b2j_0d_0a> decodes to controls`},
		{"0_7bx_7d", "a nick with braces", `<{x}> a nick with braces`},
		// "[x]" is "{x}" under rfc1459: shown decoded, it would pass for 0_7bx_7d.
		{"0_5bx_5d", "no nick maps to it", `<0_5bx_5d> no nick maps to it`},
	} {
		s.net.put(c.from, "alice", c.text)
		line := s.privmsg(t, "alice", "")
		_, got, _ := strings.Cut(line, "PRIVMSG alice :")
		if got != c.want {
			t.Errorf("record %q: %q\n got %q\nwant %q", c.from, c.text, got, c.want)
		}
	}
}

// TestFakeDeliveryTooLong: a record over protocol.MaxMessageBytes written
// by another producer reaches the IRC user as its first part, in a dozen
// lines at most, the last one saying how long it was; it is committed.
func TestFakeDeliveryTooLong(t *testing.T) {
	t.Parallel()
	s := startFake(t, nil, "alice")
	waitUntil(t, "alice online", func() bool { return s.net.isOnline("alice") })
	s.net.put("bob", "alice", strings.Repeat("0123456789 ", 1<<20/11)+"x") // 1 MB
	s.net.put("bob", "alice", "next")
	var lines []string
	for {
		line := s.privmsg(t, "alice", "")
		_, text, _ := strings.Cut(line, "PRIVMSG alice :")
		if text == "<bob> next" {
			break
		}
		lines = append(lines, text)
		if len(lines) > 20 {
			t.Fatalf("more than 20 lines for one record; the last: %q", text)
		}
	}
	if len(lines) < 10 || !strings.HasSuffix(lines[len(lines)-1], " [truncated: 1048576 bytes, limit 4096]") {
		t.Fatalf("%d lines, the last %q; want about 11, the last with the marker", len(lines), lines[len(lines)-1])
	}
	if head := strings.TrimPrefix(strings.Join(lines, ""), "<bob> "); len(head) > protocol.MaxMessageBytes+60 ||
		!strings.HasPrefix(head, "0123456789 0123456789 ") {
		t.Fatalf("the text shown is %d bytes: %.60q…", len(head), head)
	}
	waitUntil(t, "both records committed", func() bool { return s.net.committedOf("alice") == 2 })
}

// TestFakeSendTooLong: msg with a text over protocol.MaxMessageBytes (an
// IRC server that takes long lines) is refused with a notice that says the
// size and the limit; nothing is sent.
func TestFakeSendTooLong(t *testing.T) {
	t.Parallel()
	s := startFake(t, nil, "alice", "bob")
	waitUntil(t, "both online", func() bool { return s.net.isOnline("alice") && s.net.isOnline("bob") })
	s.from("alice", "PRIVMSG zkchat :msg bob "+strings.Repeat("x", protocol.MaxMessageBytes+1))
	s.notice(t, "alice", "Not sent: the message is 4097 bytes, more than the limit of 4096 bytes.")
	s.from("alice", "PRIVMSG zkchat :bob: short")
	s.privmsg(t, "bob", "<alice> short")
	s.net.mu.Lock()
	n := len(s.net.topics["bob"])
	s.net.mu.Unlock()
	if n != 1 {
		t.Fatalf("bob's topic holds %d messages, want the short one", n)
	}
}

// TestRecheckAccountsScoped: the end of a WHO for one nick (girc asks one
// for every JOIN) wakes that nick's user, and only if it was refused for its
// account; the end of the channel's WHO wakes every refused user. Before,
// each woke every user: n JOINs, n² wake-ups (10^8 at 10,000 users, which
// kept the handlers seconds behind).
func TestRecheckAccountsScoped(t *testing.T) {
	t.Parallel()
	n := newFakeNet()
	b, err := newBridge(Config{Server: "127.0.0.1:1", ZooKeeper: "127.0.0.1:1"}, nil, fakeDir{n: n})
	if err != nil {
		t.Fatal(err)
	}
	b.newWorker = func(id string) worker { return &fakeWorker{n: n, id: id} }
	users := map[string]*user{}
	for _, id := range []string{"alice", "bob", "carol", "dave"} {
		u := newUser(b, id) // no goroutine: its wake-ups stay in u.kick
		u.refused = id == "bob" || id == "carol"
		users[id] = u
		b.m.users[id] = u
	}
	woken := func() (ids []string) {
		for _, id := range []string{"alice", "bob", "carol", "dave"} {
			select {
			case <-users[id].kick:
				ids = append(ids, id)
			default:
			}
		}
		return ids
	}
	b.recheckAccounts("dave")
	if got := woken(); len(got) != 0 {
		t.Fatalf("WHO dave woke %v, want nobody (dave was not refused)", got)
	}
	b.recheckAccounts("bob")
	if got := woken(); !slices.Equal(got, []string{"bob"}) || users["bob"].refused || !users["carol"].refused {
		t.Fatalf("WHO bob woke %v, want [bob]; refused: bob %v carol %v", got, users["bob"].refused, users["carol"].refused)
	}
	b.recheckAccounts("#chatroom")
	if got := woken(); !slices.Equal(got, []string{"carol"}) {
		t.Fatalf("WHO #chatroom woke %v, want [carol]", got)
	}
}

// TestFakeQuitConfirm: quit asks first, saying what it deletes and how
// /quit and /part differ; a second quit (within a minute) or `quit
// confirm` unregisters.
func TestFakeQuitConfirm(t *testing.T) {
	t.Parallel()
	s := startFake(t, nil, "alice", "bob")
	waitUntil(t, "both online", func() bool { return s.net.isOnline("alice") && s.net.isOnline("bob") })
	s.from("alice", "PRIVMSG zkchat :quit")
	s.notice(t, "alice", "quit unregisters alice: you go offline, and the messages not yet delivered to you are deleted. To do it, send `quit confirm`")
	if !s.isRegistered("alice") || !s.net.isOnline("alice") {
		t.Fatal("an unconfirmed quit unregistered alice")
	}
	s.from("alice", "PRIVMSG zkchat :quit")
	s.notice(t, "alice", "Unregistered alice.")
	waitUntil(t, "alice unregistered", func() bool { return !s.isRegistered("alice") })
	s.from("bob", "PRIVMSG zkchat :quit confirm")
	s.notice(t, "bob", "Unregistered bob.")
	waitUntil(t, "bob unregistered", func() bool { return !s.isRegistered("bob") })
}

// TestFakeNotOnlineAdvice: a registered user who left the channel and
// sends is told to join it again, not to register.
func TestFakeNotOnlineAdvice(t *testing.T) {
	t.Parallel()
	s := startFake(t, nil, "alice", "bob")
	waitUntil(t, "both online", func() bool { return s.net.isOnline("alice") && s.net.isOnline("bob") })
	s.from("alice", "PART #chatroom")
	waitUntil(t, "alice offline", func() bool { return !s.net.isOnline("alice") })
	s.from("alice", "PRIVMSG zkchat :bob: hi")
	s.notice(t, "alice", "Not sent: you are not online: you are registered, but not in #chatroom. Join it to be online.")
	s.from("carol", "PRIVMSG zkchat :bob: hi")
	s.notice(t, "carol", "Not sent: you are not online: you are not registered. Register (/msg zkchat register) and join #chatroom.")
}

// TestFakeSplitPiecesJoined: a client's split pieces of one long line (each
// filling IRC's line) are one message; a bare command word after such a
// line is a command, not a piece; a long msg that does not fill its line is
// sent at once, and a command after it is a command; a line-filling msg
// with nothing after it goes after joinWait, with a warning that the
// server may have cut it.
func TestFakeSplitPiecesJoined(t *testing.T) {
	t.Parallel()
	s := startFake(t, nil, "alice", "bob")
	waitUntil(t, "both online", func() bool { return s.net.isOnline("alice") && s.net.isOnline("bob") })
	topic := func() []string {
		s.net.mu.Lock()
		defer s.net.mu.Unlock()
		var texts []string
		for _, m := range s.net.topics["bob"] {
			texts = append(texts, m.Text)
		}
		return texts
	}
	prefix := ":alice!alice@users.test PRIVMSG zkchat :"
	// Pieces as a splitting client sends them: each line 500 bytes.
	a := strings.Repeat("a", 500-len(prefix+"msg bob "))
	b := strings.Repeat("b ", (500-len(prefix))/2)
	s.from("alice", "PRIVMSG zkchat :msg bob "+a)
	s.from("alice", "PRIVMSG zkchat :"+b)
	s.from("alice", "PRIVMSG zkchat :who: the end")
	waitUntil(t, "one message", func() bool { return len(topic()) == 1 })
	if got := topic()[0]; got != a+b+"who: the end" {
		t.Fatalf("joined %q", got)
	}
	// A command word is not a piece.
	s.from("alice", "PRIVMSG zkchat :msg bob "+a)
	s.from("alice", "PRIVMSG zkchat :who")
	s.notice(t, "alice", "Online (2)")
	waitUntil(t, "the long one sent", func() bool { return len(topic()) == 2 && topic()[1] == a })
	// A long message that does not fill its line goes at once; the next
	// line is a command.
	long := strings.Repeat("l", 300)
	s.from("alice", "PRIVMSG zkchat :msg bob "+long)
	s.from("alice", "PRIVMSG zkchat :bob: next")
	waitUntil(t, "two more messages", func() bool { return len(topic()) == 4 })
	if got := topic()[2:]; got[0] != long || got[1] != "next" {
		t.Fatalf("got %q", got)
	}
	// Alone, a line-filling one goes after joinWait; at the server's
	// limit, with a warning.
	start := time.Now()
	cut := strings.Repeat("c", ircLineMax-len(prefix+"msg bob "))
	s.from("alice", "PRIVMSG zkchat :msg bob "+cut)
	s.srv.Wait(joinWait+5*time.Second, irctest.Command("NOTICE", "alice :Your message's last line reached IRC's line limit (510 bytes)"))
	if len(topic()) != 5 || topic()[4] != cut || time.Since(start) < joinWait-100*time.Millisecond {
		t.Fatalf("after %s: %d messages", time.Since(start), len(topic()))
	}
}

// TestFakeTopicAndChannelHelp: a channel without a topic gets one that says
// what the bot is; "zkchat: help" said in the channel is answered in
// private; other lines to the bot in the channel say where commands go;
// other channel talk is not answered.
func TestFakeTopicAndChannelHelp(t *testing.T) {
	t.Parallel()
	s := startFake(t, nil, "alice")
	s.srv.Wait(5*time.Second, irctest.Command("TOPIC", "#chatroom :zkchat: chat with zkchat users over ZooKeeper and Kafka. /msg zkchat help"))
	s.from("alice", "PRIVMSG #chatroom :ZKchat: help")
	s.notice(t, "alice", "zkchat bridge: chat with registered users")
	s.from("alice", "PRIVMSG #chatroom :zkchat, who")
	s.notice(t, "alice", "Commands go to me in private: /msg zkchat help")
	s.from("alice", "PRIVMSG #chatroom :hello everyone")
	s.from("alice", "PRIVMSG #chatroom :zkchatter: hi")
	s.from("alice", "PRIVMSG zkchat :who")
	if l := s.notice(t, "alice", "Online"); !strings.Contains(l, "Online (1)") {
		t.Fatalf("who: %q", l)
	}
}

// TestFakeOutageTold: a user whose presence is still held by the bridge's
// own session from before an outage is told, once, that it is offline for
// a moment and why, not that it is "online elsewhere" (which kept it
// offline until it rejoined), and is told when it is back online.
func TestFakeOutageTold(t *testing.T) {
	t.Parallel()
	s := startFake(t, nil, "alice", "bob")
	waitUntil(t, "alice online", func() bool { return s.net.isOnline("alice") })
	w := s.net.worker("alice")
	w.lose(protocol.ErrAlreadyOnline)
	// The node of the bridge's session before the outage, still there.
	s.net.mu.Lock()
	s.net.online["alice"] = onlineMeta{Via: "irc", Bridge: "zkchat", Channel: "#chatroom"}
	s.net.onlineSess["alice"] = 99
	s.net.mu.Unlock()
	s.notice(t, "alice", "You are offline for a moment: the bridge's connection to ZooKeeper was interrupted")
	time.Sleep(time.Second) // a few retries
	s.from("bob", "PRIVMSG zkchat :who")
	s.notice(t, "bob", "Online")
	s.net.mu.Lock()
	delete(s.net.online, "alice") // ZooKeeper ends the old session
	delete(s.net.onlineSess, "alice")
	s.net.mu.Unlock()
	s.notice(t, "alice", "You are back online.")
	for _, l := range s.srv.Lines() {
		if strings.Contains(l, "online elsewhere") || strings.Count(l, "offline for a moment") > 0 {
			t.Fatalf("told again, or told wrong: %q", l)
		}
	}
}

// TestFakeStaleNodeCleared: after an outage that replaced the bridge's
// ZooKeeper session, a user's /online node of the session before is
// deleted at once, not waited out: the user is back online without a word,
// and who and msg agree.
func TestFakeStaleNodeCleared(t *testing.T) {
	t.Parallel()
	s := startFake(t, nil, "alice", "bob")
	waitUntil(t, "alice online", func() bool { return s.net.isOnline("alice") })
	w := s.net.worker("alice")
	s.net.mu.Lock()
	s.net.earlier[99] = 0 // session 99 was the bridge's before the outage
	s.net.mu.Unlock()
	w.lose(protocol.ErrAlreadyOnline)
	s.net.mu.Lock()
	s.net.online["alice"] = onlineMeta{Via: "irc", Bridge: "zkchat", Channel: "#chatroom"}
	s.net.onlineSess["alice"] = 99
	s.net.mu.Unlock()
	waitUntil(t, "alice online in the bridge's session", func() bool {
		s.net.mu.Lock()
		defer s.net.mu.Unlock()
		sess, ok := s.net.onlineSess["alice"]
		return ok && sess == 0
	})
	s.from("alice", "PRIVMSG zkchat :msg bob hi")
	waitUntil(t, "the message sent", func() bool {
		s.net.mu.Lock()
		defer s.net.mu.Unlock()
		return len(s.net.topics["bob"]) == 1
	})
	for _, l := range s.srv.Lines() {
		if strings.Contains(l, "offline") || strings.Contains(l, "Not sent") {
			t.Fatalf("told %q", l)
		}
	}
}
