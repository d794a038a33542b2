package reliability

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/bridge"
	"github.com/zkchat/zkchat/client"
	"github.com/zkchat/zkchat/internal/irctest"
	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/kafka"
	"github.com/zkchat/zkchat/protocol"
	"github.com/zkchat/zkchat/zookeeper"
)

// Several bridges on one channel (bridge.Config.SharedChannel, doc/
// architecture.md "Several bridges on one channel"), against real servers:
// TestSharedChannelSIGKILL.
//
// It runs in the fault suite (make reliability: the replicated cluster and
// an InspIRCd of its own), or alone against the devenv servers (standalone
// ZooKeeper and Kafka, the local InspIRCd's user port and its flood-exempt
// bot port):
//
//	./.cache/devenv start
//	env $(./.cache/devenv env | xargs) ZKCHAT_SHARED_CHANNEL=1 ZKCHAT_TEST_STRICT=1 \
//	    go test -count=1 -v -run TestSharedChannel -timeout 30m ./internal/reliability/
//
// Settings (environment): ZKCHAT_SHARED_USERS, the IRC users (raw
// connections; default 200); ZKCHAT_SHARED_RATE, the messages a second
// sent to them (default 100); ZKCHAT_SHARED_AUDITORIUM=1 (on by itself
// above 1,000 users): the channel gets mode +u (InspIRCd's auditorium, in
// deploy/inspircd) and both bots +o, so that a JOIN goes to the ops only
// and not to every member (10,000 users joining would otherwise make the
// server send 50 million lines).
//
// Measured (2026-12-07, devenv servers, 2 shared cores): 200 users in about
// 40 s (online 5-8 s, takeover 5.3-7.5 s after the kill with a 6 s session
// timeout); 1,000 users (auditorium) in 77 s, takeover 8.9 s; 10,000 users
// (auditorium, after the per-consumer partition check and the shared
// WaitTopic) in 5 min 3 s: split 4,947/5,053, all online 4 min 12 s after
// the first connect (the test connects 50 users at a time), the killed
// bridge's 4,947 users online through the other 14.4 s after the kill,
// lost 0, duplicated 0. Before the consumer sharding, 10,000 did not fit
// the devenv's broker (1 GB heap): it died of OutOfMemoryError at about
// 6,500 online.

func sharedEnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// sharedSuite is the test's deployment: the suite's (cluster, private
// InspIRCd) under ZKCHAT_RELIABILITY=1, else the devenv servers under
// ZKCHAT_SHARED_CHANNEL=1; skipped otherwise. It returns the IRC server's
// user and bot addresses and the replication factor of new topics.
func sharedSuite(t *testing.T) (s *Suite, users, bots string, rf int) {
	switch {
	case os.Getenv("ZKCHAT_RELIABILITY") == "1":
		s = New(t)
		irc := StartIRC(t)
		return s, irc.Users, irc.Bots, 3
	case os.Getenv("ZKCHAT_SHARED_CHANNEL") == "1":
		env := testenv.New(t)
		users, bots = testenv.IRC(t)
		k, err := kafka.New(kafka.Config{Brokers: env.Kafka, Topics: protocol.Topics{Prefix: env.Prefix}, Logger: quietLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(k.Close)
		s = &Suite{T: t, Env: env, Ledger: NewLedger(testenv.Tag()), Kafka: k, ZK: env.Conn(t)}
		if out, err := exec.Command(Binary(t), append(s.commonArgs(), "init")...).CombinedOutput(); err != nil {
			t.Fatalf("zkchat init: %v\n%s", err, out)
		}
		return s, users, bots, 1
	}
	t.Skip("runs in the fault suite (ZKCHAT_RELIABILITY=1), or alone with ZKCHAT_SHARED_CHANNEL=1 against the devenv servers")
	return nil, "", "", 0
}

// sharedUsers registers ids through one ZooKeeper session of the test's own
// (a view of it per id: 10,000 registrations need not open 10,000
// sessions), 32 at a time.
func sharedRegister(t *testing.T, s *Suite, ids []string) {
	t.Helper()
	zs, err := zookeeper.Dial(context.Background(), zookeeper.SessionConfig{Connect: s.Env.ZooKeeper,
		BufferSize: zookeeper.LargeZKBuffer, Logger: quietLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer zs.Close()
	sh := zookeeper.NewShared(zs)
	defer sh.Close()
	dial := func(context.Context, zookeeper.SessionConfig) (client.Session, error) { return sh.View(), nil }
	ctx := Ctx(t, 10*time.Minute)
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	var failed atomic.Int32
	for _, id := range ids {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			w, err := client.New(id, client.Config{ZooKeeper: s.Env.ZooKeeper, Dial: dial, RequestTimeout: 2 * time.Minute,
				Logger: quietLogger(t)})
			if err == nil {
				_, err = w.Register(ctx)
				w.Close()
			}
			if err != nil && failed.Add(1) <= 3 {
				t.Errorf("register %s: %v", id, err)
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d registrations failed", n)
	}
}

// sharedBridge runs `zkchat bridge --shared-channel` as nick in channel, on
// the bot port, unpaced, with its built-in manager.
func sharedBridge(s *Suite, name, server, nick, channel string, rf int, session time.Duration) *Proc {
	args := append(s.commonArgs(), "--session-timeout", session.String(), "bridge", "--shared-channel",
		"--irc-server", server, "--nick", nick, "--channel", channel, "--name", name,
		"--replication-factor", strconv.Itoa(rf), "--rate", "-1", "--debug-addr=auto")
	return StartProc(s.T, name, nil, args...)
}

// sharedOwners maps each id under /online to the session its node is in,
// and each bridge's session (its /bridges node's) to the bridge id.
func sharedOwners(t *testing.T, s *Suite) (online map[string]int64, bridges map[int64]string) {
	t.Helper()
	ids, err := s.OnlineIDs()
	if err != nil {
		t.Fatalf("list /online: %v", err)
	}
	online = map[string]int64{}
	var mu sync.Mutex
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, id := range ids {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if ok, st, err := s.ZK.Exists(s.Env.Path("/online/" + id)); err == nil && ok {
				mu.Lock()
				online[id] = st.EphemeralOwner
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	bridges = map[int64]string{}
	names, _, err := s.ZK.Children(s.Env.Path("/bridges"))
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		t.Fatalf("list /bridges: %v", err)
	}
	for _, b := range names {
		if ok, st, err := s.ZK.Exists(s.Env.Path("/bridges/" + b)); err == nil && ok {
			bridges[st.EphemeralOwner] = b
		}
	}
	return online, bridges
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// TestSharedChannelSIGKILL: two `zkchat bridge --shared-channel` processes
// serve one channel of InspIRCd, where N raw IRC users (registered, in the
// channel) are split between them by rendezvous hashing: each user's
// /online node is in the session of the bridge Owner names. In-process
// senders keep a steady load of ledger messages to all the users. One
// bridge is SIGKILLed: once its session expires (6 s), its /bridges node and
// its users' /online nodes go together, and the survivor takes every one
// of them online, within the session timeout and a few seconds; every
// message a sender was told was sent (Kafka acked it) reaches its IRC user
// at least once; none is lost; duplicates (from the killed bridge's last
// unproved lines, delivered again from the last committed position) are
// reported. A command to the bot that does not serve a user is answered
// with one notice naming the one that does; the takeover tells users
// nothing.
func TestSharedChannelSIGKILL(t *testing.T) {
	s, usersAddr, botsAddr, rf := sharedSuite(t)
	n := sharedEnvInt("ZKCHAT_SHARED_USERS", 200)
	rate := sharedEnvInt("ZKCHAT_SHARED_RATE", 100)
	auditorium := os.Getenv("ZKCHAT_SHARED_AUDITORIUM") == "1" || n > 1000
	const session = 6 * time.Second
	tag := s.Ledger.Run
	channel := "#zs" + tag
	nA, nB := "za"+tag, "zb"+tag
	idA, _ := bridge.NickToID(nA, bridge.RFC1459)
	idB, _ := bridge.NickToID(nB, bridge.RFC1459)
	both := []string{idA, idB}
	t0 := time.Now()

	// The channel first, with its op (auditorium: the bots must be ops to
	// see the users' JOINs).
	op := irctest.DialWith(t, usersAddr, "op"+tag, irctest.Options{DropUnmatched: true})
	op.Send("JOIN " + channel)
	op.Wait(20*time.Second, func(l string) bool { return strings.Contains(l, " 366 ") })
	if auditorium {
		op.Send("MODE " + channel + " +u")
		if l, ok := op.TryWait(5*time.Second, func(l string) bool {
			return strings.Contains(l, " MODE ") && strings.Contains(l, "+u") || strings.Contains(l, " 472 ")
		}); !ok || strings.Contains(l, " 472 ") {
			t.Logf("channel mode +u (auditorium) not set (%q): every JOIN goes to every member", l)
		}
	}

	a := sharedBridge(s, "bridge-a", botsAddr, nA, channel, rf, session)
	b := sharedBridge(s, "bridge-b", botsAddr, nB, channel, rf, session)
	for _, p := range []*Proc{a, b} {
		if _, ok := p.WaitLog(2*time.Minute, 0, syncedRE); !ok {
			t.Fatalf("%s not in %s", p.Name, channel)
		}
	}
	if auditorium {
		op.Send("MODE " + channel + " +oo " + nA + " " + nB)
		op.Wait(10*time.Second, func(l string) bool { return strings.Contains(l, " MODE ") && strings.Contains(l, "+oo") })
	}
	WaitFor(t, time.Minute, "both bridges in /bridges", func() bool {
		_, br := sharedOwners(t, s)
		return len(br) == 2
	})

	// N users: registered, then in the channel.
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("u%s%d", tag, i)
	}
	tReg := time.Now()
	sharedRegister(t, s, ids)
	regTook := time.Since(tReg)
	var (
		mu      sync.Mutex
		notices []string           // the bots' notices to users, but the redirect asked for
		fromBot = map[string]int{} // deliveries by bot
	)
	redirect := make(chan string, 1)
	onText := func(from, text string) {
		bot := strings.ToLower(from)
		if bot != idA && bot != idB {
			return
		}
		if strings.HasPrefix(text, "Your bridge is ") {
			select {
			case redirect <- text:
			default:
			}
			return
		}
		if !strings.Contains(text, "zkr ") {
			mu.Lock()
			notices = append(notices, from+": "+text)
			mu.Unlock()
			return
		}
		s.Ledger.Saw("irc", text)
		mu.Lock()
		fromBot[bot]++
		mu.Unlock()
	}
	tJoin := time.Now()
	conns := make([]*irctest.Client, n)
	sem := make(chan struct{}, 50)
	var wg sync.WaitGroup
	var dialFailed atomic.Int32
	for i, id := range ids {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := irctest.Connect(usersAddr, id, irctest.Options{NoHistory: true, OnText: onText, Welcome: time.Minute})
			if err != nil {
				if dialFailed.Add(1) <= 3 {
					t.Errorf("user %d: %v", i, err)
				}
				return
			}
			c.Send("JOIN " + channel)
			conns[i] = c
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	if f := dialFailed.Load(); f > 0 {
		t.Fatalf("%d of %d users could not connect (the server's per-class limits? deploy/inspircd)", f, n)
	}
	senderIDs := []string{"s1" + tag, "s2" + tag, "s3" + tag, "s4" + tag}
	senders := s.Online(Ctx(t, 2*time.Minute), senderIDs...)
	want := n + len(senderIDs)
	WaitFor(t, 2*time.Minute+time.Duration(n)*20*time.Millisecond, fmt.Sprintf("%d users online", n), func() bool {
		ids, err := s.OnlineIDs()
		return err == nil && len(ids) >= want
	})
	onlineTook := time.Since(tJoin)
	online, br := sharedOwners(t, s)
	sessOf := map[string]int64{}
	for sess, id := range br {
		sessOf[id] = sess
	}
	split := map[string]int{}
	var ofA []string
	for _, id := range ids {
		owner := bridge.Owner(both, id)
		if got := online[id]; got != sessOf[owner] {
			t.Fatalf("/online/%s is in session %#x (%s), want %s's %#x", id, got, br[got], owner, sessOf[owner])
		}
		split[owner]++
		if owner == idA {
			ofA = append(ofA, id)
		}
	}
	t.Logf("%d users registered in %v, joined and online in %v (split %v)", n, regTook.Round(time.Millisecond),
		onlineTook.Round(time.Millisecond), split)
	if len(ofA) == 0 || split[idB] == 0 {
		t.Fatalf("one bridge serves nobody: %v", split)
	}

	// A command to the bot that does not serve the user: one notice
	// naming the one that does.
	for i, id := range ids {
		if bridge.Owner(both, id) == idA && conns[i] != nil {
			conns[i].Send("PRIVMSG " + nB + " :who")
			select {
			case l := <-redirect:
				if want := "Your bridge is " + nA + ": /msg " + nA + " who"; l != want {
					t.Errorf("redirect: %q, want %q", l, want)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("no answer from %s to a command of %s, a user of %s", nB, id, nA)
			}
			break
		}
	}

	// The steady load: the senders in turn, to every user in turn.
	ctx := Ctx(t, 20*time.Minute)
	stop := make(chan struct{})
	var (
		acked, offline atomic.Int64
		loadWG         sync.WaitGroup
	)
	for k, w := range senders {
		loadWG.Add(1)
		go func() {
			defer loadWG.Done()
			tick := time.NewTicker(time.Duration(float64(time.Second) * float64(len(senders)) / float64(rate)))
			defer tick.Stop()
			for seq := int64(0); ; seq++ {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				to := ids[(int(seq)*len(senders)+k)%n]
				for {
					err := s.Send(ctx, w, to, seq)
					if err == nil {
						acked.Add(1)
						break
					}
					if ctx.Err() != nil || !errors.Is(err, protocol.ErrReceiverOffline) || isClosed(stop) {
						t.Logf("send %s->%s #%d: %v", w.ID(), to, seq, err)
						break
					}
					// Between the session's expiry and the takeover: the
					// message never reached Kafka; sent again.
					offline.Add(1)
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}
	time.Sleep(10 * time.Second)
	before := s.Ledger.Report("irc", nil)
	t.Logf("before the kill: %v (lost: not yet seen)", before)

	// SIGKILL bridge A.
	a.Kill()
	killed := time.Now()
	sessA := sessOf[idA]
	var took time.Duration
	// Polled cheaply (two listings): the killed session's nodes go
	// together with its /bridges node, so once that is gone an id of A's
	// under /online is a node made since, by the survivor (checked below).
	WaitFor(t, session+2*time.Minute, fmt.Sprintf("the %d users of %s online through %s", len(ofA), nA, nB), func() bool {
		if bs, _, err := s.ZK.Children(s.Env.Path("/bridges")); err != nil || slices.Contains(bs, idA) {
			return false
		}
		on, err := s.OnlineIDs()
		if err != nil {
			return false
		}
		for _, id := range ofA {
			if _, ok := slices.BinarySearch(on, id); !ok {
				return false
			}
		}
		took = time.Since(killed)
		return true
	})
	on, br := sharedOwners(t, s)
	if _, ok := br[sessA]; ok {
		t.Errorf("the killed bridge's node is still in /bridges")
	}
	for _, id := range ids {
		if on[id] != sessOf[idB] {
			t.Fatalf("after the kill /online/%s is in session %#x, want %s's %#x", id, on[id], idB, sessOf[idB])
		}
	}
	if bound := session + 10*time.Second; took > bound {
		t.Errorf("users back online %v after the kill, want within the session timeout + a few seconds (%v)", took, bound)
	}
	time.Sleep(10 * time.Second) // the load goes on through the survivor
	close(stop)
	loadWG.Wait()

	// Every acked message delivered at least once.
	var rep Report
	said := time.Now()
	drain := WaitFor(t, 5*time.Minute, "every acked message delivered", func() bool {
		rep = s.Ledger.Report("irc", nil)
		if time.Since(said) > 15*time.Second {
			said = time.Now()
			t.Logf("waiting: %v; e.g. %v", rep, rep.LostSample)
		}
		return rep.Lost == 0
	})
	time.Sleep(2 * time.Second) // late copies
	rep = s.Ledger.Report("irc", nil)
	rep.Check(t, rep.Acked, 0) // duplicates are reported, not bounded here
	mu.Lock()
	if len(notices) > 0 {
		t.Errorf("the bots told users %d things, e.g. %q", len(notices), notices[:min(len(notices), 3)])
	}
	by := fmt.Sprint(fromBot)
	mu.Unlock()
	NoPanic(t, a.Log(), b.Log())
	t.Logf("SIGKILL %s: its %d users online through %s %v later (session timeout %v); before the kill %d delivered; "+
		"acked %d, retried while offline %d, lost %d, duplicated %d, reordered %d; delivered by %s; drained %v after the load",
		nA, len(ofA), nB, took.Round(time.Millisecond), session, before.Delivered, rep.Acked, offline.Load(),
		rep.Lost, rep.Duplicated, rep.Reordered, by, drain.Round(time.Millisecond))
	Row(t, "shared channel: SIGKILL one of two bridges", "users", n, "split", fmt.Sprint(split),
		"online_took", onlineTook.Round(time.Millisecond), "takeover", took.Round(time.Millisecond), "session_timeout", session,
		"acked", rep.Acked, "lost", rep.Lost, "dup", rep.Duplicated, "reordered", rep.Reordered,
		"total", time.Since(t0).Round(time.Second))
}
