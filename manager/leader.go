package manager

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

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

// leader is the state of one term as leader. Its goroutines all end with ctx.
type leader struct {
	m      *Manager
	s      *zookeeper.Session
	ctx    context.Context
	cancel context.CancelCauseFunc
	fence  []any
	sem    chan struct{} // bounds nodes handled at once
	wg     sync.WaitGroup

	mu   sync.Mutex      // a leaf: guards seen only
	seen map[string]bool // kind/name of nodes being tracked
}

// watchDir lists a directory with a child watch, re-listing at every event.
// Listing and re-arming are one call, so no child that appears in between
// is missed. Each child not yet tracked gets a tracking goroutine.
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
			l.track(k, name)
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

// track starts a tracking goroutine for the node unless one runs.
func (l *leader) track(k kind, name string) {
	key := k.String() + "/" + name
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen[key] || l.ctx.Err() != nil {
		return
	}
	l.seen[key] = true
	l.wg.Add(1)
	go l.watchNode(k, name, key)
}

// watchNode handles one node, then keeps a data watch on it until it is deleted,
// handling it again on every change. When it is deleted the node leaves the
// seen set, and is looked at once more: a node of the same name created
// after the deletion but listed before it left the set would be missed
// otherwise.
func (l *leader) watchNode(k kind, name, key string) {
	defer l.wg.Done()
	path := k.dir(l.s.Paths) + "/" + name
	var handled int64 // czxid of the node version handled
	var answered answerTimer
	defer answered.stop()
	for {
		type got struct {
			data []byte
			stat *zk.Stat
			ch   <-chan zk.Event
		}
		g, err := zookeeper.Do(l.ctx, func() (got, error) {
			d, st, ch, err := l.s.Conn.GetW(path)
			return got{d, st, ch}, err
		})
		if errors.Is(err, zk.ErrNoNode) {
			l.untrack(k, name, key)
			return
		}
		if err != nil {
			if l.ctx.Err() == nil {
				l.m.log.Warn("read node", "path", path, "err", err)
				// Let the next term, or the next listing, take it up.
				l.untrack(k, name, key)
			}
			return
		}
		if g.stat.Czxid != handled || k != kindOnline {
			cont, done := l.handle(k, name, path, g.data, g.stat)
			if !cont {
				return
			}
			if done {
				handled = g.stat.Czxid
			}
		}
		expire := answered.update(k, g.data, g.stat, l.m.cfg.AnswerGrace)
		select {
		case ev := <-g.ch:
			if ev.Type == zk.EventNodeDeleted {
				l.untrack(k, name, key)
				return
			}
		case <-expire:
			if !l.removeAnswered(path, g.stat.Version) {
				return
			}
		case <-l.ctx.Done():
			answered.stop()
			return
		}
	}
}

// answerTimer times how long a request node has stood answered, from when
// this leader first saw that answer (the local clock: ZooKeeper's mtime is
// another machine's). One per watchNode goroutine, which stops it.
type answerTimer struct {
	czxid   int64
	version int32
	t       *time.Timer
}

// update starts the grace for an answered request node, keeps it running
// while the node is the same answered version, and stops it otherwise. It
// returns the channel that fires when the grace is over (nil: none).
func (a *answerTimer) update(k kind, data []byte, stat *zk.Stat, grace time.Duration) <-chan time.Time {
	st, err := protocol.ParseStatus(data)
	if k == kindOnline || err != nil || st == protocol.StatusPending {
		a.stop()
		return nil
	}
	if a.t == nil || a.czxid != stat.Czxid || a.version != stat.Version {
		a.stop()
		a.czxid, a.version, a.t = stat.Czxid, stat.Version, time.NewTimer(grace)
	}
	return a.t.C
}

func (a *answerTimer) stop() {
	if a.t != nil {
		a.t.Stop()
		a.t = nil
	}
}

// removeAnswered deletes an answered request nobody removed within the
// grace (fenced, at the version seen answered: a node changed meanwhile is
// left alone). false: the term ends.
func (l *leader) removeAnswered(path string, version int32) bool {
	resp, err := multi(l.ctx, l.s, l.fence, &zk.DeleteRequest{Path: path, Version: version})
	if err == nil {
		l.m.log.Info("removed an answered request nobody deleted", "path", path, "grace", l.m.cfg.AnswerGrace)
		return true
	}
	i, opErr := failedOp(resp, err)
	switch {
	case i >= 0 && i < len(l.fence):
		l.cancel(errNotLeader)
		return false
	case errors.Is(err, errOutcomeUnknown):
		l.cancel(err)
		return false
	case errors.Is(opErr, zk.ErrBadVersion), errors.Is(opErr, zk.ErrNoNode):
		return true // changed or gone meanwhile
	case l.ctx.Err() != nil:
		return false
	}
	l.m.log.Warn("remove answered request", "path", path, "err", err)
	return true
}

func (l *leader) untrack(k kind, name, key string) {
	l.mu.Lock()
	delete(l.seen, key)
	l.mu.Unlock()
	if l.ctx.Err() != nil {
		return
	}
	ok, _, err := l.s.Exists(l.ctx, k.dir(l.s.Paths)+"/"+name)
	if err == nil && ok {
		l.track(k, name)
	}
}

// handle acts on one node. cont false stops watching it (the leader's
// term ends: fence failed); done false means it is to be looked at again at
// its next change (an online node not yet touched by its creator).
func (l *leader) handle(k kind, name, path string, data []byte, stat *zk.Stat) (cont, done bool) {
	log := l.m.log.With("kind", k.String(), "id", name)
	var err error
	switch k {
	case kindEnroll, kindQuit:
		if !l.acquire() {
			return false, false
		}
		err = l.request(k, name, path, data, stat)
		l.release()
	case kindOnline:
		// Not under the semaphore as a whole: creating a topic retries for
		// as long as Kafka is away, and must not hold up registrations.
		err = l.online(name, path, stat)
	}
	switch {
	case protocol.ErrNotTouched(err):
		return true, false
	case err == nil, errors.Is(err, errAnswered):
		return true, true
	case errors.Is(err, errNotLeader), errors.Is(err, errOutcomeUnknown):
		l.cancel(err)
		return false, false
	case l.ctx.Err() != nil:
		return false, false
	}
	log.Error("handling node failed", "path", path, "err", err)
	return true, true
}

// acquire takes a slot of the semaphore that bounds concurrent handling.
func (l *leader) acquire() bool {
	select {
	case l.sem <- struct{}{}:
		return true
	case <-l.ctx.Done():
		return false
	}
}

func (l *leader) release() { <-l.sem }

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
		_, err := l.m.settle(l.ctx, l.s, l.fence, req, protocol.StatusFailed)
		return err
	}
	if err := protocol.ValidateID(id); err != nil {
		log.Warn("request for an invalid id: answering failed", "err", err)
		_, err := l.m.settle(l.ctx, l.s, l.fence, req, protocol.StatusFailed)
		return err
	}
	// With ACLs on: who made the request? Refused unless the id itself (a
	// quit: with the password it registered with) or zkchat's principal.
	ident, err := l.m.identity(l.ctx, l.s, path, id, stat.Version, k == kindQuit)
	switch {
	case protocol.ErrNotTouched(err):
		return nil // its creator's touch is a data change: looked at again then
	case errors.Is(err, protocol.ErrIdentity):
		log.Warn("request refused: answering failed", "err", err)
		_, err := l.m.settle(l.ctx, l.s, l.fence, req, protocol.StatusFailed)
		return err
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
	}
	log.Error("request failed: answering failed", "err", err)
	if _, serr := l.m.settle(l.ctx, l.s, l.fence, req, protocol.StatusFailed); serr != nil {
		return serr
	}
	return nil
}

// online checks a new /online node: an unregistered id is taken offline,
// a registered one gets its topic. With ACLs on, a node not made by the id
// (with the password it registered with) or by zkchat's principal is taken
// offline too; one not yet touched by its creator waits for the touch.
func (l *leader) online(id, path string, stat *zk.Stat) error {
	log := l.m.log.With("kind", "online", "id", id)
	if !l.acquire() {
		return context.Cause(l.ctx)
	}
	release := sync.OnceFunc(l.release)
	defer release()
	valid, why := protocol.ValidateID(id) == nil, "invalid id"
	if valid {
		_, err := l.m.identity(l.ctx, l.s, path, id, stat.Version, true)
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
		ok, _, err := l.s.Exists(l.ctx, l.s.Paths.Registered(id))
		if err != nil {
			return err
		}
		if ok {
			release()
			return l.ensureTopic(id)
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

// ensureTopic creates id's topic, retrying while Kafka is unreachable.
func (l *leader) ensureTopic(id string) error {
	backoff := 100 * time.Millisecond
	for {
		err := l.m.CreateKafkaTopic(l.ctx, id)
		if err == nil {
			l.m.log.Info("online; topic ready", "id", id, "topic", l.m.cfg.Topics.Topic(id))
			return nil
		}
		if l.ctx.Err() != nil {
			return err
		}
		l.m.log.Warn("create topic failed; retrying", "id", id, "err", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-l.ctx.Done():
			return context.Cause(l.ctx)
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}
