package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/internal/testenv"
)

// TestStatusRealRun: `zkchat status` on real servers says who leads, how
// many are registered and online, each front end's unread messages (3
// sent to bob, who reads nothing), and, with no manager, the pending
// request and its age; --json says the same for scripts.
//
// Not parallel: urfave/cli v2 shares its help flag between apps (a data
// race when two run at once).
func TestStatusRealRun(t *testing.T) {
	env := testenv.New(t)
	_, stop := env.RunManager(t, "m-status", nil)
	testenv.WaitFor(t, 15*time.Second, "a leader", func() bool {
		out, _, code := zc(t, env, nil, "status")
		return code == 0 && strings.Contains(out, "leader:      m-status")
	})
	for _, id := range []string{"alice", "bob"} {
		if _, stderr, code := zc(t, env, nil, "register", id); code != 0 {
			t.Fatalf("register %s: %s", id, stderr)
		}
	}
	k := env.NewKafka(t)
	bob := env.NewWorker(t, "bob", k)
	alice := env.NewWorker(t, "alice", k)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, w := range []interface{ GoOnline(context.Context) error }{bob, alice} {
		if err := w.GoOnline(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, text := range []string{"one", "two", "three"} {
		if err := alice.SendMessage(ctx, "bob", text); err != nil {
			t.Fatal(err)
		}
	}
	out, stderr, code := zc(t, env, nil, "status")
	if code != 0 {
		t.Fatalf("status: %d %s", code, stderr)
	}
	for _, want := range []string{"registered:  2", "online:      2", "pending:     none", "FRONT END"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	found := false
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "cli" {
			found = true
			if f[1] != "2" || f[2] != "3" {
				t.Errorf("cli row %q: want 2 online, 3 unread", l)
			}
		}
	}
	if !found {
		t.Errorf("no cli row:\n%s", out)
	}

	stop() // no manager: a request waits
	c := env.Conn(t)
	if _, err := c.Create(env.Path("/request/enroll/zed"), []byte("0"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	out, stderr, code = zc(t, env, nil, "status", "--json")
	if code != 0 {
		t.Fatalf("status --json: %d %s", code, stderr)
	}
	var st status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if st.Leader != "" || st.Registered != 2 || len(st.Pending) != 1 || st.Pending[0].ID != "zed" ||
		st.Pending[0].Age < 50*time.Millisecond || len(st.Frontends) != 1 || st.Frontends[0].Unread != 3 {
		t.Fatalf("status --json: %+v", st)
	}
}
