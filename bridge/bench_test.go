package bridge_test

// Benchmarks of the IRC bridge against the real servers (ZooKeeper, Kafka,
// InspIRCd); doc/scaling.md ("IRC bridge") has the numbers and how to
// run them, e.g.
//
//	go test -run '^$' -bench 'IRCDirectFloor|BridgeLatency' -benchtime 10s -timeout 30m ./bridge/
//	go test -run '^$' -bench BridgeThroughput -benchtime 10s -timeout 30m ./bridge/
//	go test -run '^$' -bench BridgeMemory -benchtime 1x -timeout 30m ./bridge/
//
// and at community scale (make bench-scale; the variables are under
// bbRates):
//
//	ZKCHAT_BENCH_RATES=1000 ZKCHAT_BENCH_ONLINE=10,1000,10000 go test -run '^$' -bench 'IRCDirectFloor|BridgeLatency' -benchtime 10s -timeout 60m ./bridge/
//	ZKCHAT_BENCH_MEMORY_ONLINE=1000,10000 go test -run '^$' -bench BridgeMemory -benchtime 1x -timeout 60m ./bridge/
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
// are on the users' port, held by helper processes (bbUsersPerHelper
// each), which log them in and then JOIN and register them at a steady
// rate (ZKCHAT_BENCH_JOIN_RATE); the channel has mode +u (bbAuditorium),
// so that they do not all receive each other's JOINs. Everything is set up
// once per benchmark function; the timed loops (b.Loop) only send and
// receive.
//
// The bridge runs in the benchmark's process with its own kafka.Clients
// and Rate: -1, as the bridge tests run it. The manager and the idle users
// run in child processes (the test binary again, TestBridgeBenchHelper), so
// that the benchmark's heap and RSS are the bridge's and the CPU profile
// shows the bridge and the measuring clients only.

import (
	"bufio"
	"cmp"
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
	"syscall"
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
	// registers new clients in a once-a-second pass (measured: 5,000 logins
	// 500 at a time took 10.4 s, 10,000 logins 1,000 at a time 10.8 s and
	// 3,000 at a time 4.7 s), so this is also about the logins a second.
	// bbIdleDialParallel is the same for each idle users' helper process.
	bbDialParallel     = 100
	bbIdleDialParallel = 250
	// bbUsersPerHelper is the most idle users one helper process holds: a
	// descriptor each, well below a default hard RLIMIT_NOFILE of 4096.
	bbUsersPerHelper = 2500
	// bbTPPairs and bbTPWindow: BenchmarkBridgeThroughput's senders (and
	// receivers) and how many messages each sender keeps in flight: well
	// below the bridge's queue of 64 commands a user, so no command is
	// refused.
	bbTPPairs  = 100
	bbTPWindow = 16
)

// The cells of the benchmarks, from the environment (comma-separated
// numbers); make bench-bridge uses the defaults, make bench-scale the
// community-scale cells:
//
//	ZKCHAT_BENCH_RATES          offered loads of IRCDirectFloor and BridgeLatency, msgs/s (100,1000)
//	ZKCHAT_BENCH_ONLINE         channel sizes of BridgeLatency, online users with the 10 measuring ones (10,100,1000)
//	ZKCHAT_BENCH_MEMORY_ONLINE  idle users online in BridgeMemory, one cell each (1000)
//	ZKCHAT_BENCH_JOIN_RATE      idle users' JOINs (and registers) a second, over all helpers (500)
//	ZKCHAT_BENCH_ONLINE_TIMEOUT the wait for idle users to come online after the last JOIN (4m + 20ms a user)
//	ZKCHAT_BENCH_AUDITORIUM     0: leave channel mode +u off (see bbAuditorium)
//	ZKCHAT_BENCH_HOPS           1: BridgeLatency also reports each hop of the path (bbHops; make bench-hops)
var (
	bbRates         = bbEnvInts("ZKCHAT_BENCH_RATES", 100, 1000)
	bbOnlineCounts  = bbEnvInts("ZKCHAT_BENCH_ONLINE", 10, 100, 1000)
	bbMemoryCounts  = bbEnvInts("ZKCHAT_BENCH_MEMORY_ONLINE", 1000)
	bbJoinRate      = bbEnvInts("ZKCHAT_BENCH_JOIN_RATE", 500)[0]
	bbAuditoriumOff = os.Getenv("ZKCHAT_BENCH_AUDITORIUM") == "0"
	bbHopsOn        = os.Getenv("ZKCHAT_BENCH_HOPS") == "1"
)

// bbEnvInts is the comma-separated positive numbers in the environment
// variable name, or def when it is unset. A bad value panics: a benchmark
// run with cells nobody asked for wastes many minutes.
func bbEnvInts(name string, def ...int) []int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			panic(fmt.Sprintf("%s=%q: want comma-separated positive numbers", name, v))
		}
		out = append(out, n)
	}
	return out
}

// bbOnlineTimeout bounds the wait for n idle users to come online, from
// their last JOIN: ZKCHAT_BENCH_ONLINE_TIMEOUT, else 4 minutes and 20 ms a
// user (7.3 minutes for 10,000).
func bbOnlineTimeout(n int) time.Duration {
	if v := os.Getenv("ZKCHAT_BENCH_ONLINE_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			panic(fmt.Sprintf("ZKCHAT_BENCH_ONLINE_TIMEOUT=%q: want a duration such as 6m", v))
		}
		return d
	}
	return 4*time.Minute + time.Duration(n)*20*time.Millisecond
}

// bbRaiseNofile raises this process's open-files limit (RLIMIT_NOFILE) to
// its hard limit and returns the limit in force. The bridge holds a
// descriptor per IRC, ZooKeeper and Kafka connection (until the shared
// session, a ZooKeeper session per online user: 10,000 online are 10,000
// descriptors), a helper one per idle user. Go's os package raises the soft
// limit at start on Linux already, but not everywhere, and a child gets the
// limit its parent started with; hence this call in both.
func bbRaiseNofile() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	if r.Cur < r.Max {
		want := r
		want.Cur = r.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
			r = want
		}
	}
	return r.Cur
}

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

// bbDialAllN connects nicks, parallel at a time.
func bbDialAllN(addr string, nicks []string, parallel int) ([]*bbConn, error) {
	conns := make([]*bbConn, len(nicks))
	errs := make([]error, len(nicks))
	sem := make(chan struct{}, parallel)
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

// bbHelperUsers holds BB_COUNT idle users: it logs them in
// (bbIdleDialParallel at a time) and prints BB-DIALED; on a line "join" on
// its input it has them JOIN the channel and register with the bot, one
// every 1/BB_JOIN_RATE s, prints BB-JOINED <unix ns of the last JOIN>,
// waits up to BB_ANSWER_TIMEOUT for the bot's answers and prints BB-READY.
func bbHelperUsers(t *testing.T) {
	limit := bbRaiseNofile()
	first, _ := strconv.Atoi(os.Getenv("BB_FIRST"))
	n, _ := strconv.Atoi(os.Getenv("BB_COUNT"))
	rate, _ := strconv.ParseFloat(os.Getenv("BB_JOIN_RATE"), 64)
	answerTimeout, _ := time.ParseDuration(os.Getenv("BB_ANSWER_TIMEOUT"))
	nicks := bbIdleNicks(os.Getenv("BB_NICK_PREFIX"), first, n)
	bot, channel := os.Getenv("BB_BOT"), os.Getenv("BB_CHANNEL")
	if uint64(n)+64 > limit {
		fmt.Printf("BB-WARN %d users but RLIMIT_NOFILE is %d\n", n, limit)
	}
	t0 := time.Now()
	conns, err := bbDialAllN(os.Getenv("BB_IRC"), nicks, bbIdleDialParallel)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Go(c.Close)
		}
		wg.Wait()
	}()
	fmt.Printf("BB-LOG %d IRC logins in %.1f s\n", n, time.Since(t0).Seconds())
	fmt.Println("BB-DIALED")
	in := bufio.NewReader(os.Stdin)
	if l, err := in.ReadString('\n'); err != nil || strings.TrimSpace(l) != "join" {
		return // the benchmark ended
	}
	answers := make([]<-chan string, len(conns))
	interval := time.Duration(float64(time.Second) / rate)
	t1 := time.Now()
	for i, c := range conns {
		if d := time.Until(t1.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		answers[i] = c.expect(bbRegistered(bot))
		_ = c.Write("JOIN "+channel, "PRIVMSG "+bot+" :register")
	}
	last := time.Now()
	fmt.Printf("BB-JOINED %d\n", last.UnixNano())
	fmt.Printf("BB-LOG %d JOINs in %.1f s (%.0f a second)\n", n, last.Sub(t1).Seconds(), float64(n)/max(last.Sub(t1).Seconds(), 1e-3))
	deadline := time.After(answerTimeout)
	var failed []string
	for i, ch := range answers {
		select {
		case <-ch:
			continue
		case <-deadline:
		}
		for k, c := range conns[i:] {
			select {
			case <-answers[i+k]:
			default:
				failed = append(failed, c.Nick)
			}
		}
		break
	}
	for _, c := range conns {
		c.Handle(nil)
	}
	if len(failed) > 0 {
		fmt.Printf("BB-WARN %d users without an answer to register from %s after %s, e.g. %v\n",
			len(failed), bot, answerTimeout, failed[:min(len(failed), 5)])
	}
	fmt.Printf("BB-LOG %d users registered %.1f s after their last JOIN\n", n-len(failed), time.Since(last).Seconds())
	fmt.Println("BB-READY")
	_, _ = io.Copy(io.Discard, in)
}

// bbIdleNicks are the nicks of the idle users first..first+n-1.
func bbIdleNicks(prefix string, first, n int) []string {
	nicks := make([]string, n)
	for i := range nicks {
		nicks[i] = fmt.Sprintf("%s%04d", prefix, first+i)
	}
	return nicks
}

// bbProc is a helper process: TestBridgeBenchHelper in the test binary.
type bbProc struct {
	mode   string
	stdin  io.WriteCloser
	marks  chan string // its BB-READY, BB-DIALED and BB-JOINED lines, in order
	exited chan struct{}
	state  *os.ProcessState // once exited is closed
}

// bbHelper runs the test binary as TestBridgeBenchHelper in mode with env,
// until tb ends, and waits up to timeout for it to be ready (BB-READY).
// Failures to start it fail cur, the running (sub-)benchmark.
func bbHelper(tb, cur testing.TB, mode string, timeout time.Duration, env ...string) {
	cur.Helper()
	bbHelperStart(tb, cur, mode, env...).await(cur, "BB-READY", timeout)
}

// bbHelperStart starts a helper that runs until tb ends (its input closes);
// its output other than marks goes to tb's log.
func bbHelperStart(tb, cur testing.TB, mode string, env ...string) *bbProc {
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
	p := &bbProc{mode: mode, stdin: stdin, marks: make(chan string, 16), exited: make(chan struct{})}
	go func() {
		defer close(p.exited)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			switch l := sc.Text(); {
			case l == "BB-READY", l == "BB-DIALED", strings.HasPrefix(l, "BB-JOINED "):
				p.marks <- l
			case l == "PASS":
			default:
				tb.Logf("helper %s: %s", mode, l)
			}
		}
		_ = cmd.Wait()
		p.state = cmd.ProcessState
	}()
	tb.Cleanup(func() {
		stdin.Close()
		select {
		case <-p.exited:
		case <-time.After(time.Minute):
			tb.Errorf("helper %s (pid %d) did not exit a minute after its input closed; killing it", mode, cmd.Process.Pid)
			_ = cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// await waits up to timeout for the helper's next mark, which must start
// with want, and returns it; anything else fails cur.
func (p *bbProc) await(cur testing.TB, want string, timeout time.Duration) string {
	cur.Helper()
	select {
	case m := <-p.marks:
		if !strings.HasPrefix(m, want) {
			cur.Fatalf("helper %s: %q, want %s", p.mode, m, want)
		}
		return m
	case <-p.exited:
		select {
		case m := <-p.marks: // printed just before it exited
			if strings.HasPrefix(m, want) {
				return m
			}
		default:
		}
		cur.Fatalf("helper %s exited before %s (%v)", p.mode, want, p.state)
	case <-time.After(timeout):
		cur.Fatalf("helper %s: no %s after %s", p.mode, want, timeout)
	}
	return ""
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
	idle         int     // idle users started
	hops         *bbHops // ZKCHAT_BENCH_HOPS=1: the bridge's trace
}

// bbStart runs a manager (child process) and a bridge (Rate -1, on the bot
// port) on a new channel, and waits until the bridge has joined it.
func bbStart(b *testing.B) *bbSetup {
	b.Helper()
	bbRaiseNofile()
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
	if bbHopsOn {
		s.hops = newBBHops()
		bridge.SetTrace(s.br, s.hops.trace)
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
	if !bbAuditoriumOff {
		if err := bbAuditorium(users, s.channel); err != nil {
			b.Logf("BB-WARN channel mode +u not set, every member sees every JOIN (%v); restart InspIRCd to load deploy/inspircd's auditorium module", err)
		}
	}
	return s
}

// bbAuditorium sets channel mode +u (InspIRCd's auditorium module) on
// channel, as the test server's operator (oper override; the bridge, an op
// of the channel it created, still sees every member): members who are not
// ops no longer see each other join and quit. Without it, the idle users'
// JOINs cost the IRC server n²/2 lines (50 million for 10,000 users, a core
// for 40 s at 250 JOINs a second, as long again for the QUITs; see
// deploy/inspircd/inspircd.conf.tmpl), and the benchmark would measure
// that rather than the bridge.
func bbAuditorium(addr, channel string) error {
	c, err := bbDial(addr, "au"+testenv.Tag())
	if err != nil {
		return err
	}
	defer c.Close()
	got := c.expect(func(l string) bool {
		f := strings.Fields(l)
		return len(f) >= 2 && (f[1] == "MODE" && len(f) >= 4 && strings.EqualFold(f[2], channel) && strings.Contains(f[3], "+u") ||
			f[1] == "472" || f[1] == "481" || f[1] == "482" || f[1] == "491" || f[1] == "464")
	})
	if err := c.Write("OPER zkadmin zkadmin", "MODE "+channel+" +u"); err != nil {
		return err
	}
	select {
	case l := <-got:
		if f := strings.Fields(l); f[1] != "MODE" {
			return fmt.Errorf("server: %s", l)
		}
		return nil
	case <-time.After(bbOpTimeout):
		return fmt.Errorf("no answer to MODE %s +u after %s", channel, bbOpTimeout)
	}
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
	if missing := s.waitOnline(b, ids, time.Now().Add(bbOnlineTimeout(0))); len(missing) > 0 {
		b.Fatalf("%d senders and receivers not online after %s: %v", len(missing), bbOnlineTimeout(0), missing)
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
	conns, err := bbDialAllN(addr, nicks, bbDialParallel)
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

// bbIdle is how idle users came online.
type bbIdle struct {
	took      time.Duration // from the first login to all online
	afterJoin time.Duration // from the last JOIN to all online
	missing   []string      // not online after bbOnlineTimeout
}

// idleUpTo starts idle users in child processes (bbUsersPerHelper each)
// until there are n: they log in, then JOIN the channel and register with
// the bot at bbJoinRate a second in all; it waits until they are online.
func (s *bbSetup) idleUpTo(b *testing.B, n int) bbIdle {
	b.Helper()
	if n <= s.idle {
		return bbIdle{}
	}
	prefix := "i" + s.tag + "n"
	first, count := s.idle, n-s.idle
	// The bridge's descriptors: one IRC connection, Kafka's, and, as long
	// as each online user has a ZooKeeper session of its own, one per user.
	if limit := bbRaiseNofile(); uint64(n)+1000 > limit {
		b.Logf("BB-WARN RLIMIT_NOFILE of the benchmark process is %d: too few for a bridge with a ZooKeeper session per online user and %d online", limit, n)
	}
	timeout := bbOnlineTimeout(count)
	helpers := (count + bbUsersPerHelper - 1) / bbUsersPerHelper
	t0 := time.Now()
	var procs []*bbProc
	for h := range helpers {
		lo, hi := first+h*count/helpers, first+(h+1)*count/helpers
		procs = append(procs, bbHelperStart(s.tb, b, "users",
			"BB_IRC="+s.users, "BB_BOT="+s.bot, "BB_CHANNEL="+s.channel, "BB_NICK_PREFIX="+prefix,
			"BB_FIRST="+strconv.Itoa(lo), "BB_COUNT="+strconv.Itoa(hi-lo),
			"BB_JOIN_RATE="+strconv.FormatFloat(float64(bbJoinRate)/float64(helpers), 'g', -1, 64),
			"BB_ANSWER_TIMEOUT="+timeout.String()))
	}
	for _, p := range procs {
		p.await(b, "BB-DIALED", timeout)
	}
	b.Logf("%d idle users logged in to IRC in %.1f s (%d helper processes)", count, time.Since(t0).Seconds(), helpers)
	for _, p := range procs {
		if _, err := io.WriteString(p.stdin, "join\n"); err != nil {
			b.Fatalf("helper users: %v", err)
		}
	}
	var last int64
	for _, p := range procs {
		ns, err := strconv.ParseInt(strings.TrimPrefix(p.await(b, "BB-JOINED ", timeout), "BB-JOINED "), 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		last = max(last, ns)
	}
	s.idle = n
	lastJoin := time.Unix(0, last)
	ids := make([]string, count)
	for i, nick := range bbIdleNicks(prefix, first, count) {
		ids[i], _ = bridge.NickToID(nick, bridge.RFC1459)
	}
	missing := s.waitOnline(b, ids, lastJoin.Add(timeout))
	r := bbIdle{took: time.Since(t0), afterJoin: time.Since(lastJoin), missing: missing}
	for _, p := range procs {
		p.await(b, "BB-READY", time.Minute)
	}
	return r
}

// waitOnline waits until every id is in the chroot's /online, and returns
// those that are not by deadline.
func (s *bbSetup) waitOnline(b *testing.B, ids []string, deadline time.Time) []string {
	b.Helper()
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
	hops    *bbHops  // if not nil: told of every first arrival
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
		if r.hops != nil {
			r.hops.ends(seq, r.base.Add(time.Duration(ns)), at)
		}
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
func bbOffer(b *testing.B, senders, receivers []*bbConn, bot string, rate int, line bbLine, hops ...*bbHops) {
	bbWarm(b, senders, receivers, bot, line)
	r := newBBRecorder(bot)
	if len(hops) > 0 && hops[0] != nil {
		r.hops = hops[0]
		r.hops.reset(r.marker)
		defer r.hops.report(b)
	}
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

// bbHops is the hop-by-hop latency of the measured messages
// (ZKCHAT_BENCH_HOPS=1): the bridge's trace (bridge.SetTrace) and the
// benchmark's own write and read times, all from this process's clock.
// The hops, in a message's order:
//
//	in       the sender's write until the bridge's IRC handler has it (InspIRCd, girc's reader)
//	queue    until the user's goroutine starts the send (its queue of commands)
//	kafka    until the receiver's delivery has the record (produce, replication, fetch)
//	deliver  until the outbox hands the line to girc (formatting, the outbox's queue)
//	out      until the receiver reads it (girc's writer, InspIRCd)
//
// and ack, from the start of the send until Kafka acknowledged it (the
// sender's next command waits for it; it overlaps kafka).
type bbHops struct {
	mu     sync.Mutex
	marker string
	at     map[int64]*bbHopTimes
}

// bbHopTimes: the bridge's stages (bridge.Trace*), then the write and read.
type bbHopTimes struct {
	stage       [bridge.TraceStages]time.Time
	sent, ended time.Time
}

var bbHopNames = []string{"in", "queue", "kafka", "deliver", "out", "ack"}

func newBBHops() *bbHops { return &bbHops{at: map[int64]*bbHopTimes{}} }

// reset starts a measurement: marker is its recorder's.
func (h *bbHops) reset(marker string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.marker, h.at = marker, map[int64]*bbHopTimes{}
}

func (h *bbHops) get(seq int64) *bbHopTimes {
	t := h.at[seq]
	if t == nil {
		t = &bbHopTimes{}
		h.at[seq] = t
	}
	return t
}

// trace is the bridge's trace: the first time of each stage per message.
func (h *bbHops) trace(stage int, text string) {
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	i := strings.Index(text, h.marker)
	if h.marker == "" || i < 0 {
		return
	}
	f := strings.Fields(text[i+len(h.marker):])
	if len(f) == 0 {
		return
	}
	seq, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return
	}
	if t := h.get(seq); t.stage[stage].IsZero() {
		t.stage[stage] = now
	}
}

// ends records a message's write and first read.
func (h *bbHops) ends(seq int64, sent, ended time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.get(seq)
	t.sent, t.ended = sent, ended
}

// report reports p50 and p99 of each hop (<hop>-p50-ms, <hop>-p99-ms) and,
// over the slowest 1 % of the messages (end to end), each hop's mean
// (tail-<hop>-ms): where the tail's time goes. untraced: messages that
// arrived without every stage seen.
func (h *bbHops) report(b *testing.B) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var rows [][]time.Duration // per message: the hops in bbHopNames order, then the total
	untraced := 0
	for _, t := range h.at {
		if t.ended.IsZero() {
			continue
		}
		st := t.stage
		if slices.ContainsFunc(st[:], time.Time.IsZero) {
			untraced++
			continue
		}
		rows = append(rows, []time.Duration{
			st[bridge.TraceReceived].Sub(t.sent),
			st[bridge.TraceSending].Sub(st[bridge.TraceReceived]),
			st[bridge.TraceConsumed].Sub(st[bridge.TraceSending]),
			st[bridge.TraceWritten].Sub(st[bridge.TraceConsumed]),
			t.ended.Sub(st[bridge.TraceWritten]),
			st[bridge.TraceAcked].Sub(st[bridge.TraceSending]),
			t.ended.Sub(t.sent),
		})
	}
	b.ReportMetric(float64(untraced), "untraced")
	if len(rows) == 0 {
		return
	}
	total := len(bbHopNames)
	for j, name := range bbHopNames {
		col := make([]time.Duration, len(rows))
		for i, r := range rows {
			col[i] = r[j]
		}
		slices.Sort(col)
		b.ReportMetric(testenv.MS(testenv.Percentile(col, 50)), name+"-p50-ms")
		b.ReportMetric(testenv.MS(testenv.Percentile(col, 99)), name+"-p99-ms")
	}
	slices.SortFunc(rows, func(x, y []time.Duration) int { return cmp.Compare(x[total], y[total]) })
	tail := rows[len(rows)*99/100:]
	for j, name := range bbHopNames {
		var sum time.Duration
		for _, r := range tail {
			sum += r[j]
		}
		b.ReportMetric(testenv.MS(sum/time.Duration(len(tail))), "tail-"+name+"-ms")
	}
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
// bot arrives at the receiver. At 100 and 1,000 messages a second
// (ZKCHAT_BENCH_RATES), with 10, 100 and 1,000 users online in the channel
// (ZKCHAT_BENCH_ONLINE; make bench-scale: 10, 1,000 and 10,000): the ten
// and idle users, who join, register and then do nothing. A cell that
// added idle users also reports the time from their last JOIN until all
// were online (online-after-join-s).
func BenchmarkBridgeLatency(b *testing.B) {
	s := bbStart(b)
	senders, receivers := s.pairs(b, s.bots, bbPairs)
	for _, online := range bbOnlineCounts {
		b.Run(fmt.Sprintf("online=%d", online), func(b *testing.B) {
			idle := s.idleUpTo(b, online-2*bbPairs)
			if len(idle.missing) > 0 {
				b.Logf("BUG? %d idle users not online %s after the last JOIN: %v", len(idle.missing), idle.afterJoin.Round(time.Second), idle.missing[:min(len(idle.missing), 20)])
			}
			if idle.took > 0 {
				b.Logf("%d idle users online in %.1f s, %.1f s after the last JOIN", online-2*bbPairs, idle.took.Seconds(), idle.afterJoin.Seconds())
			}
			on := s.onlineCount(b)
			for _, rate := range bbRates {
				b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
					bbOffer(b, senders, receivers, s.bot, rate, s.viaBot, s.hops)
					b.ReportMetric(float64(on), "online")
					if idle.took > 0 { // this cell's idle users: from their last JOIN until all were online
						b.ReportMetric(idle.afterJoin.Seconds(), "online-after-join-s")
					}
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

// BenchmarkBridgeMemory is the bridge's memory and idle CPU with many users
// online, one cell per count of ZKCHAT_BENCH_MEMORY_ONLINE (1,000; make
// bench-scale: 1,000 and 10,000), each adding idle users to the last: the
// benchmark process's Go heap in use (runtime.MemStats.HeapInuse, after
// runtime.GC) and its resident set (VmRSS) before the cell's users come
// (heap0-MB, rss0-MB), and with them joined, registered and online: at the
// peak (rss-peak-MB, VmHWM, reset when the cell starts), 5 s after the last
// came online (rss-MB), 30 s after (rss-30s-MB), and after
// debug.FreeOSMemory (rss-freed-MB); the time from the first login
// (online-s) and from the last JOIN (online-after-join-s) until all are
// online; the process's descriptors (fds); and the CPU of the idle users
// over 25 s (idle-cpu-*: this process, InspIRCd, Kafka, ZooKeeper). The
// manager and the users run in child processes, so the process holds only
// the bridge, its Kafka clients (librdkafka: C memory, in the RSS but not
// the Go heap) and the benchmark's bookkeeping. Run it with -benchtime 1x;
// ZKCHAT_BENCH_HEAP_PROFILE=<file> writes a heap profile with the users of
// the last cell online; ZKCHAT_BENCH_IDLE_CPU_PROFILE=<file> a CPU profile
// of this process over the idle 25 s of the last cell.
func BenchmarkBridgeMemory(b *testing.B) {
	s := bbStart(b)
	for _, users := range bbMemoryCounts {
		b.Run(fmt.Sprintf("online=%d", users), func(b *testing.B) {
			done := false
			for b.Loop() {
				if done {
					continue
				}
				done = true
				bbMemoryCell(b, s, users)
			}
		})
	}
}

func bbMemoryCell(b *testing.B, s *bbSetup, users int) {
	on0 := s.onlineCount(b)
	before := bbReadMem()
	peakReset := bbResetPeakRSS()
	idle := s.idleUpTo(b, users)
	if len(idle.missing) > 0 {
		b.Logf("BUG? %d users not online %s after the last JOIN: %v", len(idle.missing), idle.afterJoin.Round(time.Second), idle.missing[:min(len(idle.missing), 20)])
	}
	on := s.onlineCount(b)
	time.Sleep(5 * time.Second) // sessions settle: pings, the bot's notices
	after := bbReadMem()
	fds := bbFDs()
	if f := os.Getenv("ZKCHAT_BENCH_HEAP_PROFILE"); f != "" {
		bbWriteHeapProfile(b, f)
	}
	// Go gives freed memory back to the OS gradually (the background
	// scavenger); what a long-running bridge keeps is between these.
	// Meanwhile: the CPU that the idle online users cost.
	stopProfile := bbCPUProfile(b, os.Getenv("ZKCHAT_BENCH_IDLE_CPU_PROFILE"))
	cpu0 := bbCPUNow()
	time.Sleep(25 * time.Second)
	cpu1 := bbCPUNow()
	stopProfile()
	rssSettled := bbRSS()
	peak := bbStatusKB("VmHWM")
	debug.FreeOSMemory()
	rssFreed := bbRSS()
	if !peakReset {
		b.Logf("BB-WARN the peak RSS could not be reset (/proc/self/clear_refs): rss-peak-MB is since the process started")
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(on), "online")
	b.ReportMetric(idle.took.Seconds(), "online-s")
	b.ReportMetric(idle.afterJoin.Seconds(), "online-after-join-s")
	b.ReportMetric(bbMB(before.HeapInuse), "heap0-MB")
	b.ReportMetric(bbMB(after.HeapInuse), "heap-MB")
	b.ReportMetric((float64(after.HeapInuse)-float64(before.HeapInuse))/1024/float64(max(on-on0, 1)), "heap-KB/user")
	b.ReportMetric(bbMB(before.StackInuse), "stack0-MB")
	b.ReportMetric(bbMB(after.StackInuse), "stack-MB")
	b.ReportMetric(bbMB(before.Sys), "gosys0-MB")
	b.ReportMetric(bbMB(after.Sys), "gosys-MB")
	b.ReportMetric(bbMB(before.rss), "rss0-MB")
	b.ReportMetric(bbMB(peak), "rss-peak-MB")
	b.ReportMetric(bbMB(after.rss), "rss-MB")
	b.ReportMetric(bbMB(rssSettled), "rss-30s-MB")
	b.ReportMetric(bbMB(rssFreed), "rss-freed-MB")
	b.ReportMetric(float64(before.goroutines), "goroutines0")
	b.ReportMetric(float64(after.goroutines), "goroutines")
	b.ReportMetric(float64(fds), "fds")
	cpu1.reportAs(b, "idle-", cpu0)
}

// ---------------------------------------------------------------------------
// Memory and CPU readings.

// bbCPUProfile starts a CPU profile of this process into file (none when
// file is empty); the returned func stops it.
func bbCPUProfile(b *testing.B, file string) (stop func()) {
	if file == "" {
		return func() {}
	}
	f, err := os.Create(file)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Error(err)
		}
	}
}

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
func bbRSS() uint64 { return bbStatusKB("VmRSS") }

// bbResetPeakRSS resets VmHWM, the peak resident set, to the current one
// (Linux 4.0 and later).
func bbResetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// bbFDs is the number of open descriptors of this process.
func bbFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

// bbStatusKB is the field (VmRSS, VmHWM, ...) of /proc/self/status, in bytes.
func bbStatusKB(field string) uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
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
// helper processes, found by their command lines (the servers by their
// config files under $ZKCHAT_DATA_DIR, default .data). A process that exits
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
	dataDir := strings.TrimSuffix(os.Getenv("ZKCHAT_DATA_DIR"), "/")
	if dataDir == "" {
		dataDir = ".data"
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
		// The servers of $ZKCHAT_DATA_DIR (default .data), not other
		// runs' private ones (the fault suite's clusters, a test's own Kafka).
		switch cl := string(cmd); {
		case strings.Contains(cl, "inspircd") && strings.Contains(cl, dataDir+"/inspircd/inspircd.conf"):
			c.inspircd += bbProcTicks(e.Name())
		case strings.Contains(cl, "kafka.Kafka") && strings.Contains(cl, dataDir+"/kafka/server.properties"):
			c.kafka += bbProcTicks(e.Name())
		case strings.Contains(cl, "QuorumPeerMain") && strings.Contains(cl, dataDir+"/zookeeper/conf/zoo.cfg"):
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
