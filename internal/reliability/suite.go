package reliability

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/client"
	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/kafka"
	"github.com/zkchat/zkchat/protocol"
)

// Suite is one fault test's deployment on the cluster: its own ZooKeeper
// chroot and topic prefix (testenv), a message ledger, zkchat processes,
// and in-process workers that play users.
type Suite struct {
	T      testing.TB
	C      *Cluster
	Env    *testenv.Env
	Ledger *Ledger
	Kafka  *kafka.Clients
	ZK     *zk.Conn // no chroot: paths via Env.Path
}

// New prepares a test on the cluster. At cleanup the cluster is restored
// (members thawed and restarted) so the next test starts whole.
func New(t testing.TB) *Suite {
	t.Helper()
	c := Need(t)
	t.Cleanup(func() { c.Restore(t) })
	env := testenv.New(t)
	k, err := kafka.New(kafka.Config{
		Brokers: env.Kafka, Topics: protocol.Topics{Prefix: env.Prefix}, Logger: quietLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	s := &Suite{T: t, C: c, Env: env, Ledger: NewLedger(testenv.Tag()), Kafka: k, ZK: env.Conn(t)}
	// The test's chroot and tree, as an operator would: `zkchat init`.
	out, err := exec.Command(Binary(t), append(s.commonArgs(), "init")...).CombinedOutput()
	if err != nil {
		t.Fatalf("zkchat init: %v\n%s", err, out)
	}
	return s
}

// commonArgs are the global flags every zkchat process of the suite gets.
func (s *Suite) commonArgs() []string {
	return []string{"--zookeeper", s.Env.ZooKeeper, "--kafka", s.Env.Kafka, "--topic-prefix", s.Env.Prefix,
		"--log-format", "text", "--log-level", "debug"}
}

// Manager runs `zkchat manager` named name (replication factor 3).
func (s *Suite) Manager(name string, extra ...string) *Proc {
	args := append(s.commonArgs(), "manager", "--name", name, "--replication-factor", "3", "--debug-addr=auto")
	return StartProc(s.T, name, nil, append(args, extra...)...)
}

// Bridge runs `zkchat bridge` on irc (its flood-exempt bot port, unpaced
// unless extra says otherwise) as nick in channel, with its built-in manager.
func (s *Suite) Bridge(name, server, nick, channel string, extra ...string) *Proc {
	args := append(s.commonArgs(), "bridge", "--irc-server", server, "--nick", nick, "--channel", channel,
		"--name", name, "--replication-factor", "3", "--rate", "-1", "--debug-addr=auto")
	return StartProc(s.T, name, nil, append(args, extra...)...)
}

// Worker is a user played in-process (closed at cleanup).
func (s *Suite) Worker(id string) *client.Worker {
	s.T.Helper()
	w, err := client.New(id, client.Config{
		ZooKeeper: s.Env.ZooKeeper, Kafka: s.Kafka, RequestTimeout: 60 * time.Second,
		SessionTimeout: 6 * time.Second, Logger: quietLogger(s.T).With("worker", id),
	})
	if err != nil {
		s.T.Fatal(err)
	}
	s.T.Cleanup(w.Close)
	return w
}

// Online registers ids and brings them online (a manager must run).
func (s *Suite) Online(ctx context.Context, ids ...string) []*client.Worker {
	s.T.Helper()
	var ws []*client.Worker
	for _, id := range ids {
		w := s.Worker(id)
		if st, err := w.Register(ctx); err != nil {
			s.T.Fatalf("register %s: %v (status %v)", id, err, st)
		}
		if err := w.GoOnline(ctx); err != nil {
			s.T.Fatalf("online %s: %v", id, err)
		}
		ws = append(ws, w)
	}
	return ws
}

// Send sends ledger message seq from w to to and records the outcome.
func (s *Suite) Send(ctx context.Context, w *client.Worker, to string, seq int64) error {
	err := w.SendMessage(ctx, to, s.Ledger.Text(w.ID(), to, seq))
	s.Ledger.Sent(w.ID(), to, seq, err)
	return err
}

// OnlineIDs lists /online of the suite's chroot.
func (s *Suite) OnlineIDs() ([]string, error) {
	ids, _, err := s.ZK.Children(s.Env.Path("/online"))
	slices.Sort(ids)
	return ids, err
}

// Topic is id's topic name.
func (s *Suite) Topic(id string) string { return protocol.Topics{Prefix: s.Env.Prefix}.Topic(id) }

// Ctx is a context bounded by d and the test.
func Ctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// WaitFor polls cond every 100 ms for up to d; it returns how long it took
// and fails t (with what) when cond never held.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	t0 := time.Now()
	for !cond() {
		if time.Since(t0) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(t0)
}

// Row logs one line of doc/reliability.md's table: the row's name and its
// measured numbers, so a suite run's output can be pasted into the report.
func Row(t testing.TB, row string, kv ...any) {
	t.Helper()
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%v=%v", kv[i], kv[i+1])
	}
	t.Logf("ROW | %s | %s |", row, b.String())
}
