package bridge_test

// Benchmarks of the IRC bridge against the real servers (ZooKeeper, Kafka,
// InspIRCd); doc/scaling.md ("IRC bridge") has the numbers and how to
// run them, e.g.
//
//	go test -run '^$' -bench 'IRCDirectFloor|BridgeLatency' -benchtime 10s -timeout 30m ./bridge/
//	go test -run '^$' -bench BridgeThroughput -benchtime 10s -timeout 30m ./bridge/
//	go test -run '^$' -bench BridgeMemory -benchtime 1x -timeout 30m ./bridge/
//
// Load: the users who send and the ones they send to are raw IRC clients
// on the flood-exempt bot port (testenv.IRC's second address), in the
// floor and through the bridge alike: 1,000 lines a second from the five
// senders of BenchmarkBridgeLatency are 200 lines a second each, ten times
// the users' class limit (a burst of 50, then 20 lines a second). Senders
// only send and receivers only receive: InspIRCd leaves Nagle's algorithm
// on for its clients (no TCP_NODELAY), and a connection that receives a
// line and sends one of its own shortly after makes Linux delay its ACKs
// to piggyback them, which locks the server's next line to it behind the
// client's next write (a client in a ring at 1,000 lines a second saw
// every line about 1 ms late). The idle users, who only fill the channel,
// are on the users' port. Everything is set up once per benchmark
// function; the timed loops (b.Loop) only send and receive.
//
// The bridge runs in the benchmark's process with its own kafka.Clients
// and Rate: -1, as the bridge tests run it. The manager and the idle users
// run in child processes (the test binary again, TestBridgeBenchHelper), so
// that the benchmark's heap and RSS are the bridge's and the CPU profile
// shows the bridge and the measuring clients only.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/bridge"
	"github.com/zkchat/zkchat/internal/irctest"
	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/kafka"
	"github.com/zkchat/zkchat/manager"
	"github.com/zkchat/zkchat/protocol"
)

const (
	// bbOpTimeout bounds single waits: a hang fails the benchmark with what
	// it waited for.
	bbOpTimeout = 30 * time.Second
	// bbPairs is how many users send, and how many receive, in the latency
	// benchmarks: sender i sends to receiver i.
	bbPairs = 5
	// bbDialParallel is how many IRC logins run at once; InspIRCd
	// registers new clients in a once-a-second pass.
	bbDialParallel = 100
	// bbOnlineTimeout bounds the wait for users to come online.
	bbOnlineTimeout = 4 * time.Minute
	// bbTPPairs and bbTPWindow: BenchmarkBridgeThroughput's senders (and
	// receivers) and how many messages each sender keeps in flight: well
	// below the bridge's queue of 64 commands a user, so no command is
	// refused.
	bbTPPairs  = 100
	bbTPWindow = 16
)

// bbRates are the offered loads of the latency benchmarks, messages a second.
var bbRates = []int{100, 1000}

// bbOnlineCounts are the channel sizes (online users, senders and receivers
// included) of BenchmarkBridgeLatency.
var bbOnlineCounts = []int{10, 100, 1000}

// bbLogger shows warnings and errors only: the bridge logs a line per user
// going online.
func bbLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// ---------------------------------------------------------------------------
// The benchmarks' IRC users: irctest clients that keep no lines
// (irctest.Options.NoHistory). 1,000 users in one channel read about half
// a million JOIN lines, so a benchmark's client must not grow with the
// lines it reads: each line goes to a handler, with the time it was read.

type bbConn struct {
	*irctest.Client
	id string // the zkchat id of Nick
}

// bbDial connects nick to addr and waits until the server has welcomed it.
func bbDial(addr, nick string) (*bbConn, error) {
	id, err := bridge.NickToID(nick, bridge.RFC1459)
	if err != nil {
		return nil, err
	}
	c, err := irctest.Connect(addr, nick, irctest.Options{NoHistory: true, Welcome: bbOpTimeout})
	if err != nil {
		return nil, err
	}
	return &bbConn{Client: c, id: id}, nil
}

// expect installs a handler that hands over the first line that matches.
func (u *bbConn) expect(match func(string) bool) <-chan string {
	ch := make(chan string, 1)
	var once sync.Once
	u.Handle(func(l string, _ time.Time) {
		if match(l) {
			once.Do(func() { ch <- l })
		}
	})
	return ch
}

// bbFrom reports whether line comes from nick.
func bbFrom(line, nick string) bool {
	return len(line) > len(nick)+2 && line[0] == ':' && line[len(nick)+1] == '!' &&
		strings.EqualFold(line[1:len(nick)+1], nick)
}

// bbRegistered matches the bot's answer to a successful register.
func bbRegistered(bot string) func(string) bool {
	return func(l string) bool {
		return bbFrom(l, bot) && strings.Contains(l, " NOTICE ") &&
			(strings.Contains(l, ":Registered ") || strings.Contains(l, " is registered already"))
	}
}

// bbDialAll connects nicks, bbDialParallel at a time.
func bbDialAll(addr string, nicks []string) ([]*bbConn, error) {
	conns := make([]*bbConn, len(nicks))
	errs := make([]error, len(nicks))
	sem := make(chan struct{}, bbDialParallel)
	var wg sync.WaitGroup
	for i, nick := range nicks {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			conns[i], errs[i] = bbDial(addr, nick)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		return nil, err
	}
	return conns, nil
}

// bbJoinRegister has every conn join channel and register with bot, all at
// once, and waits for the bot's answers. It returns the nicks that got no
// answer, with what they got instead.
func bbJoinRegister(conns []*bbConn, bot, channel string, timeout time.Duration) []string {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	for _, c := range conns {
		wg.Go(func() {
			got := c.expect(bbRegistered(bot))
			_ = c.Write("JOIN " + channel)
			_ = c.Write("PRIVMSG " + bot + " :register")
			select {
			case <-got:
			case <-time.After(timeout):
				mu.Lock()
				failed = append(failed, c.Nick)
				mu.Unlock()
			}
			c.Handle(nil)
		})
	}
	wg.Wait()
	return failed
}

// ---------------------------------------------------------------------------
// Child processes: the manager and the idle users.

const bbHelperEnv = "ZKCHAT_BRIDGE_BENCH_HELPER"

// TestBridgeBenchHelper is not a test: the bridge benchmarks run the test
// binary again with ZKCHAT_BRIDGE_BENCH_HELPER set, to have the manager
// ("manager") or the idle IRC users ("users") in a process of their own.
// It prints BB-READY when ready and runs until its standard input closes.
func TestBridgeBenchHelper(t *testing.T) {
	switch mode := os.Getenv(bbHelperEnv); mode {
	case "":
		t.Skip("helper process of the bridge benchmarks (bench_test.go)")
	case "manager":
		bbHelperManager(t)
	case "users":
		bbHelperUsers(t)
	default:
		t.Fatalf("%s=%q: want manager or users", bbHelperEnv, mode)
	}
}

func bbHelperManager(t *testing.T) {
	m, err := manager.New(manager.Config{ZooKeeper: os.Getenv("BB_ZOOKEEPER"), Kafka: os.Getenv("BB_KAFKA"),
		Topics: protocol.Topics{Prefix: os.Getenv("BB_PREFIX")}, Name: "bench", Logger: bbLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	deadline := time.Now().Add(bbOpTimeout)
	for !m.Leading() {
		if time.Now().After(deadline) {
			t.Fatalf("manager not leading after %s", bbOpTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	fmt.Println("BB-READY")
	_, _ = io.Copy(io.Discard, os.Stdin)
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
	m.Close()
}

func bbHelperUsers(t *testing.T) {
	first, _ := strconv.Atoi(os.Getenv("BB_FIRST"))
	n, _ := strconv.Atoi(os.Getenv("BB_COUNT"))
	nicks := bbIdleNicks(os.Getenv("BB_NICK_PREFIX"), first, n)
	bot, channel := os.Getenv("BB_BOT"), os.Getenv("BB_CHANNEL")
	t0 := time.Now()
	conns, err := bbDialAll(os.Getenv("BB_IRC"), nicks)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("BB-LOG %d IRC logins in %.1f s\n", n, time.Since(t0).Seconds())
	t1 := time.Now()
	for _, nick := range bbJoinRegister(conns, bot, channel, 2*time.Minute) {
		fmt.Printf("BB-WARN %s: no answer to register from %s\n", nick, bot)
	}
	fmt.Printf("BB-LOG %d users joined and registered in %.1f s\n", n, time.Since(t1).Seconds())
	fmt.Println("BB-READY")
	_, _ = io.Copy(io.Discard, os.Stdin)
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(c.Close)
	}
	wg.Wait()
}

// bbIdleNicks are the nicks of the idle users first..first+n-1.
func bbIdleNicks(prefix string, first, n int) []string {
	nicks := make([]string, n)
	for i := range nicks {
		nicks[i] = fmt.Sprintf("%s%04d", prefix, first+i)
	}
	return nicks
}

// bbHelper runs the test binary as TestBridgeBenchHelper in mode with env,
// until tb ends, and waits up to timeout for it to be ready; its output goes
// to tb's log. Failures to start it fail cur, the running (sub-)benchmark.
func bbHelper(tb, cur testing.TB, mode string, timeout time.Duration, env ...string) {
	cur.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBridgeBenchHelper$", "-test.count=1", "-test.timeout=0")
	cmd.Env = append(append(os.Environ(), bbHelperEnv+"="+mode), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		cur.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cur.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cur.Fatalf("helper %s: %v", mode, err)
	}
	ready, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			switch l := sc.Text(); {
			case l == "BB-READY":
				close(ready)
			case l == "PASS":
			default:
				tb.Logf("helper %s: %s", mode, l)
			}
		}
		_ = cmd.Wait()
	}()
	tb.Cleanup(func() {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(time.Minute):
			tb.Errorf("helper %s (pid %d) did not exit a minute after its input closed; killing it", mode, cmd.Process.Pid)
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	select {
	case <-ready:
	case <-exited:
		cur.Fatalf("helper %s exited before it was ready (%v)", mode, cmd.ProcessState)
	case <-time.After(timeout):
		cur.Fatalf("helper %s not ready after %s", mode, timeout)
	}
}

// ---------------------------------------------------------------------------
// The bridge under test.

type bbSetup struct {
	tb           testing.TB // the benchmark function: cleanups go here
	env          *testenv.Env
	users, bots  string
	tag          string
	bot, channel string
	zk           *zk.Conn
	br           *bridge.Bridge
	idle         int // idle users started
}

// bbStart runs a manager (child process) and a bridge (Rate -1, on the bot
// port) on a new channel, and waits until the bridge has joined it.
func bbStart(b *testing.B) *bbSetup {
	b.Helper()
	env := testenv.New(b)
	users, bots := testenv.IRC(b)
	tag := testenv.Tag()
	s := &bbSetup{tb: b, env: env, users: users, bots: bots, tag: tag, bot: "zb" + tag, channel: "#b" + tag}
	s.zk = env.Conn(b)
	bbHelper(b, b, "manager", time.Minute,
		"BB_ZOOKEEPER="+env.ZooKeeper, "BB_KAFKA="+env.Kafka, "BB_PREFIX="+env.Prefix)
	k, err := kafka.New(kafka.Config{Brokers: env.Kafka,
		Topics: protocol.Topics{Prefix: env.Prefix}, Logger: bbLogger()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(k.Close)
	s.br, err = bridge.New(bridge.Config{Server: bots, Nick: s.bot, Channel: s.channel,
		ZooKeeper: env.ZooKeeper, Kafka: k, Rate: -1, Logger: bbLogger()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.br.Run(ctx); close(done) }()
	b.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(2 * time.Minute):
			b.Errorf("bridge did not stop within 2 minutes")
		}
	})
	ch, ok := s.br.Synced()
	if !ok {
		select {
		case <-ch:
		case <-time.After(bbOpTimeout):
			b.Fatal("bridge did not join its channel")
		}
	}
	return s
}

// pairs connects n senders and n receivers to addr, has them join the
// channel and register, and waits until they are online.
func (s *bbSetup) pairs(b *testing.B, addr string, n int) (senders, receivers []*bbConn) {
	b.Helper()
	senders, receivers = bbDialPairs(b, s.tb, addr, "b"+s.tag, n)
	conns := slices.Concat(senders, receivers)
	if failed := bbJoinRegister(conns, s.bot, s.channel, time.Minute); len(failed) > 0 {
		b.Fatalf("no answer to register for %v", failed)
	}
	ids := make([]string, len(conns))
	for i, c := range conns {
		ids[i] = c.id
	}
	if missing := s.waitOnline(b, ids); len(missing) > 0 {
		b.Fatalf("%d senders and receivers not online after %s: %v", len(missing), bbOnlineTimeout, missing)
	}
	return senders, receivers
}

// bbDialPairs connects n senders (<prefix>s<i>) and n receivers
// (<prefix>r<i>) to addr, until tb ends.
func bbDialPairs(b *testing.B, tb testing.TB, addr, prefix string, n int) (senders, receivers []*bbConn) {
	b.Helper()
	nicks := make([]string, 2*n)
	for i := range n {
		nicks[i] = fmt.Sprintf("%ss%03d", prefix, i)
		nicks[n+i] = fmt.Sprintf("%sr%03d", prefix, i)
	}
	conns, err := bbDialAll(addr, nicks)
	if err != nil {
		b.Fatal(err)
	}
	tb.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	return conns[:n], conns[n:]
}

// idleUpTo starts idle users in a child process until there are n: they
// join the channel and register; it waits until they are online. It
// returns how long that took, and the users that did not come online.
func (s *bbSetup) idleUpTo(b *testing.B, n int) (time.Duration, []string) {
	b.Helper()
	if n <= s.idle {
		return 0, nil
	}
	prefix := "i" + s.tag + "n"
	first, count := s.idle, n-s.idle
	t0 := time.Now()
	bbHelper(s.tb, b, "users", bbOnlineTimeout,
		"BB_IRC="+s.users, "BB_BOT="+s.bot, "BB_CHANNEL="+s.channel, "BB_NICK_PREFIX="+prefix,
		"BB_FIRST="+strconv.Itoa(first), "BB_COUNT="+strconv.Itoa(count))
	s.idle = n
	ids := make([]string, count)
	for i, nick := range bbIdleNicks(prefix, first, count) {
		ids[i], _ = bridge.NickToID(nick, bridge.RFC1459)
	}
	missing := s.waitOnline(b, ids)
	return time.Since(t0), missing
}

// waitOnline waits until every id is in the chroot's /online, and returns
// those that are not after bbOnlineTimeout.
func (s *bbSetup) waitOnline(b *testing.B, ids []string) []string {
	b.Helper()
	deadline := time.Now().Add(bbOnlineTimeout)
	for {
		kids, _, err := s.zk.Children(s.env.Path("/online"))
		if err != nil && !errors.Is(err, zk.ErrNoNode) {
			b.Fatalf("children of /online: %v", err)
		}
		on := make(map[string]bool, len(kids))
		for _, k := range kids {
			on[k] = true
		}
		var missing []string
		for _, id := range ids {
			if !on[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			return missing
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (s *bbSetup) onlineCount(b *testing.B) int {
	kids, _, err := s.zk.Children(s.env.Path("/online"))
	if err != nil {
		b.Fatalf("children of /online: %v", err)
	}
	return len(kids)
}

// ---------------------------------------------------------------------------
// Measuring. A message's text is "bm<tag> <seq> <ns> <from>": ns is the
// time of the sender's write since the recorder's base (monotonic clock),
// from the sender's index.

type bbRecorder struct {
	base   time.Time
	marker string // "bm<tag> "
	bot    string // the bridge's nick; "" for the floor

	mu      sync.Mutex
	seen    map[int64]bool
	lat     []time.Duration
	dups    int
	notices []string
	nNotice int
	arrived chan int // if not nil: the sender index of every arrival (never blocks)
}

func newBBRecorder(bot string) *bbRecorder {
	return &bbRecorder{base: time.Now(), marker: "bm" + testenv.Tag() + " ", bot: bot,
		seen: map[int64]bool{}}
}

func (r *bbRecorder) text(seq int64, from int) string {
	return fmt.Sprintf("%s%d %d %d", r.marker, seq, time.Since(r.base).Nanoseconds(), from)
}

// handler is every sender's and receiver's handler: arrivals and the bot's
// notices.
func (r *bbRecorder) handler() irctest.LineHandler {
	return func(line string, at time.Time) {
		i := strings.Index(line, r.marker)
		if i < 0 {
			if r.bot != "" && bbFrom(line, r.bot) && strings.Contains(line, " NOTICE ") {
				r.mu.Lock()
				r.nNotice++
				if len(r.notices) < 5 {
					r.notices = append(r.notices, line)
				}
				r.mu.Unlock()
			}
			return
		}
		f := strings.Fields(line[i+len(r.marker):])
		if len(f) < 3 {
			return
		}
		seq, err1 := strconv.ParseInt(f[0], 10, 64)
		ns, err2 := strconv.ParseInt(f[1], 10, 64)
		from, err3 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil || err3 != nil {
			return
		}
		d := at.Sub(r.base) - time.Duration(ns)
		r.mu.Lock()
		if r.seen[seq] {
			r.dups++
			r.mu.Unlock()
			return
		}
		r.seen[seq] = true
		r.lat = append(r.lat, d)
		r.mu.Unlock()
		select {
		case r.arrived <- from:
		default:
		}
	}
}

func (r *bbRecorder) unique() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// drain waits until sent messages have arrived, or nothing arrived for
// quiet.
func (r *bbRecorder) drain(sent int, quiet time.Duration) {
	last, lastChange := r.unique(), time.Now()
	for last < sent && time.Since(lastChange) < quiet {
		time.Sleep(10 * time.Millisecond)
		if n := r.unique(); n != last {
			last, lastChange = n, time.Now()
		}
	}
}

// report reports p50, p99 and max latency of the arrivals, and losses,
// duplicates and the bot's notices (each one a refused or failed command).
func (r *bbRecorder) report(b *testing.B, sent int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	testenv.ReportLatency(b, "", r.lat)
	b.ReportMetric(float64(sent), "sent")
	b.ReportMetric(float64(sent-len(r.seen)), "lost")
	b.ReportMetric(float64(r.dups), "dups")
	if r.bot != "" {
		b.ReportMetric(float64(r.nNotice), "notices")
	}
	if sent != len(r.seen) || r.dups > 0 || r.nNotice > 0 {
		b.Logf("%d sent, %d arrived, %d duplicates, %d notices from the bot; first notices: %q",
			sent, len(r.seen), r.dups, r.nNotice, r.notices)
	}
}

// bbLine is what the sender writes for a message of text to the user to.
type bbLine func(to *bbConn, text string) string

func bbDirect(to *bbConn, text string) string { return "PRIVMSG " + to.Nick + " :" + text }

func (s *bbSetup) viaBot(to *bbConn, text string) string {
	return "PRIVMSG " + s.bot + " :msg " + to.Nick + " " + text
}

// bbWarm sends three messages from every sender to its receiver, one
// every 10 ms, and waits for them: first deliveries, connections and caches
// are not what is measured.
func bbWarm(b *testing.B, senders, receivers []*bbConn, bot string, line bbLine) {
	b.Helper()
	r := newBBRecorder(bot)
	for _, c := range slices.Concat(senders, receivers) {
		c.Handle(r.handler())
	}
	n := 3 * len(senders)
	for i := range n {
		k := i % len(senders)
		_ = senders[k].Write(line(receivers[k], r.text(int64(i), k)))
		time.Sleep(10 * time.Millisecond)
	}
	r.drain(n, bbOpTimeout)
	if got := r.unique(); got != n {
		b.Fatalf("warm-up: %d of %d messages arrived (notices: %q)", got, n, r.notices)
	}
}

// bbOffer is an open-loop load: one message every 1/rate s, from the
// senders in turn (sender k to receiver k), for as long as b.Loop runs; then
// it waits for the messages in flight and reports their latency, from the
// sender's write to the receiver's read.
func bbOffer(b *testing.B, senders, receivers []*bbConn, bot string, rate int, line bbLine) {
	bbWarm(b, senders, receivers, bot, line)
	r := newBBRecorder(bot)
	for _, c := range slices.Concat(senders, receivers) {
		c.Handle(r.handler())
	}
	interval := time.Second / time.Duration(rate)
	n := len(senders)
	var (
		i       int
		lateMax time.Duration
		start   time.Time
		cpu0    bbCPU
	)
	for b.Loop() {
		if i == 0 {
			start, cpu0 = time.Now(), bbCPUNow()
		}
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		} else if -d > lateMax {
			lateMax = -d
		}
		k := i % n
		if err := senders[k].Write(line(receivers[k], r.text(int64(i), k))); err != nil {
			b.Fatalf("send %d: %v", i, err)
		}
		i++
	}
	sendTime := time.Since(start)
	cpu1 := bbCPUNow()
	r.drain(i, 15*time.Second)
	cpu1.report(b, cpu0)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(i)/sendTime.Seconds(), "offered-msgs/s")
	b.ReportMetric(testenv.MS(lateMax), "gen-late-max-ms")
	r.report(b, i)
}

// ---------------------------------------------------------------------------
// The benchmarks.

// BenchmarkIRCDirectFloor is the floor of BenchmarkBridgeLatency: five raw
// IRC users on the bot port send PRIVMSGs straight to five others (sender k
// to receiver k), at 100 and 1,000 messages a second in all; latency from
// the sender's write to the receiver's read.
func BenchmarkIRCDirectFloor(b *testing.B) {
	_, bots := testenv.IRC(b)
	senders, receivers := bbDialPairs(b, b, bots, "f"+testenv.Tag(), bbPairs)
	for _, rate := range bbRates {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			bbOffer(b, senders, receivers, "", rate, bbDirect)
		})
	}
}

// BenchmarkBridgeLatency: the same five senders and five receivers, all of
// them zkchat users of one bridge; a sender writes "PRIVMSG <bot> :msg
// <receiver> <text>", and the latency runs until "<sender> <text>" from the
// bot arrives at the receiver. At 100 and 1,000 messages a second, with
// 10, 100 and 1,000 users online in the channel (the ten and idle users,
// who join, register and then do nothing).
func BenchmarkBridgeLatency(b *testing.B) {
	s := bbStart(b)
	senders, receivers := s.pairs(b, s.bots, bbPairs)
	for _, online := range bbOnlineCounts {
		b.Run(fmt.Sprintf("online=%d", online), func(b *testing.B) {
			took, missing := s.idleUpTo(b, online-2*bbPairs)
			if len(missing) > 0 {
				b.Logf("BUG? %d idle users not online after %s: %v", len(missing), bbOnlineTimeout, missing[:min(len(missing), 20)])
			}
			if took > 0 {
				b.Logf("%d idle users online in %.1f s", online-2*bbPairs, took.Seconds())
			}
			on := s.onlineCount(b)
			for _, rate := range bbRates {
				b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
					bbOffer(b, senders, receivers, s.bot, rate, s.viaBot)
					b.ReportMetric(float64(on), "online")
				})
			}
		})
	}
}

// BenchmarkBridgeThroughput is what one bridge delivers a second: 100
// senders on the bot port, each sending to its own receiver through the bot
// and keeping 16 messages in flight (a closed loop: an arrival lets its
// sender send the next one), which offers far more than the bridge can
// take. After 3 s of ramp-up, one b.Loop iteration is one delivered
// message, so ns/op is the time per delivered message and msgs/s the
// throughput; p50/p99 are latencies under that saturation (mostly queueing:
// 1,600 messages in flight). It also reports the CPU the machine, this
// process and the servers used meanwhile (percent of one core; the machine
// has runtime.NumCPU cores).
func BenchmarkBridgeThroughput(b *testing.B) {
	s := bbStart(b)
	senders, receivers := s.pairs(b, s.bots, bbTPPairs)
	bbWarm(b, senders, receivers, s.bot, s.viaBot)
	r := newBBRecorder(s.bot)
	windows := make([]chan struct{}, len(senders))
	for i := range windows {
		windows[i] = make(chan struct{}, bbTPWindow)
	}
	r.arrived = make(chan int, 1<<16)
	for _, c := range slices.Concat(senders, receivers) {
		c.Handle(r.handler())
	}
	var seq atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, from := range senders {
		to := receivers[i]
		wg.Go(func() {
			for {
				select {
				case windows[i] <- struct{}{}:
				case <-stop:
					return
				}
				n := seq.Add(1) - 1
				if err := from.Write(s.viaBot(to, r.text(n, i))); err != nil {
					return
				}
			}
		})
	}
	// An arrival frees a slot of its sender's window.
	counted := make(chan struct{}, 1<<20)
	wg.Go(func() {
		for {
			select {
			case from := <-r.arrived:
				select {
				case <-windows[from]:
				default:
				}
				select {
				case counted <- struct{}{}:
				default:
				}
			case <-stop:
				return
			}
		}
	})
	time.Sleep(3 * time.Second) // ramp up
	for len(counted) > 0 {
		<-counted
	}
	cpu0 := bbCPUNow()
	timer := time.NewTimer(bbOpTimeout)
	delivered := 0
	for b.Loop() {
		select {
		case <-counted:
		case <-timer.C:
			b.Fatalf("no message delivered for %s (%d sent, %d arrived)", bbOpTimeout, seq.Load(), r.unique())
		}
		timer.Reset(bbOpTimeout)
		delivered++
	}
	cpu1 := bbCPUNow()
	close(stop)
	wg.Wait()
	sent := int(seq.Load())
	r.drain(sent, 15*time.Second)
	testenv.ReportRate(b, "msgs/s", delivered)
	r.report(b, sent)
	cpu1.report(b, cpu0)
}

// BenchmarkBridgeMemory is the bridge's memory with 1,000 users online: the
// benchmark process's Go heap in use (runtime.MemStats.HeapInuse, after
// runtime.GC) and its resident set (VmRSS) with the bridge synced and no
// users, and with 1,000 idle users (another process) joined, registered and
// online: 5 s after the last came online (rss-MB), 30 s after
// (rss-30s-MB), and after debug.FreeOSMemory (rss-freed-MB). The manager
// and the users run in child processes, so the process holds only the
// bridge, its Kafka clients (librdkafka: C memory, in the RSS but not the
// Go heap) and the benchmark's bookkeeping. Run it with -benchtime 1x;
// ZKCHAT_BENCH_HEAP_PROFILE=<file> writes a heap profile with the users
// online.
func BenchmarkBridgeMemory(b *testing.B) {
	const users = 1000
	s := bbStart(b)
	done := false
	for b.Loop() {
		if done {
			continue
		}
		done = true
		before := bbReadMem()
		took, missing := s.idleUpTo(b, users)
		if len(missing) > 0 {
			b.Logf("BUG? %d users not online after %s: %v", len(missing), bbOnlineTimeout, missing[:min(len(missing), 20)])
		}
		on := s.onlineCount(b)
		time.Sleep(5 * time.Second) // sessions settle: pings, the bot's notices
		after := bbReadMem()
		if f := os.Getenv("ZKCHAT_BENCH_HEAP_PROFILE"); f != "" {
			bbWriteHeapProfile(b, f)
		}
		// Go gives freed memory back to the OS gradually (the background
		// scavenger); what a long-running bridge keeps is between these.
		// Meanwhile: the CPU that 1,000 idle online users cost.
		cpu0 := bbCPUNow()
		time.Sleep(25 * time.Second)
		cpu1 := bbCPUNow()
		rssSettled := bbRSS()
		debug.FreeOSMemory()
		rssFreed := bbRSS()
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(float64(on), "online")
		b.ReportMetric(took.Seconds(), "online-s")
		b.ReportMetric(bbMB(before.HeapInuse), "heap0-MB")
		b.ReportMetric(bbMB(after.HeapInuse), "heap-MB")
		b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/1024/float64(max(on, 1)), "heap-KB/user")
		b.ReportMetric(bbMB(before.StackInuse), "stack0-MB")
		b.ReportMetric(bbMB(after.StackInuse), "stack-MB")
		b.ReportMetric(bbMB(before.Sys), "gosys0-MB")
		b.ReportMetric(bbMB(after.Sys), "gosys-MB")
		b.ReportMetric(bbMB(before.rss), "rss0-MB")
		b.ReportMetric(bbMB(after.rss), "rss-MB")
		b.ReportMetric(bbMB(rssSettled), "rss-30s-MB")
		b.ReportMetric(bbMB(rssFreed), "rss-freed-MB")
		b.ReportMetric(float64(before.goroutines), "goroutines0")
		b.ReportMetric(float64(after.goroutines), "goroutines")
		cpu1.reportAs(b, "idle-", cpu0)
	}
}

// ---------------------------------------------------------------------------
// Memory and CPU readings.

func bbWriteHeapProfile(b *testing.B, file string) {
	f, err := os.Create(file)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

type bbMem struct {
	runtime.MemStats
	rss        uint64
	goroutines int
}

func bbReadMem() bbMem {
	runtime.GC()
	var m bbMem
	runtime.ReadMemStats(&m.MemStats)
	m.rss = bbRSS()
	m.goroutines = runtime.NumGoroutine()
	return m
}

// bbRSS is VmRSS of this process, in bytes.
func bbRSS() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseUint(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

func bbMB(n uint64) float64 { return float64(n) / (1 << 20) }

// bbCPU is CPU time used so far (clock ticks, 100 a second on Linux): by
// the machine, this process, the server processes and the benchmark's
// helper processes, found by their command lines. A process that exits
// between two readings makes its group's figure wrong; the servers do not.
type bbCPU struct {
	at                                    time.Time
	machineBusy, machineAll               uint64
	self, inspircd, kafka, zooKp, helpers uint64
	librdkafka                            uint64 // this process's librdkafka threads (rdk:*)
}

func bbCPUNow() bbCPU {
	c := bbCPU{at: time.Now()}
	if data, err := os.ReadFile("/proc/stat"); err == nil {
		f := strings.Fields(strings.SplitN(string(data), "\n", 2)[0]) // cpu user nice system idle iowait irq softirq steal
		for i, v := range f[1:] {
			n, _ := strconv.ParseUint(v, 10, 64)
			if i < 8 {
				c.machineAll += n
				if i != 3 && i != 4 {
					c.machineBusy += n
				}
			}
		}
	}
	c.self = bbProcTicks("self")
	// librdkafka's threads (C, invisible to Go's CPU profile) name themselves rdk:<role>.
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, t := range tasks {
		if comm, err := os.ReadFile("/proc/self/task/" + t.Name() + "/comm"); err == nil && strings.HasPrefix(string(comm), "rdk:") {
			c.librdkafka += bbProcTicks("self/task/" + t.Name())
		}
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		switch cl := string(cmd); {
		case strings.Contains(cl, "inspircd") && strings.Contains(cl, ".data/inspircd/inspircd.conf"):
			c.inspircd += bbProcTicks(e.Name())
		case strings.Contains(cl, "kafka.Kafka"):
			c.kafka += bbProcTicks(e.Name())
		case strings.Contains(cl, "QuorumPeerMain") || strings.Contains(cl, "ZooKeeperServerMain"):
			c.zooKp += bbProcTicks(e.Name())
		case strings.Contains(cl, "-test.run=^TestBridgeBenchHelper$"):
			c.helpers += bbProcTicks(e.Name()) // ours, and other runs' of this benchmark
		}
	}
	return c
}

// bbProcTicks is utime+stime of /proc/<pid>/stat.
func bbProcTicks(pid string) uint64 {
	data, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // fields from 3 (state) on
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseUint(f[11], 10, 64)
	k, _ := strconv.ParseUint(f[12], 10, 64)
	return u + k
}

// report reports CPU use between c0 and c as percent of one core.
func (c bbCPU) report(b *testing.B, c0 bbCPU) { c.reportAs(b, "", c0) }

// reportAs is report with a prefix for the metrics' names.
func (c bbCPU) reportAs(b *testing.B, prefix string, c0 bbCPU) {
	sec := c.at.Sub(c0.at).Seconds()
	if sec <= 0 {
		return
	}
	pct := func(t1, t0 uint64) float64 {
		if t1 < t0 { // a process of the group exited
			return -1
		}
		return float64(t1-t0) / 100 / sec * 100
	}
	if all := c.machineAll - c0.machineAll; all > 0 {
		b.ReportMetric(float64(c.machineBusy-c0.machineBusy)/float64(all)*100*float64(runtime.NumCPU()), prefix+"cpu-machine-%")
	}
	b.ReportMetric(pct(c.self, c0.self), prefix+"cpu-bench-%")
	b.ReportMetric(pct(c.librdkafka, c0.librdkafka), prefix+"cpu-bench-rdk-%")
	b.ReportMetric(pct(c.inspircd, c0.inspircd), prefix+"cpu-inspircd-%")
	b.ReportMetric(pct(c.kafka, c0.kafka), prefix+"cpu-kafka-%")
	b.ReportMetric(pct(c.zooKp, c0.zooKp), prefix+"cpu-zookeeper-%")
	b.ReportMetric(pct(c.helpers, c0.helpers), prefix+"cpu-helpers-%")
}
