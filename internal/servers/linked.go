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
	var res linkResult
	k := l.c.Linked
	tag := rand.IntN(1e6)
	c1, err := dialProbe(k.Bot1, fmt.Sprintf("zkop%d", tag), action)
	if err != nil {
		return res, fmt.Errorf("cannot connect to irc1 %s: %v", addr(k.Bot1), err)
	}
	defer c1.close()
	var c2 *probeConn
	watch := action != "check"
	if watch {
		if c2, err = dialProbe(k.Bot2, fmt.Sprintf("zkwatch%d", tag), action); err != nil {
			return res, fmt.Errorf("cannot connect to irc2 %s: %v", addr(k.Bot2), err)
		}
		defer c2.close()
	}
	var (
		oper, joined1, joined2 = false, !watch, !watch
		links                  = false
		linked                 = -1
		see1, see2             bool // irc2's client sees irc1's / irc1's sees irc2's
		t0                     time.Time
		phase                  int
		deadline               time.Time
		timeout                = time.After(linkTimeout)
	)
	// on handles one line from irc1 (from1) or irc2.
	on := func(from1 bool, line string) error {
		other := c1.nick
		if from1 && c2 != nil {
			other = c2.nick
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
				see2 = true
			} else {
				see1 = true
			}
		}
		switch f[1] {
		case "001":
			if from1 {
				c1.send("OPER zkadmin zkadmin")
				c1.send("LINKS")
				if watch {
					c1.send("JOIN " + linkProbeChannel)
				}
			} else {
				c2.send("JOIN " + linkProbeChannel)
			}
		case "381":
			oper = true
		case "491", "464":
			return fmt.Errorf("OPER refused on irc1: %s", line)
		case "364":
			if strings.Contains(rest, " "+LinkedName2+" ") {
				links = true
			}
		case "365":
			linked = map[bool]int{true: 1, false: 0}[links]
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
				joined1 = true
			} else {
				joined2 = true
			}
		case "JOIN":
			if fromOther {
				seen()
			}
		case "QUIT":
			if fromOther {
				reason := strings.TrimPrefix(rest, ":")
				if from1 {
					see2, res.quit2 = false, reason
				} else {
					see1, res.quit1 = false, reason
				}
			}
		}
		return nil
	}
	var lines2 <-chan string
	if c2 != nil {
		lines2 = c2.lines
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case line, ok := <-c1.lines:
			if !ok {
				return res, errors.New("irc1 closed the probe connection")
			}
			if err := on(true, line); err != nil {
				return res, err
			}
		case line, ok := <-lines2:
			if !ok {
				return res, errors.New("irc2 closed the probe connection")
			}
			if err := on(false, line); err != nil {
				return res, err
			}
		case <-tick.C:
		case <-timeout:
			return res, fmt.Errorf("irclinked %s: not done within %v", action, linkTimeout)
		}
		switch phase {
		case 0: // registered, opered, joined, LINKS answered
			if !oper || !joined1 || !joined2 || linked < 0 {
				continue
			}
			switch {
			case action == "check":
				res.already = linked == 1
				return res, nil
			case action == "split" && linked == 0:
				res.already = true
				return res, nil
			case action == "join" && linked == 1:
				// Linked; still wait until the clients see each other (a
				// burst may still be under way).
				phase, deadline = 3, time.Now().Add(10*time.Second)
			case action == "split":
				// The QUITs are only visible once each sees the other.
				phase, deadline = 1, time.Now().Add(10*time.Second)
			default:
				t0 = time.Now()
				c1.send("CONNECT " + LinkedName2)
				phase = 2
			}
		case 1: // split: wait until each sees the other, then SQUIT
			if see1 && see2 {
				t0 = time.Now()
				c1.send("SQUIT " + LinkedName2 + " :irclinked split")
				phase = 2
			} else if time.Now().After(deadline) {
				return res, fmt.Errorf("linked, but the probe clients do not see each other in %s after 10 s", linkProbeChannel)
			}
		case 2: // the effect
			if action == "split" && res.quit1 != "" && res.quit2 != "" {
				res.took = time.Since(t0)
				return res, nil
			}
			if action == "join" && see1 && see2 {
				res.took = time.Since(t0)
				return res, nil
			}
		case 3: // join, already linked
			if see1 && see2 {
				res.already = true
				return res, nil
			}
			if time.Now().After(deadline) {
				return res, fmt.Errorf("irc1 lists irc2 in LINKS, but the probe clients do not see each other in %s after 10 s", linkProbeChannel)
			}
		}
	}
}
