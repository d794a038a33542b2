package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/urfave/cli/v2"

	"github.com/zkchat/zkchat/internal/testenv"
)

// zc runs zkchat with args and returns stdout, stderr and the exit code.
// keyDirs is each test's signing key directory (the CLI's default is the
// home directory's).
var keyDirs sync.Map

func keyDir(t *testing.T) string {
	d, _ := keyDirs.LoadOrStore(t, t.TempDir())
	return d.(string)
}

func zc(t *testing.T, env *testenv.Env, stdin io.Reader, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	all := []string{"zkchat"}
	if env != nil {
		all = append(all, "--zookeeper", env.ZooKeeper, "--kafka", env.Kafka, "--topic-prefix", env.Prefix,
			"--key-dir", keyDir(t))
	}
	all = append(all, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	err := run(ctx, all, stdin, &out, &errOut)
	code := exitCode(err, &errOut)
	return out.String(), errOut.String(), code
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"register"}, 2, "want exactly one ID"},
		{[]string{"register", "Alice"}, 2, "invalid user id"},
		{[]string{"register", "a", "b"}, 2, "want exactly one ID"},
		{[]string{"--bogus", "users"}, 2, "flag provided but not defined"},
		{[]string{"send", "--from", "a", "hi"}, 2, "Required flag \"to\""},
		{[]string{"send", "--from", "a", "--to", "b/c", "hi"}, 2, "invalid user id"},
		{[]string{}, 2, "no command given (see zkchat --help)"},
		{[]string{"register", "--bogus", "a"}, 2, "register: flag provided but not defined: -bogus (see zkchat register --help)"},
		{[]string{"bridge", "--irc-password", "pw"}, 2, "bridge: flag provided but not defined: -irc-password"},
		{[]string{"--log-level", "loud", "users"}, 2, "--log-level"},
		{[]string{"--zookeeper", "/chroot-only", "users"}, 2, "no server"},
	} {
		_, stderr, code := zc(t, nil, nil, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("zkchat %q: code %d, stderr %q; want code %d and %q", tc.args, code, stderr, tc.code, tc.want)
		}
		if n := strings.Count(strings.TrimSpace(stderr), "\n"); code != 0 && n > 0 && !strings.Contains(stderr, "USAGE") {
			t.Errorf("zkchat %q: error is %d lines, want one: %q", tc.args, n+1, stderr)
		}
	}
	out, _, code := zc(t, nil, nil, "--help")
	if code != 0 || !strings.Contains(out, "register") || !strings.Contains(out, "ZKCHAT_ZOOKEEPER") {
		t.Errorf("--help: code %d, output %q", code, out)
	}
	// A command's help names the global flags; a default is said once;
	// every setting of the long-running roles has an environment variable.
	out, _, code = zc(t, nil, nil, "bridge", "--help")
	if code != 0 || !strings.Contains(out, "GLOBAL OPTIONS") || !strings.Contains(out, "--zookeeper, --kafka") ||
		strings.Contains(out, "(default 1m) (default") {
		t.Errorf("bridge --help: code %d, output %q", code, out)
	}
	for _, cmd := range []*cli.Command{bridgeCommand(), managerCommand()} {
		for _, f := range cmd.Flags {
			if ev, ok := f.(interface{ GetEnvVars() []string }); !ok || len(ev.GetEnvVars()) == 0 {
				t.Errorf("%s --%s has no environment variable", cmd.Name, f.Names()[0])
			}
		}
	}
	out, _, code = zc(t, nil, nil, "--version")
	if code != 0 || !strings.HasPrefix(out, "zkchat version ") {
		t.Errorf("--version: code %d, output %q", code, out)
	}
}

func startManager(t *testing.T, env *testenv.Env) {
	t.Helper()
	env.LeadingManager(t, "m1")
}

func TestNoManager(t *testing.T) {
	// Not parallel: urfave/cli v2 shares its help flag between apps (a data race).
	env := testenv.New(t)
	if _, stderr, code := zc(t, env, nil, "init"); code != 0 {
		t.Fatalf("init: %s", stderr)
	}
	_, stderr, code := zc(t, env, nil, "--timeout", "1s", "register", "zed")
	if code != 1 || !strings.Contains(stderr, "no manager answered in time") {
		t.Fatalf("register without manager: code %d, %q", code, stderr)
	}
}

// TestPlantedAnswer: request nodes someone else left answered "1" (a
// crashed client, another implementation, anyone) are not the manager's
// answer: without a manager `register` and `unregister` fail and say what
// the tree shows; with one, they get real answers.
func TestPlantedAnswer(t *testing.T) {
	// Not parallel: urfave/cli v2 shares its help flag between apps (a data race).
	env := testenv.New(t)
	if _, stderr, code := zc(t, env, nil, "init"); code != 0 {
		t.Fatalf("init: %s", stderr)
	}
	c := env.Conn(t)
	plant := func(path string) {
		t.Helper()
		if _, err := c.Create(env.Path(path), []byte("1"), 0, zk.WorldACL(zk.PermAll)); err != nil && err != zk.ErrNodeExists {
			t.Fatal(err)
		}
	}
	plant("/request/enroll/erin")
	plant("/request/quit/erin")
	out, stderr, code := zc(t, env, nil, "--timeout", "1s", "register", "erin")
	if code != 1 || strings.Contains(out, "registered") || !strings.Contains(stderr, "erin is not registered") ||
		!strings.Contains(stderr, "no manager is running") {
		t.Fatalf("register with a planted answer, no manager: code %d, %q, %q", code, out, stderr)
	}
	startManager(t, env)
	plant("/request/enroll/erin")
	if out, stderr, code := zc(t, env, nil, "register", "erin"); code != 0 || out != "registered erin\n" {
		t.Fatalf("register: %d %q %q", code, out, stderr)
	}
	plant("/request/quit/erin")
	if out, stderr, code := zc(t, env, nil, "unregister", "erin"); code != 0 || out != "unregistered erin\n" {
		t.Fatalf("unregister: %d %q %q", code, out, stderr)
	}
	if ok, _, err := c.Exists(env.Path("/registry/erin")); err != nil || ok {
		t.Fatalf("erin still registered after unregister (%v)", err)
	}
}

func TestSession(t *testing.T) {
	// Not parallel: urfave/cli v2 shares its help flag between apps (a data race).
	env := testenv.New(t)
	startManager(t, env)
	for _, id := range []string{"alice", "bob"} {
		if out, stderr, code := zc(t, env, nil, "register", id); code != 0 || out != "registered "+id+"\n" {
			t.Fatalf("register %s: %d %q %q", id, code, out, stderr)
		}
	}
	if out, _, _ := zc(t, env, nil, "register", "alice"); out != "alice was already registered\n" {
		t.Fatalf("register again: %q", out)
	}
	if out, _, code := zc(t, env, nil, "users"); code != 0 || out != "alice\nbob\n" {
		t.Fatalf("users: %d %q", code, out)
	}
	if _, stderr, code := zc(t, env, nil, "send", "--from", "alice", "--to", "bob", "hi"); code != 1 || !strings.Contains(stderr, "receiver is offline") {
		t.Fatalf("send to offline: %d %q", code, stderr)
	}
	if _, stderr, code := zc(t, env, nil, "send", "--from", "carl", "--to", "bob", "hi"); code != 1 || !strings.Contains(stderr, "not registered") {
		t.Fatalf("send from unregistered: %d %q", code, stderr)
	}

	// bob chats interactively; alice sends with the one-shot command.
	inR, inW := io.Pipe()
	var out, errOut testenv.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"zkchat", "--zookeeper", env.ZooKeeper, "--kafka", env.Kafka,
			"--topic-prefix", env.Prefix, "chat", "bob"}, inR, &out, &errOut)
	}()
	waitOut := func(want string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(out.String(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("chat output lacks %q: %q (stderr %q)", want, out.String(), errOut.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitOut("online as bob")
	if o, stderr, code := zc(t, env, nil, "send", "--from", "alice", "--to", "bob", "hello", "bob\x1b[2J"); code != 0 || o != "sent to bob\n" {
		t.Fatalf("send: %d %q %q", code, o, stderr)
	}
	waitOut("] from alice: hello bob\\x1b[2J\n") // control characters are escaped
	if !regexp.MustCompile(`(?m)^\[\d\d:\d\d:\d\d\] from alice: hello`).MatchString(out.String()) {
		t.Fatalf("an incoming message is not shown as [time] from sender: text: %q", out.String())
	}
	if o, _, code := zc(t, env, nil, "users", "--online"); code != 0 || o != "bob\n" {
		t.Fatalf("users --online: %d %q", code, o)
	}
	if _, err := io.WriteString(inW, "/who\nnobody: hi\nno colon\n/help\n/frob x\n"); err != nil {
		t.Fatal(err)
	}
	waitOut("who: bob\n")
	waitOut("/quit              leave")
	if strings.Contains(out.String(), "\x1b[K") || strings.Contains(out.String(), "bob> ") {
		t.Fatalf("piped output has a prompt or escape sequences: %q", out.String())
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(errOut.String(), "write `to: text`") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	for !strings.Contains(errOut.String(), "unknown command /frob: type /help") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if s := errOut.String(); !strings.Contains(s, "not registered") || !strings.Contains(s, "write `to: text`") || !strings.Contains(s, "unknown command /frob: type /help") {
		t.Fatalf("chat errors: %q", s)
	}
	if _, err := io.WriteString(inW, "/quit\n"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("chat: %v", err)
	}
	// The chat committed what it showed: read finds nothing new. bob is
	// online again for the read, so alice can send one more first.
	if o, _, code := zc(t, env, nil, "read", "bob"); code != 0 || o != "" {
		t.Fatalf("read after chat: %d %q", code, o)
	}
	if o, _, code := zc(t, env, nil, "unregister", "bob"); code != 0 || o != "unregistered bob\n" {
		t.Fatalf("unregister: %d %q", code, o)
	}
	if o, _, code := zc(t, env, nil, "unregister", "bob"); code != 0 || o != "bob was not registered\n" {
		t.Fatalf("unregister again: %d %q", code, o)
	}
}

func TestIntersperse(t *testing.T) {
	app := &cli.App{Flags: globalFlags(), Commands: []*cli.Command{readCommand(), sendCommand()}}
	for _, tc := range []struct{ in, want string }{
		{"zkchat read bob --follow", "zkchat read --follow bob"},
		{"zkchat -z h:1 read bob -f", "zkchat -z h:1 read -f bob"},
		{"zkchat send hello --from a --to b world", "zkchat send --from a --to b hello world"},
		{"zkchat send --from=a hello --to=b", "zkchat send --from=a --to=b hello"},
		{"zkchat send --from a --to b -- -1 --x", "zkchat send --from a --to b -- -1 --x"},
		{"zkchat nosuch x --y", "zkchat nosuch x --y"},
		{"zkchat --help", "zkchat --help"},
		{"zkchat read bob --zookeeper h:1 -f", "zkchat --zookeeper h:1 read -f bob"},
		{"zkchat -k k:1 send --from a -z=h:1 hi --to b", "zkchat -k k:1 -z=h:1 send --from a --to b hi"},
	} {
		if got := strings.Join(intersperse(app, strings.Fields(tc.in)), " "); got != tc.want {
			t.Errorf("intersperse(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestUnreachableAtOnce: a server where nothing listens is reported at
// once, in one line that says so, for ZooKeeper and for Kafka; before, 15 s
// of waiting and then "cannot reach ZooKeeper ... within 15s".
func TestUnreachableAtOnce(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	// Something that listens, for ZooKeeper, when Kafka is the dead one.
	alive, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer alive.Close()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--zookeeper", dead, "users"}, "ZooKeeper at " + dead + ": nothing listens there (" + dead + ": connection refused): is ZooKeeper running"},
		{[]string{"--zookeeper", dead, "register", "alice"}, "ZooKeeper at " + dead + ": nothing listens there"},
		{[]string{"--zookeeper", dead + "/chat", "read", "alice"}, "ZooKeeper at " + dead + ": nothing listens there"},
		{[]string{"--zookeeper", alive.Addr().String(), "--kafka", dead, "send", "--from", "a", "--to", "b", "hi"},
			"Kafka at " + dead + ": nothing listens there (" + dead + ": connection refused): is Kafka running, and is --kafka right?"},
	} {
		start := time.Now()
		_, stderr, code := zc(t, nil, nil, tc.args...)
		if code != 1 || !strings.Contains(stderr, tc.want) || time.Since(start) > 5*time.Second {
			t.Errorf("zkchat %q: code %d after %s, stderr %q; want code 1 at once and %q", tc.args, code, time.Since(start).Round(time.Millisecond), stderr, tc.want)
		}
	}
}
