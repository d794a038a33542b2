package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/lrstanley/girc"
)

// Identity: on a server with services accounts, a nick that registers while
// logged in is bound to its account in /accounts/<id> (directory.Bind).
// From then on the bridge treats the nick as that user only while it is
// logged in to that account: anyone else who takes the nick can neither go
// online (so reads nothing) nor send, nor unregister it. A nick registered
// while not logged in has no binding and no protection; the bot says so.
//
// What the bridge knows of a nick's account, best first:
//   - a command: the message's own account-tag (IRCv3; girc asks for the
//     capability by default). With the capability on, no tag means no
//     account. This holds whether or not the nick is in the channel.
//   - a channel member: its extended-join and account-notify events
//     (user.account), or girc's state when that names an account (WHOX).
//   - otherwise the bridge asks the server (WHOIS, askAccount), in the
//     user's goroutine, and waits a bounded time for the answer.
//
// It never takes "I do not know" for "not logged in": a lookup that cannot
// be answered (no answer in time, the nick gone, the connection lost) is an
// error, so a register neither binds nor leaves the nick unbound, and a
// check neither refuses nor admits.

// account is what the bridge knows of the services account a nick is
// logged in to: name ("" for none) when known.
type account struct {
	name  string
	known bool
}

// errAccountUnknown: the server could not say which account a nick is
// logged in to. Callers tell the user to try again (or retry themselves).
var errAccountUnknown = errors.New("could not check the services account")

// msgAccount is the account a message's sender is logged in to, as the
// message says: with account-tag on, the tag, or none when there is no tag;
// without it, nothing. Called from the IRC handlers: it does not block.
func (b *Bridge) msgAccount(e girc.Event) account {
	if !b.irc.HasCapability("account-tag") {
		// A tag the capability did not ask for is not trusted.
		return account{}
	}
	name, _ := e.Tags.Get("account")
	return account{name: name, known: true}
}

// accountOf returns what the bridge already knows of nick's account,
// without asking: the user's own JOIN or ACCOUNT events first, which girc's
// state may not have applied yet, else an account girc's state names (a
// WHOX reply, account-notify). girc's state has "" both for "none" and "not
// known yet", so an empty one is not known.
func (b *Bridge) accountOf(u *user, nick string) account {
	u.mu.Lock()
	acct, known := u.account, u.accountKnown
	u.mu.Unlock()
	if known {
		return account{name: acct, known: true}
	}
	if gu := b.irc.LookupUser(nick); gu != nil && gu.Extras.Account != "" {
		return account{name: gu.Extras.Account, known: true}
	}
	return account{}
}

// resolveAccount returns nick's account: from the message (msg), from what
// the bridge knows, or else from the server (askAccount, which waits). In
// the user's goroutine; the error wraps errAccountUnknown.
func (b *Bridge) resolveAccount(ctx context.Context, u *user, nick string, msg account) (string, error) {
	if msg.known {
		return msg.name, nil
	}
	if acct := b.accountOf(u, nick); acct.known {
		return acct.name, nil
	}
	u.mu.Lock()
	gen := u.accountGen
	u.mu.Unlock()
	acct, err := b.askAccount(ctx, nick)
	if err != nil {
		return "", err
	}
	// Kept like an account from the nick's JOIN, while the nick stays in
	// the channel (forgotten when it leaves): every later command and
	// reconcile would otherwise ask the server again and wait for it.
	u.mu.Lock()
	if u.in && u.accountGen == gen && !u.accountKnown && b.caseMapping().Fold(u.nick) == b.caseMapping().Fold(nick) {
		u.account, u.accountKnown = acct, true
	}
	u.mu.Unlock()
	return acct, nil
}

// verifyAs reports whether nick, whose message said msg of its account,
// may act as u: true when u's id has no binding or nick is logged in to the
// bound account. When not, it says why in the returned message. An error
// (ZooKeeper, or errAccountUnknown) decides nothing.
func (b *Bridge) verifyAs(ctx context.Context, u *user, nick string, msg account) (bool, string, error) {
	bound, err := b.dir.Binding(ctx, u.id)
	if err != nil || bound == "" {
		return err == nil, "", err
	}
	acct, err := b.resolveAccount(ctx, u, nick, msg)
	if err != nil {
		return false, "", err
	}
	if acct == bound {
		return true, "", nil
	}
	return false, textAccountRequired(nick, bound), nil
}

// lookups are the account lookups (WHOIS) in flight, by folded nick: one
// WHOIS per nick at a time, however many wait for it. The IRC handlers
// fill a lookup from the replies (311, 330, 318) and close it without
// waiting; the users' goroutines wait for it (askAccount).
//
// Locks: mu guards pending and every lookup's fields until its done is
// closed. A leaf: nothing else is taken, nothing waits, while it is held.
type lookups struct {
	mu      sync.Mutex
	pending map[string]*lookup
}

// lookup is one WHOIS in flight. Its fields are final once done is closed.
type lookup struct {
	done    chan struct{}
	seen    bool   // 311: the nick exists
	account string // 330: the account it is logged in to
	err     error  // why there is no answer; nil when answered
}

// finishLocked ends l with err (nil: answered) and forgets it; ls.mu is held.
func (ls *lookups) finishLocked(key string, l *lookup, err error) {
	if ls.pending[key] == l {
		delete(ls.pending, key)
	}
	select {
	case <-l.done: // ended already
	default:
		l.err = err
		close(l.done)
	}
}

func (ls *lookups) finish(key string, l *lookup, err error) {
	ls.mu.Lock()
	ls.finishLocked(key, l, err)
	ls.mu.Unlock()
}

// failAll ends every lookup in flight with err: their answers will not come
// (the connection they were asked on has ended).
func (ls *lookups) failAll(err error) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for key, l := range ls.pending {
		ls.finishLocked(key, l, err)
	}
}

// accountTimeout bounds the wait for a lookup's answer: the time a delivery
// proof may take, since the WHOIS waits behind the same outbox.
func (b *Bridge) accountTimeout() time.Duration {
	if b.cfg.accountTimeout > 0 {
		return b.cfg.accountTimeout
	}
	return b.proofTimeout()
}

// askAccount asks the server which account nick is logged in to (WHOIS:
// 330, or none when the reply has no 330) and waits for the answer, at most
// accountTimeout. In a user's goroutine, never in an IRC handler. The
// waiter owns its timer; a lookup nobody answers ends at the timeout or at
// a disconnect (disconnected fails them all).
func (b *Bridge) askAccount(ctx context.Context, nick string) (string, error) {
	if !b.irc.IsConnected() {
		return "", fmt.Errorf("%w: not connected to IRC", errAccountUnknown)
	}
	key := b.caseMapping().Fold(nick)
	ls := &b.lookups
	ls.mu.Lock()
	l := ls.pending[key]
	ask := l == nil
	if ask {
		l = &lookup{done: make(chan struct{})}
		ls.pending[key] = l
	}
	ls.mu.Unlock()
	if ask && !b.out.enqueue(ctx, &girc.Event{Command: girc.WHOIS, Params: []string{nick}}) {
		ls.finish(key, l, fmt.Errorf("%w: %w", errAccountUnknown, context.Cause(ctx)))
	}
	timeout := b.accountTimeout()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-l.done:
	case <-t.C:
		ls.finish(key, l, fmt.Errorf("%w: no answer to WHOIS within %s", errAccountUnknown, timeout))
	case <-ctx.Done():
		ls.finish(key, l, fmt.Errorf("%w: %w", errAccountUnknown, context.Cause(ctx)))
	}
	<-l.done // closed by now, by whoever ended it first
	if l.err != nil {
		return "", l.err
	}
	return l.account, nil
}

// accountHandlers registers the handlers of the WHOIS replies (New). Like
// every handler they only take lookups.mu briefly.
func (b *Bridge) accountHandlers() {
	b.lookups.pending = map[string]*lookup{}
	h := b.irc.Handlers
	h.Add(girc.RPL_WHOISUSER, func(_ *girc.Client, e girc.Event) {
		b.onWhois(e, func(l *lookup) { l.seen = true })
	})
	h.Add(girc.RPL_WHOISACCOUNT, func(_ *girc.Client, e girc.Event) {
		if len(e.Params) >= 3 {
			b.onWhois(e, func(l *lookup) { l.account = e.Params[2] })
		}
	})
	h.Add(girc.RPL_ENDOFWHOIS, func(_ *girc.Client, e girc.Event) {
		if len(e.Params) < 2 {
			return
		}
		ls := &b.lookups
		key := b.caseMapping().Fold(e.Params[1])
		ls.mu.Lock()
		defer ls.mu.Unlock()
		l := ls.pending[key]
		if l == nil {
			return
		}
		var err error
		if !l.seen { // 401 first: the nick has gone
			err = fmt.Errorf("%w: the server says %s is not on IRC", errAccountUnknown, e.Params[1])
		}
		ls.finishLocked(key, l, err)
	})
}

// onWhois applies a WHOIS reply about e.Params[1] to its lookup, if one is
// in flight.
func (b *Bridge) onWhois(e girc.Event, apply func(*lookup)) {
	if len(e.Params) < 2 {
		return
	}
	ls := &b.lookups
	key := b.caseMapping().Fold(e.Params[1])
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if l := ls.pending[key]; l != nil {
		apply(l)
	}
}
