package reliability

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zkchat/zkchat/client"
	"github.com/zkchat/zkchat/internal/irctest"
)

// oper connects an IRC operator (testdata/inspircd/inspircd.conf: zkadmin)
// in the channel, as a watcher (not a zkchat user).
func (r *bridgeRig) oper(nick string) *Member {
	r.t.Helper()
	op := r.observer(nick)
	op.Client().Send("OPER zkadmin zkadmin")
	if _, ok := op.Client().TryWait(20*time.Second, func(l string) bool { return strings.Contains(l, " 381 ") }); !ok {
		r.t.Fatal("OPER zkadmin: not an operator")
	}
	return op
}

// botBack waits until the observer c sees the bot JOIN, the bridge has read
// the member list again (after log offset off) and the user is online.
func (r *bridgeRig) botBack(c *irctest.Client, off int, id string, d time.Duration) time.Duration {
	r.t.Helper()
	t0 := time.Now()
	if _, ok := c.TryWait(d, func(l string) bool { return IsCommandOf(l, r.bot, "JOIN") }); !ok {
		r.t.Fatalf("the bot did not rejoin within %v", d)
	}
	r.waitSynced(off)
	r.waitOnline(id, true, d)
	return time.Since(t0)
}

// TestBotKickKillBan: an operator kicks the bot, KILLs it, then bans it
// (+b on its mask) and kicks it. After a kick it rejoins once after a pause;
// after a KILL it reconnects once; while banned it retries with backoff
// (its JOIN attempts over 30 s are counted and bounded: no rejoin loop), and
// it is back when the ban is lifted. Each time its log says why, and its
// users go offline and come back online.
func TestBotKickKillBan(t *testing.T) {
	r := newBridgeRig(t, nil)
	ctx := Ctx(t, 6*time.Minute)
	id := "u1" + r.tag
	r.user(ctx, id)
	op := r.oper("op" + r.tag)
	oc := op.Client()
	r.agree(time.Minute)

	// Kick.
	off := len(r.b.Log())
	oc.Send(fmt.Sprintf("SAKICK %s %s :test kick", r.channel, r.bot))
	r.waitOnline(id, false, time.Minute)
	kick := r.botBack(oc, off, id, time.Minute)
	if !strings.Contains(r.b.Log()[off:], `bot lost the channel; all users offline, rejoining" component=bridge reason=kicked`) {
		t.Error("no log line says the bot was kicked")
	}
	kickAgree := r.agree(time.Minute)

	// KILL.
	off = len(r.b.Log())
	oc.Send(fmt.Sprintf("KILL %s :test kill", r.bot))
	kill := r.botBack(oc, off, id, time.Minute)
	if n := LogCount(r.b.Log(), off, "irc connection ended; reconnecting"); n != 1 {
		t.Errorf("%d reconnects after one KILL, want 1", n)
	}
	if !regexp.MustCompile(`the irc server closed the link.*test kill`).MatchString(r.b.Log()[off:]) {
		t.Error("no log line gives the KILL's reason")
	}
	killAgree := r.agree(time.Minute)

	// Ban, kick, 30 s banned.
	mask := r.bot + "!*@*"
	off = len(r.b.Log())
	oc.Send(fmt.Sprintf("MODE %s +b %s", r.channel, mask))
	oc.Send(fmt.Sprintf("KICK %s %s :banned", r.channel, r.bot))
	r.waitOnline(id, false, time.Minute)
	time.Sleep(30 * time.Second)
	log := r.b.Log()
	attempts := LogCount(log, off, "the server refused the bot's JOIN")
	if attempts < 1 {
		t.Errorf("no log line says the JOIN was refused:\n%s", log[off:])
	}
	// The rejoin after a kick waits 5-10 s, then refusals back off 5, 10,
	// 20 s (jittered down to half): at most 5 attempts in 30 s.
	if attempts > 5 {
		t.Errorf("%d JOIN attempts in 30 s while banned: a rejoin loop", attempts)
	}
	if ok, _, _ := r.s.ZK.Exists(r.s.Env.Path("/online/" + id)); ok {
		t.Error("the user is online while the bot is banned from the channel")
	}
	CountLines(oc, func(string) bool { return false })
	oc.Send(fmt.Sprintf("MODE %s -b %s", r.channel, mask))
	unban := r.botBack(oc, off, id, 3*time.Minute)
	banAgree := r.agree(time.Minute)
	NoPanic(t, r.b.Log())
	Row(t, "bot kicked, KILLed, banned", "kick_back", kick.Round(time.Millisecond), "kick_agree", kickAgree.Round(time.Millisecond),
		"kill_back", kill.Round(time.Millisecond), "kill_agree", killAgree.Round(time.Millisecond),
		"join_attempts_banned_30s", attempts, "back_after_unban", unban.Round(time.Millisecond),
		"unban_agree", banAgree.Round(time.Millisecond))
}

// TestNickTaken: someone holds the bot's nick before the bridge connects.
// The bridge takes another nick once (no NICK loop), says so in its log
// (an ERROR line naming both nicks), and serves its users under it; when
// the squatter leaves the channel the bot takes its nick back (one log
// line, one NICK) and serves under it.
func TestNickTaken(t *testing.T) {
	s := New(t)
	irc := StartIRC(t)
	r := &bridgeRig{t: t, s: s, irc: irc, copies: NewCopies(), members: map[string]*Member{}}
	r.tag = strings.ToLower(s.Ledger.Run)
	r.bot, r.channel = "zb"+r.tag, "#zr"+r.tag
	// The squatter, in the channel (the bot sees it leave).
	squatter := JoinChannel(t, irc.Users, r.bot, r.channel, nil)
	r.b = s.Bridge("bridge", irc.Bots, r.bot, r.channel)
	r.waitSynced(0)
	r.obs = r.observer("ob" + r.tag)
	time.Sleep(5 * time.Second) // would a loop show?
	log := r.b.Log()
	taken := LogCount(log, 0, "the bot's nick is taken on the server; using another one")
	if taken != 1 || !strings.Contains(log, fmt.Sprintf("taken=%s using=%s_", r.bot, r.bot)) {
		t.Errorf("want one ERROR line naming the taken nick and the one used; %d lines", taken)
	}
	if n := LogCount(log, 0, "irc connected; joining"); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
	ctx := Ctx(t, 3*time.Minute)
	id := "u1" + r.tag
	// r.bot stays the configured nick: NAMES and the ledger match the
	// bot by prefix, so zbX and zbX_ are both the bot (and the squatter
	// is not a user).
	m := JoinChannel(t, irc.Users, id, r.channel, r.onText)
	m.Register(r.bot + "_")
	r.members[id] = m
	r.waitOnline(id, true, time.Minute)
	agree := r.agree(time.Minute)
	snd := r.senders(ctx, "s1"+r.tag)[0]
	for i := int64(0); i < 50; i++ {
		if err := s.Send(ctx, snd, id, i); err != nil {
			t.Fatal(err)
		}
	}
	rep, took := r.delivered(id, time.Minute)
	rep.Check(t, 0, 0)

	// The squatter leaves: the bot takes its nick back, once, and goes on
	// delivering under it.
	off := len(r.b.Log())
	squatter.Client().Close()
	back := WaitFor(t, 30*time.Second, "the bot back on its nick", func() bool {
		return strings.Contains(r.b.Log()[off:], "the bot's nick is free again; taking it back")
	})
	if _, ok := m.Client().TryWait(30*time.Second, func(l string) bool {
		f := strings.Fields(l)
		return IsCommandOf(l, r.bot+"_", "NICK") && len(f) >= 3 && strings.EqualFold(strings.TrimPrefix(f[2], ":"), r.bot)
	}); !ok {
		t.Fatal("no NICK back to the configured nick seen in the channel")
	}
	r.fromBot.Delete(r.bot)
	for i := int64(50); i < 70; i++ {
		if err := s.Send(ctx, snd, id, i); err != nil {
			t.Fatal(err)
		}
	}
	rep, _ = r.delivered(id, time.Minute)
	rep.Check(t, 0, 0)
	if _, ok := r.fromBot.Load(r.bot); !ok {
		t.Error("no message from the bot's own nick after it took it back")
	}
	if n := LogCount(r.b.Log(), 0, "the bot's nick is taken on the server; using another one"); n != 1 {
		t.Errorf("%d nick-taken lines: a loop", n)
	}
	if n := LogCount(r.b.Log(), 0, "irc connected; joining"); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
	NoPanic(t, r.b.Log())
	Row(t, "bot nick taken at connect", "nick_taken_log_lines", taken, "served_as", r.bot+"_", "nick_back_after_squatter_left", back.Round(time.Millisecond),
		"agree", agree.Round(time.Millisecond),
		"delivered", rep.Delivered, "lost", rep.Lost, "dup", rep.Duplicated, "delivery", took.Round(time.Millisecond))
}

// TestStrictClass1000: the bot connects on the users' port (the flood-limited
// connect class: 50 lines at once, then 20 lines/s, fakelag) with its default
// pacing (20 lines/s, bursts of 40), while workers send 1,000 messages/s
// for 2 s to four IRC users (2 s, not 10: at 20 lines/s 10,000 messages
// take over 8 minutes, beyond the suite's budget). The bot is never quit
// for flooding (no Excess Flood / RecvQ QUIT in an observer's view, no
// disconnect in its log), and everything is delivered; the delivery rate
// and the time to drain are measured.
func TestStrictClass1000(t *testing.T) {
	r := newBridgeRig(t, func(s *IRCServer) string { return s.Users }, "--rate", "20", "--burst", "40")
	ctx := Ctx(t, 8*time.Minute)
	var ids []string
	for i := 1; i <= 4; i++ {
		ids = append(ids, fmt.Sprintf("u%d%s", i, r.tag))
		r.user(ctx, ids[len(ids)-1])
	}
	var sids []string
	for i := 1; i <= 16; i++ {
		sids = append(sids, fmt.Sprintf("s%d%s", i, r.tag))
	}
	senders := r.senders(ctx, sids...)
	qw := r.observer("qw" + r.tag) // sees the bot's QUIT, if any
	r.agree(time.Minute)
	off := len(r.b.Log())

	// One stream per sender and receiver (64), each in order, together
	// 1,000 a second: a send waits for Kafka's acks, so one stream alone
	// does not reach 1,000/s here.
	const perSecond, seconds = 1000, 2
	streams := len(senders) * len(ids)
	perStream := perSecond * seconds / streams
	n := perStream * streams
	t0 := time.Now()
	var wg sync.WaitGroup
	for i, w := range senders {
		for j, to := range ids {
			wg.Add(1)
			go func(k int, w *client.Worker, to string) {
				defer wg.Done()
				interval := time.Duration(float64(time.Second) * float64(streams) / perSecond)
				next := t0.Add(interval * time.Duration(k) / time.Duration(streams))
				for seq := int64(0); seq < int64(perStream); seq++ {
					time.Sleep(time.Until(next))
					next = next.Add(interval)
					if err := r.s.Send(ctx, w, to, seq); err != nil {
						r.sendFailed(w.ID(), to, seq, err)
					}
				}
			}(i*len(ids)+j, w, to)
		}
	}
	wg.Wait()
	sendTook := time.Since(t0)
	sendsDone := time.Now()
	// A command while the backlog drains: its reply waits behind the
	// lines queued for the pacer (a delivery proof does too).
	probe := JoinChannel(t, r.irc.Users, "hp"+r.tag, r.channel, nil).Client()
	asked := time.Now()
	probe.Send("PRIVMSG " + r.bot + " :help")
	_, replied := probe.TryWait(3*time.Minute, func(l string) bool {
		return IsCommandOf(l, r.bot, "NOTICE") && strings.Contains(l, "Commands (private message to me)")
	})
	replyWait := time.Since(asked)
	if !replied {
		t.Errorf("no reply to help within 3 minutes while the backlog drained")
	}
	var rep Report
	WaitFor(t, 6*time.Minute, "every acked message delivered", func() bool {
		rep = r.s.Ledger.Report("irc", nil)
		return rep.Lost == 0
	})
	drain := time.Since(sendsDone)
	total := time.Since(t0)
	time.Sleep(2 * time.Second)
	rep = r.s.Ledger.Report("irc", nil)
	rep.Check(t, 0, 0)
	if rep.Acked != n {
		t.Errorf("acked %d of %d sends", rep.Acked, n)
	}
	flood := regexp.MustCompile(`(?i)excess flood|recvq exceeded|sendq exceeded`)
	quits := CountLines(qw.Client(), func(l string) bool { return IsCommandOf(l, r.bot, "QUIT") })
	if quits > 0 || flood.MatchString(r.b.Log()[off:]) || LogCount(r.b.Log(), off, "irc disconnected") > 0 {
		t.Errorf("the bot was disconnected (%d QUITs seen)", quits)
	}
	NoPanic(t, r.b.Log())
	Row(t, "bot in the strict class, 1,000 msg/s", "sent", n, "send_took", sendTook.Round(time.Millisecond),
		"send_rate", fmt.Sprintf("%.0f/s", float64(n)/sendTook.Seconds()),
		"acked", rep.Acked, "lost", rep.Lost, "dup", rep.Duplicated, "reordered", rep.Reordered,
		"bot_quits", quits, "drain_after_sends", drain.Round(time.Millisecond), "help_reply_during_drain", replyWait.Round(time.Millisecond),
		"rate_msgs_per_s", fmt.Sprintf("%.1f", float64(rep.Delivered)/total.Seconds()))
}

var _ = context.Background
