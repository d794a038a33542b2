package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/client"
	"github.com/zkchat/zkchat/protocol"
	"github.com/zkchat/zkchat/zookeeper"
)

// directory is what the bridge reads and writes in ZooKeeper itself, apart
// from its users' own sessions: the listings for who and users, the
// metadata of an /online node, and the account bindings. zkDirectory is the
// real one.
type directory interface {
	OnlineUsers(ctx context.Context) ([]string, error)
	RegisteredUsers(ctx context.Context) ([]string, error)
	// OnlineMeta reads the metadata of id's /online node; found is false if
	// there is none.
	OnlineMeta(ctx context.Context, id string) (meta onlineMeta, found bool, err error)
	// ClearStale deletes id's /online node if one of this directory's
	// earlier sessions made it: the bridge's own session before an outage
	// replaced it, which ZooKeeper would otherwise end only after the
	// session timeout. cleared: there is no such node now (deleted, or
	// gone already), so going online may be tried again at once.
	ClearStale(ctx context.Context, id string) (cleared bool, err error)
	// OnlineWatch lists the online ids (/online's children) and sets a
	// child watch, whose one event (a change, or the session's end) the
	// channel gets (Config.Puppets).
	OnlineWatch(ctx context.Context) ([]string, <-chan zk.Event, error)
	// Managers lists the managers in the election, leader first (empty:
	// none runs, so requests wait).
	Managers(ctx context.Context) ([]string, error)
	// IsRegistered reports whether id is registered (/registry/<id>).
	IsRegistered(ctx context.Context, id string) (bool, error)
	// Binding reads the account id is bound to, "" for none.
	Binding(ctx context.Context, id string) (string, error)
	// Bind binds id to account, replacing a stale binding.
	Bind(ctx context.Context, id, account string) error
	// Unbind removes id's binding, if any.
	Unbind(ctx context.Context, id string) error
	// Bridges (Config.SharedChannel) makes the bridge's node
	// /bridges/<self>, ephemeral, with data, in the directory's session if
	// it has none there (a node of another session, an earlier run's that
	// was killed, is left to expire: the bridge is not present until then),
	// writes data to it if it differs, and lists every node of /bridges
	// (Own: made in this session). With watch, it also sets a child watch,
	// whose one event (a change, or the session's end) the channel gets.
	Bridges(ctx context.Context, self string, data []byte, watch bool) ([]bridgeNode, <-chan zk.Event, error)
	// Connected reports whether the directory's session is up now.
	Connected() bool
	// SessionEvents counts the directory's session events, by
	// zookeeper.SessionEventKinds.
	SessionEvents() map[string]uint64
	// Stopping: the bridge is stopping, and Close comes next.
	Stopping()
	Close()
}

// onlineMeta is the part of an /online node's metadata the bridge reads:
// which front end made it.
type onlineMeta struct{ Via, Bridge, Channel string }

// zkDirectory is the directory over the bridge's one ZooKeeper session,
// dialled at first use, with large buffers (listings). Its users share it
// too (View): each worker's session is a zookeeper.View of it, so 10,000
// online users cost one connection, not 10,000 (doc/scaling.md). Nodes read
// on every message or command (a receiver's /online node, an id's account
// binding) come from a watched cache (zookeeper.Cache).
//
// Locks: mu guards s, shared and sessions; it is held while dialling (so
// one session is made) and taken under no other lock.
type zkDirectory struct {
	cfg    zookeeper.SessionConfig
	cache  *zookeeper.Cache
	events zookeeper.SessionEvents // the session's, counted for operators

	mu     sync.Mutex
	s      *zookeeper.Session
	shared *zookeeper.Shared
	// sessions: the ids of the sessions the connection has had, as seen at
	// each use (session), so that ClearStale knows a node of an earlier
	// one for the bridge's own. A few a day at most.
	sessions map[int64]bool
}

func newZKDirectory(cfg zookeeper.SessionConfig) *zkDirectory {
	d := &zkDirectory{cfg: cfg, cache: zookeeper.NewCache(0)}
	d.cfg.OnWatch = d.cache.Event
	onState := cfg.OnState
	d.cfg.OnState = func(st zk.State) {
		d.events.Observe(st)
		if onState != nil {
			onState(st)
		}
	}
	return d
}

func (d *zkDirectory) session(ctx context.Context) (*zookeeper.Session, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.s == nil {
		s, err := zookeeper.Dial(ctx, d.cfg)
		if err != nil {
			return nil, err
		}
		d.s, d.shared = s, zookeeper.NewShared(s)
	}
	if sid := d.s.SessionID(); sid != 0 && !d.sessions[sid] {
		if d.sessions == nil {
			d.sessions = map[int64]bool{}
		}
		d.sessions[sid] = true
	}
	return d.s, nil
}

// ClearStale: see directory. Only a node whose ephemeral owner is a
// session this directory had, and not the one it has now, is deleted (at
// its version): a node of another process, an earlier run's included, is
// left to its session.
func (d *zkDirectory) ClearStale(ctx context.Context, id string) (bool, error) {
	s, err := d.session(ctx)
	if err != nil {
		return false, err
	}
	path := s.Paths.OnlineNode(id)
	_, st, err := s.Get(ctx, path)
	if errors.Is(err, zk.ErrNoNode) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("stale %s: %w", path, err)
	}
	d.mu.Lock()
	earlier := d.sessions[st.EphemeralOwner] && st.EphemeralOwner != s.SessionID()
	d.mu.Unlock()
	if !earlier {
		return false, nil
	}
	switch err := s.Delete(ctx, path, st.Version); {
	case err == nil, errors.Is(err, zk.ErrNoNode):
		return true, nil
	case errors.Is(err, zk.ErrBadVersion):
		return false, nil
	default:
		return false, fmt.Errorf("stale %s of the bridge's session before: %w", path, err)
	}
}

// View is a user's share of the session: a client.DialFunc.
func (d *zkDirectory) View(ctx context.Context, _ zookeeper.SessionConfig) (client.Session, error) {
	if _, err := d.session(ctx); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.shared == nil {
		return nil, zk.ErrClosing
	}
	return d.shared.View(), nil
}

// ReceiverOnline reports whether id's /online node exists, from the cache.
func (d *zkDirectory) ReceiverOnline(ctx context.Context, id string) (bool, error) {
	return d.exists(ctx, func(p protocol.Paths) string { return p.OnlineNode(id) })
}

// IsRegistered reports whether /registry/<id> exists, from the cache.
func (d *zkDirectory) IsRegistered(ctx context.Context, id string) (bool, error) {
	return d.exists(ctx, func(p protocol.Paths) string { return p.Registered(id) })
}

// exists reports whether the node at path exists, from the watched cache.
func (d *zkDirectory) exists(ctx context.Context, path func(protocol.Paths) string) (bool, error) {
	s, err := d.session(ctx)
	if err != nil {
		return false, err
	}
	_, _, ok, err := d.cache.Get(ctx, s, path(s.Paths))
	return ok, err
}

// SessionEvents: see directory.
func (d *zkDirectory) SessionEvents() map[string]uint64 { return d.events.Counts() }

// Managers: see directory.
func (d *zkDirectory) Managers(ctx context.Context) ([]string, error) {
	s, err := d.session(ctx)
	if err != nil {
		return nil, err
	}
	return s.Managers(ctx)
}

// Connected: see directory.
func (d *zkDirectory) Connected() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.s != nil && d.s.State() == zk.StateHasSession
}

// Stopping makes the users' going offline skip deleting their nodes: the
// session's close, which comes next, removes them all at once.
func (d *zkDirectory) Stopping() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.shared != nil {
		d.shared.Close()
	}
}

// Close closes the session; Run calls it last.
func (d *zkDirectory) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.shared != nil {
		d.shared.Close()
		d.shared = nil
	}
	if d.s != nil {
		d.s.Close()
		d.s = nil
	}
}

func (d *zkDirectory) OnlineUsers(ctx context.Context) ([]string, error) {
	s, err := d.session(ctx)
	if err != nil {
		return nil, err
	}
	return s.OnlineUsers(ctx)
}

func (d *zkDirectory) RegisteredUsers(ctx context.Context) ([]string, error) {
	s, err := d.session(ctx)
	if err != nil {
		return nil, err
	}
	return s.RegisteredUsers(ctx)
}

// get reads path through zookeeper.Do: a bare go-zookeeper call ignores
// ctx, and a hung server would hold the caller (a user's goroutine, and
// Run's stop, which waits for it).
func (d *zkDirectory) get(ctx context.Context, path func(*zookeeper.Session) string) ([]byte, error) {
	s, err := d.session(ctx)
	if err != nil {
		return nil, err
	}
	return zookeeper.Do(ctx, func() ([]byte, error) {
		data, _, err := s.Conn.Get(path(s))
		return data, err
	})
}

func (d *zkDirectory) OnlineMeta(ctx context.Context, id string) (onlineMeta, bool, error) {
	var meta onlineMeta
	data, err := d.get(ctx, func(s *zookeeper.Session) string { return s.Paths.OnlineNode(id) })
	if errors.Is(err, zk.ErrNoNode) {
		return meta, false, nil
	}
	if err != nil {
		return meta, false, err
	}
	if err := json.Unmarshal(data, &meta); err != nil {
		return meta, true, err
	}
	return meta, true, nil
}

// Binding reads /accounts/<id> from the cache: every command checks it.
func (d *zkDirectory) Binding(ctx context.Context, id string) (string, error) {
	s, err := d.session(ctx)
	if err != nil {
		return "", fmt.Errorf("account binding of %s: %w", id, err)
	}
	data, _, ok, err := d.cache.Get(ctx, s, s.Paths.Account(id))
	if err != nil {
		return "", fmt.Errorf("account binding of %s: %w", id, err)
	}
	if !ok {
		return "", nil
	}
	return string(data), nil
}

func (d *zkDirectory) Bind(ctx context.Context, id, account string) error {
	s, err := d.session(ctx)
	if err != nil {
		return err
	}
	path := s.Paths.Account(id)
	// Open, or with ACLs on: the bridge's principal ALL, world READ.
	acl, _, err := s.NodeACL(ctx, s.Paths.Accounts())
	if err != nil {
		return fmt.Errorf("bind %s to account %s: %w", id, account, err)
	}
	_, err = zookeeper.Do(ctx, func() (string, error) {
		return s.Conn.Create(path, []byte(account), 0, acl)
	})
	if errors.Is(err, zk.ErrNodeExists) {
		_, err = zookeeper.Do(ctx, func() (*zk.Stat, error) { return s.Conn.Set(path, []byte(account), -1) })
	}
	if err != nil {
		return fmt.Errorf("bind %s to account %s: %w", id, account, err)
	}
	return nil
}

func (d *zkDirectory) Unbind(ctx context.Context, id string) error {
	s, err := d.session(ctx)
	if err != nil {
		return err
	}
	_, err = zookeeper.Do(ctx, func() (struct{}, error) { return struct{}{}, s.Conn.Delete(s.Paths.Account(id), -1) })
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		return fmt.Errorf("unbind %s: %w", id, err)
	}
	return nil
}

func (d *zkDirectory) Bridges(ctx context.Context, self string, data []byte, watch bool) ([]bridgeNode, <-chan zk.Event, error) {
	s, err := d.session(ctx)
	if err != nil {
		return nil, nil, err
	}
	if err := d.ownBridgeNode(ctx, s, self, data); err != nil {
		return nil, nil, err
	}
	dir := s.Paths.Bridges()
	type listing struct {
		names []string
		ch    <-chan zk.Event
	}
	l, err := zookeeper.Do(ctx, func() (listing, error) {
		if !watch {
			names, _, err := s.Conn.Children(dir)
			return listing{names: names}, err
		}
		names, _, ch, err := s.Conn.ChildrenW(dir)
		return listing{names, ch}, err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("list %s: %w", dir, err)
	}
	sid := s.SessionID()
	nodes := make([]bridgeNode, 0, len(l.names))
	for _, name := range l.names {
		data, st, err := s.Get(ctx, s.Paths.Bridge(name))
		if errors.Is(err, zk.ErrNoNode) {
			continue // gone meanwhile: its event comes
		}
		if err != nil {
			return nil, l.ch, fmt.Errorf("read %s: %w", s.Paths.Bridge(name), err)
		}
		nodes = append(nodes, bridgeNode{ID: name, Data: data, Own: st.EphemeralOwner == sid})
	}
	return nodes, l.ch, nil
}

// ownBridgeNode makes /bridges/<self> in s, or writes data to it if it is
// s's and holds other data; a node of another session is left alone.
func (d *zkDirectory) ownBridgeNode(ctx context.Context, s *zookeeper.Session, self string, data []byte) error {
	path := s.Paths.Bridge(self)
	old, st, err := s.Get(ctx, path)
	switch {
	case err == nil && st.EphemeralOwner != s.SessionID():
		return nil // an earlier run's, until its session expires
	case err == nil && string(old) == string(data):
		return nil
	case err == nil:
		if _, err := zookeeper.Do(ctx, func() (*zk.Stat, error) { return s.Conn.Set(path, data, st.Version) }); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		return nil
	case !errors.Is(err, zk.ErrNoNode):
		return fmt.Errorf("read %s: %w", path, err)
	}
	// Open, or with ACLs on: the bridge's principal ALL, world READ.
	acl, locked, err := s.NodeACL(ctx, s.Paths.Bridges())
	if errors.Is(err, zk.ErrNoNode) {
		// A tree made before /bridges, with no manager run since to
		// complete it (zkchat bridge --no-manager): complete it here.
		if err = s.CreateTree(ctx); err == nil {
			acl, locked, err = s.NodeACL(ctx, s.Paths.Bridges())
		}
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	_, err = s.Create(ctx, path, data, zk.FlagEphemeral, acl)
	if errors.Is(err, zk.ErrNodeExists) {
		return nil // made meanwhile (by another session: a twin, or a retried create of ours); the listing says
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if locked {
		if err := s.Touch(ctx, path, data); err != nil {
			return fmt.Errorf("create %s: %w", path, err)
		}
	}
	return nil
}
