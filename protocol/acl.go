package protocol

// ZooKeeper ACLs (optional). Without credentials every node is created with
// the open ACL world:anyone ALL, as the spec's tree always was. With
// credentials (an Auth, ZooKeeper's "digest" scheme) the tree is locked down
// so that only zkchat's own principal (the manager's and the bridge's
// identity, "the admin") may write the registry, and a worker can speak only
// for its own id:
//
//	node                      ACL in ACL mode
//	chroot, /request,         digest admin ALL, world READ
//	/registry, /election,
//	/accounts
//	/request/enroll,          digest admin ALL, world CREATE|READ|DELETE
//	/request/quit             (anyone may file, and withdraw, a request)
//	/online                   digest admin ALL, world CREATE|READ
//	/request/*/<id>,          auth (the creator) ALL, digest admin ALL,
//	/online/<id>              world READ; then "touched" (below)
//	/registry/<id>            digest admin ALL, world READ, and the
//	                          registrant's digest READ: the id's binding
//	/election/<node>          digest admin ALL, world READ
//
// The tree says which mode it is in: a parent whose ACL gives some digest
// identity ADMIN is locked down. A worker reads the parent's ACL and data
// (world READ allows it) before it creates a node: the data of every locked
// persistent node names the admin's digest identity, one per line
// ("zkchat:<base64 sha1>"). It is published there because ZooKeeper shows
// the hashes in an ACL only to a client with ADMIN permission on the node
// (others see "zkchat:x"), and a worker must name the admin in the ACL of
// its request so the manager may answer it. The hash is world-readable, so
// zkchat's principal needs a long random password (a guessable one could be
// found from its SHA-1 offline).
//
// ZooKeeper does not record who created a node, and anyone may create a node
// with any explicit ACL, naming anybody's digest. So a node's ACL proves
// nothing about its creator by itself. Two more rules make it a proof:
//
//   - the creator "touches" the node right after creating it: one SetData
//     at version 0. Only an identity the ACL grants WRITE may do that, so a
//     data version of 1 or more, with the ACL never changed (aversion 0),
//     shows the node was written by one of the identities that may write it;
//   - every entry that grants WRITE must be the admin or a digest identity
//     whose user name is the id (RequestIdentity checks both).
//
// And the id's first registration binds it: /registry/<id> keeps the
// registrant's digest identity (user:hash). A quit or an /online/<id> node
// whose identity is not the bound one is refused, so a second password for
// the same user name is another person. The admin may act for any id (the
// bridge's workers use it).

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/go-zookeeper/zk"
)

// Environment variables that carry credentials. Secrets never come from the
// command line, where every user of the machine can read them (ps, /proc).
const (
	// EnvZKAuth holds "user:password" for ZooKeeper's digest scheme.
	EnvZKAuth = "ZKCHAT_ZK_AUTH"
	// EnvZKAuthFile names a file holding "user:password" (one line; mode
	// 0600 or stricter).
	EnvZKAuthFile = "ZKCHAT_ZK_AUTH_FILE"
)

// Auth is a ZooKeeper digest credential, "user:password". Its String,
// GoString and LogValue hide the password, so printing or logging an Auth
// (or a config holding one) never shows the secret.
type Auth struct {
	User     string
	Password string
}

// ErrNoAuth: ZooKeeper refused a write for lack of permission.
var ErrNoAuth = errors.New("not allowed by the ZooKeeper ACLs (credentials: ZKCHAT_ZK_AUTH or ZKCHAT_ZK_AUTH_FILE)")

// ErrIdentity: a request or online node was not made by the id it names.
var ErrIdentity = errors.New("the node's creator is not the id it names")

// errNotTouched: the node has not been touched yet (data version 0).
var errNotTouched = errors.New("node not touched yet")

// ErrNotTouched reports whether err means that a node's creator has not
// touched it yet: wait for its next data change.
func ErrNotTouched(err error) bool { return errors.Is(err, errNotTouched) }

// ParseAuth reads "user:password". The user may not be empty or contain ':'
// (digest identities are "user:hash"); the password may not be empty. The
// error never quotes the input.
func ParseAuth(s string) (*Auth, error) {
	s = strings.TrimRight(s, "\r\n")
	user, pass, ok := strings.Cut(s, ":")
	if !ok || user == "" || pass == "" {
		return nil, errors.New(`ZooKeeper credentials: want "user:password" with neither empty`)
	}
	if strings.ContainsAny(user, " \t\n") {
		return nil, errors.New("ZooKeeper credentials: white space in the user name")
	}
	return &Auth{User: user, Password: pass}, nil
}

// ReadSecretFile reads a one-line secret file, refusing one that other
// users may read or write (mode bits 077), as ssh refuses a private key.
func ReadSecretFile(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("secret file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("secret file %s: mode %#o lets other users read it; chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("secret file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimRight(line, "\r"), nil
}

// AuthFromEnv returns the ZooKeeper credentials of ZKCHAT_ZK_AUTH, or of the
// file ZKCHAT_ZK_AUTH_FILE names (file, if not "", overrides the variable:
// it comes from a --zk-auth-file flag). nil, nil: none configured, open ACLs.
func AuthFromEnv(file string) (*Auth, error) {
	if file == "" {
		file = os.Getenv(EnvZKAuthFile)
	}
	if file != "" {
		s, err := ReadSecretFile(file)
		if err != nil {
			return nil, fmt.Errorf("ZooKeeper credentials: %w", err)
		}
		a, err := ParseAuth(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		return a, nil
	}
	if s := os.Getenv(EnvZKAuth); s != "" {
		a, err := ParseAuth(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvZKAuth, err)
		}
		return a, nil
	}
	return nil, nil
}

// ID is the digest identity ZooKeeper gives a session that authenticated
// with a: "user:base64(sha1(user:password))". It is what ACLs name.
func (a *Auth) ID() string {
	sum := sha1.Sum([]byte(a.User + ":" + a.Password))
	return a.User + ":" + base64.StdEncoding.EncodeToString(sum[:])
}

// ACL is one entry granting perms to a's identity.
func (a *Auth) ACL(perms int32) zk.ACL {
	return zk.ACL{Perms: perms, Scheme: "digest", ID: a.ID()}
}

func (a *Auth) bytes() []byte { return []byte(a.User + ":" + a.Password) }

// String hides the password.
func (a Auth) String() string { return "digest:" + a.User + ":<hidden>" }

// GoString hides the password (%#v).
func (a Auth) GoString() string { return a.String() }

// LogValue hides the password in slog output.
func (a Auth) LogValue() slog.Value { return slog.StringValue(a.String()) }

// DigestUser is the user part of a digest identity "user:hash".
func DigestUser(id string) string {
	u, _, _ := strings.Cut(id, ":")
	return u
}

// persistentACL is the ACL of a persistent node of the tree in ACL mode.
func (p Paths) persistentACL(node string, admin *Auth) []zk.ACL {
	world := int32(zk.PermRead)
	switch node {
	case p.EnrollRequests(), p.QuitRequests():
		world |= zk.PermCreate | zk.PermDelete
	case p.Online():
		world |= zk.PermCreate
	}
	return []zk.ACL{admin.ACL(zk.PermAll), {Perms: world, Scheme: "world", ID: "anyone"}}
}

// inTree reports whether node is the chroot or below it (not one of the
// chroot's ancestors, which other installations may share).
func (p Paths) inTree(node string) bool {
	return p.root == "" || node == p.root || strings.HasPrefix(node, p.root+"/")
}

// Admins are the digest identities with ADMIN permission in acl: zkchat's
// own principal when the tree is locked down, none when it is open.
func Admins(acl []zk.ACL) []string {
	var out []string
	for _, e := range acl {
		if e.Scheme == "digest" && e.Perms&zk.PermAdmin != 0 {
			out = append(out, e.ID)
		}
	}
	return out
}

// adminData is the data of a locked persistent node: the admin's identity.
func adminData(admin *Auth) []byte { return []byte(admin.ID() + "\n") }

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
	if len(Admins(g.acl)) == 0 {
		return zk.WorldACL(zk.PermAll), false, nil
	}
	if s.auth == nil {
		return nil, true, fmt.Errorf("%s is protected by ZooKeeper ACLs: %w", parent, ErrNoAuth)
	}
	var admins []string
	for _, line := range strings.Split(string(g.data), "\n") {
		if u, h, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && u != "" && h != "" {
			admins = append(admins, u+":"+h)
		}
	}
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

// aclAndData reads node's ACL and data (NodeACL, and lockDown in zk.go:
// one function, so the two cannot come to read the tree differently).
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
// node was written by an identity its ACL lets write (see the top of this
// file). A node already at a later version (answered meanwhile, or touched
// by an earlier attempt) is left alone.
func (s *Session) Touch(ctx context.Context, path string, data []byte) error {
	_, err := Do(ctx, func() (*zk.Stat, error) { return s.Conn.Set(path, data, 0) })
	if err != nil && !errors.Is(err, zk.ErrBadVersion) {
		if errors.Is(err, zk.ErrNoAuth) {
			return fmt.Errorf("touch %s: %w (it was created by another identity)", path, ErrNoAuth)
		}
		return fmt.Errorf("touch %s: %w", path, err)
	}
	return nil
}

// Locked reports whether the session has credentials, so that the nodes it
// creates in the tree are locked down.
func (s *Session) Locked() bool { return s.auth != nil }

// Auth is the session's credentials, nil for none.
func (s *Session) Auth() *Auth { return s.auth }

// RequestIdentity decides who made a request or online node for id, from
// its ACL and stat. It returns the digest identity ("id:hash"), or "" when
// the node was made by one of the admins (who may act for any id). It fails
// with an error satisfying ErrNotTouched while the node's data version is 0
// (wait for the touch), and wraps ErrIdentity when the node must be refused:
// its ACL was changed after creation, someone other than the admins and the
// id may write it, or it names no identity of the id.
func RequestIdentity(acl []zk.ACL, stat *zk.Stat, id string, admins []string) (string, error) {
	if stat.Aversion != 0 {
		return "", fmt.Errorf("%w: its ACL was changed after it was created", ErrIdentity)
	}
	isAdmin := func(x string) bool {
		for _, a := range admins {
			if a == x {
				return true
			}
		}
		return false
	}
	var ident string
	for _, e := range acl {
		if e.Perms&zk.PermWrite == 0 {
			continue
		}
		switch {
		case e.Scheme == "digest" && isAdmin(e.ID):
		case e.Scheme == "digest" && DigestUser(e.ID) == id:
			if ident != "" && ident != e.ID {
				return "", fmt.Errorf("%w: two identities of %s may write it", ErrIdentity, id)
			}
			ident = e.ID
		case e.Scheme == "digest":
			return "", fmt.Errorf("%w: %s may write it", ErrIdentity, DigestUser(e.ID))
		default:
			return "", fmt.Errorf("%w: %s:%s may write it", ErrIdentity, e.Scheme, e.ID)
		}
	}
	if stat.Version == 0 {
		return "", errNotTouched
	}
	return ident, nil
}

// Binding is the digest identity bound to a registered id: the entry of the
// registry node's ACL that names the id's user ("" if none: registered by
// the admin, or in an open tree).
func Binding(acl []zk.ACL, id string) string {
	for _, e := range acl {
		if e.Scheme == "digest" && DigestUser(e.ID) == id && e.Perms&zk.PermAdmin == 0 {
			return e.ID
		}
	}
	return ""
}
