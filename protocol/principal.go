package protocol

// Per-user Kafka principals (optional: the manager's UserKafkaPrincipals,
// only with ZooKeeper ACLs and Kafka SASL/SCRAM on). The leader gives each
// id registered by a digest identity a SCRAM credential of its own, whose
// Kafka ACLs let it read only the id's topic and commit only the id's group
// (and write the user topics, which sending needs), and hands the password
// to the user in KafkaCredential(id), a child of /registry/<id> that only
// the id's bound identity (Binding) and zkchat's principal may read.
//
// The child is a grandchild of /registry: a listing of /registry (the
// registered ids) never shows it. A manager that deletes /registry/<id>
// must delete it first (ZooKeeper refuses to delete a node with children).

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// KafkaUserPrefix starts the SCRAM user name of every per-user principal.
// It is reserved: no other principal of the cluster may start with it (the
// manager refuses to run as one), so the credential the leader creates or
// replaces for an id is never zkchat's own or an operator's. Ids cannot
// hold '.', so no id spells the prefix of another.
const KafkaUserPrefix = "zkchat-user."

// KafkaUser is the SCRAM user name of id's principal (its Kafka principal is
// "User:" + KafkaUser(id)): KafkaUserPrefix, the topic prefix, the id. The
// topic prefix keeps installations that share a cluster apart, as it does
// their topics and groups.
func (t Topics) KafkaUser(id string) string { return KafkaUserPrefix + t.Prefix + id }

// kafkaCredentialNode is the name of the credential's node under
// /registry/<id>.
const kafkaCredentialNode = "kafka"

// KafkaCredential is the node holding id's Kafka SCRAM credential.
func (p Paths) KafkaCredential(id string) string {
	return p.Registered(id) + "/" + kafkaCredentialNode
}

// KafkaCredentialACL is the ACL of KafkaCredential(id): zkchat's principal
// ALL and the id's bound digest identity READ. Nobody else may read it, not
// even its ACL's hashes.
func KafkaCredentialACL(admin *Auth, binding string) []ACL {
	return []ACL{admin.ACL(PermAll), {Perms: PermRead, Scheme: "digest", ID: binding}}
}

// KafkaCredential is the data of the credential node: a SCRAM user name,
// its password and mechanism. Its String, GoString and LogValue hide the
// password.
type KafkaCredential struct {
	User      string `json:"user"`
	Password  string `json:"password"`
	Mechanism string `json:"mechanism"` // SCRAM-SHA-256 or SCRAM-SHA-512
}

// ErrBadKafkaCredential: a credential node zkchat cannot use.
var ErrBadKafkaCredential = errors.New("not a Kafka credential node (JSON with user, password and a SCRAM mechanism)")

// Marshal is the node data.
func (c KafkaCredential) Marshal() []byte {
	b, _ := json.Marshal(c) // strings only: cannot fail
	return b
}

// ParseKafkaCredential reads a credential node. The error never quotes the
// data (it holds a password).
func ParseKafkaCredential(data []byte) (KafkaCredential, error) {
	var c KafkaCredential
	if err := json.Unmarshal(data, &c); err != nil {
		return KafkaCredential{}, fmt.Errorf("%w: not JSON", ErrBadKafkaCredential)
	}
	switch {
	case !strings.HasPrefix(c.User, KafkaUserPrefix):
		return KafkaCredential{}, fmt.Errorf("%w: user name not under %q", ErrBadKafkaCredential, KafkaUserPrefix)
	case c.Password == "":
		return KafkaCredential{}, fmt.Errorf("%w: no password", ErrBadKafkaCredential)
	case c.Mechanism != "SCRAM-SHA-256" && c.Mechanism != "SCRAM-SHA-512":
		return KafkaCredential{}, fmt.Errorf("%w: mechanism %.30q", ErrBadKafkaCredential, c.Mechanism)
	}
	return c, nil
}

// String hides the password.
func (c KafkaCredential) String() string { return "scram:" + c.User + ":<hidden>" }

// GoString hides the password (%#v).
func (c KafkaCredential) GoString() string { return c.String() }

// LogValue hides the password in slog output.
func (c KafkaCredential) LogValue() slog.Value { return slog.StringValue(c.String()) }
