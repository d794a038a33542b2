package main

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// notifyListener is what systemd gives a Type=notify service: a datagram
// socket, named by NOTIFY_SOCKET (set here for t), whose messages it
// keeps.
type notifyListener struct {
	mu   sync.Mutex
	msgs []string
	got  chan struct{} // a message came
}

func listenNotify(t *testing.T) *notifyListener {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_SOCKET", path)
	l := &notifyListener{got: make(chan struct{}, 100)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			l.mu.Lock()
			l.msgs = append(l.msgs, string(buf[:n]))
			l.mu.Unlock()
			l.got <- struct{}{}
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return l
}

// all is every message so far, one per line block.
func (l *notifyListener) all() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.msgs, "|")
}

// wait waits up to d for a message holding want.
func (l *notifyListener) wait(t *testing.T, want string, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for !strings.Contains(l.all(), want) {
		select {
		case <-l.got:
		case <-deadline:
			t.Fatalf("no %q from the service within %s; got %q", want, d, l.all())
		}
	}
}

// TestNotifySystemd: STATUS says what is missing, READY=1 comes once, when
// ready first holds, and STOPPING=1 when the context ends; without
// NOTIFY_SOCKET nothing starts.
func TestNotifySystemd(t *testing.T) {
	stop := notifySystemd(context.Background(), slog.Default(), func() (bool, string) {
		t.Error("ready asked without NOTIFY_SOCKET")
		return false, ""
	})
	stop()

	l := listenNotify(t)
	var ok atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	stop = notifySystemd(ctx, slog.Default(), func() (bool, string) {
		if ok.Load() {
			return true, "ready"
		}
		return false, "not ready: bridge: no ZooKeeper session"
	})
	defer stop()
	l.wait(t, "STATUS=not ready: bridge: no ZooKeeper session", 5*time.Second)
	if strings.Contains(l.all(), "READY=1") {
		t.Fatalf("READY=1 before ready: %q", l.all())
	}
	ok.Store(true)
	l.wait(t, "READY=1\nSTATUS=ready", 3*notifyEvery)
	time.Sleep(notifyEvery + time.Second) // another round: nothing new to say
	if n := strings.Count(l.all(), "READY=1"); n != 1 {
		t.Fatalf("READY=1 sent %d times: %q", n, l.all())
	}
	if strings.Count(l.all(), "STATUS=ready") != 1 {
		t.Fatalf("an unchanged status sent again: %q", l.all())
	}
	cancel()
	l.wait(t, "STOPPING=1", 5*time.Second)
}
