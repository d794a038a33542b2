package servers

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"
)

// PortOpen reports whether something accepts TCP connections on Host:port.
func PortOpen(port int) bool {
	c, err := net.DialTimeout("tcp", addr(port), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

var (
	errExited  = errors.New("exited during startup")
	errTimeout = errors.New("timed out")
)

// WaitFor polls ready every 200 ms until it returns true (nil), timeout
// passes (errTimeout) or, when pid is not 0, that process dies (errExited:
// no point waiting for a corpse).
func WaitFor(timeout time.Duration, pid int, ready func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if ready() {
			return nil
		}
		if pid != 0 && !Alive(pid) {
			return errExited
		}
		if time.Now().After(deadline) {
			return errTimeout
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// WaitPort waits until Host:port accepts connections.
func WaitPort(port int, timeout time.Duration) error {
	if err := WaitFor(timeout, 0, func() bool { return PortOpen(port) }); err != nil {
		return fmt.Errorf("%s: %w", addr(port), err)
	}
	return nil
}

// FourLetter sends a ZooKeeper four-letter word ("srvr", "ruok") and
// returns the answer.
func FourLetter(port int, word string) (string, error) {
	c, err := net.DialTimeout("tcp", addr(port), 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, word); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	if len(b) == 0 && err == nil {
		err = errors.New("no answer")
	}
	return string(b), err
}

// zkMode is the "Mode:" of srvr's answer (standalone, leader, follower).
func zkMode(port int) (string, error) {
	out, err := FourLetter(port, "srvr")
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(out, "\n") {
		if m, ok := strings.CutPrefix(l, "Mode: "); ok {
			return strings.TrimSpace(m), nil
		}
	}
	return "", fmt.Errorf("srvr answered without a mode: %q", out)
}

// IRCProbe registers a throwaway client on Host:port and returns what the
// server sent up to the end of the MOTD; it fails unless 001 arrived. With
// then set, it sends then after 001 and reads until done(line) is true.
// InspIRCd completes registrations in a once-a-second pass, so this takes
// up to ~1 s there even on an idle server.
func IRCProbe(port int, timeout time.Duration) ([]string, error) {
	welcomed := false
	lines, err := ircSession(port, timeout, func(l string, w io.Writer) (bool, error) {
		switch f := strings.Fields(l); {
		case len(f) > 1 && f[1] == "001":
			welcomed = true
		case len(f) > 1 && (f[1] == "376" || f[1] == "422"):
			return true, nil
		}
		return false, nil
	})
	if err == nil && !welcomed {
		err = errors.New("no welcome (001)")
	}
	return lines, err
}

// servicesProbe registers on port and asks NickServ for HELP: nil once
// NickServ answers ("401 No such nick" means Atheme is not linked yet).
func servicesProbe(port int) error {
	_, err := ircSession(port, 5*time.Second, func(l string, w io.Writer) (bool, error) {
		f := strings.Fields(l)
		switch {
		case len(f) > 1 && f[1] == "001":
			_, err := io.WriteString(w, "PRIVMSG NickServ :HELP\r\n")
			return false, err
		case strings.HasPrefix(l, ":NickServ!") && len(f) > 1 && f[1] == "NOTICE":
			return true, nil
		case len(f) > 1 && f[1] == "401":
			return true, errors.New("NickServ is not there (services not linked)")
		}
		return false, nil
	})
	return err
}

// ircSession registers a throwaway nick on port, answers PINGs and hands
// every other line to on until it says done, then QUITs.
func ircSession(port int, timeout time.Duration, on func(line string, w io.Writer) (bool, error)) ([]string, error) {
	c, err := net.DialTimeout("tcp", addr(port), timeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	nick := fmt.Sprintf("zkprobe%d", rand.IntN(1e6))
	if _, err := fmt.Fprintf(c, "NICK %s\r\nUSER zkprobe 0 * :zkchat readiness probe\r\n", nick); err != nil {
		return nil, err
	}
	var lines []string
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		l := strings.TrimRight(sc.Text(), "\r")
		if rest, ok := strings.CutPrefix(l, "PING "); ok {
			fmt.Fprintf(c, "PONG %s\r\n", rest)
			continue
		}
		lines = append(lines, l)
		if strings.HasPrefix(l, "ERROR ") {
			return lines, errors.New(l)
		}
		done, err := on(l, c)
		if err != nil {
			return lines, err
		}
		if done {
			_, _ = io.WriteString(c, "QUIT :probe done\r\n")
			return lines, nil
		}
	}
	if err := sc.Err(); err != nil {
		return lines, err
	}
	return lines, errors.New("connection closed")
}

// ircVersion is the version in a 004 line of lines ("" when none).
func ircVersion(lines []string) string {
	for _, l := range lines {
		if f := strings.Fields(l); len(f) > 4 && f[1] == "004" {
			return f[4]
		}
	}
	return "version unknown"
}

// kafkaMetadata is kcat's broker list of bootstrap (host:port,...).
func kafkaMetadata(bootstrap string, extra ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	args := append([]string{"-b", bootstrap, "-L", "-m", "3"}, extra...)
	out, err := exec.CommandContext(ctx, "kcat", args...).Output()
	return string(out), err
}

// tail prints the last n lines of file to the log (for failures).
func (c *Config) tail(file string, n int) {
	b, err := os.ReadFile(file)
	if err != nil || len(b) == 0 {
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	c.logf("last %d lines of %s:", len(lines), file)
	fmt.Fprintln(c.out(), strings.Join(lines, "\n"))
}
