// Package ratelog rate-limits repeated log lines: a line that hostile or
// broken input can make repeat (one per node, per retry) is written at most
// once per interval per key, and the next line written says how many were
// left out.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// maxKeys bounds the keys remembered: past it, keys not written for an
// interval are forgotten (with counts not yet reported), and while none is,
// new keys share one entry.
const maxKeys = 1024

// Logger writes through log at most once per interval per key. Its mutex
// is a leaf.
type Logger struct {
	log      *slog.Logger
	interval time.Duration
	now      func() time.Time

	mu   sync.Mutex
	keys map[string]*entry
}

type entry struct {
	last       time.Time
	suppressed int
}

// New returns a Logger that lets through one line per key per interval.
func New(log *slog.Logger, interval time.Duration) *Logger {
	return &Logger{log: log, interval: interval, now: time.Now, keys: map[string]*entry{}}
}

// Log writes msg at level unless a line of the same key was written less
// than an interval ago (then it is counted). A line written after some were
// left out carries "suppressed", their number. The key is usually the
// message itself: one line per kind of trouble, not per node.
func (l *Logger) Log(level slog.Level, key, msg string, args ...any) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	now := l.now()
	l.mu.Lock()
	e := l.keys[key]
	if e != nil && now.Sub(e.last) < l.interval {
		e.suppressed++
		l.mu.Unlock()
		return
	}
	n := 0
	if e == nil {
		if len(l.keys) >= maxKeys {
			l.forget(now)
		}
		if len(l.keys) >= maxKeys {
			// Still full: every new key shares one entry.
			key = "\x00overflow"
			if e = l.keys[key]; e != nil && now.Sub(e.last) < l.interval {
				e.suppressed++
				l.mu.Unlock()
				return
			}
		}
		if e == nil {
			e = &entry{}
			l.keys[key] = e
		}
	}
	n, e.suppressed, e.last = e.suppressed, 0, now
	l.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	l.log.Log(context.Background(), level, msg, args...)
}

// Warn is Log at warning level keyed by msg.
func (l *Logger) Warn(msg string, args ...any) { l.Log(slog.LevelWarn, msg, msg, args...) }

// Info is Log at info level keyed by msg.
func (l *Logger) Info(msg string, args ...any) { l.Log(slog.LevelInfo, msg, msg, args...) }

// Error is Log at error level keyed by msg.
func (l *Logger) Error(msg string, args ...any) { l.Log(slog.LevelError, msg, msg, args...) }

// forget drops keys idle for an interval (l.mu held). Counts not yet
// reported are lost with them: bounded memory over exact counts.
func (l *Logger) forget(now time.Time) {
	for k, e := range l.keys {
		if now.Sub(e.last) >= l.interval {
			delete(l.keys, k)
		}
	}
}
