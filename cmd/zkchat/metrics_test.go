package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zkchat/zkchat/internal/irctest"
	"github.com/zkchat/zkchat/internal/testenv"
)

// scrape GETs path from the metrics listener at addr: status and body.
func scrape(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric is the value of the sample named series (name and labels, as the
// exposition writes them) in body; -1 if there is none.
func metric(body, series string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// TestMetricsRealRun: `zkchat bridge --metrics-addr` on the real servers.
// /healthz answers at once; /readyz says 503 until the bot is in its
// channel, then 200; the metrics move as an IRC user registers, sends to
// a CLI user (delivered and proved), and sends to an offline user.
//
// Not parallel (see TestStatusRealRun); the bridge's run has parsed its
// flags before the test runs zkchat again.
func TestMetricsRealRun(t *testing.T) {
	env := testenv.New(t)
	users, bots := testenv.IRC(t)
	tag := testenv.Tag()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut testenv.Buffer
	done := make(chan error, 1)
	bot, channel := "zm"+tag, "#m"+tag
	go func() {
		done <- run(ctx, []string{"zkchat", "--zookeeper", env.ZooKeeper, "--kafka", env.Kafka,
			"--topic-prefix", env.Prefix, "--key-dir", keyDir(t), "bridge", "--irc-server", bots, "--rate", "-1",
			"--nick", bot, "--channel", channel, "--metrics-addr", addr}, strings.NewReader(""), &out, &errOut)
	}()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("the bridge did not stop")
		}
	}()
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				_, body := scrape(t, addr, "/metrics")
				t.Fatalf("not within 30 s: %s\nstderr:\n%s\nmetrics:\n%s", what, errOut.String(), grepZK(body))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	wait("/healthz answers", func() bool { code, _ := scrape(t, addr, "/healthz"); return code == 200 })
	wait("/readyz ready", func() bool { code, _ := scrape(t, addr, "/readyz"); return code == 200 })
	if out, stderr, code := zc(t, nil, nil, "healthcheck", "--ready", "--metrics-addr", addr); code != 0 || out != "ready\n" {
		t.Fatalf("healthcheck --ready: exit %d, %q %q", code, out, stderr)
	}
	dead := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	if _, stderr, code := zc(t, nil, nil, "healthcheck", "--metrics-addr", dead); code != 1 || !strings.Contains(stderr, "refused") {
		t.Fatalf("healthcheck of nothing: exit %d, %q", code, stderr)
	}
	get := func(series string) float64 { _, body := scrape(t, addr, "/metrics"); return metric(body, series) }
	wait("leader", func() bool { return get("zkchat_manager_leader") == 1 })
	if v := get("zkchat_bridge_irc_connected"); v != 1 {
		t.Fatalf("irc_connected %v", v)
	}

	if _, stderr, code := zc(t, env, nil, "register", "carol"+tag); code != 0 {
		t.Fatalf("register carol: %s", stderr)
	}
	alice := irctest.Dial(t, users, "al"+tag)
	alice.Send("JOIN " + channel)
	alice.Send("PRIVMSG " + bot + " :register")
	alice.WaitFrom(bot, "NOTICE", "Registered")
	wait("alice online", func() bool { return get("zkchat_bridge_users_online") == 1 })
	wait("the enroll answered", func() bool { return get(`zkchat_manager_requests_answered_total{kind="enroll",status="done"}`) >= 2 })
	if n := get("zkchat_registered_users"); n != 2 {
		t.Fatalf("registered users %v, want 2", n)
	}

	// To carol, offline: refused, counted by reason.
	alice.Send("PRIVMSG " + bot + " :msg carol" + tag + " are you there?")
	alice.WaitFrom(bot, "NOTICE", "is offline")
	wait("receiver_offline counted", func() bool {
		return get(`zkchat_bridge_messages_failed_total{reason="receiver_offline"}`) == 1
	})
	// carol online (the CLI's chat): sent, then delivered the other way.
	inR, inW := io.Pipe()
	defer inW.Close()
	var cout, cerr testenv.Buffer
	go func() {
		_ = run(ctx, []string{"zkchat", "--zookeeper", env.ZooKeeper, "--kafka", env.Kafka,
			"--topic-prefix", env.Prefix, "--key-dir", keyDir(t), "chat", "carol" + tag}, inR, &cout, &cerr)
	}()
	wait("carol online", func() bool { return strings.Contains(cout.String(), "online as") })
	alice.Send("PRIVMSG " + bot + " :msg carol" + tag + " hello")
	wait("sent counted", func() bool { return get("zkchat_bridge_messages_sent_total") == 1 })
	fmt.Fprintf(inW, "al%s: hi alice\n", tag)
	alice.Wait(20*time.Second, func(l string) bool { return strings.Contains(l, "hi alice") })
	wait("delivered and proved", func() bool { return get("zkchat_bridge_messages_delivered_total") == 1 })
	if n := get("zkchat_bridge_delivery_latency_seconds_count"); n != 1 {
		t.Fatalf("latency histogram count %v", n)
	}
}

// grepZK keeps zkchat's own series of a scrape.
func grepZK(body string) string {
	var keep []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "zkchat_") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}
