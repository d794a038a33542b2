package servers

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Linked is two InspIRCd 3 servers linked into one network, for netsplit
// tests: irc1.zkchat.test and irc2.zkchat.test, each with a port for people
// (flood limits), one for bots (none), a strict one (an ordinary network's
// limits that kill with "Excess Flood") and a server link port (see
// LinkedConfig and deploy/inspircd/inspircd-linked.conf.tmpl). Configs,
// logs and pid files in DataDir/irclinked/irc{1,2}.
type Linked struct {
	c    *Config
	base string
}

// Server names of the linked pair.
const (
	LinkedName1 = "irc1.zkchat.test"
	LinkedName2 = "irc2.zkchat.test"
	// linkProbeChannel is where split's and join's probe clients meet.
	linkProbeChannel = "#zkchat-irclinked"
	linkTimeout      = 30 * time.Second
)

// IRCLinked is the linked pair of c.
func (c *Config) IRCLinked() *Linked {
	return &Linked{c: c, base: filepath.Join(c.DataDir, "irclinked")}
}

func (l *Linked) Name() string { return "irclinked" }

func (l *Linked) dir(i int) string     { return filepath.Join(l.base, fmt.Sprintf("irc%d", i)) }
func (l *Linked) cfg(i int) string     { return filepath.Join(l.dir(i), "inspircd.conf") }
func (l *Linked) pidfile(i int) string { return filepath.Join(l.dir(i), "inspircd.pid") }
func (l *Linked) logfile(i int) string { return filepath.Join(l.dir(i), "inspircd.log") }
func (l *Linked) outfile(i int) string { return filepath.Join(l.dir(i), "inspircd.out") }

func (l *Linked) running(i int) (int, bool) {
	return PidRunning(l.pidfile(i), "--config "+l.cfg(i))
}

// ports of server i: users, bots, strict, link.
func (l *Linked) ports(i int) []int {
	k := l.c.Linked
	if i == 1 {
		return []int{k.Port1, k.Bot1, k.Strict1, k.Link1}
	}
	return []int{k.Port2, k.Bot2, k.Strict2, k.Link2}
}

func (l *Linked) listening(i int) bool {
	for _, p := range l.ports(i) {
		if !PortOpen(p) {
			return false
		}
	}
	return true
}

func (l *Linked) check() error {
	k := l.c.Linked
	for _, v := range []string{k.StrictFakelag, k.HideSplits} {
		if v != "yes" && v != "no" {
			return errors.New("ZKCHAT_IRCL_STRICT_FAKELAG and ZKCHAT_IRCL_HIDESPLITS must be yes or no")
		}
	}
	return distinct("the eight ZKCHAT_IRCL{1,2}_{,BOT_,STRICT_,LINK_}PORT ports", append(l.ports(1), l.ports(2)...)...)
}

// Pids are the running servers' pids by name ("irc1", "irc2").
func (l *Linked) Pids() map[string]int {
	pids := map[string]int{}
	for i := 1; i <= 2; i++ {
		if pid, ok := l.running(i); ok {
			pids[fmt.Sprintf("irc%d", i)] = pid
		}
	}
	return pids
}

func (l *Linked) Status() Status {
	pids := l.Pids()
	if len(pids) == 0 {
		return Status{State: Down, Line: "irclinked: not running"}
	}
	k := l.c.Linked
	if len(pids) == 2 {
		_, err1 := IRCProbe(k.Port1, 5*time.Second)
		_, err2 := IRCProbe(k.Port2, 5*time.Second)
		if err1 == nil && err2 == nil {
			state := "link state unknown"
			if r, err := l.session("check"); err == nil {
				state = map[bool]string{true: "linked", false: "split"}[r.already]
			}
			return Status{State: Up, Line: fmt.Sprintf("irclinked: running (irc1 pid %d, irc2 pid %d, %s) on %s (bot %d, strict %d) and %s (bot %d, strict %d)",
				pids["irc1"], pids["irc2"], state, addr(k.Port1), k.Bot1, k.Strict1, addr(k.Port2), k.Bot2, k.Strict2)}
		}
	}
	return Status{State: Unhealthy, Line: fmt.Sprintf("irclinked: running %v, but not both answer on %s / %s (logs: %s, %s)",
		pids, addr(k.Port1), addr(k.Port2), l.logfile(1), l.logfile(2))}
}

func (l *Linked) Start() error {
	c := l.c
	if err := l.check(); err != nil {
		return err
	}
	if err := c.Install("irc"); err != nil {
		return err
	}
	t0 := time.Now()
	_, ok1 := l.running(1)
	_, ok2 := l.running(2)
	if ok1 && ok2 {
		for i := 1; i <= 2; i++ {
			if err := WaitFor(ircStartTimeout, 0, func() bool { return l.listening(i) }); err != nil {
				return errors.New("irclinked servers run but do not listen; try: devenv stop irclinked")
			}
		}
		if _, err := l.Join(); err != nil {
			return fmt.Errorf("irclinked servers run but do not link (%v); try: devenv stop irclinked", err)
		}
		c.logf("irclinked already running (%v)", l.Pids())
		return nil
	}
	pids := map[int]int{}
	for i := 1; i <= 2; i++ {
		if pid, ok := l.running(i); ok {
			pids[i] = pid
			continue
		}
		for _, p := range l.ports(i) {
			if PortOpen(p) {
				return fmt.Errorf("%s is already in use by a process devenv did not start (set the ZKCHAT_IRCL* ports to use others)", addr(p))
			}
		}
		p := l.ports(i)
		c.logf("starting inspircd irc%d.zkchat.test on %s (bot %d, strict %d, link %d)…", i, addr(p[0]), p[1], p[2], p[3])
		pid, err := l.startOne(i)
		if err != nil {
			return l.fail(err)
		}
		pids[i] = pid
	}
	for i := 1; i <= 2; i++ {
		if err := WaitFor(ircStartTimeout, pids[i], func() bool { return l.listening(i) }); err != nil {
			return l.fail(fmt.Errorf("inspircd irc%d did not listen: %w", i, err))
		}
	}
	if _, err := l.Join(); err != nil {
		return l.fail(fmt.Errorf("the servers did not link: %w", err))
	}
	k := c.Linked
	c.logf("irclinked ready after %.1f s: irc1 %s (bot %d, strict %d, pid %d), irc2 %s (bot %d, strict %d, pid %d); logs in %s",
		time.Since(t0).Seconds(), addr(k.Port1), k.Bot1, k.Strict1, pids[1], addr(k.Port2), k.Bot2, k.Strict2, pids[2], l.base)
	return nil
}

func (l *Linked) startOne(i int) (int, error) {
	c, k := l.c, l.c.Linked
	_ = os.Remove(l.pidfile(i))
	me, peer := l.ports(i), l.ports(3-i)
	names := []string{"", LinkedName1, LinkedName2}
	if err := Render(c.deploy("inspircd", "inspircd-linked.conf.tmpl"), l.cfg(i), map[string]any{
		"SERVER_NAME": names[i], "SERVER_ID": fmt.Sprintf("%dZK", i), "PEER_NAME": names[3-i],
		"IRC_PORT": me[0], "BRIDGE_PORT": me[1], "STRICT_PORT": me[2], "LINK_PORT": me[3], "PEER_LINK_PORT": peer[3],
		"CONF_DIR": l.dir(i), "RUN_DIR": l.dir(i), "PID_FILE": l.pidfile(i), "LOG_FILE": l.logfile(i),
		"CASEMAPPING": c.Casemapping, "HIDESPLITS": k.HideSplits,
		"STRICT_THRESHOLD": k.StrictThreshold, "STRICT_COMMANDRATE": k.StrictCommandRate, "STRICT_FAKELAG": k.StrictFakelag,
	}); err != nil {
		return 0, err
	}
	if err := copyFile(c.deploy("inspircd", "motd.txt"), filepath.Join(l.dir(i), "motd.txt")); err != nil {
		return 0, err
	}
	return StartProcess(l.pidfile(i), l.outfile(i), nil, inspircdArgv(l.cfg(i))...)
}

func (l *Linked) fail(err error) error {
	l.c.logf("%v", err)
	for i := 1; i <= 2; i++ {
		l.c.tail(l.outfile(i), 20) // config errors go here, before the log opens
		l.c.tail(l.logfile(i), 15) // LINK: lines say why a link failed
	}
	_ = l.Stop()
	return err
}

// Stop stops both at once (each takes ~1.5 s to shut down).
func (l *Linked) Stop() error {
	var wg sync.WaitGroup
	for i := 2; i >= 1; i-- {
		wg.Go(func() {
			l.c.stopPidfile(l.pidfile(i), fmt.Sprintf("inspircd irc%d", i), "--config "+l.cfg(i), ircStopTimeout)
		})
	}
	wg.Wait()
	return nil
}

// SplitResult is what Split saw.
type SplitResult struct {
	// Quit1 is the QUIT reason irc2 showed for a client of irc1, Quit2 the
	// one irc1 showed for a client of irc2.
	Quit1, Quit2 string
	Took         time.Duration // from SQUIT until both QUITs were seen
	Already      bool          // was split already: nothing done
}

// Split makes a real netsplit: an oper on irc1 sends SQUIT irc2. Both
// servers stay up; each quits the other side's users towards its own
// clients with the netsplit reason. It returns once a client on each side
// has seen a client of the other side QUIT that way.
func (l *Linked) Split() (SplitResult, error) {
	r, err := l.session("split")
	if err != nil {
		return SplitResult{}, err
	}
	if r.already {
		l.c.logf("already split")
		return SplitResult{Already: true}, nil
	}
	l.c.logf("split: after %v SQUIT irc2 saw a client of irc1 QUIT with %q, irc1 saw a client of irc2 QUIT with %q",
		r.took.Round(time.Millisecond), r.quit1, r.quit2)
	return SplitResult{Quit1: r.quit1, Quit2: r.quit2, Took: r.took}, nil
}

// Join links the servers again (an oper on irc1 sends CONNECT; there is no
// autoconnect, which would undo a split) and returns once a client on each
// side sees the other side's client JOIN the channel again (part of the
// netburst). Already linked: returns at once (0).
func (l *Linked) Join() (time.Duration, error) {
	r, err := l.session("join")
	if err != nil {
		return 0, err
	}
	if r.already {
		l.c.logf("already linked")
		return 0, nil
	}
	l.c.logf("linked: %s and %s see each other's clients %v after CONNECT", LinkedName1, LinkedName2, r.took.Round(time.Millisecond))
	return r.took, nil
}

type linkResult struct {
	already      bool // split: was split; join: was linked; check: is linked
	quit1, quit2 string
	took         time.Duration
}

// probeConn is a raw IRC client of session: it answers PINGs and hands
// every other line to lines (closed at EOF).
type probeConn struct {
	conn  net.Conn
	nick  string
	lines chan string
}

func dialProbe(port int, nick, action string) (*probeConn, error) {
	c, err := net.DialTimeout("tcp", addr(port), 5*time.Second)
	if err != nil {
		return nil, err
	}
	p := &probeConn{conn: c, nick: nick, lines: make(chan string, 256)}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			if rest, ok := strings.CutPrefix(line, "PING "); ok {
				p.send("PONG " + rest)
				continue
			}
			p.lines <- line
		}
	}()
	p.send("NICK " + nick)
	p.send("USER zkl 0 * :irclinked " + action)
	return p, nil
}

func (p *probeConn) send(line string) { _, _ = p.conn.Write([]byte(line + "\r\n")) }

func (p *probeConn) close() { p.send("QUIT :done"); p.conn.Close() }

// session drives an oper on irc1's bot port (and, but for check, a watcher
// on irc2's bot port, both in linkProbeChannel) through action:
//
//	check: already = irc1 lists irc2 in LINKS.
//	split: when linked, SQUIT irc2 and wait until each client saw the
//	       other QUIT; already = was split.
//	join:  when split, CONNECT irc2 and wait until each client saw the
//	       other JOIN; already = was linked.
func (l *Linked) session(action string) (linkResult, error) {
	k := l.c.Linked
	tag := rand.IntN(1e6)
	c1, err := dialProbe(k.Bot1, fmt.Sprintf("zkop%d", tag), action)
	if err != nil {
		return linkResult{}, fmt.Errorf("cannot connect to irc1 %s: %v", addr(k.Bot1), err)
	}
	defer c1.close()
	p := &linkProbe{action: action, c1: c1, watch: action != "check", linked: -1}
	p.joined1, p.joined2 = !p.watch, !p.watch
	var lines2 <-chan string
	if p.watch {
		if p.c2, err = dialProbe(k.Bot2, fmt.Sprintf("zkwatch%d", tag), action); err != nil {
			return linkResult{}, fmt.Errorf("cannot connect to irc2 %s: %v", addr(k.Bot2), err)
		}
		defer p.c2.close()
		lines2 = p.c2.lines
	}
	timeout := time.After(linkTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case line, ok := <-c1.lines:
			if !ok {
				return p.res, errors.New("irc1 closed the probe connection")
			}
			if err := p.on(true, line); err != nil {
				return p.res, err
			}
		case line, ok := <-lines2:
			if !ok {
				return p.res, errors.New("irc2 closed the probe connection")
			}
			if err := p.on(false, line); err != nil {
				return p.res, err
			}
		case <-tick.C:
		case <-timeout:
			return p.res, fmt.Errorf("irclinked %s: not done within %v", action, linkTimeout)
		}
		if done, err := p.step(); done || err != nil {
			return p.res, err
		}
	}
}

// linkProbe is the state of one session: an oper client on irc1 (c1) and,
// unless it only checks, a watcher on irc2 (c2) in the same channel, so
// that a split shows as QUITs and a join as each seeing the other.
type linkProbe struct {
	action           string
	c1, c2           *probeConn
	watch            bool
	oper             bool
	joined1, joined2 bool
	links            bool      // LINKS listed irc2
	linked           int       // -1 until LINKS ends, then 1 or 0
	see1, see2       bool      // irc2's client sees irc1's / irc1's sees irc2's
	phase            int       // see step
	t0, deadline     time.Time // when the action was sent; phase 1 and 3's bound
	res              linkResult
}

// on handles one line from irc1 (from1) or irc2.
func (p *linkProbe) on(from1 bool, line string) error {
	other := p.c1.nick
	if from1 && p.c2 != nil {
		other = p.c2.nick
	}
	f := strings.SplitN(line, " ", 3)
	if f[0] == "ERROR" {
		return fmt.Errorf("irc%d closed the probe connection: %s", map[bool]int{true: 1, false: 2}[from1], line)
	}
	if len(f) < 2 {
		return nil
	}
	rest := ""
	if len(f) == 3 {
		rest = f[2]
	}
	fromOther := strings.HasPrefix(f[0], ":"+other+"!")
	seen := func() {
		if from1 {
			p.see2 = true
		} else {
			p.see1 = true
		}
	}
	switch f[1] {
	case "001":
		if from1 {
			p.c1.send("OPER zkadmin zkadmin")
			p.c1.send("LINKS")
			if p.watch {
				p.c1.send("JOIN " + linkProbeChannel)
			}
		} else {
			p.c2.send("JOIN " + linkProbeChannel)
		}
	case "381":
		p.oper = true
	case "491", "464":
		return fmt.Errorf("OPER refused on irc1: %s", line)
	case "364":
		if strings.Contains(rest, " "+LinkedName2+" ") {
			p.links = true
		}
	case "365":
		p.linked = map[bool]int{true: 1, false: 0}[p.links]
	case "353":
		if _, names, ok := strings.Cut(rest, ":"); ok {
			for _, n := range strings.Fields(names) {
				if strings.TrimLeft(n, "@+%&~") == other {
					seen()
				}
			}
		}
	case "366":
		if from1 {
			p.joined1 = true
		} else {
			p.joined2 = true
		}
	case "JOIN":
		if fromOther {
			seen()
		}
	case "QUIT":
		if fromOther {
			reason := strings.TrimPrefix(rest, ":")
			if from1 {
				p.see2, p.res.quit2 = false, reason
			} else {
				p.see1, p.res.quit1 = false, reason
			}
		}
	}
	return nil
}

// step moves the session on after a line or a tick: phase 0 waits until
// both clients are registered, opered and joined and LINKS was answered,
// then decides; 1 (split) waits until each client sees the other, then
// sends SQUIT; 2 waits for the effect (QUITs on both sides, or both seeing
// each other); 3 (join while linked) waits until both see each other.
func (p *linkProbe) step() (done bool, err error) {
	switch p.phase {
	case 0:
		if !p.oper || !p.joined1 || !p.joined2 || p.linked < 0 {
			return false, nil
		}
		switch {
		case p.action == "check":
			p.res.already = p.linked == 1
			return true, nil
		case p.action == "split" && p.linked == 0:
			p.res.already = true
			return true, nil
		case p.action == "join" && p.linked == 1:
			// Linked; still wait until the clients see each other (a
			// burst may still be under way).
			p.phase, p.deadline = 3, time.Now().Add(10*time.Second)
		case p.action == "split":
			// The QUITs are only visible once each sees the other.
			p.phase, p.deadline = 1, time.Now().Add(10*time.Second)
		default:
			p.t0 = time.Now()
			p.c1.send("CONNECT " + LinkedName2)
			p.phase = 2
		}
	case 1:
		if p.see1 && p.see2 {
			p.t0 = time.Now()
			p.c1.send("SQUIT " + LinkedName2 + " :irclinked split")
			p.phase = 2
		} else if time.Now().After(p.deadline) {
			return false, fmt.Errorf("linked, but the probe clients do not see each other in %s after 10 s", linkProbeChannel)
		}
	case 2:
		if p.action == "split" && p.res.quit1 != "" && p.res.quit2 != "" ||
			p.action == "join" && p.see1 && p.see2 {
			p.res.took = time.Since(p.t0)
			return true, nil
		}
	case 3:
		if p.see1 && p.see2 {
			p.res.already = true
			return true, nil
		}
		if time.Now().After(p.deadline) {
			return false, fmt.Errorf("irc1 lists irc2 in LINKS, but the probe clients do not see each other in %s after 10 s", linkProbeChannel)
		}
	}
	return false, nil
}
