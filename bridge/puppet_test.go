package bridge_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/lrstanley/girc"

	"github.com/zkchat/zkchat/bridge"
	"github.com/zkchat/zkchat/client"
	"github.com/zkchat/zkchat/internal/irctest"
	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/protocol"
)

// startPuppets runs a manager and a bridge with puppets on.
func startPuppets(t *testing.T) *setup {
	t.Helper()
	users, bots := testenv.IRC(t)
	return launch(t, &setup{}, bots, users, func(c *bridge.Config) { c.Puppets = true })
}

// cliUser registers id as a CLI user of s's servers and, with online,
// takes it online; it is closed when the test ends.
func (s *setup) cliUser(ctx context.Context, t *testing.T, id string, online bool) *client.Worker {
	t.Helper()
	w, err := client.New(id, client.Config{ZooKeeper: s.env.ZooKeeper, Kafka: s.kafka})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	if _, err := w.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if online {
		if err := w.GoOnline(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// ison reports whether nick is on the IRC server, as u's ISON says.
func ison(u *irctest.Client, nick string) bool {
	u.Send("ISON " + nick)
	l := u.Wait(10*time.Second, func(l string) bool { return strings.Contains(l, " 303 ") })
	_, list, _ := strings.Cut(l[1:], " :")
	return strings.EqualFold(strings.TrimSpace(list), nick)
}

// waitISON waits up to 20 s for nick to be on the server (want) or gone.
func waitISON(t *testing.T, u *irctest.Client, nick string, want bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for ison(u, nick) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s on the server: want %v", nick, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPuppets: a CLI user who is online appears on IRC as a nick of its
// own (a puppet). An IRC user's /msg to it reaches the CLI user, with no
// bot command; the CLI user's message arrives from the puppet's nick; the
// puppet quits when the CLI user goes offline, and comes back when it is
// online again.
func TestPuppets(t *testing.T) {
	t.Parallel()
	s := startPuppets(t)
	tag := testenv.Tag()
	an, cn := "al"+tag, "cli"+tag
	alice := s.join(t, an)
	alice.Send("PRIVMSG " + s.bot + " :register")
	alice.WaitFrom(s.bot, "NOTICE", "Registered")
	aid, _ := bridge.NickToID(an, bridge.RFC1459)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	carol := s.cliUser(ctx, t, cn, false)
	if ison(alice, cn) {
		t.Fatalf("%s on IRC before going online", cn)
	}
	if err := carol.GoOnline(ctx); err != nil {
		t.Fatal(err)
	}
	waitISON(t, alice, cn, true)
	// An IRC user in the channel gets no puppet.
	alice.Send("PRIVMSG " + s.bot + " :who")
	alice.WaitFrom(s.bot, "NOTICE", "Online (2)")

	alice.Send("PRIVMSG " + cn + " :hello carol, no bot command")
	got := make(chan protocol.Message, 10)
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	go func() {
		_ = carol.FollowMessages(rctx, func(m protocol.Message) error { got <- m; return nil })
	}()
	select {
	case m := <-got:
		if m.From != aid || m.Text != "hello carol, no bot command" {
			t.Fatalf("carol got %+v", m)
		}
	case <-ctx.Done():
		t.Fatal("carol got nothing")
	}

	if err := carol.SendMessage(ctx, aid, "hi alice, from the cli"); err != nil {
		t.Fatal(err)
	}
	l := alice.Wait(20*time.Second, func(l string) bool { return strings.Contains(l, "hi alice, from the cli") })
	if !strings.HasPrefix(strings.ToLower(l), ":"+cn+"!") || !strings.Contains(l, " PRIVMSG "+an+" :hi alice, from the cli") {
		t.Fatalf("alice got %q, want it from %s", l, cn)
	}

	// A terminal escape from the CLI reaches IRC escaped, as through the bot.
	if err := carol.SendMessage(ctx, aid, "\x1b[31mred\x1b[0m and \x01ACTION\x01"); err != nil {
		t.Fatal(err)
	}
	l = alice.Wait(20*time.Second, func(l string) bool { return strings.Contains(l, "red") })
	if strings.ContainsAny(l, "\x1b\x01") {
		t.Fatalf("alice got control bytes: %q", l)
	}

	carol.GoOffline()
	waitISON(t, alice, cn, false)
	alice.Send("PRIVMSG " + cn + " :still there?")
	alice.Wait(10*time.Second, func(l string) bool { return strings.Contains(l, " 401 ") })
	if err := carol.GoOnline(ctx); err != nil {
		t.Fatal(err)
	}
	waitISON(t, alice, cn, true)
}

// BenchmarkPuppets measures what each puppet costs the bridge's process:
// goroutines and Go heap per puppet (50 CLI users online), and the time
// until all are on the server. The floor, in the same run: the same
// number of bare girc clients connected to the same server.
func BenchmarkPuppets(b *testing.B) {
	const n = 50
	users, bots := testenv.IRC(b)
	tag := testenv.Tag()

	// Floor: bare girc clients.
	var bare []*girc.Client
	var ups []chan struct{}
	host, port := splitAddr(b, bots)
	for i := 0; i < n; i++ { // at once, as the puppets connect
		c := girc.New(girc.Config{Server: host, Port: port, Nick: fmt.Sprintf("f%s%d", tag, i), User: "floor",
			AllowFlood: true, PingDelay: 30 * time.Second})
		up := make(chan struct{})
		c.Handlers.Add(girc.CONNECTED, func(*girc.Client, girc.Event) { close(up) })
		go func() { _ = bridge.ConnectLikeTheBridge(c) }()
		bare, ups = append(bare, c), append(ups, up)
	}
	for _, up := range ups {
		<-up
	}
	g1, h1 := settle()
	for _, c := range bare {
		c.Close()
	}
	// The cost is what closing them gives back: what the run before left
	// to collect is gone by then.
	g0, h0 := settle()
	b.ReportMetric(float64(g1-g0)/n, "floor-goroutines/conn")
	b.ReportMetric(float64(h1-h0)/n/1024, "floor-heap-KB/conn")

	s := launch(b, &setup{}, bots, users, func(c *bridge.Config) { c.Puppets = true })
	watcher := irctest.Dial(b, users, "w"+tag)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ids := make([]string, n)
	errs := make(chan error, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("p%s%d", tag, i)
		go func(id string) {
			w, err := client.New(id, client.Config{ZooKeeper: s.env.ZooKeeper, Kafka: s.kafka})
			if err == nil {
				_, err = w.Register(ctx)
				w.Close()
			}
			errs <- err
		}(ids[i])
	}
	for range ids {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	// The users come online as CLI users would, their /online nodes in
	// one session of the benchmark's: the process's cost is the puppets'.
	zc := s.env.Conn(b)
	start := time.Now()
	for _, id := range ids {
		if _, err := zc.Create(s.env.Path("/online/"+id), []byte(`{"via":"cli"}`), zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
			b.Fatal(err)
		}
	}
	for _, id := range ids {
		deadline := time.Now().Add(60 * time.Second)
		for !ison(watcher, id) {
			if time.Now().After(deadline) {
				b.Fatalf("puppet %s not on the server", id)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	took := time.Since(start)
	g3, h3 := settle()
	for _, id := range ids {
		if err := zc.Delete(s.env.Path("/online/"+id), -1); err != nil {
			b.Fatal(err)
		}
	}
	for _, id := range ids {
		deadline := time.Now().Add(60 * time.Second)
		for ison(watcher, id) {
			if time.Now().After(deadline) {
				b.Fatalf("puppet %s still on the server", id)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	g2, h2 := settle()
	b.ReportMetric(float64(took.Milliseconds()), "all-on-irc-ms")
	b.ReportMetric(float64(g3-g2)/n, "goroutines/puppet")
	b.ReportMetric(float64(h3-h2)/n/1024, "heap-KB/puppet")
}

// settle collects garbage and returns the goroutines and the heap in use.
func settle() (int, int64) {
	time.Sleep(500 * time.Millisecond)
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return runtime.NumGoroutine(), int64(m.HeapAlloc)
}

func splitAddr(tb testing.TB, addr string) (string, int) {
	host, port, ok := strings.Cut(addr, ":")
	if !ok {
		tb.Fatalf("address %q", addr)
	}
	var p int
	if _, err := fmt.Sscanf(port, "%d", &p); err != nil {
		tb.Fatal(err)
	}
	return host, p
}
