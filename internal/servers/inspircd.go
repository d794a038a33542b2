package servers

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"time"
)

const (
	inspircdBin = "/usr/sbin/inspircd"
	ngircdBin   = "/usr/sbin/ngircd"
	athemeBin   = "/usr/bin/atheme-services"
)

// inspircdArgv: --nofork keeps it in the foreground (the pid we record is
// the server's); as root InspIRCd exits at once without --runasroot.
func inspircdArgv(cfg string) []string {
	argv := []string{inspircdBin, "--nofork", "--config", cfg}
	if asRoot() {
		argv = append(argv, "--runasroot")
	}
	return argv
}

// InspIRCd is InspIRCd 3 (Debian's inspircd package) on IRCPort for people
// and test clients and IRCBridgePort for the zkchat bridge (a connect class
// without flood limits); config, MOTD, log and pid file in
// DataDir/inspircd (nothing is read from /etc/inspircd).
func (c *Config) InspIRCd() Server {
	dir := filepath.Join(c.DataDir, "inspircd")
	cfg := filepath.Join(dir, "inspircd.conf")
	pidfile := filepath.Join(dir, "inspircd.pid") // InspIRCd writes it too (<pid>)
	logfile := filepath.Join(dir, "inspircd.log")
	var version string
	answers := func() bool {
		lines, err := IRCProbe(c.IRCPort, 5*time.Second)
		version = ircVersion(lines)
		return err == nil && PortOpen(c.IRCBridgePort)
	}
	return &daemon{
		c: c, name: "inspircd", deps: "inspircd",
		pidfile: pidfile, pattern: "--config " + cfg,
		outfile:  filepath.Join(dir, "inspircd.out"), // startup banner and config errors
		ports:    []int{c.IRCPort, c.IRCBridgePort},
		portVars: "ZKCHAT_IRC_PORT / ZKCHAT_IRC_BRIDGE_PORT; the inspircd package's own daemon runs as user irc",
		check: func() error {
			return distinct("ZKCHAT_IRC_PORT and ZKCHAT_IRC_BRIDGE_PORT", c.IRCPort, c.IRCBridgePort)
		},
		startTimeout: 30 * time.Second, stopTimeout: 10 * time.Second,
		prepare: func() error {
			if err := Render(c.deploy("inspircd", "inspircd.conf.tmpl"), cfg, map[string]any{
				"CONF_DIR": dir, "RUN_DIR": dir, "PID_FILE": pidfile, "LOG_FILE": logfile,
				"IRC_PORT": c.IRCPort, "BRIDGE_PORT": c.IRCBridgePort, "CASEMAPPING": c.Casemapping}); err != nil {
				return err
			}
			return copyFile(c.deploy("inspircd", "motd.txt"), filepath.Join(dir, "motd.txt"))
		},
		argv:    func() []string { return inspircdArgv(cfg) },
		answers: answers,
		describe: func() string {
			return fmt.Sprintf("on %s, bridge port %s, %s", addr(c.IRCPort), addr(c.IRCBridgePort), version)
		},
		failLogs: []string{filepath.Join(dir, "inspircd.out"), logfile},
	}
}

// NgIRCd is ngIRCd (Debian's ngircd package) on NgircdPort: a second,
// independent IRC network, one port for people, test clients and bridges
// (command penalties off). Config, MOTD, log and pid files in
// DataDir/ngircd. Started as root, ngIRCd drops to user irc; its own pid
// file goes to DataDir/ngircd/run, which belongs to irc.
func (c *Config) NgIRCd() Server {
	dir := filepath.Join(c.DataDir, "ngircd")
	cfg := filepath.Join(dir, "ngircd.conf")
	runDir := filepath.Join(dir, "run")
	pidfile := filepath.Join(dir, "ngircd.pid")
	pattern := "-f " + cfg
	var version string
	d := &daemon{
		c: c, name: "ngircd", deps: "irc",
		pidfile: pidfile, pattern: pattern,
		outfile:  filepath.Join(dir, "ngircd.log"), // with -n ngIRCd logs to the console
		ports:    []int{c.NgircdPort},
		portVars: "ZKCHAT_NGIRCD_PORT; the ngircd package's own daemon runs as user irc",
		check: func() error {
			if c.NgircdPort == c.IRCPort || c.NgircdPort == c.IRCBridgePort {
				return fmt.Errorf("ZKCHAT_NGIRCD_PORT is %d, an InspIRCd port (ZKCHAT_IRC_PORT / ZKCHAT_IRC_BRIDGE_PORT); they must differ", c.NgircdPort)
			}
			return nil
		},
		startTimeout: 30 * time.Second, stopTimeout: 10 * time.Second,
		argv: func() []string { return []string{ngircdBin, "-n", "-f", cfg} },
		answers: func() bool {
			lines, err := IRCProbe(c.NgircdPort, 5*time.Second)
			version = ircVersion(lines)
			return err == nil
		},
		describe: func() string { return fmt.Sprintf("on %s, %s", addr(c.NgircdPort), version) },
		failLogs: []string{filepath.Join(dir, "ngircd.log")},
	}
	d.prepare = func() error {
		// As root ngIRCd drops to irc:irc after reading its config; not as
		// root it cannot switch, so name the invoking user (a no-op).
		usr, grp := "irc", "irc"
		if !asRoot() {
			u, err := user.Current()
			if err != nil {
				return err
			}
			g, err := user.LookupGroupId(u.Gid)
			if err != nil {
				return err
			}
			usr, grp = u.Username, g.Name
		} else if _, err := user.Lookup(usr); err != nil {
			return fmt.Errorf("user %s does not exist (Debian's base-passwd has it)", usr)
		}
		for _, p := range []string{filepath.Join(dir, "conf.d"), runDir} {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		}
		// A pid file left by a killed server: ngIRCd does not overwrite one.
		_ = os.Remove(filepath.Join(runDir, "ngircd.pid"))
		if asRoot() {
			if out, err := exec.Command("chown", usr+":"+grp, runDir).CombinedOutput(); err != nil {
				return fmt.Errorf("chown %s: %v: %s", runDir, err, out)
			}
		}
		if err := Render(c.deploy("ngircd", "ngircd.conf.tmpl"), cfg, map[string]any{
			"CONF_DIR": dir, "PID_DIR": runDir, "IRC_PORT": c.NgircdPort,
			"SERVER_USER": usr, "SERVER_GROUP": grp}); err != nil {
			return err
		}
		if err := copyFile(c.deploy("ngircd", "motd.txt"), filepath.Join(dir, "motd.txt")); err != nil {
			return err
		}
		return ngircdConfigtest(cfg)
	}
	return &ngircd{daemon: d, runPid: filepath.Join(runDir, "ngircd.pid")}
}

// ngircd adopts the pid ngIRCd writes itself when ours is gone or stale
// (say a concurrent run removed it), so status, stop and start know the
// server again.
type ngircd struct {
	*daemon
	runPid string
}

func (n *ngircd) adopt() {
	if _, ok := n.running(); ok {
		return
	}
	if pid, ok := PidRunning(n.runPid, n.pattern); ok {
		_ = writeFileAtomic(n.pidfile, fmt.Appendf(nil, "%d\n", pid), 0o644)
		n.c.logf("ngircd (pid %d) had lost its pid file %s; taken over from %s", pid, n.pidfile, n.runPid)
	}
}

func (n *ngircd) Status() Status { n.adopt(); return n.daemon.Status() }
func (n *ngircd) Start() error   { n.adopt(); return n.daemon.Start() }
func (n *ngircd) Stop() error    { n.adopt(); return n.daemon.Stop() }

// ngircdConfigtest: ngircd --configtest exits 0 even for unknown variables,
// so any " - " remark fails the start, except the expected one about
// MaxPenaltyTime = 0 (penalties off on purpose).
func ngircdConfigtest(cfg string) error {
	out, err := exec.Command(ngircdBin, "--configtest", "-f", cfg).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ngircd --configtest -f %s failed: %v\n%s", cfg, err, out)
	}
	if !strings.Contains(string(out), "Ok, dump of your server configuration follows") {
		return fmt.Errorf("ngircd --configtest -f %s did not accept the config:\n%s", cfg, out)
	}
	var remarks []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, " - ") && !strings.Contains(l, "'MaxPenaltyTime') is set to 0") {
			remarks = append(remarks, l)
		}
	}
	if len(remarks) > 0 {
		return fmt.Errorf("ngircd --configtest -f %s: the config has problems:\n%s", cfg, strings.Join(remarks, "\n"))
	}
	return nil
}
