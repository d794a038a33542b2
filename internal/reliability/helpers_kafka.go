package reliability

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zkchat/zkchat/client"
	"github.com/zkchat/zkchat/protocol"
)

// Seen is how many copies of message seq from→to source saw.
func (l *Ledger) Seen(source, from, to string, seq int64) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen[source][msgKey{pair{from, to}, seq}]
}

// SendEvent is one Suite.Send as a Load made it.
type SendEvent struct {
	From, To   string
	Seq        int64
	Start, End time.Time
	Err        error
}

// Load is a sending workload: several senders, each in a goroutine of its
// own, send ledger messages to receivers in turn (one sequence per pair,
// each send waiting for its acknowledgement) until at least Total were
// attempted and Hold is released. It records every outcome, so a test can
// measure how long sends stalled around a fault and what errors the senders
// got.
type Load struct {
	s         *Suite
	senders   []*client.Worker
	receivers []string
	// Total is how many sends at least; SendTimeout bounds each one;
	// FirstSeq is every pair's first sequence number (loads one after the
	// other on the same pairs need sequences of their own).
	Total       int64
	SendTimeout time.Duration
	FirstSeq    int64

	started, acked, failed atomic.Int64
	hold, stop             chan struct{}
	holdOnce, stopOnce     sync.Once

	mu     sync.Mutex
	events []SendEvent
	wg     sync.WaitGroup
}

// NewLoad prepares a workload of senders to receivers. It does not start.
func (s *Suite) NewLoad(senders []*client.Worker, receivers []string, total int64) *Load {
	return &Load{s: s, senders: senders, receivers: receivers, Total: total,
		SendTimeout: 90 * time.Second, hold: make(chan struct{}), stop: make(chan struct{})}
}

// Start runs the senders; they stop after Total sends once Release was
// called (or ctx ends).
func (l *Load) Start(ctx context.Context) {
	for i, w := range l.senders {
		l.wg.Add(1)
		go func(i int, w *client.Worker) {
			defer l.wg.Done()
			seqs := map[string]int64{}
			for n := i; ctx.Err() == nil; n++ {
				select {
				case <-l.stop:
					return
				default:
				}
				if l.started.Add(1) > l.Total {
					select {
					case <-l.hold:
						return
					default:
					}
				}
				to := l.receivers[n%len(l.receivers)]
				seq := l.FirstSeq + seqs[to]
				seqs[to]++
				sctx, cancel := context.WithTimeout(ctx, l.SendTimeout)
				t0 := time.Now()
				err := l.s.Send(sctx, w, to, seq)
				cancel()
				ev := SendEvent{From: w.ID(), To: to, Seq: seq, Start: t0, End: time.Now(), Err: err}
				if err != nil {
					l.failed.Add(1)
				} else {
					l.acked.Add(1)
				}
				l.mu.Lock()
				l.events = append(l.events, ev)
				l.mu.Unlock()
			}
		}(i, w)
	}
}

// Release lets the senders stop once Total sends were made.
func (l *Load) Release() { l.holdOnce.Do(func() { close(l.hold) }) }

// Wait releases the senders and waits for them to end.
func (l *Load) Wait() {
	l.Release()
	l.wg.Wait()
}

// Stop makes the senders stop after their current send, whatever Total,
// and waits for them.
func (l *Load) Stop() {
	l.stopOnce.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// Acked and Failed count the sends so far.
func (l *Load) Acked() int64  { return l.acked.Load() }
func (l *Load) Failed() int64 { return l.failed.Load() }

// WaitAcked waits until at least n sends were acknowledged, up to d.
func (l *Load) WaitAcked(t testing.TB, n int64, d time.Duration) {
	t.Helper()
	WaitFor(t, d, fmt.Sprintf("%d sends acknowledged (have %d)", n, l.Acked()), func() bool { return l.Acked() >= n })
}

// Events is a copy of every outcome so far, in order of completion.
func (l *Load) Events() []SendEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]SendEvent(nil), l.events...)
}

// Stall is the longest time without any acknowledgement that ends after
// from (so it covers a fault injected at from), and when it ended: the
// time sends recovered. Gaps that end before from are not counted.
func (l *Load) Stall(from time.Time) (gap time.Duration, recovered time.Time) {
	var acks []time.Time
	for _, e := range l.Events() {
		if e.Err == nil {
			acks = append(acks, e.End)
		}
	}
	sort.Slice(acks, func(i, j int) bool { return acks[i].Before(acks[j]) })
	for i := 1; i < len(acks); i++ {
		if acks[i].Before(from) {
			continue
		}
		if g := acks[i].Sub(acks[i-1]); g > gap {
			gap, recovered = g, acks[i]
		}
	}
	return gap, recovered
}

// MaxLatency is the longest single send.
func (l *Load) MaxLatency() time.Duration {
	var m time.Duration
	for _, e := range l.Events() {
		m = max(m, e.End.Sub(e.Start))
	}
	return m
}

// ErrorClasses counts the failed sends by their error text, with the
// topic names, which differ per receiver, cut out.
func (l *Load) ErrorClasses() map[string]int {
	out := map[string]int{}
	for _, e := range l.Events() {
		if e.Err == nil {
			continue
		}
		msg := e.Err.Error()
		for _, r := range l.receivers {
			msg = strings.ReplaceAll(msg, l.s.Topic(r), "<topic>")
			msg = strings.ReplaceAll(msg, r, "<to>")
		}
		msg = strings.ReplaceAll(msg, e.From, "<from>")
		out[msg]++
	}
	return out
}

// Follow runs w's FollowMessages until ctx ends, feeding every message to
// the ledger as source; a read that fails is logged, counted and started
// again after a pause, as a front end would. It returns a function that
// waits for the reader to end and returns how many reads failed.
func (s *Suite) Follow(ctx context.Context, w *client.Worker, source string) (wait func() int) {
	var failures int
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			err := w.FollowMessages(ctx, func(m protocol.Message) error {
				s.Ledger.Saw(source, m.Text)
				return nil
			})
			if err != nil && ctx.Err() == nil {
				failures++
				s.T.Logf("%s: follow failed (restarting in 1 s): %v", w.ID(), err)
				select {
				case <-time.After(time.Second):
				case <-ctx.Done():
				}
			}
		}
	}()
	return func() int { <-done; return failures }
}

// WaitSeen waits up to d until source has seen every message to receiver
// that the senders were told was sent; it returns how long it waited.
func (l *Ledger) WaitSeen(t testing.TB, source, receiver string, d time.Duration) time.Duration {
	t.Helper()
	only := func(_, to string, _ int64) bool { return to == receiver }
	t0 := time.Now()
	for {
		r := l.Report(source, only)
		if r.Lost == 0 {
			return time.Since(t0)
		}
		if time.Since(t0) > d {
			t.Errorf("%s: %d acked messages to %s still unseen after %v", source, r.Lost, receiver, d)
			return time.Since(t0)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
