package servers

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Atheme is the IRC network WITH accounts: a second InspIRCd 3 linked to
// Atheme IRC services (Debian's atheme-services), which provide NickServ
// accounts and SASL PLAIN. IRCAccountsPort is for people and test clients,
// IRCAccountsBridgePort for the bridge (no flood limits), AthemeLinkPort
// for the server link (Atheme only). Start starts InspIRCd, then Atheme,
// and returns once NickServ answers a client; Stop stops Atheme, then
// InspIRCd. Configs, logs, pid files and Atheme's database live in
// DataDir/inspircd-accounts and DataDir/atheme. The database (the
// registered accounts) survives restarts; remove DataDir/atheme/services.db
// while stopped to start empty.
func (c *Config) Atheme() Server {
	ircDir := filepath.Join(c.DataDir, "inspircd-accounts")
	athDir := filepath.Join(c.DataDir, "atheme")
	a := &atheme{c: c,
		ircCfg: filepath.Join(ircDir, "inspircd.conf"), ircDir: ircDir,
		ircPid: filepath.Join(ircDir, "inspircd.pid"), ircLog: filepath.Join(ircDir, "inspircd.log"),
		ircOut: filepath.Join(ircDir, "inspircd.out"),
		athDir: athDir, athCfg: filepath.Join(athDir, "atheme.conf"),
		athPid: filepath.Join(athDir, "atheme.pid"),
		// Atheme's own pid file (-p): not athPid, as Atheme refuses to start
		// ("daemon is already running") when the pid in it is alive.
		athOwnPid: filepath.Join(athDir, "atheme-services.pid"),
		athLog:    filepath.Join(athDir, "atheme.log"), athOut: filepath.Join(athDir, "atheme.out"),
	}
	return a
}

type atheme struct {
	c                                      *Config
	ircDir, ircCfg, ircPid, ircLog, ircOut string
	athDir, athCfg, athPid, athOwnPid      string
	athLog, athOut                         string
}

const (
	ircStartTimeout = 30 * time.Second
	ircStopTimeout  = 10 * time.Second
)

func (a *atheme) Name() string { return "atheme" }

func (a *atheme) ports() []int {
	return []int{a.c.IRCAccountsPort, a.c.IRCAccountsBridgePort, a.c.AthemeLinkPort}
}

func (a *atheme) ircd() (int, bool)    { return PidRunning(a.ircPid, "--config "+a.ircCfg) }
func (a *atheme) athemed() (int, bool) { return PidRunning(a.athPid, "-c "+a.athCfg) }

func (a *atheme) servicesReady() bool {
	return servicesProbe(a.c.IRCAccountsPort) == nil && PortOpen(a.c.IRCAccountsBridgePort)
}

func (a *atheme) Status() Status {
	ip, irc := a.ircd()
	ap, ath := a.athemed()
	switch {
	case irc && ath && a.servicesReady():
		return Status{State: Up, Line: fmt.Sprintf("atheme: running (inspircd pid %d, atheme pid %d) on %s, bridge port %s, NickServ answers",
			ip, ap, addr(a.c.IRCAccountsPort), addr(a.c.IRCAccountsBridgePort))}
	case irc || ath:
		return Status{State: Unhealthy, Line: fmt.Sprintf("atheme: inspircd running %v (pid %d), atheme running %v (pid %d), but NickServ does not answer on %s (logs: %s, %s)",
			irc, ip, ath, ap, addr(a.c.IRCAccountsPort), a.ircLog, a.athLog)}
	}
	for _, p := range a.ports() {
		if PortOpen(p) {
			return Status{State: Down, PortTaken: true, Line: fmt.Sprintf("atheme: not running, but %s is taken by a process devenv did not start", addr(p))}
		}
	}
	return Status{State: Down, Line: "atheme: not running"}
}

func (a *atheme) Start() error {
	c := a.c
	if err := distinct("ZKCHAT_IRC_ACCOUNTS_PORT, ZKCHAT_IRC_ACCOUNTS_BRIDGE_PORT and ZKCHAT_ATHEME_LINK_PORT", a.ports()...); err != nil {
		return err
	}
	if err := c.Install("irc"); err != nil {
		return err
	}
	if ip, ok := a.ircd(); ok {
		if ap, ok := a.athemed(); ok {
			if err := WaitFor(ircStartTimeout, ap, a.servicesReady); err != nil {
				return fmt.Errorf("inspircd (pid %d) and atheme (pid %d) run but NickServ does not answer on %s; try: devenv stop atheme", ip, ap, addr(c.IRCAccountsPort))
			}
			c.logf("atheme already running (inspircd pid %d, atheme pid %d) on %s, bridge port %d", ip, ap, addr(c.IRCAccountsPort), c.IRCAccountsBridgePort)
			return nil
		}
	}
	t0 := time.Now()
	if _, ok := a.ircd(); !ok {
		if err := a.startIRCd(); err != nil {
			return err
		}
	}
	// Atheme connects at once, and retries every serverinfo::recontime (2 s)
	// when InspIRCd was restarted under it.
	ap, ok := a.athemed()
	if !ok {
		var err error
		if ap, err = a.startAtheme(); err != nil {
			return a.fail(err)
		}
	}
	err := WaitFor(ircStartTimeout, ap, a.servicesReady)
	switch {
	case err == nil:
		ip, _ := a.ircd()
		c.logf("atheme ready: NickServ answers on %s (bridge %s) after %.1f s (inspircd pid %d, atheme pid %d; logs %s, %s)",
			addr(c.IRCAccountsPort), addr(c.IRCAccountsBridgePort), time.Since(t0).Seconds(), ip, ap, a.ircLog, a.athLog)
		return nil
	case errors.Is(err, errExited):
		return a.fail(errors.New("atheme-services exited during startup"))
	}
	if _, ok := a.ircd(); !ok {
		return a.fail(errors.New("inspircd (accounts) exited during startup"))
	}
	return a.fail(fmt.Errorf("NickServ did not answer on %s within %v (Atheme not linked?)", addr(c.IRCAccountsPort), ircStartTimeout))
}

func (a *atheme) startIRCd() error {
	c := a.c
	_ = os.Remove(a.ircPid)
	for _, p := range a.ports() {
		if PortOpen(p) {
			return fmt.Errorf("%s is already in use by a process devenv did not start (set ZKCHAT_IRC_ACCOUNTS_PORT / ZKCHAT_IRC_ACCOUNTS_BRIDGE_PORT / ZKCHAT_ATHEME_LINK_PORT to use others)", addr(p))
		}
	}
	if err := Render(c.deploy("inspircd", "inspircd-accounts.conf.tmpl"), a.ircCfg, map[string]any{
		"CONF_DIR": a.ircDir, "RUN_DIR": a.ircDir, "PID_FILE": a.ircPid, "LOG_FILE": a.ircLog,
		"IRC_PORT": c.IRCAccountsPort, "BRIDGE_PORT": c.IRCAccountsBridgePort, "LINK_PORT": c.AthemeLinkPort,
		"CASEMAPPING": c.Casemapping}); err != nil {
		return err
	}
	if err := copyFile(c.deploy("inspircd", "motd.txt"), filepath.Join(a.ircDir, "motd.txt")); err != nil {
		return err
	}
	c.logf("starting inspircd (accounts) on %s, bridge port %d, link port %d, casemapping %s…",
		addr(c.IRCAccountsPort), c.IRCAccountsBridgePort, c.AthemeLinkPort, c.Casemapping)
	pid, err := StartProcess(a.ircPid, a.ircOut, nil, inspircdArgv(a.ircCfg)...)
	if err != nil {
		return err
	}
	listening := func() bool {
		for _, p := range a.ports() {
			if !PortOpen(p) {
				return false
			}
		}
		return true
	}
	if err := WaitFor(ircStartTimeout, pid, listening); err != nil {
		return a.fail(fmt.Errorf("inspircd (accounts) did not listen: %w", err))
	}
	return nil
}

func (a *atheme) startAtheme() (int, error) {
	c := a.c
	// Not running: a pid file left by a killed Atheme whose pid now belongs
	// to another process would stop it from starting.
	_ = os.Remove(a.athPid)
	_ = os.Remove(a.athOwnPid)
	if err := Render(c.deploy("atheme", "atheme.conf.tmpl"), a.athCfg, map[string]any{
		"LINK_PORT": c.AthemeLinkPort, "CASEMAPPING": c.Casemapping}); err != nil {
		return 0, err
	}
	c.logf("starting atheme-services (services.zkchat.test, uplink %s)…", addr(c.AthemeLinkPort))
	// -n: no fork; -D: data dir (services.db); -l/-p: log and pid file.
	return StartProcess(a.athPid, a.athOut, nil, athemeBin, "-n", "-c", a.athCfg,
		"-D", a.athDir, "-l", a.athLog, "-p", a.athOwnPid)
}

// fail shows the logs, stops both and returns err.
func (a *atheme) fail(err error) error {
	a.c.logf("%v", err)
	a.c.tail(a.ircOut, 20) // config errors go here, before the log opens
	a.c.tail(a.ircLog, 15) // LINK: lines say why Atheme was refused
	a.c.tail(a.athOut, 20)
	_ = a.Stop()
	return err
}

func (a *atheme) Stop() error {
	_, irc := a.ircd()
	_, ath := a.athemed()
	if !irc && !ath {
		_ = os.Remove(a.ircPid)
		_ = os.Remove(a.athPid)
		a.c.logf("atheme (and its inspircd) not running")
		return nil
	}
	// Atheme first: it saves services.db on TERM and leaves the network cleanly.
	a.c.stopPidfile(a.athPid, "atheme-services", "-c "+a.athCfg, ircStopTimeout)
	a.c.stopPidfile(a.ircPid, "inspircd (accounts)", "--config "+a.ircCfg, ircStopTimeout)
	return nil
}
