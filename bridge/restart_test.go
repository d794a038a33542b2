package bridge_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zkchat/zkchat/internal/testenv"
)

// privateNgircd starts an ngIRCd of the test's own with the project's
// script (its own data folder and port), so the test can restart it without
// disturbing the shared servers. It returns the address and a function that
// runs the script with an action.
func privateNgircd(t *testing.T) (string, func(action string)) {
	t.Helper()
	testenv.NGIRCd(t) // skips, or fails under strict, without ngIRCd
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir, err := os.MkdirTemp("", "zkchat-ngircd-")
	if err != nil {
		t.Fatal(err)
	}
	script, _ := filepath.Abs("../scripts/ngircd.sh")
	run := func(action string) {
		t.Helper()
		cmd := exec.Command(script, action)
		cmd.Env = append(os.Environ(), fmt.Sprintf("ZKCHAT_NGIRCD_PORT=%d", port), "ZKCHAT_DATA_DIR="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ngircd.sh %s: %v\n%s", action, err, out)
		}
	}
	run("start")
	t.Cleanup(func() { run("stop"); os.RemoveAll(dir) })
	return fmt.Sprintf("127.0.0.1:%d", port), run
}

// TestIRCServerRestart: the IRC server is restarted in the middle of a
// conversation. The bridge reconnects (once, with backoff), the user comes
// back online when it has rejoined, and no message is lost or reordered;
// duplicates are counted and bounded by one delivery batch.
func TestIRCServerRestart(t *testing.T) {
	t.Parallel()
	addr, ngircd := privateNgircd(t)
	s := start(t, func(string) string { return addr })
	s.users = addr
	tag := testenv.Tag()
	nick := "rs" + tag
	u, c := s.onlineUser(t, nick)

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	sender := mustRegisterOnline(t, ctx, s, "snd"+tag)
	send := func(i int) {
		for {
			err := sender.SendMessage(ctx, nick, fmt.Sprintf("seq %d", i))
			if err == nil {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("send %d: %v", i, err)
			}
			time.Sleep(50 * time.Millisecond) // offline while the server restarts
		}
	}
	const n = 100
	var got []string
	collect := func(u *ircUser, upto int) {
		for len(got) < upto {
			l := u.waitFrom(s.bot, "PRIVMSG", " seq ")
			got = append(got, l[strings.LastIndex(l, " seq ")+1:])
		}
	}
	for i := 0; i < n/2; i++ {
		send(i)
	}
	collect(u, n/2)
	ngircd("restart")
	// The user's client reconnects and rejoins, as IRC clients do.
	u = s.join(t, nick)
	s.waitNode(t, c, s.env.Path("/online/"+nick), true)
	for i := n / 2; i < n; i++ {
		send(i)
	}
	seen := map[string]int{}
	last := -1
	for len(seen) < n {
		if len(got) == 0 {
			collect(u, 1)
		}
		line := got[0]
		got = got[1:]
		seen[line]++
		var i int
		fmt.Sscanf(line, "seq %d", &i)
		if seen[line] == 1 {
			if i != last+1 {
				t.Fatalf("%q after seq %d: lost or reordered", line, last)
			}
			last = i
		}
	}
	dups := 0
	for _, k := range seen {
		dups += k - 1
	}
	t.Logf("server restart: %d messages, %d duplicates", n, dups)
}
