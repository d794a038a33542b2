package manager_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/client"
	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/kafka"
	"github.com/zkchat/zkchat/manager"
	"github.com/zkchat/zkchat/protocol"
	"github.com/zkchat/zkchat/zookeeper"
)

// aclEnv is a test tree locked down with ZooKeeper ACLs: a leading manager
// authenticated as zkchat's principal, and the cleanup authenticated too.
func aclEnv(t *testing.T, mods ...func(*manager.Config)) (*testenv.Env, *protocol.Auth, *manager.Manager) {
	t.Helper()
	env := testenv.New(t)
	admin := &protocol.Auth{User: "zkchat", Password: "adm-" + testenv.Tag() + testenv.Tag()}
	env.CleanupAuth = admin.User + ":" + admin.Password
	cfg := manager.Config{
		ZooKeeper: env.ZooKeeper, Kafka: env.Kafka,
		Topics: protocol.Topics{Prefix: env.Prefix}, Name: "m1",
		SessionTimeout: 4 * time.Second, ZKAuth: admin,
		Logger: testenv.Logger(t).With("test_manager", "m1"),
	}
	for _, mod := range mods {
		mod(&cfg)
	}
	m, err := manager.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; m.Close() })
	waitLeader(t, m)
	return env, admin, m
}

func authWorker(t testing.TB, env *testenv.Env, id string, auth *protocol.Auth, k *kafka.Clients) *client.Worker {
	t.Helper()
	w, err := client.New(id, client.Config{
		ZooKeeper: env.ZooKeeper, Kafka: k, RequestTimeout: 8 * time.Second,
		SessionTimeout: 4 * time.Second, Auth: auth,
		Logger: testenv.Logger(t).With("test_worker", id),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

// authConn is an outside client authenticated as user:password ("" for none).
func authConn(t testing.TB, env *testenv.Env, cred string) *zk.Conn {
	t.Helper()
	c := env.Conn(t)
	if cred != "" {
		if err := c.AddAuth("digest", []byte(cred)); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func wantNoAuth(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("%s: got %v, want %v", what, err, zk.ErrNoAuth)
	}
}

// TestZKACLs: with credentials the tree is locked down. Outsiders (no
// credentials, or another identity) cannot write the registry, another
// user's online node or the election; a request for another id, or for a
// registered id with another password, is refused; a forged request (an
// ACL naming the victim, written by someone else) is never answered; and
// everything works end to end for the right identities.
func TestZKACLs(t *testing.T) {
	env, admin, _ := aclEnv(t)
	ctx := ctxT(t)
	k := env.NewKafka(t)
	aliceAuth := &protocol.Auth{User: "alice", Password: "pw-alice"}
	bobAuth := &protocol.Auth{User: "bob", Password: "pw-bob"}
	alice := authWorker(t, env, "alice", aliceAuth, k)
	bob := authWorker(t, env, "bob", bobAuth, k)

	// Own-id requests are answered; the registry binds the identity.
	for _, w := range []*client.Worker{alice, bob} {
		if st, err := w.Register(ctx); err != nil || st != protocol.StatusDone {
			t.Fatalf("register %s: %v %v", w.ID(), st, err)
		}
	}
	c := env.Conn(t)
	adminConn := authConn(t, env, admin.User+":"+admin.Password)
	// ZooKeeper shows digest hashes only to a client with ADMIN permission.
	acl, _, err := adminConn.GetACL(env.Path("/registry/alice"))
	if err != nil {
		t.Fatal(err)
	}
	if got := protocol.Binding(zookeeper.FromZK(acl), "alice"); got != aliceAuth.ID() {
		t.Fatalf("binding of alice = %q, want %q (acl %v)", got, aliceAuth.ID(), acl)
	}

	// End to end: online, send, read.
	if err := alice.GoOnline(ctx); err != nil {
		t.Fatal(err)
	}
	if err := bob.GoOnline(ctx); err != nil {
		t.Fatal(err)
	}
	if err := alice.SendMessage(ctx, "bob", "hello over ACLs"); err != nil {
		t.Fatal(err)
	}
	var got []string
	if n, err := bob.ReadMessages(ctx, func(m protocol.Message) error {
		got = append(got, m.From+": "+m.Text)
		return nil
	}); err != nil || n != 1 || got[0] != "alice: hello over ACLs" {
		t.Fatalf("read: n=%d err=%v got=%q", n, err, got)
	}

	// Outsiders: no credentials, and another identity.
	elect, _, err := c.Children(env.Path("/election"))
	if err != nil || len(elect) != 1 {
		t.Fatalf("election: %v %v", elect, err)
	}
	for _, cred := range []string{"", "mallory:pw", "alice:pw-alice"} {
		o := authConn(t, env, cred)
		who := "as " + cred
		_, err := o.Create(env.Path("/registry/mallory"), nil, 0, zk.WorldACL(zk.PermAll))
		wantNoAuth(t, who+": create /registry/mallory", err)
		_, err = o.Set(env.Path("/registry/bob"), []byte("x"), -1)
		wantNoAuth(t, who+": set /registry/bob", err)
		wantNoAuth(t, who+": delete /registry/bob", o.Delete(env.Path("/registry/bob"), -1))
		_, err = o.Set(env.Path("/online/bob"), []byte("x"), -1)
		wantNoAuth(t, who+": set /online/bob", err)
		wantNoAuth(t, who+": delete /online/bob", o.Delete(env.Path("/online/bob"), -1))
		wantNoAuth(t, who+": delete election node", o.Delete(env.Path("/election/"+elect[0]), -1))
		_, err = o.Create(env.Path("/election/n_x"), nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
		wantNoAuth(t, who+": create election node", err)
		_, err = o.SetACL(env.Path("/registry"), zk.WorldACL(zk.PermAll), -1)
		wantNoAuth(t, who+": set ACL of /registry", err)
	}

	// A request for another id is refused (status 0), and so is a quit
	// of a registered id with another password.
	mallory := authWorker(t, env, "carol", &protocol.Auth{User: "mallory", Password: "pw"}, nil)
	if st, err := mallory.Register(ctx); !errors.Is(err, protocol.ErrRequestFailed) || st != protocol.StatusFailed {
		t.Errorf("register carol as mallory: %v %v, want refused", st, err)
	}
	fakeBob := authWorker(t, env, "bob", &protocol.Auth{User: "bob", Password: "guess"}, nil)
	if st, err := fakeBob.Quit(ctx); !errors.Is(err, protocol.ErrRequestFailed) {
		t.Errorf("quit bob with another password: %v %v, want refused", st, err)
	}
	// An unauthenticated worker cannot file a request at all.
	anon := authWorker(t, env, "dave", nil, nil)
	if _, err := anon.Register(ctx); !errors.Is(err, protocol.ErrNoAuth) {
		t.Errorf("register without credentials in a locked tree: %v, want %v", err, protocol.ErrNoAuth)
	}

	// A forged quit of bob: the ACL names bob's real identity (anyone can
	// read it), but mallory cannot touch it. Never answered.
	o := authConn(t, env, "mallory:pw")
	forged := []zk.ACL{{Perms: zk.PermAll, Scheme: "digest", ID: bobAuth.ID()}, zk.ACL(admin.ACL(zk.PermAll))}
	if _, err := o.Create(env.Path("/request/quit/bob"), []byte("-1"), 0, forged); err != nil {
		t.Fatal(err)
	}
	_, err = o.Set(env.Path("/request/quit/bob"), []byte("-1"), 0)
	wantNoAuth(t, "mallory touches the forged quit", err)
	// Mallory in the ACL to touch it: refused, answered 0.
	withMe := append(forged, zk.DigestACL(zk.PermAll, "mallory", "pw")...)
	if _, err := o.Create(env.Path("/request/enroll/bob"), []byte("-1"), 0, withMe); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Set(env.Path("/request/enroll/bob"), []byte("-1"), 0); err != nil {
		t.Fatal(err)
	}
	waitData(t, adminConn, env.Path("/request/enroll/bob"), "0")
	time.Sleep(time.Second)
	if d, _ := data(t, adminConn, env.Path("/request/quit/bob")); d != "-1" {
		t.Errorf("forged quit answered %q", d)
	}
	if !exists(t, c, env.Path("/registry/bob")) {
		t.Fatal("bob unregistered by a forged request")
	}
	_ = o.Delete(env.Path("/request/quit/bob"), -1)
	_ = o.Delete(env.Path("/request/enroll/bob"), -1)

	// Bob with another password going online is taken offline by the
	// manager (his own session is online already: take him offline first).
	bob.GoOffline()
	if err := fakeBob.GoOnline(ctx); err != nil && !errors.Is(err, protocol.ErrNotOnline) {
		t.Logf("fake bob online: %v", err)
	}
	waitFor(t, 15*time.Second, "fake bob's online node deleted", func() bool {
		return !exists(t, c, env.Path("/online/bob"))
	})
	fakeBob.GoOffline()

	// zkchat's own principal acts for any id (the bridge's workers do).
	erin := authWorker(t, env, "erin", admin, k)
	if st, err := erin.Register(ctx); err != nil || st != protocol.StatusDone {
		t.Fatalf("register erin as zkchat's principal: %v %v", st, err)
	}
	if err := erin.GoOnline(ctx); err != nil {
		t.Fatalf("erin online as zkchat's principal: %v", err)
	}
	erin.GoOffline()

	// The real users quit.
	if st, err := bob.Quit(ctx); err != nil || st != protocol.StatusDone {
		t.Fatalf("bob quits: %v %v", st, err)
	}
	if exists(t, c, env.Path("/registry/bob")) {
		t.Fatal("bob still registered")
	}
}
