package bridge

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zkchat/zkchat/client"
	"github.com/zkchat/zkchat/protocol"
)

// worker is what the bridge needs of a user's chat client; client.Worker
// is the real one.
type worker interface {
	Register(ctx context.Context) (protocol.Status, error)
	Quit(ctx context.Context) (protocol.Status, error)
	GoOnline(ctx context.Context) error
	GoOffline()
	SendMessage(ctx context.Context, to, text string) error
	FollowMessagesWith(ctx context.Context, opts client.ReadOptions, fn func(protocol.Message) error) error
	// Lost is closed when the presence begun by GoOnline ends by itself
	// (unregistered elsewhere, online in another session, refused);
	// LostErr says why.
	Lost() <-chan struct{}
	LostErr() error
}

var _ worker = (*client.Worker)(nil)

// user is one nick's zkchat side. Its goroutine (run) is the user's event
// loop: it alone talks to ZooKeeper and Kafka for the user, in order: the
// commands from its private messages, and bringing its presence in line
// with the channel (reconcile). It owns the user's delivery goroutine and
// retry timer. It ends when the nick is offline, out of the channel and has
// nothing queued, or when Run's context ends.
//
// Locks: mu guards the fields below it; it is taken after members.mu, never
// before, and held only to read or write them. The fields after those are
// the run goroutine's own.
type user struct {
	b  *Bridge
	id string
	w  worker

	ops  chan func(context.Context) // the nick's commands, in order
	kick chan struct{}              // cap 1: presence may need work
	// refusedLines counts PRIVMSGs to the nick the server answered with 401
	// (no such nick): the nick left before the bridge knew. The delivery's
	// proof fails while it is not zero, so those messages come again instead
	// of being committed unseen.
	refusedLines atomic.Int64

	mu         sync.Mutex
	nick       string      // current nick, for delivery
	in         bool        // in the channel (or leaving in a netsplit)
	splitTimer *time.Timer // set while the nick is away in a netsplit
	// The three reasons not to try going online again until something
	// changes. notRegistered: going online failed for want of registration
	// (or quit); cleared by register and by the nick joining again.
	// elsewhere: the id is online in another client; cleared by the nick
	// joining again (or a register). refused: the nick is not logged in to
	// the account its id is bound to; cleared when its account changes or
	// the WHOX replies are in.
	notRegistered bool
	elsewhere     bool
	refused       bool
	// greet: the nick joined and its owner has not tried to take it online
	// since. With SharedChannel, "you are not registered" is said only
	// then: not by a bridge that takes the user over from another.
	greet bool
	// account the nick is logged in to, from its JOIN or ACCOUNT events
	// while it is in the channel (forgotten when it leaves).
	account      string
	accountKnown bool
	accountGen   uint64      // counts forgetAccountLocked: a WHOIS answer from before is not kept
	retry        *time.Timer // the one pending "try again" poke
	retryAt      time.Time
	stopped      bool // run has ended: no more retries

	// run's own.
	quitAsked time.Time // the last unconfirmed quit (doQuit)
	pending   *pending  // a msg whose pieces are being joined (doPiece)
	// wasOnline: the user has been online in this run; away: it went
	// offline without leaving (an outage) and was told so, and is told
	// when it is back.
	wasOnline, away bool
	online          bool
	onlineNow       atomic.Bool // online, for Stats (read by other goroutines)
	staleTries      int         // see goOnline: tries against a node held here
	delivery        context.CancelFunc
	delDone         chan struct{}
}

func newUser(b *Bridge, id string) *user {
	return &user{b: b, id: id, w: b.newWorker(id),
		ops: make(chan func(context.Context), 64), kick: make(chan struct{}, 1)}
}

func (u *user) poke() {
	select {
	case u.kick <- struct{}{}:
	default:
	}
}

// later pokes the user after d (or sooner, if a poke is pending sooner).
func (u *user) later(d time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	at := time.Now().Add(d)
	if u.stopped || (u.retry != nil && u.retryAt.Before(at)) {
		return
	}
	if u.retry != nil {
		u.retry.Stop()
	}
	u.retryAt = at
	u.retry = time.AfterFunc(d, func() {
		u.mu.Lock()
		u.retry = nil
		u.mu.Unlock()
		u.poke()
	})
}

func (u *user) setNick(nick string) {
	u.mu.Lock()
	u.nick = nick
	u.mu.Unlock()
}

func (u *user) currentNick() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.nick
}

// setIn records whether the nick is in the channel.
func (u *user) setIn(in bool) {
	u.mu.Lock()
	if u.splitTimer != nil {
		u.splitTimer.Stop()
		u.splitTimer = nil
	}
	if in && !u.in {
		// A new join tries again, and is told again.
		u.notRegistered, u.elsewhere, u.refused = false, false, false
		u.greet = true
	}
	if !in && u.in {
		u.forgetAccountLocked()
	}
	u.in = in
	u.mu.Unlock()
	u.poke()
}

// splitLeave keeps a user who quit in a netsplit online for grace, so that
// a split and its heal do not flap everyone offline and online. The timer is
// the user's until it fires or setIn stops it.
func (u *user) splitLeave(grace time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.splitTimer != nil {
		return
	}
	u.b.log.Info("user left in a netsplit; keeping online", "id", u.id, "grace", grace)
	u.splitTimer = time.AfterFunc(grace, func() {
		u.mu.Lock()
		u.splitTimer = nil
		u.in = false
		u.forgetAccountLocked()
		u.mu.Unlock()
		u.poke()
	})
	u.poke() // reconcile pauses the delivery at once
}

func (u *user) setAccount(account string) {
	u.mu.Lock()
	if !u.accountKnown || u.account != account {
		u.refused = false
	}
	u.account, u.accountKnown = account, true
	u.mu.Unlock()
	u.poke()
}

// forgetAccountLocked drops the account known from the nick's channel
// events when it leaves the channel: the server tells the bot nothing more
// about it (account-notify reaches only common channels), and whoever holds
// the nick next may be someone else. u.mu is held.
func (u *user) forgetAccountLocked() {
	u.account, u.accountKnown = "", false
	u.accountGen++
}

// clearRefused has a user refused for its account try again; the others
// have nothing to do.
func (u *user) clearRefused() {
	u.mu.Lock()
	was := u.refused
	u.refused = false
	u.mu.Unlock()
	if was {
		u.poke()
	}
}

// registered records a register or a quit: whether the id is registered now.
func (u *user) registered(yes bool) {
	u.mu.Lock()
	u.notRegistered, u.elsewhere = !yes, false
	u.mu.Unlock()
}

// idle reports whether the user has nothing left to do (see leave); its
// own goroutine calls it with members.mu held.
func (u *user) idle() bool {
	u.mu.Lock()
	in, waiting := u.in, u.splitTimer != nil
	u.mu.Unlock()
	return !u.online && !in && !waiting && len(u.ops) == 0 && len(u.kick) == 0
}

// run is the user's event loop.
func (u *user) run(ctx context.Context) {
	defer func() {
		u.mu.Lock()
		u.stopped = true
		if u.retry != nil {
			u.retry.Stop()
			u.retry = nil
		}
		u.mu.Unlock()
	}()
	for {
		var lost <-chan struct{}
		if u.online {
			lost = u.w.Lost()
		}
		select {
		case op := <-u.ops:
			op(ctx)
		case <-u.kick:
		case <-lost:
			u.presenceLost(ctx)
		case <-ctx.Done():
			if u.pending != nil {
				u.b.out.postNotice(u.pending.nick, "Not sent: the bridge is stopping; send it again when it is back.")
				u.pending = nil
			}
			u.goOffline()
			// Online or not, the client may hold a session (a command, a
			// GoOnline that failed): nothing of the user outlives Run.
			u.w.GoOffline()
			return
		}
		u.b.duePending(ctx, u)
		if u.reconcile(ctx) {
			return
		}
	}
}

// reconcile brings the worker's presence and delivery in line with the
// channel; it reports true when the user is gone (offline, out of the
// channel, nothing queued) and has left the table.
func (u *user) reconcile(ctx context.Context) bool {
	// With SharedChannel, only the user's owner serves it: another bridge
	// leaves it offline here, silently (its owner says what there is to
	// say), and takes it when the owners change (ring.go).
	owned, elsewhere := u.b.owns(u.id), u.b.ownerElsewhere(u.id) != ""
	u.mu.Lock()
	want := u.in && !u.notRegistered && !u.elsewhere && !u.refused && owned
	nick, away := u.nick, u.splitTimer != nil
	if elsewhere {
		u.greet = false // the owner greets
	}
	u.mu.Unlock()
	// Checked at every reconcile, so an account change (ACCOUNT event, WHOX
	// reply) takes an impostor offline too.
	if want && !u.accountAllows(ctx, nick) {
		want = false
	}
	switch {
	case want && !u.online:
		if !u.goOnline(ctx, nick) {
			return false
		}
	case !want && u.online:
		u.goOffline()
	}
	u.steerDelivery(ctx, away)
	if u.online || len(u.ops) > 0 || u.pending != nil || !u.b.leave(u) {
		return false
	}
	// A command (register, who, ...) may have opened a session while the
	// nick was not in the channel: close it, or every visitor leaks one.
	u.w.GoOffline()
	return true
}

// accountAllows reports whether nick may be online as the user now (see
// verifyAs); when not, it says why (once) or retries later.
func (u *user) accountAllows(ctx context.Context, nick string) bool {
	b := u.b
	ok, why, err := b.verifyAs(ctx, u, nick, account{})
	switch {
	case errors.Is(err, errAccountUnknown):
		// Not known is not "not logged in": neither refused nor admitted.
		b.log.Warn("account check: the server did not say; retrying", "id", u.id, "err", err)
		u.later(5 * time.Second)
		return false
	case err != nil:
		b.log.Error("account check failed", "id", u.id, "err", err)
		u.later(5 * time.Second)
		return false
	case !ok:
		b.log.Warn("nick not logged in to its bound account: refused", "id", u.id, "nick", nick)
		u.mu.Lock()
		u.refused = true
		u.mu.Unlock()
		b.out.notice(nick, why)
		return false
	}
	return true
}

// goOnline takes the worker online, at most SessionConcurrency users at a
// time; false if ctx ended while waiting for a turn.
func (u *user) goOnline(ctx context.Context, nick string) bool {
	b := u.b
	select {
	case b.sem <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	err := u.w.GoOnline(ctx)
	<-b.sem
	u.mu.Lock()
	greet := u.greet || !b.cfg.SharedChannel
	u.greet = false
	u.mu.Unlock()
	switch {
	case err == nil:
		u.online, u.staleTries, u.wasOnline = true, 0, true
		u.onlineNow.Store(true)
		b.log.Info(msgOnline, "id", u.id, "nick", nick)
		if u.away {
			u.away = false
			b.out.notice(nick, "You are back online.")
		}
	case errors.Is(err, protocol.ErrNotRegistered):
		u.mu.Lock()
		u.notRegistered = true
		u.mu.Unlock()
		if greet {
			b.out.notice(nick, textNotRegistered(nick, b.irc.GetNick()))
		}
	case errors.Is(err, protocol.ErrAlreadyOnline) && (b.cfg.SharedChannel || u.staleTries < 60) && b.heldHere(ctx, u.id):
		// With SharedChannel, another bridge of the channel holds the
		// node: the user's owner before, which lets go once it sees the
		// bridges change. Without, an earlier run of this bridge that was
		// killed: its session ends within the session timeout, and the
		// node with it. Retried, silently: after 250 ms doubling to 2 s;
		// with SharedChannel every 10 s after about two minutes, without
		// it given up after 60 tries, in case a twin with the same nick and
		// channel really runs on another server.
		u.staleTries++
		if u.staleTries <= 3 && u.clearStale(ctx) {
			return true // the bridge's own node from before an outage, deleted: again, at once
		}
		wait := min(250*time.Millisecond<<min(u.staleTries-1, 4), 2*time.Second)
		if u.staleTries > 60 {
			wait = 10 * time.Second
		}
		b.warn.Warn("user's presence still held by another bridge of the channel or an earlier run of this one; retrying", "id", u.id)
		if u.wasOnline && !b.cfg.SharedChannel {
			// Back from an outage (the bridge's ZooKeeper session ended):
			// the node of its session before lasts until ZooKeeper ends
			// that session. Meanwhile the user is offline: say so, once.
			u.tellAway(nick)
		}
		u.later(wait)
	case errors.Is(err, protocol.ErrAlreadyOnline):
		u.mu.Lock()
		u.elsewhere = true // no retry in a loop; a new join retries
		u.mu.Unlock()
		b.out.notice(nick, textOnlineElsewhere(u.id))
	default:
		b.log.Error("going online failed", "id", u.id, "err", err)
		b.out.notice(nick, textOnlineFailed(err))
		u.later(5 * time.Second)
	}
	return true
}

// heldHere reports, from one read of id's /online node, whether it was
// made for this bridge's channel: with SharedChannel by any bridge of it
// (another owner's, or an earlier run's); without, by a bridge with this
// nick, an earlier run of this bridge (two live bridges cannot share a
// nick on one server). A node gone meanwhile counts too: going online is
// then retried.
func (b *Bridge) heldHere(ctx context.Context, id string) bool {
	found, here := b.nodeHere(ctx, id)
	return here || !found
}

// nodeHere reads id's /online node once: whether it exists (or could not be
// read), and whether it exists and was made for this bridge's channel, as
// heldHere says.
func (b *Bridge) nodeHere(ctx context.Context, id string) (found, here bool) {
	meta, found, err := b.dir.OnlineMeta(ctx, id)
	if err != nil {
		return true, false
	}
	return found, found && b.metaHere(meta)
}

// metaHere reports whether an /online node with meta was made for this
// bridge's channel: with SharedChannel by any bridge of it; without, by a
// bridge with this nick (two live bridges cannot share a nick on one
// server, so that is this bridge or an earlier run of it).
func (b *Bridge) metaHere(meta onlineMeta) bool {
	return meta.Via == "irc" && b.sameChannel(meta.Channel) && (b.cfg.SharedChannel || meta.Bridge == b.cfg.Nick)
}

// ownNodeExists reports whether u's /online node exists and was made for
// this bridge's channel.
func (u *user) ownNodeExists(ctx context.Context) bool {
	found, here := u.b.nodeHere(ctx, u.id)
	return found && here
}

// clearStale deletes u's /online node if the bridge's own session before
// an outage made it (directory.ClearStale), and pokes u to go online again
// at once; false if it did not. Until then /online/<id> says online while
// the user cannot send: who and msg would disagree for up to the session
// timeout.
func (u *user) clearStale(ctx context.Context) bool {
	cleared, err := u.b.dir.ClearStale(ctx, u.id)
	if err != nil {
		u.b.warn.Warn("deleting the user's node of the bridge's session before an outage failed", "id", u.id, "err", err)
		return false
	}
	if cleared {
		u.b.log.Info("deleted the user's node of the bridge's session before an outage", "id", u.id)
		u.poke()
	}
	return cleared
}

// tellAway tells nick, once until it is back online, that it is offline
// for a moment because of an outage (goOnline tells it when it is back).
func (u *user) tellAway(nick string) {
	if !u.away {
		u.away = true
		u.b.out.notice(nick, textAwayOutage(u.b.sessionTimeout()))
	}
}

// presenceLost handles a presence that ended by itself (client.Worker
// keeps it while it can): the user is offline, is told why, and is not put
// back online in a loop: unregistered, they register again; online
// elsewhere, they rejoin; anything else is retried later.
func (u *user) presenceLost(ctx context.Context) {
	why := u.w.LostErr()
	u.goOffline()
	nick := u.currentNick()
	u.b.warn.Warn("user's presence lost", "id", u.id, "err", why)
	switch {
	case errors.Is(why, protocol.ErrAlreadyOnline) && u.b.cfg.SharedChannel && u.b.heldHere(ctx, u.id):
		// Another bridge of the channel took the user (this bridge's
		// session expired meanwhile, say): whoever owns it now serves it;
		// retried in case that is this bridge.
		u.later(2 * time.Second)
	case errors.Is(why, protocol.ErrAlreadyOnline) && !u.b.cfg.SharedChannel && u.ownNodeExists(ctx):
		// The node is this bridge's own (two live bridges cannot share a
		// nick on one server), of its session before an outage: not
		// "online elsewhere", which would keep the user offline until it
		// rejoins. Deleted at once if that session was this process's;
		// else (ZooKeeper ends it within the session timeout) the user is
		// told, once, and going online is retried (goOnline).
		if u.clearStale(ctx) {
			return
		}
		u.tellAway(nick)
		u.later(250 * time.Millisecond)
	case errors.Is(why, protocol.ErrNotRegistered):
		u.mu.Lock()
		u.notRegistered = true
		u.mu.Unlock()
		u.b.out.notice(nick, textUnregisteredElsewhere(u.id, u.b.irc.GetNick()))
	case errors.Is(why, protocol.ErrAlreadyOnline):
		u.mu.Lock()
		u.elsewhere = true
		u.mu.Unlock()
		u.b.out.notice(nick, textOnlineElsewhere(u.id))
	default:
		u.away = true // told; told again when back
		u.b.out.notice(nick, textPresenceLost(why))
		u.later(30 * time.Second)
	}
}

func (u *user) goOffline() {
	u.stopDelivery()
	if u.online {
		u.w.GoOffline()
		u.online = false
		u.onlineNow.Store(false)
		u.b.log.Info(msgOffline, "id", u.id)
	}
}
