package bridge_test

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zkchat/zkchat/internal/testenv"
)

// iiPath is where Debian's ii package installs the client.
const iiPath = "/usr/bin/ii"

// iiClient is a real IRC client, suckless ii, driven through its files:
// ii writes what it receives to <dir>/<server>/out (server messages),
// <dir>/<server>/<channel>/out and <dir>/<server>/<peer nick>/out (private
// messages and notices from peer, and what we sent to it), with names
// lower-cased; it reads commands from the FIFO "in" in the same directories.
type iiClient struct {
	t    *testing.T
	nick string
	srv  string // <dir>/<server>

	mu  sync.Mutex
	log bytes.Buffer // ii's stdout (every line it receives) and stderr
}

// requireII returns ii's path, or skips the test (fails it under
// ZKCHAT_TEST_STRICT=1) when ii is not installed.
func requireII(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(iiPath); err == nil {
		return iiPath
	}
	msg := iiPath + " is missing: install Debian's ii package (apt-get install ii, or scripts/install-deps.sh irc)"
	if os.Getenv("ZKCHAT_TEST_STRICT") == "1" {
		t.Fatalf("ZKCHAT_TEST_STRICT=1: %s", msg)
	}
	t.Skip("ii test skipped: " + msg)
	return ""
}

func (c *iiClient) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.log.Write(p)
}

// startII runs ii as nick against addr (host:port) in a temporary directory
// and waits until the server has welcomed it. ii is killed when the test ends.
func startII(t *testing.T, bin, addr, nick string) *iiClient {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := &iiClient{t: t, nick: nick, srv: filepath.Join(dir, host)}
	cmd := exec.Command(bin, "-s", host, "-p", port, "-n", nick, "-i", dir)
	cmd.Stdout, cmd.Stderr = c, c
	if err := cmd.Start(); err != nil {
		t.Fatalf("start ii: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		// ii prints every line it receives: the whole story of a failure.
		c.mu.Lock()
		if t.Failed() && c.log.Len() > 0 {
			t.Logf("ii %s output:\n%s", nick, c.log.String())
		}
		c.mu.Unlock()
	})
	// The 001 reply ("Welcome to the ... Network nick!user@host"): from
	// here on the server takes JOIN and PRIVMSG.
	c.waitFile("out", "Welcome", 20*time.Second)
	return c
}

// send writes one line to the "in" FIFO of sub ("" for the server's,
// else a channel or nick directory). A FIFO open for writing waits for
// ii to have it open for reading; ii reopens it after every writer.
func (c *iiClient) send(sub, line string) {
	c.t.Helper()
	path := filepath.Join(c.srv, strings.ToLower(sub), "in")
	done := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			done <- err
			return
		}
		_, err = f.WriteString(line + "\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			c.t.Fatalf("ii %s: write %q to %s: %v", c.nick, line, path, err)
		}
	case <-time.After(10 * time.Second):
		c.t.Fatalf("ii %s: %s not opened by ii within 10s", c.nick, path)
	}
}

// waitFile waits until the out file of sub has a line containing text,
// and returns that line (the first one).
func (c *iiClient) waitFile(sub, text string, d time.Duration) string {
	c.t.Helper()
	path := filepath.Join(c.srv, strings.ToLower(sub), "out")
	if sub == "out" {
		path = filepath.Join(c.srv, "out")
	}
	deadline := time.Now().Add(d)
	for {
		data, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			c.t.Fatalf("ii %s: %v", c.nick, err)
		}
		for _, l := range strings.Split(string(data), "\n") {
			if strings.Contains(l, text) {
				return l
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("ii %s: no line with %q in %s within %s; it has:\n%s", c.nick, text, path, d, data)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestII: a conversation through the bot from the real IRC client ii (its
// FIFO and files, as a person using it sees them) with a raw test client.
func TestII(t *testing.T) {
	t.Parallel()
	bin := requireII(t)
	s := start(t)
	c := s.env.Conn(t)
	tag := testenv.Tag()
	iiNick, rawNick := "ii"+tag, "raw"+tag
	// Both are plain lower-case nicks, so their ids are the nicks.

	ii := startII(t, bin, s.users, iiNick)
	ii.send("", "/j "+s.channel)
	ii.waitFile(s.channel, iiNick+"("+iiNick+"@", 20*time.Second) // "-!- nick(user@host) has joined #chan"
	// Not registered yet: the bot says so, in the bot's query window.
	ii.waitFile(s.bot, "You are not registered", 20*time.Second)
	// "/j nick text" opens the query and sends text to nick.
	ii.send("", "/j "+s.bot+" register")
	t.Log(ii.waitFile(s.bot, "Registered "+iiNick, 20*time.Second))
	s.waitNode(t, c, s.env.Path("/online/"+iiNick), true)

	raw := s.join(t, rawNick)
	raw.Send("PRIVMSG " + s.bot + " :register")
	raw.WaitFrom(s.bot, "NOTICE", "Registered")
	s.waitNode(t, c, s.env.Path("/online/"+rawNick), true)

	// ii -> raw: a line typed in the bot's query is a command to the bot.
	ii.send(s.bot, "msg "+rawNick+" hello from ii, ünïcode ✓")
	t.Log(raw.WaitFrom(s.bot, "PRIVMSG", "<"+iiNick+"> hello from ii, ünïcode ✓"))

	// raw -> ii: delivered as a private message from the bot, which ii
	// files under the bot's nick.
	raw.Send("PRIVMSG " + s.bot + " :" + iiNick + ": hi ii, from a raw client")
	t.Log(ii.waitFile(s.bot, "<"+s.bot+"> <"+rawNick+"> hi ii, from a raw client", 20*time.Second))

	// who, answered with a notice in the same window.
	ii.send(s.bot, "who")
	ii.waitFile(s.bot, "Online (2): ", 20*time.Second)

	// ii leaves the channel ("/l" in the channel's FIFO): offline, and the
	// raw user's next message is refused.
	ii.send(s.channel, "/l bye")
	s.waitNode(t, c, s.env.Path("/online/"+iiNick), false)
	raw.Send("PRIVMSG " + s.bot + " :msg " + iiNick + " still there?")
	raw.WaitFrom(s.bot, "NOTICE", iiNick+" is offline")
}
