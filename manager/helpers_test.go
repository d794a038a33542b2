package manager_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/client"
	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/kafka"
	"github.com/zkchat/zkchat/manager"
	"github.com/zkchat/zkchat/protocol"
)

// runManager starts a manager on env; stop ends its Run (its session
// closes, like a crash as far as ZooKeeper can tell). stop is also called
// when the test ends.
func runManager(t testing.TB, env *testenv.Env, name string) (m *manager.Manager, stop func()) {
	t.Helper()
	m, err := manager.New(manager.Config{
		ZooKeeper: env.ZooKeeper, Kafka: env.Kafka,
		Topics:         protocol.Topics{Prefix: env.Prefix},
		Name:           name,
		SessionTimeout: 4 * time.Second,
		Logger:         testenv.Logger(t).With("test_manager", name),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("manager %s: Run: %v", name, err)
			}
			m.Close()
		})
	}
	t.Cleanup(stop)
	return m, stop
}

// leadingManager runs a manager named m1 and waits until it leads.
func leadingManager(t testing.TB, env *testenv.Env) *manager.Manager {
	t.Helper()
	m, _ := runManager(t, env, "m1")
	waitLeader(t, m)
	return m
}

// waitLeader waits until m leads.
func waitLeader(t testing.TB, m *manager.Manager) {
	t.Helper()
	waitFor(t, 15*time.Second, "manager leads", m.Leading)
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newKafka(t testing.TB, env *testenv.Env) *kafka.Clients {
	t.Helper()
	k, err := kafka.New(kafka.Config{
		Brokers: env.Kafka, Topics: protocol.Topics{Prefix: env.Prefix}, Logger: testenv.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return k
}

func newWorker(t testing.TB, env *testenv.Env, id string, k *kafka.Clients) *client.Worker {
	t.Helper()
	w, err := client.New(id, client.Config{
		ZooKeeper: env.ZooKeeper, Kafka: k, RequestTimeout: 20 * time.Second,
		SessionTimeout: 4 * time.Second, Logger: testenv.Logger(t).With("test_worker", id),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// data reads a node as an outside client sees it; "" and false if missing.
func data(t testing.TB, c *zk.Conn, path string) (string, bool) {
	t.Helper()
	d, _, err := c.Get(path)
	if err == zk.ErrNoNode {
		return "", false
	}
	if err != nil {
		t.Fatalf("get %s: %v", path, err)
	}
	return string(d), true
}

func exists(t testing.TB, c *zk.Conn, path string) bool {
	t.Helper()
	ok, _, err := c.Exists(path)
	if err != nil {
		t.Fatalf("exists %s: %v", path, err)
	}
	return ok
}

// waitData waits until path holds want.
func waitData(t testing.TB, c *zk.Conn, path, want string) {
	t.Helper()
	var got string
	waitFor(t, 20*time.Second, path+" = "+want, func() bool {
		got, _ = data(t, c, path)
		return got == want
	})
}

// mustRegister registers ids through workers.
func mustRegister(t testing.TB, env *testenv.Env, ids ...string) {
	t.Helper()
	for _, id := range ids {
		w := newWorker(t, env, id, nil)
		if _, err := w.Register(ctxT(t)); err != nil {
			t.Fatalf("register %s: %v", id, err)
		}
		w.Close()
	}
}
