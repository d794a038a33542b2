package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/zkchat/zkchat/protocol"
)

func TestTransientCommit(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{kafkaCommitError{fmt.Errorf("commit: %w", context.DeadlineExceeded)}, true},
		{kafkaCommitError{fmt.Errorf("commit: %w: down", protocol.ErrTransient)}, true},
		{kafkaCommitError{fmt.Errorf("commit: %w: gone", protocol.ErrNoTopic)}, false},
		{kafkaCommitError{fmt.Errorf("commit: %w: %w", protocol.ErrNoTopic, protocol.ErrTransient)}, false},
		{kafkaCommitError{errors.New("refused")}, false},
		// A failed BeforeCommit (delivery not proven) ends the read.
		{fmt.Errorf("not committed: %w", context.DeadlineExceeded), false},
	} {
		if got := transientCommit(c.err); got != c.want {
			t.Errorf("transientCommit(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// TestCommitterRetries: a commit that Kafka does not take while it is away
// is tried again, with the newest position, instead of failing the read.
func TestCommitterRetries(t *testing.T) {
	var mu sync.Mutex
	var calls []protocol.Position
	var c *committer
	c = newCommitter(func(n protocol.Position) error {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, n)
		if len(calls) == 1 {
			c.offer(0, 7) // newer while the first is failing
		}
		if len(calls) <= 2 {
			return kafkaCommitError{fmt.Errorf("commit: %w", context.DeadlineExceeded)}
		}
		return nil
	}, 0, slog.New(slog.NewTextHandler(io.Discard, nil)), func(err error) { t.Errorf("committer gave up: %v", err) })
	c.offer(0, 5)
	c.offer(1, 3) // another partition: committed with the same request
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(calls)
		mu.Unlock()
		if n >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := c.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(calls) != "[map[0:5 1:3] map[0:7 1:3] map[0:7 1:3]]" {
		t.Errorf("commits %v, want 5 and 7 failing, then 7 (with 3 on partition 1 each time)", calls)
	}
}

// TestCommitterInterval: a reader busy for a second commits about once per
// interval, not once per message (before: one commit after another, each
// with the bridge's PING proof, as long as messages came), and its stop
// commits the last position at once.
func TestCommitterInterval(t *testing.T) {
	var mu sync.Mutex
	var calls []protocol.Position
	c := newCommitter(func(n protocol.Position) error {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, n)
		return nil
	}, 200*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)), func(err error) { t.Errorf("committer gave up: %v", err) })
	start := time.Now()
	off := int64(0)
	for time.Since(start) < time.Second {
		off++
		c.offer(0, off)
		time.Sleep(time.Millisecond)
	}
	stopped := time.Now()
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(stopped); d > 100*time.Millisecond {
		t.Errorf("stop took %v: it must commit the last position at once", d)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) < 2 || len(calls) > 8 {
		t.Errorf("%d commits for %d offers in 1 s at one per 200 ms, want 2 to 8", len(calls), off)
	}
	if last := calls[len(calls)-1]; last[0] != off {
		t.Errorf("last commit %v, want the last offer %d", last, off)
	}
}
