package bridge

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/zkchat/zkchat/internal/irctest"
)

// Rendezvous hashing splits 10,000 ids evenly (each bridge within ±5 % of
// its share) over 2 and 3 bridges, and a bridge that goes hands over only
// its own users; one that comes takes users only for itself.
func TestOwnerSplit(t *testing.T) {
	t.Parallel()
	const n = 10000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("user-%d", i)
	}
	split := func(bridges []string) map[string]string {
		owners := map[string]string{}
		count := map[string]int{}
		for _, id := range ids {
			o := Owner(bridges, id)
			owners[id] = o
			count[o]++
		}
		share := float64(n) / float64(len(bridges))
		for _, b := range bridges {
			if c := float64(count[b]); c < 0.95*share || c > 1.05*share {
				t.Errorf("%v: %s owns %d ids, want %.0f ± 5 %%", bridges, b, count[b], share)
			}
		}
		if len(count) != len(bridges) {
			t.Errorf("%v: owners %v", bridges, count)
		}
		t.Logf("%v: %v", bridges, count)
		return owners
	}
	two := split([]string{"zka", "zkb"})
	three := split([]string{"zka", "zkb", "zkc"})
	for _, id := range ids {
		// zkc goes: its users move, nobody else's.
		if three[id] != "zkc" && two[id] != three[id] {
			t.Fatalf("%s moved from %s to %s when zkc went", id, three[id], two[id])
		}
	}
	// Order does not matter; no bridge, no owner.
	if Owner([]string{"zkb", "zka"}, "x") != Owner([]string{"zka", "zkb"}, "x") || Owner(nil, "x") != "" {
		t.Fatal("Owner depends on the order, or names an owner of none")
	}
	// The weight is SHA-256's first 8 bytes: another implementation can
	// compute it (printf 'zka\0alice' | sha256sum).
	if w := Weight("zka", "alice"); w != 0x294f2682afd361aa {
		t.Fatalf("Weight(zka, alice) = %#x, want 0x294f2682afd361aa", w)
	}
}

// startShared runs a bridge with nick on a scripted server of its own, in
// session sess of the shared zkchat n, sharing #chatroom.
func startShared(t *testing.T, n *fakeNet, sess int, nick string, members ...string) *fakeSetup {
	t.Helper()
	return startFakeNet(t, irctest.NewServer(t), n, sess, func(c *Config) {
		c.Nick, c.SharedChannel = nick, true
	}, members...)
}

// waitLong is waitUntil with a longer bound: a user that changes bridges
// may wait for one retry (2 s) while its old owner lets go.
func waitLong(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 20 s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// allOwned waits until every id is online through its owner among bridges.
func allOwned(t *testing.T, n *fakeNet, bridges []string, ids []string) {
	t.Helper()
	waitLong(t, fmt.Sprintf("every user online through its owner of %v", bridges), func() bool {
		for _, id := range ids {
			if via, ok := n.onlineVia(id); !ok || via != Owner(bridges, id) {
				return false
			}
		}
		return true
	})
}

func sharedMembers(k int) []string {
	var out []string
	for i := range k {
		out = append(out, fmt.Sprintf("u%02d", i))
	}
	return out
}

// Two bridges share a channel: a bridge alone takes everyone; when the
// second comes, the users split by rendezvous hashing (each online through
// its owner, the others' left silently); a message is delivered by its
// receiver's owner only; a join is greeted by the owner only; a command
// to the other bot is answered with one notice naming the owner's bot,
// help answered there.
func TestFakeSharedSplit(t *testing.T) {
	t.Parallel()
	n := newFakeNet()
	users := sharedMembers(20)
	a := startShared(t, n, 1, "zka", users...)
	allOwned(t, n, []string{"zka"}, users)
	b := startShared(t, n, 2, "zkb", users...)
	both := []string{"zka", "zkb"}
	allOwned(t, n, both, users)
	var ofA, ofB string
	for _, u := range users {
		if Owner(both, u) == "zka" {
			ofA = u
		} else {
			ofB = u
		}
	}
	if ofA == "" || ofB == "" {
		t.Fatalf("20 users, one bridge owns none: %v", users)
	}
	// Nobody was told anything: moving is silent.
	for _, s := range []*fakeSetup{a, b} {
		for _, l := range s.srv.Lines() {
			if irctest.Command("NOTICE", "")(l) {
				t.Fatalf("%s told a user: %q", s.b.cfg.Nick, l)
			}
		}
	}

	// Delivery by the owner only.
	n.put("carol", ofB, "to b's user")
	b.privmsg(t, ofB, "<carol> to b's user")
	waitUntil(t, "committed", func() bool { return n.committedOf(ofB) == 1 })
	for _, l := range a.srv.Lines() {
		if irctest.Command("PRIVMSG", ofB+" :")(l) {
			t.Fatalf("the other bot delivered too: %q", l)
		}
	}

	// A join: only the owner greets the unregistered nick.
	zed, other := a, b
	if Owner(both, "zed") == "zkb" {
		zed, other = b, a
	}
	a.from("zed", "JOIN #chatroom")
	b.from("zed", "JOIN #chatroom")
	zed.notice(t, "zed", "Hi zed! You are not registered with zkchat: send me `register` (/msg "+zed.b.cfg.Nick+" register)")

	// Commands to the other bot: one notice naming the owner's.
	b.from(ofA, "PRIVMSG zkb :who")
	b.notice(t, ofA, "Your bridge is zka: /msg zka who")
	b.from(ofA, "PRIVMSG zkb :msg "+ofB+" "+strings.Repeat("x", 200))
	l := b.notice(t, ofA, "Your bridge is zka: /msg zka msg "+ofB+" xxx")
	if !strings.HasSuffix(l, "…") {
		t.Fatalf("a long text not cut: %q", l)
	}
	b.from(ofA, "PRIVMSG zkb :help")
	b.notice(t, ofA, "zkchat bridge: chat with registered users")
	b.notice(t, ofA, "Your bridge is zka: send it your commands")
	a.from(ofA, "PRIVMSG zka :who")
	a.notice(t, ofA, "Online (20): ")
	time.Sleep(200 * time.Millisecond)
	for _, l := range other.srv.Lines() {
		if irctest.Command("NOTICE", "zed :")(l) {
			t.Fatalf("the other bot greeted zed: %q", l)
		}
	}
	if n := len(b.srv.Lines()); n > 0 {
		t.Logf("zkb wrote %d more lines", n)
	}
}

// A bridge is SIGKILLed: until its session expires its users stay online
// through it (messages to them wait in Kafka); then its node and its users'
// nodes go together, the other bridge takes them online and delivers from
// the last committed position, the unproved message too (at least once).
func TestFakeSharedTakeover(t *testing.T) {
	t.Parallel()
	n := newFakeNet()
	users := sharedMembers(20)
	a := startShared(t, n, 1, "zka", users...)
	b := startShared(t, n, 2, "zkb", users...)
	both := []string{"zka", "zkb"}
	allOwned(t, n, both, users)
	var ofA []string
	for _, u := range users {
		if Owner(both, u) == "zka" {
			ofA = append(ofA, u)
		}
	}
	victim := ofA[0]

	// Delivered by zka, proved and committed; then one it writes but cannot
	// prove before it dies.
	n.put("carol", victim, "one")
	a.privmsg(t, victim, "<carol> one")
	waitUntil(t, "one committed", func() bool { return n.committedOf(victim) == 1 })
	a.srv.HoldPongs(true)
	n.put("carol", victim, "two")
	a.privmsg(t, victim, "<carol> two")
	n.freeze(1) // SIGKILL: nothing more from zka, its connection gone
	a.srv.Drop()
	a.stop()
	n.put("carol", victim, "three") // the node is still there: accepted, waits in Kafka
	time.Sleep(100 * time.Millisecond)
	for _, u := range ofA {
		if via, ok := n.onlineVia(u); !ok || via != "zka" {
			t.Fatalf("%s before the session expired: online %v via %q", u, ok, via)
		}
	}

	n.expire(1) // the session timeout
	allOwned(t, n, []string{"zkb"}, users)
	b.privmsg(t, victim, "<carol> two")
	b.privmsg(t, victim, "<carol> three")
	waitUntil(t, "all committed", func() bool { return n.committedOf(victim) == 3 })
	for _, l := range b.srv.Lines() {
		if irctest.Command("NOTICE", "")(l) {
			t.Fatalf("a user was told something on the takeover: %q", l)
		}
	}
}

// A killed bridge is started again at once (same nick, so the same bridge
// id): its node of the run before, in a session not yet expired, is not
// its own, so the new run serves nobody (and the other bridge does not take
// the users, whose owner is still listed) until that session expires; then
// the new run makes its node and takes its users back.
func TestFakeSharedRestart(t *testing.T) {
	t.Parallel()
	n := newFakeNet()
	users := sharedMembers(20)
	a := startShared(t, n, 1, "zka", users...)
	startShared(t, n, 2, "zkb", users...)
	both := []string{"zka", "zkb"}
	allOwned(t, n, both, users)
	n.freeze(1) // SIGKILL
	a.srv.Drop()
	a.stop()
	a2 := startShared(t, n, 3, "zka", users...)
	time.Sleep(300 * time.Millisecond)
	for _, u := range users {
		if a2.b.owns(u) {
			t.Fatalf("the new run serves %s while the run before still has its node", u)
		}
	}
	n.mu.Lock()
	for _, u := range users {
		if s := n.onlineSess[u]; Owner(both, u) == "zka" && s != 1 {
			n.mu.Unlock()
			t.Fatalf("%s online in session %d before the old one expired", u, s)
		}
	}
	n.mu.Unlock()
	n.expire(1)
	allOwned(t, n, both, users)
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, u := range users {
		if want := map[string]int{"zka": 3, "zkb": 2}[Owner(both, u)]; n.onlineSess[u] != want {
			t.Fatalf("%s online in session %d, want %d", u, n.onlineSess[u], want)
		}
	}
}
