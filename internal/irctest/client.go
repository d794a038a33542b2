package irctest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Client is a raw IRC client: it speaks the protocol by hand, so a test sees
// exactly what the server relays. It answers PINGs itself; every other line
// goes to its line handler (Handle), to OnText when it is a PRIVMSG or NOTICE
// to the client, and, unless Options.NoHistory, into its history (the newest
// 20,000 lines at most), where Wait, TryWait and Names consume it. Its
// reading goroutine ends when the connection closes (Close, or the test's
// cleanup).
type Client struct {
	t     testing.TB // nil for a client from Connect
	Nick  string
	conn  net.Conn
	lines *Lines // nil with Options.NoHistory
	// OnText, when set before the first message arrives, gets the sender
	// nick and text of every PRIVMSG and NOTICE to this client, in the
	// reading goroutine.
	OnText  func(from, text string)
	onLine  atomic.Pointer[LineHandler]
	welcome chan struct{} // closed at the server's 001
	closed  chan struct{}
}

// LineHandler gets a line the client read (without CR LF) and when it was
// read, in the reading goroutine.
type LineHandler func(line string, at time.Time)

// Options are a client's settings besides its nick.
type Options struct {
	// User is the USER name (a nick may have bytes a user name may not);
	// the nick when empty.
	User string
	// OnText sets Client.OnText.
	OnText func(from, text string)
	// DropUnmatched: a wait that gives up (time out, or connection closed)
	// drops the lines it looked at, so that after it only lines that came
	// later are unseen. A matcher then sees each line once, and a wait
	// that never matches consumes everything received so far (the fault
	// suite counts lines that way). Without it, lines a wait passed over
	// stay for the next one.
	DropUnmatched bool
	// NoHistory keeps no lines (for benchmarks, whose clients read far
	// more lines than a test looks at): a line reaches only the handler
	// and OnText; Wait, TryWait, Names and All must not be used.
	NoHistory bool
	// Welcome bounds the wait for the server's welcome (001); 20 s when 0.
	Welcome time.Duration
}

// Dial connects nick to the server at addr and waits for the welcome; the
// test's cleanup quits and closes it.
func Dial(t testing.TB, addr, nick string) *Client {
	t.Helper()
	return DialWith(t, addr, nick, Options{})
}

// DialAs is Dial with the USER name given and OnText set.
func DialAs(t testing.TB, addr, nick, user string, onText func(from, text string)) *Client {
	t.Helper()
	return DialWith(t, addr, nick, Options{User: user, OnText: onText})
}

// DialWith is Dial with options; it fails the test when the server does
// not welcome nick.
func DialWith(t testing.TB, addr, nick string, o Options) *Client {
	t.Helper()
	u, err := connect(t, addr, nick, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.Close)
	return u
}

// Connect is DialWith for code that must not fail a test (several dials
// at once, a helper process): it returns the error, and the caller closes
// the client. Having no test to fail, its client offers TryWait and Names,
// not Wait and WaitFrom.
func Connect(addr, nick string, o Options) (*Client, error) {
	return connect(nil, addr, nick, o)
}

func connect(t testing.TB, addr, nick string, o Options) (*Client, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("irc %s: %w", addr, err)
	}
	u := &Client{t: t, Nick: nick, conn: c, OnText: o.OnText, welcome: make(chan struct{}), closed: make(chan struct{})}
	if !o.NoHistory {
		u.lines = newLines(t, nick)
		u.lines.drop = o.DropUnmatched
	}
	go u.read()
	user := o.User
	if user == "" {
		user = nick
	}
	u.Send("NICK " + nick)
	u.Send("USER " + user + " 0 * :" + user)
	d := o.Welcome
	if d == 0 {
		d = 20 * time.Second
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-u.welcome:
		if u.lines != nil { // what came up to the welcome is seen
			u.lines.match(isWelcome)
		}
		return u, nil
	case <-u.closed:
		err = errors.New("connection closed")
	case <-timer.C:
		err = fmt.Errorf("no welcome after %s", d)
	}
	var got []string
	if u.lines != nil {
		got = u.lines.all()
	}
	u.Close()
	return nil, fmt.Errorf("irc %s: %s: %w; got %q", addr, nick, err, got)
}

func isWelcome(line string) bool { return strings.Contains(line, " 001 ") }

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

// Done is closed when the connection has ended.
func (u *Client) Done() <-chan struct{} { return u.closed }

func (u *Client) read() {
	defer close(u.closed)
	sc := bufio.NewScanner(u.conn)
	sc.Buffer(make([]byte, 4096), 1<<20)
	welcomed := false
	for sc.Scan() {
		line := sc.Text()
		at := time.Now()
		if strings.HasPrefix(line, "PING ") {
			_ = u.Write("PONG " + line[5:])
			continue
		}
		welcome := !welcomed && isWelcome(line)
		welcomed = welcomed || welcome
		if h := u.onLine.Load(); h != nil {
			(*h)(line, at)
		}
		if u.OnText != nil {
			if from, text, ok := TextOf(line, u.Nick); ok {
				u.OnText(from, text)
			}
		}
		if u.lines != nil {
			u.lines.add(line)
		}
		if welcome { // after the line is in the history
			close(u.welcome)
		}
	}
}

// Handle sets the handler of every line from now on (nil: none); safe
// while the client reads.
func (u *Client) Handle(h LineHandler) {
	if h == nil {
		u.onLine.Store(nil)
		return
	}
	u.onLine.Store(&h)
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

// Write writes lines in one write (so the server reads them at once) and
// returns the error.
func (u *Client) Write(lines ...string) error {
	_, err := u.conn.Write([]byte(strings.Join(lines, "\r\n") + "\r\n"))
	return err
}

// Send writes one line; an error is logged (to the test, if any).
func (u *Client) Send(line string) {
	if err := u.Write(line); err != nil && u.t != nil {
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
