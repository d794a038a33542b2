package bridge_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/zkchat/zkchat/bridge"
	"github.com/zkchat/zkchat/internal/testenv"
)

// TestPacedStrictClass: the bridge in the strict connect class of
// internal/servers (threshold 20, 1 line/s, fakelag off: an ordinary
// network that kills with "Excess Flood"). Its default pacing (20 lines/s,
// bursts of 40) gets it killed by a backlog; pacing matched to the class
// (--rate 1 --burst 10) delivers the backlog whole.
func TestPacedStrictClass(t *testing.T) {
	t.Parallel()
	l := testenv.IRCLinked(t)
	for _, tc := range []struct {
		name        string
		rate        float64
		burst, msgs int
		killed      bool
	}{
		{"default", 0, 0, 60, true},
		{"matched", 1, 10, 25, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startOn(t, l.Strict1, l.Addr1, func(c *bridge.Config) { c.Rate, c.Burst = tc.rate, tc.burst })
			tag := testenv.Tag()
			nick := "st" + tag
			u, _ := s.onlineUser(t, nick)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			sender := mustRegisterOnline(t, ctx, s, "snd"+tag)
			start := time.Now()
			for i := range tc.msgs {
				if err := sender.SendMessage(ctx, nick, fmt.Sprintf("strict %d", i)); err != nil {
					t.Fatal(err)
				}
			}
			if tc.killed {
				got := map[string]bool{}
				q := u.Wait(30*time.Second, func(l string) bool {
					if strings.Contains(l, " PRIVMSG ") && strings.Contains(l, " strict ") {
						got[l] = true
					}
					return strings.HasPrefix(strings.ToLower(l), ":"+s.bot+"!") && strings.Contains(l, " QUIT ")
				})
				if !strings.Contains(q, "Excess Flood") {
					t.Fatalf("the bot quit with %q, want Excess Flood", q)
				}
				t.Logf("default pacing (20/s, burst 40): killed %s after the backlog of %d started (%d delivered before): %q",
					time.Since(start).Round(time.Millisecond), tc.msgs, len(got), q)
				return
			}
			for i := range tc.msgs {
				l := u.Wait(60*time.Second, func(l string) bool {
					return (strings.HasPrefix(strings.ToLower(l), ":"+s.bot+"!") && strings.Contains(l, " PRIVMSG ") && strings.Contains(l, " strict ")) ||
						(strings.HasPrefix(strings.ToLower(l), ":"+s.bot+"!") && strings.Contains(l, " QUIT "))
				})
				if !strings.HasSuffix(l, fmt.Sprintf(" strict %d", i)) {
					t.Fatalf("message %d: got %q", i, l)
				}
			}
			t.Logf("rate %v burst %d: %d messages through the strict class in %s, bot not killed", tc.rate, tc.burst, tc.msgs, time.Since(start).Round(time.Millisecond))
		})
	}
}
