package bridge_test

import (
	"strings"
	"testing"
	"time"

	"github.com/zkchat/zkchat/bridge"
	"github.com/zkchat/zkchat/internal/irctest"
	"github.com/zkchat/zkchat/internal/testenv"
)

// TestASCIICaseMappingResync: on ngIRCd (CASEMAPPING=ascii) "Q[x" and
// "q{x" are two users. After a reconnect the bridge reads the member list
// from NAMES itself, so neither is taken for the other (girc's own state
// folds with RFC 1459 rules and made one of them go offline).
func TestASCIICaseMappingResync(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ng := testenv.NGIRCd(t)
	tag := testenv.Tag()
	startManagers(t, env, 1)
	p := newProxy(t, ng)
	n := startIRCNetBridge(t, env, "ngircd", ng, p.addr(), "zkp"+tag, "#p"+tag)
	n.waitSynced(t)
	n1, n2 := "Q["+tag, "q{"+tag
	dial := func(nick string) *irctest.Client {
		u := irctest.DialAs(t, ng, nick, "probe", nil)
		u.Send("JOIN " + n.channel)
		u.Wait(20*time.Second, func(l string) bool { return strings.Contains(l, " 366 ") })
		return u
	}
	u1, u2 := dial(n1), dial(n2)
	id1, _ := bridge.NickToID(n1, bridge.ASCII)
	id2, _ := bridge.NickToID(n2, bridge.ASCII)
	t.Logf("ids %s %s", id1, id2)
	for _, u := range []*irctest.Client{u1, u2} {
		u.Send("PRIVMSG " + n.bot + " :register")
		t.Log(u.WaitFrom(n.bot, "NOTICE", "Registered"))
	}
	c := env.Conn(t)
	waitZNode(t, c, env.Path("/online/"+id1))
	waitZNode(t, c, env.Path("/online/"+id2))
	t.Log("both online before the cut")
	u1.Send("PRIVMSG " + n.bot + " :msg " + n2 + " hi")
	t.Log("u2 got: ", u2.WaitFrom(n.bot, "PRIVMSG", "hi"))
	ch, _ := n.b.Synced()
	p.cut()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatal("no resync")
	}
	time.Sleep(2 * time.Second)
	for _, id := range []string{id1, id2} {
		if ok, _, _ := c.Exists(env.Path("/online/" + id)); !ok {
			t.Errorf("after resync /online/%s is gone", id)
		}
	}
	u1.Send("PRIVMSG " + n.bot + " :who")
	if l := u1.WaitFrom(n.bot, "NOTICE", "Online"); !strings.Contains(l, "Online (2)") {
		t.Errorf("who after resync: %q", l)
	}
}
