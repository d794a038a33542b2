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

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/internal/irctest"
	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/protocol"
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
	wait := func(what string, cond func() bool) { t.Helper(); waitScrape(t, addr, &errOut, what, cond) }
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
	for _, series := range []string{"zkchat_bridge_irc_connected",
		`zkchat_zookeeper_connected{client="bridge"}`, `zkchat_zookeeper_connected{client="manager"}`,
		`zkchat_kafka_connected{client="bridge"}`, `zkchat_kafka_connected{client="manager"}`} {
		if v := get(series); v != 1 {
			t.Fatalf("%s = %v, want 1", series, v)
		}
	}
	if v := get(`zkchat_zookeeper_session_events_total{client="bridge",event="expired"}`); v != 0 {
		t.Fatalf("bridge session expirations %v, want 0", v)
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

// waitScrape waits up to 30 s for cond; failing, it shows the process's
// stderr and its zkchat_ metrics at addr.
func waitScrape(t *testing.T, addr string, stderr *testenv.Buffer, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			_, body := scrape(t, addr, "/metrics")
			t.Fatalf("not within 30 s: %s\nstderr:\n%s\nmetrics:\n%s", what, stderr.String(), grepZK(body))
		}
		time.Sleep(100 * time.Millisecond)
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

// TestMetricsKafkaDown: a manager whose Kafka does not answer (a port
// nothing listens on), on the real ZooKeeper. It leads, but /readyz says
// 503 naming Kafka, zkchat_kafka_connected is 0 and its client errors are
// counted; a registration it cannot answer (no topic can be made) shows as
// pending, its age growing.
//
// Not parallel (see TestStatusRealRun).
func TestMetricsKafkaDown(t *testing.T) {
	env := testenv.New(t)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	deadKafka := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var errOut testenv.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"zkchat", "--zookeeper", env.ZooKeeper, "--kafka", deadKafka,
			"--topic-prefix", env.Prefix, "manager", "--metrics-addr", addr}, strings.NewReader(""), io.Discard, &errOut)
	}()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("the manager did not stop")
		}
	}()
	get := func(series string) float64 { _, body := scrape(t, addr, "/metrics"); return metric(body, series) }
	wait := func(what string, cond func() bool) { t.Helper(); waitScrape(t, addr, &errOut, what, cond) }
	wait("leader", func() bool { return get("zkchat_manager_leader") == 1 })
	if v := get(`zkchat_zookeeper_connected{client="manager"}`); v != 1 {
		t.Fatalf("zookeeper_connected %v", v)
	}
	if v := get(`zkchat_kafka_connected{client="manager"}`); v != 0 {
		t.Fatalf("kafka_connected %v with no Kafka", v)
	}
	wait("Kafka client errors counted", func() bool {
		return get(`zkchat_kafka_client_errors_total{client="manager",kind="transport"}`)+
			get(`zkchat_kafka_client_errors_total{client="manager",kind="all_brokers_down"}`) > 0
	})
	code, body := scrape(t, addr, "/readyz")
	if code != 503 || !strings.Contains(body, "manager: kafka: no broker answered") {
		t.Fatalf("readyz %d %q, want 503 naming Kafka", code, body)
	}
	if _, stderr, code := zc(t, nil, nil, "healthcheck", "--ready", "--metrics-addr", addr); code != 1 || !strings.Contains(stderr, "kafka") {
		t.Fatalf("healthcheck --ready: exit %d, %q", code, stderr)
	}

	// A request the leader cannot answer yet: a node its creator never
	// confirmed (written here with a plain connection), which the leader
	// keeps for the confirm grace (30 s). Pending, and ageing.
	_, chroot, err := protocol.SplitConnect(env.ZooKeeper)
	if err != nil {
		t.Fatal(err)
	}
	paths, _ := protocol.NewPaths(chroot)
	if _, err := env.Conn(t).Create(paths.Enroll("dave"+testenv.Tag()), nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	wait("the request pending", func() bool { return get(`zkchat_manager_requests_pending{kind="enroll"}`) == 1 })
	first := get(`zkchat_manager_request_oldest_pending_seconds{kind="enroll"}`)
	time.Sleep(1100 * time.Millisecond)
	if later := get(`zkchat_manager_request_oldest_pending_seconds{kind="enroll"}`); first < 0 || later < first+1 {
		t.Fatalf("oldest pending age %v, then %v a second later", first, later)
	}
	if v := get(`zkchat_manager_request_oldest_pending_seconds{kind="quit"}`); v != 0 {
		t.Fatalf("quit oldest pending %v with none pending", v)
	}
	if v := get(`zkchat_zookeeper_session_events_total{client="manager",event="disconnected"}`); v != 0 {
		t.Fatalf("%v ZooKeeper disconnections counted with ZooKeeper up (scrapes must not cost sessions)", v)
	}
}
