package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/protocol"
)

// TestReadShowsForeignRecords: records another producer wrote straight into
// bob's topic reach `zkchat read` escaped: a key with ESC, CR or LF (or
// spaces, or no key) is shown quoted and escaped, so it can neither drive
// the terminal nor forge a second line or another sender; a value over
// protocol.MaxMessageBytes is shown cut, with a marker; all of them are
// committed as read.
func TestReadShowsForeignRecords(t *testing.T) {
	// Not parallel: urfave/cli v2 shares its help flag between apps (a data race).
	env := testenv.New(t)
	startManager(t, env)
	if out, stderr, code := zc(t, env, nil, "register", "bob"); code != 0 {
		t.Fatalf("register bob: %d %q %q", code, out, stderr)
	}
	// bob's first time online makes his topic.
	if out, stderr, code := zc(t, env, nil, "read", "bob"); code != 0 || out != "" {
		t.Fatalf("first read: %d %q %q", code, out, stderr)
	}
	k := env.NewKafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topic := protocol.Topics{Prefix: env.Prefix}.Topic("bob")
	long := strings.Repeat("y", 900_000) // under the producer's 1,000,000-byte record limit
	for _, r := range []struct{ key, value string }{
		{"eve\x1b[2J\x1b[H", "screen cleared"},
		{"mallory\r\nalice", "forged line"},
		{"alice: hi", "forged sender"},
		{"", "keyless"},
		{"alice", "title\x1b]0;pwned\x07 bell"},
		{"carol", long},
	} {
		if _, err := k.Produce(ctx, topic, []byte(r.key), []byte(r.value)); err != nil {
			t.Fatal(err)
		}
	}
	out, stderr, code := zc(t, env, nil, "read", "bob")
	want := `"eve\x1b\x5b2J\x1b\x5bH" [unsigned]: screen cleared` + "\n" +
		`"mallory\x0d\x0aalice" [unsigned]: forged line` + "\n" +
		`"alice\x3a\x20hi" [unsigned]: forged sender` + "\n" +
		`"" [unsigned]: keyless` + "\n" +
		`alice [unsigned]: title\x1b]0;pwned\x07 bell` + "\n" +
		"carol [unsigned]: " + long[:protocol.MaxMessageBytes] + " [truncated: 900000 bytes, limit 4096]\n"
	if code != 0 || out != want {
		t.Fatalf("read: code %d, stderr %q\n got %.600q\nwant %.600q", code, stderr, out, want)
	}
	if out, stderr, code := zc(t, env, nil, "read", "bob"); code != 0 || out != "" {
		t.Fatalf("read again (all committed): %d %.300q %q", code, out, stderr)
	}
}

// TestSendTooLong: `zkchat send` refuses a text over
// protocol.MaxMessageBytes before it connects anywhere, exits non-zero and
// says the size and the limit; nothing reaches the receiver.
func TestSendTooLong(t *testing.T) {
	// Not parallel: urfave/cli v2 shares its help flag between apps (a data race).
	env := testenv.New(t)
	startManager(t, env)
	for _, id := range []string{"alice", "bob"} {
		if _, stderr, code := zc(t, env, nil, "register", id); code != 0 {
			t.Fatalf("register %s: %q", id, stderr)
		}
	}
	// bob is online (a worker of the test's own: running the CLI
	// concurrently races in urfave/cli), so alice's send finds him.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bob := env.NewWorker(t, "bob", env.NewKafka(t))
	if err := bob.GoOnline(ctx); err != nil {
		t.Fatal(err)
	}
	o, stderr, code := zc(t, env, nil, "send", "--from", "alice", "--to", "bob", strings.Repeat("x", 4000), strings.Repeat("é", 48))
	if code == 0 || o != "" || !strings.Contains(stderr, "message too long: 4097 bytes, limit 4096") {
		t.Fatalf("send of 4097 bytes: code %d, stdout %q, stderr %q", code, o, stderr)
	}
	if o, stderr, code := zc(t, env, nil, "send", "--from", "alice", "--to", "bob", "after"); code != 0 || o != "sent to bob\n" {
		t.Fatalf("send: %d %q %q", code, o, stderr)
	}
	var got []string
	if _, err := bob.ReadMessages(ctx, func(m protocol.Message) error {
		got = append(got, m.From+": "+m.Text)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "alice: after" {
		t.Fatalf("bob read %.300q, want only the short message", got)
	}
}
