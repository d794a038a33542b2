package protocol

// ZooKeeper ACL rules (optional). Without credentials every node is created
// with the open ACL world:anyone ALL, as the spec's tree always was. With
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
//
// These are rules only: the zookeeper package applies them to a session.
// ACL has the field layout of go-zookeeper's zk.ACL, so the adapter converts
// with a plain type conversion, and this package needs no client library.

import (
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// ACL is one ZooKeeper ACL entry: perms granted to Scheme:ID.
type ACL struct {
	Perms  int32
	Scheme string
	ID     string
}

// ZooKeeper's permission bits (the wire protocol's values).
const (
	PermRead   int32 = 1 << 0
	PermWrite  int32 = 1 << 1
	PermCreate int32 = 1 << 2
	PermDelete int32 = 1 << 3
	PermAdmin  int32 = 1 << 4
	PermAll    int32 = 0x1f
)

// WorldACL grants perms to everybody (world:anyone).
func WorldACL(perms int32) []ACL { return []ACL{{perms, "world", "anyone"}} }

// CreatorACL grants perms to the identity of the session that creates the
// node (ZooKeeper's "auth" scheme: it fills in the session's own identity).
func CreatorACL(perms int32) []ACL { return []ACL{{perms, "auth", ""}} }

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

// ID is the digest identity ZooKeeper gives a session that authenticated
// with a: "user:base64(sha1(user:password))". It is what ACLs name.
func (a *Auth) ID() string {
	sum := sha1.Sum([]byte(a.User + ":" + a.Password))
	return a.User + ":" + base64.StdEncoding.EncodeToString(sum[:])
}

// ACL is one entry granting perms to a's identity.
func (a *Auth) ACL(perms int32) ACL {
	return ACL{Perms: perms, Scheme: "digest", ID: a.ID()}
}

// Bytes is the credential as ZooKeeper's AddAuth takes it.
func (a *Auth) Bytes() []byte { return []byte(a.User + ":" + a.Password) }

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

// PersistentACL is the ACL of a persistent node of the tree in ACL mode.
func (p Paths) PersistentACL(node string, admin *Auth) []ACL {
	world := PermRead
	switch node {
	case p.EnrollRequests(), p.QuitRequests():
		world |= PermCreate | PermDelete
	case p.Online():
		world |= PermCreate
	}
	return []ACL{admin.ACL(PermAll), {Perms: world, Scheme: "world", ID: "anyone"}}
}

// InTree reports whether node is the chroot or below it (not one of the
// chroot's ancestors, which other installations may share).
func (p Paths) InTree(node string) bool {
	return p.root == "" || node == p.root || strings.HasPrefix(node, p.root+"/")
}

// Admins are the digest identities with ADMIN permission in acl: zkchat's
// own principal when the tree is locked down, none when it is open.
func Admins(acl []ACL) []string {
	var out []string
	for _, e := range acl {
		if e.Scheme == "digest" && e.Perms&PermAdmin != 0 {
			out = append(out, e.ID)
		}
	}
	return out
}

// AdminData is the data of a locked persistent node: the admin's identity.
func AdminData(admin *Auth) []byte { return []byte(admin.ID() + "\n") }

// ParseAdminData reads the admin identities a locked node's data names, one
// "user:hash" a line.
func ParseAdminData(data []byte) []string {
	var admins []string
	for _, line := range strings.Split(string(data), "\n") {
		if u, h, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && u != "" && h != "" {
			admins = append(admins, u+":"+h)
		}
	}
	return admins
}

// RequestIdentity decides who made a request or online node for id, from
// its ACL and its data and ACL versions. It returns the digest identity
// ("id:hash"), or "" when the node was made by one of the admins (who may
// act for any id). It fails with an error satisfying ErrNotTouched while the
// node's data version is 0 (wait for the touch), and wraps ErrIdentity when
// the node must be refused: its ACL was changed after creation, someone
// other than the admins and the id may write it, or it names no identity of
// the id.
func RequestIdentity(acl []ACL, version, aversion int32, id string, admins []string) (string, error) {
	if aversion != 0 {
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
		if e.Perms&PermWrite == 0 {
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
	if version == 0 {
		return "", errNotTouched
	}
	return ident, nil
}

// Binding is the digest identity bound to a registered id: the entry of the
// registry node's ACL that names the id's user ("" if none: registered by
// the admin, or in an open tree).
func Binding(acl []ACL, id string) string {
	for _, e := range acl {
		if e.Scheme == "digest" && DigestUser(e.ID) == id && e.Perms&PermAdmin == 0 {
			return e.ID
		}
	}
	return ""
}
