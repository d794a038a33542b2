// Package fakezk is an in-memory ZooKeeper for tests: one tree (Server)
// shared by any number of sessions (Session), with data versions, ephemeral
// and sequential nodes, one-shot watches, multi-ops, and session expiry a
// test triggers. Errors are go-zookeeper's sentinels (zk.ErrNoNode,
// zk.ErrNodeExists, zk.ErrBadVersion, ...), so code under test branches on
// them as it does against a real server.
//
// A Session has the context-taking methods of *zookeeper.Session, so it
// satisfies the interfaces its consumers declare (client.Session). It does
// not enforce ACLs: it stores them. With Server.Locked, NodeACL reports the
// tree as locked, so that callers take their touch path.
package fakezk

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
)

// Server is the tree. Its zero value is not usable: call New.
type Server struct {
	// Locked makes NodeACL report a tree locked down with ACLs.
	Locked bool

	mu       sync.Mutex
	nodes    map[string]*node
	zxid     int64
	nextID   int64
	sessions map[int64]*Session
	dataW    map[string][]watch // GetW, ExistsW
	childW   map[string][]watch // ChildrenW
	fault    func(op, path string) error
}

type node struct {
	data     []byte
	acl      []zk.ACL
	stat     zk.Stat
	children map[string]struct{}
}

type watch struct {
	owner *Session
	ch    chan zk.Event
}

// New returns a server with an empty tree ("/" only).
func New() *Server {
	return &Server{
		nodes:    map[string]*node{"/": {children: map[string]struct{}{}}},
		sessions: map[int64]*Session{},
		dataW:    map[string][]watch{},
		childW:   map[string][]watch{},
	}
}

// Fault makes every later call by any session run f first: a non-nil error
// fails the call with it, without applying anything. op is the method's
// name ("Create", "Multi", ...), path its path ("" for Multi). nil: no
// faults.
func (srv *Server) Fault(f func(op, path string) error) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	srv.fault = f
}

// Connect opens a session.
func (srv *Server) Connect() *Session {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	srv.nextID++
	s := &Session{srv: srv, id: srv.nextID, state: zk.StateHasSession, changed: make(chan struct{})}
	srv.sessions[s.id] = s
	return s
}

// Session is one client's connection. Like a go-zookeeper connection, it
// lives on after its session expires (Expire), with a new session id.
type Session struct {
	srv *Server
	// under srv.mu:
	id      int64
	state   zk.State
	closed  bool
	changed chan struct{}
}

// SessionID is the current session's id.
func (s *Session) SessionID() int64 {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	return s.id
}

// State is the connection's state.
func (s *Session) State() zk.State {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	return s.state
}

// Changed returns a channel closed at the next state change.
func (s *Session) Changed() <-chan struct{} {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	return s.changed
}

// WaitSession waits until the session has a session, or ctx ends.
func (s *Session) WaitSession(ctx context.Context) error {
	for {
		ch := s.Changed()
		if s.State() == zk.StateHasSession {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

func (s *Session) setStateLocked(st zk.State) {
	s.state = st
	close(s.changed)
	s.changed = make(chan struct{})
}

// Close ends the session: its ephemeral nodes are deleted and its watches
// end with zk.ErrClosing. Later calls fail with zk.ErrClosing.
func (s *Session) Close() {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	if s.closed {
		return
	}
	s.srv.endSessionLocked(s, zk.ErrClosing)
	s.closed = true
	s.setStateLocked(zk.StateDisconnected)
}

// Expire expires the session, as ZooKeeper does when it has not heard from
// the client within the session timeout: its ephemeral nodes are deleted,
// its watches end with zk.ErrSessionExpired, and the connection goes
// through StateExpired to a new session (new SessionID) in
// StateHasSession, as go-zookeeper's does.
func (s *Session) Expire() {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	if s.closed {
		return
	}
	s.srv.endSessionLocked(s, zk.ErrSessionExpired)
	s.setStateLocked(zk.StateExpired)
	s.srv.nextID++
	s.id = s.srv.nextID
	s.srv.sessions[s.id] = s
	s.setStateLocked(zk.StateHasSession)
}

// Disconnect puts the connection in StateDisconnected until Reconnect,
// keeping the session: calls fail with zk.ErrConnectionClosed meanwhile.
func (s *Session) Disconnect() {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	if !s.closed {
		s.setStateLocked(zk.StateDisconnected)
	}
}

// Reconnect ends a Disconnect: the same session is back.
func (s *Session) Reconnect() {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	if !s.closed {
		s.setStateLocked(zk.StateHasSession)
	}
}

// endSessionLocked ends s's watches (first: the client hears only that
// they ended, not what the expiry did) and deletes its ephemeral nodes.
func (srv *Server) endSessionLocked(s *Session, why error) {
	delete(srv.sessions, s.id)
	for _, ws := range []map[string][]watch{srv.dataW, srv.childW} {
		for p, list := range ws {
			kept := list[:0]
			for _, w := range list {
				if w.owner == s {
					w.ch <- zk.Event{Type: zk.EventNotWatching, State: zk.StateDisconnected, Path: p, Err: why}
					close(w.ch)
				} else {
					kept = append(kept, w)
				}
			}
			ws[p] = kept
		}
	}
	var mine []string
	for p, n := range srv.nodes {
		if n.stat.EphemeralOwner == s.id {
			mine = append(mine, p)
		}
	}
	sort.Strings(mine)
	for _, p := range mine {
		srv.deleteLocked(p)
	}
}

// begin checks what every call checks first, under srv.mu.
func (s *Session) begin(ctx context.Context, op, path string) error {
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	switch {
	case s.closed:
		return zk.ErrClosing
	case s.state != zk.StateHasSession:
		return zk.ErrConnectionClosed
	}
	if path != "" && !validPath(path) {
		return zk.ErrInvalidPath
	}
	if s.srv.fault != nil {
		return s.srv.fault(op, path)
	}
	return nil
}

func validPath(p string) bool {
	if p == "/" {
		return true
	}
	return strings.HasPrefix(p, "/") && !strings.HasSuffix(p, "/") && !strings.Contains(p, "//")
}

func parent(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

func base(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

func (srv *Server) fire(ws map[string][]watch, path string, t zk.EventType) {
	for _, w := range ws[path] {
		w.ch <- zk.Event{Type: t, State: zk.StateHasSession, Path: path}
		close(w.ch)
	}
	delete(ws, path)
}

func (srv *Server) addWatch(ws map[string][]watch, s *Session, path string) <-chan zk.Event {
	ch := make(chan zk.Event, 1)
	ws[path] = append(ws[path], watch{owner: s, ch: ch})
	return ch
}

func statOf(n *node) *zk.Stat {
	st := n.stat
	st.DataLength = int32(len(n.data))
	st.NumChildren = int32(len(n.children))
	return &st
}

// createLocked creates path; the result is the created path (sequential
// nodes get a suffix).
func (srv *Server) createLocked(s *Session, path string, data []byte, flags int32, acl []zk.ACL) (string, error) {
	if flags&^(zk.FlagEphemeral|zk.FlagSequence) != 0 {
		return "", zk.ErrInvalidFlags
	}
	if path == "/" {
		return "", zk.ErrNodeExists
	}
	par, ok := srv.nodes[parent(path)]
	if !ok {
		return "", zk.ErrNoNode
	}
	if par.stat.EphemeralOwner != 0 {
		return "", zk.ErrNoChildrenForEphemerals
	}
	if flags&zk.FlagSequence != 0 {
		path = fmt.Sprintf("%s%010d", path, par.stat.Cversion)
	}
	if _, dup := srv.nodes[path]; dup {
		return "", zk.ErrNodeExists
	}
	srv.zxid++
	now := time.Now().UnixMilli()
	n := &node{data: append([]byte(nil), data...), acl: append([]zk.ACL(nil), acl...), children: map[string]struct{}{},
		stat: zk.Stat{Czxid: srv.zxid, Mzxid: srv.zxid, Pzxid: srv.zxid, Ctime: now, Mtime: now}}
	if flags&zk.FlagEphemeral != 0 {
		n.stat.EphemeralOwner = s.id
	}
	srv.nodes[path] = n
	par.children[base(path)] = struct{}{}
	par.stat.Cversion++
	par.stat.Pzxid = srv.zxid
	srv.fire(srv.dataW, path, zk.EventNodeCreated)
	srv.fire(srv.childW, parent(path), zk.EventNodeChildrenChanged)
	return path, nil
}

func (srv *Server) checkLocked(path string, version int32) (*node, error) {
	n, ok := srv.nodes[path]
	if !ok {
		return nil, zk.ErrNoNode
	}
	if version != -1 && version != n.stat.Version {
		return nil, zk.ErrBadVersion
	}
	return n, nil
}

func (srv *Server) deleteCheckedLocked(path string, version int32) error {
	if path == "/" {
		return zk.ErrBadArguments
	}
	n, err := srv.checkLocked(path, version)
	if err != nil {
		return err
	}
	if len(n.children) > 0 {
		return zk.ErrNotEmpty
	}
	srv.deleteLocked(path)
	return nil
}

func (srv *Server) deleteLocked(path string) {
	srv.zxid++
	delete(srv.nodes, path)
	if par, ok := srv.nodes[parent(path)]; ok {
		delete(par.children, base(path))
		par.stat.Cversion++
		par.stat.Pzxid = srv.zxid
	}
	srv.fire(srv.dataW, path, zk.EventNodeDeleted)
	srv.fire(srv.childW, path, zk.EventNodeDeleted)
	srv.fire(srv.childW, parent(path), zk.EventNodeChildrenChanged)
}

func (srv *Server) setLocked(path string, data []byte, version int32) (*zk.Stat, error) {
	n, err := srv.checkLocked(path, version)
	if err != nil {
		return nil, err
	}
	srv.zxid++
	n.data = append([]byte(nil), data...)
	n.stat.Version++
	n.stat.Mzxid = srv.zxid
	n.stat.Mtime = time.Now().UnixMilli()
	srv.fire(srv.dataW, path, zk.EventNodeDataChanged)
	return statOf(n), nil
}

// Create creates path (flags: zk.FlagEphemeral, zk.FlagSequence).
func (s *Session) Create(ctx context.Context, path string, data []byte, flags int32, acl []zk.ACL) (string, error) {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	if err := s.begin(ctx, "Create", path); err != nil {
		return "", err
	}
	return s.srv.createLocked(s, path, data, flags, acl)
}

// Delete deletes path at version (-1: any).
func (s *Session) Delete(ctx context.Context, path string, version int32) error {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	if err := s.begin(ctx, "Delete", path); err != nil {
		return err
	}
	return s.srv.deleteCheckedLocked(path, version)
}

// Set writes path's data at version (-1: any).
func (s *Session) Set(ctx context.Context, path string, data []byte, version int32) (*zk.Stat, error) {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	if err := s.begin(ctx, "Set", path); err != nil {
		return nil, err
	}
	return s.srv.setLocked(path, data, version)
}

// Get reads path.
func (s *Session) Get(ctx context.Context, path string) ([]byte, *zk.Stat, error) {
	d, st, _, err := s.get(ctx, "Get", path, false)
	return d, st, err
}

// GetW reads path and sets a one-shot watch on its data (changed, deleted).
func (s *Session) GetW(ctx context.Context, path string) ([]byte, *zk.Stat, <-chan zk.Event, error) {
	return s.get(ctx, "GetW", path, true)
}

func (s *Session) get(ctx context.Context, op, path string, watch bool) ([]byte, *zk.Stat, <-chan zk.Event, error) {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	if err := s.begin(ctx, op, path); err != nil {
		return nil, nil, nil, err
	}
	n, ok := s.srv.nodes[path]
	if !ok {
		return nil, nil, nil, zk.ErrNoNode // no watch, as in ZooKeeper
	}
	var ch <-chan zk.Event
	if watch {
		ch = s.srv.addWatch(s.srv.dataW, s, path)
	}
	return append([]byte(nil), n.data...), statOf(n), ch, nil
}

// Exists reports whether path exists, and its stat.
func (s *Session) Exists(ctx context.Context, path string) (bool, *zk.Stat, error) {
	ok, st, _, err := s.exists(ctx, "Exists", path, false)
	return ok, st, err
}

// ExistsW is Exists with a one-shot watch: created, changed or deleted.
func (s *Session) ExistsW(ctx context.Context, path string) (bool, *zk.Stat, <-chan zk.Event, error) {
	return s.exists(ctx, "ExistsW", path, true)
}

func (s *Session) exists(ctx context.Context, op, path string, watch bool) (bool, *zk.Stat, <-chan zk.Event, error) {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	if err := s.begin(ctx, op, path); err != nil {
		return false, nil, nil, err
	}
	var ch <-chan zk.Event
	if watch {
		ch = s.srv.addWatch(s.srv.dataW, s, path)
	}
	n, ok := s.srv.nodes[path]
	if !ok {
		return false, nil, ch, nil
	}
	return true, statOf(n), ch, nil
}

// Children lists path's children, sorted.
func (s *Session) Children(ctx context.Context, path string) ([]string, error) {
	c, _, _, err := s.children(ctx, "Children", path, false)
	return c, err
}

// ChildrenW is Children with a one-shot watch: a child created or
// deleted, or the node deleted.
func (s *Session) ChildrenW(ctx context.Context, path string) ([]string, *zk.Stat, <-chan zk.Event, error) {
	return s.children(ctx, "ChildrenW", path, true)
}

func (s *Session) children(ctx context.Context, op, path string, watch bool) ([]string, *zk.Stat, <-chan zk.Event, error) {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	if err := s.begin(ctx, op, path); err != nil {
		return nil, nil, nil, err
	}
	n, ok := s.srv.nodes[path]
	if !ok {
		return nil, nil, nil, zk.ErrNoNode
	}
	var ch <-chan zk.Event
	if watch {
		ch = s.srv.addWatch(s.srv.childW, s, path)
	}
	names := make([]string, 0, len(n.children))
	for c := range n.children {
		names = append(names, c)
	}
	sort.Strings(names)
	return names, statOf(n), ch, nil
}

// Multi applies ops (*zk.CreateRequest, *zk.DeleteRequest,
// *zk.SetDataRequest, *zk.CheckVersionRequest) all or none. As with
// go-zookeeper, a failed multi returns the failing op's error, and in the
// responses nil before it, its error at it, and an error after it.
func (s *Session) Multi(ctx context.Context, ops ...any) ([]zk.MultiResponse, error) {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	if err := s.begin(ctx, "Multi", ""); err != nil {
		return nil, err
	}
	for _, op := range ops {
		switch op.(type) {
		case *zk.CreateRequest, *zk.DeleteRequest, *zk.SetDataRequest, *zk.CheckVersionRequest:
		default:
			return nil, fmt.Errorf("unknown operation type %T", op)
		}
	}
	// Try on a copy without watches; apply for real only if all succeed.
	if _, i, err := s.srv.cloneLocked().apply(s, ops); err != nil {
		res := make([]zk.MultiResponse, len(ops))
		for j := range res {
			switch {
			case j == i:
				res[j].Error = err
			case j > i:
				res[j].Error = errRuntimeInconsistency
			}
		}
		return res, err
	}
	res, i, err := s.srv.apply(s, ops)
	if err != nil {
		panic(fmt.Sprintf("fakezk: multi op %d failed after its trial succeeded: %v", i, err))
	}
	return res, nil
}

// apply runs ops in order, up to the first that fails: its index and error.
func (srv *Server) apply(s *Session, ops []any) ([]zk.MultiResponse, int, error) {
	res := make([]zk.MultiResponse, len(ops))
	for i, op := range ops {
		var err error
		switch op := op.(type) {
		case *zk.CreateRequest:
			res[i].String, err = srv.createLocked(s, op.Path, op.Data, op.Flags, op.Acl)
		case *zk.DeleteRequest:
			err = srv.deleteCheckedLocked(op.Path, op.Version)
		case *zk.SetDataRequest:
			res[i].Stat, err = srv.setLocked(op.Path, op.Data, op.Version)
		case *zk.CheckVersionRequest:
			_, err = srv.checkLocked(op.Path, op.Version)
		}
		if err != nil {
			return nil, i, err
		}
	}
	return res, -1, nil
}

// errRuntimeInconsistency is what go-zookeeper reports for the ops after
// the one that failed a multi (ZooKeeper's code -2, which it has no
// sentinel for).
var errRuntimeInconsistency = fmt.Errorf("unknown error: %v", zk.ErrCode(-2))

// cloneLocked copies the tree, without watches.
func (srv *Server) cloneLocked() *Server {
	c := &Server{nodes: make(map[string]*node, len(srv.nodes)), zxid: srv.zxid,
		dataW: map[string][]watch{}, childW: map[string][]watch{}}
	for p, n := range srv.nodes {
		cn := *n
		cn.children = make(map[string]struct{}, len(n.children))
		for k := range n.children {
			cn.children[k] = struct{}{}
		}
		c.nodes[p] = &cn
	}
	return c
}

// NodeACL is the ACL for a node created under parent: world ALL; locked
// reports Server.Locked. Like *zookeeper.Session's, it fails (wrapping
// zk.ErrNoNode) when parent does not exist.
func (s *Session) NodeACL(ctx context.Context, parent string) ([]zk.ACL, bool, error) {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	if err := s.begin(ctx, "NodeACL", parent); err != nil {
		return nil, false, err
	}
	if _, ok := s.srv.nodes[parent]; !ok {
		return nil, false, fmt.Errorf("ACL of %s: %w", parent, zk.ErrNoNode)
	}
	return zk.WorldACL(zk.PermAll), s.srv.Locked, nil
}

// Touch writes data at version 0, leaving a node at a later version alone
// (*zookeeper.Session's proof of authorship).
func (s *Session) Touch(ctx context.Context, path string, data []byte) error {
	_, err := s.Set(ctx, path, data, 0)
	if err != nil && !errors.Is(err, zk.ErrBadVersion) {
		return fmt.Errorf("touch %s: %w", path, err)
	}
	return nil
}

// Data is path's data and whether it exists, read without a session.
func (srv *Server) Data(path string) (string, bool) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	n, ok := srv.nodes[path]
	if !ok {
		return "", false
	}
	return string(n.data), true
}

// Stat is path's stat, nil if it does not exist.
func (srv *Server) Stat(path string) *zk.Stat {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	n, ok := srv.nodes[path]
	if !ok {
		return nil
	}
	return statOf(n)
}

// MustCreate creates persistent nodes (and their missing ancestors) with
// empty data, as a test's setup; existing ones are left alone.
func (srv *Server) MustCreate(paths ...string) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for _, p := range paths {
		if !validPath(p) {
			panic("fakezk: invalid path " + p)
		}
		var todo []string
		for q := p; q != "/"; q = parent(q) {
			todo = append(todo, q)
		}
		for i := len(todo) - 1; i >= 0; i-- {
			if _, ok := srv.nodes[todo[i]]; !ok {
				if _, err := srv.createLocked(nil, todo[i], nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
					panic(fmt.Sprintf("fakezk: create %s: %v", todo[i], err))
				}
			}
		}
	}
}
