package reliability

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zkchat/zkchat/internal/irctest"
	"github.com/zkchat/zkchat/internal/testenv"
)

// DialIRC connects nick to the server at addr and waits for the welcome;
// onText gets every PRIVMSG and NOTICE to nick. The suite's waits give up
// dropping the lines they looked at (irctest.Options.DropUnmatched): a
// matcher sees each line once, a wait for "the next X" ignores what came
// before a failed one, and CountLines counts what came since the last wait.
func DialIRC(t testing.TB, addr, nick string, onText func(from, text string)) *irctest.Client {
	t.Helper()
	return irctest.DialWith(t, addr, nick, irctest.Options{OnText: onText, DropUnmatched: true})
}

// WaitNickFree waits up to 20 s until nick is on nobody's connection at
// addr (ISON, from a probe client): a user who was online through the CLI
// is a puppet of the bridge until the bridge sees it offline.
func WaitNickFree(t testing.TB, addr, nick string) {
	t.Helper()
	probe := irctest.DialWith(t, addr, "p"+nick, irctest.Options{DropUnmatched: true})
	defer probe.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		probe.Send("ISON " + nick)
		l := probe.Wait(10*time.Second, func(l string) bool { return strings.Contains(l, " 303 ") })
		if _, list, _ := strings.Cut(l[1:], " :"); strings.TrimSpace(list) == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nick %s still taken after 20 s", nick)
		}
		time.Sleep(50 * time.Millisecond)
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
	bots := testenv.FreePort(t)
	s := &IRCServer{Bots: fmt.Sprintf("127.0.0.1:%d", bots)}
	s.Users, s.dir, s.run = testenv.PrivateServerEnv(t, "inspircd", "ZKCHAT_IRC_PORT",
		fmt.Sprintf("ZKCHAT_IRC_BRIDGE_PORT=%d", bots))
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
