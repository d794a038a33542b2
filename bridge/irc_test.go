package bridge_test

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// ircUser is a raw IRC client for tests: it speaks the protocol by hand, so
// the test sees exactly what the server relays.
type ircUser struct {
	t    testing.TB
	nick string
	conn net.Conn

	mu    sync.Mutex
	lines []string
	more  chan struct{}
}

func dialIRC(t testing.TB, addr, nick string) *ircUser {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("irc %s: %v", addr, err)
	}
	u := &ircUser{t: t, nick: nick, conn: c, more: make(chan struct{}, 1)}
	t.Cleanup(func() { u.send("QUIT :test over"); c.Close() })
	go u.read()
	u.send("NICK " + nick)
	u.send("USER " + nick + " 0 * :" + nick)
	u.wait(20*time.Second, func(l string) bool { return strings.Contains(l, " 001 ") })
	return u
}

func (u *ircUser) read() {
	sc := bufio.NewScanner(u.conn)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "PING ") {
			fmt.Fprintf(u.conn, "PONG %s\r\n", line[5:])
			continue
		}
		u.mu.Lock()
		u.lines = append(u.lines, line)
		u.mu.Unlock()
		select {
		case u.more <- struct{}{}:
		default:
		}
	}
}

func (u *ircUser) send(line string) {
	if _, err := fmt.Fprintf(u.conn, "%s\r\n", line); err != nil {
		u.t.Logf("%s: send %q: %v", u.nick, line, err)
	}
}

// wait returns the first unseen line that matches, consuming lines up to it.
func (u *ircUser) wait(d time.Duration, match func(string) bool) string {
	u.t.Helper()
	deadline := time.After(d)
	for {
		u.mu.Lock()
		for i, l := range u.lines {
			if match(l) {
				u.lines = u.lines[i+1:]
				u.mu.Unlock()
				return l
			}
		}
		seen := append([]string(nil), u.lines...)
		u.mu.Unlock()
		select {
		case <-u.more:
		case <-deadline:
			u.t.Fatalf("%s: no matching line in %s; got %q", u.nick, d, seen)
		}
	}
}

// waitText waits for a PRIVMSG or NOTICE from the bot containing text.
func (u *ircUser) waitFrom(bot, cmd, text string) string {
	u.t.Helper()
	return u.wait(20*time.Second, func(l string) bool {
		return strings.HasPrefix(strings.ToLower(l), ":"+strings.ToLower(bot)+"!") &&
			strings.Contains(l, " "+cmd+" ") && strings.Contains(l, text)
	})
}

// all returns the unseen lines.
func (u *ircUser) all() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.lines...)
}
