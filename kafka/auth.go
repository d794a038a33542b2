package kafka

// Kafka SASL (optional). Without credentials the clients connect as before
// (PLAINTEXT, whatever the broker allows anonymously). With them every
// client of the process (producer, admin, consumer; the manager's admin too)
// authenticates with SASL/SCRAM as one principal, zkchat's, which the
// brokers allow, by PREFIXED ACLs, to use only the topics and consumer groups
// that start with the installation's prefix (ACLs). With the manager's
// per-user principals on, a CLI worker authenticates instead as its user's
// own principal (protocol/principal.go), which UserACLs keep to the user's
// own topic and group; the manager then needs ProvisionerACLs too.

import (
	"fmt"
	"os"
	"strings"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/zkchat/zkchat/internal/secret"
	"github.com/zkchat/zkchat/protocol"
)

// Environment variables of the Kafka credentials. As for ZooKeeper, never
// the command line.
const (
	// EnvAuth holds "user:password" for SASL.
	EnvAuth = "ZKCHAT_KAFKA_AUTH"
	// EnvAuthFile names a file holding "user:password" (mode 0600).
	EnvAuthFile = "ZKCHAT_KAFKA_AUTH_FILE"
	// EnvSASLMechanism is the SASL mechanism; default SCRAM-SHA-256.
	EnvSASLMechanism = "ZKCHAT_KAFKA_SASL_MECHANISM"
	// EnvSecurityProtocol is librdkafka's security.protocol with
	// credentials; default SASL_PLAINTEXT (SASL_SSL for TLS).
	EnvSecurityProtocol = "ZKCHAT_KAFKA_SECURITY_PROTOCOL"
)

// Auth is a SASL credential for Kafka. Like Auth, it never prints its
// password (String, GoString, LogValue).
type Auth struct {
	protocol.Auth
	Mechanism        string // "": SCRAM-SHA-256
	SecurityProtocol string // "": SASL_PLAINTEXT
}

// AuthFromEnv returns the Kafka credentials of ZKCHAT_KAFKA_AUTH, or of
// the file ZKCHAT_KAFKA_AUTH_FILE names (file, if not "", overrides both),
// with the mechanism and security protocol of their variables. nil, nil:
// none configured.
func AuthFromEnv(file string) (*Auth, error) {
	if file == "" {
		file = os.Getenv(EnvAuthFile)
	}
	var line string
	switch {
	case file != "":
		s, err := secret.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("Kafka credentials: %w", err)
		}
		line = s
	case os.Getenv(EnvAuth) != "":
		line = os.Getenv(EnvAuth)
	default:
		return nil, nil
	}
	a, err := protocol.ParseAuth(line)
	if err != nil {
		return nil, fmt.Errorf("Kafka credentials: %s", strings.TrimPrefix(err.Error(), "ZooKeeper credentials: "))
	}
	return &Auth{Auth: *a, Mechanism: os.Getenv(EnvSASLMechanism),
		SecurityProtocol: os.Getenv(EnvSecurityProtocol)}, nil
}

// Properties are the librdkafka properties that make a client authenticate.
// nil for a nil receiver.
func (a *Auth) Properties() map[string]string {
	if a == nil {
		return nil
	}
	mech, proto := a.Mechanism, a.SecurityProtocol
	if mech == "" {
		mech = "SCRAM-SHA-256"
	}
	if proto == "" {
		proto = "SASL_PLAINTEXT"
	}
	return map[string]string{
		"security.protocol": proto,
		"sasl.mechanisms":   mech,
		"sasl.username":     a.User,
		"sasl.password":     a.Password,
	}
}

// String hides the password.
func (a Auth) String() string { return "sasl:" + a.User + ":<hidden>" }

// GoString hides the password.
func (a Auth) GoString() string { return a.String() }

// ACLs are the ACL bindings zkchat's principal (e.g. "User:zkchat")
// needs on a cluster with an authorizer: every operation on the topics and
// consumer groups whose names start with the topic prefix (PREFIXED; every
// topic and group with an empty prefix), and on the group the shared
// reader names (it never joins it, but librdkafka wants one). Nothing else:
// a topic outside the prefix is refused.
func ACLs(principal string, t protocol.Topics) ckafka.ACLBindings {
	bind := func(rt ckafka.ResourceType, name string, pt ckafka.ResourcePatternType) ckafka.ACLBinding {
		return ckafka.ACLBinding{Type: rt, Name: name, ResourcePatternType: pt,
			Principal: principal, Host: "*", Operation: ckafka.ACLOperationAll,
			PermissionType: ckafka.ACLPermissionTypeAllow}
	}
	name, pt := t.Prefix, ckafka.ResourcePatternTypePrefixed
	if name == "" {
		name, pt = "*", ckafka.ResourcePatternTypeLiteral
	}
	return ckafka.ACLBindings{
		bind(ckafka.ResourceTopic, name, pt),
		bind(ckafka.ResourceGroup, name, pt),
		bind(ckafka.ResourceGroup, sharedReaderGroup, ckafka.ResourcePatternTypeLiteral),
	}
}

// UserACLs are the ACL bindings of id's own principal (per-user
// principals): READ on id's topic and on id's group, both LITERAL (a
// PREFIXED one would also match the ids that extend id), and WRITE on the
// user topics (PREFIXED on the topic prefix; every topic with an empty
// prefix), which sending to anyone needs. READ and WRITE imply DESCRIBE
// (metadata, offsets); WRITE on a topic also allows an idempotent producer
// (Kafka 2.8 and later need no IDEMPOTENT_WRITE on the cluster). What they
// leave open: the principal can see every user topic's metadata and
// watermarks (how many records, not what they say), and write any key.
func UserACLs(principal, id string, t protocol.Topics) ckafka.ACLBindings {
	bind := func(rt ckafka.ResourceType, name string, pt ckafka.ResourcePatternType, op ckafka.ACLOperation) ckafka.ACLBinding {
		return ckafka.ACLBinding{Type: rt, Name: name, ResourcePatternType: pt,
			Principal: principal, Host: "*", Operation: op, PermissionType: ckafka.ACLPermissionTypeAllow}
	}
	all, pt := t.Prefix, ckafka.ResourcePatternTypePrefixed
	if all == "" {
		all, pt = "*", ckafka.ResourcePatternTypeLiteral
	}
	return ckafka.ACLBindings{
		bind(ckafka.ResourceTopic, t.Topic(id), ckafka.ResourcePatternTypeLiteral, ckafka.ACLOperationRead),
		bind(ckafka.ResourceGroup, t.Group(id), ckafka.ResourcePatternTypeLiteral, ckafka.ACLOperationRead),
		bind(ckafka.ResourceTopic, all, pt, ckafka.ACLOperationWrite),
	}
}

// ProvisionerACLs are what a manager with per-user principals needs on top
// of ACLs: ALTER on the cluster, to create and delete SCRAM credentials and
// ACLs. Kafka has nothing narrower: a principal that may create ACLs may
// grant itself anything, so it is as strong as a super user. Give it only
// to the managers' credential.
func ProvisionerACLs(principal string) ckafka.ACLBindings {
	return ckafka.ACLBindings{{Type: ckafka.ResourceBroker, Name: "kafka-cluster",
		ResourcePatternType: ckafka.ResourcePatternTypeLiteral, Principal: principal, Host: "*",
		Operation: ckafka.ACLOperationAlter, PermissionType: ckafka.ACLPermissionTypeAllow}}
}

// SCRAMMechanism is a's SASL mechanism when it is a SCRAM one (the
// mechanism per-user credentials are made with), and an error otherwise.
func (a *Auth) SCRAMMechanism() (string, error) {
	mech := "SCRAM-SHA-256"
	if a != nil && a.Mechanism != "" {
		mech = strings.ToUpper(a.Mechanism)
	}
	if _, err := ckafka.ScramMechanismFromString(mech); err != nil {
		return "", fmt.Errorf("Kafka SASL mechanism %q: per-user principals need SCRAM-SHA-256 or SCRAM-SHA-512", mech)
	}
	return mech, nil
}
