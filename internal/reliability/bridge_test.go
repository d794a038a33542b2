package reliability

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zkchat/zkchat/client"
	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/protocol"
)

// bridgeRig is one bridge row's deployment: a private InspIRCd, the bridge
// process (with its built-in manager) and raw IRC members in its channel.
type bridgeRig struct {
	t        *testing.T
	s        *Suite
	irc      *IRCServer
	b        *Proc
	tag      string
	bot      string
	channel  string
	obs      *Member // presence observer (NAMES), not a zkchat user
	copies   *Copies // every ledger message the members received from the bot
	mu       sync.Mutex
	members  map[string]*Member // zkchat users in the channel, by nick (= id)
	watchers []string           // observer nicks, removed from NAMES
	workers  map[string]bool    // in-process users, removed from /online
	failures map[string]int     // failed sends by kind
	notices  []string           // the bot's failure notices to members
	fromBot  sync.Map           // the bot's nicks messages came from
}

var syncedRE = regexp.MustCompile(`channel member list read`)

// newBridgeRig starts the IRC server and the bridge; server picks the port
// the bridge uses (nil: the flood-exempt bot port). extra goes to the bridge.
func newBridgeRig(t *testing.T, server func(*IRCServer) string, extra ...string) *bridgeRig {
	tag := testenv.Tag()
	r := &bridgeRig{t: t, s: New(t), irc: StartIRC(t), tag: tag, bot: "zb" + tag, channel: "#zr" + tag,
		copies: NewCopies(), members: map[string]*Member{}}
	addr := r.irc.Bots
	if server != nil {
		addr = server(r.irc)
	}
	r.b = r.s.Bridge("bridge", addr, r.bot, r.channel, extra...)
	r.waitSynced(0)
	r.obs = r.observer("ob" + tag)
	return r
}

// waitSynced waits until the bridge's log says (after offset) that it has
// read the channel's member list.
func (r *bridgeRig) waitSynced(offset int) time.Duration {
	r.t.Helper()
	t0 := time.Now()
	if _, ok := r.b.WaitLog(3*time.Minute, offset, syncedRE); !ok {
		r.t.Fatalf("bridge not in %s (log after %d bytes)", r.channel, offset)
	}
	return time.Since(t0)
}

// observer joins a non-user watcher to the channel (on the users port).
func (r *bridgeRig) observer(nick string) *Member {
	r.mu.Lock()
	r.watchers = append(r.watchers, nick)
	r.mu.Unlock()
	return JoinChannel(r.t, r.irc.Users, nick, r.channel, nil)
}

// onText feeds the bot's private messages to the ledger and the copies.
func (r *bridgeRig) onText(from, text string) {
	if strings.EqualFold(from, r.bot) || strings.HasPrefix(strings.ToLower(from), strings.ToLower(r.bot)) {
		r.s.Ledger.Saw("irc", text)
		r.copies.Saw(text)
		r.fromBot.Store(from, true)
		if strings.HasPrefix(text, "Not sent") || strings.Contains(text, "failed") {
			r.mu.Lock()
			r.notices = append(r.notices, time.Now().Format("15:04:05.000")+" "+text)
			r.mu.Unlock()
		}
	}
}

// user joins nick to the channel, registers it and waits until it is online.
func (r *bridgeRig) user(ctx context.Context, nick string) *Member {
	r.t.Helper()
	m := JoinChannel(r.t, r.irc.Users, nick, r.channel, r.onText)
	m.Register(r.bot)
	r.mu.Lock()
	r.members[nick] = m
	r.mu.Unlock()
	r.waitOnline(nick, true, 2*time.Minute)
	return m
}

func (r *bridgeRig) waitOnline(id string, want bool, d time.Duration) time.Duration {
	r.t.Helper()
	return r.s.WaitOnline(r.t, id, want, d)
}

// names is the channel's members as ids: NAMES without the bot and the
// observers.
func (r *bridgeRig) names() ([]string, error) {
	nicks, err := r.obs.Client().Names(r.channel)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for _, n := range nicks {
		skip := strings.HasPrefix(strings.ToLower(n), strings.ToLower(r.bot))
		for _, w := range r.watchers {
			skip = skip || strings.EqualFold(n, w)
		}
		if !skip {
			ids = append(ids, strings.ToLower(n))
		}
	}
	return ids, nil
}

// agree waits for /online and the channel's members to agree.
func (r *bridgeRig) agree(d time.Duration) time.Duration {
	r.t.Helper()
	return WaitAgree(r.t, d, r.online, r.names)
}

// sendAll sends n ledger messages to `to` from the senders, each sender
// its own share in order (so per pair the sequence is the send order),
// sending a message again while the receiver is offline when retry says so.
// It returns when all were sent (or ctx ended).
func (r *bridgeRig) sendAll(ctx context.Context, senders []*client.Worker, to string, n int, perSecond float64, retry bool) {
	var wg sync.WaitGroup
	for i, w := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var tick *time.Ticker
			if perSecond > 0 {
				tick = time.NewTicker(time.Duration(float64(time.Second) * float64(len(senders)) / perSecond))
				defer tick.Stop()
			}
			for seq := int64(i); seq < int64(n); seq += int64(len(senders)) {
				if tick != nil {
					select {
					case <-tick.C:
					case <-ctx.Done():
						return
					}
				}
				for {
					err := r.s.Send(ctx, w, to, seq)
					if err == nil || ctx.Err() != nil {
						break
					}
					r.sendFailed(w.ID(), to, seq, err)
					if !retry || !errors.Is(err, protocol.ErrReceiverOffline) {
						break
					}
					// The message never reached Kafka: send it again
					// (Sent then records the new outcome).
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
}

// sendFailed counts a failed send; the first few of each kind are logged.
func (r *bridgeRig) sendFailed(from, to string, seq int64, err error) {
	r.mu.Lock()
	if r.failures == nil {
		r.failures = map[string]int{}
	}
	kind := "other"
	if errors.Is(err, protocol.ErrReceiverOffline) {
		kind = "receiver offline"
	}
	r.failures[kind]++
	n := r.failures[kind]
	r.mu.Unlock()
	if n <= 3 {
		r.t.Logf("send %s->%s #%d: %v", from, to, seq, err)
	}
}

// failed is how many sends failed (the senders were told so).
func (r *bridgeRig) failed() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for k, v := range r.failures {
		out[k] = v
	}
	return out
}

// online is /online without the in-process workers (who are not in IRC).
func (r *bridgeRig) online() ([]string, error) {
	ids, err := r.s.OnlineIDs()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, id := range ids {
		if !r.workers[id] {
			out = append(out, id)
		}
	}
	return out, err
}

// senders brings in-process workers online (not IRC members).
func (r *bridgeRig) senders(ctx context.Context, ids ...string) []*client.Worker {
	r.mu.Lock()
	if r.workers == nil {
		r.workers = map[string]bool{}
	}
	for _, id := range ids {
		r.workers[id] = true
	}
	r.mu.Unlock()
	return r.s.Online(ctx, ids...)
}

// delivered waits until every acked message to `to` was seen at least once.
func (r *bridgeRig) delivered(to string, d time.Duration) (Report, time.Duration) {
	r.t.Helper()
	only := func(_, rcv string, _ int64) bool { return rcv == to }
	var rep Report
	took := WaitFor(r.t, d, "every acked message to "+to+" delivered", func() bool {
		rep = r.s.Ledger.Report("irc", only)
		return rep.Lost == 0
	})
	time.Sleep(time.Second) // late copies
	return r.s.Ledger.Report("irc", only), took
}

// window is how many messages to id the bridge, now down, may deliver
// again (see RedeliveryWindow), and the offset it committed.
func (r *bridgeRig) window(id string) (int, int64) {
	r.t.Helper()
	time.Sleep(time.Second) // lines the bridge wrote before it died arrive
	seen := r.copies.Snapshot()
	topic := r.s.Topic(id)
	committed := Committed(r.t, r.s.Env.Kafka, protocol.Topics{Prefix: r.s.Env.Prefix}.Group(id), topic)
	return RedeliveryWindow(seen, Offsets(r.t, r.s.Env.Kafka, topic), committed), committed
}

// TestBridgeSIGKILL: 10,000 messages are being delivered to an IRC user
// when the bridge is SIGKILLed; it is started again. Nothing acked is lost
// at the IRC client. Duplicates are bounded by the redelivery window: the
// bridge commits a read position only after the server answered a PING
// queued behind the lines (bridge/user.go deliver, BeforeCommit = sync), so
// a kill re-delivers exactly the messages written after the last committed
// offset, never one before it; the test reads that offset from Kafka once
// the bridge is dead and counts the messages the user had seen at or after
// it (the window). From the code, the window is the messages handed to the
// pacer after the last committed offset: a commit is offered each time the
// reader's queue runs empty (protocol Worker.read), and proved by a PING
// queued behind at most cap(out) = 1,024 lines; while one proof and its
// commit are in flight the next batch is written unproved. So the window is
// one or two batches: a few messages unpaced (3-8 measured here), hundreds
// when the bot is paced (TestIRCStopDuringBacklog). The user is back online
// once the killed run's session has expired (the new run retries; see
// bridge/user.go heldHere) and presence agrees.
func TestBridgeSIGKILL(t *testing.T) {
	r := newBridgeRig(t, nil)
	ctx := Ctx(t, 8*time.Minute)
	to := "u1" + r.tag
	r.user(ctx, to)
	senders := r.senders(ctx, "s1"+r.tag, "s2"+r.tag, "s3"+r.tag, "s4"+r.tag)
	r.agree(time.Minute)

	const n = 10000
	sent := make(chan struct{})
	go func() { defer close(sent); r.sendAll(ctx, senders, to, n, 0, true) }()
	WaitFor(t, 3*time.Minute, "3,000 messages delivered", func() bool { return r.copies.Distinct() >= 3000 })
	before := r.copies.Distinct()
	_, st, err := r.s.ZK.Exists(r.s.Env.Path("/online/" + to))
	if err != nil || st == nil {
		t.Fatalf("/online/%s before the kill: %v", to, err)
	}
	r.b.Kill()
	win, committed := r.window(to)
	t.Logf("SIGKILL after %d messages seen; committed offset %d; redelivery window %d", before, committed, win)
	down := time.Now()
	off := len(r.b.Log())
	r.b.Start()
	resync := r.waitSynced(off)
	// The killed run's node lingers until its session expires; the user is
	// back when a node of the new run's session holds the id.
	online := WaitFor(t, time.Minute, "the user online in the new run's session", func() bool {
		_, now, err := r.s.ZK.Exists(r.s.Env.Path("/online/" + to))
		return err == nil && now != nil && now.EphemeralOwner != st.EphemeralOwner
	})
	agree := r.agree(2 * time.Minute)
	t.Logf("bridge back %v after the kill; user online again (new session) %v later; presence agreed %v later", resync, online, agree)
	<-sent
	rep, drain := r.delivered(to, 5*time.Minute)
	rep.Check(t, win, 0)
	if rep.Acked != n {
		t.Errorf("acked %d of %d sends", rep.Acked, n)
	}
	t.Logf("failed sends, retried: %v", r.failed())
	NoPanic(t, r.b.Log())
	Row(t, "bridge SIGKILL mid-delivery", "messages", n, "killed_after", before, "lost", rep.Lost, "dup", rep.Duplicated,
		"window", win, "reordered", rep.Reordered, "resync", resync.Round(time.Millisecond),
		"user_online_again", online.Round(time.Millisecond), "agree", agree.Round(time.Millisecond), "drain_after_sends", drain.Round(time.Millisecond),
		"total", time.Since(down).Round(time.Millisecond))
}

var (
	_ = errors.Is
	_ atomic.Int64
)

// stopPoint is what a test records when the bridge went down: the messages
// an observer had seen and the offset the bridge had committed for a user.
type stopPoint struct {
	seen      map[string]int
	committed int64
}

// stopPoint waits briefly for lines the bridge wrote before it went down,
// then records the user's committed offset and what the members had seen.
func (r *bridgeRig) stopPoint(id string) stopPoint {
	r.t.Helper()
	time.Sleep(300 * time.Millisecond)
	return stopPoint{seen: r.copies.Snapshot(),
		committed: Committed(r.t, r.s.Env.Kafka, protocol.Topics{Prefix: r.s.Env.Prefix}.Group(id), r.s.Topic(id))}
}

// windows sums the redelivery windows of stop points (see RedeliveryWindow).
func (r *bridgeRig) windows(id string, stops []stopPoint) int {
	offsets := Offsets(r.t, r.s.Env.Kafka, r.s.Topic(id))
	n := 0
	for _, p := range stops {
		n += RedeliveryWindow(p.seen, offsets, p.committed)
	}
	return n
}

// flow sends ledger messages from w to `to` every interval until stop is
// closed; failed sends are recorded (and must never be delivered).
func (r *bridgeRig) flow(ctx context.Context, w *client.Worker, to string, interval time.Duration, stop <-chan struct{}) (done <-chan int64) {
	out := make(chan int64, 1)
	go func() {
		var seq int64
		defer func() { out <- seq }()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if err := r.s.Send(ctx, w, to, seq); err != nil && ctx.Err() == nil {
				r.sendFailed(w.ID(), to, seq, err)
			}
			seq++
		}
	}()
	return out
}

// TestBridgeRestarts: the bridge is stopped (SIGTERM) and started 10 times
// while messages flow to an IRC user. Each stop is clean (exit code 0 within
// 20 s); nothing acked is lost; duplicates stay within the redelivery
// windows of the stops (see TestBridgeSIGKILL); presence agrees after each
// start; the bot joins the channel once per connection (the JOINs an
// observer sees, and the "joining" log lines); no panic.
func TestBridgeRestarts(t *testing.T) {
	r := newBridgeRig(t, nil)
	ctx := Ctx(t, 8*time.Minute)
	to := "u1" + r.tag
	r.user(ctx, to)
	snd := r.senders(ctx, "s1"+r.tag)[0]
	jw := r.observer("jw" + r.tag) // counts the bot's JOINs only
	r.agree(time.Minute)
	stop := make(chan struct{})
	done := r.flow(ctx, snd, to, 20*time.Millisecond, stop)

	const restarts = 10
	var stops []stopPoint
	var agreeMax, backMax time.Duration
	t0 := time.Now()
	joinedLog := LogCount(r.b.Log(), 0, "irc connected; joining")
	for i := 0; i < restarts; i++ {
		time.Sleep(time.Second) // messages flow
		clean := r.b.Stop(20 * time.Second)
		exited, code := r.b.Exited()
		if !clean || !exited || code != 0 {
			t.Errorf("restart %d: SIGTERM: exited in time %v, exit code %d", i, clean, code)
		}
		stops = append(stops, r.stopPoint(to))
		off := len(r.b.Log())
		r.b.Start()
		back := r.waitSynced(off)
		agree := r.agree(time.Minute)
		backMax, agreeMax = max(backMax, back), max(agreeMax, agree)
		if n := LogCount(r.b.Log(), off, "irc connected; joining"); n != 1 {
			t.Errorf("restart %d: %d connections with a JOIN in the log, want 1", i, n)
		}
		if n := JoinsOf(jw.Client(), r.bot, r.channel); n != 1 {
			t.Errorf("restart %d: the observer saw the bot JOIN %d times, want 1", i, n)
		}
	}
	took := time.Since(t0)
	close(stop)
	sent := <-done
	rep, drain := r.delivered(to, 3*time.Minute)
	win := r.windows(to, stops)
	rep.Check(t, win, 0)
	// The user is offline while the bridge is down (most of each cycle):
	// those sends fail, and the senders are told so.
	if rep.Acked < 100 {
		t.Errorf("only %d of %d sends acked", rep.Acked, sent)
	}
	NoPanic(t, r.b.Log())
	if n := LogCount(r.b.Log(), 0, "irc connected; joining") - joinedLog; n != restarts {
		t.Errorf("%d connections in %d runs", n, restarts)
	}
	// A clean stop waits for its deliveries to prove their last lines
	// (bridge.drain): how many stops did, how many ran out of time.
	drained := LogCount(r.b.Log(), 0, "stopping: deliveries committed")
	undrained := LogCount(r.b.Log(), 0, "stopping: deliveries still running")
	Row(t, "bridge SIGTERM restarts x10", "stops that proved their last lines", drained, "stops that ran out of time", undrained,
		"restarts", restarts, "in", took.Round(time.Millisecond), "sent", sent,
		"acked", rep.Acked, "failed", rep.Failed, "lost", rep.Lost, "dup", rep.Duplicated, "window", win,
		"reordered", rep.Reordered, "max_back", backMax.Round(time.Millisecond), "max_agree", agreeMax.Round(time.Millisecond),
		"drain", drain.Round(time.Millisecond), "exit", "0 on every SIGTERM")
}

// TestIRCRestarts: the IRC server is restarted 20 times under the bridge.
// After each restart the members reconnect and rejoin; the bridge
// reconnects once (one "joining" log line per restart, and the observer,
// back first, sees one bot JOIN), presence agrees, and messages sent then
// arrive once each (handlers are registered once: one delivery per message;
// a command to the bot is handled once: one Kafka record per "msg").
// Nothing acked is lost; the bridge's goroutines, fds and RSS come back to
// their baseline.
func TestIRCRestarts(t *testing.T) {
	r := newBridgeRig(t, nil)
	ctx := Ctx(t, 8*time.Minute)
	to := "u1" + r.tag
	u := r.user(ctx, to)
	sid := "s1" + r.tag
	snd := r.senders(ctx, sid)[0]
	jw := r.observer("jw" + r.tag)
	r.agree(time.Minute)
	r.s.Follow(ctx, snd, "cmd") // what the user's commands sent
	var seq int64
	send := func(k int) {
		for j := 0; j < k; j++ {
			if err := r.s.Send(ctx, snd, to, seq); err != nil {
				r.sendFailed(snd.ID(), to, seq, err)
			}
			seq++
		}
	}
	send(20)
	if _, took := r.delivered(to, time.Minute); took > 0 {
		t.Logf("first messages delivered in %v", took)
	}
	// Live heap (after a forced GC), not RSS: see Live.
	base := r.b.LiveHealth(t)
	const restarts = 20
	var stops []stopPoint
	var agreeMax time.Duration
	var botJoins, cmds int
	t0 := time.Now()
	for i := 0; i < restarts; i++ {
		off := len(r.b.Log())
		r.irc.Restart()
		// The bridge is not back yet (its reconnect waits 0.5 s at least):
		// what the user saw and the offset committed are the stop's.
		stops = append(stops, r.stopPoint(to))
		// Members are back before the bot (its reconnect waits 0.5 s at
		// least), the observer first.
		jw.Rejoin(time.Minute)
		r.obs.Rejoin(time.Minute)
		u.Rejoin(time.Minute)
		r.waitSynced(off)
		agree := r.agree(time.Minute)
		agreeMax = max(agreeMax, agree)
		if n := LogCount(r.b.Log(), off, "irc connected; joining"); n != 1 {
			t.Errorf("restart %d: %d connections with a JOIN in the log, want 1", i, n)
		}
		n := JoinsOf(jw.Client(), r.bot, r.channel)
		if n > 1 {
			t.Errorf("restart %d: the observer saw the bot JOIN %d times", i, n)
		}
		botJoins += n
		if f := r.failed()["receiver offline"]; f > 0 {
			t.Logf("restart %d: %d sends so far found the user offline", i, f)
		}
		send(5)
		// A command through the bot, handled once: one record in Kafka.
		u.Client().Send(fmt.Sprintf("PRIVMSG %s :msg %s %s", r.bot, sid, r.s.Ledger.Text(to, sid, int64(i))))
		cmds++
		r.s.Ledger.Sent(to, sid, int64(i), nil)
		// Both arrived before the next restart.
		r.s.Ledger.WaitSeen(t, "irc", to, time.Minute)
		r.s.Ledger.WaitSeen(t, "cmd", sid, time.Minute)
	}
	took := time.Since(t0)
	rep, drain := r.delivered(to, 2*time.Minute)
	win := r.windows(to, stops)
	rep.Check(t, win, 0)
	// Every message sent after a restart was delivered exactly once
	// (beyond the windows): a handler registered per connection would
	// double each one.
	if rep.Duplicated > win {
		t.Errorf("duplicates %d beyond the windows %d", rep.Duplicated, win)
	}
	// Each command handled once: its message reached the sender once.
	time.Sleep(time.Second)
	cmdRep := r.s.Ledger.Report("cmd", func(_, rcv string, _ int64) bool { return rcv == sid })
	cmdRep.Check(t, 0, 0)
	r.mu.Lock()
	if len(r.notices) > 0 {
		t.Errorf("the bot's failure notices: %q", r.notices)
	}
	r.mu.Unlock()
	if botJoins < restarts/2 {
		t.Errorf("the observer saw only %d bot JOINs in %d restarts", botJoins, restarts)
	}
	h := r.b.BackToBaselineLive(t, base, time.Minute)
	NoPanic(t, r.b.Log())
	Row(t, "IRC server restarts x20", "restarts", restarts, "in", took.Round(time.Millisecond), "acked", rep.Acked,
		"lost", rep.Lost, "dup", rep.Duplicated, "window", win, "reordered", rep.Reordered,
		"bot_joins_seen", botJoins, "commands", cmds, "commands_dup", cmdRep.Duplicated, "max_agree", agreeMax.Round(time.Millisecond),
		"drain", drain.Round(time.Millisecond), "health", h.String(), "baseline", base.String())
}

// TestIRCStopDuringBacklog: 2,000 messages are being delivered (the bot
// paced at 200 lines/s) when the IRC
// server stops; it starts again 5 s later and the user reconnects. Nothing
// acked is lost; duplicates stay within the redelivery window (the
// committed offset once the bridge saw the disconnect).
func TestIRCStopDuringBacklog(t *testing.T) {
	// Paced at 200 lines/s, so that the server stops with most of the
	// backlog still to deliver (unpaced, 2,000 go out in well under a
	// second).
	r := newBridgeRig(t, nil, "--rate", "200", "--burst", "40")
	ctx := Ctx(t, 6*time.Minute)
	to := "u1" + r.tag
	u := r.user(ctx, to)
	senders := r.senders(ctx, "s1"+r.tag, "s2"+r.tag, "s3"+r.tag, "s4"+r.tag)
	r.agree(time.Minute)
	const n = 2000
	r.sendAll(ctx, senders, to, n, 0, false) // the backlog, in Kafka
	WaitFor(t, 2*time.Minute, "300 messages delivered", func() bool { return r.copies.Distinct() >= 300 })
	off := len(r.b.Log())
	r.irc.Stop()
	stoppedAt := time.Now()
	seenAtStop := r.copies.Distinct()
	if _, ok := r.b.WaitLog(time.Minute, off, regexp.MustCompile(`irc disconnected: delivery paused`)); !ok {
		t.Fatal("the bridge did not notice the server stop")
	}
	sp := r.stopPoint(to)
	time.Sleep(5*time.Second - time.Since(stoppedAt))
	off = len(r.b.Log())
	r.irc.Start()
	u.Rejoin(time.Minute)
	r.obs.Rejoin(time.Minute)
	back := r.waitSynced(off)
	agree := r.agree(time.Minute)
	rep, drain := r.delivered(to, 3*time.Minute)
	win := r.windows(to, []stopPoint{sp})
	rep.Check(t, win, 0)
	if rep.Acked != n {
		t.Errorf("acked %d of %d", rep.Acked, n)
	}
	NoPanic(t, r.b.Log())
	Row(t, "IRC server stopped during a backlog", "backlog", n, "seen_at_stop", seenAtStop, "lost", rep.Lost,
		"dup", rep.Duplicated, "window", win, "reordered", rep.Reordered, "back_after_start", back.Round(time.Millisecond),
		"agree", agree.Round(time.Millisecond), "drain", drain.Round(time.Millisecond))
}
