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
}

func newLines(t testing.TB, name string) *Lines {
	return &Lines{t: t, name: name, more: make(chan struct{}, 1)}
}

func (l *Lines) add(line string) {
	l.mu.Lock()
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

// tryWaitUntil is tryWait that also gives up when closed is closed.
func (l *Lines) tryWaitUntil(d time.Duration, closed <-chan struct{}, match func(string) bool) (string, bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		l.mu.Lock()
		for i, line := range l.lines {
			if match(line) {
				l.lines = l.lines[i+1:]
				l.mu.Unlock()
				return line, true
			}
		}
		l.mu.Unlock()
		select {
		case <-l.more:
		case <-closed:
			return l.match(match)
		case <-t.C:
			return "", false
		}
	}
}

// match consumes and returns the first line that matches, if any.
func (l *Lines) match(match func(string) bool) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, line := range l.lines {
		if match(line) {
			l.lines = l.lines[i+1:]
			return line, true
		}
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
