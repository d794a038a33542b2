package protocol

// Kafka SASL (optional). Without credentials the clients connect as before
// (PLAINTEXT, whatever the broker allows anonymously). With them every
// client of the process (producer, admin, consumer; the manager's admin too)
// authenticates with SASL/SCRAM as one principal, zkchat's, which the
// brokers allow, by PREFIXED ACLs, to use only the topics and consumer groups
// that start with the installation's prefix (KafkaACLs). Kafka knows no
// per-user identities: it is the ZooKeeper side (acl.go) that keeps a
// worker to its own id.

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Environment variables of the Kafka credentials. As for ZooKeeper, never
// the command line.
const (
	// EnvKafkaAuth holds "user:password" for SASL.
	EnvKafkaAuth = "ZKCHAT_KAFKA_AUTH"
	// EnvKafkaAuthFile names a file holding "user:password" (mode 0600).
	EnvKafkaAuthFile = "ZKCHAT_KAFKA_AUTH_FILE"
	// EnvKafkaSASLMechanism is the SASL mechanism; default SCRAM-SHA-256.
	EnvKafkaSASLMechanism = "ZKCHAT_KAFKA_SASL_MECHANISM"
	// EnvKafkaSecurityProtocol is librdkafka's security.protocol with
	// credentials; default SASL_PLAINTEXT (SASL_SSL for TLS).
	EnvKafkaSecurityProtocol = "ZKCHAT_KAFKA_SECURITY_PROTOCOL"
)

// KafkaAuth is a SASL credential for Kafka. Like Auth, it never prints its
// password (String, GoString, LogValue).
type KafkaAuth struct {
	Auth
	Mechanism        string // "": SCRAM-SHA-256
	SecurityProtocol string // "": SASL_PLAINTEXT
}

// KafkaAuthFromEnv returns the Kafka credentials of ZKCHAT_KAFKA_AUTH, or of
// the file ZKCHAT_KAFKA_AUTH_FILE names (file, if not "", overrides both),
// with the mechanism and security protocol of their variables. nil, nil:
// none configured.
func KafkaAuthFromEnv(file string) (*KafkaAuth, error) {
	if file == "" {
		file = os.Getenv(EnvKafkaAuthFile)
	}
	var line string
	switch {
	case file != "":
		s, err := ReadSecretFile(file)
		if err != nil {
			return nil, fmt.Errorf("Kafka credentials: %w", err)
		}
		line = s
	case os.Getenv(EnvKafkaAuth) != "":
		line = os.Getenv(EnvKafkaAuth)
	default:
		return nil, nil
	}
	a, err := ParseAuth(line)
	if err != nil {
		return nil, fmt.Errorf("Kafka credentials: %s", strings.TrimPrefix(err.Error(), "ZooKeeper credentials: "))
	}
	return &KafkaAuth{Auth: *a, Mechanism: os.Getenv(EnvKafkaSASLMechanism),
		SecurityProtocol: os.Getenv(EnvKafkaSecurityProtocol)}, nil
}

// Properties are the librdkafka properties that make a client authenticate.
// nil for a nil receiver.
func (a *KafkaAuth) Properties() map[string]string {
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
func (a KafkaAuth) String() string { return "sasl:" + a.User + ":<hidden>" }

// GoString hides the password.
func (a KafkaAuth) GoString() string { return a.String() }

// KafkaACLs are the ACL bindings zkchat's principal (e.g. "User:zkchat")
// needs on a cluster with an authorizer: every operation on the topics and
// consumer groups whose names start with the topic prefix (PREFIXED; every
// topic and group with an empty prefix), and on the group the shared
// reader names (it never joins it, but librdkafka wants one). Nothing else:
// a topic outside the prefix is refused.
func KafkaACLs(principal string, t Topics) kafka.ACLBindings {
	bind := func(rt kafka.ResourceType, name string, pt kafka.ResourcePatternType) kafka.ACLBinding {
		return kafka.ACLBinding{Type: rt, Name: name, ResourcePatternType: pt,
			Principal: principal, Host: "*", Operation: kafka.ACLOperationAll,
			PermissionType: kafka.ACLPermissionTypeAllow}
	}
	name, pt := t.Prefix, kafka.ResourcePatternTypePrefixed
	if name == "" {
		name, pt = "*", kafka.ResourcePatternTypeLiteral
	}
	return kafka.ACLBindings{
		bind(kafka.ResourceTopic, name, pt),
		bind(kafka.ResourceGroup, name, pt),
		bind(kafka.ResourceGroup, sharedReaderGroup, kafka.ResourcePatternTypeLiteral),
	}
}

// GrantKafkaACLs creates KafkaACLs with admin, a client authenticated as a
// principal allowed to alter ACLs (a super user).
func GrantKafkaACLs(ctx context.Context, admin *kafka.AdminClient, principal string, t Topics) error {
	res, err := admin.CreateACLs(ctx, KafkaACLs(principal, t))
	if err != nil {
		return fmt.Errorf("create Kafka ACLs for %s: %w", principal, err)
	}
	for _, r := range res {
		if r.Error.Code() != kafka.ErrNoError {
			return fmt.Errorf("create Kafka ACLs for %s: %w", principal, r.Error)
		}
	}
	return nil
}
