package bridge

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
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

// A user's sends do not wait for each other's acknowledgement: with the
// first one's acknowledgement held back, the next ones are queued (in
// order) and delivered; a failed acknowledgement is told to its sender; at
// most maxSendsInFlight wait at once, and the next send waits for room.
func TestFakeSendsPipelined(t *testing.T) {
	t.Parallel()
	n := newFakeNet()
	release := make(chan struct{})
	var waiting atomic.Int32
	n.sendAck = func(ctx context.Context, to, text string) error {
		waiting.Add(1)
		defer waiting.Add(-1)
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		if text == "lost" {
			return fmt.Errorf("produce: %w", protocol.ErrOutcomeUnknown)
		}
		return nil
	}
	s := startFakeNet(t, irctest.NewServer(t), n, 0, nil, "alice", "bob")
	waitUntil(t, "both online", func() bool { return s.net.isOnline("alice") && s.net.isOnline("bob") })
	s.from("alice", "PRIVMSG zkchat :bob: lost")
	for i := range maxSendsInFlight + 2 {
		s.from("alice", fmt.Sprintf("PRIVMSG zkchat :bob: m%d", i))
	}
	// The first maxSendsInFlight are queued and delivered while none is
	// acknowledged; the rest wait for room.
	for i := range maxSendsInFlight - 1 {
		s.privmsg(t, "bob", fmt.Sprintf("<alice> m%d", i))
	}
	waitUntil(t, "16 acknowledgements awaited", func() bool { return waiting.Load() == maxSendsInFlight })
	time.Sleep(50 * time.Millisecond)
	s.net.mu.Lock()
	queued := len(s.net.topics["bob"])
	s.net.mu.Unlock()
	if queued != maxSendsInFlight {
		t.Fatalf("%d messages queued with none acknowledged, want %d", queued, maxSendsInFlight)
	}
	close(release)
	s.notice(t, "alice", "Maybe not sent: Kafka did not confirm it in time")
	for i := maxSendsInFlight - 1; i < maxSendsInFlight+2; i++ {
		s.privmsg(t, "bob", fmt.Sprintf("<alice> m%d", i))
	}
	s.net.mu.Lock()
	defer s.net.mu.Unlock()
	var got []string
	for _, m := range s.net.topics["bob"] {
		got = append(got, m.Text)
	}
	want := []string{"lost"}
	for i := range maxSendsInFlight + 2 {
		want = append(want, fmt.Sprintf("m%d", i))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("bob's topic: %q, want %q", got, want)
	}
}
