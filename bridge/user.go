package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/lrstanley/girc"

	"github.com/zkchat/zkchat/client"
	"github.com/zkchat/zkchat/protocol"
	"github.com/zkchat/zkchat/zookeeper"
)

// user is one nick's zkchat side. Its goroutine (run) does everything that
// talks to ZooKeeper for it, in order: commands from its private messages,
// and bringing its presence in line with the channel. It ends when the nick
// is offline and out of the channel, or when the bridge stops.
type user struct {
	b  *Bridge
	id string
	w  *client.Worker

	ops  chan func(context.Context) // the nick's commands, in order
	kick chan struct{}              // cap 1: presence may need work

	mu         sync.Mutex
	nick       string      // current nick, for delivery
	in         bool        // in the channel (or leaving in a netsplit)
	splitTimer *time.Timer // set while the nick is away in a netsplit
	// refusedLines counts PRIVMSGs to the nick the server answered with
	// 401 (no such nick): the nick left before the bridge knew. The
	// delivery's commit proof fails while it is not zero, so those
	// messages come again instead of being committed unseen.
	refusedLines atomic.Int64
	// unregistered: going online failed for want of registration (or of
	// the bound account); retried after register, an account change, or
	// the nick joining again.
	unregistered bool
	// refused: the nick is not logged in to the account its id is bound
	// to; retried when its account changes or the WHOX replies are in.
	refused bool
	// account the nick is logged in to, from its JOIN or ACCOUNT events.
	account      string
	accountKnown bool

	online     bool
	staleTries int // see staleOwn
	delivery   context.CancelFunc
	delDone    chan struct{}
}

// newUser makes and starts a user; b.mu is held.
func (b *Bridge) newUser(id string) *user {
	w, err := client.New(id, client.Config{
		ZooKeeper: b.cfg.ZooKeeper, SessionTimeout: b.cfg.SessionTimeout,
		RequestTimeout: b.cfg.RequestTimeout, Kafka: b.cfg.Kafka,
		ZKBufferSize: zookeeper.SmallZKBuffer, Logger: b.cfg.Logger, Auth: b.cfg.ZKAuth,
		Metadata: map[string]any{"via": "irc", "bridge": b.cfg.Nick, "channel": b.cfg.Channel},
	})
	if err != nil { // id came from NickToID, so valid
		panic(fmt.Sprintf("bridge: worker for %q: %v", id, err))
	}
	u := &user{b: b, id: id, w: w, ops: make(chan func(context.Context), 64), kick: make(chan struct{}, 1)}
	b.users[id] = u
	ctx := b.runCtx
	if ctx == nil {
		ctx = context.Background()
	}
	b.wg.Add(1)
	go u.run(ctx)
	return u
}

func (u *user) poke() {
	select {
	case u.kick <- struct{}{}:
	default:
	}
}

// setIn records whether the nick is in the channel.
func (u *user) setIn(in bool) {
	u.mu.Lock()
	if u.splitTimer != nil {
		u.splitTimer.Stop()
		u.splitTimer = nil
	}
	if in && !u.in {
		u.unregistered, u.refused = false, false // a new join tries again, and is told again
	}
	u.in = in
	u.mu.Unlock()
	u.poke()
}

// splitLeave keeps a user who quit in a netsplit online for grace, so that
// a split and its heal do not flap everyone offline and online.
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
		u.mu.Unlock()
		u.poke()
	})
	u.poke() // reconcile pauses the delivery at once
}

func (u *user) run(ctx context.Context) {
	defer u.b.wg.Done()
	for {
		select {
		case op := <-u.ops:
			op(ctx)
		case <-u.kick:
		case <-ctx.Done():
			u.goOffline()
			return
		}
		if u.reconcile(ctx) {
			return
		}
	}
}

// reconcile brings the worker's presence in line with the channel; it
// reports true when the user is gone (offline, out of the channel, nothing
// queued) and has left the bridge's table.
func (u *user) reconcile(ctx context.Context) bool {
	b := u.b
	u.mu.Lock()
	want := u.in && !u.unregistered && !u.refused
	nick := u.nick
	u.mu.Unlock()
	b.mu.Lock()
	synced, conn := b.synced, b.connCtx
	b.mu.Unlock()

	if want {
		// Checked at every reconcile, so an account change (ACCOUNT event,
		// WHOX reply) takes an impostor offline too.
		ok, why, err := b.verify(ctx, u, nick)
		switch {
		case err != nil:
			b.log.Error("account check failed", "id", u.id, "err", err)
			time.AfterFunc(5*time.Second, u.poke)
			want = false
		case !ok:
			b.log.Warn("nick not logged in to its bound account: refused", "id", u.id, "nick", nick)
			u.mu.Lock()
			u.refused = true
			u.mu.Unlock()
			b.notice(nick, why)
			want = false
		}
	}
	switch {
	case want && !u.online:
		select {
		case b.sem <- struct{}{}:
		case <-ctx.Done():
			return false
		}
		err := u.w.GoOnline(ctx)
		<-b.sem
		switch {
		case err == nil:
			u.online, u.staleTries = true, 0
			b.log.Info(msgOnline, "id", u.id, "nick", nick)
		case errors.Is(err, protocol.ErrNotRegistered):
			u.mu.Lock()
			u.unregistered = true
			u.mu.Unlock()
			b.notice(nick, fmt.Sprintf("Hi %s! You are not registered with zkchat: send me `register` (/msg %s register) to chat here.", nick, b.irc.GetNick()))
		case errors.Is(err, protocol.ErrAlreadyOnline) && u.staleTries < 60 && b.staleOwn(ctx, u.id):
			// The node is this bridge's own, left by an earlier run that was
			// killed: its ZooKeeper session ends within the session timeout
			// and the node with it. Without a retry the user stayed offline
			// (while in the channel) until they rejoined by hand.
			b.log.Warn("user's presence is still held by an earlier run of this bridge; retrying until that session expires", "id", u.id)
			// Bounded (2 minutes), in case a twin with the same nick and
			// channel really runs on another server.
			u.staleTries++
			time.AfterFunc(2*time.Second, u.poke)
		case errors.Is(err, protocol.ErrAlreadyOnline):
			u.mu.Lock()
			u.unregistered = true // do not retry in a loop; a new join retries
			u.mu.Unlock()
			b.notice(nick, fmt.Sprintf("%s is online elsewhere (another zkchat client); messages go there until it leaves. Rejoin to try again.", u.id))
		default:
			b.log.Error("going online failed", "id", u.id, "err", err)
			b.notice(nick, "Sorry, going online failed: "+err.Error())
			time.AfterFunc(5*time.Second, u.poke)
		}
	case !want && u.online:
		u.goOffline()
	}
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
	u.mu.Lock()
	away := u.splitTimer != nil
	u.mu.Unlock()
	if away {
		u.stopDelivery()
	}
	// Not once Run's context has ended: drain may have counted the
	// deliveries already, and a new one would lose its last proof to QUIT.
	if u.online && synced && !away && u.delivery == nil && ctx.Err() == nil {
		dctx, stop := context.WithCancel(conn)
		u.delivery, u.delDone = stop, make(chan struct{})
		b.delivering.Add(1) // before it runs: drain must not miss it
		go u.deliver(dctx, u.delDone)
	}
	if u.online || len(u.ops) > 0 {
		return false
	}
	// Leave the table under b.mu, which presence and command hold while
	// they hand this user work: nothing is handed to a user that is gone.
	b.mu.Lock()
	defer b.mu.Unlock()
	u.mu.Lock()
	in, waiting := u.in, u.splitTimer != nil
	u.mu.Unlock()
	if in || waiting || len(u.ops) > 0 || len(u.kick) > 0 {
		return false
	}
	delete(b.users, u.id)
	// A command (register, who, ...) may have opened a session while the
	// nick was not in the channel: close it, or every visitor leaks one.
	u.w.Close()
	return true
}

// staleOwn reports whether id's /online node was made by a bridge with this
// bridge's nick and channel (its metadata): an earlier run of this bridge,
// since two live bridges cannot share a nick on one server.
func (b *Bridge) staleOwn(ctx context.Context, id string) bool {
	s, err := b.listSession(ctx)
	if err != nil {
		return false
	}
	// Through zookeeper.Do like every other call: a bare go-zookeeper call
	// ignores ctx, so a hung server held this user's goroutine (and Run's
	// shutdown, which waits for it) until the connection gave up.
	data, err := zookeeper.Do(ctx, func() ([]byte, error) {
		d, _, err := s.Conn.Get(s.Paths.OnlineNode(id))
		return d, err
	})
	if err != nil {
		return errors.Is(err, zk.ErrNoNode) // gone meanwhile: try again
	}
	var meta struct{ Via, Bridge, Channel string }
	if json.Unmarshal(data, &meta) != nil {
		return false
	}
	return meta.Via == "irc" && meta.Bridge == b.cfg.Nick && meta.Channel == b.cfg.Channel
}

func (u *user) stopDelivery() {
	if u.delivery != nil {
		u.delivery()
		<-u.delDone
		u.delivery, u.delDone = nil, nil
	}
}

func (u *user) goOffline() {
	u.stopDelivery()
	if u.online {
		u.w.GoOffline()
		u.online = false
		u.b.log.Info(msgOffline, "id", u.id)
	}
}

// deliver follows the user's topic and writes each message to the nick.
// The read position is committed only after the server answered a PING
// queued behind the lines; if the connection drops first, the messages
// come again (at least once, never lost).
func (u *user) deliver(ctx context.Context, done chan struct{}) {
	b := u.b
	defer b.delivering.Add(-1)
	defer close(done)
	// The PING waits behind every line queued for the pacer (at most
	// cap(b.out)); sync itself fails at once if the connection drops.
	u.refusedLines.Store(0) // from an earlier delivery: this one starts at the last commit
	proof := func(ctx context.Context) error {
		if err := b.sync(ctx); err != nil {
			return err
		}
		// The server answers in order: a 401 for a line comes before the
		// PONG that proves it, so it has been counted by now.
		if n := u.refusedLines.Swap(0); n > 0 {
			return fmt.Errorf("the server refused %d line(s) to %s: no such nick", n, u.id)
		}
		return nil
	}
	opts := client.ReadOptions{BeforeCommit: proof, BeforeCommitTimeout: b.syncTimeout()}
	err := u.w.FollowMessagesWith(ctx, opts, func(m protocol.Message) error {
		u.mu.Lock()
		nick := u.nick
		u.mu.Unlock()
		// The sender is sanitized too: it is the record's key, which a
		// foreign producer sets at will (and IDToNick decodes "_01" to
		// \x01); the fault suite's TestBadInput saw \x01 and NUL on the wire.
		text := fmt.Sprintf(b.cfg.Format, Sanitize(b.senderName(m.From)), Sanitize(m.Text))
		for _, line := range Split(text, lineRoom(nick)) {
			if !b.enqueue(ctx, &girc.Event{Command: girc.PRIVMSG, Params: []string{nick, line}}) {
				return context.Cause(ctx)
			}
		}
		return nil
	})
	switch {
	case err != nil && ctx.Err() == nil:
		b.log.Error("delivery stopped; restarting from the last commit", "id", u.id, "err", err)
		time.AfterFunc(2*time.Second, u.poke) // run's reconcile restarts it
	case err != nil:
		// Stopped (a disconnect, a netsplit, the bridge stopping) before
		// its last lines were proved: they come again from the last commit.
		b.unproved.Add(1)
		b.log.Info("delivery stopped before its last lines were proved; they come again", "id", u.id, "err", err)
	}
}

// command handles a private message from nick.
func (b *Bridge) command(nick, line string) {
	b.mu.Lock()
	id, err := NickToID(nick, b.caseMapping())
	if err != nil {
		b.mu.Unlock()
		b.notice(nick, fmt.Sprintf("Your nick cannot be a zkchat user (%v); change it with /nick.", err))
		return
	}
	u := b.users[id]
	if u == nil {
		u = b.newUser(id)
	}
	u.mu.Lock()
	if u.nick == "" {
		u.nick = nick
	}
	u.mu.Unlock()
	cmd := ParseCommand(line)
	op := func(ctx context.Context) { b.do(ctx, u, nick, cmd) }
	select {
	case u.ops <- op: // under b.mu, see reconcile
		b.mu.Unlock()
	default:
		b.mu.Unlock()
		b.notice(nick, "Too many commands at once; wait for the answers and try again.")
	}
}

// do runs one command in the user's goroutine.
func (b *Bridge) do(ctx context.Context, u *user, nick string, cmd Command) {
	switch cmd.Name {
	case "help", "":
		if cmd.Name == "" && cmd.Text != "" {
			b.notice(nick, fmt.Sprintf("Unknown command %q.", cmd.Text))
		}
		for _, l := range helpText {
			if strings.Contains(l, "%s") {
				l = fmt.Sprintf(l, b.cfg.Channel)
			}
			b.notice(nick, l)
		}
	case "register":
		st, err := u.w.Register(ctx)
		acct := b.accountOf(u, nick)
		switch {
		case err != nil:
			b.notice(nick, "Registration failed: "+err.Error())
		case st == protocol.StatusAlready:
			b.notice(nick, fmt.Sprintf("%s is registered already.", nick))
		default:
			// Only a new registration binds: "register" on someone else's
			// registered nick must not take it over.
			if acct != "" {
				if berr := b.bind(ctx, u.id, acct); berr != nil {
					b.notice(nick, "Registered, but binding to your account failed: "+berr.Error())
				}
			} else {
				_ = b.unbind(ctx, u.id) // a stale binding of an earlier registration
			}
			b.notice(nick, fmt.Sprintf("Registered %s (zkchat id %s). You are online while you are in %s.", nick, u.id, b.cfg.Channel))
			if acct != "" {
				b.notice(nick, fmt.Sprintf("Your nick is bound to your services account %q: only that account can use it here.", acct))
			} else {
				b.notice(nick, "You are not logged in to a services account, so anyone who takes your nick can use it here.")
			}
		}
		if err == nil {
			u.mu.Lock()
			u.unregistered = false
			u.mu.Unlock()
		}
	case "quit":
		if ok, why, err := b.verify(ctx, u, nick); err != nil || !ok {
			if err != nil {
				why = "Unregistering failed: " + err.Error()
			}
			b.notice(nick, why)
			return
		}
		u.stopDelivery()
		st, err := u.w.Quit(ctx)
		if err == nil {
			// Quit took the worker offline; on failure it stays online and
			// run's reconcile restarts its delivery.
			u.online = false
			if uerr := b.unbind(ctx, u.id); uerr != nil {
				b.log.Warn("unbind after quit", "id", u.id, "err", uerr)
			}
		}
		switch {
		case err != nil:
			b.notice(nick, "Unregistering failed: "+err.Error())
		case st == protocol.StatusAlready:
			b.notice(nick, fmt.Sprintf("%s was not registered.", nick))
		default:
			b.notice(nick, fmt.Sprintf("Unregistered %s. Send `register` to come back.", nick))
		}
		if err == nil {
			u.mu.Lock()
			u.unregistered = true
			u.mu.Unlock()
		}
	case "who", "users":
		s, err := b.listSession(ctx)
		var ids []string
		if err == nil {
			list := s.OnlineUsers
			if cmd.Name == "users" {
				list = s.RegisteredUsers
			}
			ids, err = list(ctx)
		}
		if err != nil {
			b.notice(nick, "Listing failed: "+err.Error())
			return
		}
		names := make([]string, len(ids))
		for i, id := range ids {
			names[i] = IDToNick(id)
		}
		sort.Strings(names)
		label := "Online"
		if cmd.Name == "users" {
			label = "Registered"
		}
		b.notice(nick, fmt.Sprintf("%s (%d): %s", label, len(names), strings.Join(names, " ")))
	case "msg":
		to, err := NickToID(cmd.To, b.caseMapping())
		if err != nil {
			// Not a nick: maybe an id of another front end.
			to = strings.ToLower(cmd.To)
			if protocol.ValidateID(to) != nil {
				b.notice(nick, fmt.Sprintf("Not sent: %q is neither a nick nor a zkchat id.", cmd.To))
				return
			}
		}
		if !u.online {
			b.notice(nick, fmt.Sprintf("Not sent: you are not online. Register (/msg %s register) and join %s.", b.irc.GetNick(), b.cfg.Channel))
			return
		}
		if err := u.w.SendMessage(ctx, to, cmd.Text); err != nil {
			if errors.Is(err, protocol.ErrOutcomeUnknown) {
				// Kafka did not confirm in time, yet the message may be
				// written and delivered (the fault suite saw such ones
				// arrive): "Not sent" would be a lie.
				b.notice(nick, "Maybe not sent: Kafka did not confirm it in time, and it may still arrive; sending it again may deliver it twice. ("+err.Error()+")")
				return
			}
			var why string
			switch {
			case errors.Is(err, protocol.ErrReceiverOffline):
				why = cmd.To + " is offline"
			case errors.Is(err, protocol.ErrNotRegistered):
				why = cmd.To + " is not a registered user"
			default:
				why = err.Error()
			}
			b.notice(nick, "Not sent: "+why+".")
		}
	}
}

// senderName shows a sender as its nick in the channel if it has one here,
// else as the nick its id decodes to (an IRC user elsewhere: folded), else
// as its id (a user of another front end).
func (b *Bridge) senderName(id string) string {
	b.mu.Lock()
	u := b.users[id]
	b.mu.Unlock()
	if u != nil {
		u.mu.Lock()
		defer u.mu.Unlock()
		if u.nick != "" {
			return u.nick
		}
	}
	return IDToNick(id)
}
