package manager

// Per-user Kafka principals (Config.UserKafkaPrincipals; the contract is in
// protocol/principal.go). The ZooKeeper node /registry/<id>/kafka is the
// source of truth: the Kafka credential is made from it and can always be
// made again from it (registering again does), so every step that writes
// Kafka is idempotent and a manager that dies between Kafka and ZooKeeper
// leaves nothing a later registration or quit cannot put right.

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/protocol"
	"github.com/zkchat/zkchat/zookeeper"
)

// registerWithPrincipal is register for a requester identity ident with
// per-user principals: the Kafka credential of a new id is made (with a new
// random password) before the transaction that creates /registry/<id>, its
// credential node (readable by ident alone) and the answer. An id that is
// registered already goes to registeredAlready. m.ids holds id.
func (m *Manager) registerWithPrincipal(ctx context.Context, s *zookeeper.Session, fence []any, id, ident string, req *zk.SetDataRequest) (protocol.Status, error) {
	ok, _, err := s.Exists(ctx, m.paths.Registered(id))
	if err != nil {
		return protocol.StatusFailed, fmt.Errorf("register %s: %w", id, err)
	}
	if ok {
		return m.registeredAlready(ctx, s, fence, id, ident, req)
	}
	cred, err := m.newKafkaCredential(id)
	if err != nil {
		return protocol.StatusFailed, fmt.Errorf("register %s: %w", id, err)
	}
	if err := m.grantKafkaPrincipal(ctx, id, cred); err != nil {
		return protocol.StatusFailed, fmt.Errorf("register %s: %w", id, err)
	}
	meta := protocol.RegistryData{RegisteredAt: time.Now().UTC().Format(time.RFC3339)}.Marshal()
	ops := []any{
		&zk.CreateRequest{Path: m.paths.Registered(id), Data: meta, Acl: m.registryACL(ident)},
		&zk.CreateRequest{Path: m.paths.KafkaCredential(id), Data: cred.Marshal(),
			Acl: zookeeper.ToZK(protocol.KafkaCredentialACL(m.cfg.ZKAuth, ident))},
	}
	if req != nil {
		ops = append(ops, answer(req, protocol.StatusDone))
	}
	resp, err := multi(ctx, s, fence, ops...)
	if err == nil {
		m.log.Info("Kafka principal made", "id", id, "kafka_user", cred.User)
		return protocol.StatusDone, nil
	}
	i, opErr := failedOp(resp, err)
	switch {
	case i >= 0 && i < len(fence):
		// The credential's password is known to nobody: harmless, and
		// replaced when the next leader answers the request.
		return protocol.StatusFailed, errNotLeader
	case i == len(fence) && errors.Is(opErr, zk.ErrNodeExists):
		// Registered meanwhile by a writer outside this lock (another
		// implementation's manager): the credential just replaced is put
		// back from the node, if there is one.
		return m.registeredAlready(ctx, s, fence, id, ident, req)
	case i == len(fence)+2:
		// Withdrawn: nothing was registered; take the credential back.
		if derr := m.deleteKafkaPrincipal(ctx, id); derr != nil {
			m.log.Warn("register: taking back the Kafka credential of a withdrawn request", "id", id, "err", derr)
		}
		return protocol.StatusFailed, errAnswered
	}
	return protocol.StatusFailed, fmt.Errorf("register %s: %w", id, opErr)
}

// registeredAlready answers req "already registered" (2) for an id with a
// registry node. With a credential node, its Kafka credential is set again
// from it (a repair: a quit or registration cut short may have left Kafka
// behind ZooKeeper). Without one (registered before per-user principals
// were on), a requester that is the id's bound identity gets one, in the
// transaction that answers. m.ids holds id.
func (m *Manager) registeredAlready(ctx context.Context, s *zookeeper.Session, fence []any, id, ident string, req *zk.SetDataRequest) (protocol.Status, error) {
	settle := func() (protocol.Status, error) {
		if req == nil {
			return protocol.StatusAlready, nil
		}
		return m.settle(ctx, s, fence, req, protocol.StatusAlready)
	}
	credPath := m.paths.KafkaCredential(id)
	data, _, err := s.Get(ctx, credPath)
	switch {
	case err == nil:
		cred, perr := protocol.ParseKafkaCredential(data)
		if perr != nil {
			m.log.Warn("register: credential node unusable; left as it is", "path", credPath, "err", perr)
			return settle()
		}
		if err := m.grantKafkaPrincipal(ctx, id, cred); err != nil {
			return protocol.StatusFailed, fmt.Errorf("register %s: %w", id, err)
		}
		return settle()
	case !errors.Is(err, zk.ErrNoNode):
		return protocol.StatusFailed, fmt.Errorf("register %s: %w", id, err)
	}
	binding, err := m.binding(ctx, s, id)
	if err != nil {
		return protocol.StatusFailed, fmt.Errorf("register %s: %w", id, err)
	}
	if binding == "" || binding != ident {
		return settle() // not the id's owner: no credential for them
	}
	cred, err := m.newKafkaCredential(id)
	if err != nil {
		return protocol.StatusFailed, fmt.Errorf("register %s: %w", id, err)
	}
	if err := m.grantKafkaPrincipal(ctx, id, cred); err != nil {
		return protocol.StatusFailed, fmt.Errorf("register %s: %w", id, err)
	}
	ops := []any{&zk.CreateRequest{Path: credPath, Data: cred.Marshal(),
		Acl: zookeeper.ToZK(protocol.KafkaCredentialACL(m.cfg.ZKAuth, binding))}}
	if req != nil {
		ops = append(ops, answer(req, protocol.StatusAlready))
	}
	resp, err := multi(ctx, s, fence, ops...)
	if err == nil {
		m.log.Info("Kafka principal made for a registered id", "id", id, "kafka_user", cred.User)
		return protocol.StatusAlready, nil
	}
	i, opErr := failedOp(resp, err)
	switch {
	case i >= 0 && i < len(fence):
		return protocol.StatusFailed, errNotLeader
	case i == len(fence)+1:
		return protocol.StatusFailed, errAnswered
	}
	return protocol.StatusFailed, fmt.Errorf("register %s: credential node: %w", id, opErr)
}

// newKafkaCredential is a new credential for id: its reserved user name and
// 192 random bits as password.
func (m *Manager) newKafkaCredential(id string) (protocol.KafkaCredential, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return protocol.KafkaCredential{}, fmt.Errorf("password: %w", err)
	}
	return protocol.KafkaCredential{User: m.cfg.Topics.KafkaUser(id),
		Password: base64.RawURLEncoding.EncodeToString(b), Mechanism: m.scram}, nil
}

// grantKafkaPrincipal sets cred in Kafka and grants its principal id's
// ACLs (kafka.UserACLs). Idempotent.
func (m *Manager) grantKafkaPrincipal(ctx context.Context, id string, cred protocol.KafkaCredential) error {
	if cred.User != m.cfg.Topics.KafkaUser(id) {
		// A node the leader did not write: never set the password of
		// another principal from it.
		return fmt.Errorf("%w: user %q is not %s's", protocol.ErrBadKafkaCredential, cred.User, id)
	}
	return m.admin.SetUserPrincipal(ctx, id, cred.User, cred.Password, cred.Mechanism)
}

// deleteKafkaPrincipal deletes the ACLs and SCRAM credential of id's
// principal; what is gone already is success.
func (m *Manager) deleteKafkaPrincipal(ctx context.Context, id string) error {
	mech := m.scram
	if mech == "" {
		mech = "SCRAM-SHA-256" // per-user principals off: the default they were made with
	}
	return m.admin.DeleteUserPrincipal(ctx, m.cfg.Topics.KafkaUser(id), mech)
}

// binding is the digest identity /registry/<id> binds id to ("" for none).
func (m *Manager) binding(ctx context.Context, s *zookeeper.Session, id string) (string, error) {
	acl, err := zookeeper.Do(ctx, func() ([]zk.ACL, error) {
		a, _, err := s.Conn.GetACL(s.Paths.Registered(id))
		return a, err
	})
	if err != nil {
		return "", fmt.Errorf("ACL of %s: %w", s.Paths.Registered(id), err)
	}
	return protocol.Binding(zookeeper.FromZK(acl), id), nil
}

// keyedMutex is a mutex per key, held only while in use: an entry lives
// while someone holds or waits for it.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int // holders and waiters; guarded by keyedMutex.mu
}

// lock locks key and returns its unlock.
func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
