package reliability

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zkchat/zkchat/internal/testenv"
)

// Client is a raw IRC client (the protocol by hand, so a test sees exactly
// what the server relays). Every PRIVMSG/NOTICE it receives goes to OnText.
type Client struct {
	t    testing.TB
	Nick string
	conn net.Conn

	mu     sync.Mutex
	lines  []string
	more   chan struct{}
	closed chan struct{}
	// OnText, when set before the first message arrives, gets the sender
	// nick and text of every PRIVMSG and NOTICE to this client.
	OnText func(from, text string)
}

// DialIRC connects nick to the server at addr and waits for the welcome.
func DialIRC(t testing.TB, addr, nick string, onText func(from, text string)) *Client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("irc %s: %v", addr, err)
	}
	u := &Client{t: t, Nick: nick, conn: c, more: make(chan struct{}, 1), closed: make(chan struct{}), OnText: onText}
	t.Cleanup(u.Close)
	go u.read()
	u.Send("NICK " + nick)
	u.Send("USER " + nick + " 0 * :" + nick)
	if _, ok := u.Wait(20*time.Second, func(l string) bool { return strings.Contains(l, " 001 ") }); !ok {
		t.Fatalf("irc %s: %s got no welcome", addr, nick)
	}
	return u
}

// Close quits and closes the connection.
func (u *Client) Close() {
	select {
	case <-u.closed:
		return
	default:
	}
	u.Send("QUIT :test over")
	u.conn.Close()
	<-u.closed
}

func (u *Client) read() {
	defer close(u.closed)
	sc := bufio.NewScanner(u.conn)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "PING ") {
			fmt.Fprintf(u.conn, "PONG %s\r\n", line[5:])
			continue
		}
		if from, text, ok := textOf(line, u.Nick); ok && u.OnText != nil {
			u.OnText(from, text)
		}
		u.mu.Lock()
		if len(u.lines) > 20000 { // bound memory under floods: keep the newest
			u.lines = u.lines[10000:]
		}
		u.lines = append(u.lines, line)
		u.mu.Unlock()
		select {
		case u.more <- struct{}{}:
		default:
		}
	}
}

// textOf parses ":nick!u@h PRIVMSG|NOTICE <me> :text".
func textOf(line, me string) (from, text string, ok bool) {
	if !strings.HasPrefix(line, ":") {
		return "", "", false
	}
	f := strings.SplitN(line[1:], " ", 4)
	if len(f) < 4 || (f[1] != "PRIVMSG" && f[1] != "NOTICE") || !strings.EqualFold(f[2], me) {
		return "", "", false
	}
	from, _, _ = strings.Cut(f[0], "!")
	return from, strings.TrimPrefix(f[3], ":"), true
}

// Send writes one line.
func (u *Client) Send(line string) {
	if _, err := fmt.Fprintf(u.conn, "%s\r\n", line); err != nil {
		u.t.Logf("%s: send %q: %v", u.Nick, line, err)
	}
}

// Wait returns the first unseen line that matches, consuming lines up to
// it; false after d.
func (u *Client) Wait(d time.Duration, match func(string) bool) (string, bool) {
	deadline := time.After(d)
	for {
		u.mu.Lock()
		for i, l := range u.lines {
			if match(l) {
				u.lines = u.lines[i+1:]
				u.mu.Unlock()
				return l, true
			}
		}
		u.lines = u.lines[:0]
		u.mu.Unlock()
		select {
		case <-u.more:
		case <-u.closed:
			return "", false
		case <-deadline:
			return "", false
		}
	}
}

// Names asks for channel's members and returns their nicks (prefixes like
// @ and + removed).
func (u *Client) Names(channel string) ([]string, error) {
	u.Send("NAMES " + channel)
	var nicks []string
	for {
		l, ok := u.Wait(10*time.Second, func(l string) bool {
			f := strings.Fields(l)
			return len(f) > 2 && (f[1] == "353" || f[1] == "366")
		})
		if !ok {
			return nil, fmt.Errorf("NAMES %s: no answer", channel)
		}
		f := strings.Fields(l)
		if f[1] == "366" {
			return nicks, nil
		}
		_, list, _ := strings.Cut(l[1:], " :")
		for _, n := range strings.Fields(list) {
			nicks = append(nicks, strings.TrimLeft(n, "~&@%+"))
		}
	}
}

// IRCServer is an InspIRCd of the suite's own (internal/servers on free
// ports, own data folder): Users is its port for people (the flood-limited
// class), Bots its port for the bridge (no flood limits).
type IRCServer struct {
	Users, Bots string
	dir         string
	run         func(action string)
}

// StartIRC starts an InspIRCd of the test's own; stopped at cleanup.
func StartIRC(t testing.TB) *IRCServer {
	t.Helper()
	users, bots := testenv.FreePort(t), testenv.FreePort(t)
	dir := t.TempDir()
	cfg := testenv.ServerConfig(t, fmt.Sprintf("ZKCHAT_IRC_PORT=%d", users),
		fmt.Sprintf("ZKCHAT_IRC_BRIDGE_PORT=%d", bots), "ZKCHAT_DATA_DIR="+dir)
	srv := cfg.InspIRCd()
	s := &IRCServer{Users: fmt.Sprintf("127.0.0.1:%d", users), Bots: fmt.Sprintf("127.0.0.1:%d", bots), dir: dir}
	s.run = func(action string) {
		t.Helper()
		var err error
		switch action {
		case "start":
			err = srv.Start()
		case "stop":
			err = srv.Stop()
		case "restart":
			if err = srv.Stop(); err == nil {
				err = srv.Start()
			}
		}
		if err != nil {
			t.Fatalf("inspircd %s: %v\n%s", action, err, cfg.Log)
		}
	}
	s.run("start")
	t.Cleanup(func() { s.run("stop") })
	return s
}

// Start, Stop and Restart start, stop and restart this server.
func (s *IRCServer) Start()   { s.run("start") }
func (s *IRCServer) Stop()    { s.run("stop") }
func (s *IRCServer) Restart() { s.run("restart") }

// PID is the server's process id (0 when down).
func (s *IRCServer) PID() int {
	matches, _ := filepath.Glob(filepath.Join(s.dir, "inspircd", "*.pid"))
	for _, m := range matches {
		b, err := os.ReadFile(m)
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			return pid
		}
	}
	return 0
}
