package bridge_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zkchat/zkchat/internal/irctest"
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
	collect := func(u *irctest.Client, upto int) {
		for len(got) < upto {
			l := u.WaitFrom(s.bot, "PRIVMSG", " seq ")
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

// TestCleanStopNoRedelivery: the bridge is stopped (its Run's context ends,
// as on SIGTERM) while messages flow to a user. It keeps its IRC connection
// until the deliveries have proved (PING/PONG) and committed what they
// wrote, so the next bridge starts after the last line the user got:
// nothing comes twice, nothing acknowledged is lost. Before, Run quit IRC
// at once, the last proof failed, and a clean restart sent the last lines
// again.
func TestCleanStopNoRedelivery(t *testing.T) {
	t.Parallel()
	s := start(t)
	tag := testenv.Tag()
	nick := "cs" + tag
	u, _ := s.onlineUser(t, nick)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	sender := mustRegisterOnline(t, ctx, s, "snd"+tag)

	// seen counts the copies of each "seq N" the user got.
	seen := func() map[string]int {
		n := map[string]int{}
		for _, l := range u.All() {
			if i := strings.LastIndex(l, " seq "); i >= 0 && strings.Contains(l, " PRIVMSG ") {
				n[l[i+1:]]++
			}
		}
		return n
	}
	var acked atomic.Int64 // "seq 0" .. "seq acked-1" were acknowledged
	sendDone := make(chan struct{})
	go func() {
		defer close(sendDone)
		for i := 0; ctx.Err() == nil; i++ {
			if sender.SendMessage(ctx, nick, fmt.Sprintf("seq %d", i)) != nil {
				return // the user went offline with the bridge
			}
			acked.Add(1)
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for len(seen()) < 50 {
		if time.Now().After(deadline) {
			t.Fatalf("50 messages not delivered in 30 s: %d", len(seen()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.stop() // a clean stop in the middle of the flow
	<-sendDone
	before := len(seen())
	n := int(acked.Load())
	t.Logf("stopped after %d delivered, %d acknowledged", before, n)

	// A new process: new Kafka clients, a new bridge; the user is still in
	// the channel and gets the rest.
	s.kafka = s.env.NewKafka(t)
	_, bots := testenv.IRC(t)
	s.runBridge(t, bots)
	deadline = time.Now().Add(60 * time.Second)
	for {
		got := seen()
		missing := 0
		for i := 0; i < n; i++ {
			if got[fmt.Sprintf("seq %d", i)] == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged messages never delivered", missing, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second) // duplicates would come right behind
	var dups []string
	for k, c := range seen() {
		if c > 1 {
			dups = append(dups, fmt.Sprintf("%s ×%d", k, c))
		}
	}
	if len(dups) > 0 {
		t.Errorf("delivered again after a clean stop: %v", dups)
	}
}
