package bridge_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/zkchat/zkchat/internal/testenv"
)

// TestIRCServerRestart: the IRC server is restarted in the middle of a
// conversation. The bridge reconnects (once, with backoff), the user comes
// back online when it has rejoined, and no message is lost or reordered;
// duplicates are counted and bounded by one delivery batch.
func TestIRCServerRestart(t *testing.T) {
	t.Parallel()
	testenv.NGIRCd(t) // skips, or fails under strict, without ngIRCd
	addr, _, ngircd := testenv.PrivateServer(t, "ngircd", "ZKCHAT_NGIRCD_PORT")
	s := start(t, func(string) string { return addr })
	s.users = addr
	tag := testenv.Tag()
	nick := "rs" + tag
	u, c := s.onlineUser(t, nick)

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	sender := mustRegisterOnline(t, ctx, s, "snd"+tag)
	send := func(i int) {
		for {
			err := sender.SendMessage(ctx, nick, fmt.Sprintf("seq %d", i))
			if err == nil {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("send %d: %v", i, err)
			}
			time.Sleep(50 * time.Millisecond) // offline while the server restarts
		}
	}
	const n = 100
	var got []string
	collect := func(u *ircUser, upto int) {
		for len(got) < upto {
			l := u.waitFrom(s.bot, "PRIVMSG", " seq ")
			got = append(got, l[strings.LastIndex(l, " seq ")+1:])
		}
	}
	for i := 0; i < n/2; i++ {
		send(i)
	}
	collect(u, n/2)
	ngircd("restart")
	// The user's client reconnects and rejoins, as IRC clients do.
	u = s.join(t, nick)
	s.waitNode(t, c, s.env.Path("/online/"+nick), true)
	for i := n / 2; i < n; i++ {
		send(i)
	}
	seen := map[string]int{}
	last := -1
	for len(seen) < n {
		if len(got) == 0 {
			collect(u, 1)
		}
		line := got[0]
		got = got[1:]
		seen[line]++
		var i int
		fmt.Sscanf(line, "seq %d", &i)
		if seen[line] == 1 {
			if i != last+1 {
				t.Fatalf("%q after seq %d: lost or reordered", line, last)
			}
			last = i
		}
	}
	dups := 0
	for _, k := range seen {
		dups += k - 1
	}
	t.Logf("server restart: %d messages, %d duplicates", n, dups)
}
