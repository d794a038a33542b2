package bridge

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/lrstanley/girc"
)

// members is the channel as the bridge sees it (is the bot in it, who else
// is) and the users table: a user for every nick the bridge knows.
//
// Locks: mu guards every field below it. It is taken before a user's mu,
// never after, and never held across a ZooKeeper or Kafka call or a wait for
// room in the outbox (the handlers take it).
type members struct {
	wg sync.WaitGroup // the users' goroutines; Run waits for them

	mu    sync.Mutex
	users map[string]*user // by id
	run   context.Context  // Run's: the users' goroutines run under it
	names []string         // NAMES replies being collected
	// synced: connected, in the channel, member list read. conn ends when
	// that does (a disconnect, the bot losing the channel); deliveries run
	// under it.
	synced   bool
	conn     context.Context
	connStop context.CancelFunc
	syncedCh chan struct{} // closed at each successful resync; see Synced
	// rejoin is the one JOIN pending after the bot lost the channel or the
	// server refused its JOIN (a second refusal must not start a second
	// chain of retries); joinBackoff the wait after the next refusal.
	rejoin      *time.Timer
	joinBackoff time.Duration
	// rejoinRun counts the rejoin timers not stopped before they fired,
	// until their callback ends: stop waits for it, so none runs after Run.
	rejoinRun sync.WaitGroup
}

func (m *members) init() {
	m.users = map[string]*user{}
	m.syncedCh = make(chan struct{})
	m.conn, m.connStop = context.WithCancel(context.Background())
	m.connStop()
}

// start records Run's context, under which users' goroutines run.
func (m *members) start(ctx context.Context) {
	m.mu.Lock()
	m.run = ctx
	m.mu.Unlock()
}

// stop takes every user offline, stops the rejoin timer and waits for the
// users' goroutines (Run's context has ended, so they are ending).
func (m *members) stop() {
	m.mu.Lock()
	for _, u := range m.users {
		u.setIn(false)
	}
	if m.rejoin != nil {
		if m.rejoin.Stop() {
			m.rejoinRun.Done()
		}
		m.rejoin = nil
	}
	m.mu.Unlock()
	m.wg.Wait()
	m.rejoinRun.Wait() // a callback that fired already: it finds rejoin gone
}

// Synced returns a channel closed at the next time the bridge has joined the
// channel and read its member list, and whether it is synced now.
func (b *Bridge) Synced() (<-chan struct{}, bool) {
	b.m.mu.Lock()
	defer b.m.mu.Unlock()
	return b.m.syncedCh, b.m.synced
}

// connection returns whether the bridge is synced, and the context of that
// state.
func (b *Bridge) connection() (bool, context.Context) {
	b.m.mu.Lock()
	defer b.m.mu.Unlock()
	return b.m.synced, b.m.conn
}

// lookup returns the user of id, nil if the bridge has none.
func (b *Bridge) lookup(id string) *user {
	b.m.mu.Lock()
	defer b.m.mu.Unlock()
	return b.m.users[id]
}

// userLocked returns the user of id, making and starting it if there is
// none; m.mu is held.
func (b *Bridge) userLocked(id string) *user {
	if u := b.m.users[id]; u != nil {
		return u
	}
	ctx := b.m.run
	if ctx == nil {
		ctx = context.Background()
	}
	u := newUser(b, id)
	b.m.users[id] = u
	b.m.wg.Add(1)
	go func() { defer b.m.wg.Done(); u.run(ctx) }()
	return u
}

// leave removes u from the table if it has nothing left to do: out of the
// channel, not waiting out a netsplit, nothing queued. Under m.mu, which
// presence and command hold while they hand a user work, so nothing is
// handed to a user that is gone.
func (b *Bridge) leave(u *user) bool {
	b.m.mu.Lock()
	defer b.m.mu.Unlock()
	if !u.idle() {
		return false
	}
	delete(b.m.users, u.id)
	return true
}

// presence records that nick is (or is not) in the channel; split: it left
// in a netsplit.
func (b *Bridge) presence(nick string, in, split bool) {
	cm := b.caseMapping()
	id, err := NickToID(nick, cm)
	if err != nil {
		if in && b.owns(nickKey(nick, cm)) { // told by one bridge of a shared channel
			b.out.postNotice(nick, textBadNickJoined(err, b.cfg.Nick))
		}
		return
	}
	b.m.mu.Lock()
	defer b.m.mu.Unlock()
	u := b.m.users[id]
	if u == nil && !in {
		return
	}
	u = b.userLocked(id)
	if in {
		u.setNick(nick)
	}
	b.kickPuppets() // a nick of the channel is a person, not a puppet
	// Under m.mu: the user's goroutine may be about to leave the table.
	if split && !in {
		u.splitLeave(b.cfg.SplitGrace)
	} else {
		u.setIn(in)
	}
}

// setAccount records the services account nick is logged in to ("*" or
// "": none), and has its presence checked again.
func (b *Bridge) setAccount(nick, account string) {
	if account == "*" {
		account = ""
	}
	id, err := NickToID(nick, b.caseMapping())
	if err != nil {
		return
	}
	b.m.mu.Lock()
	defer b.m.mu.Unlock()
	u := b.m.users[id]
	if u == nil {
		u = b.userLocked(id)
		u.setNick(nick)
	}
	u.setAccount(account)
}

// recheckAccounts has the accounts of the users refused for their account
// checked again when the WHOX replies for mask are in (girc asks for the
// channel when the bot joins, and for a nick when it joins): the replies
// carry their accounts. A mask that is a nick concerns its user alone: with
// every user looked at on each, 10,000 JOINs cost 10^8 wake-ups and kept the
// handlers' goroutine (and so every command) seconds behind.
func (b *Bridge) recheckAccounts(mask string) {
	if !girc.IsValidChannel(mask) {
		if id, err := NickToID(mask, b.caseMapping()); err == nil {
			if u := b.lookup(id); u != nil {
				u.clearRefused()
			}
		}
		return
	}
	b.m.mu.Lock()
	defer b.m.mu.Unlock()
	for _, u := range b.m.users {
		u.clearRefused()
	}
}

// resync reads the channel's member list after joining it: members are
// online, everyone else offline. Delivery starts.
func (b *Bridge) resync() {
	cm := b.caseMapping()
	b.m.mu.Lock()
	names := b.m.names
	b.m.names = nil
	in := map[string]string{}
	for _, n := range names {
		if b.isMe(n) {
			continue
		}
		if id, err := NickToID(n, cm); err == nil {
			in[id] = n
		}
	}
	for id, u := range b.m.users {
		if _, ok := in[id]; !ok {
			u.setIn(false)
		}
	}
	b.m.conn, b.m.connStop = context.WithCancel(context.Background())
	b.out.open(b.m.conn)
	b.m.synced = true
	b.m.joinBackoff = 0
	close(b.m.syncedCh)
	b.m.syncedCh = make(chan struct{})
	b.m.mu.Unlock()
	if b.cfg.SharedChannel {
		b.kickRing() // in the channel: the bridge's node is made, or its nick written
	}
	for _, nick := range in {
		b.presence(nick, true, false)
	}
	b.m.mu.Lock()
	for _, u := range b.m.users {
		u.poke()
	}
	b.m.mu.Unlock()
	b.log.Info("channel member list read: delivery running", "channel", b.cfg.Channel, "members", len(in))
}

// disconnected pauses delivery until the next resync: users stay online.
func (b *Bridge) disconnected() {
	b.m.mu.Lock()
	defer b.m.mu.Unlock()
	if b.m.synced {
		b.log.Warn("irc disconnected: delivery paused", "server", b.host)
	}
	b.m.synced = false
	b.m.connStop()
	b.out.shut()
	b.lookups.failAll(fmt.Errorf("%w: disconnected from IRC before the server answered", errAccountUnknown))
}

// lostChannel: the bot left the channel (kicked, parted): everyone goes
// offline, and the bot rejoins after a pause.
func (b *Bridge) lostChannel(why string) {
	b.log.Warn("bot lost the channel; all users offline, rejoining", "reason", why, "channel", b.cfg.Channel)
	b.m.mu.Lock()
	defer b.m.mu.Unlock()
	b.m.synced = false
	b.m.connStop()
	b.out.shut()
	for _, u := range b.m.users {
		u.setIn(false)
	}
	b.rejoinLocked(5*time.Second + rand.N(5*time.Second))
}

// joinRefused retries a refused JOIN with jittered exponential backoff
// (5 s doubling to 2 minutes; reset when the bot is in again), so a ban
// neither makes the bot hammer the server nor keeps it out after the ban is
// lifted.
func (b *Bridge) joinRefused(code, reason string) {
	b.m.mu.Lock()
	defer b.m.mu.Unlock()
	if b.m.rejoin != nil {
		b.log.Warn("the server refused the bot's JOIN; a retry is already scheduled",
			"channel", b.cfg.Channel, "code", code, "reason", reason)
		return
	}
	d := max(b.m.joinBackoff, 5*time.Second)
	b.m.joinBackoff = min(d*2, 2*time.Minute)
	wait := d/2 + rand.N(d/2+1)
	b.log.Error("the server refused the bot's JOIN; users stay offline until it is in, retrying",
		"channel", b.cfg.Channel, "code", code, "reason", reason, "retry_in", wait.Round(time.Millisecond))
	b.rejoinLocked(wait)
}

// rejoinLocked JOINs the channel after wait, replacing a JOIN pending;
// m.mu is held. The timer is m.rejoin's until it fires; Run's end stops it.
func (b *Bridge) rejoinLocked(wait time.Duration) {
	if b.m.rejoin != nil && b.m.rejoin.Stop() {
		b.m.rejoinRun.Done()
	}
	var t *time.Timer
	b.m.rejoinRun.Add(1)
	t = time.AfterFunc(wait, func() {
		defer b.m.rejoinRun.Done()
		b.m.mu.Lock()
		mine := b.m.rejoin == t // not replaced or stopped after it fired
		if mine {
			b.m.rejoin = nil
		}
		b.m.mu.Unlock()
		if mine && b.irc.IsConnected() {
			b.irc.Cmd.Join(b.cfg.Channel)
		}
	})
	b.m.rejoin = t
}

// senderName shows a sender as its nick in the channel if it has one here,
// else as the nick its id decodes to (an IRC user elsewhere: folded), else
// as its id (a user of another front end).
func (b *Bridge) senderName(id string) string {
	if u := b.lookup(id); u != nil {
		if nick := u.currentNick(); nick != "" {
			return nick
		}
	}
	return IDToNick(id)
}
