package manager_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/manager"
)

// runManager starts a manager on env (testenv.Env.RunManager).
func runManager(t testing.TB, env *testenv.Env, name string) (m *manager.Manager, stop func()) {
	t.Helper()
	return env.RunManager(t, name, nil)
}

// leadingManager runs a manager named m1 and waits until it leads.
func leadingManager(t testing.TB, env *testenv.Env) *manager.Manager {
	t.Helper()
	return env.LeadingManager(t, "m1")
}

// waitLeader waits until m leads.
func waitLeader(t testing.TB, m *manager.Manager) {
	t.Helper()
	testenv.WaitFor(t, 15*time.Second, "manager leads", m.Leading)
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, d, what, cond)
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
		w := env.NewWorker(t, id, nil)
		if _, err := w.Register(ctxT(t)); err != nil {
			t.Fatalf("register %s: %v", id, err)
		}
		w.Close()
	}
}
