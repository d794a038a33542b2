package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/go-zookeeper/zk"

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
	// Binding reads the account id is bound to, "" for none.
	Binding(ctx context.Context, id string) (string, error)
	// Bind binds id to account, replacing a stale binding.
	Bind(ctx context.Context, id, account string) error
	// Unbind removes id's binding, if any.
	Unbind(ctx context.Context, id string) error
	Close()
}

// onlineMeta is the part of an /online node's metadata the bridge reads:
// which front end made it.
type onlineMeta struct{ Via, Bridge, Channel string }

// zkDirectory is the directory over the bridge's own ZooKeeper session,
// dialled at first use, with large buffers (listings), unlike the users'
// sessions.
//
// Locks: mu guards s; it is held while dialling (so one session is made)
// and taken under no other lock.
type zkDirectory struct {
	cfg zookeeper.SessionConfig

	mu sync.Mutex
	s  *zookeeper.Session
}

func (d *zkDirectory) session(ctx context.Context) (*zookeeper.Session, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.s != nil {
		return d.s, nil
	}
	s, err := zookeeper.Dial(ctx, d.cfg)
	if err != nil {
		return nil, err
	}
	d.s = s
	return s, nil
}

// Close closes the session; Run calls it last.
func (d *zkDirectory) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
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

func (d *zkDirectory) Binding(ctx context.Context, id string) (string, error) {
	data, err := d.get(ctx, func(s *zookeeper.Session) string { return s.Paths.Account(id) })
	if errors.Is(err, zk.ErrNoNode) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("account binding of %s: %w", id, err)
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
