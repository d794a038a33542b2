package testenv

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	devenv "github.com/zkchat/zkchat/internal/servers"
)

// Linked is a private pair of linked InspIRCd servers (internal/servers):
// irc1.zkchat.test and irc2.zkchat.test, one network that a test can split
// and join again. Each server has a port for users (the zkchat-clients
// class: 50 lines at once, then 20 a second, fakelag), one for bots (no
// flood limits) and a strict one (an ordinary network's limits that kill
// with "Excess Flood"; see deploy/inspircd/inspircd-linked.conf.tmpl).
type Linked struct {
	Addr1, Bot1, Strict1 string // irc1: users, bots, strict class
	Addr2, Bot2, Strict2 string // irc2
	DataDir              string // configs and logs: DataDir/irclinked/irc{1,2}
	// Name1 and Name2 are the server names; a netsplit QUIT reason is
	// "Name1 Name2" or "Name2 Name1" (or "*.net *.split" when started with
	// ZKCHAT_IRCL_HIDESPLITS=yes).
	Name1, Name2 string

	cfg  *devenv.Config
	pair *devenv.Linked
}

// IRCLinked starts a private linked pair on free ports with its own data
// folder, waits until they are linked, and stops them when the test ends.
// env adds KEY=VALUE settings (ZKCHAT_IRCL_HIDESPLITS=yes,
// ZKCHAT_IRCL_STRICT_THRESHOLD=..., ...). It skips t when InspIRCd is not
// installed, unless ZKCHAT_TEST_STRICT=1 (then the start installs it).
func IRCLinked(t testing.TB, env ...string) *Linked {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/inspircd"); err != nil && os.Getenv("ZKCHAT_TEST_STRICT") != "1" {
		t.Skip("integration test skipped: InspIRCd is not installed (/usr/sbin/inspircd); install it with scripts/install-deps.sh irc, or set ZKCHAT_TEST_STRICT=1 to have the test install it")
	}
	ports := freePorts(t, 8)
	dataDir, err := os.MkdirTemp("", "zkchat-irclinked-")
	if err != nil {
		t.Fatal(err)
	}
	vars := []string{"ZKCHAT_IRCL1_PORT", "ZKCHAT_IRCL1_BOT_PORT", "ZKCHAT_IRCL1_STRICT_PORT", "ZKCHAT_IRCL1_LINK_PORT",
		"ZKCHAT_IRCL2_PORT", "ZKCHAT_IRCL2_BOT_PORT", "ZKCHAT_IRCL2_STRICT_PORT", "ZKCHAT_IRCL2_LINK_PORT"}
	all := []string{"ZKCHAT_DATA_DIR=" + dataDir}
	for i, v := range vars {
		all = append(all, fmt.Sprintf("%s=%d", v, ports[i]))
	}
	l := &Linked{DataDir: dataDir, Name1: devenv.LinkedName1, Name2: devenv.LinkedName2}
	l.cfg = ServerConfig(t, append(all, env...)...)
	l.pair = l.cfg.IRCLinked()
	addr := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
	l.Addr1, l.Bot1, l.Strict1 = addr(ports[0]), addr(ports[1]), addr(ports[2])
	l.Addr2, l.Bot2, l.Strict2 = addr(ports[4]), addr(ports[5]), addr(ports[6])
	t.Cleanup(func() {
		_ = l.pair.Stop()
		if !t.Failed() {
			os.RemoveAll(dataDir)
		} else {
			t.Logf("irclinked logs kept in %s/irclinked", dataDir)
		}
	})
	l.check(t, "start", l.pair.Start())
	return l
}

func (l *Linked) check(t testing.TB, action string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("irclinked %s: %v\n%s", action, err, l.cfg.Log)
	}
}

// Split makes the servers netsplit (an oper on irc1 sends SQUIT) and
// returns once a client on each side has seen a client of the other side
// quit with the netsplit reason. It returns how long that took.
func (l *Linked) Split(t testing.TB) time.Duration {
	t.Helper()
	t0 := time.Now()
	r, err := l.pair.Split()
	l.check(t, "split", err)
	d := time.Since(t0)
	t.Logf("irclinked split in %s: SQUIT to both QUITs %s, irc2 saw %q, irc1 saw %q (already split: %v)",
		d.Round(time.Millisecond), r.Took.Round(time.Millisecond), r.Quit1, r.Quit2, r.Already)
	return d
}

// Join links the servers again (an oper on irc1 sends CONNECT) and returns
// once a client on each side sees a client of the other side join their
// channel again (part of the netburst). It returns how long that took.
func (l *Linked) Join(t testing.TB) time.Duration {
	t.Helper()
	t0 := time.Now()
	took, err := l.pair.Join()
	l.check(t, "join", err)
	d := time.Since(t0)
	t.Logf("irclinked join in %s (%s after CONNECT)", d.Round(time.Millisecond), took.Round(time.Millisecond))
	return d
}

// Pids returns the servers' PIDs, by name ("irc1", "irc2"), of those
// running.
func (l *Linked) Pids(t testing.TB) map[string]int {
	t.Helper()
	return l.pair.Pids()
}

// Stop stops both servers (also done at cleanup).
func (l *Linked) Stop(t testing.TB) { t.Helper(); l.check(t, "stop", l.pair.Stop()) }

// freePorts returns n distinct ports that were free a moment ago (all
// listeners are open at once, so none repeats).
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}
