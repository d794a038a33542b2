package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
)

// Shared lets many users of one process share one ZooKeeper session, each
// through a View, as if each had a session of its own: a View remembers the
// ephemeral nodes made through it, and closing it deletes them, which is
// what closing a session of one's own would do.
//
// Why (doc/scaling.md): a session per user costs a TCP connection, a ping
// every third of the session timeout and go-zookeeper's buffers (it
// allocates 1.5 MB in Connect whatever the options say); a bridge with
// 10,000 online users would hold 10,000 of them. The price: when the
// process dies, all its users' nodes go together, after the one session's
// timeout (as they would with sessions of their own, which die with the
// process too); and going offline is a delete, which needs the server,
// where closing a session needs nothing (Close waits for the server, see
// there).
//
// Locks: mu guards held; taken before a View's mu, never after it, and
// never held across a ZooKeeper call.
type Shared struct {
	s *Session
	// ctx ends with Close: a View's Close stops waiting for the server
	// then (the session is about to close, which removes every node).
	ctx    context.Context
	cancel context.CancelFunc

	mu   sync.Mutex
	held map[string]*View // ephemeral node → the live view that made it
}

// NewShared shares s. Close the Shared before s.
func NewShared(s *Session) *Shared {
	ctx, cancel := context.WithCancel(context.Background())
	return &Shared{s: s, ctx: ctx, cancel: cancel, held: map[string]*View{}}
}

// Session is the shared session.
func (sh *Shared) Session() *Session { return sh.s }

// Close makes every View's Close return at once: the caller is about to
// close the session, which removes the nodes.
func (sh *Shared) Close() { sh.cancel() }

// View returns a new view of the shared session.
func (sh *Shared) View() *View { return &View{sh: sh, Session: sh.s, made: map[string]int64{}} }

// View is one user's share of a Shared session. It has the methods of a
// session (those of *Session, which it embeds); Create records the
// ephemeral nodes it makes, and Close deletes them instead of closing the
// session. After Close, its calls fail with zk.ErrClosing.
//
// Locks: mu guards made and closed; taken alone or after Shared.mu
// (Create, forget), never before it; never held across a ZooKeeper call.
type View struct {
	*Session
	sh *Shared

	mu     sync.Mutex
	made   map[string]int64 // ephemeral node → the session id it was made in
	closed bool
}

func (v *View) isClosed() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.closed
}

// Create creates path. An ephemeral node is recorded, to be deleted by
// Close. One that exists already is the view's only if it is a leftover of
// this same session that no live view holds (a Close that gave up): it is
// deleted and made again; a node another live view holds is
// zk.ErrNodeExists, as if that view were another session.
func (v *View) Create(ctx context.Context, path string, data []byte, flags int32, acl []zk.ACL) (string, error) {
	if v.isClosed() {
		return "", zk.ErrClosing
	}
	if flags&zk.FlagEphemeral == 0 {
		return v.Session.Create(ctx, path, data, flags, acl)
	}
	sh := v.sh
	sh.mu.Lock()
	if h := sh.held[path]; h != nil && h != v {
		sh.mu.Unlock()
		return "", zk.ErrNodeExists
	}
	sh.held[path] = v // claimed while it is made, so no other view makes it too
	sh.mu.Unlock()
	sid := v.SessionID()
	made, err := v.Session.Create(ctx, path, data, flags, acl)
	if errors.Is(err, zk.ErrNodeExists) && flags&zk.FlagSequence == 0 {
		var ok bool
		var st *zk.Stat
		ok, st, err = v.Session.Exists(ctx, path)
		switch {
		case err != nil:
		case !ok || st.EphemeralOwner == sid:
			// Gone meanwhile, or a leftover of this session that no view
			// holds: ours to make again.
			if ok {
				if err = v.Session.Delete(ctx, path, st.Version); errors.Is(err, zk.ErrNoNode) {
					err = nil
				}
			}
			if err == nil {
				made, err = v.Session.Create(ctx, path, data, flags, acl)
			}
		default:
			err = zk.ErrNodeExists
		}
	}
	sh.mu.Lock()
	v.mu.Lock()
	closed := v.closed
	if err == nil && !closed {
		v.made[made] = sid
		sh.held[made] = v
	} else if sh.held[path] == v {
		delete(sh.held, path)
	}
	v.mu.Unlock()
	sh.mu.Unlock()
	switch {
	case err != nil:
		return "", err
	case closed: // closed meanwhile, and Close did not see it
		v.remove(made, sid)
		return "", zk.ErrClosing
	}
	return made, nil
}

// Delete deletes path; an ephemeral node of the view's is no longer
// recorded once deleted.
func (v *View) Delete(ctx context.Context, path string, version int32) error {
	if v.isClosed() {
		return zk.ErrClosing
	}
	err := v.Session.Delete(ctx, path, version)
	if err == nil || errors.Is(err, zk.ErrNoNode) {
		v.forget(path)
	}
	return err
}

func (v *View) forget(path string) {
	v.sh.mu.Lock()
	defer v.sh.mu.Unlock()
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.made[path]; ok {
		delete(v.made, path)
		if v.sh.held[path] == v {
			delete(v.sh.held, path)
		}
	}
}

// Get, GetW, Exists, Children, Multi, NodeACL and Touch refuse a closed
// view; the rest is the session's.

func (v *View) Get(ctx context.Context, path string) ([]byte, *zk.Stat, error) {
	if v.isClosed() {
		return nil, nil, zk.ErrClosing
	}
	return v.Session.Get(ctx, path)
}

func (v *View) GetW(ctx context.Context, path string) ([]byte, *zk.Stat, <-chan zk.Event, error) {
	if v.isClosed() {
		return nil, nil, nil, zk.ErrClosing
	}
	return v.Session.GetW(ctx, path)
}

func (v *View) Exists(ctx context.Context, path string) (bool, *zk.Stat, error) {
	if v.isClosed() {
		return false, nil, zk.ErrClosing
	}
	return v.Session.Exists(ctx, path)
}

func (v *View) Children(ctx context.Context, path string) ([]string, error) {
	if v.isClosed() {
		return nil, zk.ErrClosing
	}
	return v.Session.Children(ctx, path)
}

// Multi applies ops. A view makes no ephemeral node through it (zkchat's
// requests are persistent); one it did make would not be recorded.
func (v *View) Multi(ctx context.Context, ops ...any) ([]zk.MultiResponse, error) {
	if v.isClosed() {
		return nil, zk.ErrClosing
	}
	return v.Session.Multi(ctx, ops...)
}

func (v *View) NodeACL(ctx context.Context, parent string) ([]zk.ACL, bool, error) {
	if v.isClosed() {
		return nil, false, zk.ErrClosing
	}
	return v.Session.NodeACL(ctx, parent)
}

func (v *View) Touch(ctx context.Context, path string, data []byte) error {
	if v.isClosed() {
		return zk.ErrClosing
	}
	return v.Session.Touch(ctx, path, data)
}

// Close deletes the ephemeral nodes made through the view, as closing a
// session of its own would have, and waits until they are gone: a node of
// this session is deleted once the server answers, or is gone when the
// session expires; either way the wait ends once ZooKeeper is reachable
// again, or when the Shared is closed (the session's close removes it).
// It is idempotent.
func (v *View) Close() {
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return
	}
	v.closed = true
	made := v.made
	v.made = nil
	v.mu.Unlock()
	for path, sid := range made {
		v.remove(path, sid)
		v.sh.mu.Lock()
		if v.sh.held[path] == v {
			delete(v.sh.held, path)
		}
		v.sh.mu.Unlock()
	}
}

// remove deletes path, an ephemeral node made in session sid, and retries
// (100 ms doubling to 2 s) until it is gone, it is no longer sid's, the
// session is no longer sid (expired: its nodes are gone), or the Shared is
// closed.
func (v *View) remove(path string, sid int64) {
	s, ctx := v.sh.s, v.sh.ctx
	var said time.Time // last warning
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		if ctx.Err() != nil || s.SessionID() != sid && s.State() == zk.StateHasSession {
			return
		}
		err := func() error {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			ok, st, err := s.Exists(cctx, path)
			if err != nil || !ok || st.EphemeralOwner != sid {
				return err
			}
			err = s.Delete(cctx, path, st.Version)
			if errors.Is(err, zk.ErrNoNode) || errors.Is(err, zk.ErrBadVersion) {
				return errRetryNow // changed meanwhile: look again
			}
			return err
		}()
		switch {
		case err == nil:
			return
		case errors.Is(err, errRetryNow):
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if wait == 100*time.Millisecond || wait == 2*time.Second && time.Since(said) > time.Minute {
			s.log.Warn("going offline: cannot delete the node yet; retrying until ZooKeeper answers or the session ends", "path", path, "err", err)
			said = time.Now()
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-s.Changed():
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

var errRetryNow = fmt.Errorf("retry now")
