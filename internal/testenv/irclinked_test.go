package testenv

import (
	"bufio"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawIRC is a bare IRC client: it answers PINGs and keeps every other line.
type rawIRC struct {
	t    testing.TB
	nick string
	conn net.Conn

	mu     sync.Mutex
	lines  []string
	closed bool
	more   chan struct{}
}

func dialRaw(t testing.TB, addr, nick string) *rawIRC {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("irc %s: %v", addr, err)
	}
	u := &rawIRC{t: t, nick: nick, conn: c, more: make(chan struct{}, 1)}
	t.Cleanup(func() { u.send("QUIT :test over"); c.Close() })
	go u.read()
	u.send("NICK " + nick)
	u.send("USER " + nick + " 0 * :" + nick)
	u.wait(20*time.Second, func(l string) bool { return strings.Contains(l, " 001 ") })
	return u
}

func (u *rawIRC) read() {
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
	u.mu.Lock()
	u.closed = true
	u.mu.Unlock()
	select {
	case u.more <- struct{}{}:
	default:
	}
}

func (u *rawIRC) send(line string) {
	_, _ = fmt.Fprintf(u.conn, "%s\r\n", line)
}

// wait returns the first unseen line that matches, consuming lines up to it.
func (u *rawIRC) wait(d time.Duration, match func(string) bool) string {
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
		seen, closed := append([]string(nil), u.lines...), u.closed
		u.mu.Unlock()
		if closed {
			u.t.Fatalf("%s: connection closed, no matching line; got %q", u.nick, seen)
		}
		select {
		case <-u.more:
		case <-deadline:
			u.t.Fatalf("%s: no matching line in %s; got %q", u.nick, d, seen)
		}
	}
}

// from matches a line whose source is nick and whose command is cmd.
func from(nick, cmd string) func(string) bool {
	return func(l string) bool {
		return strings.HasPrefix(strings.ToLower(l), ":"+strings.ToLower(nick)+"!") &&
			strings.Contains(l, " "+cmd+" ")
	}
}

// TestIRCLinkedSplitJoin: a client on irc2 sees a client on irc1 quit with
// a netsplit reason when the pair splits, and join again when it relinks;
// twice, with server names shown and hidden.
func TestIRCLinkedSplitJoin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		env    []string
		reason *regexp.Regexp
	}{
		{"names", nil, regexp.MustCompile(`^irc[12]\.zkchat\.test irc[12]\.zkchat\.test$`)},
		{"hidden", []string{"ZKCHAT_IRCL_HIDESPLITS=yes"}, regexp.MustCompile(`^\*\.net \*\.split$`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			t0 := time.Now()
			l := IRCLinked(t, tc.env...)
			t.Logf("pair started in %s: irc1 %s (bot %s, strict %s), irc2 %s; pids %v",
				time.Since(t0).Round(time.Millisecond), l.Addr1, l.Bot1, l.Strict1, l.Addr2, l.Pids(t))
			tag := Tag()
			ch := "#l" + tag
			a := dialRaw(t, l.Addr1, "a"+tag) // on irc1
			b := dialRaw(t, l.Addr2, "b"+tag) // on irc2
			a.send("JOIN " + ch)
			a.wait(10*time.Second, func(s string) bool { return strings.Contains(s, " 366 ") })
			// b sees a in the NAMES, or (when b's JOIN overtook a's on its
			// way over the link) a's JOIN.
			b.send("JOIN " + ch)
			b.wait(10*time.Second, func(s string) bool {
				return (strings.Contains(s, " 353 ") && strings.Contains(s, a.nick)) || from(a.nick, "JOIN")(s)
			})
			for round := 1; round <= 2; round++ {
				l.Split(t)
				for _, c := range []struct{ who, other *rawIRC }{{b, a}, {a, b}} {
					q := c.who.wait(5*time.Second, from(c.other.nick, "QUIT"))
					reason := q[strings.Index(q, " QUIT ")+len(" QUIT "):]
					reason = strings.TrimPrefix(reason, ":")
					if !tc.reason.MatchString(reason) {
						t.Fatalf("round %d: %s saw %s quit with %q, want a netsplit reason like %s", round, c.who.nick, c.other.nick, reason, tc.reason)
					}
					t.Logf("round %d: %s saw %s quit: %q", round, c.who.nick, c.other.nick, reason)
				}
				l.Join(t)
				b.wait(5*time.Second, from(a.nick, "JOIN"))
				a.wait(5*time.Second, from(b.nick, "JOIN"))
				// The channel is whole again: a message crosses the link.
				a.send("PRIVMSG " + ch + " :round " + fmt.Sprint(round))
				b.wait(5*time.Second, func(s string) bool {
					return from(a.nick, "PRIVMSG")(s) && strings.HasSuffix(s, ":round "+fmt.Sprint(round))
				})
			}
		})
	}
}

// TestIRCLinkedStrictFloodLimit pins the strict class's limits (threshold
// 20, commandrate 1000, fakelag off): 19 lines at once pass; the 20th line
// at once is processed and then the client is quit with "Excess Flood",
// so the bridge's default pacing (burst 40) does not survive it.
func TestIRCLinkedStrictFloodLimit(t *testing.T) {
	t.Parallel()
	l := IRCLinked(t)
	flood := func(nick string, n int) (echoed int, quit string) {
		u := dialRaw(t, l.Strict1, nick)
		u.wait(10*time.Second, func(s string) bool { return strings.Contains(s, " 376 ") || strings.Contains(s, " 422 ") })
		// Registration (NICK, USER) left some penalty; it drops by 1 a second.
		time.Sleep(2500 * time.Millisecond)
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "PRIVMSG %s :line %d\r\n", nick, i)
		}
		if _, err := u.conn.Write([]byte(b.String())); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			u.mu.Lock()
			echoed = 0
			for _, s := range u.lines {
				switch {
				case from(nick, "PRIVMSG")(s):
					echoed++
				case strings.HasPrefix(s, "ERROR "):
					quit = s
				}
			}
			closed := u.closed
			u.mu.Unlock()
			if closed || echoed == n {
				break
			}
		}
		return echoed, quit
	}
	tag := Tag()
	if echoed, quit := flood("s"+tag, 19); echoed != 19 || quit != "" {
		t.Fatalf("19 lines at once: %d came back, quit %q; want all 19 and no quit", echoed, quit)
	}
	echoed, quit := flood("k"+tag, 40)
	if !strings.Contains(quit, "Excess Flood") || echoed != 20 {
		t.Fatalf("40 lines at once: %d came back, quit %q; want 20 and Excess Flood", echoed, quit)
	}
	t.Logf("strict class: 19 lines at once pass; of 40 at once, %d are processed, then %q", echoed, quit)
}
