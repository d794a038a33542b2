package servers

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func testConfig(t *testing.T, env map[string]string) *Config {
	t.Helper()
	root, err := FindRoot()
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load(root, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	c.Log = &bytes.Buffer{}
	return c
}

func TestLoadDefaults(t *testing.T) {
	c := testConfig(t, nil)
	if c.ZKPort != 2181 || c.KafkaPort != 9092 || c.KafkaControllerPort != 9093 || c.IRCPort != 6667 ||
		c.IRCBridgePort != 6668 || c.NgircdPort != 6670 || c.AthemeLinkPort != 7001 || c.Linked.Bot2 != 6693 {
		t.Errorf("defaults: %+v", c)
	}
	if c.DataDir != filepath.Join(c.Root, ".data") || c.CacheDir != filepath.Join(c.Root, ".cache") {
		t.Errorf("folders: %s %s", c.DataDir, c.CacheDir)
	}
	if _, err := Load(c.Root, func(k string) string {
		return map[string]string{"ZKCHAT_ZK_PORT": "x", "ZKCHAT_CLUSTER_BASE": "15"}[k]
	}); err == nil || !strings.Contains(err.Error(), "ZKCHAT_ZK_PORT") || !strings.Contains(err.Error(), "ZKCHAT_CLUSTER_BASE") {
		t.Errorf("bad settings: %v", err)
	}
	got := strings.Join(testConfig(t, map[string]string{"ZKCHAT_ZK_PORT": "12181"}).Env(), " ")
	if !strings.Contains(got, "ZKCHAT_ZOOKEEPER=127.0.0.1:12181 ZKCHAT_KAFKA=127.0.0.1:9092 ") {
		t.Errorf("env: %s", got)
	}
}

// TestRenderDeployTemplates renders every template of deploy/ with the
// values the servers give it: none may miss a key or keep a placeholder.
func TestRenderDeployTemplates(t *testing.T) {
	c := testConfig(t, nil)
	dir := t.TempDir()
	cases := map[string]map[string]any{
		"zookeeper/zoo.cfg.tmpl": {"DATA_DIR": "/d", "ZK_PORT": 2181},
		"zookeeper/ensemble.cfg.tmpl": {"DATA_DIR": "/d", "CLIENT_PORT": 1, "QUORUM_1": 2, "QUORUM_2": 3, "QUORUM_3": 4,
			"ELECTION_1": 5, "ELECTION_2": 6, "ELECTION_3": 7},
		"kafka/server.properties.tmpl":  {"KAFKA_PORT": 9092, "CONTROLLER_PORT": 9093, "LOG_DIRS": "/d"},
		"kafka/cluster.properties.tmpl": {"NODE_ID": 1, "KAFKA_PORT": 1, "CONTROLLER_PORT": 2, "LOG_DIRS": "/d", "VOTERS": "1@x:1"},
		"inspircd/inspircd.conf.tmpl": {"CONF_DIR": "/c", "RUN_DIR": "/r", "PID_FILE": "/p", "LOG_FILE": "/l",
			"IRC_PORT": 6667, "BRIDGE_PORT": 6668, "CASEMAPPING": "ascii"},
		"inspircd/inspircd-accounts.conf.tmpl": {"CONF_DIR": "/c", "RUN_DIR": "/r", "PID_FILE": "/p", "LOG_FILE": "/l",
			"IRC_PORT": 1, "BRIDGE_PORT": 2, "LINK_PORT": 3, "CASEMAPPING": "rfc1459"},
		"inspircd/inspircd-linked.conf.tmpl": {"SERVER_NAME": "irc1.zkchat.test", "SERVER_ID": "1ZK", "PEER_NAME": "irc2.zkchat.test",
			"IRC_PORT": 1, "BRIDGE_PORT": 2, "STRICT_PORT": 3, "LINK_PORT": 4, "PEER_LINK_PORT": 5,
			"CONF_DIR": "/c", "RUN_DIR": "/r", "PID_FILE": "/p", "LOG_FILE": "/l", "CASEMAPPING": "rfc1459",
			"HIDESPLITS": "no", "STRICT_THRESHOLD": 20, "STRICT_COMMANDRATE": 1000, "STRICT_FAKELAG": "no"},
		"ngircd/ngircd.conf.tmpl": {"CONF_DIR": "/c", "PID_DIR": "/p", "IRC_PORT": 6670, "SERVER_USER": "u", "SERVER_GROUP": "g"},
		"atheme/atheme.conf.tmpl": {"LINK_PORT": 7001, "CASEMAPPING": "rfc1459"},
	}
	tmpls, _ := filepath.Glob(c.deploy("*", "*.tmpl"))
	if len(tmpls) != len(cases) {
		t.Errorf("%d templates in deploy/, %d cases", len(tmpls), len(cases))
	}
	for name, data := range cases {
		dst := filepath.Join(dir, strings.ReplaceAll(name, "/", "_"))
		if err := Render(c.deploy(name), dst, data); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		b, _ := os.ReadFile(dst)
		if bytes.Contains(b, []byte("{{")) || bytes.Contains(b, []byte("<no value>")) {
			t.Errorf("%s: a placeholder is left", name)
		}
		// A missing key is an error, not an empty value.
		for k := range data {
			short := map[string]any{}
			for k2, v := range data {
				if k2 != k {
					short[k2] = v
				}
			}
			if err := Render(c.deploy(name), dst, short); err == nil {
				t.Errorf("%s without %s rendered", name, k)
			}
			break
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "zookeeper_zoo.cfg.tmpl"))
	if !strings.Contains(string(b), "\nclientPort=2181\n") || !strings.Contains(string(b), "\ndataDir=/d\n") {
		t.Errorf("zoo.cfg:\n%s", b)
	}
}

func TestWaitPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if !PortOpen(port) {
		t.Fatal("listening port not open")
	}
	if err := WaitPort(port, time.Second); err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if PortOpen(port) {
		t.Fatal("closed port open")
	}
	t0 := time.Now()
	if err := WaitPort(port, 500*time.Millisecond); err == nil {
		t.Fatal("closed port: no error")
	}
	if d := time.Since(t0); d < 400*time.Millisecond || d > 3*time.Second {
		t.Errorf("WaitPort on a closed port returned after %v", d)
	}
	// A port that opens while waiting.
	go func() {
		time.Sleep(300 * time.Millisecond)
		if l, err := net.Listen("tcp", addr(port)); err == nil {
			t.Cleanup(func() { l.Close() })
		}
	}()
	if err := WaitPort(port, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestProcessGroupStop: a process started by StartProcess leads its own
// group, so StopGroup ends its children too, and a process that ignores
// SIGTERM is killed after the bound.
func TestProcessGroupStop(t *testing.T) {
	dir := t.TempDir()
	pidfile, logfile := filepath.Join(dir, "x.pid"), filepath.Join(dir, "x.log")
	// The shell ignores TERM and has a sleep child (same group).
	pid, err := StartProcess(pidfile, logfile, nil, "sh", "-c", `trap "" TERM; sleep 300 & echo child $!; wait`)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := PidRunning(pidfile, "trap"); !ok || got != pid {
		t.Fatalf("PidRunning = %d %v, want %d", got, ok, pid)
	}
	if _, ok := PidRunning(pidfile, "no such pattern"); ok {
		t.Fatal("PidRunning matched a wrong pattern")
	}
	var child string
	if err := WaitFor(5*time.Second, pid, func() bool {
		b, _ := os.ReadFile(logfile)
		for _, l := range strings.Split(string(b), "\n") {
			if c, ok := strings.CutPrefix(l, "child "); ok {
				child = c
			}
		}
		return child != ""
	}); err != nil {
		t.Fatal(err)
	}
	if pgid, _ := exec.Command("ps", "-o", "pgid=", "-p", child).Output(); strings.TrimSpace(string(pgid)) != strconv.Itoa(pid) {
		t.Fatalf("child %s in group %q, want %d", child, pgid, pid)
	}
	t0 := time.Now()
	if killed := StopGroup(pid, 500*time.Millisecond); !killed {
		t.Error("a shell ignoring TERM stopped without SIGKILL")
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("StopGroup took %v", d)
	}
	if Alive(pid) {
		t.Error("leader alive")
	}
	// SIGKILL reaches the child asynchronously: on a busy machine it may
	// still run for a moment after the leader is gone (a clean-clone CI
	// run saw it right after StopGroup returned).
	cpid, _ := strconv.Atoi(child)
	for end := time.Now().Add(2 * time.Second); Alive(cpid) && time.Now().Before(end); {
		time.Sleep(20 * time.Millisecond)
	}
	if Alive(cpid) {
		t.Errorf("child %s of the group still runs 2 s after StopGroup", child)
	}
	// A plain TERM works without the kill.
	pid, err = StartProcess(pidfile, logfile, nil, "sleep", "300")
	if err != nil {
		t.Fatal(err)
	}
	if killed := StopGroup(pid, 5*time.Second); killed || Alive(pid) {
		t.Errorf("sleep: killed %v, alive %v", killed, Alive(pid))
	}
}

// TestZooKeeperPrivate starts a ZooKeeper of its own on a free port, probes
// it, stops it, and checks that nothing is left running.
func TestZooKeeperPrivate(t *testing.T) {
	if _, err := os.Stat("/usr/share/java/zookeeper.jar"); err != nil && os.Getenv("ZKCHAT_TEST_STRICT") != "1" {
		t.Skip("ZooKeeper is not installed (scripts/install-deps.sh zookeeper)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	c := testConfig(t, map[string]string{"ZKCHAT_ZK_PORT": strconv.Itoa(port), "ZKCHAT_DATA_DIR": dir})
	zk := c.ZooKeeper()
	if st := zk.Status(); st.State != Down {
		t.Fatalf("before start: %+v", st)
	}
	if err := zk.Start(); err != nil {
		t.Fatalf("start: %v\n%s", err, c.Log)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = zk.Stop()
		}
	})
	pid := ReadPid(filepath.Join(dir, "zookeeper", "zookeeper.pid"))
	if !Alive(pid) {
		t.Fatalf("pid %d from the pid file is not alive", pid)
	}
	if out, err := FourLetter(port, "ruok"); err != nil || out != "imok" {
		t.Errorf("ruok: %q %v", out, err)
	}
	if st := zk.Status(); st.State != Up || !strings.Contains(st.Line, "Mode: standalone") {
		t.Errorf("status: %+v", st)
	}
	// Starting again reuses it.
	if err := zk.Start(); err != nil || ReadPid(filepath.Join(dir, "zookeeper", "zookeeper.pid")) != pid {
		t.Errorf("second start: %v", err)
	}
	// A Config of another process (no child of ours) finds and stops it.
	other := testConfig(t, map[string]string{"ZKCHAT_ZK_PORT": strconv.Itoa(port), "ZKCHAT_DATA_DIR": dir})
	if err := other.ZooKeeper().Stop(); err != nil {
		t.Fatal(err)
	}
	stopped = true
	if Alive(pid) {
		t.Errorf("pid %d alive after stop", pid)
	}
	if PortOpen(port) {
		t.Errorf("port %d open after stop", port)
	}
	if _, err := os.Stat(filepath.Join(dir, "zookeeper", "zookeeper.pid")); !os.IsNotExist(err) {
		t.Errorf("pid file left: %v", err)
	}
	if out, _ := exec.Command("pgrep", "-f", "QuorumPeerMain "+filepath.Join(dir, "zookeeper")).Output(); len(out) > 0 {
		t.Errorf("left running: %s", out)
	}
	if st := zk.Status(); st.State != Down {
		t.Errorf("after stop: %+v", st)
	}
}
