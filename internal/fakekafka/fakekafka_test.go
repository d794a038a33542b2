package fakekafka_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/zkchat/zkchat/internal/fakekafka"
	"github.com/zkchat/zkchat/protocol"
)

func TestProduceCommitRead(t *testing.T) {
	ctx := context.Background()
	k := fakekafka.New(protocol.Topics{Prefix: "p-"})
	if _, err := k.Produce(ctx, "p-bob", []byte("alice"), []byte("hi")); !errors.Is(err, protocol.ErrNoTopic) {
		t.Fatalf("produce to a missing topic: %v", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := k.WaitTopic(wctx, "p-bob"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait for a missing topic: %v", err)
	}
	k.CreateTopic("p-bob")
	if err := k.WaitTopic(ctx, "p-bob"); err != nil {
		t.Fatal(err)
	}
	for i, text := range []string{"a", "b", "c"} {
		if off, err := k.Produce(ctx, "p-bob", []byte("alice"), []byte(text)); err != nil || off != int64(i) {
			t.Fatalf("produce %d = %d, %v", i, off, err)
		}
	}
	if low, high, err := k.Bounds(ctx, "p-bob"); err != nil || fmt.Sprint(low, high) != "map[0:0] map[0:3]" {
		t.Fatalf("bounds = %v, %v, %v", low, high, err)
	}
	if n, err := k.Committed(ctx, "p-bob", "p-bob"); err != nil || len(n) != 0 {
		t.Fatalf("committed before any commit = %v, %v", n, err)
	}
	if err := k.Commit(ctx, "p-bob", "p-bob", protocol.Position{1: 1}); err == nil {
		t.Fatal("commit on partition 1 of a one-partition topic succeeded")
	}
	if err := k.Commit(ctx, "p-bob", "p-bob", protocol.Position{0: 1}); err != nil {
		t.Fatal(err)
	}
	r, err := k.OpenReader(ctx, "p-bob", "p-bob")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.OpenReader(ctx, "p-bob", "p-bob"); !errors.Is(err, fakekafka.ErrReaderOpen) {
		t.Fatalf("second reader: %v", err)
	}
	m, err := r.Next(ctx)
	if err != nil || m.Text != "b" || m.From != "alice" || m.Offset != 1 {
		t.Fatalf("next = %+v, %v", m, err)
	}
	got := make(chan protocol.Message, 1)
	go func() {
		_, _ = r.Next(ctx) // c
		m, _ := r.Next(ctx)
		got <- m
	}()
	if _, err := k.Produce(ctx, "p-bob", []byte("carol"), []byte("d")); err != nil {
		t.Fatal(err)
	}
	if m := <-got; m.Text != "d" || m.Offset != 3 {
		t.Fatalf("waited-for record = %+v", m)
	}
	r.Close()
	if k.Readers() != 0 {
		t.Fatal("reader still open after Close")
	}
	k.DeleteTopic("p-bob", "p-bob")
	if err := k.Commit(ctx, "p-bob", "p-bob", protocol.Position{0: 2}); !errors.Is(err, protocol.ErrNoTopic) {
		t.Fatalf("commit to a deleted topic: %v", err)
	}
	if n := k.Offset("p-bob", "p-bob"); n != -1 {
		t.Fatalf("group survived its topic: %d", n)
	}
	errDown := errors.New("down")
	k.CreateTopic("p-bob")
	k.Fault(func(op, topic string) error {
		if op == "Commit" {
			return errDown
		}
		return nil
	})
	if err := k.Commit(ctx, "p-bob", "p-bob", protocol.Position{0: 0}); !errors.Is(err, errDown) {
		t.Fatalf("faulted commit: %v", err)
	}
}
