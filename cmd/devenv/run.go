package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/zkchat/zkchat/internal/servers"
)

// run is the README's run command: install what is missing, start
// ZooKeeper, Kafka and InspIRCd (those that do not run yet), build
// ./zkchat, create the zkchat tree, start the IRC bridge (`zkchat bridge`,
// with a manager built in), print how to chat, and wait; Ctrl-C (or TERM)
// stops what this run started. --no-wait (or ZKCHAT_RUN_DETACH=1) leaves
// everything running; `run stop` stops it later (the bridge, and the
// servers that run started).
//
// zkchat's settings come from the environment as for every zkchat command
// (ZKCHAT_ZOOKEEPER, ZKCHAT_KAFKA, ZKCHAT_TOPIC_PREFIX, ...). A server named
// there that is not the local one is neither started nor stopped. The
// bridge connects to ZKCHAT_IRC_BRIDGE_SERVER (default the local InspIRCd's
// port without flood limits, hence --rate -1 unless ZKCHAT_IRC_RATE says
// otherwise); people connect to ZKCHAT_IRC_SERVER. The bot is
// ZKCHAT_IRC_NICK (zkchat) in ZKCHAT_IRC_CHANNEL (#chatroom).
func run(cfg *servers.Config, args []string) int {
	detach := map[string]bool{"1": true, "true": true, "yes": true}[os.Getenv("ZKCHAT_RUN_DETACH")]
	switch {
	case len(args) == 0:
	case len(args) == 1 && (args[0] == "--no-wait" || args[0] == "--detach"):
		detach = true
	case len(args) == 1 && args[0] == "stop":
		return runStop(cfg)
	default:
		usage()
	}
	r := newRunner(cfg)
	s := newSession()
	defer s.cleanup()
	if err := r.start(s, detach); err != nil {
		fmt.Fprintf(os.Stderr, "devenv: error: %v\n", err)
		return 1
	}
	if detach {
		s.mu.Lock()
		s.stops = nil // leave everything up
		s.mu.Unlock()
		return 0
	}
	// Wait until Ctrl-C / TERM (the session's handler stops everything),
	// or until the bridge ends on its own.
	for servers.Alive(r.bridgePid) {
		time.Sleep(500 * time.Millisecond)
	}
	_ = os.Remove(r.bridgePidfile)
	fmt.Fprintf(os.Stderr, "devenv: the bridge stopped (log %s); stopping the rest\n", r.bridgeLog)
	return 0
}

type runner struct {
	cfg                      *servers.Config
	bin                      string
	bridgeLog, bridgePidfile string
	state                    string // the servers a --no-wait run started
	zk, kafka                string
	ircBridge, ircUsers      string
	nick, channel, rate      string
	bridgePid                int
}

func newRunner(cfg *servers.Config) *runner {
	env := func(k, def string) string {
		if v := os.Getenv(k); v != "" {
			return v
		}
		return def
	}
	return &runner{cfg: cfg,
		bin:           filepath.Join(cfg.Root, "zkchat"),
		bridgeLog:     filepath.Join(cfg.DataDir, "bridge.log"),
		bridgePidfile: filepath.Join(cfg.DataDir, "bridge.pid"),
		state:         filepath.Join(cfg.DataDir, "run.started"),
		zk:            env("ZKCHAT_ZOOKEEPER", fmt.Sprintf("%s:%d", servers.Host, cfg.ZKPort)),
		kafka:         env("ZKCHAT_KAFKA", fmt.Sprintf("%s:%d", servers.Host, cfg.KafkaPort)),
		ircBridge:     env("ZKCHAT_IRC_BRIDGE_SERVER", fmt.Sprintf("%s:%d", servers.Host, cfg.IRCBridgePort)),
		ircUsers:      env("ZKCHAT_IRC_SERVER", fmt.Sprintf("%s:%d", servers.Host, cfg.IRCPort)),
		nick:          env("ZKCHAT_IRC_NICK", "zkchat"),
		channel:       env("ZKCHAT_IRC_CHANNEL", "#chatroom"),
		rate:          os.Getenv("ZKCHAT_IRC_RATE"),
	}
}

func isLocal(hosts string, port int) bool {
	return hosts == fmt.Sprintf("%s:%d", servers.Host, port) || hosts == fmt.Sprintf("localhost:%d", port)
}

func (r *runner) stopBridge() {
	if pid, ok := servers.PidRunning(r.bridgePidfile, r.bin+" bridge"); ok {
		fmt.Fprintf(os.Stderr, "devenv: stopping the bridge (pid %d)…\n", pid)
		// It takes its users offline and quits IRC on TERM: give it time.
		servers.StopGroup(pid, 30*time.Second)
	}
	_ = os.Remove(r.bridgePidfile)
}

func (r *runner) start(s *session, detach bool) error {
	cfg := r.cfg
	// What make run uses, not what the tests add (ngIRCd, atheme, ii).
	if err := cfg.Install("run"); err != nil {
		return err
	}
	zkHosts, _, _ := strings.Cut(r.zk, "/")
	var local []string
	if isLocal(zkHosts, cfg.ZKPort) {
		local = append(local, "zookeeper")
	} else {
		fmt.Fprintf(os.Stderr, "devenv: ZooKeeper: using %s (not a local server of devenv)\n", r.zk)
	}
	if isLocal(r.kafka, cfg.KafkaPort) {
		local = append(local, "kafka")
	} else {
		fmt.Fprintf(os.Stderr, "devenv: Kafka: using %s (not a local server of devenv)\n", r.kafka)
	}
	if isLocal(r.ircBridge, cfg.IRCBridgePort) {
		local = append(local, "inspircd")
		// Our InspIRCd's bridge port exempts the bot from flood limits.
		if r.rate == "" {
			r.rate = "-1"
		}
	} else {
		fmt.Fprintf(os.Stderr, "devenv: IRC: the bridge uses %s (not a local server of devenv)\n", r.ircBridge)
	}
	var started []string
	for _, name := range local {
		srv, _ := cfg.Get(name)
		st := srv.Status()
		switch {
		case st.State == servers.Up:
			fmt.Fprintf(os.Stderr, "devenv: %s already running; reusing it (this run will not stop it)\n", name)
			continue
		case st.State == servers.Down && st.PortTaken:
			fmt.Fprintf(os.Stderr, "devenv: %s; using it as it is\n", st.Line)
			continue
		case st.State == servers.Down:
			started = append(started, name)
			s.started(func() { _ = srv.Stop(); r.stateRemove(name) })
		}
		if err := srv.Start(); err != nil {
			return err
		}
	}
	s.started(r.stopBridge)
	if err := r.build(); err != nil {
		return err
	}
	// The zkchat tree (the bridge's manager would create it too; this fails
	// early and clearly when ZooKeeper is not reachable).
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	initCmd := exec.CommandContext(ctx, r.bin, "init")
	initCmd.Env = append(os.Environ(), "ZKCHAT_ZOOKEEPER="+r.zk) // ZKCHAT_ZK_PORT may move it
	if out, err := initCmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("zkchat init got no ZooKeeper session within 60 s: is ZooKeeper at %s reachable?", r.zk)
		}
		return fmt.Errorf("zkchat init failed (%v): %s", err, out)
	}
	r.stopBridge() // a bridge of an earlier run: replaced by the new build
	switch online, err := nickOnline(r.ircBridge, r.nick); {
	case err != nil:
		fmt.Fprintf(os.Stderr, "devenv: warning: could not ask %s whether %s is taken (%v); the bridge keeps trying to connect\n", r.ircBridge, r.nick, err)
	case online:
		return fmt.Errorf("the nick %s is already connected to %s (another zkchat bridge?); stop the other one, or choose another bot: ZKCHAT_IRC_NICK=... ZKCHAT_IRC_CHANNEL=... make run", r.nick, r.ircBridge)
	}
	role, err := r.startBridge()
	if err != nil {
		return err
	}
	r.printHowTo(role, started, detach)
	if detach {
		for _, n := range started {
			r.stateAdd(n)
		}
	}
	return nil
}

// build runs go build in its own process group, a line every 15 s.
func (r *runner) build() error {
	fmt.Fprintln(os.Stderr, "devenv: building ./zkchat (a first, cold build compiles confluent-kafka-go's cgo part: up to a minute)…")
	t0 := time.Now()
	cmd := exec.Command("go", "build", "-o", r.bin, "./cmd/zkchat")
	cmd.Dir, cmd.Stdout, cmd.Stderr = r.cfg.Root, os.Stderr, os.Stderr
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("go build failed (%v, output above)", err)
			}
			fmt.Fprintf(os.Stderr, "devenv: built %s in %.1f s\n", r.bin, time.Since(t0).Seconds())
			return nil
		case <-time.After(15 * time.Second):
			fmt.Fprintf(os.Stderr, "devenv: still building… %.0f s\n", time.Since(t0).Seconds())
		}
	}
}

// startBridge starts the bridge and waits until its manager leads (or
// stands by: another leads) and it is in the channel.
func (r *runner) startBridge() (role string, err error) {
	var offset int64
	if st, err := os.Stat(r.bridgeLog); err == nil {
		offset = st.Size()
	}
	args := []string{r.bin, "bridge", "--irc-server", r.ircBridge, "--nick", r.nick, "--channel", r.channel}
	if r.rate != "" {
		args = append(args, "--rate", r.rate)
	}
	// The wait below reads the bridge's info lines.
	level := os.Getenv("ZKCHAT_LOG_LEVEL")
	switch strings.ToLower(level) {
	case "", "warn", "error":
		level = "info"
	}
	env := append(os.Environ(), "ZKCHAT_LOG_LEVEL="+level, "ZKCHAT_ZOOKEEPER="+r.zk, "ZKCHAT_KAFKA="+r.kafka)
	pid, err := servers.StartProcess(r.bridgePidfile, r.bridgeLog, env, args...)
	if err != nil {
		return "", err
	}
	r.bridgePid = pid
	fmt.Fprintf(os.Stderr, "devenv: bridge started (pid %d, log %s): %s on %s in %s; waiting until its manager leads and it is in the channel…\n",
		pid, r.bridgeLog, r.nick, r.ircBridge, r.channel)
	logged := func(text string) bool {
		b, err := os.ReadFile(r.bridgeLog)
		return err == nil && int64(len(b)) >= offset && bytes.Contains(b[offset:], []byte(text))
	}
	t0 := time.Now()
	var joinedAt time.Time
	inChannel := false
	for {
		if role == "" && logged("became leader") {
			role = "leader"
		}
		if joinedAt.IsZero() && logged("joined election") {
			joinedAt = time.Now()
		}
		if role == "" && !joinedAt.IsZero() && time.Since(joinedAt) >= 5*time.Second {
			role = "standby" // another manager leads this tree; ours takes over if it goes
		}
		if !inChannel && logged("channel member list read") {
			inChannel = true
		}
		if role != "" && inChannel {
			fmt.Fprintf(os.Stderr, "devenv: bridge in %s, its manager %s; ready after %.1f s\n", r.channel, map[string]string{"leader": "leads", "standby": "stands by"}[role], time.Since(t0).Seconds())
			return role, nil
		}
		if !servers.Alive(pid) {
			return "", fmt.Errorf("the bridge exited during startup (log %s)", r.bridgeLog)
		}
		if time.Since(t0) > 90*time.Second {
			return "", fmt.Errorf("the bridge was not ready (leader or standby, in %s on %s) within 90 s (log %s)", r.channel, r.ircBridge, r.bridgeLog)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// nickOnline asks server (host:port) by ISON whether nick is connected.
func nickOnline(server, nick string) (bool, error) {
	c, err := net.DialTimeout("tcp", server, 5*time.Second)
	if err != nil {
		return false, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "NICK zkrun%d\r\nUSER zkrun 0 * :zkchat run nick check\r\n", rand.IntN(1e6))
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		l := strings.TrimRight(sc.Text(), "\r")
		f := strings.Fields(l)
		switch {
		case len(f) > 1 && f[0] == "PING":
			fmt.Fprintf(c, "PONG %s\r\n", f[1])
		case len(f) > 1 && f[1] == "001":
			fmt.Fprintf(c, "ISON %s\r\n", nick)
		case len(f) > 1 && f[1] == "303":
			_, list, _ := strings.Cut(l[1:], " :")
			fmt.Fprint(c, "QUIT :done\r\n")
			return strings.TrimSpace(list) != "", nil
		case f != nil && f[0] == "ERROR":
			return false, errors.New(l)
		}
	}
	return false, errors.New("no answer to ISON")
}

func (r *runner) printHowTo(role string, started []string, detach bool) {
	cfg := r.cfg
	host, port, _ := strings.Cut(r.ircUsers, ":")
	var exports []string
	if r.zk != "127.0.0.1:2181" {
		exports = append(exports, "ZKCHAT_ZOOKEEPER="+r.zk)
	}
	if r.kafka != "127.0.0.1:9092" {
		exports = append(exports, "ZKCHAT_KAFKA="+r.kafka)
	}
	if p := os.Getenv("ZKCHAT_TOPIC_PREFIX"); p != "" {
		exports = append(exports, "ZKCHAT_TOPIC_PREFIX="+p)
	}
	rel := func(p string) string {
		if rp, err := filepath.Rel(cfg.Root, p); err == nil && !strings.HasPrefix(rp, "..") {
			return rp
		}
		return p
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("")
	w("zkchat is up: ZooKeeper %s, Kafka %s, IRC %s;", r.zk, r.kafka, r.ircUsers)
	w("bridge pid %d: bot %s in %s (via %s), built-in manager %s.", r.bridgePid, r.nick, r.channel, r.ircBridge, role)
	w("")
	w("Chat from an IRC client (irssi, weechat, hexchat, ii, ...):")
	w("")
	w("  irssi -c %s -p %s -n alice", host, port)
	w("    /join %s", r.channel)
	w("    /msg %s register          # once; you are online while you are in %s", r.nick, r.channel)
	w("    /msg %s help", r.nick)
	w("    /msg %s msg bob hello     # or: /msg %s bob: hello", r.nick, r.nick)
	w("")
	w("Messages to alice arrive as private messages from %s: <bob> hi alice", r.nick)
	w("")
	w("The CLI works alongside, from other terminals:")
	w("")
	w("  cd %s", cfg.Root)
	if len(exports) > 0 {
		w("  export %s", strings.Join(exports, " "))
	}
	w("  ./zkchat register carol")
	w("  ./zkchat chat carol            # then type:  alice: hello from the CLI")
	w("  ./zkchat users --online")
	w("")
	w("While carol is online she is an IRC nick of her own: /msg carol hi from irssi reaches")
	w("her CLI, and her answers come from carol.")
	w("")
	w("Only online users can send, and only to online users.")
	w("")
	w("Logs: bridge      %s", rel(r.bridgeLog))
	for _, l := range [][2]string{{"ZooKeeper", "zookeeper/zookeeper.log"}, {"Kafka", "kafka/logs/server.log"}, {"InspIRCd", "inspircd/inspircd.log"}} {
		if p := filepath.Join(cfg.DataDir, l[1]); isFile(p) {
			w("      %-11s %s", l[0], rel(p))
		}
	}
	w("")
	switch {
	case detach:
		w("Everything keeps running. Stop it with:  go run ./cmd/devenv run stop")
		w("(the bridge, and the servers this run started; make servers-stop stops the servers in any case)")
	case len(started) > 0:
		w("Ctrl-C here stops everything: the bridge and the servers this run started (%s).", strings.Join(started, " "))
	default:
		w("Ctrl-C here stops the bridge. The servers were running already and stay up")
		w("(make servers-stop stops them).")
	}
	fmt.Print(b.String())
}

func isFile(p string) bool { st, err := os.Stat(p); return err == nil && st.Mode().IsRegular() }

func (r *runner) stateNames() []string {
	b, _ := os.ReadFile(r.state)
	return strings.Fields(string(b))
}

func (r *runner) stateAdd(name string) {
	names := r.stateNames()
	for _, n := range names {
		if n == name {
			return
		}
	}
	_ = os.WriteFile(r.state, []byte(strings.Join(append(names, name), "\n")+"\n"), 0o644)
}

func (r *runner) stateRemove(name string) {
	var keep []string
	for _, n := range r.stateNames() {
		if n != name {
			keep = append(keep, n)
		}
	}
	if len(keep) == 0 {
		_ = os.Remove(r.state)
		return
	}
	_ = os.WriteFile(r.state, []byte(strings.Join(keep, "\n")+"\n"), 0o644)
}

// runStop stops the bridge of a run, and the servers a --no-wait run
// started (servers it did not start stay up).
func runStop(cfg *servers.Config) int {
	r := newRunner(cfg)
	r.stopBridge()
	names := r.stateNames()
	if len(names) == 0 {
		fmt.Fprintln(os.Stderr, "devenv: no servers recorded as started by run --no-wait; running ones stay up (make servers-stop stops them)")
		return 0
	}
	rc := 0
	for _, n := range []string{"inspircd", "kafka", "zookeeper"} {
		for _, m := range names {
			if m != n {
				continue
			}
			srv, _ := cfg.Get(n)
			if err := srv.Stop(); err != nil {
				rc = 1
			}
			r.stateRemove(n)
		}
	}
	return rc
}
