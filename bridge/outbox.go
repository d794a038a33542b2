package bridge

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/lrstanley/girc"

	"github.com/zkchat/zkchat/internal/ratelog"
)

// lineSender is what the outbox needs of the IRC connection: girc's
// *Client, or a test's recorder.
type lineSender interface {
	Send(*girc.Event)
}

// girc's Client.write drops a line it could not hand to its send loop
// within 30 s (its queue full: the server is not reading), without a word.
// A Send that took lineLostAfter or longer may have lost its line; one that
// took less has not (the only other drop, while disconnected, happens only
// after the DISCONNECTED handler has shut the outbox: see lost).
const lineLostAfter = 25 * time.Second

// Bounds of the bot's replies (notices) waiting in the outbox: per target,
// so that one nick flooding the bot with commands fills only its own queue,
// and in all.
const (
	repliesPerTarget = 32 // a help is 6 lines
	repliesMax       = 1024
)

// outbox is the one way out for every line the bot writes, written by one
// goroutine (run) at most rate lines a second with bursts of burst, from two
// queues taken in turn, so that neither holds up the other:
//
//   - the proof path: deliveries' lines and the PINGs that prove them
//     (prove), numbered, bounded; enqueue waits for room (the deliveries and
//     users' goroutines own that wait).
//   - the replies: the bot's notices to users, bounded per target and in
//     all, never waiting in an IRC handler (postNotice drops what does not
//     fit, counted and logged rate-limited); a user's own goroutine waits
//     for room in its target's queue (notice).
//
// A PONG proves the proof-path lines numbered below its PING only if every
// one of them was handed to the connection: a Send that may have lost its
// line (lineLostAfter) fails every proof on that connection, and a proof
// counts only on the connection its caller's lines were queued under.
//
// Locks: mu guards every field below it. It is a leaf: nothing else is
// locked, and nothing blocks (no IRC write, no wait for room), while it is
// held, so the PONG handler taking it never waits on the queue.
type outbox struct {
	send     lineSender
	interval time.Duration // between lines when paced; 0: unpaced
	burst    int
	capacity int // proof-path lines that may wait; enqueue waits for room beyond it
	// lostAfter: a Send that took this long may have dropped its line.
	lostAfter time.Duration
	// onLost is called, by the writer and with no lock held, when a
	// proof-path line may have been lost: the connection is not taking
	// lines; the bridge reconnects.
	onLost func()
	log    *slog.Logger
	warn   *ratelog.Logger // lines a flood repeats
	// trace, if set (Bridge.trace), is told of each proof-path line the
	// writer hands to the connection.
	trace func(stage traceStage, text string)

	mu    sync.Mutex
	queue []*girc.Event
	// seq numbers the proof-path lines queued so far: a line's number says
	// where it stands in the queue, which is what makes one PONG the proof
	// of every line numbered below its PING.
	seq  uint64
	more chan struct{} // cap 1: a queue is no longer empty
	room chan struct{} // closed (and replaced) when a full proof path has room
	// The replies, by target, written in turn (targets); nreplies in all.
	replies   map[string][]*girc.Event
	targets   []string
	nreplies  int
	replyRoom chan struct{}   // closed (and replaced) whenever a reply is written
	replyTurn bool            // the writer takes a reply next, if one waits
	stopping  <-chan struct{} // Run's context: notice stops waiting when it ends
	// dropped counts the reply lines dropped for want of room.
	dropped uint64
	conn    context.Context // the connection proofs go out on; nil: none
	last    *ping           // the latest PING queued
	pong    map[string]*ping
}

// ping is a delivery proof in flight: the PONG for token proves that the
// server read every line numbered up to seq.
type ping struct {
	token string
	seq   uint64
	done  chan struct{} // closed by the PONG, or when the proof fails
	conn  context.Context
	ok    bool // the PONG came; set under outbox.mu before done is closed
}

// failed reports whether the PING can no longer prove anything: the
// connection it went out on has ended, or it was shut without a PONG.
// Under outbox.mu, or after done is closed.
func (p *ping) failed() bool {
	select {
	case <-p.done:
		return !p.ok || p.conn.Err() != nil
	default:
		return p.conn.Err() != nil
	}
}

func newOutbox(send lineSender, rate float64, burst int) *outbox {
	o := &outbox{send: send, burst: max(burst, 1), capacity: outQueue(rate, burst),
		lostAfter: lineLostAfter,
		more:      make(chan struct{}, 1), room: make(chan struct{}), pong: map[string]*ping{},
		replies: map[string][]*girc.Event{}, replyRoom: make(chan struct{})}
	if rate > 0 {
		o.interval = time.Duration(float64(time.Second) / rate)
	}
	discard := slog.New(slog.DiscardHandler)
	o.setLogger(discard, ratelog.New(discard, time.Second))
	return o
}

// setLogger sets where the outbox logs (before it runs); warn is the
// bridge's rate-limited logger, for the lines a flood repeats.
func (o *outbox) setLogger(log *slog.Logger, warn *ratelog.Logger) {
	o.log, o.warn = log, warn
}

// outQueue is how many proof-path lines may wait in the outbox. Every
// delivery proof waits behind the whole queue, and a lost connection sends
// its content again, so it holds one burst plus 2 s of output (at least 64
// lines): enough to keep the writer busy, no more.
func outQueue(rate float64, burst int) int {
	if rate <= 0 {
		return 1024 // unpaced: the queue drains as fast as the socket takes it
	}
	return max(64, burst+int(2*rate))
}

// drainTime is how long the writer takes to send a full proof path alone;
// replies waiting too take every other line, doubling it at most.
func (o *outbox) drainTime() time.Duration {
	return time.Duration(o.capacity) * o.interval
}

// stopWaiting makes notice give up waiting for room once done is closed
// (Run's context): the users' goroutines must end with it.
func (o *outbox) stopWaiting(done <-chan struct{}) {
	o.mu.Lock()
	o.stopping = done
	o.mu.Unlock()
}

// run writes the queues until ctx ends. It is the only goroutine that
// writes to the IRC connection for the outbox, and its owner (Bridge.Run)
// stops it last, after every user goroutine.
func (o *outbox) run(ctx context.Context) {
	var next time.Time
	for {
		e, proof := o.pop()
		if e == nil {
			select {
			case <-o.more:
				continue
			case <-ctx.Done():
				return
			}
		}
		if e.Command == girc.PING && !o.pending(e.Last()) {
			continue // its proof failed already: nothing to write it for
		}
		if o.interval > 0 {
			now := time.Now()
			if floor := now.Add(-time.Duration(o.burst) * o.interval); next.Before(floor) {
				next = floor
			}
			if d := next.Sub(now); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return
				}
			}
			next = next.Add(o.interval)
		}
		if proof && o.trace != nil {
			o.trace(traceWritten, e.Last())
		}
		start := time.Now()
		o.send.Send(e)
		if took := time.Since(start); proof && o.lostAfter > 0 && took >= o.lostAfter {
			o.lost(e, took)
		}
	}
}

// pop takes the next line, nil if none waits: from the proof path and the
// replies in turn, and the replies' targets in turn; proof: it is the proof
// path's.
func (o *outbox) pop() (e *girc.Event, proof bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.nreplies > 0 && (o.replyTurn || len(o.queue) == 0) {
		o.replyTurn = false
		t := o.targets[0]
		q := o.replies[t]
		e, q[0] = q[0], nil
		o.targets = o.targets[1:]
		if q = q[1:]; len(q) == 0 {
			delete(o.replies, t)
		} else {
			o.replies[t] = q
			o.targets = append(o.targets, t)
		}
		o.nreplies--
		close(o.replyRoom)
		o.replyRoom = make(chan struct{})
		return e, false
	}
	if len(o.queue) == 0 {
		return nil, false
	}
	o.replyTurn = true
	e = o.queue[0]
	o.queue[0] = nil
	o.queue = o.queue[1:]
	if len(o.queue) == o.capacity-1 { // it was full
		close(o.room)
		o.room = make(chan struct{})
	}
	return e, true
}

// pending reports whether the PING with token still waits for its PONG.
func (o *outbox) pending(token string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.pong[token]
	return ok
}

// wakeLocked tells the writer a line waits; o.mu is held.
func (o *outbox) wakeLocked() {
	select {
	case o.more <- struct{}{}:
	default:
	}
}

// pushLocked queues e on the proof path and numbers it; o.mu is held.
func (o *outbox) pushLocked(e *girc.Event) {
	o.queue = append(o.queue, e)
	o.seq++
	o.wakeLocked()
}

// enqueue queues e on the proof path, waiting for room while it is full;
// false if ctx ended first.
func (o *outbox) enqueue(ctx context.Context, e *girc.Event) bool {
	for {
		o.mu.Lock()
		if len(o.queue) < o.capacity {
			o.pushLocked(e)
			o.mu.Unlock()
			return true
		}
		room := o.room
		o.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return false
		}
	}
}

// replyFitsLocked reports whether n more reply lines to nick fit; o.mu is
// held.
func (o *outbox) replyFitsLocked(nick string, n int) bool {
	return len(o.replies[nick])+n <= repliesPerTarget && o.nreplies+n <= repliesMax
}

// replyLocked queues a reply line to nick; it fits; o.mu is held.
func (o *outbox) replyLocked(nick, line string) {
	if len(o.replies[nick]) == 0 {
		o.targets = append(o.targets, nick)
	}
	o.replies[nick] = append(o.replies[nick], &girc.Event{Command: girc.NOTICE, Params: []string{nick, line}})
	o.nreplies++
	o.wakeLocked()
}

// drop counts n reply lines to nick dropped for want of room, and logs it
// (rate-limited); o.mu is not held.
func (o *outbox) drop(nick string, n int) {
	o.mu.Lock()
	o.dropped += uint64(n)
	total := o.dropped
	o.mu.Unlock()
	o.warn.Warn("the bot's replies outrun its output: replies dropped", "last_target", nick,
		"dropped_total", total, "per_target", repliesPerTarget, "max", repliesMax)
}

// notice queues text to nick as NOTICEs, waiting for room in nick's replies
// (the caller is the user's goroutine, which owns that wait); it drops what
// is left once Run's context ends.
func (o *outbox) notice(nick, text string) {
	for _, line := range Split(Sanitize(text), lineRoom(nick)) {
		for {
			o.mu.Lock()
			if o.replyFitsLocked(nick, 1) {
				o.replyLocked(nick, line)
				o.mu.Unlock()
				break
			}
			room, stopping := o.replyRoom, o.stopping
			o.mu.Unlock()
			select {
			case <-room:
				continue
			case <-stopping:
			}
			o.drop(nick, 1)
			break
		}
	}
}

// postNotice is notice for the IRC handlers: it never waits. The whole
// notice is queued, or, if nick's replies have no room for it, dropped and
// counted.
func (o *outbox) postNotice(nick, text string) {
	lines := Split(Sanitize(text), lineRoom(nick))
	o.mu.Lock()
	if o.replyFitsLocked(nick, len(lines)) {
		for _, line := range lines {
			o.replyLocked(nick, line)
		}
		o.mu.Unlock()
		return
	}
	o.mu.Unlock()
	o.drop(nick, len(lines))
}

// length is how many lines wait in the outbox, on the proof path and as
// replies.
func (o *outbox) length() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.queue) + o.nreplies
}

// droppedReplies is how many reply lines were dropped for want of room.
func (o *outbox) droppedReplies() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.dropped
}

// open starts taking proofs on the connection conn (the bot is in the
// channel and has read its member list).
func (o *outbox) open(conn context.Context) {
	o.mu.Lock()
	o.conn = conn
	o.mu.Unlock()
}

// shut fails every proof in flight: the connection they went out on has
// ended (conn's owner cancels it), or the bot lost the channel. Proofs fail
// at once until the next open.
func (o *outbox) shut() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.shutLocked()
}

func (o *outbox) shutLocked() {
	o.conn = nil
	for tok, p := range o.pong {
		close(p.done)
		delete(o.pong, tok)
	}
}

// lost: the proof-path line e may not have reached the connection (girc
// drops a line it cannot queue in 30 s). Every PING in flight is numbered
// after it, and a later one on this connection may be too, so proofs fail
// until the next open, and the bridge reconnects (onLost): what was not
// committed comes again. A line girc dropped for want of a connection is
// covered already: girc drops only once its DISCONNECTED handler has shut
// the outbox, and a proof counts only on the connection its lines were
// queued under (prove).
func (o *outbox) lost(e *girc.Event, took time.Duration) {
	o.mu.Lock()
	o.shutLocked()
	o.mu.Unlock()
	o.log.Error("the irc connection took a line only after a long wait, and may have dropped it; "+
		"delivery proofs on this connection fail and the bridge reconnects",
		"command", e.Command, "took", took.Round(time.Millisecond))
	if o.onLost != nil {
		o.onLost()
	}
}

// pongFor records the server's answer to the PING with token.
func (o *outbox) pongFor(token string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if p, ok := o.pong[token]; ok {
		p.ok = true
		close(p.done)
		delete(o.pong, token)
	}
}

// prove returns once the server has read every proof-path line queued
// before the call, on conn, the connection the caller queued its lines
// under: it queues a PING with a fresh token behind them (or joins one
// already queued behind them) and waits for its PONG. It fails at once if
// that connection has ended (or the outbox is on another, or on none), and
// when it ends, or a line may have been lost, before the PONG.
func (o *outbox) prove(ctx context.Context, conn context.Context) error {
	o.mu.Lock()
	mine := o.seq // every line the caller queued is numbered <= mine
	var p *ping
	for {
		if o.conn == nil || o.conn != conn || conn.Err() != nil {
			o.mu.Unlock()
			return errors.New("irc disconnected")
		}
		if l := o.last; l != nil && l.conn == conn && l.seq >= mine && !l.failed() {
			// A PING behind the caller's lines is queued already (the line
			// numbered mine is a PING, not one of the caller's): under load
			// one PING proves the lines of many users.
			p = l
			break
		}
		if len(o.queue) < o.capacity {
			var tok [8]byte
			_, _ = crand.Read(tok[:])
			p = &ping{token: "zkchat-" + hex.EncodeToString(tok[:]), done: make(chan struct{}), conn: conn}
			o.pushLocked(&girc.Event{Command: girc.PING, Params: []string{p.token}})
			p.seq = o.seq
			o.pong[p.token], o.last = p, p
			break
		}
		room := o.room
		o.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		o.mu.Lock()
	}
	o.mu.Unlock()
	select {
	case <-p.done:
		if p.failed() {
			return errors.New("irc disconnected (or a line may have been lost) before the server answered")
		}
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
