package reliability

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/zkchat/zkchat/protocol"
)

// kafkaRig is the deployment of the Kafka rows: one manager process (so
// topics get replication factor 3), senders and receivers online as
// in-process workers, the first receiver following its topic.
type kafkaRig struct {
	s         *Suite
	m         *Proc
	senders   []*protocol.Worker
	receivers []*protocol.Worker
	ids       []string // receiver ids
	base      Health
	baseG     int
}

func newKafkaRig(t *testing.T, nSenders int) *kafkaRig {
	s := New(t)
	r := &kafkaRig{s: s, m: s.Manager("m1")}
	ctx := Ctx(t, 2*time.Minute)
	var sids []string
	for i := 1; i <= nSenders; i++ {
		sids = append(sids, fmt.Sprintf("s%d", i))
	}
	r.senders = s.Online(ctx, sids...)
	r.receivers = s.Online(ctx, "r1", "r2")
	for _, w := range r.receivers {
		r.ids = append(r.ids, w.ID())
		WaitFor(t, time.Minute, "topic of "+w.ID(), func() bool {
			ok, err := s.Kafka.TopicExists(ctx, s.Topic(w.ID()))
			return err == nil && ok
		})
	}
	r.base = r.m.Health(t)
	r.baseG = runtime.NumGoroutine()
	return r
}

// check runs the oracles every Kafka row shares: the ledger against what
// Kafka holds (every receiver's topic) and what r1's reader got, the
// manager's health and log. maxReordered is allowed reorderings. A failed
// send that is in Kafka anyway is an error unless ambiguousOK and the
// sender's error said the outcome was unknown (ambiguous): those are
// counted in the reports' FailedSeen and returned as ambiguous.
func (r *kafkaRig) check(t *testing.T, load *Load, maxReordered int, ambiguousOK bool) (rk, rr Report, ambiguous int) {
	t.Helper()
	s := r.s
	for _, id := range r.ids {
		s.Ledger.SawTopic(t, s.Env.Kafka, s.Topic(id))
	}
	rk = s.Ledger.Report("kafka", nil)
	rr = s.Ledger.Report("reader", func(_, to string, _ int64) bool { return to == r.ids[0] })
	var ambReader int
	for _, e := range load.Events() {
		if e.Err == nil || s.Ledger.Seen("kafka", e.From, e.To, e.Seq) == 0 {
			continue
		}
		if !ambiguousOK || !isAmbiguous(e.Err) {
			t.Errorf("%s->%s #%d: the sender was told %q, yet it is in Kafka", e.From, e.To, e.Seq, e.Err)
			continue
		}
		ambiguous++
		if s.Ledger.Seen("reader", e.From, e.To, e.Seq) > 0 {
			ambReader++
		}
	}
	ck, cr := rk, rr
	ck.FailedSeen -= ambiguous
	cr.FailedSeen -= ambReader
	ck.Check(t, 0, maxReordered)
	cr.Check(t, 0, maxReordered)
	r.m.BackToBaseline(t, r.base, 30*time.Second)
	NoPanic(t, r.m.Log())
	return rk, rr, ambiguous
}

// isAmbiguous reports whether a send error says the message may have been
// written after all.
func isAmbiguous(err error) bool {
	return errors.Is(err, protocol.ErrOutcomeUnknown) && strings.Contains(err.Error(), "outcome unknown")
}

// goroutinesBack waits until the test process has at most base+slack
// goroutines (the shared Kafka client's and the workers' included).
func goroutinesBack(t *testing.T, base int, d time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		n := runtime.NumGoroutine()
		if n <= base+max(base/10, 5) {
			return n
		}
		if time.Now().After(deadline) {
			t.Errorf("test process: %d goroutines after the fault, baseline %d", n, base)
			return n
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestKafkaKillBroker: SIGKILL the broker leading a receiver's partition in
// the middle of 10,000 messages, keep sending, restart it. The idempotent
// acks=all producer must lose nothing acknowledged and write nothing twice;
// the receiver's follower reads everything exactly once.
func TestKafkaKillBroker(t *testing.T) {
	t0 := time.Now()
	r := newKafkaRig(t, 4)
	s := r.s
	t.Logf("rig ready in %v", time.Since(t0).Round(time.Millisecond))
	ctx := Ctx(t, 6*time.Minute)
	rctx, stopReader := context.WithCancel(ctx)
	defer stopReader()
	readerDone := s.Follow(rctx, r.receivers[0], "reader")

	const total = 10000
	load := s.NewLoad(r.senders, r.ids, total)
	load.Start(ctx)
	load.WaitAcked(t, total/4, 3*time.Minute)

	victim := s.C.PartitionLeader(t, s.Topic(r.ids[0]))
	killAt := time.Now()
	s.C.Kill(t, victim)
	t.Logf("killed %s (leader of %s's partition) after %d acks", victim, r.ids[0], load.Acked())
	// Sends resume once a new leader is elected: wait for progress, then
	// bring the broker back while sending goes on.
	load.WaitAcked(t, load.Acked()+total/4, 3*time.Minute)
	newLeader := s.C.PartitionLeader(t, s.Topic(r.ids[0]))
	restartAt := time.Now()
	s.C.Start(t, victim)
	restartTook := time.Since(restartAt)
	t.Logf("restarted %s in %v (leader now %s)", victim, restartTook.Round(time.Millisecond), newLeader)
	load.WaitAcked(t, load.Acked()+500, 3*time.Minute) // sends go on after the return
	load.Wait()

	stall, recovered := load.Stall(killAt)
	if recovered.IsZero() {
		t.Fatal("no acknowledgement after the kill")
	}
	recover := recovered.Sub(killAt)
	stallRestart, _ := load.Stall(restartAt)
	t.Logf("sends: %d acked, %d failed %v; longest stall %v (recovered %v after the kill), max latency %v, longest stall from the restart on %v",
		load.Acked(), load.Failed(), load.ErrorClasses(), stall.Round(time.Millisecond), recover.Round(time.Millisecond),
		load.MaxLatency().Round(time.Millisecond), stallRestart.Round(time.Millisecond))
	if load.Failed() > 0 {
		t.Errorf("%d sends failed while a single broker was down (replication factor 3, min.insync.replicas 2)", load.Failed())
	}
	readLag := s.Ledger.WaitSeen(t, "reader", r.ids[0], 2*time.Minute)
	stopReader()
	readFailures := readerDone()
	t.Logf("sending done at %v", time.Since(t0).Round(time.Millisecond))
	rk, rr, _ := r.check(t, load, 0, false)
	g := goroutinesBack(t, r.baseG, 30*time.Second)
	t.Logf("checked at %v", time.Since(t0).Round(time.Millisecond))
	Row(t, "kafka: SIGKILL partition leader", "messages", load.Acked()+load.Failed(), "acked", rk.Acked,
		"failed", rk.Failed, "lost", rk.Lost, "dup", rk.Duplicated, "reordered", rk.Reordered,
		"failed-seen", rk.FailedSeen, "reader lost", rr.Lost, "reader dup", rr.Duplicated,
		"reader failures", readFailures, "reader lag after sends", readLag.Round(time.Millisecond),
		"send stall", stall.Round(time.Millisecond), "recovered after", recover.Round(time.Millisecond),
		"broker restart", restartTook.Round(time.Millisecond), "stall after restart", stallRestart.Round(time.Millisecond),
		"goroutines", fmt.Sprintf("%d->%d", r.baseG, g))
}

// TestKafkaPauseLeader: SIGSTOP the broker leading a receiver's partition
// for 15 s while 10,000 messages are sent, then SIGCONT it. The frozen
// broker keeps its connections open, so clients learn nothing until the
// controller fences it (broker session timeout) or their requests time
// out. Same oracles as TestKafkaKillBroker.
func TestKafkaPauseLeader(t *testing.T) {
	r := newKafkaRig(t, 4)
	s := r.s
	ctx := Ctx(t, 6*time.Minute)
	rctx, stopReader := context.WithCancel(ctx)
	defer stopReader()
	readerDone := s.Follow(rctx, r.receivers[0], "reader")

	const total = 10000
	const pause = 15 * time.Second
	load := s.NewLoad(r.senders, r.ids, total)
	load.Start(ctx)
	load.WaitAcked(t, total/4, 3*time.Minute)

	victim := s.C.PartitionLeader(t, s.Topic(r.ids[0]))
	pauseAt := time.Now()
	resume := s.C.Pause(t, victim)
	before := load.Acked()
	time.Sleep(pause)
	during := load.Acked() - before
	resume()
	resumeAt := time.Now()
	newLeader := s.C.PartitionLeader(t, s.Topic(r.ids[0]))
	t.Logf("paused %s (leader of %s's partition) for %v: %d acks meanwhile; leader after: %s",
		victim, r.ids[0], pause, during, newLeader)
	load.WaitAcked(t, load.Acked()+500, 3*time.Minute)
	load.Wait()

	stall, recovered := load.Stall(pauseAt)
	if recovered.IsZero() {
		t.Fatal("no acknowledgement after the pause")
	}
	recover := recovered.Sub(pauseAt)
	stallResume, _ := load.Stall(resumeAt)
	t.Logf("sends: %d acked, %d failed %v; longest stall %v (recovered %v after the pause began), max latency %v, longest stall from SIGCONT on %v",
		load.Acked(), load.Failed(), load.ErrorClasses(), stall.Round(time.Millisecond), recover.Round(time.Millisecond),
		load.MaxLatency().Round(time.Millisecond), stallResume.Round(time.Millisecond))
	if load.Failed() > 0 {
		t.Errorf("%d sends failed while a single broker was frozen for %v (shorter than the 30 s delivery timeout)", load.Failed(), pause)
	}
	readLag := s.Ledger.WaitSeen(t, "reader", r.ids[0], 2*time.Minute)
	stopReader()
	readFailures := readerDone()
	rk, rr, _ := r.check(t, load, 0, false)
	g := goroutinesBack(t, r.baseG, 30*time.Second)
	Row(t, "kafka: SIGSTOP partition leader 15 s", "messages", load.Acked()+load.Failed(), "acked", rk.Acked,
		"failed", rk.Failed, "lost", rk.Lost, "dup", rk.Duplicated, "reordered", rk.Reordered,
		"failed-seen", rk.FailedSeen, "reader lost", rr.Lost, "reader dup", rr.Duplicated,
		"reader failures", readFailures, "reader lag after sends", readLag.Round(time.Millisecond),
		"acks during pause", during, "leader moved", newLeader != victim,
		"send stall", stall.Round(time.Millisecond), "recovered after", recover.Round(time.Millisecond),
		"stall after SIGCONT", stallResume.Round(time.Millisecond), "goroutines", fmt.Sprintf("%d->%d", r.baseG, g))
}

// deliveryTimeout is the producer's delivery.timeout.ms in protocol/kafka.go:
// a send with no deadline of its own (the CLI's) fails after it.
const deliveryTimeout = 30 * time.Second

// clearSendError: what a sender may be told when Kafka does not answer.
var clearSendError = regexp.MustCompile(`timed out|outcome unknown|cannot reach Kafka`)

// TestKafkaAllBrokersDown: freeze all three brokers (SIGSTOP) for longer
// than the producer's delivery timeout while six senders keep sending.
// Every sender must get a clear error, none a false success: every send
// reported done is in Kafka once the brokers are back, and a send reported
// failed is absent unless its error said the outcome was unknown. Then
// sends work again.
func TestKafkaAllBrokersDown(t *testing.T) {
	r := newKafkaRig(t, 6)
	s := r.s
	ctx := Ctx(t, 6*time.Minute)
	rctx, stopReader := context.WithCancel(ctx)
	defer stopReader()
	readerDone := s.Follow(rctx, r.receivers[0], "reader")

	const total = 2000
	outage := deliveryTimeout + 10*time.Second
	load := s.NewLoad(r.senders, r.ids, total)
	load.Start(ctx)
	load.WaitAcked(t, 500, 3*time.Minute)

	pauseAt := time.Now()
	resume := s.C.Pause(t, KafkaMembers...)
	before := load.Acked()
	time.Sleep(outage)
	during, failedDuring := load.Acked()-before, load.Failed()
	resume()
	resumeAt := time.Now()
	t.Logf("all brokers frozen for %v: %d acks, %d failures meanwhile", outage, during, failedDuring)
	load.WaitAcked(t, load.Acked()+500, 3*time.Minute)
	load.Wait()

	_, recovered := load.Stall(pauseAt)
	recover := recovered.Sub(resumeAt)
	classes := load.ErrorClasses()
	t.Logf("sends: %d acked, %d failed; errors: %v; back %v after SIGCONT, max latency %v",
		load.Acked(), load.Failed(), classes, recover.Round(time.Millisecond), load.MaxLatency().Round(time.Millisecond))
	if during > 0 {
		t.Errorf("%d sends acknowledged while every broker was frozen", during)
	}
	// Every sender was told, clearly.
	perSender := map[string]int{}
	for _, e := range load.Events() {
		if e.Err == nil {
			continue
		}
		perSender[e.From]++
		if !clearSendError.MatchString(e.Err.Error()) {
			t.Errorf("%s->%s #%d: unclear error %q", e.From, e.To, e.Seq, e.Err)
		}
	}
	for _, w := range r.senders {
		if perSender[w.ID()] == 0 {
			t.Errorf("%s got no error although Kafka was away for %v", w.ID(), outage)
		}
	}
	readLag := s.Ledger.WaitSeen(t, "reader", r.ids[0], 2*time.Minute)
	stopReader()
	readFailures := readerDone()
	rk, rr, amb := r.check(t, load, 5, true)
	g := goroutinesBack(t, r.baseG, 30*time.Second)
	Row(t, "kafka: all brokers SIGSTOP 40 s", "messages", load.Acked()+load.Failed(), "acked", rk.Acked,
		"failed", rk.Failed, "lost", rk.Lost, "dup", rk.Duplicated, "reordered", rk.Reordered,
		"failed-seen (ambiguous)", amb, "reader lost", rr.Lost, "reader dup", rr.Duplicated,
		"reader failures", readFailures, "reader lag after sends", readLag.Round(time.Millisecond),
		"senders told", fmt.Sprintf("%d/%d", len(perSender), len(r.senders)),
		"recovered after SIGCONT", recover.Round(time.Millisecond), "goroutines", fmt.Sprintf("%d->%d", r.baseG, g))
}
