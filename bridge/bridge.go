package bridge

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lrstanley/girc"

	"github.com/zkchat/zkchat/kafka"
	"github.com/zkchat/zkchat/protocol"
	"github.com/zkchat/zkchat/zookeeper"
)

// Config configures a Bridge.
type Config struct {
	Server    string // IRC server host:port
	TLS       bool
	Password  string // server password (PASS)
	SASLUser  string // SASL PLAIN account of the bot; "" for none
	SASLPass  string
	Nick      string // the bot's nick; "": zkchat
	Channel   string // "": #chatroom
	ZooKeeper string // connection string with optional chroot
	Kafka     *kafka.Clients
	// Format of a delivered message, with the sender's nick and the text:
	// "": "<%s> %s".
	Format string
	// Rate is the most lines a second the bot writes, Burst how many may
	// go at once; 0: 20 and 40. Negative Rate: no pacing, for a server that
	// exempts the bot from flood limits.
	Rate  float64
	Burst int
	// SplitGrace is how long a user who left in a netsplit stays online,
	// waiting for the network to heal. 0: 60 s.
	SplitGrace time.Duration
	// SessionConcurrency bounds ZooKeeper sessions opened at once after a
	// JOIN burst. 0: 32.
	SessionConcurrency int
	SessionTimeout     time.Duration // of each user's session; 0: default
	RequestTimeout     time.Duration // manager answers; 0: 15 s
	Logger             *slog.Logger
	// ZKAuth is zkchat's own principal (ZooKeeper digest). The bridge's
	// sessions, its users' included, authenticate with it: with ACLs on,
	// the manager lets that principal act for any id. nil: no credentials.
	ZKAuth *protocol.Auth
}

// Bridge is the IRC bot. Run it with Run.
type Bridge struct {
	cfg  Config
	log  *slog.Logger
	irc  *girc.Client
	out  chan *girc.Event // to the pacer
	sem  chan struct{}    // ZooKeeper sessions being opened
	host string

	mu        sync.Mutex
	users     map[string]*user // by id
	synced    bool             // connected, in the channel, member list read
	connCtx   context.Context  // ends when the IRC connection does
	connStop  context.CancelFunc
	names     []string   // NAMES replies being collected
	outMu     sync.Mutex // numbers the lines queued in out
	outSeq    uint64
	lastPing  *ping // the latest delivery proof queued
	pongs     map[string]chan struct{}
	runCtx    context.Context
	wg        sync.WaitGroup // user goroutines
	casemapMu sync.Mutex     // the server's CASEMAPPING, read from ISUPPORT
	casemap   CaseMapping
	listMu    sync.Mutex
	list      *zookeeper.Session // for who and users
	syncedCh  chan struct{}      // closed at each successful sync; see Synced
	// registered: the connection is past its welcome (a nick collision is
	// then a failed reclaimNick, not a login's).
	registered *atomic.Bool
	// joinBackoff is the next wait after a refused JOIN; joinRetry the
	// one retry pending (a reconnect's refused JOIN must not start a
	// second chain of retries). See joinRefused.
	joinBackoff time.Duration
	joinRetry   *time.Timer
	// delivering counts the deliveries running: a stopping bridge keeps
	// its IRC connection until they have proved and committed their last
	// lines (see drain).
	delivering atomic.Int32
	// unproved counts the deliveries that stopped before their last
	// lines were proved (see deliver).
	unproved atomic.Int64
}

// Log messages an operator greps for.
const (
	msgOnline  = "user online"
	msgOffline = "user offline"
)

// New validates cfg and registers the IRC handlers, once: a reconnect
// reuses them, so no event is ever handled twice.
func New(cfg Config) (*Bridge, error) {
	if cfg.Nick == "" {
		cfg.Nick = "zkchat"
	}
	if cfg.Channel == "" {
		cfg.Channel = "#chatroom"
	}
	if !strings.HasPrefix(cfg.Channel, "#") && !strings.HasPrefix(cfg.Channel, "&") {
		return nil, fmt.Errorf("channel %q: must start with # or &", cfg.Channel)
	}
	if cfg.Format == "" {
		cfg.Format = "<%s> %s"
	}
	if strings.Count(cfg.Format, "%s") != 2 || strings.Count(cfg.Format, "%") != 2 {
		return nil, fmt.Errorf("format %q: want exactly two %%s (sender, text)", cfg.Format)
	}
	if cfg.Rate == 0 {
		cfg.Rate, cfg.Burst = 20, 40
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 1
	}
	if cfg.SplitGrace <= 0 {
		cfg.SplitGrace = 60 * time.Second
	}
	if cfg.SessionConcurrency <= 0 {
		cfg.SessionConcurrency = 32
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Kafka == nil {
		return nil, errors.New("bridge: no Kafka clients")
	}
	if _, _, err := protocol.SplitConnect(cfg.ZooKeeper); err != nil {
		return nil, err
	}
	host, portStr, err := net.SplitHostPort(cfg.Server)
	if err != nil {
		return nil, fmt.Errorf("irc server %q: want host:port: %w", cfg.Server, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return nil, fmt.Errorf("irc server %q: bad port", cfg.Server)
	}
	gc := girc.Config{
		Server: host, Port: port, SSL: cfg.TLS, ServerPass: cfg.Password,
		Nick: cfg.Nick, User: "zkchat", Name: "zkchat bridge",
		// The bridge paces its own output: girc's limiter is unreliable.
		AllowFlood: true,
		// girc answers CTCP VERSION with the Go version and OS otherwise.
		Version: "zkchat bridge",
		// GlobalFormat would rewrite {b}-style codes in user text.
		GlobalFormat: false,
		PingDelay:    30 * time.Second,
	}
	log := cfg.Logger.With("component", "bridge")
	registered := new(atomic.Bool) // the connection is past its welcome
	gc.HandleNickCollide = func(taken string) string {
		if registered.Load() {
			// A NICK taking the bot's nick back found it taken again
			// (see reclaimNick): keep the nick the bot has.
			log.Warn("the bot's nick is still taken; keeping the current one", "nick", cfg.Nick, "current", taken)
			return ""
		}
		// Another bot (or a user) has the nick. Going on under another nick
		// is what girc does by default; say so loudly, since two bridges in
		// one channel each take the other for a user.
		next := taken + "_"
		log.Error("the bot's nick is taken on the server; using another one", "taken", taken, "using", next)
		return next
	}
	if cfg.SASLUser != "" {
		gc.SASL = &girc.SASLPlain{User: cfg.SASLUser, Pass: cfg.SASLPass}
	}
	b := &Bridge{registered: registered,
		cfg: cfg, log: log,
		irc: girc.New(gc), out: make(chan *girc.Event, outQueue(cfg.Rate, cfg.Burst)),
		sem: make(chan struct{}, cfg.SessionConcurrency), host: cfg.Server,
		users: map[string]*user{}, pongs: map[string]chan struct{}{},
		casemap: RFC1459, syncedCh: make(chan struct{}),
	}
	b.connCtx, b.connStop = context.WithCancel(context.Background())
	b.connStop()
	b.handlers()
	return b, nil
}

// handlers registers the IRC handlers. girc runs a foreground handler in
// its event loop, so each only takes b.mu briefly and hands slow work to a
// user's goroutine.
func (b *Bridge) handlers() {
	h := b.irc.Handlers
	h.Add(girc.CONNECTED, func(c *girc.Client, e girc.Event) {
		b.registered.Store(true)
		cm, _ := c.GetServerOption("CASEMAPPING")
		b.casemapMu.Lock()
		b.casemap = ParseCaseMapping(cm)
		b.casemapMu.Unlock()
		b.mu.Lock()
		b.names = nil
		b.mu.Unlock()
		b.log.Info("irc connected; joining", "server", b.host, "channel", b.cfg.Channel, "casemapping", cm)
		c.Cmd.Join(b.cfg.Channel)
	})
	h.Add(girc.DISCONNECTED, func(*girc.Client, girc.Event) { b.registered.Store(false); b.disconnected() })
	// The server's reason for closing the link (KILL, K-line, flood): the
	// reconnect line alone often said only "EOF", so an operator could not
	// tell why the bot had gone.
	h.Add(girc.ERROR, func(c *girc.Client, e girc.Event) {
		b.log.Warn("the irc server closed the link", "server", b.host, "reason", e.Last())
	})
	// The member list is read from the NAMES replies themselves: girc's
	// channel state folds nicks with RFC 1459 rules whatever the server's
	// CASEMAPPING, so on an ASCII server "[a]" and "{a}" would collapse.
	h.Add(girc.RPL_NAMREPLY, func(c *girc.Client, e girc.Event) {
		if len(e.Params) < 4 || !b.sameChannel(e.Params[2]) {
			return
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, n := range strings.Fields(e.Last()) {
			n = strings.TrimLeft(n, "~&@%+")            // membership prefixes (multi-prefix)
			if i := strings.IndexByte(n, '!'); i >= 0 { // userhost-in-names
				n = n[:i]
			}
			if n != "" {
				b.names = append(b.names, n)
			}
		}
	})
	h.Add(girc.RPL_ENDOFNAMES, func(c *girc.Client, e girc.Event) {
		if len(e.Params) >= 2 && b.sameChannel(e.Params[1]) {
			b.resync()
		}
	})
	h.Add(girc.JOIN, func(c *girc.Client, e girc.Event) {
		if e.Source == nil || len(e.Params) == 0 || !b.sameChannel(e.Params[0]) || b.isMe(e.Source.Name) {
			return
		}
		if len(e.Params) >= 2 { // extended-join: the account, or "*"
			b.setAccount(e.Source.Name, e.Params[1])
		}
		b.presence(e.Source.Name, true, false)
	})
	h.Add(girc.CAP_ACCOUNT, func(c *girc.Client, e girc.Event) {
		if e.Source != nil && len(e.Params) == 1 {
			b.setAccount(e.Source.Name, e.Params[0])
		}
	})
	// WHOX replies (girc asks on join) carry the accounts of the members
	// listed before: look at everyone again when they are in.
	h.Add(girc.RPL_ENDOFWHO, func(c *girc.Client, e girc.Event) {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, u := range b.users {
			u.mu.Lock()
			u.refused = false
			u.mu.Unlock()
			u.poke()
		}
	})
	h.Add(girc.PART, func(c *girc.Client, e girc.Event) {
		if e.Source == nil || len(e.Params) == 0 || !b.sameChannel(e.Params[0]) {
			return
		}
		if b.isMe(e.Source.Name) {
			b.lostChannel("parted")
			return
		}
		b.presence(e.Source.Name, false, false)
	})
	h.Add(girc.KICK, func(c *girc.Client, e girc.Event) {
		if len(e.Params) < 2 || !b.sameChannel(e.Params[0]) {
			return
		}
		if b.isMe(e.Params[1]) {
			b.lostChannel("kicked")
			return
		}
		b.presence(e.Params[1], false, false)
	})
	h.Add(girc.QUIT, func(c *girc.Client, e girc.Event) {
		if e.Source == nil || b.isMe(e.Source.Name) {
			return
		}
		b.reclaimNick(e.Source.Name)
		b.presence(e.Source.Name, false, netsplit.MatchString(e.Last()))
	})
	h.Add(girc.NICK, func(c *girc.Client, e girc.Event) {
		// The bot's own change (taking its nick back) is not a user's.
		if e.Source == nil || len(e.Params) == 0 || b.isMe(e.Source.Name) || b.isMe(e.Last()) {
			return
		}
		b.reclaimNick(e.Source.Name)
		if ch := c.LookupChannel(b.cfg.Channel); ch == nil {
			return
		}
		b.presence(e.Source.Name, false, false)
		b.presence(e.Last(), true, false)
	})
	h.Add(girc.PRIVMSG, func(c *girc.Client, e girc.Event) {
		if e.Source == nil || len(e.Params) < 2 || !b.isMe(e.Params[0]) {
			return // channel talk is not for the bot
		}
		if ok, _ := e.IsCTCP(); ok {
			return
		}
		b.command(e.Source.Name, e.Last())
	})
	// The server refused the JOIN (banned, invite only, full, keyed).
	// Nothing else would ever try again: the bot stayed out of the channel
	// for good, even after the ban was lifted.
	for _, code := range []string{girc.ERR_BANNEDFROMCHAN, girc.ERR_INVITEONLYCHAN, girc.ERR_CHANNELISFULL, girc.ERR_BADCHANNELKEY} {
		h.Add(code, func(c *girc.Client, e girc.Event) {
			if len(e.Params) >= 2 && b.sameChannel(e.Params[1]) {
				b.joinRefused(e.Command, e.Last())
			}
		})
	}
	// 401 to a PRIVMSG of a delivery: the nick is gone (left, split or
	// renamed before the bridge saw it). See user.refusedLines.
	h.Add(girc.ERR_NOSUCHNICK, func(c *girc.Client, e girc.Event) {
		if len(e.Params) < 2 {
			return
		}
		b.mu.Lock()
		id, err := NickToID(e.Params[1], b.caseMapping())
		u := b.users[id]
		b.mu.Unlock()
		if err == nil && u != nil {
			u.refusedLines.Add(1)
			b.log.Warn("the server refused a line: no such nick; it will be delivered again", "id", id, "nick", e.Params[1])
		}
	})
	h.Add(girc.PONG, func(c *girc.Client, e girc.Event) {
		b.mu.Lock()
		if ch, ok := b.pongs[e.Last()]; ok {
			close(ch)
			delete(b.pongs, e.Last())
		}
		b.mu.Unlock()
	})
}

// setAccount records the services account nick is logged in to ("*" or
// "": none), and has its presence checked again.
func (b *Bridge) setAccount(nick, account string) {
	if account == "*" {
		account = ""
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	id, err := NickToID(nick, b.caseMapping())
	if err != nil {
		return
	}
	u := b.users[id]
	if u == nil {
		u = b.newUser(id)
		u.mu.Lock()
		u.nick = nick
		u.mu.Unlock()
	}
	u.mu.Lock()
	changed := !u.accountKnown || u.account != account
	u.account, u.accountKnown = account, true
	if changed {
		u.refused = false
	}
	u.mu.Unlock()
	u.poke()
}

// reclaimNick takes the configured nick back when the nick that held it
// (a squatter, or the bot's own ghost from a connection the server had not
// yet dropped) quits or changes nick in the channel. Without it the bot
// kept "nick_" for good, and /msg to its nick reached nobody.
func (b *Bridge) reclaimNick(gone string) {
	cm := b.caseMapping()
	if cm.Fold(gone) != cm.Fold(b.cfg.Nick) || b.isMe(b.cfg.Nick) {
		return
	}
	b.log.Warn("the bot's nick is free again; taking it back", "nick", b.cfg.Nick, "current", b.irc.GetNick())
	b.irc.Cmd.Nick(b.cfg.Nick)
}

// netsplit matches the QUIT reason servers give for a netsplit:
// "irc.left.net irc.right.net", or "*.net *.split" where server names are hidden.
var netsplit = regexp.MustCompile(`^[\w*.-]+\.[\w*-]+ [\w*.-]+\.[\w*-]+$`)

func (b *Bridge) isMe(nick string) bool {
	cm := b.caseMapping()
	return cm.Fold(nick) == cm.Fold(b.irc.GetNick())
}

func (b *Bridge) sameChannel(name string) bool {
	cm := b.caseMapping()
	return cm.Fold(name) == cm.Fold(b.cfg.Channel)
}

func (b *Bridge) caseMapping() CaseMapping {
	b.casemapMu.Lock()
	defer b.casemapMu.Unlock()
	return b.casemap
}

// Run connects and serves until ctx ends, reconnecting with jittered
// exponential backoff.
func (b *Bridge) Run(ctx context.Context) error {
	b.mu.Lock()
	b.runCtx = ctx
	b.mu.Unlock()
	pctx, stopPacer := context.WithCancel(context.Background())
	pacerDone := make(chan struct{})
	go func() { defer close(pacerDone); b.pacer(pctx) }()
	quitDone := make(chan struct{})
	stopIRC := context.AfterFunc(ctx, func() {
		defer close(quitDone)
		b.drain(b.drainTimeout())
		b.irc.Quit("zkchat bridge stopping")
		b.irc.Close()
	})
	defer func() {
		if !stopIRC() { // it ran: Run does not return before it is done
			<-quitDone
		}
	}()

	b.log.Warn("nick ownership is verified only for nicks registered while logged in to a services account; " +
		"on a server without accounts, whoever holds a registered nick in the channel acts as that user")
	backoff := time.Second
	for ctx.Err() == nil {
		start := time.Now()
		syncedCh, _ := b.Synced()
		err := b.irc.DialerConnect(quickAckDialer{})
		if ctx.Err() != nil {
			break
		}
		if time.Since(start) > 2*time.Minute {
			backoff = time.Second
		}
		select {
		case <-syncedCh:
			// The connection worked (joined, member list read): a server
			// restart after it is a new fault, not the next failure of a
			// series. Without this reset the backoff of earlier failures
			// carried over, and a few quick server restarts left the bot
			// away (and its users offline) for up to 2 minutes.
			backoff = time.Second
		default:
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		b.log.Warn("irc connection ended; reconnecting", "server", b.host, "err", err, "retry_in", wait.Round(time.Millisecond))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
		backoff = min(backoff*2, 2*time.Minute)
	}
	b.disconnected()
	// Everyone goes offline with the bridge.
	b.mu.Lock()
	for _, u := range b.users {
		u.setIn(false)
	}
	b.mu.Unlock()
	b.wg.Wait()
	stopPacer()
	<-pacerDone
	b.listMu.Lock()
	if b.list != nil {
		b.list.Close()
		b.list = nil
	}
	b.listMu.Unlock()
	return nil
}

// drainTimeout bounds how long a stopping bridge waits for its deliveries'
// last delivery proofs (a PING and its PONG, a commit) before it quits IRC:
// the time the pacer takes to send a full queue, plus 2 s, at least 5 s
// and at most 10 s (Docker's default stop grace period; a supervisor kills
// what is still running after it).
func (b *Bridge) drainTimeout() time.Duration {
	d := 5 * time.Second
	if b.cfg.Rate > 0 {
		d = max(d, time.Duration(float64(cap(b.out))/b.cfg.Rate*float64(time.Second))+2*time.Second)
	}
	return min(d, 10*time.Second)
}

// drain waits, up to d, until no delivery runs. Run's context has ended,
// so every user goroutine is stopping its delivery, which proves and
// commits the lines it wrote (the committer's last commit) while the
// connection is still up. Quitting first made that proof fail: a clean
// restart then sent the last lines again (1 to 5 duplicates per restart in
// the fault suite's TestBridgeRestarts).
func (b *Bridge) drain(d time.Duration) {
	n := b.delivering.Load()
	if n == 0 {
		return
	}
	start, unproved := time.Now(), b.unproved.Load()
	b.log.Info("stopping: deliveries proving their last lines", "deliveries", n)
	for b.delivering.Load() > 0 {
		if time.Since(start) > d {
			b.log.Warn("stopping: deliveries still running; what they did not commit comes again after the restart",
				"deliveries", b.delivering.Load(), "waited", d)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	if failed := b.unproved.Load() - unproved; failed > 0 {
		b.log.Warn("stopping: deliveries ended, some without proving their last lines; those come again after the restart",
			"unproved", failed, "took", time.Since(start).Round(time.Millisecond))
		return
	}
	b.log.Info("stopping: deliveries committed", "took", time.Since(start).Round(time.Millisecond))
}

// disconnected stops delivery until the next sync.
func (b *Bridge) disconnected() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.synced {
		b.log.Warn("irc disconnected: delivery paused", "server", b.host)
	}
	b.synced = false
	b.connStop()
	for tok, ch := range b.pongs {
		close(ch)
		delete(b.pongs, tok)
	}
}

// lostChannel: the bot left the channel (kicked, parted): everyone goes
// offline, and the bot rejoins after a pause.
func (b *Bridge) lostChannel(why string) {
	b.log.Warn("bot lost the channel; all users offline, rejoining", "reason", why, "channel", b.cfg.Channel)
	b.mu.Lock()
	b.synced = false
	b.connStop()
	for _, u := range b.users {
		u.setIn(false)
	}
	b.mu.Unlock()
	time.AfterFunc(5*time.Second+rand.N(5*time.Second), func() {
		if b.irc.IsConnected() {
			b.irc.Cmd.Join(b.cfg.Channel)
		}
	})
}

// joinRefused retries a refused JOIN with jittered exponential backoff
// (5 s doubling to 2 minutes; reset when the bot is in again), so a ban
// neither makes the bot hammer the server nor keeps it out after the ban is
// lifted.
func (b *Bridge) joinRefused(code, reason string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.joinRetry != nil {
		b.log.Warn("the server refused the bot's JOIN; a retry is already scheduled",
			"channel", b.cfg.Channel, "code", code, "reason", reason)
		return
	}
	d := max(b.joinBackoff, 5*time.Second)
	b.joinBackoff = min(d*2, 2*time.Minute)
	wait := d/2 + rand.N(d/2+1)
	b.log.Error("the server refused the bot's JOIN; users stay offline until it is in, retrying",
		"channel", b.cfg.Channel, "code", code, "reason", reason, "retry_in", wait.Round(time.Millisecond))
	b.joinRetry = time.AfterFunc(wait, func() {
		b.mu.Lock()
		b.joinRetry = nil
		b.mu.Unlock()
		if b.irc.IsConnected() {
			b.irc.Cmd.Join(b.cfg.Channel)
		}
	})
}

// resync reads the channel's member list after joining it: members are
// online, everyone else offline. Delivery starts.
func (b *Bridge) resync() {
	cm := b.caseMapping()
	b.mu.Lock()
	names := b.names
	b.names = nil
	in := map[string]string{}
	for _, n := range names {
		if b.isMe(n) {
			continue
		}
		if id, err := NickToID(n, cm); err == nil {
			in[id] = n
		}
	}
	for id, u := range b.users {
		if _, ok := in[id]; !ok {
			u.setIn(false)
		}
	}
	b.connCtx, b.connStop = context.WithCancel(context.Background())
	b.synced = true
	b.joinBackoff = 0
	close(b.syncedCh)
	b.syncedCh = make(chan struct{})
	b.mu.Unlock()
	for _, nick := range in {
		b.presence(nick, true, false)
	}
	b.mu.Lock()
	for _, u := range b.users {
		u.poke()
	}
	b.mu.Unlock()
	b.log.Info("channel member list read: delivery running", "channel", b.cfg.Channel, "members", len(in))
}

// presence records that nick is (or is not) in the channel.
func (b *Bridge) presence(nick string, in, split bool) {
	b.mu.Lock()
	id, err := NickToID(nick, b.caseMapping())
	if err != nil {
		b.mu.Unlock()
		if in {
			b.notice(nick, fmt.Sprintf("your nick cannot be a zkchat user (%v); change it with /nick to chat through %s", err, b.cfg.Nick))
		}
		return
	}
	u := b.users[id]
	if u == nil {
		if !in {
			b.mu.Unlock()
			return
		}
		u = b.newUser(id)
	}
	if in {
		u.mu.Lock()
		u.nick = nick
		u.mu.Unlock()
	}
	// Under b.mu: the user's goroutine may be about to leave the table.
	if split && !in {
		u.splitLeave(b.cfg.SplitGrace)
	} else {
		u.setIn(in)
	}
	b.mu.Unlock()
}

// notice queues a NOTICE; the pacer sends it.
func (b *Bridge) notice(nick, text string) {
	for _, line := range Split(Sanitize(text), lineRoom(nick)) {
		b.enqueue(context.Background(), &girc.Event{Command: girc.NOTICE, Params: []string{nick, line}})
	}
}

func (b *Bridge) enqueue(ctx context.Context, e *girc.Event) bool {
	// Numbering and queueing are one step, so a line's number says where it
	// stands in the queue: sync relies on it.
	b.outMu.Lock()
	defer b.outMu.Unlock()
	select {
	case b.out <- e:
		b.outSeq++
		return true
	case <-ctx.Done():
		return false
	}
}

// outQueue is how many lines may wait for the pacer. Paced, a line waits
// len/rate seconds in the queue, and so does every command reply and every
// delivery proof (the PING goes behind the lines); what a lost connection
// sends again grows with it too. 1,024 lines at the default 20 a second
// were 51 s. One burst plus 2 s of output (4 s at the defaults, 20 lines a
// second in bursts of 40; at least 64 lines) keeps the pacer busy all the
// same.
func outQueue(rate float64, burst int) int {
	if rate <= 0 {
		return 1024 // unpaced: the queue drains as fast as the socket takes it
	}
	return max(64, burst+int(2*rate))
}

// pacer writes every line the bot sends, at most Rate a second with bursts
// of Burst: the server's flood limits never see more.
func (b *Bridge) pacer(ctx context.Context) {
	var next time.Time
	interval := time.Duration(0)
	if b.cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / b.cfg.Rate)
	}
	for {
		select {
		case e := <-b.out:
			if interval > 0 {
				now := time.Now()
				if floor := now.Add(-time.Duration(b.cfg.Burst) * interval); next.Before(floor) {
					next = floor
				}
				if d := next.Sub(now); d > 0 {
					select {
					case <-time.After(d):
					case <-ctx.Done():
						return
					}
				}
				next = next.Add(interval)
			}
			b.irc.Send(e)
		case <-ctx.Done():
			return
		}
	}
}

// sync proves that the server has read every line queued before it: it
// queues a PING with a fresh token behind them and waits for the PONG.
func (b *Bridge) sync(ctx context.Context) error {
	b.outMu.Lock()
	mine := b.outSeq // every line the caller queued is numbered <= mine
	p := b.lastPing
	if p == nil || p.seq <= mine || p.failed() {
		// No PING queued after the caller's lines yet: queue one. Callers
		// that come while it is out wait for it too, so under load one
		// PING proves the lines of many users.
		var tok [8]byte
		_, _ = crand.Read(tok[:])
		p = &ping{token: "zkchat-" + hex.EncodeToString(tok[:]), done: make(chan struct{})}
		b.mu.Lock()
		if !b.synced {
			b.mu.Unlock()
			b.outMu.Unlock()
			return errors.New("irc disconnected")
		}
		b.pongs[p.token] = p.done
		p.conn = b.connCtx
		b.mu.Unlock()
		select {
		case b.out <- &girc.Event{Command: girc.PING, Params: []string{p.token}}:
			b.outSeq++
			p.seq = b.outSeq
			b.lastPing = p
		case <-ctx.Done():
			b.outMu.Unlock()
			return context.Cause(ctx)
		}
	}
	b.outMu.Unlock()
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

// ping is a delivery proof in flight: the PONG for token proves that the
// server read every line numbered below seq.
type ping struct {
	token string
	seq   uint64
	done  chan struct{} // closed by the PONG, or by a disconnect
	conn  context.Context
}

// failed reports whether the connection the PING went out on has ended (a
// PONG can no longer come, or came from a later connection's cleanup).
func (p *ping) failed() bool { return p.conn.Err() != nil }

// listSession is the bridge's own session for listing users: large
// buffers, unlike the users' sessions.
func (b *Bridge) listSession(ctx context.Context) (*zookeeper.Session, error) {
	b.listMu.Lock()
	defer b.listMu.Unlock()
	if b.list != nil {
		return b.list, nil
	}
	s, err := zookeeper.Dial(ctx, zookeeper.SessionConfig{Connect: b.cfg.ZooKeeper,
		BufferSize: zookeeper.LargeZKBuffer, Logger: b.log, Auth: b.cfg.ZKAuth})
	if err != nil {
		return nil, err
	}
	b.list = s
	return s, nil
}

// syncTimeout is how long a delivery proof may take: the time to drain a
// full pacer queue at the configured rate, plus 30 s. A lost connection
// fails a proof at once; this bounds a server that is up but slow. It was
// 10 s: in one fault-suite run on a loaded 2-core machine the unpaced
// bridge's PINGs behind 1,024 queued lines went unanswered for longer
// seven times, and each failed proof sent up to 3,000 messages again.
func (b *Bridge) syncTimeout() time.Duration {
	d := 30 * time.Second
	if b.cfg.Rate > 0 {
		d += time.Duration(float64(cap(b.out)) / b.cfg.Rate * float64(time.Second))
	}
	return d
}

// Synced returns a channel closed at the next time the bridge has joined the
// channel and read its member list, and whether it is synced now.
func (b *Bridge) Synced() (<-chan struct{}, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.syncedCh, b.synced
}
