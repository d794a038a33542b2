package bridge_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zkchat/zkchat/bridge"
	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/protocol"
)

// irssi is a real irssi, in a tmux session of its own (a private tmux
// server), typed into with send-keys.
type irssi struct {
	t    *testing.T
	sock string
}

// requireIrssi returns whether irssi and tmux are installed; it skips the
// test (fails it under ZKCHAT_TEST_STRICT=1) when they are not.
func requireIrssi(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"irssi", "tmux"} {
		if _, err := exec.LookPath(bin); err != nil {
			msg := bin + " is missing: scripts/install-deps.sh irc installs it"
			if os.Getenv("ZKCHAT_TEST_STRICT") == "1" {
				t.Fatalf("ZKCHAT_TEST_STRICT=1: %s", msg)
			}
			t.Skip(msg)
		}
	}
}

// startIrssi runs irssi as nick against addr, with a home of its own.
func startIrssi(t *testing.T, addr, nick string) *irssi {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	home := t.TempDir()
	conf := fmt.Sprintf("settings = { core = { real_name = %q; user_name = %q; nick = %q; }; };\n", nick, nick, nick)
	if err := os.WriteFile(filepath.Join(home, "config"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &irssi{t: t, sock: "zkchat-" + testenv.Tag()}
	cmd := fmt.Sprintf("TERM=xterm irssi --home=%s -c %s -p %s -n %s", home, host, port, nick)
	if out, err := exec.Command("tmux", "-L", c.sock, "new-session", "-d", "-s", "irc", "-x", "220", "-y", "50", cmd).CombinedOutput(); err != nil {
		t.Fatalf("tmux: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for w := 1; w <= 4; w++ {
				_ = exec.Command("tmux", "-L", c.sock, "send-keys", "-t", "irc", fmt.Sprintf("/window %d", w), "Enter").Run()
				time.Sleep(300 * time.Millisecond)
				t.Logf("irssi's window %d:\n%s", w, c.screen())
			}
		}
		_ = exec.Command("tmux", "-L", c.sock, "kill-server").Run()
	})
	return c
}

// typeLine types line and Enter into irssi.
func (c *irssi) typeLine(line string) {
	c.t.Helper()
	if out, err := exec.Command("tmux", "-L", c.sock, "send-keys", "-t", "irc", "-l", line).CombinedOutput(); err != nil {
		c.t.Fatalf("send-keys: %v: %s", err, out)
	}
	if out, err := exec.Command("tmux", "-L", c.sock, "send-keys", "-t", "irc", "Enter").CombinedOutput(); err != nil {
		c.t.Fatalf("send-keys: %v: %s", err, out)
	}
}

func (c *irssi) screen() string {
	out, _ := exec.Command("tmux", "-L", c.sock, "capture-pane", "-p", "-t", "irc").CombinedOutput()
	return string(out)
}

// TestIrssiLongMessage: a 1,000-byte line typed into a real irssi, which
// splits it into 3 PRIVMSGs (6 s apart, the last one short), arrives as one zkchat message, both
// through the bot (msg bob <text>) and through bob's puppet (/msg bob).
func TestIrssiLongMessage(t *testing.T) {
	requireIrssi(t)
	t.Parallel()
	users, bots := testenv.IRC(t)
	s := launch(t, &setup{}, bots, users, func(c *bridge.Config) { c.Puppets = true })
	tag := testenv.Tag()
	an, bn := "ir"+tag, "bo"+tag
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bob := s.cliUser(ctx, t, bn, true)
	got := make(chan protocol.Message, 10)
	go func() { _ = bob.FollowMessages(ctx, func(m protocol.Message) error { got <- m; return nil }) }()

	watcher := s.join(t, "w"+tag)
	alice := startIrssi(t, users, an)
	aid, _ := bridge.NickToID(an, bridge.RFC1459)
	waitISON(t, watcher, an, true)
	// Typed once: irssi queues what it sends past 5 lines at once, 2.2 s
	// apart (its flood protection), so retries would hold up what follows.
	alice.typeLine("/join " + s.channel)
	alice.typeLine("/msg " + s.bot + " register")
	s.waitNode(t, s.env.Conn(t), s.env.Path("/online/"+aid), true)
	waitISON(t, watcher, bn, true)

	text := func(mark string) string {
		var b strings.Builder
		for i := 0; b.Len() < 1000; i++ {
			fmt.Fprintf(&b, "%s%04d ", mark, i)
		}
		return strings.TrimSpace(b.String())
	}
	for _, c := range []struct{ how, line, text string }{
		{"through the bot", "/msg " + s.bot + " msg " + bn + " ", text("b")},
		{"through the puppet", "/msg " + bn + " ", text("p")},
	} {
		alice.typeLine(c.line + c.text)
		select {
		case m := <-got:
			if m.From != aid || m.Text != c.text {
				i := 0
				for i < min(len(m.Text), len(c.text)) && m.Text[i] == c.text[i] {
					i++
				}
				t.Fatalf("%s: bob got %d bytes from %s, want the %d typed; they differ at byte %d: got %q, want %q",
					c.how, len(m.Text), m.From, len(c.text), i, m.Text[max(0, i-20):min(len(m.Text), i+20)], c.text[max(0, i-20):min(len(c.text), i+20)])
			}
		case <-time.After(60 * time.Second): // irssi sends a piece every 6 s
			t.Fatalf("%s: bob got nothing", c.how)
		}
	}
	select {
	case m := <-got:
		t.Fatalf("a third message: %q", m.Text)
	case <-time.After(11 * time.Second): // past joinWait: nothing more comes
	}
}
