package zookeeper

import (
	"context"
	"errors"
	"sync"

	"github.com/go-zookeeper/zk"
)

// Cache keeps nodes a process reads often (a receiver's /online node on
// every message, an id's /accounts binding on every command) and a watch on
// each, so each is read from the server once per change instead of once per
// use. Its Event must be the session's OnWatch (SessionConfig).
//
// A cached answer is as good as a read: ZooKeeper sends a session a node's
// watch event before the answer to any later read of it, and Event drops
// the entry as it arrives. What is cached is the answer of the session the
// entry was read in, while that session is connected: after a disconnect
// or a new session, reads go to the server (and fail while it is away, as
// a read would), and entries are read again.
//
// A node that does not exist is cached too, with an exists-watch: the
// usual answer for an unbound account. At most max entries are kept
// (watches cost the server memory until they fire); past that, reads go
// to the server.
//
// Locks: mu guards entries; a leaf, never held across a ZooKeeper call;
// Event takes it on go-zookeeper's event loop, so it is held only briefly.
type Cache struct {
	max int

	mu      sync.Mutex
	entries map[string]*cached
	hits    uint64
	misses  uint64
}

type cached struct {
	ready  chan struct{} // closed when loaded
	sid    int64         // the session it was read in
	exists bool
	data   []byte
	stat   *zk.Stat
	err    error
}

// NewCache returns a cache of at most max nodes (0: 100,000).
func NewCache(max int) *Cache {
	if max <= 0 {
		max = 100_000
	}
	return &Cache{max: max, entries: map[string]*cached{}}
}

// Event forgets the node of a watch event. For SessionConfig.OnWatch; it
// never blocks.
func (c *Cache) Event(ev zk.Event) {
	if ev.Path == "" {
		return
	}
	c.mu.Lock()
	delete(c.entries, ev.Path)
	c.mu.Unlock()
}

// Stats returns how many Gets were answered from the cache and how many
// read the server.
func (c *Cache) Stats() (hits, misses uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits, c.misses
}

// Get reads path through s (whose OnWatch is c.Event): its data and stat,
// or exists false. Concurrent Gets of a path not cached share one read.
func (c *Cache) Get(ctx context.Context, s *Session, path string) (data []byte, stat *zk.Stat, exists bool, err error) {
	for {
		if s.State() != zk.StateHasSession {
			data, stat, err = s.Get(ctx, path)
			if errors.Is(err, zk.ErrNoNode) {
				return nil, nil, false, nil
			}
			return data, stat, err == nil, err
		}
		sid := s.SessionID()
		c.mu.Lock()
		e := c.entries[path]
		if e != nil && e.sid != sid {
			delete(c.entries, path)
			e = nil
		}
		if e != nil {
			c.hits++
			c.mu.Unlock()
			select {
			case <-e.ready:
			case <-ctx.Done():
				return nil, nil, false, context.Cause(ctx)
			}
			if e.err != nil {
				continue // its loader failed; try again (a read of our own)
			}
			return e.data, e.stat, e.exists, nil
		}
		c.misses++
		if len(c.entries) >= c.max {
			c.mu.Unlock()
			return c.read(ctx, s, path)
		}
		e = &cached{ready: make(chan struct{}), sid: sid}
		c.entries[path] = e
		c.mu.Unlock()
		e.data, e.stat, e.exists, e.err = c.readW(ctx, s, path)
		if e.err != nil {
			c.mu.Lock()
			if c.entries[path] == e {
				delete(c.entries, path)
			}
			c.mu.Unlock()
		}
		close(e.ready)
		return e.data, e.stat, e.exists, e.err
	}
}

// read reads path without a watch.
func (c *Cache) read(ctx context.Context, s *Session, path string) ([]byte, *zk.Stat, bool, error) {
	data, stat, err := s.Get(ctx, path)
	if errors.Is(err, zk.ErrNoNode) {
		return nil, nil, false, nil
	}
	return data, stat, err == nil, err
}

// readW reads path and sets a watch: a data watch on a node that exists,
// an exists-watch on one that does not (GetW sets none then).
func (c *Cache) readW(ctx context.Context, s *Session, path string) ([]byte, *zk.Stat, bool, error) {
	for {
		data, stat, _, err := s.GetW(ctx, path)
		if err == nil {
			return data, stat, true, nil
		}
		if !errors.Is(err, zk.ErrNoNode) {
			return nil, nil, false, err
		}
		ok, err := Do(ctx, func() (bool, error) {
			ok, _, _, err := s.Conn.ExistsW(path)
			return ok, err
		})
		if err != nil {
			return nil, nil, false, err
		}
		if !ok {
			return nil, nil, false, nil
		}
		// Made between the two reads: read it again (its creation fired
		// the exists-watch, and Event dropped nothing yet cached).
	}
}
