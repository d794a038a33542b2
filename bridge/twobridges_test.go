package bridge_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/bridge"
	"github.com/zkchat/zkchat/internal/irctest"
	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/kafka"
	"github.com/zkchat/zkchat/manager"
	"github.com/zkchat/zkchat/protocol"
)

// ircNet is one IRC network with its own bridge, in a shared zkchat.
type ircNet struct {
	name    string // for messages
	users   string // IRC address for users
	bot     string
	channel string
	b       *bridge.Bridge
}

// startIRCNetBridge runs a bridge on the IRC server bots for env, with its
// own Kafka clients (as a separate bridge process would have), until the
// test ends.
func startIRCNetBridge(t *testing.T, env *testenv.Env, name, users, bots, bot, channel string) *ircNet {
	t.Helper()
	log := testenv.Logger(t).With("test", "bridge-"+name)
	k, err := kafka.New(kafka.Config{Brokers: env.Kafka,
		Topics: protocol.Topics{Prefix: env.Prefix}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	b, err := bridge.New(bridge.Config{Server: bots, Nick: bot, Channel: channel,
		ZooKeeper: env.ZooKeeper, Kafka: k, Rate: -1, Logger: log})
	if err != nil {
		k.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = b.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; k.Close() })
	return &ircNet{name: name, users: users, bot: bot, channel: channel, b: b}
}

// startManagers runs n managers on env until the test ends.
func startManagers(t *testing.T, env *testenv.Env, n int) []*manager.Manager {
	t.Helper()
	var ms []*manager.Manager
	for i := range n {
		m, _ := env.RunManager(t, "m"+string(rune('1'+i)), nil)
		ms = append(ms, m)
	}
	return ms
}

func (n *ircNet) waitSynced(t *testing.T) {
	t.Helper()
	waitSynced(t, n.b, fmt.Sprintf("%s: bridge %s in %s", n.name, n.bot, n.channel))
}

// join connects nick to the network and joins the bridge's channel.
func (n *ircNet) join(t *testing.T, nick string) *irctest.Client {
	t.Helper()
	u := irctest.Dial(t, n.users, nick)
	u.Send("JOIN " + n.channel)
	u.Wait(20*time.Second, func(l string) bool { return strings.Contains(l, " 366 ") })
	return u
}

// countLeaders is how many of ms lead now.
func countLeaders(ms []*manager.Manager) (n int, who []bool) {
	for _, m := range ms {
		l := m.Leading()
		who = append(who, l)
		if l {
			n++
		}
	}
	return n, who
}

// requireOneLeader fails t unless exactly one of ms leads now.
func requireOneLeader(t *testing.T, ms []*manager.Manager, when string) {
	t.Helper()
	if n, who := countLeaders(ms); n != 1 {
		t.Fatalf("%s: %d managers lead (%v), want exactly 1", when, n, who)
	}
}

// TestTwoBridges: two independent IRC networks (InspIRCd and ngIRCd), each
// with its own bridge, share one zkchat (ZooKeeper + Kafka) served by two
// managers of which exactly one leads. A user on each network registers
// with its bridge, and they talk both ways through the bots.
func TestTwoBridges(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	inspUsers, inspBots := testenv.IRC(t)
	ngircd := testenv.NGIRCd(t)
	tag := testenv.Tag()
	channel := "#t" + tag // same name on both networks; they do not meet

	ms := startManagers(t, env, 2)
	// Someone must lead before requests can be answered.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if n, _ := countLeaders(ms); n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no manager leads after 30 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	requireOneLeader(t, ms, "after the election")
	// Between the checkpoints, never two leaders at once (no handover is
	// expected here, so two true in one sweep is a real double leader).
	var both atomic.Int32
	sweep, stopSweep := context.WithCancel(context.Background())
	sweepDone := make(chan struct{})
	go func() {
		defer close(sweepDone)
		for sweep.Err() == nil {
			if n, _ := countLeaders(ms); n > 1 {
				both.Add(1)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { stopSweep(); <-sweepDone })

	insp := startIRCNetBridge(t, env, "inspircd", inspUsers, inspBots, "zka"+tag, channel)
	ngi := startIRCNetBridge(t, env, "ngircd", ngircd, ngircd, "zkb"+tag, channel)
	insp.waitSynced(t)
	ngi.waitSynced(t)

	// Mixed case: each bridge folds with its server's CASEMAPPING (rfc1459
	// on InspIRCd, ascii on ngIRCd); letters and digits fold alike in both.
	an, bn := "Ia"+tag, "Nb"+tag
	aid, err := bridge.NickToID(an, bridge.RFC1459)
	if err != nil {
		t.Fatal(err)
	}
	bid, err := bridge.NickToID(bn, bridge.ASCII)
	if err != nil {
		t.Fatal(err)
	}
	// The protocol carries ids only: a bridge shows a sender it has no nick
	// for (a user of the other network) as the folded nick its id decodes to.
	aShown, bShown := bridge.IDToNick(aid), bridge.IDToNick(bid)
	alice, bob := insp.join(t, an), ngi.join(t, bn)
	for _, p := range []struct {
		u   *irctest.Client
		net *ircNet
	}{{alice, insp}, {bob, ngi}} {
		p.u.Send("PRIVMSG " + p.net.bot + " :register")
		p.u.WaitFrom(p.net.bot, "NOTICE", "Registered")
	}
	c := env.Conn(t)
	// Both online nodes, side by side in the one ZooKeeper.
	waitZNode(t, c, env.Path("/online/"+aid))
	waitZNode(t, c, env.Path("/online/"+bid))
	online, _, err := c.Children(env.Path("/online"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(online, aid) || !slices.Contains(online, bid) {
		t.Fatalf("/online = %v, want %s and %s", online, aid, bid)
	}
	requireOneLeader(t, ms, "after both registered")

	// InspIRCd -> ngIRCd, then back; each hears it from its own bot.
	alice.Send("PRIVMSG " + insp.bot + " :msg " + bn + " hello from inspircd ✓")
	bob.WaitFrom(ngi.bot, "PRIVMSG", "<"+aShown+"> hello from inspircd ✓")
	bob.Send("PRIVMSG " + ngi.bot + " :msg " + an + " hello from ngircd ✓")
	alice.WaitFrom(insp.bot, "PRIVMSG", "<"+bShown+"> hello from ngircd ✓")
	// The "<nick>: text" form too, and a few in a row, in order.
	for i := range 3 {
		bob.Send("PRIVMSG " + ngi.bot + " :" + an + ": line " + string(rune('0'+i)))
	}
	for i := range 3 {
		l := alice.WaitFrom(insp.bot, "PRIVMSG", "<"+bShown+"> line ")
		if want := "<" + bShown + "> line " + string(rune('0'+i)); !strings.HasSuffix(l, want) {
			t.Fatalf("alice got %q, want ...%q", l, want)
		}
	}
	requireOneLeader(t, ms, "after the messages")

	// Each bot speaks only on its own network: nothing from the other bot.
	for _, l := range alice.All() {
		if strings.HasPrefix(strings.ToLower(l), ":"+strings.ToLower(ngi.bot)+"!") {
			t.Fatalf("alice (InspIRCd) got a line from the ngIRCd bot: %q", l)
		}
	}
	for _, l := range bob.All() {
		if strings.HasPrefix(strings.ToLower(l), ":"+strings.ToLower(insp.bot)+"!") {
			t.Fatalf("bob (ngIRCd) got a line from the InspIRCd bot: %q", l)
		}
	}

	stopSweep()
	<-sweepDone
	if n := both.Load(); n > 0 {
		t.Fatalf("two managers led at once in %d sweeps", n)
	}
	requireOneLeader(t, ms, "at the end")
}

// waitZNode waits until path exists.
func waitZNode(t *testing.T, c *zk.Conn, path string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, _, err := c.Exists(path)
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not exist (err %v)", path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
