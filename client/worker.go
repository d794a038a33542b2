package client

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/protocol"
	"github.com/zkchat/zkchat/zookeeper"
)

// Config configures a Worker.
type Config struct {
	// ZooKeeper is the connection string, "host:port,...[/chroot]".
	ZooKeeper      string
	SessionTimeout time.Duration // 0: DefaultSessionTimeout
	// RequestTimeout bounds the wait for the manager's answer to a register
	// or quit request, and for the topic to appear when going online.
	// 0: 15 s.
	RequestTimeout time.Duration
	// Kafka is the process's shared clients (a *kafka.Clients); nil for a
	// worker that only registers, quits and lists.
	Kafka Kafka
	// ZKBufferSize sizes the session's buffers. 0: SmallZKBuffer, enough to
	// go online and to list some hundred users; a process with one worker
	// that lists big directories wants LargeZKBuffer.
	ZKBufferSize int
	// Metadata is stored as JSON in /online/<id>; nil: host and pid.
	Metadata map[string]any
	Logger   *slog.Logger
	// Auth authenticates the worker's session (ZooKeeper digest scheme),
	// normally as "<id>:<password>"; zkchat's own principal may act for any
	// id (the bridge's workers do). Needed when the tree is locked down with
	// ACLs (acl.go); nil: no credentials.
	Auth *protocol.Auth
	// Dial opens the worker's ZooKeeper sessions; nil: zookeeper.Dial.
	// Tests hand it a fake (internal/fakezk).
	Dial DialFunc
	// SigningKey, if set, signs every message sent (protocol/sign.go), and
	// its public key goes into /online/<id> for the manager to record in
	// /registry/<id>. nil: messages go unsigned (receivers show them as
	// unverified). LoadOrCreateKey keeps one in a file.
	SigningKey ed25519.PrivateKey
	// LoadSigningKey, if set and SigningKey is not, gives the key the first
	// time one is needed (see signingKey).
	LoadSigningKey func() (ed25519.PrivateKey, error)
	// ReceiverOnline, if set, tells SendMessage whether a receiver is
	// online, from what the process already knows (the bridge's watched
	// cache: doc/scaling.md); nil: SendMessage reads /online/<to> on every
	// send.
	ReceiverOnline func(ctx context.Context, id string) (bool, error)
}

// Worker is one chat user. It owns one ZooKeeper session at a time: going
// offline closes it. Its methods may be called from several goroutines.
//
// mu guards the session and the online state, and is held through a whole
// GoOnline (its ZooKeeper calls and the wait for the topic). keepPresence
// takes it too, so GoOffline releases it to wait for keepPresence to end,
// but only after it has detached and closed the session: in that window
// the worker is offline, and a GoOnline starts anew. The committers' own
// mu is a leaf.
type Worker struct {
	id    string
	cfg   Config
	log   *slog.Logger
	paths protocol.Paths

	mu     sync.Mutex
	sess   Session // nil while no session is open
	online bool
	stop   context.CancelFunc
	done   chan struct{} // closed when the presence goroutine ends

	keys      senderKeys // the registered keys of senders, for checking signatures
	keyOnce   sync.Once  // loads loadedKey (LoadSigningKey)
	loadedKey ed25519.PrivateKey

	presMu  sync.Mutex    // a leaf: lost, lostErr
	lost    chan struct{} // closed when the presence ends without GoOffline
	lostErr error         // why it did
	// held: keepPresence has seen /online/<id> this session's, and its
	// watch on the node has not fired since. While it is set (and the
	// session connected) a send need not ask ZooKeeper whether the sender
	// is online: the watch says when that changes.
	held atomic.Bool
}

// New returns the worker of id. It validates id and calls no server.
func New(id string, cfg Config) (*Worker, error) {
	if err := protocol.ValidateID(id); err != nil {
		return nil, err
	}
	paths, err := protocol.ConnectPaths(cfg.ZooKeeper)
	if err != nil {
		return nil, err
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 15 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Dial == nil {
		cfg.Dial = dialZooKeeper
	}
	if isNil(cfg.Kafka) {
		cfg.Kafka = nil
	}
	return &Worker{id: id, cfg: cfg, log: cfg.Logger.With("worker", id), paths: paths}, nil
}

// ID is the worker id.
func (w *Worker) ID() string { return w.id }

// session returns the open session, opening one if needed.
func (w *Worker) session(ctx context.Context) (Session, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sessionLocked(ctx)
}

func (w *Worker) sessionLocked(ctx context.Context) (Session, error) {
	if w.sess != nil {
		return w.sess, nil
	}
	s, err := w.cfg.Dial(ctx, zookeeper.SessionConfig{
		Connect:        w.cfg.ZooKeeper,
		SessionTimeout: w.cfg.SessionTimeout,
		BufferSize:     w.cfg.ZKBufferSize,
		Logger:         w.log,
		Auth:           w.cfg.Auth,
	})
	if err != nil {
		return nil, err
	}
	w.sess = s
	return s, nil
}

// Register asks the manager to register the worker and waits for the answer.
// Both "registered now" and "was already registered" are success; the status
// says which.
func (w *Worker) Register(ctx context.Context) (protocol.Status, error) {
	s, err := w.session(ctx)
	if err != nil {
		return 0, fmt.Errorf("register %s: %w", w.id, err)
	}
	st, err := w.request(ctx, s, w.paths.Enroll(w.id))
	if err != nil {
		return st, fmt.Errorf("register %s: %w", w.id, err)
	}
	return st, nil
}

// Quit asks the manager to unregister the worker, then goes offline. Both
// "unregistered now" and "was not registered" are success.
func (w *Worker) Quit(ctx context.Context) (protocol.Status, error) {
	s, err := w.session(ctx)
	if err != nil {
		return 0, fmt.Errorf("quit %s: %w", w.id, err)
	}
	st, err := w.request(ctx, s, w.paths.Quit(w.id))
	if err != nil {
		return st, fmt.Errorf("quit %s: %w", w.id, err)
	}
	w.GoOffline()
	return st, nil
}

// request runs the worker's side of register and quit: file a request
// node of its own with -1, watch it until the manager writes a code, delete
// it. Only the node this call created is read as an answer: it is known by
// its creation zxid (czxid), so a node left by an earlier attempt, a
// crashed client or another implementation, or planted by anyone, is never
// taken for the manager's answer, and a node deleted and made again while
// the worker waits is seen as replaced.
func (w *Worker) request(ctx context.Context, s Session, path string) (protocol.Status, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, w.cfg.RequestTimeout, protocol.ErrManagerTimeout)
	defer cancel()
	czxid, locked, err := w.fileRequest(ctx, s, path)
	if err != nil {
		if ctx.Err() != nil {
			return 0, w.stopped(ctx, s)
		}
		return 0, err
	}
	defer w.withdraw(s, path, czxid)
	for {
		data, stat, watch, err := s.GetW(ctx, path)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			return 0, fmt.Errorf("request %s deleted before it was answered", path)
		case err != nil && ctx.Err() != nil:
			return 0, w.stopped(ctx, s)
		case err != nil:
			return 0, fmt.Errorf("watch %s: %w", path, err)
		case stat.Czxid != czxid:
			return 0, fmt.Errorf("%s: %w while waiting for the manager's answer", path, protocol.ErrRequestReplaced)
		}
		st, err := protocol.ParseStatus(data)
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", path, err)
		}
		switch st {
		case protocol.StatusDone, protocol.StatusAlready:
			return st, nil
		case protocol.StatusFailed:
			if locked {
				return st, fmt.Errorf("%w (with ZooKeeper ACLs on, the manager also refuses a request not made by the id itself or by zkchat's principal, and a quit by another password than the registration's)", protocol.ErrRequestFailed)
			}
			return st, protocol.ErrRequestFailed
		}
		select {
		case <-watch:
		case <-ctx.Done():
			return 0, w.stopped(ctx, s)
		}
	}
}

// fileRequest creates the request node at path and returns its czxid. The
// create and a write at version 0 are one multi: the write's stat names the
// node this call created, and with ACLs on it is also the touch that proves
// who made it (protocol/acl.go). A node already there was not made by this
// call: it is removed (anyone may withdraw a request) and the request filed
// again; if it may not be removed, ErrRequestHeld.
func (w *Worker) fileRequest(ctx context.Context, s Session, path string) (czxid int64, locked bool, err error) {
	acl, locked, err := s.NodeACL(ctx, parentOf(path))
	if errors.Is(err, zk.ErrNoNode) {
		return 0, false, fmt.Errorf("create %s: the zkchat tree does not exist (run `zkchat init`): %w", path, err)
	}
	if err != nil {
		return 0, false, err
	}
	pending := protocol.StatusPending.Bytes()
	const attempts = 3
	for range attempts {
		res, err := s.Multi(ctx, &zk.CreateRequest{Path: path, Data: pending, Acl: acl},
			&zk.SetDataRequest{Path: path, Data: pending, Version: 0})
		switch {
		case err == nil:
			return res[1].Stat.Czxid, locked, nil
		case errors.Is(err, zk.ErrNoNode):
			return 0, false, fmt.Errorf("create %s: the zkchat tree does not exist (run `zkchat init`): %w", path, err)
		case errors.Is(err, zk.ErrNoAuth):
			return 0, false, fmt.Errorf("create %s: %w", path, protocol.ErrNoAuth)
		case !errors.Is(err, zk.ErrNodeExists):
			return 0, false, fmt.Errorf("create %s: %w", path, err)
		}
		ok, stat, err := s.Exists(ctx, path)
		if err != nil {
			return 0, false, fmt.Errorf("read %s: %w", path, err)
		}
		if !ok {
			continue // gone meanwhile: file again
		}
		err = s.Delete(ctx, path, stat.Version)
		switch {
		case err == nil:
			w.log.Info("removed a request node this worker did not create", "path", path,
				"created", time.UnixMilli(stat.Ctime).UTC().Format(time.RFC3339))
		case errors.Is(err, zk.ErrNoAuth):
			return 0, false, fmt.Errorf("%s (created %s) may not be removed with these credentials: %w",
				path, time.UnixMilli(stat.Ctime).UTC().Format(time.RFC3339), protocol.ErrRequestHeld)
		case errors.Is(err, zk.ErrNoNode), errors.Is(err, zk.ErrBadVersion):
			// Changed meanwhile: look again.
		default:
			return 0, false, fmt.Errorf("remove %s: %w", path, err)
		}
	}
	return 0, false, fmt.Errorf("%s: made again by someone else %d times while filing: %w", path, attempts, protocol.ErrRequestHeld)
}

// withdraw deletes the worker's own request node, whatever the outcome, so
// that a later attempt starts clean; a node someone else made in its place
// is left alone. Bounded: the request's context may be over already.
func (w *Worker) withdraw(s Session, path string, czxid int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ok, stat, err := s.Exists(ctx, path)
	if err == nil && (!ok || stat.Czxid != czxid) {
		return
	}
	if err == nil {
		err = s.Delete(ctx, path, stat.Version)
	}
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		w.log.Warn("delete request", "path", path, "err", err)
	}
}

// stopped is the error for a request whose ctx ended: the caller's cause,
// or for a request no manager answered in time (ErrManagerTimeout) what the
// tree shows: whether the id is registered, whether any manager runs.
func (w *Worker) stopped(ctx context.Context, s Session) error {
	cause := context.Cause(ctx)
	if !errors.Is(cause, protocol.ErrManagerTimeout) {
		return cause
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var facts []string
	if ok, _, err := s.Exists(ctx, w.paths.Registered(w.id)); err == nil {
		if ok {
			facts = append(facts, w.id+" is registered")
		} else {
			facts = append(facts, w.id+" is not registered")
		}
	}
	if managers, err := s.Children(ctx, w.paths.Election()); err == nil {
		if len(managers) == 0 {
			facts = append(facts, "no manager is running")
		} else {
			facts = append(facts, fmt.Sprintf("%d manager(s) in the election, none answered", len(managers)))
		}
	}
	if len(facts) == 0 {
		return cause
	}
	return fmt.Errorf("%w (%s)", cause, strings.Join(facts, "; "))
}

// GoOnline creates /online/<id> in the worker's session and waits until the
// manager has created the worker's topic. It fails with ErrNotRegistered or
// ErrAlreadyOnline. Going online twice in the same worker is a no-op.
func (w *Worker) GoOnline(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.online {
		return nil
	}
	s, err := w.sessionLocked(ctx)
	if err != nil {
		return fmt.Errorf("online %s: %w", w.id, err)
	}
	ok, _, err := s.Exists(ctx, w.paths.Registered(w.id))
	if err != nil {
		return fmt.Errorf("online %s: %w", w.id, err)
	}
	if !ok {
		return fmt.Errorf("online %s: %w (register first)", w.id, protocol.ErrNotRegistered)
	}
	if err := w.createOnline(ctx, s); err != nil {
		return fmt.Errorf("online %s: %w", w.id, err)
	}
	w.online = true
	w.presMu.Lock()
	w.lost, w.lostErr = make(chan struct{}), nil
	w.presMu.Unlock()
	pctx, stop := context.WithCancel(context.Background())
	w.stop, w.done = stop, make(chan struct{})
	go w.keepPresence(pctx, s, w.done)
	if w.cfg.Kafka != nil {
		tctx, cancel := context.WithTimeoutCause(ctx, w.cfg.RequestTimeout, protocol.ErrManagerTimeout)
		defer cancel()
		if err := w.cfg.Kafka.WaitTopic(tctx, w.cfg.Kafka.Topics().Topic(w.id)); err != nil {
			w.goOfflineLocked()
			if errors.Is(err, protocol.ErrKafkaUnreachable) || errors.Is(err, protocol.ErrKafkaAuth) {
				return fmt.Errorf("online %s: %w", w.id, err)
			}
			return fmt.Errorf("online %s: the manager did not create the topic: %w", w.id, err)
		}
	}
	w.awaitKeyRecorded(ctx, s)
	return nil
}

func (w *Worker) createOnline(ctx context.Context, s Session) error {
	meta := map[string]any{}
	if w.cfg.Metadata == nil {
		host, _ := os.Hostname()
		meta["host"], meta["pid"] = host, os.Getpid()
	}
	for k, v := range w.cfg.Metadata {
		meta[k] = v
	}
	if pub := w.publicKey(); pub != nil {
		meta[protocol.OnlineKeyField] = protocol.EncodePublicKey(pub)
	}
	data, err := json.Marshal(meta)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	path := w.paths.OnlineNode(w.id)
	acl, locked, err := s.NodeACL(ctx, w.paths.Online())
	if err != nil {
		return err
	}
	_, err = s.Create(ctx, path, data, zk.FlagEphemeral, acl)
	if errors.Is(err, zk.ErrNodeExists) {
		// Ours from a session that just expired is impossible (expiry deletes
		// it), so it is another session's.
		return protocol.ErrAlreadyOnline
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if locked {
		// The manager takes the node for this identity's only once touched.
		if err := s.Touch(ctx, path, data); err != nil {
			return err
		}
	}
	return nil
}

// Presence keeping: how often the worker makes its /online node again
// before it gives up (a manager that refuses the node deletes every copy),
// and how long a copy must last for the count to start over.
const (
	presenceRetries = 3
	presenceStable  = 30 * time.Second
)

// keepPresence keeps /online/<id> the worker's while it is online: it
// watches the node, and makes it again when it is gone and the id is still
// registered (the session expired and go-zookeeper quietly opened a new one,
// or someone deleted it). When presence cannot come back (the id was
// unregistered, another session holds the node, or it keeps being removed)
// the worker goes offline and says why: Lost, LostErr, and every later send.
// Failures that may pass (a connection) are retried with backoff.
func (w *Worker) keepPresence(ctx context.Context, s Session, done chan struct{}) {
	defer close(done)
	var (
		backoff time.Duration
		remade  int       // copies made in a row that did not last
		madeAt  time.Time // when the last copy was made
	)
	for {
		ch := s.Changed()
		var watch <-chan zk.Event
		var retry *time.Timer
		if s.State() == zk.StateHasSession {
			w.mu.Lock()
			if ctx.Err() != nil || !w.online || w.sess != s {
				w.mu.Unlock()
				return // GoOffline, or presence already lost
			}
			if !madeAt.IsZero() && time.Since(madeAt) > presenceStable {
				remade = 0
			}
			wch, made, lost, err := w.holdPresenceLocked(ctx, s, remade)
			if lost != nil {
				w.loseLocked(lost)
				w.mu.Unlock()
				return
			}
			w.held.Store(err == nil)
			w.mu.Unlock()
			if made {
				remade++
				madeAt = time.Now()
			}
			if err != nil {
				backoff = min(max(2*backoff, 100*time.Millisecond), 10*time.Second)
				w.log.Warn("keeping /online: retrying", "err", err, "retry_in", backoff)
				retry = time.NewTimer(backoff)
			} else {
				backoff, watch = 0, wch
			}
		}
		var fire <-chan time.Time
		if retry != nil {
			fire = retry.C
		}
		select {
		case <-ch:
		case <-watch:
		case <-fire:
		case <-ctx.Done():
		}
		w.held.Store(false) // until the node is seen ours again
		if retry != nil {
			retry.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// holdPresenceLocked checks that /online/<id> is this session's and sets a
// watch on it; a node gone is made again if the id is still registered
// (made reports that). lost says why presence cannot come back; err is a
// failure to retry. w.mu held.
func (w *Worker) holdPresenceLocked(ctx context.Context, s Session, remade int) (watch <-chan zk.Event, made bool, lost, err error) {
	cctx, cancel := context.WithTimeout(ctx, w.cfg.RequestTimeout)
	defer cancel()
	path := w.paths.OnlineNode(w.id)
	elsewhere := fmt.Errorf("%w: %s is online in another session now", protocol.ErrAlreadyOnline, w.id)
	for {
		_, st, wch, err := s.GetW(cctx, path)
		switch {
		case err == nil && st.EphemeralOwner == s.SessionID():
			return wch, made, nil, nil
		case err == nil:
			return nil, made, elsewhere, nil
		case !errors.Is(err, zk.ErrNoNode):
			return nil, made, nil, err
		case made:
			return nil, made, nil, fmt.Errorf("%s gone right after it was made", path)
		}
		ok, _, err := s.Exists(cctx, w.paths.Registered(w.id))
		if err != nil {
			return nil, made, nil, err
		}
		if !ok {
			return nil, made, fmt.Errorf("%w: %s was unregistered while online", protocol.ErrNotRegistered, w.id), nil
		}
		if remade >= presenceRetries {
			return nil, made, fmt.Errorf("%w: %s was removed %d times in a row (refused by the manager?)", protocol.ErrNotOnline, path, remade), nil
		}
		w.log.Warn("online node gone while online; making it again", "path", path)
		if err := w.createOnline(cctx, s); err != nil {
			if errors.Is(err, protocol.ErrAlreadyOnline) {
				return nil, made, elsewhere, nil
			}
			return nil, made, nil, err
		}
		made = true
	}
}

// loseLocked ends a presence that cannot come back: the worker is offline
// (its session stays open for Register, Quit, GoOnline), and Lost says so.
// w.mu held.
func (w *Worker) loseLocked(why error) {
	w.online = false
	w.held.Store(false)
	w.log.Warn("no longer online", "err", why)
	w.presMu.Lock()
	defer w.presMu.Unlock()
	w.lostErr = why
	if w.lost != nil {
		close(w.lost)
		w.lost = nil
	}
}

// Lost returns a channel closed when the worker's presence, begun by the
// last GoOnline, ends without GoOffline: LostErr says why. nil (never
// closed) while no presence is kept.
func (w *Worker) Lost() <-chan struct{} {
	w.presMu.Lock()
	defer w.presMu.Unlock()
	if w.lost == nil && w.lostErr != nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return w.lost
}

// LostErr is why the last presence ended without GoOffline (nil if it did
// not): wrapping ErrNotRegistered, ErrAlreadyOnline or ErrNotOnline.
func (w *Worker) LostErr() error {
	w.presMu.Lock()
	defer w.presMu.Unlock()
	return w.lostErr
}

// GoOffline closes the worker's session: /online/<id> disappears. It is
// idempotent. Register, Quit and GoOnline open a new session.
func (w *Worker) GoOffline() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.goOfflineLocked()
}

// goOfflineLocked ends the worker's presence and session. Everything is
// detached and the session closed (which removes /online/<id>) before w.mu
// is let go to wait for keepPresence (which takes it): a GoOnline in that
// window finds the worker offline with no session, and goes online anew.
func (w *Worker) goOfflineLocked() {
	stop, done, sess := w.stop, w.done, w.sess
	w.stop, w.done, w.sess, w.online = nil, nil, nil, false
	w.held.Store(false)
	if stop != nil {
		stop()
	}
	if sess != nil {
		sess.Close()
	}
	if done != nil {
		w.mu.Unlock()
		<-done
		w.mu.Lock()
	}
}

// Close is GoOffline.
func (w *Worker) Close() { w.GoOffline() }

// checkOnline verifies that /online/<id> exists and belongs to this
// worker's session.
func (w *Worker) checkOnline(ctx context.Context) (Session, error) {
	w.mu.Lock()
	s, online := w.sess, w.online
	w.mu.Unlock()
	if !online || s == nil {
		if why := w.LostErr(); why != nil {
			return nil, fmt.Errorf("%w: %w", protocol.ErrNotOnline, why)
		}
		return nil, protocol.ErrNotOnline
	}
	if w.held.Load() && s.State() == zk.StateHasSession {
		return s, nil // known from keepPresence's watch
	}
	ok, st, err := s.Exists(ctx, w.paths.OnlineNode(w.id))
	if err != nil {
		return nil, err
	}
	if !ok || st.EphemeralOwner != s.SessionID() {
		return nil, protocol.ErrNotOnline
	}
	return s, nil
}

// SendMessage sends text to the worker to and waits for the broker's
// acknowledgement. Both must be online: else ErrNotOnline,
// ErrReceiverOffline, or ErrNotRegistered for an unknown receiver; nothing
// is produced then. A text over protocol.MaxMessageBytes is refused first
// (ErrMessageTooLong, with its size and the limit), before any server is
// called.
func (w *Worker) SendMessage(ctx context.Context, to, text string) error {
	if err := protocol.ValidateID(to); err != nil {
		return fmt.Errorf("send %s→%s: receiver: %w", w.id, to, err)
	}
	if err := protocol.CheckMessage(text); err != nil {
		return fmt.Errorf("send %s→%s: %w", w.id, to, err)
	}
	if w.cfg.Kafka == nil {
		return fmt.Errorf("send %s→%s: %w", w.id, to, protocol.ErrNoKafka)
	}
	w.mu.Lock()
	sess := w.sess
	w.mu.Unlock()
	if sess == nil {
		return fmt.Errorf("send %s→%s: %w", w.id, to, protocol.ErrNotOnline)
	}
	// The sender is known online from its presence watch, the receiver
	// from ReceiverOnline's cache, if any: then a send reads nothing from
	// ZooKeeper. Otherwise both checks at once: go-zookeeper pipelines them
	// on the connection, so a send waits one round trip for them, not two.
	type res struct {
		ok  bool
		err error
	}
	var r res
	var peer chan res
	if w.cfg.ReceiverOnline == nil {
		peer = make(chan res, 1)
		go func() {
			ok, _, err := sess.Exists(ctx, w.paths.OnlineNode(to))
			peer <- res{ok, err}
		}()
	}
	s, err := w.checkOnline(ctx)
	if peer != nil {
		r = <-peer
	}
	if err != nil {
		return fmt.Errorf("send %s→%s: %w", w.id, to, err)
	}
	switch {
	case w.cfg.ReceiverOnline != nil:
		r.ok, r.err = w.cfg.ReceiverOnline(ctx, to)
	case s != sess: // a new session meanwhile: ask again in it
		r.ok, _, r.err = s.Exists(ctx, w.paths.OnlineNode(to))
	}
	ok, err := r.ok, r.err
	if err != nil {
		return fmt.Errorf("send %s→%s: %w", w.id, to, err)
	}
	if !ok {
		reg, _, err := s.Exists(ctx, w.paths.Registered(to))
		switch {
		case err != nil:
			return fmt.Errorf("send %s→%s: %w", w.id, to, err)
		case reg:
			return fmt.Errorf("send %s→%s: %w", w.id, to, protocol.ErrReceiverOffline)
		default:
			return fmt.Errorf("send %s→%s: receiver %w", w.id, to, protocol.ErrNotRegistered)
		}
	}
	topic := w.cfg.Kafka.Topics().Topic(to)
	if _, err := w.cfg.Kafka.Produce(ctx, topic, []byte(w.id), []byte(text), w.sign(to, text)...); err != nil {
		return fmt.Errorf("send %s→%s: %w", w.id, to, err)
	}
	return nil
}

// ReadMessages hands fn every message unread when it is called, oldest
// first, and commits the read position after fn returns nil for them. If fn
// fails, what it accepted before is committed and its error returned, so
// the failed message is read again next time. It returns how many messages
// fn accepted.
func (w *Worker) ReadMessages(ctx context.Context, fn func(protocol.Message) error) (int, error) {
	return w.read(ctx, false, ReadOptions{}, fn)
}

// FollowMessages is ReadMessages that keeps waiting for new messages until
// ctx ends; then it returns nil. The position is committed whenever no
// further message is waiting.
func (w *Worker) FollowMessages(ctx context.Context, fn func(protocol.Message) error) error {
	return w.FollowMessagesWith(ctx, ReadOptions{}, fn)
}

// ReadOptions tunes FollowMessagesWith.
type ReadOptions struct {
	// BeforeCommit, if set, runs before each commit of the read position;
	// if it fails nothing is committed and reading stops with its error.
	// A front end uses it to prove that what fn handed on was really
	// delivered (the IRC bridge waits for a PONG).
	BeforeCommit func(context.Context) error
	// BeforeCommitTimeout bounds BeforeCommit; 0: 10 s. A front end that
	// paces its output waits longer for its proof.
	BeforeCommitTimeout time.Duration
	// CommitInterval is the least time between two commits of a follow
	// (the first goes at once; the last, when the read ends, too); 0:
	// DefaultCommitInterval. A reader that stops without committing (a
	// crash) is handed again what it read in that time and the commit's
	// own, at most.
	CommitInterval time.Duration
	// CommitSlots, if set, bounds the commits in flight of every read that
	// shares it (a send takes a slot, a receive gives it back): a
	// process that follows thousands of topics sends Kafka at most cap of
	// them at once.
	CommitSlots chan struct{}
}

// DefaultCommitInterval is ReadOptions.CommitInterval's default.
const DefaultCommitInterval = time.Second

// FollowMessagesWith is FollowMessages with options.
// When ctx ends it returns nil, unless the last commit failed (its
// BeforeCommit or Kafka refused it): then an error wrapping
// ErrNotCommitted, since what fn handed on will be read again.
func (w *Worker) FollowMessagesWith(ctx context.Context, opts ReadOptions, fn func(protocol.Message) error) error {
	_, err := w.read(ctx, true, opts, fn)
	if err != nil && ctx.Err() != nil && !errors.Is(err, protocol.ErrNotCommitted) {
		return nil
	}
	return err
}

func (w *Worker) read(ctx context.Context, follow bool, opts ReadOptions, fn func(protocol.Message) error) (int, error) {
	k := w.cfg.Kafka
	if k == nil {
		return 0, fmt.Errorf("read %s: %w", w.id, protocol.ErrNoKafka)
	}
	if _, err := w.checkOnline(ctx); err != nil {
		return 0, fmt.Errorf("read %s: %w", w.id, err)
	}
	topic, group := k.Topics().Topic(w.id), k.Topics().Group(w.id)
	commit := w.commitFunc(ctx, opts, group, topic)
	if follow {
		return w.follow(ctx, group, topic, cmp.Or(opts.CommitInterval, DefaultCommitInterval), commit, fn)
	}
	return w.readUnread(ctx, group, topic, commit, fn)
}

// commitFunc stores next as the group's position (on the partitions in
// it), after opts.BeforeCommit. It runs even when ctx is over: what the
// callback accepted must not be read again.
func (w *Worker) commitFunc(ctx context.Context, opts ReadOptions, group, topic string) func(next protocol.Position) error {
	return func(next protocol.Position) error {
		if opts.BeforeCommit != nil {
			wait := opts.BeforeCommitTimeout
			if wait <= 0 {
				wait = 10 * time.Second
			}
			bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wait)
			err := opts.BeforeCommit(bctx)
			cancel()
			if err != nil {
				return fmt.Errorf("not committed: %w", err)
			}
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if opts.CommitSlots != nil {
			select {
			case opts.CommitSlots <- struct{}{}:
				defer func() { <-opts.CommitSlots }()
			case <-cctx.Done():
				return kafkaCommitError{fmt.Errorf("commit %s: waiting for a commit slot: %w: %w", topic, protocol.ErrTransient, cctx.Err())}
			}
		}
		if err := w.cfg.Kafka.Commit(cctx, group, topic, next); err != nil {
			return kafkaCommitError{err}
		}
		return nil
	}
}

// readUnread hands fn what was unread when it started (on every partition,
// the committed position up to the high watermark), then commits once.
func (w *Worker) readUnread(ctx context.Context, group, topic string, commit func(protocol.Position) error, fn func(protocol.Message) error) (n int, err error) {
	k := w.cfg.Kafka
	low, end, err := k.Bounds(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", w.id, err)
	}
	start, err := k.Committed(ctx, group, topic)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", w.id, err)
	}
	// unread: the partitions with records to read, and where each ends.
	unread := protocol.Position{}
	for p, e := range end {
		s, ok := start[p]
		if !ok {
			s = low[p]
		}
		if s < e {
			unread[p] = e
		}
	}
	if len(unread) == 0 {
		return 0, nil // nothing unread: no assignment needed
	}
	r, err := k.OpenReader(ctx, group, topic)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", w.id, err)
	}
	defer r.Close()
	next := protocol.Position{} // per partition, the offset after the last accepted message
	defer func() {
		if len(next) > 0 {
			if cerr := commit(next); cerr != nil {
				err = errors.Join(err, fmt.Errorf("read %s: %w", w.id, cerr))
			}
		}
	}()
	for len(unread) > 0 {
		msg, err := r.Next(ctx)
		if err != nil {
			return n, fmt.Errorf("read %s: %w", w.id, err)
		}
		msg.To = w.id
		msg.Trust = w.checkSender(ctx, msg)
		if err := fn(msg); err != nil {
			return n, err
		}
		n++
		next[msg.Partition] = msg.Offset + 1
		if e, ok := unread[msg.Partition]; ok && msg.Offset+1 >= e {
			delete(unread, msg.Partition)
		}
	}
	return n, nil
}

// follow hands fn every message from the committed position on, until ctx
// ends, fn fails or the committer gives up. Commits go in the background,
// coalesced: a commit takes a few milliseconds (the group coordinator
// lingers), and the next message must not wait for it.
func (w *Worker) follow(ctx context.Context, group, topic string, every time.Duration, commit func(protocol.Position) error, fn func(protocol.Message) error) (n int, err error) {
	r, err := w.cfg.Kafka.OpenReader(ctx, group, topic)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", w.id, err)
	}
	defer r.Close()
	// The reader's context ends when the committer gives up.
	rctx, stopReading := context.WithCancelCause(ctx)
	defer stopReading(nil)
	c := newCommitter(commit, every, w.log.With("topic", topic), stopReading)
	defer func() {
		if cerr := c.stop(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("read %s: %w: %w", w.id, protocol.ErrNotCommitted, cerr))
		}
	}()
	for {
		if cerr := c.failed(); cerr != nil {
			return n, fmt.Errorf("read %s: %w", w.id, cerr)
		}
		msg, err := r.Next(rctx)
		if err != nil {
			if cerr := c.failed(); cerr != nil {
				return n, fmt.Errorf("read %s: %w", w.id, cerr)
			}
			return n, fmt.Errorf("read %s: %w", w.id, err)
		}
		msg.To = w.id
		msg.Trust = w.checkSender(ctx, msg)
		if err := fn(msg); err != nil {
			return n, err
		}
		n++
		// Offered after every message, so that the position keeps moving
		// while a backlog is read and a failed delivery proof re-sends only
		// what came after the last commit; the committer coalesces (one
		// commit at a time, of the latest offer).
		c.offer(msg.Partition, msg.Offset+1)
	}
}

// commitRetryDelay is the wait before a failed commit is tried again
// (shortened by the tests).
var commitRetryDelay = time.Second

// committer commits a reader's position in the background: offer replaces
// the offset to commit on a partition, so a burst of messages costs one
// commit (of every partition offered since the last one), and commits are
// at least every apart: a busy reader commits once per interval, not once
// per message.
type committer struct {
	commit func(protocol.Position) error
	every  time.Duration
	log    *slog.Logger
	onFail func(error)   // called once the committer gave up
	wake   chan struct{} // cap 1
	quit   chan struct{}
	done   chan struct{}

	mu   sync.Mutex
	next protocol.Position // to commit; empty: nothing
	err  error
}

func newCommitter(commit func(protocol.Position) error, every time.Duration, log *slog.Logger, onFail func(error)) *committer {
	c := &committer{commit: commit, every: every, log: log, onFail: onFail, wake: make(chan struct{}, 1), quit: make(chan struct{}),
		done: make(chan struct{}), next: protocol.Position{}}
	go c.loop()
	return c
}

// offer makes next the position to commit on partition.
func (c *committer) offer(partition int32, next int64) {
	c.mu.Lock()
	c.next[partition] = next
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *committer) failed() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// take returns the position to commit and clears it.
func (c *committer) take() protocol.Position {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.next
	c.next = protocol.Position{}
	return n
}

// kafkaCommitError is a commit that Kafka did not take (as opposed to a
// failed BeforeCommit).
type kafkaCommitError struct{ error }

func (e kafkaCommitError) Unwrap() error { return e.error }

// transientCommit reports whether a failed commit is worth trying again:
// Kafka away or slow (a broker down, the group coordinator moving). Not a
// topic that is gone: a retry that lands once a topic of the same name is
// made again would store the old topic's position for the new one.
func transientCommit(err error) bool {
	var ce kafkaCommitError
	if !errors.As(err, &ce) || errors.Is(err, protocol.ErrNoTopic) {
		return false
	}
	return errors.Is(err, protocol.ErrTransient) || errors.Is(err, context.DeadlineExceeded)
}

func (c *committer) loop() {
	defer close(c.done)
	again := false
	var last time.Time // when the last commit began
	for {
		if !again {
			select {
			case <-c.wake:
			case <-c.quit:
				return
			}
		}
		again = false
		if wait := time.Until(last.Add(c.every)); wait > 0 {
			// stop commits what is offered by then, at once.
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-c.quit:
				t.Stop()
				return
			}
		}
		n := c.take()
		if len(n) == 0 {
			continue
		}
		last = time.Now()
		err := c.commit(n)
		if err == nil {
			continue
		}
		if transientCommit(err) {
			// Keep reading and commit later: ending the read would make its
			// caller read again, from the last commit, what it has already
			// handed on (a duplicate for every message since).
			c.log.Warn("commit of the read position failed; retrying", "position", n, "err", err)
			c.mu.Lock()
			for p, off := range n {
				if _, newer := c.next[p]; !newer {
					c.next[p] = off
				}
			}
			c.mu.Unlock()
			select {
			case <-time.After(commitRetryDelay):
				again = true
				continue
			case <-c.quit:
				return
			}
		}
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		c.onFail(err)
		return
	}
}

// stop ends the loop and commits what was offered last, if anything.
func (c *committer) stop() error {
	close(c.quit)
	<-c.done
	if err := c.failed(); err != nil {
		return err
	}
	if n := c.take(); len(n) > 0 {
		return c.commit(n)
	}
	return nil
}

// GetOnlineUsers lists the ids that are online, sorted.
func (w *Worker) GetOnlineUsers(ctx context.Context) ([]string, error) {
	s, err := w.session(ctx)
	if err != nil {
		return nil, fmt.Errorf("online users: %w", err)
	}
	return sortedChildren(ctx, s, w.paths.Online(), "online users")
}

// GetRegisteredUsers lists the registered ids, sorted.
func (w *Worker) GetRegisteredUsers(ctx context.Context) ([]string, error) {
	s, err := w.session(ctx)
	if err != nil {
		return nil, fmt.Errorf("registered users: %w", err)
	}
	return sortedChildren(ctx, s, w.paths.Registry(), "registered users")
}

func sortedChildren(ctx context.Context, s Session, dir, what string) ([]string, error) {
	ids, err := s.Children(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	sort.Strings(ids)
	return ids, nil
}

// parentOf is the parent of an absolute path.
func parentOf(path string) string {
	if i := strings.LastIndexByte(path, '/'); i > 0 {
		return path[:i]
	}
	return "/"
}
