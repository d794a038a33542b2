package irctest

import (
	"sync"
	"testing"
	"time"
)

// dialed connects a client with o to a scripted server; the server's lines
// then reach the client.
func dialed(t *testing.T, o Options) (*Server, *Client) {
	s := NewServer(t)
	return s, DialWith(t, s.Addr, "me", o)
}

func TestWaitKeepsOrDropsUnmatched(t *testing.T) {
	for _, drop := range []bool{false, true} {
		s, c := dialed(t, Options{DropUnmatched: drop})
		s.Send(":x!u@h PRIVMSG me :one")
		c.Wait(5*time.Second, Command("PRIVMSG", "one"))
		s.Send(":x!u@h NOTICE me :skipped")
		s.Send(":x!u@h PRIVMSG me :two")
		c.Wait(5*time.Second, Command("PRIVMSG", "two"))
		s.Send(":x!u@h NOTICE me :passed over")
		c.Wait(5*time.Second, Command("NOTICE", "passed over"))
		s.Send(":x!u@h NOTICE me :left")
		time.Sleep(50 * time.Millisecond)
		looked := 0
		if _, ok := c.TryWait(50*time.Millisecond, func(string) bool { looked++; return false }); ok {
			t.Fatalf("drop=%v: a wait that never matches matched", drop)
		}
		left := c.All()
		switch {
		case drop && (looked != 1 || len(left) != 0):
			t.Errorf("drop: the failed wait looked %d times and left %q; want once, nothing", looked, left)
		case !drop && len(left) != 1:
			t.Errorf("keep: the failed wait left %q; want the one line", left)
		}
	}
}

func TestNoHistoryHandler(t *testing.T) {
	var mu sync.Mutex
	var got []string
	var texts []string
	s, c := dialed(t, Options{NoHistory: true, OnText: func(from, text string) {
		mu.Lock()
		texts = append(texts, from+": "+text)
		mu.Unlock()
	}})
	done := make(chan struct{})
	c.Handle(func(line string, at time.Time) {
		if at.IsZero() {
			t.Error("no read time")
		}
		mu.Lock()
		got = append(got, line)
		n := len(got)
		mu.Unlock()
		if n == 2 {
			close(done)
		}
	})
	s.Send(":x!u@h PRIVMSG me :hello")
	s.Send("PING :tok") // answered by the client, not handled
	s.Send(":x!u@h NOTICE #c :to the channel")
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("handler got no lines")
	}
	s.Wait(5*time.Second, Command("PONG", "tok"))
	mu.Lock()
	defer mu.Unlock()
	if len(texts) != 1 || texts[0] != "x: hello" || c.lines != nil {
		t.Errorf("OnText got %q, history %v; want one text, no history", texts, c.lines)
	}
}

func TestConnectReportsNoWelcome(t *testing.T) {
	if _, err := Connect("127.0.0.1:1", "me", Options{}); err == nil {
		t.Fatal("Connect to a closed port: no error")
	}
}
