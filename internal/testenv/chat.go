package testenv

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/zkchat/zkchat/client"
	"github.com/zkchat/zkchat/kafka"
	"github.com/zkchat/zkchat/manager"
	"github.com/zkchat/zkchat/protocol"
)

// Helpers that build zkchat's own parts on a test's servers, under its
// chroot and topic prefix, each closed when the test ends. Sessions time out
// after 4 s, so a test that kills one does not wait long.

// testSessionTimeout is the ZooKeeper session timeout of the parts made here.
const testSessionTimeout = 4 * time.Second

// RunManager starts a manager named name (mod, if not nil, changes its
// config first). stop ends its Run and closes it (its session closes: to
// ZooKeeper, like a crash); it is also called when the test ends.
func (e *Env) RunManager(t testing.TB, name string, mod func(*manager.Config)) (m *manager.Manager, stop func()) {
	t.Helper()
	cfg := manager.Config{
		ZooKeeper: e.ZooKeeper, Kafka: e.Kafka,
		Topics:         protocol.Topics{Prefix: e.Prefix},
		Name:           name,
		SessionTimeout: testSessionTimeout,
		Logger:         Logger(t).With("test_manager", name),
	}
	if mod != nil {
		mod(&cfg)
	}
	m, err := manager.New(cfg)
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

// LeadingManager runs a manager named name until the test ends, and waits
// (15 s at most) until it leads.
func (e *Env) LeadingManager(t testing.TB, name string) *manager.Manager {
	t.Helper()
	m, _ := e.RunManager(t, name, nil)
	WaitFor(t, 15*time.Second, "manager "+name+" leads", m.Leading)
	return m
}

// NewKafka is a process's shared Kafka clients, with the test's prefix.
func (e *Env) NewKafka(t testing.TB) *kafka.Clients {
	t.Helper()
	k, err := kafka.New(kafka.Config{Brokers: e.Kafka,
		Topics: protocol.Topics{Prefix: e.Prefix}, Logger: Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return k
}

// NewWorker is the worker of id on the test's tree, sending and reading
// with k (nil: none); it waits 20 s at most for a manager's answers.
func (e *Env) NewWorker(t testing.TB, id string, k *kafka.Clients) *client.Worker {
	t.Helper()
	cfg := client.Config{ZooKeeper: e.ZooKeeper, RequestTimeout: 20 * time.Second,
		SessionTimeout: testSessionTimeout, Logger: Logger(t).With("test_worker", id)}
	if k != nil {
		cfg.Kafka = k
	}
	w, err := client.New(id, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

// WaitFor polls cond every 10 ms until it holds, and fails the test after d.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
