package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/protocol"
)

// Session defaults.
const (
	DefaultSessionTimeout = 10 * time.Second
	// SmallZKBuffer is the buffer size for sessions that only create one node
	// and ping (a worker). go-zookeeper allocates two buffers per connection,
	// 1.5 MB each by default; a bridge holds one session per online user.
	SmallZKBuffer = 16 << 10
	// LargeZKBuffer is for sessions that list big directories (a manager
	// listing /request/enroll with many thousand children).
	LargeZKBuffer = 4 << 20
	// ManagerMaxReply is the largest listing a manager accepts: about
	// 980,000 pending requests of 64-character ids (LargeZKBuffer holds
	// 61,680). A reply above the limit closes the connection, so a
	// directory must never outgrow it: a leader that cannot list a
	// directory cannot answer anything in it.
	ManagerMaxReply = 64 << 20
	// DialTimeout bounds the wait for a session in Dial.
	DialTimeout = 15 * time.Second
)

// SessionConfig describes one ZooKeeper session.
type SessionConfig struct {
	// Connect is "host:port[,host:port...][/chroot]".
	Connect        string
	SessionTimeout time.Duration // 0: DefaultSessionTimeout
	BufferSize     int           // 0: SmallZKBuffer
	Logger         *slog.Logger  // nil: slog.Default()
	// MaxReply is the largest reply accepted (0: BufferSize). go-zookeeper
	// allocates BufferSize up front but grows its receive buffer only when
	// a bigger reply comes, up to this; a bigger one closes the connection.
	MaxReply int
	// OnState, if set, is called from go-zookeeper's event loop on every
	// session state change. It must not block.
	OnState func(zk.State)
	// OnWatch, if set, is called from go-zookeeper's event loop with every
	// watch event (a node's data changed, it was created or deleted, its
	// children changed), whoever set the watch. It must not block. With
	// it, one goroutine can follow many nodes: the per-call watch channels
	// (one buffered event each) may be left unread.
	OnWatch func(zk.Event)
	// Auth, if set, authenticates the session with ZooKeeper's digest scheme
	// (and again after every reconnect), and the tree it creates is locked
	// down with ACLs (see acl.go). nil: no credentials, open ACLs.
	Auth *protocol.Auth
}

// Session is a ZooKeeper connection and the zkchat tree under its chroot.
// go-zookeeper's calls take no context; Session's do, and give up waiting
// (the call itself still completes in the background) when it ends.
type Session struct {
	Conn  *zk.Conn
	Paths protocol.Paths

	auth *protocol.Auth // nil: no credentials
	log  *slog.Logger

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every state change
}

// Dial opens a session and waits until it is established or ctx ends.
func Dial(ctx context.Context, cfg SessionConfig) (*Session, error) {
	servers, chroot, err := protocol.SplitConnect(cfg.Connect)
	if err != nil {
		return nil, err
	}
	paths, _ := protocol.NewPaths(chroot) // checked by SplitConnect
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = DefaultSessionTimeout
	}
	if cfg.BufferSize <= 0 {
		cfg.BufferSize = SmallZKBuffer
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Session{Paths: paths, auth: cfg.Auth, log: log, changed: make(chan struct{})}
	conn, _, err := zk.Connect(servers, cfg.SessionTimeout,
		zk.WithLogger(zkLogger{log}),
		zk.WithLogInfo(false),
		zk.WithMaxBufferSize(max(cfg.MaxReply, cfg.BufferSize)),
		zk.WithMaxConnBufferSize(cfg.BufferSize),
		// The global event channel holds 6 events and drops the rest; the
		// callback sees every one.
		zk.WithEventCallback(func(ev zk.Event) {
			if ev.Type != zk.EventSession {
				if cfg.OnWatch != nil && ev.Type != zk.EventNotWatching {
					cfg.OnWatch(ev)
				}
				return
			}
			s.mu.Lock()
			close(s.changed)
			s.changed = make(chan struct{})
			s.mu.Unlock()
			if cfg.OnState != nil {
				cfg.OnState(ev.State)
			}
		}))
	if err != nil {
		return nil, fmt.Errorf("zookeeper %s: %w", cfg.Connect, err)
	}
	s.Conn = conn
	wctx, cancel := context.WithTimeoutCause(ctx, DialTimeout,
		fmt.Errorf("cannot reach ZooKeeper at %s within %s", cfg.Connect, DialTimeout))
	defer cancel()
	if err := s.WaitSession(wctx); err != nil {
		conn.Close()
		return nil, err
	}
	if cfg.Auth != nil {
		// go-zookeeper keeps the credentials and sends them again after
		// every reconnect. The digest scheme accepts any password (it only
		// computes the identity), so this fails only on a broken connection.
		if _, err := Do(wctx, func() (struct{}, error) {
			return struct{}{}, conn.AddAuth("digest", cfg.Auth.Bytes())
		}); err != nil {
			conn.Close()
			return nil, fmt.Errorf("zookeeper %s: authenticating as %s: %w", cfg.Connect, cfg.Auth.User, err)
		}
	}
	return s, nil
}

// Changed returns a channel that is closed at the next state change.
func (s *Session) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// WaitSession waits until the connection has a session.
func (s *Session) WaitSession(ctx context.Context) error {
	for {
		ch := s.Changed()
		if s.Conn.State() == zk.StateHasSession {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w (connection state %s)", context.Cause(ctx), s.Conn.State())
		}
	}
}

// Close ends the session; its ephemeral nodes disappear.
func (s *Session) Close() { s.Conn.Close() }

// WriteOutcomeUnknown reports whether a ZooKeeper write that returned err
// may have been applied all the same: the connection or session broke with
// the request in flight (go-zookeeper fails every pending request with
// ErrConnectionClosed, whether or not the server had applied it). A caller
// whose Do gave up on its context while the write was out is in the same
// place; only it can tell (the context's error alone does not say that a
// write was sent).
func WriteOutcomeUnknown(err error) bool {
	return errors.Is(err, zk.ErrConnectionClosed) || errors.Is(err, zk.ErrSessionExpired) ||
		errors.Is(err, zk.ErrClosing)
}

// MaxAbandoned bounds the go-zookeeper calls still running after their
// caller gave up waiting (its context ended): go-zookeeper's calls cannot be
// cancelled, so each keeps a goroutine until the server answers or the
// connection is closed (up to two thirds of the session timeout on a hung
// ensemble). Past the bound, Do fails at once with ErrStalled instead of
// adding another: callers that retry on a hung ensemble would otherwise pile
// up thousands.
const MaxAbandoned = 1024

// ErrStalled: too many earlier calls are still waiting for ZooKeeper.
var ErrStalled = errors.New("ZooKeeper is not answering: too many calls still waiting for it")

// abandoned counts the calls whose caller gave up and that still run.
var abandoned atomic.Int64

// Do runs f, a go-zookeeper call, and returns its error, or ctx's error if
// ctx ends first (f still runs to its end; see MaxAbandoned).
func Do[T any](ctx context.Context, f func() (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, context.Cause(ctx)
	}
	if n := abandoned.Load(); n >= MaxAbandoned {
		return zero, fmt.Errorf("%w (%d)", ErrStalled, n)
	}
	type result struct {
		v   T
		err error
	}
	const (
		running int32 = iota
		finished
		gaveUp
	)
	var state atomic.Int32
	ch := make(chan result, 1)
	go func() {
		v, err := f()
		ch <- result{v, err}
		if !state.CompareAndSwap(running, finished) {
			abandoned.Add(-1) // its caller gave up: counted there
		}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		if state.CompareAndSwap(running, gaveUp) {
			abandoned.Add(1)
		}
		return zero, context.Cause(ctx)
	}
}

// State is the connection's state.
func (s *Session) State() zk.State { return s.Conn.State() }

// SessionID is the id of the session the connection has now: go-zookeeper
// opens a new session, under the same Session, after one expired.
func (s *Session) SessionID() int64 { return s.Conn.SessionID() }

// Create creates path (flags: zk.FlagEphemeral, zk.FlagSequence).
func (s *Session) Create(ctx context.Context, path string, data []byte, flags int32, acl []zk.ACL) (string, error) {
	return Do(ctx, func() (string, error) { return s.Conn.Create(path, data, flags, acl) })
}

// Delete deletes path at version (-1: any).
func (s *Session) Delete(ctx context.Context, path string, version int32) error {
	_, err := Do(ctx, func() (struct{}, error) { return struct{}{}, s.Conn.Delete(path, version) })
	return err
}

// Get reads path.
func (s *Session) Get(ctx context.Context, path string) ([]byte, *zk.Stat, error) {
	type r struct {
		data []byte
		stat *zk.Stat
	}
	v, err := Do(ctx, func() (r, error) {
		d, st, err := s.Conn.Get(path)
		return r{d, st}, err
	})
	return v.data, v.stat, err
}

// GetW reads path and sets a one-shot watch on its data.
func (s *Session) GetW(ctx context.Context, path string) ([]byte, *zk.Stat, <-chan zk.Event, error) {
	type r struct {
		data []byte
		stat *zk.Stat
		ch   <-chan zk.Event
	}
	v, err := Do(ctx, func() (r, error) {
		d, st, ch, err := s.Conn.GetW(path)
		return r{d, st, ch}, err
	})
	return v.data, v.stat, v.ch, err
}

// Multi applies ops (*zk.CreateRequest, *zk.DeleteRequest,
// *zk.SetDataRequest, *zk.CheckVersionRequest) all or none.
func (s *Session) Multi(ctx context.Context, ops ...any) ([]zk.MultiResponse, error) {
	return Do(ctx, func() ([]zk.MultiResponse, error) { return s.Conn.Multi(ops...) })
}

// Exists reports whether path exists, and its stat.
func (s *Session) Exists(ctx context.Context, path string) (bool, *zk.Stat, error) {
	type r struct {
		ok   bool
		stat *zk.Stat
	}
	v, err := Do(ctx, func() (r, error) {
		ok, st, err := s.Conn.Exists(path)
		return r{ok, st}, err
	})
	return v.ok, v.stat, err
}

// Children lists path's children.
func (s *Session) Children(ctx context.Context, path string) ([]string, error) {
	return Do(ctx, func() ([]string, error) {
		c, _, err := s.Conn.Children(path)
		return c, err
	})
}

// OnlineUsers lists the ids online now, sorted.
func (s *Session) OnlineUsers(ctx context.Context) ([]string, error) {
	return s.sortedChildren(ctx, s.Paths.Online(), "online users")
}

// RegisteredUsers lists the registered ids, sorted.
func (s *Session) RegisteredUsers(ctx context.Context) ([]string, error) {
	return s.sortedChildren(ctx, s.Paths.Registry(), "registered users")
}

func (s *Session) sortedChildren(ctx context.Context, dir, what string) ([]string, error) {
	ids, err := s.Children(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	sort.Strings(ids)
	return ids, nil
}

// CreateTree creates the persistent nodes of the tree that are missing.
// It is idempotent: createZkTreeStructure of the spec. A session with
// credentials locks the tree down (acl.go): it creates the nodes from the
// chroot down with their ACLs, and sets those ACLs on nodes that exist with
// others (a tree made open before), which needs the ADMIN permission that
// an open node gives everyone. The chroot's ancestors, shared with other
// installations, stay open.
func (s *Session) CreateTree(ctx context.Context) error {
	for _, p := range s.Paths.Persistent() {
		acl, data := zk.WorldACL(zk.PermAll), []byte(nil)
		locked := s.auth != nil && s.Paths.InTree(p)
		if locked {
			acl, data = ToZK(s.Paths.PersistentACL(p, s.auth)), protocol.AdminData(s.auth)
		}
		_, err := Do(ctx, func() (string, error) {
			return s.Conn.Create(p, data, 0, acl)
		})
		if err != nil && !errors.Is(err, zk.ErrNodeExists) {
			if errors.Is(err, zk.ErrNoAuth) {
				err = fmt.Errorf("%w: %w", protocol.ErrNoAuth, err)
			}
			return fmt.Errorf("create %s: %w", p, err)
		}
		if err != nil && locked {
			if err := s.lockDown(ctx, p, acl, data); err != nil {
				return err
			}
		}
	}
	return nil
}

// lockDown sets acl and data on node unless it has them already.
func (s *Session) lockDown(ctx context.Context, node string, acl []zk.ACL, data []byte) error {
	g, err := s.aclAndData(ctx, node)
	if err != nil {
		return err
	}
	if sameACL(g.acl, acl) && string(g.data) == string(data) {
		return nil
	}
	// The data first: it needs WRITE, which an open node gives everyone
	// and the locked one gives the admin.
	_, err = Do(ctx, func() (*zk.Stat, error) { return s.Conn.Set(node, data, -1) })
	if err == nil {
		_, err = Do(ctx, func() (*zk.Stat, error) { return s.Conn.SetACL(node, acl, -1) })
	}
	if errors.Is(err, zk.ErrNoAuth) {
		return fmt.Errorf("set ACL of %s: %w: it belongs to another principal (%v)", node, protocol.ErrNoAuth, protocol.Admins(FromZK(g.acl)))
	}
	if err != nil {
		return fmt.Errorf("set ACL of %s: %w", node, err)
	}
	s.log.Info("ZooKeeper ACL set on an existing node", "node", node, "admin", s.auth.User)
	return nil
}

func sameACL(a, b []zk.ACL) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// zkLogger routes go-zookeeper's log lines to slog at debug level; its
// reconnect chatter is not an operator's concern, the state changes are
// logged by their owners.
type zkLogger struct{ l *slog.Logger }

func (z zkLogger) Printf(format string, args ...any) {
	z.l.Debug(fmt.Sprintf(format, args...), "component", "zk-client")
}
