package irctest

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// Client is a raw IRC client: it speaks the protocol by hand, so a test sees
// exactly what the server relays. It answers PINGs itself; every other line
// is kept (the newest 20,000 at most) until a Wait consumes it. Its reading
// goroutine ends when the connection closes (Close, or the test's cleanup).
type Client struct {
	t     testing.TB
	Nick  string
	conn  net.Conn
	lines *Lines
	// OnText, when set before the first message arrives, gets the sender
	// nick and text of every PRIVMSG and NOTICE to this client, in the
	// reading goroutine.
	OnText func(from, text string)
	closed chan struct{}
}

// Dial connects nick to the server at addr and waits for the welcome; the
// test's cleanup quits and closes it.
func Dial(t testing.TB, addr, nick string) *Client {
	t.Helper()
	return DialText(t, addr, nick, nil)
}

// DialText is Dial with OnText set.
func DialText(t testing.TB, addr, nick string, onText func(from, text string)) *Client {
	t.Helper()
	return DialAs(t, addr, nick, nick, onText)
}

// DialAs is DialText with the USER name given (a nick may have bytes a
// user name may not).
func DialAs(t testing.TB, addr, nick, user string, onText func(from, text string)) *Client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("irc %s: %v", addr, err)
	}
	u := &Client{t: t, Nick: nick, conn: c, lines: newLines(t, nick), OnText: onText, closed: make(chan struct{})}
	t.Cleanup(u.Close)
	go u.read()
	u.Send("NICK " + nick)
	u.Send("USER " + user + " 0 * :" + user)
	if _, ok := u.TryWait(20*time.Second, func(l string) bool { return strings.Contains(l, " 001 ") }); !ok {
		t.Fatalf("irc %s: %s got no welcome; got %q", addr, nick, u.All())
	}
	return u
}

// Close quits and closes the connection, and waits for the reader.
func (u *Client) Close() {
	select {
	case <-u.closed:
		return
	default:
	}
	u.Send("QUIT :test over")
	u.conn.Close()
	<-u.closed
}

func (u *Client) read() {
	defer close(u.closed)
	sc := bufio.NewScanner(u.conn)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "PING ") {
			fmt.Fprintf(u.conn, "PONG %s\r\n", line[5:])
			continue
		}
		if from, text, ok := TextOf(line, u.Nick); ok && u.OnText != nil {
			u.OnText(from, text)
		}
		u.lines.mu.Lock()
		if len(u.lines.lines) > 20000 { // bound memory under floods: keep the newest
			u.lines.lines = u.lines.lines[10000:]
		}
		u.lines.mu.Unlock()
		u.lines.add(line)
	}
}

// TextOf parses ":nick!u@h PRIVMSG|NOTICE <me> :text".
func TextOf(line, me string) (from, text string, ok bool) {
	if !strings.HasPrefix(line, ":") {
		return "", "", false
	}
	f := strings.SplitN(line[1:], " ", 4)
	if len(f) < 4 || (f[1] != "PRIVMSG" && f[1] != "NOTICE") || !strings.EqualFold(f[2], me) {
		return "", "", false
	}
	from, _, _ = strings.Cut(f[0], "!")
	return from, strings.TrimPrefix(f[3], ":"), true
}

// Send writes one line.
func (u *Client) Send(line string) {
	if _, err := fmt.Fprintf(u.conn, "%s\r\n", line); err != nil {
		u.t.Logf("%s: send %q: %v", u.Nick, line, err)
	}
}

// Wait returns the first unseen line that matches, consuming lines up to
// it; it fails the test after d.
func (u *Client) Wait(d time.Duration, match func(string) bool) string {
	u.t.Helper()
	return u.lines.wait(d, match)
}

// TryWait is Wait that reports failure (after d, or when the connection
// has closed) instead of failing the test.
func (u *Client) TryWait(d time.Duration, match func(string) bool) (string, bool) {
	return u.lines.tryWaitUntil(d, u.closed, match)
}

// WaitFrom waits up to 20 s for a cmd (PRIVMSG, NOTICE, ...) from bot
// containing text.
func (u *Client) WaitFrom(bot, cmd, text string) string {
	u.t.Helper()
	return u.Wait(20*time.Second, func(l string) bool {
		return strings.HasPrefix(strings.ToLower(l), ":"+strings.ToLower(bot)+"!") &&
			strings.Contains(l, " "+cmd+" ") && strings.Contains(l, text)
	})
}

// All returns the unseen lines.
func (u *Client) All() []string { return u.lines.all() }

// Names asks for channel's members and returns their nicks (prefixes like
// @ and + removed).
func (u *Client) Names(channel string) ([]string, error) {
	u.Send("NAMES " + channel)
	var nicks []string
	for {
		l, ok := u.TryWait(10*time.Second, func(l string) bool {
			f := strings.Fields(l)
			return len(f) > 2 && (f[1] == "353" || f[1] == "366")
		})
		if !ok {
			return nil, fmt.Errorf("NAMES %s: no answer", channel)
		}
		f := strings.Fields(l)
		if f[1] == "366" {
			return nicks, nil
		}
		_, list, _ := strings.Cut(l[1:], " :")
		for _, n := range strings.Fields(list) {
			nicks = append(nicks, strings.TrimLeft(n, "~&@%+"))
		}
	}
}
