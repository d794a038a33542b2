package client_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zkchat/zkchat/client"
	"github.com/zkchat/zkchat/protocol"
)

// TestSignaturesChecked: a worker with a signing key signs what it sends;
// the receiver checks the signature against the sender's key in
// /registry/<id> and says what it found (Message.Trust), re-reading a key
// that no longer matches (the sender made a new one).
func TestSignaturesChecked(t *testing.T) {
	e := newFakeEnv(t)
	(&fakeManager{e: e}).start(t)
	e.register(t, "alice", "bob")
	_, bobKey, _ := ed25519.GenerateKey(rand.Reader)
	newBob := func(key ed25519.PrivateKey) *client.Worker {
		w, err := client.New("bob", client.Config{ZooKeeper: fakeConnect, Dial: e.dial, Kafka: e.kafka,
			RequestTimeout: 5 * time.Second, Logger: quietLogger(), SigningKey: key})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Close)
		return w
	}
	// The fake manager does not copy keys: the test records them as a
	// zkchat manager does.
	record := func(key ed25519.PrivateKey) {
		data := protocol.RegistryData{RegisteredAt: "x", PublicKey: protocol.EncodePublicKey(key.Public().(ed25519.PublicKey))}.Marshal()
		if _, err := e.zk.Connect().Set(ctxT(t), e.paths.Registered("bob"), data, -1); err != nil {
			t.Fatal(err)
		}
	}
	alice := e.worker(t, "alice", true)
	if err := alice.GoOnline(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	bob := newBob(bobKey)
	record(bobKey) // before GoOnline's wait for it ends
	if err := bob.GoOnline(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	send := func(w *client.Worker, text string) {
		t.Helper()
		if err := w.SendMessage(ctxT(t), "alice", text); err != nil {
			t.Fatal(err)
		}
	}
	read := func() []protocol.Trust {
		t.Helper()
		var got []protocol.Trust
		if _, err := alice.ReadMessages(ctxT(t), func(m protocol.Message) error { got = append(got, m.Trust); return nil }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	send(bob, "one")
	if _, err := e.kafka.Produce(ctxT(t), e.topics.Topic("alice"), []byte("bob"), []byte("forged, unsigned")); err != nil {
		t.Fatal(err)
	}
	if got := read(); len(got) != 2 || got[0] != protocol.Verified || got[1] != protocol.Unsigned {
		t.Fatalf("trust %v, want [verified unsigned]", got)
	}
	// bob on another machine with a new key: the cached old key no longer
	// matches, the receiver reads the new one.
	bob.GoOffline()
	_, newKey, _ := ed25519.GenerateKey(rand.Reader)
	bob2 := newBob(newKey)
	record(newKey)
	if err := bob2.GoOnline(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	send(bob2, "two")
	// A key that does not match is read again at most every second per
	// sender (records anyone can write must not cost a read each).
	time.Sleep(1100 * time.Millisecond)
	if got := read(); len(got) != 1 || got[0] != protocol.Verified {
		t.Fatalf("after a new key: trust %v, want [verified]", got)
	}
}

// TestLoadOrCreateKey: a key is made once, kept with mode 0600, and read
// back the same; a damaged file is an error, not a new key.
func TestLoadOrCreateKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	k1, err := client.LoadOrCreateKey(dir, "alice")
	if err != nil {
		t.Fatal(err)
	}
	k2, err := client.LoadOrCreateKey(dir, "alice")
	if err != nil || !k1.Equal(k2) {
		t.Fatalf("second load: %v (same key: %v)", err, k1.Equal(k2))
	}
	st, err := os.Stat(filepath.Join(dir, "alice.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v", err, st.Mode())
	}
	if err := os.WriteFile(filepath.Join(dir, "bob.key"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := client.LoadOrCreateKey(dir, "bob"); err == nil {
		t.Fatal("a damaged key file was accepted")
	}
	if _, err := client.LoadOrCreateKey(dir, "../x"); err == nil {
		t.Fatal("an invalid id made a key file")
	}
}

// TestNoKeyReadsBounded: messages signed by a sender without a recorded
// key (or with a bad signature) do not cost a ZooKeeper read each. Before,
// 50 such messages made 50 reads of /registry/<sender>: anyone who may
// write a topic could slow its reader down.
func TestNoKeyReadsBounded(t *testing.T) {
	e := newFakeEnv(t)
	(&fakeManager{e: e}).start(t)
	e.register(t, "alice", "bob")
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	bob, err := client.New("bob", client.Config{ZooKeeper: fakeConnect, Dial: e.dial, Kafka: e.kafka,
		RequestTimeout: 5 * time.Second, Logger: quietLogger(), SigningKey: k})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bob.Close)
	alice := e.worker(t, "alice", true)
	if err := alice.GoOnline(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := bob.GoOnline(ctxT(t)); err != nil { // the fake manager records no key
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if err := bob.SendMessage(ctxT(t), "alice", "hi"); err != nil {
			t.Fatal(err)
		}
	}
	var gets atomic.Int64
	reg := e.paths.Registered("bob")
	e.zk.Fault(func(op, p string) error {
		if p == reg && op == "Get" {
			gets.Add(1)
		}
		return nil
	})
	n, err := alice.ReadMessages(ctxT(t), func(m protocol.Message) error {
		if m.Trust != protocol.NoKey {
			t.Errorf("trust %v, want no key", m.Trust)
		}
		return nil
	})
	if err != nil || n != 50 {
		t.Fatalf("read %d, %v", n, err)
	}
	if g := gets.Load(); g > 2 {
		t.Errorf("%d reads of bob's key for 50 messages", g)
	}
}

// TestKeyFileReadableByOthers: a key file others may read is refused, as
// zkchat refuses every other secret file.
func TestKeyFileReadableByOthers(t *testing.T) {
	dir := t.TempDir()
	if _, err := client.LoadOrCreateKey(dir, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "alice.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := client.LoadOrCreateKey(dir, "alice"); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a world-readable key file: %v", err)
	}
}

// TestSigningKeyLoadedWhenNeeded: a worker given LoadSigningKey loads the
// key once, when it first goes online, not before: an IRC nick that only
// talks to the bot makes no key file.
func TestSigningKeyLoadedWhenNeeded(t *testing.T) {
	e := newFakeEnv(t)
	(&fakeManager{e: e}).start(t)
	e.register(t, "bob")
	var loads atomic.Int64
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	w, err := client.New("alice", client.Config{ZooKeeper: fakeConnect, Dial: e.dial, Kafka: e.kafka,
		RequestTimeout: 5 * time.Second, Logger: quietLogger(),
		LoadSigningKey: func() (ed25519.PrivateKey, error) { loads.Add(1); return k, nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	if _, err := w.GetOnlineUsers(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Register(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if n := loads.Load(); n != 0 {
		t.Fatalf("key loaded %d times before going online", n)
	}
	bob := e.worker(t, "bob", true)
	if err := bob.GoOnline(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := w.GoOnline(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := w.SendMessage(ctxT(t), "bob", "hi"); err != nil {
		t.Fatal(err)
	}
	if n := loads.Load(); n != 1 {
		t.Fatalf("key loaded %d times, want 1", n)
	}
}
