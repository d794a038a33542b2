package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLimitsPerKeyAndCounts(t *testing.T) {
	var buf bytes.Buffer
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), time.Second)
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	for i := 0; i < 100; i++ {
		l.Warn("read node failed", "i", i)
		l.Warn("other trouble")
	}
	if got := strings.Count(buf.String(), "\n"); got != 2 {
		t.Fatalf("%d lines in the first interval, want 2:\n%s", got, buf.String())
	}
	now = now.Add(time.Second)
	l.Warn("read node failed", "i", 100)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, "suppressed=99") || !strings.Contains(last, "i=100") {
		t.Fatalf("line after the interval: %q, want suppressed=99", last)
	}
}

func TestForgetsIdleKeys(t *testing.T) {
	l := New(slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)), time.Second)
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	for i := 0; i < 3*maxKeys; i++ {
		if i%maxKeys == 0 {
			now = now.Add(time.Second)
		}
		l.Log(slog.LevelWarn, string(rune('a'+i%26))+strings.Repeat("x", i), "m")
	}
	if n := len(l.keys); n > maxKeys {
		t.Fatalf("%d keys remembered, want at most %d", n, maxKeys)
	}
}

func TestBoundedWithinOneInterval(t *testing.T) {
	var buf bytes.Buffer
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), time.Second)
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	for i := 0; i < 3*maxKeys; i++ {
		l.Log(slog.LevelWarn, strings.Repeat("k", i+1), "m")
	}
	if n := len(l.keys); n > maxKeys+1 {
		t.Fatalf("%d keys remembered, want at most %d", n, maxKeys+1)
	}
	if n := strings.Count(buf.String(), "\n"); n != maxKeys+1 {
		t.Fatalf("%d lines, want %d (one per remembered key, one for the rest)", n, maxKeys+1)
	}
}
