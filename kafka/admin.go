package kafka

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/zkchat/zkchat/protocol"
)

// clientConfig is the librdkafka configuration of one client: base, then
// the credentials' properties and cfg.Extra over it. Every client zkchat
// makes is configured here, so security settings reach all of them.
func clientConfig(cfg Config, base ckafka.ConfigMap) ckafka.ConfigMap {
	c := ckafka.ConfigMap{"bootstrap.servers": cfg.Brokers}
	for k, v := range base {
		c[k] = v
	}
	for _, props := range []map[string]string{cfg.Auth.Properties(), cfg.Extra} {
		for k, v := range props {
			c[k] = v
		}
	}
	return c
}

// producerConfig is clientConfig for a producer: logs to a channel (routed
// to slog) and small Go channels (GoChannelSizes).
func producerConfig(cfg Config, base ckafka.ConfigMap) ckafka.ConfigMap {
	c := ckafka.ConfigMap{"go.logs.channel.enable": true}
	for k, v := range GoChannelSizes {
		c[k] = v
	}
	for k, v := range base {
		c[k] = v
	}
	return clientConfig(cfg, c)
}

// Admin is an admin client with its own connections. It is made from a
// producer that never produces: a bare AdminClient cannot route librdkafka's
// logs (they would go to stderr unformatted); one made from a producer can.
//
// Its goroutines (logs, events, the topic batcher's run) end in Close.
type Admin struct {
	cfg Config
	log *slog.Logger
	p   *ckafka.Producer
	a   *ckafka.AdminClient
	wg  sync.WaitGroup
	// topics batches CreateTopics requests (topicbatch.go).
	topics *topicBatcher

	// warned is, for each topic found with another layout than zkchat's,
	// the partition count last logged (foreignLayout): a user going online
	// many times is one warning, not one each time. Leaf lock.
	warnMu sync.Mutex
	warned map[string]int
	errs   errorCounts // the client errors librdkafka reported
}

// NewAdmin makes an admin client named clientID. It does not wait for the
// brokers.
func NewAdmin(cfg Config, clientID string) (*Admin, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p, err := ckafka.NewProducer(ptr(producerConfig(cfg, ckafka.ConfigMap{"client.id": clientID})))
	if err != nil {
		return nil, fmt.Errorf("kafka admin: %w", err)
	}
	a, err := ckafka.NewAdminClientFromProducer(p)
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("kafka admin: %w", err)
	}
	ad := &Admin{cfg: cfg, log: cfg.Logger, p: p, a: a, topics: newTopicBatcher(a)}
	ad.wg.Add(2)
	go func() {
		defer ad.wg.Done()
		RouteLogs(context.Background(), p.Logs(), ad.log)
	}()
	go func() {
		defer ad.wg.Done()
		// Client-level errors arrive here; an undrained channel grows.
		for ev := range p.Events() {
			if e, ok := ev.(ckafka.Error); ok {
				ad.errs.add(e)
				ad.log.Debug("kafka admin client", "err", e)
			}
		}
	}()
	return ad, nil
}

func ptr[T any](v T) *T { return &v }

// Client is the underlying librdkafka admin client (tools and tests).
func (a *Admin) Client() *ckafka.AdminClient { return a.a }

// Close closes the client and waits for its goroutines.
func (a *Admin) Close() {
	a.topics.close()
	a.a.Close()
	a.p.Close() // closes Events() and Logs(), which ends both goroutines
	a.wg.Wait()
}

// topicTimeout bounds one topic creation or deletion, including the wait
// until every broker knows of it.
const topicTimeout = 30 * time.Second

// TopicSpec says how user topics are made.
type TopicSpec struct {
	ReplicationFactor int               // 0: 1
	Config            map[string]string // topic configs (retention.ms, ...)
}

// CreateTopic creates topic with one partition. A topic that exists
// already is success, whatever its partition count: the readers read every
// partition (reader.go), so a user's topic that another implementation
// made with more partitions is read whole; it is logged once at Warn
// (foreignLayout), since it is not what this manager would have made.
func (a *Admin) CreateTopic(ctx context.Context, topic string, spec TopicSpec) error {
	ctx, cancel := context.WithTimeout(ctx, topicTimeout)
	defer cancel()
	rf := max(spec.ReplicationFactor, 1)
	existed := false
	err := Retry(ctx, func() error {
		// Batched with the other topics asked for meanwhile (topicbatch.go).
		err := a.topics.create(ctx, ckafka.TopicSpecification{
			Topic: topic, NumPartitions: 1, ReplicationFactor: rf, Config: spec.Config,
		})
		if ke, ok := err.(ckafka.Error); ok && ke.Code() == ckafka.ErrTopicAlreadyExists {
			existed = true
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	if existed {
		a.foreignLayout(ctx, topic)
	}
	return nil
}

// foreignLayout logs, once per topic and partition count, a user's topic
// that exists with another partition count than the one zkchat makes.
// It is accepted (every partition is read, in order within each), but the
// operator should know: another implementation shares the cluster, and
// the order of a user's messages across partitions is not kept. A failed
// look is only logged at debug: the topic exists, which is what the
// caller needs.
func (a *Admin) foreignLayout(ctx context.Context, topic string) {
	md, err := a.a.GetMetadata(&topic, false, waitMs(ctx, metadataWait))
	if err != nil {
		a.log.Debug("metadata of an existing topic", "topic", topic, "err", err)
		return
	}
	n := len(md.Topics[topic].Partitions)
	if n == 1 || n == 0 { // zkchat's layout; 0: not known to the broker asked yet
		return
	}
	a.warnMu.Lock()
	seen := a.warned[topic] == n
	if !seen {
		if a.warned == nil {
			a.warned = map[string]int{}
		}
		a.warned[topic] = n
	}
	a.warnMu.Unlock()
	if !seen {
		a.log.Warn("user topic exists with another layout than zkchat's (made by another implementation?); accepted: every partition is read, in order within each",
			"topic", topic, "partitions", n, "zkchat_partitions", 1)
	}
}

// DeleteTopic deletes topic and the committed read position of group, so
// that a user who registers again starts from a new, empty topic. What is
// gone already is success.
func (a *Admin) DeleteTopic(ctx context.Context, topic, group string) error {
	ctx, cancel := context.WithTimeout(ctx, topicTimeout)
	defer cancel()
	err := Retry(ctx, func() error {
		res, err := a.a.DeleteTopics(ctx, []string{topic}, ckafka.SetAdminOperationTimeout(topicTimeout))
		if err != nil {
			return err
		}
		for _, r := range res {
			switch r.Error.Code() {
			case ckafka.ErrNoError, ckafka.ErrUnknownTopicOrPart, ckafka.ErrUnknownTopic:
			default:
				return r.Error
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete topic %s: %w", topic, err)
	}
	err = Retry(ctx, func() error {
		gres, err := a.a.DeleteConsumerGroups(ctx, []string{group})
		if err != nil {
			return err
		}
		for _, r := range gres.ConsumerGroupResults {
			switch r.Error.Code() {
			case ckafka.ErrNoError, ckafka.ErrGroupIDNotFound:
			case ckafka.ErrNonEmptyGroup:
				// Members are subscribed (another implementation's reader
				// uses the group as a subscriber). The group coordinator
				// drops the offsets of a deleted topic itself, and an empty
				// group expires on its own: the quit is complete. Failing
				// here would answer 0 after the topic is gone.
				a.log.Info("consumer group has members; its offsets went with the topic", "group", group, "topic", topic)
			default:
				return r.Error
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete consumer group %s: %w", group, err)
	}
	return nil
}

// GrantACLs creates ACLs(principal, t); a must be authenticated as a
// principal allowed to alter ACLs (a super user).
func (a *Admin) GrantACLs(ctx context.Context, principal string, t protocol.Topics) error {
	return a.CreateACLs(ctx, principal, ACLs(principal, t))
}

// CreateACLs creates bindings, ACLs of principal (named in the error). An
// ACL that exists already is success.
func (a *Admin) CreateACLs(ctx context.Context, principal string, bindings ckafka.ACLBindings) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	err := Retry(ctx, func() error {
		res, err := a.a.CreateACLs(ctx, bindings)
		if err != nil {
			return err
		}
		for _, r := range res {
			if r.Error.Code() != ckafka.ErrNoError {
				return r.Error
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create Kafka ACLs for %s: %w", principal, err)
	}
	return nil
}

// scramIterations is the iteration count of the credentials SetUserPrincipal
// makes (Kafka accepts 4096 to 16384).
const scramIterations = 8192

// SetUserPrincipal creates or replaces the SCRAM credential of user
// (mechanism: SCRAM-SHA-256 or -512) with password, then grants
// "User:"+user the ACLs of id (UserACLs). Running it again is harmless: the credential gets a
// new salt, the ACLs exist. a's principal needs ProvisionerACLs.
func (a *Admin) SetUserPrincipal(ctx context.Context, id, user, password, mechanism string) error {
	acls := UserACLs("User:"+user, id, a.cfg.Topics)
	mech, err := ckafka.ScramMechanismFromString(mechanism)
	if err != nil {
		return fmt.Errorf("SCRAM credential of %s: mechanism %q: %w", user, mechanism, err)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	err = Retry(ctx, func() error {
		res, err := a.a.AlterUserScramCredentials(ctx, []ckafka.UserScramCredentialUpsertion{{User: user,
			ScramCredentialInfo: ckafka.ScramCredentialInfo{Mechanism: mech, Iterations: scramIterations},
			Password:            []byte(password)}}, nil)
		if err != nil {
			return err
		}
		if e, ok := res.Errors[user]; ok && e.Code() != ckafka.ErrNoError {
			return e
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("SCRAM credential of %s: %w", user, err)
	}
	return a.CreateACLs(ctx, "User:"+user, acls)
}

// DeleteUserPrincipal deletes every ACL of "User:"+user, then user's SCRAM
// credential of mechanism: once it returns, the credential no longer
// authenticates (connections made before keep working until they close).
// What is gone already is success.
func (a *Admin) DeleteUserPrincipal(ctx context.Context, user, mechanism string) error {
	mech, err := ckafka.ScramMechanismFromString(mechanism)
	if err != nil {
		return fmt.Errorf("SCRAM credential of %s: mechanism %q: %w", user, mechanism, err)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	err = Retry(ctx, func() error {
		res, err := a.a.DeleteACLs(ctx, ckafka.ACLBindingFilters{{Type: ckafka.ResourceAny,
			ResourcePatternType: ckafka.ResourcePatternTypeAny, Principal: "User:" + user,
			Operation: ckafka.ACLOperationAny, PermissionType: ckafka.ACLPermissionTypeAny}})
		if err != nil {
			return err
		}
		for _, r := range res {
			if r.Error.Code() != ckafka.ErrNoError {
				return r.Error
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete Kafka ACLs of User:%s: %w", user, err)
	}
	err = Retry(ctx, func() error {
		res, err := a.a.AlterUserScramCredentials(ctx, nil,
			[]ckafka.UserScramCredentialDeletion{{User: user, Mechanism: mech}})
		if err != nil {
			return err
		}
		if e, ok := res.Errors[user]; ok && e.Code() != ckafka.ErrNoError && e.Code() != ckafka.ErrResourceNotFound {
			return e
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete SCRAM credential of %s: %w", user, err)
	}
	return nil
}
