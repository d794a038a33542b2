package bridge

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lrstanley/girc"

	"github.com/zkchat/zkchat/client"
	"github.com/zkchat/zkchat/internal/ratelog"
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
	// KeyDir holds the users' signing keys (<id>.key, made when missing;
	// client.LoadOrCreateKey): the bridge signs what its users send. "":
	// its users send unsigned.
	KeyDir string
	// UnverifiedMark follows the sender's name on a delivered message whose
	// sender nothing vouches for (protocol.Trust other than Verified:
	// unsigned, no registered key, bad signature), as in "<bob?> hi". "":
	// no mark.
	UnverifiedMark string
	// Rate is the most lines a second the bot writes, Burst how many may
	// go at once; 0: 20 and 40. Negative Rate: no pacing, for a server that
	// exempts the bot from flood limits.
	Rate  float64
	Burst int
	// SplitGrace is how long a user who left in a netsplit stays online,
	// waiting for the network to heal. 0: 60 s.
	SplitGrace time.Duration
	// SessionConcurrency bounds the users going online at once after a
	// JOIN burst (each a few ZooKeeper calls on the bridge's one session
	// and a wait for the manager to make its topic: 0.35 s with 32 at a
	// time, 1.8-2.2 s with 256, in doc/scaling.md's 10,000-user runs).
	// 0: 256.
	SessionConcurrency int
	SessionTimeout     time.Duration // of each user's session; 0: default
	RequestTimeout     time.Duration // manager answers; 0: 15 s
	Logger             *slog.Logger
	// SharedChannel: several bridges (each with its own nick, on the same
	// IRC network) serve Channel together and share its users by
	// rendezvous hashing over the live bridges (ring.go): each user is
	// served by one of them, and the users of a bridge that stops or dies
	// move to the others. false: this bridge serves every member, as the
	// only bridge of the channel.
	SharedChannel bool
	// BridgeID names the bridge among those sharing the channel: its node
	// /bridges/<id> and its rendezvous hashes. An id (protocol.ValidateID),
	// unique among them; "": the id of Nick (NickToID).
	BridgeID string
	// Puppets: show every user online through another front end (the CLI,
	// a bridge of another network) as an IRC nick of its own, one client
	// connection each, that IRC users /msg directly (puppet.go). Off with
	// SharedChannel. MaxPuppets bounds them; 0: 100.
	Puppets    bool
	MaxPuppets int
	// ZKAuth is zkchat's own principal (ZooKeeper digest). The bridge's
	// sessions, its users' included, authenticate with it: with ACLs on,
	// the manager lets that principal act for any id. nil: no credentials.
	ZKAuth *protocol.Auth

	// accountTimeout bounds the wait for the server's answer to a lookup
	// of a nick's account (see askAccount); 0: proofTimeout. Tests shorten it.
	accountTimeout time.Duration
}

// Bridge is the IRC bot. Run it with Run.
//
// It wires the parts, each the only owner of its state: the IRC
// connection and its handlers (this file, handlers.go), the outbox (every
// line written, pacing and delivery proofs: outbox.go), the channel's
// members and the users table (membership.go), each user's goroutine
// (user.go, delivery.go) and the commands (commands.go).
//
// Locks, in the order they may be taken: members.mu, then a user's mu, then
// outbox.mu (a leaf). None is held across a ZooKeeper or Kafka call, an IRC
// write, or a wait for room in the outbox. The rest is atomic: registered
// (read by girc's nick-collision callback), the server's case mapping, and
// the deliveries' counters.
type Bridge struct {
	cfg       Config
	warn      *ratelog.Logger // lines that bad input can make repeat
	log       *slog.Logger
	irc       *girc.Client
	out       *outbox
	dir       directory              // the bridge's own ZooKeeper session
	newWorker func(id string) worker // a user's chat client
	sem       chan struct{}          // users going online at once
	// commitSlots bounds the deliveries' offset commits in flight
	// (client.ReadOptions.CommitSlots): each is one request to Kafka.
	commitSlots chan struct{}
	host        string

	m          members
	lookups    lookups // account lookups (WHOIS) in flight: account.go
	deliveries deliveries
	count      counters     // Stats' counters
	casemap    atomic.Int32 // the server's CASEMAPPING, from ISUPPORT
	// registered: the connection is past its welcome (a nick collision is
	// then a failed reclaimNick, not a login's).
	registered *atomic.Bool

	// SharedChannel: the bridges sharing the channel (ring.go), the ring
	// goroutine's wake-up, and whether the bot has been in the channel
	// (the bridge's node is made only then).
	ring       ring
	ringKick   chan struct{}
	joinedOnce atomic.Bool

	// Puppets (puppet.go): the connections, and runPuppets' wake-up.
	pup        puppets
	puppetKick chan struct{}

	// trace, if set (benchmarks only: export_test.go, before Run), is told
	// when a sent message passes a stage of the bridge (traceStage), with
	// the text of the stage's line; it must not block.
	trace func(stage traceStage, text string)
}

// traceStage is a point on a message's path through the bridge, for the
// hop-by-hop latency benchmark (make bench-hops).
type traceStage int

const (
	traceReceived traceStage = iota // the IRC handler got the command
	traceSending                    // the user's goroutine starts the send
	traceAcked                      // Kafka acknowledged the record
	traceConsumed                   // the receiver's delivery got the record
	traceWritten                    // the outbox hands the line to girc
)

// maxCommitsInFlight bounds the deliveries' offset commits in flight: with
// thousands of users online, each committing at most once a second
// (client.DefaultCommitInterval), Kafka gets at most this many at once.
const maxCommitsInFlight = 32

// Log messages an operator greps for.
const (
	msgOnline  = "user online"
	msgOffline = "user offline"
)

// New validates cfg and registers the IRC handlers, once: a reconnect
// reuses them, so no event is ever handled twice.
func New(cfg Config) (*Bridge, error) {
	if cfg.Kafka == nil {
		return nil, errors.New("bridge: no Kafka clients")
	}
	b, err := newBridge(cfg, nil, nil)
	if err != nil {
		return nil, err
	}
	zd := newZKDirectory(zookeeper.SessionConfig{Connect: cfg.ZooKeeper, SessionTimeout: cfg.SessionTimeout,
		BufferSize: zookeeper.LargeZKBuffer, Logger: b.log, Auth: cfg.ZKAuth})
	b.dir = zd
	b.newWorker = func(id string) worker { return b.clientWorker(id, zd) }
	return b, nil
}

// clientWorker is a user's client.Worker: a share of the bridge's session
// (zkDirectory.View), the cache for receivers' presence, and the process's
// Kafka clients.
func (b *Bridge) clientWorker(id string, zd *zkDirectory) worker {
	// The key is made or read only when the user goes online or sends
	// (client.Config.LoadSigningKey): a nick that only talks to the bot
	// makes no file.
	var load func() (ed25519.PrivateKey, error)
	if b.cfg.KeyDir != "" {
		load = func() (ed25519.PrivateKey, error) { return client.LoadOrCreateKey(b.cfg.KeyDir, id) }
	}
	w, err := client.New(id, client.Config{
		ZooKeeper: b.cfg.ZooKeeper, SessionTimeout: b.cfg.SessionTimeout,
		RequestTimeout: b.cfg.RequestTimeout, Kafka: b.cfg.Kafka,
		Dial: zd.View, ReceiverOnline: zd.ReceiverOnline,
		Logger: b.cfg.Logger, Auth: b.cfg.ZKAuth,
		Metadata:       map[string]any{"via": "irc", "bridge": b.cfg.Nick, "channel": b.cfg.Channel},
		LoadSigningKey: load,
	})
	if err != nil { // id came from NickToID, so valid
		panic(fmt.Sprintf("bridge: worker for %q: %v", id, err))
	}
	return w
}

// newBridge is New with the outside given: the users' workers and the
// directory (tests pass fakes; New the real ones).
func newBridge(cfg Config, newWorker func(id string) worker, dir directory) (*Bridge, error) {
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
		cfg.SessionConcurrency = 256
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxPuppets <= 0 {
		cfg.MaxPuppets = 100
	}
	if cfg.SharedChannel && cfg.BridgeID == "" {
		id, err := NickToID(cfg.Nick, RFC1459)
		if err != nil {
			return nil, fmt.Errorf("bridge id from nick %q: %w (set a bridge id)", cfg.Nick, err)
		}
		cfg.BridgeID = id
	}
	if cfg.SharedChannel {
		if err := protocol.ValidateID(cfg.BridgeID); err != nil {
			return nil, fmt.Errorf("bridge id: %w", err)
		}
		cfg.Puppets = false // a puppet's messages must reach the sender's own bridge
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
		// The outbox paces the bot's output: girc's limiter is unreliable.
		AllowFlood: true,
		// girc answers CTCP VERSION with the Go version and OS otherwise.
		Version: "zkchat bridge",
		// GlobalFormat would rewrite {b}-style codes in user text.
		GlobalFormat: false,
		PingDelay:    30 * time.Second,
		// No SupportedCaps: girc asks for account-tag, extended-join and
		// account-notify by default, which account.go relies on (and does
		// without, asking WHOIS, where the server has none).
	}
	log := cfg.Logger.With("component", "bridge")
	registered := new(atomic.Bool)
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
	irc := girc.New(gc)
	b := &Bridge{registered: registered, cfg: cfg, log: log, warn: ratelog.New(log, 10*time.Second), irc: irc,
		out: newOutbox(irc, cfg.Rate, cfg.Burst), dir: dir, newWorker: newWorker,
		sem: make(chan struct{}, cfg.SessionConcurrency), commitSlots: make(chan struct{}, maxCommitsInFlight), host: cfg.Server,
		ring: ring{self: cfg.BridgeID}, ringKick: make(chan struct{}, 1),
		pup: puppets{live: map[string]*puppet{}, metas: map[string]onlineMeta{}}, puppetKick: make(chan struct{}, 1),
	}
	// A line girc may have dropped fails the proofs on its connection;
	// a new connection starts them afresh (see outbox.lost).
	b.out.setLogger(log, b.warn)
	b.out.onLost = func() { b.irc.Close() }
	b.m.init()
	b.handlers()
	b.accountHandlers()
	return b, nil
}

func (b *Bridge) caseMapping() CaseMapping { return CaseMapping(b.casemap.Load()) }

// sessionTimeout is the ZooKeeper session timeout the bridge asks for.
func (b *Bridge) sessionTimeout() time.Duration {
	if b.cfg.SessionTimeout > 0 {
		return b.cfg.SessionTimeout
	}
	return zookeeper.DefaultSessionTimeout
}

func (b *Bridge) isMe(nick string) bool {
	cm := b.caseMapping()
	return cm.Fold(nick) == cm.Fold(b.irc.GetNick())
}

func (b *Bridge) sameChannel(name string) bool {
	cm := b.caseMapping()
	return cm.Fold(name) == cm.Fold(b.cfg.Channel)
}

// Run connects and serves until ctx ends, reconnecting with jittered
// exponential backoff. It owns every goroutine the bridge starts: the
// outbox's writer, the users' goroutines (through the users table), and the
// stop sequence; it returns once they have all ended.
func (b *Bridge) Run(ctx context.Context) error {
	b.out.stopWaiting(ctx.Done())
	b.m.start(ctx)
	octx, stopOutbox := context.WithCancel(context.Background())
	outboxDone := make(chan struct{})
	go func() { defer close(outboxDone); b.out.run(octx) }()
	quitDone := make(chan struct{})
	stopIRC := context.AfterFunc(ctx, func() {
		defer close(quitDone)
		b.deliveries.drain(b.log, b.drainTimeout())
		b.irc.Quit("zkchat bridge stopping")
		b.irc.Close()
	})
	defer func() {
		if !stopIRC() { // it ran: Run does not return before it is done
			<-quitDone
		}
	}()
	ringDone := make(chan struct{})
	if b.cfg.SharedChannel {
		go func() { defer close(ringDone); b.runRing(ctx) }()
	} else {
		close(ringDone)
	}
	puppetsDone := make(chan struct{})
	if b.cfg.Puppets {
		go func() { defer close(puppetsDone); b.runPuppets(ctx) }()
	} else {
		close(puppetsDone)
	}

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
		// A connection that lasted, or got as far as reading the member
		// list, worked: the next failure starts a new series, so a few
		// quick server restarts do not leave the bot away for minutes.
		if time.Since(start) > 2*time.Minute {
			backoff = time.Second
		}
		select {
		case <-syncedCh:
			backoff = time.Second
		default:
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		b.log.Warn("irc connection ended; reconnecting", "server", b.host, "err", err, "retry_in", wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		backoff = min(backoff*2, 2*time.Minute)
	}
	b.disconnected()
	<-ringDone       // it ends with ctx; it uses the session closed below
	<-puppetsDone    // so does this one; its puppets have quit IRC
	b.dir.Stopping() // the session's close below takes everyone's node at once
	b.m.stop()       // everyone offline with the bridge; waits for the users' goroutines
	stopOutbox()
	<-outboxDone
	b.dir.Close()
	return nil
}

// drainTimeout bounds how long a stopping bridge waits for its deliveries'
// last delivery proofs (a PING and its PONG, a commit) before it quits IRC:
// the time the outbox takes to send a full queue, plus 2 s, at least 5 s
// and at most 10 s (Docker's default stop grace period; a supervisor kills
// what is still running after it).
func (b *Bridge) drainTimeout() time.Duration {
	return min(max(5*time.Second, b.out.drainTime()+2*time.Second), 10*time.Second)
}

// proofTimeout is how long a delivery proof may take: the time to send a
// full proof path at the configured rate, twice (the bot's replies take
// every other line at most), plus 30 s. A lost connection fails a
// proof at once; this bounds a server that is up but slow (a loaded machine
// may take well over 10 s to answer a PING behind a full unpaced queue, and
// each failed proof sends its lines again).
func (b *Bridge) proofTimeout() time.Duration {
	return 30*time.Second + 2*b.out.drainTime()
}

// reclaimNick takes the configured nick back when the nick that held it
// (a squatter, or the bot's own ghost from a connection the server had not
// yet dropped) quits or changes nick: otherwise the bot keeps "nick_" for
// good, and /msg to its nick reaches nobody.
func (b *Bridge) reclaimNick(gone string) {
	cm := b.caseMapping()
	if cm.Fold(gone) != cm.Fold(b.cfg.Nick) || b.isMe(b.cfg.Nick) {
		return
	}
	b.log.Warn("the bot's nick is free again; taking it back", "nick", b.cfg.Nick, "current", b.irc.GetNick())
	b.irc.Cmd.Nick(b.cfg.Nick)
}
