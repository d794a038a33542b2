package irctest

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// Lines is what one side of a test connection has received: appended by its
// reader, consumed by the test's waits.
type Lines struct {
	t    testing.TB
	name string

	mu    sync.Mutex
	lines []string
	more  chan struct{} // cap 1: a line came
	drop  bool          // a wait that gives up drops the lines it looked at
}

// maxLines bounds a history under floods: past it, the older half goes.
const maxLines = 20000

func newLines(t testing.TB, name string) *Lines {
	return &Lines{t: t, name: name, more: make(chan struct{}, 1)}
}

func (l *Lines) add(line string) {
	l.mu.Lock()
	if len(l.lines) > maxLines {
		l.lines = l.lines[maxLines/2:]
	}
	l.lines = append(l.lines, line)
	l.mu.Unlock()
	select {
	case l.more <- struct{}{}:
	default:
	}
}

// wait returns the first unseen line that matches, consuming lines up to it.
func (l *Lines) wait(d time.Duration, match func(string) bool) string {
	l.t.Helper()
	if line, ok := l.tryWait(d, match); ok {
		return line
	}
	l.t.Fatalf("%s: no matching line in %s; got %q", l.name, d, l.all())
	return ""
}

// tryWait is wait that reports failure instead of failing the test.
func (l *Lines) tryWait(d time.Duration, match func(string) bool) (string, bool) {
	return l.tryWaitUntil(d, nil, match)
}

// tryWaitUntil is tryWait that also gives up when closed is closed (after
// looking at the lines that came before).
func (l *Lines) tryWaitUntil(d time.Duration, closed <-chan struct{}, match func(string) bool) (string, bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		if line, ok := l.match(match); ok {
			return line, true
		}
		select {
		case <-l.more:
		case <-closed:
			return l.match(match)
		case <-t.C:
			return "", false
		}
	}
}

// match consumes and returns the first line that matches, if any; with
// drop, no match consumes every line.
func (l *Lines) match(match func(string) bool) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, line := range l.lines {
		if match(line) {
			l.lines = l.lines[i+1:]
			return line, true
		}
	}
	if l.drop {
		l.lines = l.lines[:0]
	}
	return "", false
}

func (l *Lines) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// Command matches a line with the IRC command cmd (PRIVMSG, NOTICE, PING,
// ...) whose text contains text.
func Command(cmd, text string) func(string) bool {
	return func(line string) bool {
		if strings.HasPrefix(line, ":") {
			_, line, _ = strings.Cut(line, " ")
		}
		c, rest, _ := strings.Cut(line, " ")
		return strings.EqualFold(c, cmd) && strings.Contains(rest, text)
	}
}
