// Package testenv finds the real ZooKeeper and Kafka servers that tests run
// against and gives each test its own corner of them: a ZooKeeper chroot and
// a Kafka topic prefix, both removed when the test ends, so tests can run in
// parallel on shared servers (franz-go's tmpTopic, per test).
//
// The servers come from ZKCHAT_ZOOKEEPER and ZKCHAT_KAFKA (cmd/devenv
// exec exports them), default 127.0.0.1:2181 and :9092. When one
// does not answer, the test is skipped with a message, or fails if
// ZKCHAT_TEST_STRICT=1 (CI sets it, so CI cannot pass by skipping).
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/go-zookeeper/zk"

	devenv "github.com/zkchat/zkchat/internal/servers"
	"github.com/zkchat/zkchat/kafka"
)

// Env is one test's view of the servers.
type Env struct {
	// ZooKeeper is a connection string with the test's own chroot.
	ZooKeeper string
	// ZKServers is the connection string without chroot; Chroot the chroot.
	ZKServers, Chroot string
	// Kafka is the bootstrap server list.
	Kafka string
	// Prefix is the test's topic and consumer group prefix.
	Prefix string
	// CleanupAuth, if set ("user:password"), authenticates the connection
	// that removes the chroot at the end: a test that locks its tree down
	// with ZooKeeper ACLs sets it to the tree's admin principal.
	CleanupAuth string
	// KafkaExtra are librdkafka properties for the cleanup's Kafka admin
	// client and for Admin (SASL settings of a private broker).
	KafkaExtra map[string]string
}

var (
	probeOnce sync.Once
	probeErr  error
)

func servers() (zkAddr, kafkaAddr string) {
	zkAddr, kafkaAddr = os.Getenv("ZKCHAT_ZOOKEEPER"), os.Getenv("ZKCHAT_KAFKA")
	if zkAddr == "" {
		zkAddr = "127.0.0.1:2181"
	}
	// Each test makes its own chroot; one given in the variable is dropped.
	if i := strings.IndexByte(zkAddr, '/'); i >= 0 {
		zkAddr = zkAddr[:i]
	}
	if kafkaAddr == "" {
		kafkaAddr = "127.0.0.1:9092"
	}
	return zkAddr, kafkaAddr
}

func probe() error {
	probeOnce.Do(func() {
		zkAddr, kafkaAddr := servers()
		for _, a := range []string{strings.Split(zkAddr, ",")[0], strings.Split(kafkaAddr, ",")[0]} {
			c, err := net.DialTimeout("tcp", a, 2*time.Second)
			if err != nil {
				probeErr = fmt.Errorf("server %s does not answer (%v); start the servers with make servers-start, or run the tests with make test", a, err)
				return
			}
			c.Close()
		}
	})
	return probeErr
}

// Require skips t, or fails it under ZKCHAT_TEST_STRICT=1, when the servers
// do not answer.
func Require(t testing.TB) {
	t.Helper()
	if err := probe(); err != nil {
		if os.Getenv("ZKCHAT_TEST_STRICT") == "1" {
			t.Fatalf("ZKCHAT_TEST_STRICT=1: %v", err)
		}
		t.Skipf("integration test skipped: %v", err)
	}
}

var unsafe = regexp.MustCompile(`[^a-z0-9]+`)

// New returns the test's environment, and removes its chroot, topics and
// consumer groups when the test ends.
func New(t testing.TB) *Env {
	t.Helper()
	Require(t)
	zkAddr, kafkaAddr := servers()
	var b [4]byte
	_, _ = rand.Read(b[:])
	tag := hex.EncodeToString(b[:])
	name := strings.Trim(unsafe.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(name) > 40 {
		name = name[:40]
	}
	chroot := "/zkchat-test/" + name + "-" + tag
	e := &Env{
		ZooKeeper: zkAddr + chroot, ZKServers: zkAddr, Chroot: chroot,
		Kafka: kafkaAddr, Prefix: "t" + tag + "-",
	}
	t.Cleanup(func() { e.cleanup(t) })
	return e
}

// IRC returns the address of the test IRC server (ZKCHAT_IRC_SERVER,
// default 127.0.0.1:6667) and of its listener for bots, whose connect class
// has no flood limits (ZKCHAT_IRC_BRIDGE_SERVER, default 127.0.0.1:6668).
// It skips t (fails it under ZKCHAT_TEST_STRICT=1) when the server does not
// answer.
func IRC(t testing.TB) (users, bots string) {
	t.Helper()
	users, bots = os.Getenv("ZKCHAT_IRC_SERVER"), os.Getenv("ZKCHAT_IRC_BRIDGE_SERVER")
	if users == "" {
		users = "127.0.0.1:6667"
	}
	if bots == "" {
		bots = "127.0.0.1:6668"
	}
	c, err := net.DialTimeout("tcp", users, 2*time.Second)
	if err != nil {
		msg := fmt.Sprintf("IRC server %s does not answer (%v); start it with go run ./cmd/devenv start inspircd, or run the tests with make test", users, err)
		if os.Getenv("ZKCHAT_TEST_STRICT") == "1" {
			t.Fatalf("ZKCHAT_TEST_STRICT=1: %s", msg)
		}
		t.Skip("integration test skipped: " + msg)
	}
	c.Close()
	return users, bots
}

// IRCAccounts returns the addresses of the test IRC network WITH accounts
// (internal/servers Atheme: InspIRCd linked to Atheme services, which provide
// NickServ REGISTER/IDENTIFY/LOGOUT and SASL PLAIN): its port for users
// (ZKCHAT_IRC_ACCOUNTS_SERVER, default 127.0.0.1:6680) and its port for bots,
// whose connect class has no flood limits (ZKCHAT_IRC_ACCOUNTS_BRIDGE_SERVER,
// default 127.0.0.1:6681). It skips t (fails it under ZKCHAT_TEST_STRICT=1)
// when the server does not answer or the services are not linked to it
// (InspIRCd offers the "sasl" capability only while they are).
func IRCAccounts(t testing.TB) (users, bots string) {
	t.Helper()
	users, bots = os.Getenv("ZKCHAT_IRC_ACCOUNTS_SERVER"), os.Getenv("ZKCHAT_IRC_ACCOUNTS_BRIDGE_SERVER")
	if users == "" {
		users = "127.0.0.1:6680"
	}
	if bots == "" {
		bots = "127.0.0.1:6681"
	}
	if err := servicesLinked(users); err != nil {
		msg := fmt.Sprintf("IRC server with accounts %s: %v; start it with go run ./cmd/devenv start atheme, or run the tests with make test", users, err)
		if os.Getenv("ZKCHAT_TEST_STRICT") == "1" {
			t.Fatalf("ZKCHAT_TEST_STRICT=1: %s", msg)
		}
		t.Skip("integration test skipped: " + msg)
	}
	return users, bots
}

// servicesLinked asks the server at addr for its capabilities (CAP LS needs
// no registration, so it answers at once) and checks that "sasl" is among
// them.
func servicesLinked(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return fmt.Errorf("does not answer (%v)", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte("CAP LS 302\r\n")); err != nil {
		return fmt.Errorf("CAP LS: %v", err)
	}
	var caps []string
	buf := make([]byte, 0, 4096)
	tmp := make([]byte, 4096)
	for {
		n, err := c.Read(tmp)
		buf = append(buf, tmp[:n]...)
		for {
			i := strings.Index(string(buf), "\n")
			if i < 0 {
				break
			}
			line := strings.TrimRight(string(buf[:i]), "\r")
			buf = buf[i+1:]
			// ":server CAP * LS * :a b" (more follows) or ":server CAP * LS :a b" (last).
			f := strings.SplitN(line, " :", 2)
			w := strings.Fields(f[0])
			if len(f) < 2 || len(w) < 4 || w[1] != "CAP" || w[3] != "LS" {
				continue
			}
			caps = append(caps, strings.Fields(f[1])...)
			if len(w) > 4 && w[4] == "*" {
				continue
			}
			_, _ = c.Write([]byte("QUIT\r\n"))
			for _, cp := range caps {
				if cp == "sasl" || strings.HasPrefix(cp, "sasl=") {
					return nil
				}
			}
			return fmt.Errorf("no sasl capability: services (Atheme) are not linked to it")
		}
		if err != nil {
			return fmt.Errorf("no CAP LS reply (%v)", err)
		}
	}
}

// NGIRCd returns the address of the second, independent test IRC network,
// an ngIRCd (ZKCHAT_NGIRCD_SERVER, default 127.0.0.1:6670), where users and
// bots share one port without flood penalties. It skips t (fails it under
// ZKCHAT_TEST_STRICT=1) when the server does not answer.
func NGIRCd(t testing.TB) string {
	t.Helper()
	addr := os.Getenv("ZKCHAT_NGIRCD_SERVER")
	if addr == "" {
		addr = "127.0.0.1:6670"
	}
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		msg := fmt.Sprintf("IRC server (ngIRCd) %s does not answer (%v); start it with go run ./cmd/devenv start ngircd, or run the tests with make test", addr, err)
		if os.Getenv("ZKCHAT_TEST_STRICT") == "1" {
			t.Fatalf("ZKCHAT_TEST_STRICT=1: %s", msg)
		}
		t.Skip("integration test skipped: " + msg)
	}
	c.Close()
	return addr
}

// Tag is a short random string for names a test makes (nicks, channels).
func Tag() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// PrivateServer starts a server of the test's own (internal/servers: name
// is zookeeper, kafka, inspircd, ngircd or atheme), on a free port given in
// the environment variable portVar and in a data folder of its own, so a
// test can freeze, kill or restart it without disturbing the shared
// servers. It returns the address, the data folder and a function that
// does another action ("start", "stop", "restart"). The server is stopped
// at cleanup.
func PrivateServer(t testing.TB, name, portVar string) (addr, dataDir string, run func(action string)) {
	t.Helper()
	return PrivateServerEnv(t, name, portVar)
}

// FreePort is a TCP port on 127.0.0.1 that nothing listened on a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// PrivateServerEnv is PrivateServer with more settings, as "NAME=value"
// environment variables of internal/servers (a private Kafka needs its own
// ZKCHAT_KAFKA_CONTROLLER_PORT, from FreePort).
func PrivateServerEnv(t testing.TB, name, portVar string, env ...string) (addr, dataDir string, run func(action string)) {
	t.Helper()
	port := FreePort(t)
	dataDir, err := os.MkdirTemp("", "zkchat-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	cfg := ServerConfig(t, append([]string{fmt.Sprintf("%s=%d", portVar, port), "ZKCHAT_DATA_DIR=" + dataDir}, env...)...)
	srv, err := cfg.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	run = func(action string) {
		t.Helper()
		var err error
		switch action {
		case "start":
			err = srv.Start()
		case "stop":
			err = srv.Stop()
		case "restart":
			if err = srv.Stop(); err == nil {
				err = srv.Start()
			}
		default:
			err = fmt.Errorf("unknown action %q", action)
		}
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, action, err, cfg.Log)
		}
	}
	run("start")
	t.Cleanup(func() { run("stop"); os.RemoveAll(dataDir) })
	return fmt.Sprintf("127.0.0.1:%d", port), dataDir, run
}

// ServerConfig is the internal/servers configuration of the environment,
// with env ("NAME=value") taking precedence; what it logs goes to a Buffer
// (cfg.Log), which failures show.
func ServerConfig(t testing.TB, env ...string) *devenv.Config {
	t.Helper()
	over := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		over[k] = v
	}
	cfg, err := devenv.Load(RepoRoot(t), func(k string) string {
		if v, ok := over[k]; ok {
			return v
		}
		return os.Getenv(k)
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Log = &Buffer{}
	return cfg
}

// RepoRoot is the folder holding go.mod, above the test's package.
func RepoRoot(t testing.TB) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test")
		}
		dir = parent
	}
}

// Logger is a slog logger that writes to the test log.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Buffer is a bytes.Buffer that many goroutines may write while a test
// reads it: a log sink (slog.NewTextHandler(&buf, nil)) or a command's
// output.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Conn is a plain ZooKeeper connection without chroot, for checking nodes
// as an outside client sees them. Closed when the test ends.
func (e *Env) Conn(t testing.TB) *zk.Conn {
	t.Helper()
	c, _, err := zk.Connect(strings.Split(e.ZKServers, ","), 10*time.Second, zk.WithLogInfo(false), zk.WithLogger(quiet{}))
	if err != nil {
		t.Fatalf("zookeeper: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// Path is p under the test's chroot.
func (e *Env) Path(p string) string { return e.Chroot + p }

type quiet struct{}

func (quiet) Printf(string, ...any) {}

// Admin is a Kafka admin client, closed when the test ends.
func (e *Env) Admin(t testing.TB) *ckafka.AdminClient {
	t.Helper()
	a, err := e.newAdmin()
	if err != nil {
		t.Fatalf("kafka admin: %v", err)
	}
	t.Cleanup(a.Close)
	return a.Client()
}

// newAdmin makes an admin client whose librdkafka logs are dropped.
func (e *Env) newAdmin() (*kafka.Admin, error) {
	return kafka.NewAdmin(kafka.Config{Brokers: e.Kafka, Extra: e.KafkaExtra,
		Logger: slog.New(slog.DiscardHandler)}, "zkchat-test")
}

// Topics lists the test's topics.
func (e *Env) Topics(t testing.TB) []string {
	t.Helper()
	a := e.Admin(t)
	md, err := a.GetMetadata(nil, true, 10000)
	if err != nil {
		t.Fatalf("kafka metadata: %v", err)
	}
	var out []string
	for name := range md.Topics {
		if strings.HasPrefix(name, e.Prefix) {
			out = append(out, name)
		}
	}
	return out
}

func (e *Env) cleanup(t testing.TB) {
	c, _, err := zk.Connect(strings.Split(e.ZKServers, ","), 10*time.Second, zk.WithLogInfo(false), zk.WithLogger(quiet{}))
	if err == nil {
		if e.CleanupAuth != "" {
			if err := c.AddAuth("digest", []byte(e.CleanupAuth)); err != nil {
				t.Logf("cleanup %s: authenticating: %v", e.Chroot, err)
			}
		}
		if err := deleteAll(c, e.Chroot); err != nil {
			t.Logf("cleanup %s: %v", e.Chroot, err)
		}
		c.Close()
	}
	ad, err := e.newAdmin()
	if err != nil {
		return
	}
	defer ad.Close()
	a := ad.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if md, err := a.GetMetadata(nil, true, 10000); err == nil {
		var topics []string
		for name := range md.Topics {
			if strings.HasPrefix(name, e.Prefix) {
				topics = append(topics, name)
			}
		}
		if len(topics) > 0 {
			if _, err := a.DeleteTopics(ctx, topics); err != nil {
				t.Logf("cleanup topics: %v", err)
			}
		}
	}
	if groups, err := a.ListConsumerGroups(ctx); err == nil {
		var mine []string
		for _, g := range groups.Valid {
			if strings.HasPrefix(g.GroupID, e.Prefix) {
				mine = append(mine, g.GroupID)
			}
		}
		if len(mine) > 0 {
			_, _ = a.DeleteConsumerGroups(ctx, mine)
		}
	}
}

// deleteAll deletes path and everything below it.
func deleteAll(c *zk.Conn, path string) error {
	children, _, err := c.Children(path)
	if err == zk.ErrNoNode {
		return nil
	}
	if err != nil {
		return err
	}
	for _, ch := range children {
		if err := deleteAll(c, path+"/"+ch); err != nil {
			return err
		}
	}
	if err := c.Delete(path, -1); err != nil && err != zk.ErrNoNode {
		return err
	}
	return nil
}
