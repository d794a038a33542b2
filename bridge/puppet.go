package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/lrstanley/girc"

	"github.com/zkchat/zkchat/protocol"
	"github.com/zkchat/zkchat/zookeeper"
)

// Puppets (Config.Puppets): a zkchat user who is online but not through
// this bridge's channel (a CLI user, a user of a bridge on another IRC
// network) is shown on IRC as a nick of its own, the way bitlbee and
// matrix-appservice-irc show remote users: one IRC client connection per
// such user (a "puppet"), with the user's nick (IDToNick; the server's
// choice after a collision), in no channel. A private message to it is a
// msg to that user from the sender's worker, with every check of the bot's
// msg (doMsg) and its answers from the bot; a message from that user to an
// IRC user comes from the puppet's nick instead of the bot's, so that the
// conversation is one query window both ways.
//
// The puppets follow /online: runPuppets lists its children with a watch
// and, 1 s after each change at most (a JOIN burst is one listing, not
// thousands), starts a puppet for each online id it should show and stops
// the others (QUIT). At most MaxPuppets run; ids past it are reachable
// through the bot only. With SharedChannel there are none: an IRC user is
// served by one bridge of several, and a puppet's message must reach that
// one.
//
// A puppet delivers through an outbox of its own (its connection, its
// pacing, its PING proofs): a delivery that wrote through puppets proves
// on each of them before it commits (proofSet), so a puppet that quits or
// drops before its PONG makes the messages come again, through the bot if
// the puppet is gone. At least once, never lost, as through the bot.

// puppetsSettle is the least time between two listings of /online by
// runPuppets: changes come in bursts.
const puppetsSettle = time.Second

// puppets is the set of puppet connections. Locks: mu guards live and
// metas; it is taken after members.mu and a user's mu, never before, and
// not held across a ZooKeeper call or an IRC write.
type puppets struct {
	mu    sync.Mutex
	live  map[string]*puppet    // by id
	metas map[string]onlineMeta // ids' /online metadata, read once per node seen
}

// puppet is one zkchat user's IRC connection. Its goroutines: run (the
// reconnect loop, girc's four per connection under it) and its outbox's
// writer; stop ends them and waits.
type puppet struct {
	id   string
	irc  *girc.Client
	out  *outbox
	stop context.CancelFunc
	done chan struct{}

	mu       sync.Mutex
	conn     context.Context // the connection's: ends when it does; nil before the first
	connStop context.CancelFunc
}

// connected returns the context of the puppet's connection if it is
// registered on the server, else nil.
func (p *puppet) connected() context.Context {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn == nil || p.conn.Err() != nil {
		return nil
	}
	return p.conn
}

// runPuppets keeps the puppets in line with /online until ctx ends, then
// stops them all. Run owns it. It lists at once after a quiet second
// (a user who went offline frees its nick within milliseconds, for an IRC
// client that takes it next), and at most once a second in a burst.
func (b *Bridge) runPuppets(ctx context.Context) {
	defer b.stopPuppets()
	backoff := time.Second
	var listed time.Time
	for ctx.Err() == nil {
		if wait := puppetsSettle - time.Since(listed); wait > 0 && !sleepCtx(ctx, wait) {
			return
		}
		listed = time.Now()
		ids, ch, err := b.dir.OnlineWatch(ctx)
		if err != nil {
			if ctx.Err() == nil {
				b.warn.Warn("puppets: listing /online failed; retrying", "err", err, "retry_in", backoff)
			}
			if !sleepCtx(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = time.Second
		b.syncPuppets(ctx, ids)
		select {
		case <-ch:
		case <-b.puppetKick:
		case <-ctx.Done():
			return
		}
	}
}

// kickPuppets asks runPuppets to look again (a nick left or joined the
// channel: it may now be shown, or be a person rather than a puppet).
func (b *Bridge) kickPuppets() {
	if !b.cfg.Puppets {
		return
	}
	select {
	case b.puppetKick <- struct{}{}:
	default:
	}
}

// syncPuppets starts a puppet for every id of ids (the online ones) that
// should be shown and stops the rest.
func (b *Bridge) syncPuppets(ctx context.Context, ids []string) {
	sort.Strings(ids) // which ones past MaxPuppets go without: the same each time
	want := map[string]bool{}
	online := map[string]bool{}
	for _, id := range ids {
		online[id] = true
		if len(want) < b.cfg.MaxPuppets && b.showAsPuppet(ctx, id) {
			want[id] = true
		}
	}
	p := &b.pup
	p.mu.Lock()
	for id := range p.metas {
		if !online[id] {
			delete(p.metas, id) // a node made again is read again
		}
	}
	var stop []*puppet
	for id, pp := range p.live {
		if !want[id] {
			stop = append(stop, pp)
			delete(p.live, id)
		}
	}
	var start []string
	for id := range want {
		if p.live[id] == nil {
			start = append(start, id)
		}
	}
	p.mu.Unlock()
	for _, pp := range stop {
		pp.stop()
		<-pp.done
		b.log.Info("puppet stopped", "id", pp.id)
	}
	if len(ids) > 0 && len(want) == b.cfg.MaxPuppets {
		b.warn.Warn("puppets: at the limit; the other users are reachable through the bot only", "max", b.cfg.MaxPuppets)
	}
	for _, id := range start {
		pp := b.newPuppet(id)
		p.mu.Lock()
		p.live[id] = pp
		p.mu.Unlock()
		b.log.Info("puppet starting", "id", id, "nick", IDToNick(id))
	}
}

// showAsPuppet reports whether online id is a user of another front end:
// not a nick of this channel (its user goroutine has it in the channel),
// not the bot's own nick, and its /online node not made for this channel
// (metaHere). A metadata read that fails counts as no: tried again at the
// next listing.
func (b *Bridge) showAsPuppet(ctx context.Context, id string) bool {
	nick := IDToNick(id)
	if b.isMe(nick) {
		return false
	}
	if u := b.lookup(id); u != nil {
		u.mu.Lock()
		in := u.in
		u.mu.Unlock()
		if in {
			return false
		}
	}
	b.pup.mu.Lock()
	meta, ok := b.pup.metas[id]
	b.pup.mu.Unlock()
	if !ok {
		m, found, err := b.dir.OnlineMeta(ctx, id)
		if err != nil || !found {
			return false
		}
		meta = m
		b.pup.mu.Lock()
		b.pup.metas[id] = meta
		b.pup.mu.Unlock()
	}
	return !b.metaHere(meta)
}

// stopPuppets stops every puppet and waits for them.
func (b *Bridge) stopPuppets() {
	b.pup.mu.Lock()
	all := b.pup.live
	b.pup.live = map[string]*puppet{}
	b.pup.mu.Unlock()
	for _, pp := range all {
		pp.stop()
	}
	for _, pp := range all {
		<-pp.done
	}
}

// puppetOf returns id's puppet and its connection's context, if it has
// one registered on the server.
func (b *Bridge) puppetOf(id string) (*puppet, context.Context) {
	if !b.cfg.Puppets {
		return nil, nil
	}
	b.pup.mu.Lock()
	pp := b.pup.live[id]
	b.pup.mu.Unlock()
	if pp == nil {
		return nil, nil
	}
	conn := pp.connected()
	if conn == nil {
		return nil, nil
	}
	return pp, conn
}

// newPuppet makes id's puppet and starts it.
func (b *Bridge) newPuppet(id string) *puppet {
	host, portStr, _ := net.SplitHostPort(b.cfg.Server) // checked by newBridge
	port, _ := strconv.Atoi(portStr)
	nick := IDToNick(id)
	gc := girc.Config{
		Server: host, Port: port, SSL: b.cfg.TLS, ServerPass: b.cfg.Password,
		Nick: nick, User: "zkchat", Name: "zkchat user " + id + " (not on IRC)",
		AllowFlood: true, Version: "zkchat bridge", GlobalFormat: false,
		PingDelay: 30 * time.Second,
		// girc's default: the nick with "_" appended; the puppet keeps its
		// id whatever nick the server gives it.
	}
	irc := girc.New(gc)
	ctx, stop := context.WithCancel(context.Background())
	pp := &puppet{id: id, irc: irc, out: newOutbox(irc, b.cfg.Rate, b.cfg.Burst), stop: stop, done: make(chan struct{})}
	log := b.log.With("puppet", id)
	pp.out.setLogger(log, b.warn)
	pp.out.onLost = func() { irc.Close() }
	pp.out.stopWaiting(ctx.Done())
	h := irc.Handlers
	h.Add(girc.CONNECTED, func(*girc.Client, girc.Event) {
		pp.mu.Lock()
		pp.conn, pp.connStop = context.WithCancel(context.Background())
		pp.out.open(pp.conn)
		pp.mu.Unlock()
		log.Info("puppet connected", "nick", irc.GetNick())
	})
	h.Add(girc.DISCONNECTED, func(*girc.Client, girc.Event) { pp.disconnected() })
	h.Add(girc.PONG, func(_ *girc.Client, e girc.Event) { pp.out.pongFor(e.Last()) })
	h.Add(girc.ERR_NOSUCHNICK, b.onNoSuchNick)
	h.Add(girc.PRIVMSG, func(c *girc.Client, e girc.Event) { b.onPuppetPrivmsg(c, pp, e) })
	go pp.run(ctx, log)
	return pp
}

// deliver queues text to nick on the puppet's connection conn, waiting
// for room until ctx (the delivery's) or conn ends; a puppet gone meanwhile
// fails the delivery, which starts again from its last commit.
func (pp *puppet) deliver(ctx, conn context.Context, nick, text string) error {
	qctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(conn, cancel)()
	for _, line := range Split(protocol.ShowText(text, ircFormatting), lineRoom(nick)) {
		if !pp.out.enqueue(qctx, &girc.Event{Command: girc.PRIVMSG, Params: []string{nick, line}}) {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return fmt.Errorf("the puppet of %s left IRC", pp.id)
		}
	}
	return nil
}

// disconnected ends the puppet's connection: its proofs fail.
func (pp *puppet) disconnected() {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.connStop != nil {
		pp.connStop()
	}
	pp.out.shut()
}

// run connects the puppet and reconnects it (backoff 1 s doubling to
// 2 min) until ctx ends; then it quits IRC and stops its outbox's writer.
func (pp *puppet) run(ctx context.Context, log *slog.Logger) {
	defer close(pp.done)
	octx, stopOut := context.WithCancel(context.Background())
	outDone := make(chan struct{})
	go func() { defer close(outDone); pp.out.run(octx) }()
	quitDone := make(chan struct{})
	stopIRC := context.AfterFunc(ctx, func() {
		defer close(quitDone)
		pp.irc.Quit("offline")
		pp.irc.Close()
	})
	backoff := time.Second
	for ctx.Err() == nil {
		start := time.Now()
		err := pp.irc.DialerConnect(quickAckDialer{})
		if ctx.Err() != nil {
			break
		}
		if time.Since(start) > 2*time.Minute {
			backoff = time.Second
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		log.Warn("puppet's irc connection ended; reconnecting", "err", err, "retry_in", wait.Round(time.Millisecond))
		if !sleepCtx(ctx, wait) {
			break
		}
		backoff = min(2*backoff, 2*time.Minute)
	}
	if !stopIRC() {
		<-quitDone
	}
	pp.disconnected()
	stopOut()
	<-outDone
}

// onPuppetPrivmsg: a private message to the puppet from an IRC user is a
// msg from that user to the puppet's id; CTCP and lines from the bot or
// another puppet are not.
func (b *Bridge) onPuppetPrivmsg(c *girc.Client, pp *puppet, e girc.Event) {
	if e.Source == nil || len(e.Params) < 2 {
		return
	}
	cm := b.caseMapping()
	if cm.Fold(e.Params[0]) != cm.Fold(c.GetNick()) || b.isMe(e.Source.Name) {
		return
	}
	if ok, _ := e.IsCTCP(); ok {
		return
	}
	id, err := NickToID(e.Source.Name, cm)
	if err != nil {
		b.out.postNotice(e.Source.Name, textBadNickCommand(err))
		return
	}
	if other, _ := b.puppetOf(id); other != nil && cm.Fold(other.irc.GetNick()) == cm.Fold(e.Source.Name) {
		return
	}
	acct := account{}
	if c.HasCapability("account-tag") {
		name, _ := e.Tags.Get("account")
		acct = account{name: name, known: true}
	}
	b.enqueueLine(e.Source.Name, id, e.Last(), sizeOf(e), Command{Name: "msg", To: IDToNick(pp.id), Text: e.Last()}, acct, pp.id)
}

// OnlineWatch lists /online's children with a child watch whose one event
// the channel gets: a change, or the session's end.
func (d *zkDirectory) OnlineWatch(ctx context.Context) ([]string, <-chan zk.Event, error) {
	s, err := d.session(ctx)
	if err != nil {
		return nil, nil, err
	}
	type r struct {
		ids []string
		ch  <-chan zk.Event
	}
	v, err := zookeeper.Do(ctx, func() (r, error) {
		ids, _, ch, err := s.Conn.ChildrenW(s.Paths.Online())
		return r{ids, ch}, err
	})
	return v.ids, v.ch, err
}
