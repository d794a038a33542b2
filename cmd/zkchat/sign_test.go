package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/protocol"
)

// TestSignedSenders: a message bob sends with zkchat is signed with his
// key and shown plain; records that claim to be from bob but are not signed
// with his registered key are flagged on the line, never dropped. Before,
// any Kafka client could write a record keyed "bob" and `zkchat read`
// showed it as bob's.
func TestSignedSenders(t *testing.T) {
	env := testenv.New(t)
	startManager(t, env)
	for _, id := range []string{"alice", "bob", "dave"} {
		if out, stderr, code := zc(t, env, nil, "register", id); code != 0 {
			t.Fatalf("register %s: %d %q %q", id, code, out, stderr)
		}
	}
	if out, stderr, code := zc(t, env, nil, "read", "alice"); code != 0 || out != "" {
		t.Fatalf("first read: %d %q %q", code, out, stderr)
	}
	// alice online (sends need their receiver online) in a worker of the
	// test's, offline again before she reads with the CLI.
	k := env.NewKafka(t)
	alice := env.NewWorker(t, "alice", k)
	if err := alice.GoOnline(context.Background()); err != nil {
		t.Fatal(err)
	}
	send := func(args ...string) {
		t.Helper()
		if out, stderr, code := zc(t, env, nil, append(args, "hi, really bob")...); code != 0 {
			t.Fatalf("send: %d %q %q", code, out, stderr)
		}
	}
	send("send", "--from", "bob", "--to", "alice")
	if _, err := os.Stat(filepath.Join(keyDir(t), "bob.key")); err != nil {
		t.Fatalf("bob's key was not made: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topic := protocol.Topics{Prefix: env.Prefix}.Topic("alice")
	_, mallory, _ := ed25519.GenerateKey(rand.Reader)
	forge := func(from, text string) []protocol.Header {
		sig, ms := protocol.Sign(mallory, from, "alice", time.Now(), text)
		return []protocol.Header{{Key: protocol.HeaderSignature, Value: sig}, {Key: protocol.HeaderTime, Value: ms}}
	}
	for _, r := range []struct {
		from, text string
		h          []protocol.Header
	}{
		{"bob", "unsigned, claims bob", nil},
		{"bob", "signed by mallory, claims bob", forge("bob", "signed by mallory, claims bob")},
		{"dave", "dave has no key yet", forge("dave", "dave has no key yet")},
	} {
		if _, err := k.Produce(ctx, topic, []byte(r.from), []byte(r.text), r.h...); err != nil {
			t.Fatal(err)
		}
	}
	send("--key-dir", "none", "send", "--from", "bob", "--to", "alice")
	alice.GoOffline()
	out, stderr, code := zc(t, env, nil, "read", "alice")
	want := "bob: hi, really bob\n" +
		"bob [unsigned]: unsigned, claims bob\n" +
		"bob [bad signature]: signed by mallory, claims bob\n" +
		"dave [no key]: dave has no key yet\n" +
		"bob [unsigned]: hi, really bob\n"
	if code != 0 || out != want {
		t.Fatalf("read: code %d, stderr %q\n got %q\nwant %q", code, stderr, out, want)
	}
}
