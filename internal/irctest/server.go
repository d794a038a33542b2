package irctest

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is a scripted IRC server for one bot on localhost: it welcomes the
// bot, lets it join any channel (sending the members set with Members),
// answers its PINGs unless told to hold them, records every line the bot
// writes, and sends whatever the test scripts. A test sees the exact wire
// bytes, with no IRC server installed.
//
// Its accept loop and the reading goroutine of each connection end when the
// test's cleanup closes the listener and the connections.
type Server struct {
	t     testing.TB
	ln    net.Listener
	Addr  string
	lines *Lines

	mu      sync.Mutex
	conn    net.Conn
	nick    string
	members []string
	caps    []string // offered in CAP LS, acknowledged when requested
	hold    bool     // PINGs are recorded, not answered
	held    []string
	conns   int
	up      chan struct{} // closed and replaced at each welcome
}

// NewServer starts a Server on a free localhost port.
func NewServer(t testing.TB) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, ln: ln, Addr: ln.Addr().String(), lines: newLines(t, "server"), up: make(chan struct{})}
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		if s.conn != nil {
			s.conn.Close()
		}
		s.mu.Unlock()
	})
	go s.accept()
	return s
}

func (s *Server) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.conn != nil {
			s.conn.Close()
		}
		s.conn = c
		s.conns++
		s.mu.Unlock()
		go s.serve(c)
	}
}

func (s *Server) serve(c net.Conn) {
	defer c.Close()
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		s.lines.add(line)
		cmd, rest, _ := strings.Cut(line, " ")
		switch strings.ToUpper(cmd) {
		case "CAP":
			s.mu.Lock()
			caps := strings.Join(s.caps, " ")
			s.mu.Unlock()
			switch {
			case strings.HasPrefix(rest, "LS"): // none offered: registration goes on at once
				s.write(c, ":irc.test CAP * LS :%s", caps)
			case strings.HasPrefix(rest, "REQ"): // only what was offered is asked for
				s.write(c, ":irc.test CAP * ACK :%s", strings.TrimPrefix(strings.TrimPrefix(rest, "REQ "), ":"))
			}
		case "NICK":
			s.mu.Lock()
			s.nick = strings.TrimPrefix(rest, ":")
			s.mu.Unlock()
		case "USER":
			nick := s.Nick()
			s.write(c, ":irc.test 001 %s :Welcome to the test network", nick)
			s.write(c, ":irc.test 005 %s CASEMAPPING=rfc1459 CHANTYPES=# :are supported by this server", nick)
			s.write(c, ":irc.test 376 %s :End of MOTD", nick)
			s.mu.Lock()
			close(s.up)
			s.up = make(chan struct{})
			s.mu.Unlock()
		case "JOIN":
			ch := strings.TrimPrefix(rest, ":")
			nick := s.Nick()
			s.mu.Lock()
			names := strings.Join(append([]string{nick}, s.members...), " ")
			s.mu.Unlock()
			s.write(c, ":%s!bot@test JOIN %s", nick, ch)
			s.write(c, ":irc.test 353 %s = %s :%s", nick, ch, names)
			s.write(c, ":irc.test 366 %s %s :End of /NAMES list.", nick, ch)
		case "PING":
			s.mu.Lock()
			hold := s.hold
			if hold {
				s.held = append(s.held, strings.TrimPrefix(rest, ":"))
			}
			s.mu.Unlock()
			if !hold {
				s.write(c, ":irc.test PONG irc.test :%s", strings.TrimPrefix(rest, ":"))
			}
		}
	}
}

func (s *Server) write(c net.Conn, format string, args ...any) {
	_, _ = fmt.Fprintf(c, format+"\r\n", args...)
}

// Nick is the bot's nick.
func (s *Server) Nick() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nick
}

// Members sets who the channel's NAMES list shows besides the bot.
func (s *Server) Members(nicks ...string) {
	s.mu.Lock()
	s.members = nicks
	s.mu.Unlock()
}

// Caps sets the IRCv3 capabilities the server offers at the bot's next
// connection (none by default), and acknowledges when the bot asks for them.
func (s *Server) Caps(caps ...string) {
	s.mu.Lock()
	s.caps = caps
	s.mu.Unlock()
}

// HoldPongs stops (true) or resumes (false) answering the bot's PINGs; on
// resuming, the held ones are answered in order.
func (s *Server) HoldPongs(hold bool) {
	s.mu.Lock()
	s.hold = hold
	held := s.held
	s.held = nil
	s.mu.Unlock()
	if !hold {
		for _, tok := range held {
			s.Send(":irc.test PONG irc.test :" + tok)
		}
	}
}

// Send writes line to the bot's connection.
func (s *Server) Send(line string) {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c == nil {
		s.t.Fatalf("server: no connection to send %q", line)
	}
	s.write(c, "%s", line)
}

// Drop closes the bot's connection.
func (s *Server) Drop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.Close()
	}
}

// Connections is how many connections the bot has made.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// Wait returns the first line from the bot not seen yet that matches,
// consuming the lines up to it; it fails the test after d.
func (s *Server) Wait(d time.Duration, match func(string) bool) string {
	s.t.Helper()
	return s.lines.wait(d, match)
}

// Lines returns the lines from the bot not seen yet.
func (s *Server) Lines() []string { return s.lines.all() }
