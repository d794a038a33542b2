package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lrstanley/girc"

	"github.com/zkchat/zkchat/client"
	"github.com/zkchat/zkchat/protocol"
)

// deliveries counts the delivery goroutines, so that a stopping bridge
// keeps its IRC connection until they have proved and committed their last
// lines (drain). Atomic: the user goroutines start them, the deliveries end
// them, Run's stop reads them.
type deliveries struct {
	running  atomic.Int32
	unproved atomic.Int64 // deliveries that stopped before proving their last lines
}

// drain waits, up to d, until no delivery runs. Run's context has ended, so
// every user goroutine is stopping its delivery, which proves and commits
// the lines it wrote while the connection is still up; quitting IRC first
// would fail that proof, and a clean restart would send the last lines
// again.
func (ds *deliveries) drain(log *slog.Logger, d time.Duration) {
	n := ds.running.Load()
	if n == 0 {
		return
	}
	start, unproved := time.Now(), ds.unproved.Load()
	log.Info("stopping: deliveries proving their last lines", "deliveries", n)
	for ds.running.Load() > 0 {
		if time.Since(start) > d {
			log.Warn("stopping: deliveries still running; what they did not commit comes again after the restart",
				"deliveries", ds.running.Load(), "waited", d)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	if failed := ds.unproved.Load() - unproved; failed > 0 {
		log.Warn("stopping: deliveries ended, some without proving their last lines; those come again after the restart",
			"unproved", failed, "took", time.Since(start).Round(time.Millisecond))
		return
	}
	log.Info("stopping: deliveries committed", "took", time.Since(start).Round(time.Millisecond))
}

// steerDelivery starts, restarts or stops the user's delivery goroutine to
// match its state: one runs while the user is online, the bridge is synced,
// the nick is not away in a netsplit and Run has not begun stopping. Only
// the user's goroutine calls it.
func (u *user) steerDelivery(ctx context.Context, away bool) {
	b := u.b
	if u.delivery != nil {
		select {
		case <-u.delDone: // ended by an error: restart below
			u.delivery()
			u.delivery, u.delDone = nil, nil
		default:
		}
	}
	// No delivery while the nick is away in a netsplit: the server would
	// answer every line with 401 and, the PING still answered, the lines
	// would be committed unseen. The user stays online (messages are
	// accepted) and gets them when the split heals.
	if away {
		u.stopDelivery()
	}
	synced, conn := b.connection()
	// Not once Run's context has ended: drain may have counted the
	// deliveries already, and a new one would lose its last proof to QUIT.
	if u.online && synced && !away && u.delivery == nil && ctx.Err() == nil {
		dctx, stop := context.WithCancel(conn)
		u.delivery, u.delDone = stop, make(chan struct{})
		b.deliveries.running.Add(1) // before it runs: drain must not miss it
		go u.deliver(dctx, conn, u.delDone)
	}
}

// stopDelivery stops the user's delivery and waits for it to end.
func (u *user) stopDelivery() {
	if u.delivery != nil {
		u.delivery()
		<-u.delDone
		u.delivery, u.delDone = nil, nil
	}
}

// deliver follows the user's topic and writes each message to the nick. The
// read position is committed only after the server answered a PING queued
// behind the lines on conn, the connection they went out on (outbox.prove);
// if it drops first, or a line may have been lost, the messages come again
// (at least once, never lost). Its owner is the user's goroutine
// (steerDelivery, stopDelivery).
func (u *user) deliver(ctx, conn context.Context, done chan struct{}) {
	b := u.b
	defer b.deliveries.running.Add(-1)
	defer close(done)
	u.refusedLines.Store(0) // from an earlier delivery: this one starts at the last commit
	var via proofSet        // the puppets this delivery wrote through
	// The Kafka timestamps of the messages written since the last proof
	// (for Stats); the committer's proof takes them.
	var timesMu sync.Mutex
	var times []time.Time
	proof := func(ctx context.Context) error {
		timesMu.Lock()
		batch := times
		times = nil
		timesMu.Unlock()
		if err := b.out.prove(ctx, conn); err != nil { // on the connection its lines went out on
			return err
		}
		if err := via.prove(ctx); err != nil {
			return err
		}
		// The server answers in order: a 401 for a line comes before the
		// PONG that proves it, so it has been counted by now.
		if n := u.refusedLines.Swap(0); n > 0 {
			return fmt.Errorf("the server refused %d line(s) to %s: no such nick", n, u.id)
		}
		b.count.proved(batch, time.Now())
		return nil
	}
	opts := client.ReadOptions{BeforeCommit: proof, BeforeCommitTimeout: b.proofTimeout(), CommitSlots: b.commitSlots}
	err := u.w.FollowMessagesWith(ctx, opts, func(m protocol.Message) error {
		if b.trace != nil {
			b.trace(traceConsumed, m.Text)
		}
		timesMu.Lock()
		times = append(times, m.Time)
		timesMu.Unlock()
		nick := u.currentNick()
		// A verified message from a user shown as a puppet comes from the
		// puppet's nick, as the user typed it.
		if m.Trust == protocol.Verified || b.cfg.UnverifiedMark == "" {
			if pp, pconn := b.puppetOf(m.From); pp != nil {
				if err := pp.deliver(ctx, pconn, nick, m.Text); err != nil {
					return err
				}
				via.add(pp.out, pconn)
				return nil
			}
		}
		// Key and value are what any producer may have written: the
		// sender is shown so that it cannot pass for another, the text
		// escaped and cut after protocol.MaxMessageBytes, with a marker.
		from := b.showSender(m.From)
		if m.Trust != protocol.Verified {
			from += b.cfg.UnverifiedMark
		}
		text := fmt.Sprintf(b.cfg.Format, from, protocol.ShowText(m.Text, ircFormatting))
		for _, line := range Split(text, lineRoom(nick)) {
			if !b.out.enqueue(ctx, &girc.Event{Command: girc.PRIVMSG, Params: []string{nick, line}}) {
				return context.Cause(ctx)
			}
		}
		return nil
	})
	switch {
	case err != nil && ctx.Err() == nil:
		b.log.Error("delivery stopped; restarting from the last commit", "id", u.id, "err", err)
		u.later(2 * time.Second) // reconcile restarts it
	case err != nil:
		// Stopped (a disconnect, a netsplit, the bridge stopping) before its
		// last lines were proved: they come again from the last commit.
		b.deliveries.unproved.Add(1)
		b.log.Info("delivery stopped before its last lines were proved; they come again", "id", u.id, "err", err)
	}
}

// showSender is how a delivered message shows its sender, the record's key:
// a key that is not a valid id by protocol.ShowSender (quoted, escaped: it
// cannot look like a nick); a valid id by its nick (senderName) if that
// nick maps back to the id, else as the id itself. An id such as
// "x_1b_0d_0a" decodes to bytes no nick has, and "a_5b" to "a[", a nick
// that under rfc1459 is "a{", the id "a_7b": shown decoded, either would
// forge a sender; the id cannot.
func (b *Bridge) showSender(key string) string {
	if protocol.ValidateID(key) != nil {
		return protocol.ShowSender(key)
	}
	name := b.senderName(key)
	if id, err := NickToID(name, b.caseMapping()); err != nil || id != key {
		return key
	}
	return name
}

// proofSet is the puppets' outboxes a delivery wrote through since their
// last proof, each with the connection its lines went out on. The delivery
// adds to it, its committer proves it (BeforeCommit): hence the lock, a
// leaf.
type proofSet struct {
	mu   sync.Mutex
	outs map[*outbox]proofEntry
}

type proofEntry struct {
	conn context.Context
	n    uint64 // lines added through it: a proof clears the entry only if none came since
}

func (s *proofSet) add(o *outbox, conn context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.outs == nil {
		s.outs = map[*outbox]proofEntry{}
	}
	e := s.outs[o]
	if e.conn != nil && e.conn != conn {
		// Lines on an earlier connection of the puppet, not proved: that
		// proof fails, and the messages come again.
		conn = e.conn
	}
	s.outs[o] = proofEntry{conn: conn, n: e.n + 1}
}

// prove proves every outbox in the set on its connection, and forgets the
// ones nothing was added to meanwhile.
func (s *proofSet) prove(ctx context.Context) error {
	s.mu.Lock()
	snap := maps.Clone(s.outs)
	s.mu.Unlock()
	for o, e := range snap {
		if err := o.prove(ctx, e.conn); err != nil {
			return fmt.Errorf("through a puppet: %w", err)
		}
	}
	s.mu.Lock()
	for o, e := range snap {
		if s.outs[o] == e {
			delete(s.outs, o)
		}
	}
	s.mu.Unlock()
	return nil
}
