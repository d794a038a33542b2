package manager

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/internal/ratelog"
	"github.com/zkchat/zkchat/protocol"
	"github.com/zkchat/zkchat/zookeeper"
)

// errSuspended: the connection was lost while leading; the session may
// still come back.
var errSuspended = errors.New("connection lost (suspended)")

// errSessionLost: the session expired, or stayed disconnected for longer
// than its timeout.
var errSessionLost = errors.New("session lost")

// Run takes part in the election until ctx ends, and acts while it is the
// leader. It returns nil when ctx ends; ZooKeeper outages are waited out.
func (m *Manager) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		start := time.Now()
		err := m.runSession(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > time.Minute {
			backoff = 100 * time.Millisecond
		}
		m.log.Warn("manager session ended; starting a new one", "err", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// runSession is one ZooKeeper session's life: join the election, lead or
// wait for the predecessor to go, until the session is lost or ctx ends.
func (m *Manager) runSession(ctx context.Context) error {
	s, err := m.dial(ctx, nil, func(ev zk.Event) {
		if l := m.term.Load(); l != nil {
			l.event(ev)
		}
	})
	if err != nil {
		return err
	}
	defer s.Close()
	m.run.Store(s)
	defer m.run.CompareAndSwap(s, nil)
	sid := s.Conn.SessionID()
	if err := s.CreateTree(ctx); err != nil {
		return err
	}
	node, err := zookeeper.Do(ctx, func() (string, error) {
		return s.Conn.CreateProtectedEphemeralSequential(s.Paths.Election()+"/n_", []byte(m.cfg.Name), m.nodeACL())
	})
	if err != nil {
		return fmt.Errorf("join election: %w", err)
	}
	m.log.Info("joined election", "node", node, "session", fmt.Sprintf("%#x", sid))
	for {
		if err := m.healthy(ctx, s, sid); err != nil {
			return err
		}
		first, pred, err := m.position(ctx, s, node)
		if err != nil {
			return err
		}
		if first {
			err := m.lead(ctx, s, sid, node)
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, errSuspended) || errors.Is(err, errOutcomeUnknown) {
				continue // healthy() decides: same session back, or lost
			}
			return err
		}
		if err := m.awaitPredecessor(ctx, s, sid, pred); err != nil {
			return err
		}
	}
}

// healthy waits until s has its original session again. It fails with
// errSessionLost if the session was replaced or stayed disconnected for
// longer than the session timeout: ephemeral nodes may be gone by then.
func (m *Manager) healthy(ctx context.Context, s *zookeeper.Session, sid int64) error {
	timer := time.NewTimer(m.cfg.SessionTimeout)
	defer timer.Stop()
	for {
		ch := s.Changed()
		st := s.Conn.State()
		if s.Conn.SessionID() != sid || st == zk.StateExpired {
			return errSessionLost
		}
		if st == zk.StateHasSession {
			return nil
		}
		select {
		case <-ch:
		case <-timer.C:
			return fmt.Errorf("%w: disconnected for %s", errSessionLost, m.cfg.SessionTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// seq is the sequence number that ends an election node's name.
// position reports whether node is the lowest election node, and otherwise
// the path of the node just before it.
func (m *Manager) position(ctx context.Context, s *zookeeper.Session, node string) (bool, string, error) {
	children, err := s.Children(ctx, s.Paths.Election())
	if err != nil {
		return false, "", fmt.Errorf("election: %w", err)
	}
	sort.Slice(children, func(i, j int) bool { return protocol.ElectionSeq(children[i]) < protocol.ElectionSeq(children[j]) })
	mine := node[strings.LastIndex(node, "/")+1:]
	for i, c := range children {
		if c == mine {
			if i == 0 {
				return true, "", nil
			}
			return false, s.Paths.Election() + "/" + children[i-1], nil
		}
	}
	return false, "", fmt.Errorf("%w: election node %s is gone", errSessionLost, node)
}

// awaitPredecessor waits until the predecessor's node is gone, or the connection
// changes state.
func (m *Manager) awaitPredecessor(ctx context.Context, s *zookeeper.Session, sid int64, pred string) error {
	type got struct {
		ok bool
		ch <-chan zk.Event
	}
	changed := s.Changed()
	g, err := zookeeper.Do(ctx, func() (got, error) {
		ok, _, ch, err := s.Conn.ExistsW(pred)
		return got{ok, ch}, err
	})
	if err != nil {
		return fmt.Errorf("election: watch %s: %w", pred, err)
	}
	if !g.ok {
		return nil
	}
	m.log.Debug("following", "predecessor", pred)
	select {
	case <-g.ch:
	case <-changed:
	case <-ctx.Done():
	}
	return nil
}

// lead acts as leader until ctx ends or the connection is lost.
func (m *Manager) lead(ctx context.Context, s *zookeeper.Session, sid int64, node string) error {
	lctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	m.setLeading(true)
	m.count.terms.Add(1)
	m.log.Info(msgLeader, "node", node, "session", fmt.Sprintf("%#x", sid))
	l := &leader{m: m, s: s, ctx: lctx, cancel: cancel,
		fence: []any{&zk.CheckVersionRequest{Path: node, Version: -1}},
		warn:  ratelog.New(m.log, 5*time.Second),
		nodes: map[nodeKey]*nodeState{}}
	for i := range l.queues {
		l.queues[i].ready = make(chan struct{}, 1)
		workers := m.cfg.Concurrency
		if i == kindOnline.class() {
			workers = m.cfg.OnlineConcurrency
		}
		for range workers {
			l.wg.Add(1)
			go l.work(i)
		}
	}
	m.term.Store(l)
	defer m.term.CompareAndSwap(l, nil)
	// Stop acting the moment the connection is lost: this process cannot
	// tell whether its session survives.
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			ch := s.Changed()
			if st := s.Conn.State(); st != zk.StateHasSession || s.Conn.SessionID() != sid {
				cancel(fmt.Errorf("%w: state %s", errSuspended, st))
				return
			}
			select {
			case <-ch:
			case <-lctx.Done():
				return
			}
		}
	}()
	for _, k := range []kind{kindEnroll, kindQuit, kindOnline} {
		l.wg.Add(1)
		go l.watchDir(k)
	}
	<-lctx.Done()
	l.wg.Wait()
	l.stopTimers()
	m.setLeading(false)
	err := context.Cause(lctx)
	m.log.Info(msgFollower, "node", node, "reason", err)
	return err
}
