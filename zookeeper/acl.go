package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/internal/secret"
	"github.com/zkchat/zkchat/protocol"
)

// AuthFromEnv returns the ZooKeeper credentials of ZKCHAT_ZK_AUTH, or of the
// file ZKCHAT_ZK_AUTH_FILE names (file, if not "", overrides the variable:
// it comes from a --zk-auth-file flag). nil, nil: none configured, open ACLs.
func AuthFromEnv(file string) (*protocol.Auth, error) {
	if file == "" {
		file = os.Getenv(protocol.EnvZKAuthFile)
	}
	if file != "" {
		s, err := secret.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("ZooKeeper credentials: %w", err)
		}
		a, err := protocol.ParseAuth(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		return a, nil
	}
	if s := os.Getenv(protocol.EnvZKAuth); s != "" {
		a, err := protocol.ParseAuth(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", protocol.EnvZKAuth, err)
		}
		return a, nil
	}
	return nil, nil
}

// ToZK converts the contract's ACL entries to go-zookeeper's.
func ToZK(acl []protocol.ACL) []zk.ACL {
	out := make([]zk.ACL, len(acl))
	for i, e := range acl {
		out[i] = zk.ACL(e)
	}
	return out
}

// FromZK converts go-zookeeper's ACL entries to the contract's.
func FromZK(acl []zk.ACL) []protocol.ACL {
	out := make([]protocol.ACL, len(acl))
	for i, e := range acl {
		out[i] = protocol.ACL(e)
	}
	return out
}

// NodeACL returns the ACL for a node this session creates under parent: the
// open ACL when the tree is open; in ACL mode the creator ("auth": ZooKeeper
// puts in the session's own digest identity) ALL, the tree's admins (named
// in parent's data) ALL and world READ. locked tells which; a locked node
// must be touched (Touch) right after it is created.
func (s *Session) NodeACL(ctx context.Context, parent string) (acl []zk.ACL, locked bool, err error) {
	g, err := s.aclAndData(ctx, parent)
	if err != nil {
		return nil, false, err
	}
	if len(protocol.Admins(FromZK(g.acl))) == 0 {
		return zk.WorldACL(zk.PermAll), false, nil
	}
	if s.auth == nil {
		return nil, true, fmt.Errorf("%s is protected by ZooKeeper ACLs: %w", parent, protocol.ErrNoAuth)
	}
	admins := protocol.ParseAdminData(g.data)
	if len(admins) == 0 {
		return nil, true, fmt.Errorf("%s is protected by ZooKeeper ACLs but its data names no admin identity (run `zkchat init` with zkchat's credentials)", parent)
	}
	acl = zk.AuthACL(zk.PermAll)
	for _, id := range admins {
		if id != s.auth.ID() {
			acl = append(acl, zk.ACL{Perms: zk.PermAll, Scheme: "digest", ID: id})
		}
	}
	return append(acl, zk.ACL{Perms: zk.PermRead, Scheme: "world", ID: "anyone"}), true, nil
}

// nodeACLData is a node's ACL and data.
type nodeACLData struct {
	acl  []zk.ACL
	data []byte
}

// aclAndData reads node's ACL and data (NodeACL, and lockDown in
// session.go: one function, so the two cannot come to read the tree
// differently).
func (s *Session) aclAndData(ctx context.Context, node string) (nodeACLData, error) {
	g, err := Do(ctx, func() (nodeACLData, error) {
		a, _, err := s.Conn.GetACL(node)
		if err != nil {
			return nodeACLData{}, err
		}
		d, _, err := s.Conn.Get(node)
		return nodeACLData{a, d}, err
	})
	if err != nil {
		return nodeACLData{}, fmt.Errorf("ACL of %s: %w", node, err)
	}
	return g, nil
}

// Touch writes data to a node just created, at version 0: the proof that the
// node was written by an identity its ACL lets write (see protocol/acl.go).
// A node already at a later version (answered meanwhile, or touched by an
// earlier attempt) is left alone.
func (s *Session) Touch(ctx context.Context, path string, data []byte) error {
	_, err := Do(ctx, func() (*zk.Stat, error) { return s.Conn.Set(path, data, 0) })
	if err != nil && !errors.Is(err, zk.ErrBadVersion) {
		if errors.Is(err, zk.ErrNoAuth) {
			return fmt.Errorf("touch %s: %w (it was created by another identity)", path, protocol.ErrNoAuth)
		}
		return fmt.Errorf("touch %s: %w", path, err)
	}
	return nil
}

// Locked reports whether the session has credentials, so that the nodes it
// creates in the tree are locked down.
func (s *Session) Locked() bool { return s.auth != nil }

// Auth is the session's credentials, nil for none.
func (s *Session) Auth() *protocol.Auth { return s.auth }
