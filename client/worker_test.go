package client_test

// The Worker against real servers and a real manager: what the fakes
// cannot show (the records on the wire, the manager deleting a topic and
// its group). Each test has its own chroot and topic prefix (testenv).

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/zkchat/zkchat/client"
	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/protocol"
)

// leadingManager runs a manager on env until the test ends and waits until
// it leads.
func leadingManager(t testing.TB, env *testenv.Env) {
	t.Helper()
	env.LeadingManager(t, "m1")
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

// records reads a topic from the start with a plain consumer (no group), as
// an outside client would.
func records(t *testing.T, env *testenv.Env, topic string, n int) []*ckafka.Message {
	t.Helper()
	c, err := ckafka.NewConsumer(&ckafka.ConfigMap{"bootstrap.servers": env.Kafka, "group.id": env.Prefix + "checker",
		"enable.auto.commit": false})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Assign([]ckafka.TopicPartition{{Topic: &topic, Partition: 0, Offset: ckafka.OffsetBeginning}}); err != nil {
		t.Fatal(err)
	}
	var out []*ckafka.Message
	deadline := time.Now().Add(20 * time.Second)
	for len(out) < n && time.Now().Before(deadline) {
		if m, err := c.ReadMessage(time.Second); err == nil {
			out = append(out, m)
		}
	}
	return out
}

// TestMessagesOnceInOrder: every message is read exactly once, in order,
// across offline/online cycles and a reader that stops halfway.
func TestMessagesOnceInOrder(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	leadingManager(t, env)
	k := env.NewKafka(t)
	ctx := ctxT(t)
	mustRegister(t, env, "alice", "bob")
	alice := env.NewWorker(t, "alice", k)
	bob := env.NewWorker(t, "bob", k)
	for _, w := range []*client.Worker{alice, bob} {
		if err := w.GoOnline(ctx); err != nil {
			t.Fatal(err)
		}
	}
	const total = 30
	sent := 0
	send := func(n int) {
		for i := 0; i < n; i++ {
			if err := alice.SendMessage(ctx, "bob", fmt.Sprintf("msg %d ✓", sent)); err != nil {
				t.Fatal(err)
			}
			sent++
		}
	}
	var got []string
	collect := func(m protocol.Message) error {
		if m.From != "alice" || m.To != "bob" {
			t.Errorf("message %+v: wrong from/to", m)
		}
		got = append(got, m.Text)
		return nil
	}
	send(10)
	// A reader that fails on the 5th message: the first 4 are committed,
	// the 5th is read again.
	errStop := errors.New("stop")
	n, err := bob.ReadMessages(ctx, func(m protocol.Message) error {
		if len(got) == 4 {
			return errStop
		}
		return collect(m)
	})
	if !errors.Is(err, errStop) || n != 4 {
		t.Fatalf("partial read = %d, %v", n, err)
	}
	// Offline and back: the rest, once.
	bob.GoOffline()
	if err := bob.GoOnline(ctx); err != nil {
		t.Fatal(err)
	}
	send(10)
	if n, err := bob.ReadMessages(ctx, collect); err != nil || n != 16 {
		t.Fatalf("read = %d, %v; want 16", n, err)
	}
	if n, err := bob.ReadMessages(ctx, collect); err != nil || n != 0 {
		t.Fatalf("read again = %d, %v; want 0", n, err)
	}
	// A follower gets new messages as they come, and what it accepted is not
	// read again by a later reader.
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- bob.FollowMessages(fctx, func(m protocol.Message) error {
			err := collect(m)
			if len(got) == total {
				cancel()
			}
			return err
		})
	}()
	send(total - sent)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("follower got %d of %d", len(got), total)
	}
	if n, err := bob.ReadMessages(ctx, collect); err != nil || n != 0 {
		t.Fatalf("read after follow = %d, %v; want 0", n, err)
	}
	if len(got) != total {
		t.Fatalf("got %d messages, want %d", len(got), total)
	}
	for i, text := range got {
		if want := fmt.Sprintf("msg %d ✓", i); text != want {
			t.Fatalf("message %d = %q, want %q (order or duplicates)", i, text, want)
		}
	}
	// On the wire: key = sender id, value = text.
	recs := records(t, env, env.Prefix+"bob", total)
	if len(recs) != total {
		t.Fatalf("topic has %d records, want %d", len(recs), total)
	}
	for i, r := range recs {
		if string(r.Key) != "alice" || string(r.Value) != fmt.Sprintf("msg %d ✓", i) {
			t.Fatalf("record %d: key %q value %q", i, r.Key, r.Value)
		}
	}
}

// TestQuitDeletesTopic: quit removes the registry node and the topic; a new
// registration starts with an empty topic and no old read position.
func TestQuitDeletesTopic(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	leadingManager(t, env)
	k := env.NewKafka(t)
	ctx := ctxT(t)
	mustRegister(t, env, "pat", "quinn")
	pat, quinn := env.NewWorker(t, "pat", k), env.NewWorker(t, "quinn", k)
	for _, w := range []*client.Worker{pat, quinn} {
		if err := w.GoOnline(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		if err := pat.SendMessage(ctx, "quinn", fmt.Sprint("old ", i)); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := quinn.ReadMessages(ctx, func(protocol.Message) error { return nil }); err != nil || n != 3 {
		t.Fatalf("read = %d, %v", n, err)
	}
	if err := pat.SendMessage(ctx, "quinn", "unread"); err != nil {
		t.Fatal(err)
	}
	if st, err := quinn.Quit(ctx); err != nil || st != protocol.StatusDone {
		t.Fatalf("quit = %v, %v", st, err)
	}
	c := env.Conn(t)
	for _, p := range []string{"/registry/quinn", "/online/quinn"} {
		if ok, _, err := c.Exists(env.Path(p)); err != nil || ok {
			t.Fatalf("%s after quit: exists %v, %v", p, ok, err)
		}
	}
	// The group went with the topic: a new registration starts empty.
	waitFor(t, 20*time.Second, "topic deleted", func() bool {
		for _, tp := range env.Topics(t) {
			if tp == env.Prefix+"quinn" {
				return false
			}
		}
		return true
	})
	if _, err := quinn.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if err := quinn.GoOnline(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pat.SendMessage(ctx, "quinn", "new"); err != nil {
		t.Fatal(err)
	}
	var got []string
	if _, err := quinn.ReadMessages(ctx, func(m protocol.Message) error { got = append(got, m.Text); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "new" {
		t.Fatalf("after re-registering read %q, want [new]", got)
	}
}
