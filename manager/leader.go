package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/internal/ratelog"
	"github.com/zkchat/zkchat/protocol"
	"github.com/zkchat/zkchat/zookeeper"
)

// kind is one of the three directories the leader watches.
type kind int

const (
	kindEnroll kind = iota
	kindQuit
	kindOnline
)

func (k kind) String() string { return [...]string{"enroll", "quit", "online"}[k] }

func (k kind) dir(p protocol.Paths) string {
	return [...]func() string{p.EnrollRequests, p.QuitRequests, p.Online}[k]()
}

// leader is the state of one term as leader. Its goroutines (the three
// directory watchers, the workers, the connection watcher) all end with
// ctx, and lead waits for them; its timers are stopped by stopTimers.
//
// Pending work is bounded by the nodes, not by goroutines: each tracked
// node is a nodeState in one map, a look at it is a task for one of a fixed
// number of workers, and its data watch reports through the session's
// OnWatch callback (event) instead of a goroutine per node.
//
// Lock order: mu is a leaf (never held across a ZooKeeper or Kafka call,
// never taken with another lock held).
type leader struct {
	m      *Manager
	s      *zookeeper.Session
	ctx    context.Context
	cancel context.CancelCauseFunc
	fence  []any
	wg     sync.WaitGroup
	warn   *ratelog.Logger // lines hostile nodes can make repeat

	mu    sync.Mutex
	nodes map[nodeKey]*nodeState // every node listed and not yet seen gone
	// queues of nodes to look at, one per class of work: a slow Kafka
	// (topics, for online nodes) never holds up the answering of requests.
	queues [2]workQueue
}

// nodeKey names a tracked node.
type nodeKey struct {
	k    kind
	name string
}

// class is the work queue of a kind: requests, or online nodes.
func (k kind) class() int {
	if k == kindOnline {
		return 1
	}
	return 0
}

// workQueue is a FIFO of nodes to look at, each at most once; guarded by
// leader.mu.
type workQueue struct {
	keys  []nodeKey
	ready chan struct{} // 1-buffered: something was queued
}

// nodeState is what the leader knows of one node. Guarded by leader.mu.
type nodeState struct {
	handled int64 // czxid of the node version handled (0: none)
	queued  bool  // in its queue
	busy    bool  // a worker is looking at it
	again   bool  // an event came while busy: look again after
	timer   *time.Timer
	// unusable is when the leader first could not use the node version
	// unusableCzxid (it could not read it, or its creator had not
	// confirmed it); zero: usable. A new node of the same name starts over.
	unusable      time.Time
	unusableCzxid int64
	backoff       time.Duration // the next retry's delay after a failed look
	// events counts the watch events for the node; armedAt is its value
	// when the last successful GetW/ExistsW set the node's watch. While
	// they are equal the watch is armed, and a timer's look reads without
	// setting another (go-zookeeper keeps a channel per watch set until it
	// fires).
	events  int
	armedAt int // -1: no watch armed
	// lastLook is when a worker last took the node; timerAt when its
	// planned look is due (zero: none).
	lastLook time.Time
	timerAt  time.Time
	// listedAt is when this term first listed the node (Stats' oldest
	// pending request).
	listedAt time.Time
	// answered: the request version seen answered and since when (local
	// clock: ZooKeeper's mtime is another machine's).
	answeredCzxid   int64
	answeredVersion int32
	answeredAt      time.Time
}

const (
	retryMin = 100 * time.Millisecond
	retryMax = 10 * time.Second
	// relistLook is the least time between two looks at a node without a
	// watch that a directory listing asks for.
	relistLook = 2 * time.Second
)

// add starts tracking a listed node: a new one is looked at.
func (l *leader) add(k kind, name string) {
	key := nodeKey{k, name}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ctx.Err() != nil {
		return
	}
	if st, ok := l.nodes[key]; ok {
		switch {
		case st.busy:
			// Listed again while a worker looks at it: the look may have
			// just seen it gone (and forget it) although this listing
			// shows a new node of the same name, which has no watch yet.
			st.again = true
		case st.armedAt != st.events:
			// No watch on it (ZooKeeper sends none for a node zkchat's
			// principal may not read): a listing is the only sign it may
			// have been replaced. Looked at again, at most every
			// relistLook, so thousands of hidden nodes cost little.
			if wait := relistLook - time.Since(st.lastLook); wait <= 0 {
				l.enqueueLocked(key)
			} else if st.timerAt.IsZero() || st.timerAt.After(time.Now().Add(wait)) {
				l.laterLocked(key, wait)
			}
		}
		return
	}
	l.nodes[key] = &nodeState{armedAt: -1, listedAt: time.Now()}
	l.enqueueLocked(key)
}

// event is the session's watch callback: a change of a tracked node has it
// looked at again. It runs on go-zookeeper's event loop, so it only queues.
func (l *leader) event(ev zk.Event) {
	for _, k := range []kind{kindEnroll, kindQuit, kindOnline} {
		name, ok := strings.CutPrefix(ev.Path, k.dir(l.s.Paths)+"/")
		if !ok || name == "" || strings.Contains(name, "/") {
			continue
		}
		l.mu.Lock()
		if st, tracked := l.nodes[nodeKey{k, name}]; tracked {
			st.events++ // the watch fired: not armed any more
			l.enqueueLocked(nodeKey{k, name})
		}
		l.mu.Unlock()
		return
	}
}

// enqueueLocked queues key for a look unless it is queued; a node being
// looked at is looked at again afterwards. l.mu held.
func (l *leader) enqueueLocked(key nodeKey) {
	st := l.nodes[key]
	switch {
	case st == nil || st.queued:
	case st.busy:
		st.again = true
	default:
		st.queued = true
		q := &l.queues[key.k.class()]
		q.keys = append(q.keys, key)
		select {
		case q.ready <- struct{}{}:
		default:
		}
	}
}

// later queues key for a look after d (replacing a look already planned).
// l.mu held.
func (l *leader) laterLocked(key nodeKey, d time.Duration) {
	st := l.nodes[key]
	if st == nil {
		return
	}
	if st.timer != nil {
		st.timer.Stop()
	}
	st.timerAt = time.Now().Add(d)
	st.timer = time.AfterFunc(d, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.nodes[key] == st && l.ctx.Err() == nil {
			st.timer, st.timerAt = nil, time.Time{}
			l.enqueueLocked(key)
		}
	})
}

// stopTimers stops every planned look; the term is over.
func (l *leader) stopTimers() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, st := range l.nodes {
		if st.timer != nil {
			st.timer.Stop()
		}
	}
}

// work is one worker of a queue: it looks at one node at a time until the
// term ends.
func (l *leader) work(class int) {
	defer l.wg.Done()
	q := &l.queues[class]
	for {
		l.mu.Lock()
		for len(q.keys) == 0 {
			l.mu.Unlock()
			select {
			case <-q.ready:
			case <-l.ctx.Done():
				return
			}
			l.mu.Lock()
		}
		key := q.keys[0]
		q.keys[0] = nodeKey{}
		q.keys = q.keys[1:]
		if len(q.keys) > 0 {
			select { // wake another worker for the rest
			case q.ready <- struct{}{}:
			default:
			}
		}
		st := l.nodes[key]
		if st == nil {
			l.mu.Unlock()
			continue
		}
		st.queued, st.busy, st.lastLook = false, true, time.Now()
		l.mu.Unlock()

		l.look(key, st)

		l.mu.Lock()
		st.busy = false
		if st.again && l.nodes[key] == st {
			st.again = false
			l.enqueueLocked(key)
		}
		l.mu.Unlock()
		if l.ctx.Err() != nil {
			return
		}
	}
}

// look reads a node (setting its data watch, which reports through event)
// and acts on it.
func (l *leader) look(key nodeKey, st *nodeState) {
	path := key.k.dir(l.s.Paths) + "/" + key.name
	type got struct {
		data []byte
		stat *zk.Stat
	}
	l.mu.Lock()
	events, armed := st.events, st.armedAt == st.events
	l.mu.Unlock()
	g, err := zookeeper.Do(l.ctx, func() (got, error) {
		if armed {
			d, st, err := l.s.Conn.Get(path)
			return got{d, st}, err
		}
		d, st, _, err := l.s.Conn.GetW(path) // its event comes through l.event
		return got{d, st}, err
	})
	if err == nil && !armed {
		l.armed(st, events)
	}
	switch {
	case l.ctx.Err() != nil:
		return
	case errors.Is(err, zk.ErrNoNode):
		l.forget(key, st)
		return
	case errors.Is(err, zk.ErrNoAuth):
		// Hidden from zkchat's principal: it can never be answered or
		// checked, and ZooKeeper sends no watch event for it (a node that
		// replaces it shows in the next listing: see add). Exists (not
		// ACL-checked) gives the version to remove.
		l.hidden(key, st, path)
		return
	case err != nil:
		l.retry(key, st, "read node failed; retrying", "path", path, "err", err)
		return
	}
	if key.k == kindOnline && g.stat.EphemeralOwner == 0 {
		// Presence that outlives every session is no presence: remove it
		// at once.
		l.remove(key, st, path, g.stat.Version, slog.LevelWarn, "removed a node zkchat cannot use", "reason", "not ephemeral")
		return
	}
	l.mu.Lock()
	handled := st.handled
	l.mu.Unlock()
	if g.stat.Czxid != handled || key.k != kindOnline {
		switch r := l.handle(key.k, key.name, path, g.data, g.stat); {
		case r == resultStop:
			return
		case r == resultNotTouched:
			l.unusable(key, st, path, g.stat, "not confirmed by its creator (never touched)")
			return
		case r == resultUnusable:
			l.unusable(key, st, path, g.stat, "zkchat's principal may not answer it")
			return
		case r == resultRetry:
			l.retry(key, st, "handling node failed; retrying", "path", path)
			return
		}
	}
	l.mu.Lock()
	st.handled, st.unusable, st.unusableCzxid, st.backoff = g.stat.Czxid, time.Time{}, 0, 0
	l.mu.Unlock()
	l.answeredGrace(key, st, path, g.data, g.stat)
}

// armed records that a watch was set on the node while its event count
// was events (a later event means it fired already).
func (l *leader) armed(st *nodeState, events int) {
	l.mu.Lock()
	if st.events == events {
		st.armedAt = events
	}
	l.mu.Unlock()
}

// hidden handles a node zkchat's principal may not read.
func (l *leader) hidden(key nodeKey, st *nodeState, path string) {
	type got struct {
		ok   bool
		stat *zk.Stat
	}
	stat, err := zookeeper.Do(l.ctx, func() (got, error) {
		ok, stat, err := l.s.Conn.Exists(path)
		return got{ok, stat}, err
	})
	switch {
	case l.ctx.Err() != nil:
	case err != nil:
		l.retry(key, st, "read node failed; retrying", "path", path, "err", err)
	case !stat.ok:
		l.forget(key, st)
	default:
		l.unusable(key, st, path, stat.stat, "zkchat's principal may not read it")
	}
}

// forget stops tracking a node that is gone. An event or a listing that
// came during the look (again) keeps it: a node of the same name may have
// been made since.
func (l *leader) forget(key nodeKey, st *nodeState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if st.again {
		return // the worker looks again at once
	}
	if l.nodes[key] == st {
		if st.timer != nil {
			st.timer.Stop()
		}
		delete(l.nodes, key)
	}
}

// retry plans another look with backoff after a failure that may pass (a
// connection, Kafka); the line is rate-limited.
func (l *leader) retry(key nodeKey, st *nodeState, msg string, args ...any) {
	l.mu.Lock()
	st.backoff = min(max(st.backoff*2, retryMin), retryMax)
	d := st.backoff
	l.laterLocked(key, d)
	l.mu.Unlock()
	l.warn.Warn(msg, append(args, "retry_in", d)...)
}

// unusable handles a node the leader cannot use: the first time, it plans
// a look at the end of ConfirmGrace (a touch is a data change and comes
// earlier through the watch); once the grace is over it removes the node.
// stat is the node version seen: the grace runs per node version
// (czxid), and the removal is at that data version, so a node that
// replaced it, or changed, is never removed by it.
func (l *leader) unusable(key nodeKey, st *nodeState, path string, stat *zk.Stat, why string) {
	grace := l.m.cfg.ConfirmGrace
	l.mu.Lock()
	now := time.Now()
	first := st.unusable.IsZero() || st.unusableCzxid != stat.Czxid
	if first {
		st.unusable, st.unusableCzxid = now, stat.Czxid
	}
	left := grace - now.Sub(st.unusable)
	if left > 0 {
		l.laterLocked(key, left)
	}
	l.mu.Unlock()
	if left > 0 {
		if first {
			l.warn.Warn("node unusable: it is removed unless it becomes usable within the grace",
				"path", path, "reason", why, "grace", grace)
		}
		return
	}
	l.remove(key, st, path, stat.Version, slog.LevelWarn, "removed a node zkchat cannot use", "reason", why+", for "+grace.String())
}

// remove deletes a node (fenced; at version, -1 any: a node changed
// meanwhile is looked at again instead), and logs msg with args (rate-
// limited). The leader may delete any child of the directories it owns,
// whatever the child's ACL.
func (l *leader) remove(key nodeKey, st *nodeState, path string, version int32, level slog.Level, msg string, args ...any) {
	resp, err := multi(l.ctx, l.s, l.fence, &zk.DeleteRequest{Path: path, Version: version})
	i, opErr := failedOp(resp, err)
	switch {
	case err == nil:
		l.warn.Log(level, msg, msg, append([]any{"path", path}, args...)...)
		l.forget(key, st)
	case i >= 0 && i < len(l.fence):
		l.cancel(errNotLeader)
	case errors.Is(err, errOutcomeUnknown):
		l.cancel(err)
	case errors.Is(opErr, zk.ErrNoNode):
		l.forget(key, st)
	case errors.Is(opErr, zk.ErrBadVersion):
		l.mu.Lock()
		l.enqueueLocked(key) // changed meanwhile: look again
		l.mu.Unlock()
	case l.ctx.Err() == nil:
		l.retry(key, st, "remove node failed; retrying", "path", path, "err", err)
	}
}

// answeredGrace removes an answered request nobody deleted once it has
// stood answered, at the same version, for AnswerGrace; until then it plans
// a look at the grace's end.
func (l *leader) answeredGrace(key nodeKey, st *nodeState, path string, data []byte, stat *zk.Stat) {
	status, err := protocol.ParseStatus(data)
	if key.k == kindOnline || err != nil || status == protocol.StatusPending {
		return
	}
	grace := l.m.cfg.AnswerGrace
	l.mu.Lock()
	if st.answeredAt.IsZero() || st.answeredCzxid != stat.Czxid || st.answeredVersion != stat.Version {
		st.answeredCzxid, st.answeredVersion, st.answeredAt = stat.Czxid, stat.Version, time.Now()
	}
	left := grace - time.Since(st.answeredAt)
	if left > 0 {
		l.laterLocked(key, left)
	}
	l.mu.Unlock()
	if left > 0 {
		return
	}
	l.remove(key, st, path, stat.Version, slog.LevelInfo, "removed an answered request nobody deleted", "grace", grace)
}

// result is what handling a node came to.
type result int

const (
	resultDone       result = iota // handled (or failed for good, logged)
	resultNotTouched               // its creator has not confirmed it yet
	resultRetry                    // a failure that may pass: look again later
	resultUnusable                 // it cannot be answered (zkchat may not write it): removed after the grace
	resultStop                     // the term ends
)

// watchDir lists a directory with a child watch, re-listing at every event.
// Listing and re-arming are one call, so no child that appears in between
// is missed. Each child not yet tracked is added to the nodes to look at.
func (l *leader) watchDir(k kind) {
	defer l.wg.Done()
	dir := k.dir(l.s.Paths)
	backoff := 50 * time.Millisecond
	if !l.fits(dir) {
		return
	}
	for l.ctx.Err() == nil {
		type got struct {
			children []string
			ch       <-chan zk.Event
		}
		g, err := zookeeper.Do(l.ctx, func() (got, error) {
			c, _, ch, err := l.s.Conn.ChildrenW(dir)
			return got{c, ch}, err
		})
		if err != nil {
			if l.ctx.Err() != nil {
				return
			}
			// ChildrenW on a missing node sets no watch: re-create the tree.
			if errors.Is(err, zk.ErrNoNode) {
				l.m.log.Warn("zkchat tree missing; re-creating it", "dir", dir)
				if err := l.s.CreateTree(l.ctx); err != nil {
					l.m.log.Error("re-creating tree", "err", err)
				}
			} else {
				// A listing over the client's buffer (a huge backlog) lands here too.
				l.m.log.Error("list requests", "dir", dir, "err", err, "retry_in", backoff)
			}
			select {
			case <-time.After(backoff):
			case <-l.ctx.Done():
				return
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		for _, name := range g.children {
			l.add(k, name)
		}
		select {
		case <-g.ch:
		case <-l.ctx.Done():
			return
		}
	}
}

// fits waits, at the start of a term, until dir's listing fits in the
// session's reply limit, and reports false when the term ends first. A
// listing over the limit makes go-zookeeper close the connection, which ends
// the term, whose successor lists again: a loop of terms (hundreds a
// second) that answers nothing, with the cause logged only at debug level.
// The child count comes from the directory's stat; names are assumed
// protocol.MaxIDLen long, so the estimate errs on the safe side.
func (l *leader) fits(dir string) bool {
	backoff := 5 * time.Second
	for {
		ok, st, err := l.s.Exists(l.ctx, dir)
		if err != nil || !ok {
			return l.ctx.Err() == nil // the listing reports it
		}
		need := 64 + int64(st.NumChildren)*(4+protocol.MaxIDLen)
		if need <= zookeeper.ManagerMaxReply {
			return true
		}
		l.m.log.Error("too many nodes to list: nothing in this directory is answered until stale ones are deleted (by a client that can list them, e.g. zkCli.sh with -Djute.maxbuffer raised)",
			"dir", dir, "children", st.NumChildren, "listing_up_to_bytes", need,
			"limit_bytes", zookeeper.ManagerMaxReply, "max_children", (zookeeper.ManagerMaxReply-64)/(4+protocol.MaxIDLen),
			"retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-l.ctx.Done():
			return false
		}
		backoff = min(backoff*2, time.Minute)
	}
}

// handle acts on one node: answers a request, or checks an online node.
func (l *leader) handle(k kind, name, path string, data []byte, stat *zk.Stat) result {
	var err error
	switch k {
	case kindEnroll, kindQuit:
		err = l.request(k, name, path, data, stat)
	case kindOnline:
		err = l.online(name, path, data, stat)
	}
	switch {
	case protocol.ErrNotTouched(err):
		return resultNotTouched
	case err == nil, errors.Is(err, errAnswered):
		return resultDone
	case errors.Is(err, errNotLeader), errors.Is(err, errOutcomeUnknown):
		l.cancel(err)
		return resultStop
	case l.ctx.Err() != nil:
		return resultStop
	case errors.Is(err, zk.ErrNoAuth):
		// zkchat may not write it (answer, delete the refused node): its
		// ACL leaves zkchat's principal out.
		return resultUnusable
	case errors.Is(err, errRetry), transient(err):
		return resultRetry
	}
	l.warn.Error("handling node failed", "kind", k.String(), "id", name, "path", path, "err", err)
	return resultDone
}

// transient reports whether err may pass by itself: ZooKeeper not answering
// for a moment (zookeeper.ErrStalled, no server), or a call that timed out.
// Such a request is looked at again with backoff, never answered "failed".
func transient(err error) bool {
	return errors.Is(err, zookeeper.ErrStalled) || errors.Is(err, zk.ErrNoServer) ||
		errors.Is(err, context.DeadlineExceeded)
}

// request answers one register or quit request if it is pending.
func (l *leader) request(k kind, id, path string, data []byte, stat *zk.Stat) error {
	st, perr := protocol.ParseStatus(data)
	if perr == nil && st != protocol.StatusPending {
		return nil // answered; the worker deletes it
	}
	req := &zk.SetDataRequest{Path: path, Version: stat.Version}
	log := l.m.log.With("kind", k.String(), "id", id)
	if perr != nil {
		log.Warn("request with bad data: answering failed", "err", perr)
		return l.fail(k, req)
	}
	if err := protocol.ValidateID(id); err != nil {
		log.Warn("request for an invalid id: answering failed", "err", err)
		return l.fail(k, req)
	}
	// With ACLs on: who made the request? Refused unless the id itself (a
	// quit: with the password it registered with) or zkchat's principal.
	ident, _, err := l.m.identity(l.ctx, l.s, path, id, stat.Version, k == kindQuit)
	switch {
	case protocol.ErrNotTouched(err):
		// Its creator's touch is a data change (looked at again then);
		// a node nobody touches is removed after ConfirmGrace.
		return err
	case errors.Is(err, protocol.ErrIdentity):
		log.Warn("request refused: answering failed", "err", err)
		return l.fail(k, req)
	case errors.Is(err, zk.ErrNoNode):
		return errAnswered // withdrawn
	case err != nil:
		return err
	}
	switch k {
	case kindEnroll:
		st, err = l.m.register(l.ctx, l.s, l.fence, id, ident, req)
	default:
		st, err = l.m.remove(l.ctx, l.s, l.fence, id, req)
	}
	switch {
	case err == nil:
		log.Info("request answered", "status", st)
		l.m.count.answer(k, st)
		return nil
	case errors.Is(err, errNotLeader), errors.Is(err, errAnswered):
		return err
	case errors.Is(err, errOutcomeUnknown):
		// The answer may be in ZooKeeper (and its requester told) or not:
		// answering "failed" now could contradict it. The term ends; the
		// next one (this manager's, if its session lives) reads the
		// request again and answers it if it is still pending.
		log.Warn("request answer outcome unknown", "err", err)
		return err
	case l.ctx.Err() != nil:
		return err // the term ended before the answer was sent
	case transient(err):
		return fmt.Errorf("%w: %w", errRetry, err) // not "failed": it may pass
	}
	log.Error("request failed: answering failed", "err", err)
	return l.fail(k, req)
}

// fail answers the request "failed", and counts it (Stats).
func (l *leader) fail(k kind, req *zk.SetDataRequest) error {
	if _, err := l.m.settle(l.ctx, l.s, l.fence, req, protocol.StatusFailed); err != nil {
		return err
	}
	l.m.count.answer(k, protocol.StatusFailed)
	return nil
}

// online checks a new /online node: an unregistered id is taken offline,
// a registered one gets its topic. With ACLs on, a node not made by the id
// (with the password it registered with) or by zkchat's principal is taken
// offline too; one not yet touched by its creator waits for the touch.
func (l *leader) online(id, path string, data []byte, stat *zk.Stat) error {
	log := l.m.log.With("kind", "online", "id", id)
	valid, why := protocol.ValidateID(id) == nil, "invalid id"
	var ident string
	var bound bool
	if valid {
		var err error
		ident, bound, err = l.m.identity(l.ctx, l.s, path, id, stat.Version, true)
		switch {
		case protocol.ErrNotTouched(err):
			return err
		case errors.Is(err, zk.ErrNoNode):
			return nil // gone offline meanwhile
		case errors.Is(err, protocol.ErrIdentity):
			valid, why = false, err.Error()
		case err != nil:
			return err
		}
	}
	if valid {
		reg := l.s.Paths.Registered(id)
		type got struct {
			data []byte
			stat *zk.Stat
		}
		r, err := zookeeper.Do(l.ctx, func() (got, error) {
			d, st, err := l.s.Conn.Get(reg)
			return got{d, st}, err
		})
		switch {
		case err == nil:
			// The key first: a worker that sees its topic ready finds its
			// key recorded too. With ACLs on, a node made by a digest
			// identity records its key only when the id is bound to it:
			// an id registered by zkchat's principal (a bridge's user) has
			// no binding, and any client calling itself "<id>:<any
			// password>" could otherwise publish a key for it.
			if ident == "" || bound {
				if err := l.recordKey(id, path, data, r.data, r.stat); err != nil {
					return err
				}
			} else if pub, _ := protocol.OnlinePublicKey(data); pub != nil {
				l.warn.Warn("online node of an id not bound to its creator: its key is not recorded", "path", path)
			}
			return l.ensureTopic(id)
		case !errors.Is(err, zk.ErrNoNode):
			return fmt.Errorf("read %s: %w", reg, err)
		}
		why = "not registered"
	}
	log.Warn("online node refused: deleting it", "reason", why)
	resp, err := multi(l.ctx, l.s, l.fence, &zk.DeleteRequest{Path: path, Version: -1})
	if err != nil {
		if i, _ := failedOp(resp, err); i >= 0 && i < len(l.fence) {
			return errNotLeader
		}
		if errors.Is(err, zk.ErrNoNode) {
			return nil
		}
		return fmt.Errorf("delete %s: %w", path, err)
	}
	return nil
}

// recordKey copies the public key of id's online node into
// /registry/<id> (reg, read at regStat; fenced, at that version) when it
// differs: the key receivers check id's signatures with. A malformed key
// is logged and not recorded; the node is still accepted.
func (l *leader) recordKey(id, path string, data, reg []byte, regStat *zk.Stat) error {
	pub, err := protocol.OnlinePublicKey(data)
	if err != nil {
		l.warn.Warn("online node with a malformed public key: not recorded", "path", path, "err", err)
		return nil
	}
	if pub == nil {
		return nil // unsigned: another implementation, or no key configured
	}
	rd, perr := protocol.ParseRegistryData(reg)
	if perr != nil {
		l.warn.Warn("registry node is not zkchat's JSON: rewriting it with the key", "id", id, "err", perr)
	}
	if rd.Key().Equal(pub) {
		return nil
	}
	rd.PublicKey = protocol.EncodePublicKey(pub)
	resp, err := multi(l.ctx, l.s, l.fence, &zk.SetDataRequest{Path: l.s.Paths.Registered(id), Data: rd.Marshal(), Version: regStat.Version})
	if err != nil {
		if i, _ := failedOp(resp, err); i >= 0 && i < len(l.fence) {
			return errNotLeader
		}
		if errors.Is(err, errOutcomeUnknown) {
			return err
		}
		return fmt.Errorf("%w: record the key of %s: %w", errRetry, id, err)
	}
	l.m.log.Info("public key recorded", "id", id)
	return nil
}

// errRetry: handling failed in a way that may pass (Kafka away); the node
// is looked at again with backoff.
var errRetry = errors.New("retry later")

// ensureTopic creates id's topic. A failure is retried by the caller with
// backoff: this worker does not wait for Kafka, so a long Kafka outage
// holds up no other node.
func (l *leader) ensureTopic(id string) error {
	err := l.m.CreateKafkaTopic(l.ctx, id)
	if err != nil {
		return fmt.Errorf("%w: create topic of %s: %w", errRetry, id, err)
	}
	l.m.log.Info("online; topic ready", "id", id, "topic", l.m.cfg.Topics.Topic(id))
	return nil
}
