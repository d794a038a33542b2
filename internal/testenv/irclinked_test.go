package testenv

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zkchat/zkchat/internal/irctest"
)

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
			a := irctest.Dial(t, l.Addr1, "a"+tag) // on irc1
			b := irctest.Dial(t, l.Addr2, "b"+tag) // on irc2
			a.Send("JOIN " + ch)
			a.Wait(10*time.Second, func(s string) bool { return strings.Contains(s, " 366 ") })
			// b sees a in the NAMES, or (when b's JOIN overtook a's on its
			// way over the link) a's JOIN.
			b.Send("JOIN " + ch)
			b.Wait(10*time.Second, func(s string) bool {
				return (strings.Contains(s, " 353 ") && strings.Contains(s, a.Nick)) || from(a.Nick, "JOIN")(s)
			})
			for round := 1; round <= 2; round++ {
				l.Split(t)
				for _, c := range []struct{ who, other *irctest.Client }{{b, a}, {a, b}} {
					q := c.who.Wait(5*time.Second, from(c.other.Nick, "QUIT"))
					reason := q[strings.Index(q, " QUIT ")+len(" QUIT "):]
					reason = strings.TrimPrefix(reason, ":")
					if !tc.reason.MatchString(reason) {
						t.Fatalf("round %d: %s saw %s quit with %q, want a netsplit reason like %s", round, c.who.Nick, c.other.Nick, reason, tc.reason)
					}
					t.Logf("round %d: %s saw %s quit: %q", round, c.who.Nick, c.other.Nick, reason)
				}
				l.Join(t)
				b.Wait(5*time.Second, from(a.Nick, "JOIN"))
				a.Wait(5*time.Second, from(b.Nick, "JOIN"))
				// The channel is whole again: a message crosses the link.
				a.Send("PRIVMSG " + ch + " :round " + fmt.Sprint(round))
				b.Wait(5*time.Second, func(s string) bool {
					return from(a.Nick, "PRIVMSG")(s) && strings.HasSuffix(s, ":round "+fmt.Sprint(round))
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
		u := irctest.Dial(t, l.Strict1, nick)
		u.Wait(10*time.Second, func(s string) bool { return strings.Contains(s, " 376 ") || strings.Contains(s, " 422 ") })
		// Registration (NICK, USER) left some penalty; it drops by 1 a second.
		time.Sleep(2500 * time.Millisecond)
		lines := make([]string, n)
		for i := range lines {
			lines[i] = fmt.Sprintf("PRIVMSG %s :line %d", nick, i)
		}
		if err := u.Write(lines...); err != nil { // at once: one write
			t.Fatal(err)
		}
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			var closed bool
			select {
			case <-u.Done():
				closed = true
			default:
			}
			echoed = 0
			for _, s := range u.All() {
				switch {
				case from(nick, "PRIVMSG")(s):
					echoed++
				case strings.HasPrefix(s, "ERROR "):
					quit = s
				}
			}
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
