package reliability

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/protocol"
)

// TestNetsplit: the bridge (a process, with its built-in manager, on the
// replicated cluster) sits on irc1 of a private linked pair; six zkchat
// users sit on irc2, across the link, and in-process users send them ledger
// messages all along: before, during and after a real netsplit (SQUIT).
// One of the six quits for good while the network is split; the network
// heals 8 s after the split, within the bridge's 15 s split grace.
//
// What must hold: no flapping (no "user offline"/"user online" in the
// bridge's log for the users who stayed, and /online, polled every 100 ms,
// never loses them); the one who quit goes offline when the grace ends, not
// before; /online agrees with NAMES after the heal (time measured); every
// acked message reaches the users who stayed, in order, duplicates within
// the redelivery window (below); Kafka holds every acked message once; the
// bridge's health is back to its baseline; no panic.
//
// Redelivery window: the bridge pauses a user's delivery when it sees the
// user's netsplit QUIT, and commits a read position only after the server
// answered a PING queued behind the lines and refused none of them (401).
// So after the heal it delivers again exactly the messages from the
// committed offset on; those of them the user had already seen before the
// split are the window (RedeliveryWindow, read once every delivery paused).
//
// The second subtest runs the same with hidden server names in the split
// QUIT ("*.net *.split", ZKCHAT_IRCL_HIDESPLITS=yes).
func TestNetsplit(t *testing.T) {
	t.Run("server-names", func(t *testing.T) { netsplitRow(t, "irc netsplit") })
	t.Run("hidden-names", func(t *testing.T) {
		netsplitRow(t, "irc netsplit, hidden server names", "ZKCHAT_IRCL_HIDESPLITS=yes")
	})
}

func netsplitRow(t *testing.T, row string, ircEnv ...string) {
	const (
		grace    = 15 * time.Second
		healAt   = 8 * time.Second // after the split
		quitAt   = 3 * time.Second // after the split
		nUsers   = 6
		interval = 50 * time.Millisecond // per sender
	)
	s := New(t)
	l := testenv.IRCLinked(t, ircEnv...)
	ctx := Ctx(t, 5*time.Minute)
	tag := testenv.Tag()
	ns := &netsplitRig{t: t, s: s, bot: "zn" + tag, channel: "#zn" + tag, copies: NewCopies(),
		obsNick: "ob" + tag, workers: map[string]bool{}}
	ns.b = s.Bridge("bridge", l.Bot1, ns.bot, ns.channel, "--split-grace", grace.String())
	if _, ok := ns.b.WaitLog(3*time.Minute, 0, syncedRE); !ok {
		t.Fatalf("bridge not in %s", ns.channel)
	}
	// The observer sits on the bridge's side: its NAMES is what the
	// bridge's server knows.
	ns.obs = JoinChannel(t, l.Addr1, ns.obsNick, ns.channel, nil)

	var ids []string
	members := map[string]*Member{}
	for i := range nUsers {
		id := fmt.Sprintf("u%d%s", i+1, tag)
		m := JoinChannel(t, l.Addr2, id, ns.channel, ns.onText)
		m.Register(ns.bot)
		members[id] = m
		ids = append(ids, id)
	}
	for _, id := range ids {
		ns.waitOnline(id, true, 2*time.Minute)
	}
	quitter, stayers := ids[nUsers-1], ids[:nUsers-1]
	senderIDs := []string{"s1" + tag, "s2" + tag, "s3" + tag}
	for _, id := range senderIDs {
		ns.workers[id] = true
	}
	senders := s.Online(ctx, senderIDs...)
	agreeBefore := WaitAgree(t, time.Minute, ns.online, ns.names)

	snd := s.StartSending(senders, ids, 0, interval)
	// Steady state: every user's delivery running, messages flowing.
	WaitFor(t, time.Minute, "messages to every user delivered", func() bool {
		for _, id := range ids {
			if s.Ledger.Report("irc", func(_, to string, _ int64) bool { return to == id }).Delivered == 0 {
				return false
			}
		}
		return true
	})
	time.Sleep(2 * time.Second)
	base := ns.b.LiveHealth(t)
	okBefore, _ := snd.Counts()

	// The split.
	off := len(ns.b.Log())
	split := time.Now()
	splitTook := l.Split(t)
	// The split QUIT as a non-oper on the bridge's side sees it (opers see
	// the server names even when they are hidden).
	reason := "none seen"
	if q, ok := ns.obs.Client().TryWait(10*time.Second, func(line string) bool { return IsCommandOf(line, ids[0], "QUIT") }); ok {
		_, reason, _ = strings.Cut(q[1:], " :")
	}
	hidden := slices.Contains(ircEnv, "ZKCHAT_IRCL_HIDESPLITS=yes")
	if hidden && reason != "*.net *.split" || !hidden && !(strings.Contains(reason, l.Name1) && strings.Contains(reason, l.Name2)) {
		t.Errorf("split QUIT reason on irc1 %q (hidden names %v)", reason, hidden)
	}
	// Poll /online from now until the quitter is gone: the users who
	// stayed must never miss.
	poll := ns.pollOnline(stayers)
	// Every user's netsplit QUIT reached the bridge and paused their
	// delivery; then their committed offsets bound the redelivery.
	// Not WaitFor: a bridge that misses the split still gets its row
	// (flaps, /online misses) below.
	for LogCount(ns.b.Log(), off, "user left in a netsplit") < nUsers && time.Since(split) < 5*time.Second {
		time.Sleep(50 * time.Millisecond)
	}
	if n := LogCount(ns.b.Log(), off, "user left in a netsplit"); n != nUsers {
		t.Errorf("the bridge logged %d users leaving in the netsplit, want %d", n, nUsers)
	}
	seenSplit := time.Since(split)
	time.Sleep(time.Second) // pauses done; lines in flight arrived
	stop := ns.stopPoint(stayers)

	time.Sleep(time.Until(split.Add(quitAt)))
	members[quitter].Client().Send("QUIT :bye")
	quitSent := time.Since(split)

	time.Sleep(time.Until(split.Add(healAt)))
	okSplit, _ := snd.Counts()
	heal := time.Now()
	joinTook := l.Join(t)

	// The quitter goes offline when the grace ends (counted from the
	// bridge seeing the split QUIT, which is after split), not before.
	ns.waitOnline(quitter, false, grace+time.Minute)
	offAfter := time.Since(split)
	if offAfter < grace {
		t.Errorf("%s offline %v after the split, before the %v grace", quitter, offAfter, grace)
	}
	agree := WaitAgree(t, time.Minute, ns.online, ns.names)
	agreeAfterHeal := time.Since(heal)
	misses, polls := poll()
	if misses > 0 {
		t.Errorf("/online lost a user who stayed %d times in %d polls during the split and the grace", misses, polls)
	}
	// The count below can see such lines: each user went online once,
	// logged, before the split.
	for _, id := range ids {
		if n := ns.logFor(0, id, `msg="user online"`) - ns.logFor(off, id, `msg="user online"`); n != 1 {
			t.Errorf("%d user online lines for %s before the split, want 1", n, id)
		}
	}
	flaps := ns.flaps(off, stayers)
	if flaps > 0 {
		t.Errorf("%d user online/offline lines in the bridge log for users who stayed, since the split", flaps)
	}
	if n := ns.logFor(off, quitter, `msg="user offline"`); n != 1 {
		t.Errorf("%d user offline lines for %s (who quit in the split), want 1", n, quitter)
	}

	// After the heal messages flow a while longer, then the senders stop.
	time.Sleep(3 * time.Second)
	snd.Stop()
	okAll, failed := snd.Counts()
	if okSplit-okBefore == 0 {
		t.Errorf("no send acked during the split")
	}

	stayed := func(_, to string, _ int64) bool { return slices.Contains(stayers, to) }
	// Not WaitFor: when messages are lost the row still reports how many.
	t0 := time.Now()
	for s.Ledger.Report("irc", stayed).Lost > 0 && time.Since(t0) < time.Minute {
		time.Sleep(100 * time.Millisecond)
	}
	drain := time.Since(t0)
	time.Sleep(time.Second) // late copies
	rep := s.Ledger.Report("irc", stayed)
	win := ns.window(stayers, stop)
	rep.Check(t, win, 0)
	for _, id := range ids {
		s.Ledger.SawTopic(t, s.Env.Kafka, s.Topic(id))
	}
	krep := s.Ledger.Report("kafka", nil)
	krep.Check(t, 0, 0)
	// A message to the quitter acked before it went offline is in Kafka
	// (above); none after: those sends were refused.
	ns.mu.Lock()
	notices := slices.Clone(ns.notices)
	ns.mu.Unlock()
	if len(notices) > 0 {
		t.Errorf("the bot's failure notices to the users: %q", notices)
	}
	h := ns.b.BackToBaselineLive(t, base, time.Minute)
	NoPanic(t, ns.b.Log())
	t.Logf("split took %v, the bridge saw all %d QUITs %v after it; quit sent %v after it; join took %v; sends acked: %d before, %d during the split, %d in all, %d failed",
		splitTook.Round(time.Millisecond), nUsers, seenSplit.Round(time.Millisecond), quitSent.Round(time.Millisecond),
		joinTook.Round(time.Millisecond), okBefore, okSplit-okBefore, okAll, failed)
	Row(t, row, "quit_reason", fmt.Sprintf("%q", reason), "users", nUsers, "grace", grace, "split_for", healAt, "agree_before", agreeBefore.Round(time.Millisecond),
		"acked", rep.Acked, "acked_during_split", okSplit-okBefore, "lost", rep.Lost, "dup", rep.Duplicated, "window", win,
		"reordered", rep.Reordered, "kafka_lost", krep.Lost, "kafka_dup", krep.Duplicated,
		"flaps", flaps, "online_misses", fmt.Sprintf("%d/%d", misses, polls),
		"quitter_offline_after_split", offAfter.Round(time.Millisecond),
		"agree_after_heal", agreeAfterHeal.Round(time.Millisecond), "agree_wait", agree.Round(time.Millisecond),
		"drain", drain.Round(time.Millisecond), "health", h.String(), "baseline", base.String())
}

// netsplitRig is TestNetsplit's deployment: the bridge process, its
// channel, an observer for NAMES, and what the users received.
type netsplitRig struct {
	t       *testing.T
	s       *Suite
	b       *Proc
	bot     string
	channel string
	obsNick string
	obs     *Member
	copies  *Copies
	workers map[string]bool // in-process senders: in /online, not in IRC
	mu      sync.Mutex
	notices []string
}

func (ns *netsplitRig) onText(from, text string) {
	if !strings.EqualFold(from, ns.bot) {
		return
	}
	ns.s.Ledger.Saw("irc", text)
	ns.copies.Saw(text)
	if strings.HasPrefix(text, "Not sent") || strings.HasPrefix(text, "Maybe not sent") || strings.Contains(text, "failed") {
		ns.mu.Lock()
		ns.notices = append(ns.notices, time.Now().Format("15:04:05.000")+" "+text)
		ns.mu.Unlock()
	}
}

func (ns *netsplitRig) waitOnline(id string, want bool, d time.Duration) time.Duration {
	ns.t.Helper()
	return ns.s.WaitOnline(ns.t, id, want, d)
}

// online is /online without the in-process senders.
func (ns *netsplitRig) online() ([]string, error) {
	ids, err := ns.s.OnlineIDs()
	var out []string
	for _, id := range ids {
		if !ns.workers[id] {
			out = append(out, id)
		}
	}
	return out, err
}

// names is the channel's NAMES (on irc1) as ids, without the bot and the
// observer.
func (ns *netsplitRig) names() ([]string, error) {
	nicks, err := ns.obs.Client().Names(ns.channel)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, n := range nicks {
		if strings.EqualFold(n, ns.bot) || strings.EqualFold(n, ns.obsNick) {
			continue
		}
		ids = append(ids, strings.ToLower(n))
	}
	return ids, nil
}

// pollOnline checks every 100 ms that every id is in /online, until the
// returned function is called; it returns the polls that missed one (an
// error reading counts as a miss) and the polls made.
func (ns *netsplitRig) pollOnline(ids []string) (stop func() (misses, polls int)) {
	done := make(chan struct{})
	var misses, polls int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			on, err := ns.s.OnlineIDs()
			polls++
			for _, id := range ids {
				if err != nil || !slices.Contains(on, id) {
					misses++
					if misses <= 3 {
						ns.t.Logf("poll %d: %s not in /online %v (err %v)", polls, id, on, err)
					}
					break
				}
			}
		}
	}()
	return func() (int, int) { close(done); wg.Wait(); return misses, polls }
}

// logFor counts the bridge's log lines after offset that contain msg and
// name id.
func (ns *netsplitRig) logFor(offset int, id, msg string) int {
	re := regexp.MustCompile(`(?m)^.*` + regexp.QuoteMeta(msg) + `.*\bid=` + regexp.QuoteMeta(id) + `\b.*$`)
	l := ns.b.Log()
	if offset > len(l) {
		return 0
	}
	return len(re.FindAllString(l[offset:], -1))
}

// flaps counts "user online" and "user offline" lines after offset for ids.
func (ns *netsplitRig) flaps(offset int, ids []string) int {
	n := 0
	for _, id := range ids {
		n += ns.logFor(offset, id, `msg="user online"`) + ns.logFor(offset, id, `msg="user offline"`)
	}
	return n
}

// stopPoint records, per id, the offset the bridge committed and what the
// users had seen (every delivery paused).
func (ns *netsplitRig) stopPoint(ids []string) map[string]stopPoint {
	out := map[string]stopPoint{}
	seen := ns.copies.Snapshot()
	for _, id := range ids {
		out[id] = stopPoint{seen: seen, committed: Committed(ns.t, ns.s.Env.Kafka,
			protocol.Topics{Prefix: ns.s.Env.Prefix}.Group(id), ns.s.Topic(id))}
	}
	return out
}

// window is the redelivery window of the split for ids (see
// RedeliveryWindow): the messages seen before the split at or after each
// user's committed offset.
func (ns *netsplitRig) window(ids []string, stops map[string]stopPoint) int {
	n := 0
	for _, id := range ids {
		n += RedeliveryWindow(stops[id].seen, Offsets(ns.t, ns.s.Env.Kafka, ns.s.Topic(id)), stops[id].committed)
	}
	return n
}
