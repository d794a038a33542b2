package bridge

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"github.com/lrstanley/girc"
)

// lineSender is what the outbox needs of the IRC connection: girc's
// *Client, or a test's recorder.
type lineSender interface {
	Send(*girc.Event)
}

// outbox is the one way out for every line the bot writes (notices,
// deliveries, PINGs): a bounded queue, numbered, written by one goroutine
// (run) at most rate lines a second with bursts of burst, and the PING/PONG
// delivery proofs that say how far the server has read it.
//
// Locks: mu guards every field below it. It is a leaf: nothing else is
// locked, and nothing blocks (no IRC write, no wait for room), while it is
// held, so the PONG handler taking it never waits on the queue.
type outbox struct {
	send     lineSender
	interval time.Duration // between lines when paced; 0: unpaced
	burst    int
	capacity int // lines that may wait; enqueue waits for room beyond it

	mu    sync.Mutex
	queue []*girc.Event
	// seq numbers the lines queued so far: a line's number says where it
	// stands in the queue, which is what makes one PONG the proof of every
	// line numbered below its PING.
	seq  uint64
	more chan struct{}   // cap 1: the queue is no longer empty
	room chan struct{}   // closed (and replaced) when a full queue has room
	conn context.Context // the connection proofs go out on; nil: none
	last *ping           // the latest PING queued
	pong map[string]*ping
}

// ping is a delivery proof in flight: the PONG for token proves that the
// server read every line numbered up to seq.
type ping struct {
	token string
	seq   uint64
	done  chan struct{} // closed by the PONG, or when the connection ends
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
		more: make(chan struct{}, 1), room: make(chan struct{}), pong: map[string]*ping{}}
	if rate > 0 {
		o.interval = time.Duration(float64(time.Second) / rate)
	}
	return o
}

// outQueue is how many lines may wait in the outbox. Every command reply and
// every delivery proof waits behind the whole queue (len/rate seconds), and
// a lost connection sends its content again, so it holds one burst plus 2 s
// of output (at least 64 lines): enough to keep the writer busy, no more.
func outQueue(rate float64, burst int) int {
	if rate <= 0 {
		return 1024 // unpaced: the queue drains as fast as the socket takes it
	}
	return max(64, burst+int(2*rate))
}

// drainTime is how long the writer takes to send a full queue.
func (o *outbox) drainTime() time.Duration {
	return time.Duration(o.capacity) * o.interval
}

// run writes the queue until ctx ends. It is the only goroutine that writes
// to the IRC connection for the outbox, and its owner (Bridge.Run) stops it
// last, after every user goroutine.
func (o *outbox) run(ctx context.Context) {
	var next time.Time
	for {
		e := o.pop()
		if e == nil {
			select {
			case <-o.more:
				continue
			case <-ctx.Done():
				return
			}
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
		o.send.Send(e)
	}
}

// pop takes the queue's first line, nil if it is empty.
func (o *outbox) pop() *girc.Event {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.queue) == 0 {
		return nil
	}
	e := o.queue[0]
	o.queue[0] = nil
	o.queue = o.queue[1:]
	if len(o.queue) == o.capacity-1 { // it was full
		close(o.room)
		o.room = make(chan struct{})
	}
	return e
}

// pushLocked queues e and numbers it; o.mu is held.
func (o *outbox) pushLocked(e *girc.Event) {
	o.queue = append(o.queue, e)
	o.seq++
	select {
	case o.more <- struct{}{}:
	default:
	}
}

// enqueue queues e, waiting for room while the queue is full; false if ctx
// ended first.
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

// post queues e at once, past the capacity if it must: for the IRC handlers,
// which must never wait. What they post is bounded by what the server
// sends.
func (o *outbox) post(e *girc.Event) {
	o.mu.Lock()
	o.pushLocked(e)
	o.mu.Unlock()
}

// notice queues text to nick as NOTICEs, waiting for room.
func (o *outbox) notice(nick, text string) {
	for _, line := range Split(Sanitize(text), lineRoom(nick)) {
		o.enqueue(context.Background(), &girc.Event{Command: girc.NOTICE, Params: []string{nick, line}})
	}
}

// postNotice is notice for the IRC handlers: it never waits.
func (o *outbox) postNotice(nick, text string) {
	for _, line := range Split(Sanitize(text), lineRoom(nick)) {
		o.post(&girc.Event{Command: girc.NOTICE, Params: []string{nick, line}})
	}
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
	o.conn = nil
	for tok, p := range o.pong {
		close(p.done)
		delete(o.pong, tok)
	}
}

// pong records the server's answer to the PING with token.
func (o *outbox) pongFor(token string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if p, ok := o.pong[token]; ok {
		p.ok = true
		close(p.done)
		delete(o.pong, token)
	}
}

// prove returns once the server has read every line queued before the call:
// it queues a PING with a fresh token behind them (or joins one already
// queued behind them) and waits for its PONG. It fails at once if the
// connection ends first, or if there is none.
func (o *outbox) prove(ctx context.Context) error {
	o.mu.Lock()
	mine := o.seq // every line the caller queued is numbered <= mine
	var p *ping
	for {
		if o.conn == nil || o.conn.Err() != nil {
			o.mu.Unlock()
			return errors.New("irc disconnected")
		}
		if l := o.last; l != nil && l.seq >= mine && !l.failed() {
			// A PING behind the caller's lines is queued already (the line
			// numbered mine is a PING, not one of the caller's): under load
			// one PING proves the lines of many users.
			p = l
			break
		}
		if len(o.queue) < o.capacity {
			var tok [8]byte
			_, _ = crand.Read(tok[:])
			p = &ping{token: "zkchat-" + hex.EncodeToString(tok[:]), done: make(chan struct{}), conn: o.conn}
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
			return errors.New("irc disconnected before the server answered")
		}
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
