package manager_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/client"
	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/kafka"
	"github.com/zkchat/zkchat/manager"
	"github.com/zkchat/zkchat/protocol"
	"github.com/zkchat/zkchat/zookeeper"
)

// fetchAs reads topic from its beginning as auth, with a consumer of group
// assigned (never joined) as zkchat's readers are, and returns the code the
// brokers answered: ErrNoError once a record came, the authorization error
// if they refused.
func fetchAs(t *testing.T, addr string, auth *kafka.Auth, group, topic string) ckafka.ErrorCode {
	t.Helper()
	cfg := ckafka.ConfigMap{"bootstrap.servers": addr, "group.id": group, "enable.auto.commit": false}
	for k, v := range auth.Properties() {
		cfg[k] = v
	}
	c, err := ckafka.NewConsumer(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Assign([]ckafka.TopicPartition{{Topic: &topic, Partition: 0, Offset: ckafka.OffsetBeginning}}); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); {
		switch e := c.Poll(200).(type) {
		case *ckafka.Message:
			if e.TopicPartition.Error != nil {
				var ke ckafka.Error
				if errors.As(e.TopicPartition.Error, &ke) {
					return ke.Code()
				}
			}
			return ckafka.ErrNoError
		case ckafka.Error:
			t.Logf("fetch %s as %s: %v", topic, auth.User, e)
			if e.Code() == ckafka.ErrTopicAuthorizationFailed || e.Code() == ckafka.ErrGroupAuthorizationFailed {
				return e.Code()
			}
		}
	}
	return ckafka.ErrTimedOut
}

// kafkaCode is the Kafka error code err carries (ErrNoError for nil).
func kafkaCode(err error) ckafka.ErrorCode {
	var ke ckafka.Error
	if errors.As(err, &ke) {
		return ke.Code()
	}
	if err != nil {
		return ckafka.ErrUnknown
	}
	return ckafka.ErrNoError
}

// TestUserKafkaPrincipals: with Kafka SASL and ZooKeeper ACLs on, a CLI
// user's Kafka credential may read only the user's own topic and commit
// only the user's own group.
func TestUserKafkaPrincipals(t *testing.T) {
	kafkaAddr, kafkaAdmin, kafkaZkchat := saslKafka(t)
	env := testenv.New(t)
	env.Kafka = kafkaAddr
	env.KafkaExtra = kafkaAdmin.Properties()
	zkAdmin := &protocol.Auth{User: "zkchat", Password: "zk-adm-" + testenv.Tag() + testenv.Tag()}
	env.CleanupAuth = zkAdmin.User + ":" + zkAdmin.Password
	aliceAuth := &protocol.Auth{User: "alice", Password: "zk-alice-" + testenv.Tag()}
	bobAuth := &protocol.Auth{User: "bob", Password: "zk-bob-" + testenv.Tag()}
	topics := protocol.Topics{Prefix: env.Prefix}
	log := testenv.Logger(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	superAdmin, err := kafka.NewAdmin(kafka.Config{Brokers: kafkaAddr, Auth: kafkaAdmin, Logger: log}, "zkchat-test-super")
	if err != nil {
		t.Fatal(err)
	}
	defer superAdmin.Close()
	if err := superAdmin.GrantACLs(ctx, "User:"+kafkaZkchat.User, topics); err != nil {
		t.Fatal(err)
	}
	if err := superAdmin.CreateACLs(ctx, "User:"+kafkaZkchat.User, kafka.ProvisionerACLs("User:"+kafkaZkchat.User)); err != nil {
		t.Fatal(err)
	}
	mcfg := manager.Config{
		ZooKeeper: env.ZooKeeper, Kafka: kafkaAddr, KafkaAuth: kafkaZkchat, Topics: topics, Name: "m1",
		SessionTimeout: 4 * time.Second, ZKAuth: zkAdmin, Logger: log.With("test_manager", "m1"),
		UserKafkaPrincipals: true,
	}
	// Refused loudly without both kinds of credentials, or as a principal
	// named like a user's.
	for name, bad := range map[string]func(c *manager.Config){
		"no ZooKeeper ACLs": func(c *manager.Config) { c.ZKAuth = nil },
		"no Kafka SASL":     func(c *manager.Config) { c.KafkaAuth = nil },
		"reserved Kafka user": func(c *manager.Config) {
			c.KafkaAuth = &kafka.Auth{Auth: protocol.Auth{User: protocol.KafkaUserPrefix + "x", Password: "pw"}}
		},
		"not a SCRAM mechanism": func(c *manager.Config) { c.KafkaAuth = &kafka.Auth{Auth: kafkaZkchat.Auth, Mechanism: "PLAIN"} },
	} {
		c := mcfg
		bad(&c)
		if bm, err := manager.New(c); err == nil {
			bm.Close()
			t.Errorf("%s: manager.New accepted per-user principals", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	m, err := manager.New(mcfg)
	if err != nil {
		t.Fatal(err)
	}
	mctx, mcancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(mctx) }()
	defer func() { mcancel(); <-done; m.Close() }()
	waitLeader(t, m)

	// userKafka is the Kafka credential a CLI worker of id uses: its own,
	// read from its credential node as the user (cmd/zkchat does the
	// same), with its own group as the reader's group.id. Before per-user
	// principals it was zkchat's own, as for every zkchat process.
	userKafka := func(id string, zauth *protocol.Auth) (*kafka.Auth, string) {
		t.Helper()
		cred, err := readCredential(ctx, env.ZooKeeper, zauth, id)
		if err != nil {
			t.Fatalf("credential of %s: %v", id, err)
		}
		return &kafka.Auth{Auth: protocol.Auth{User: cred.User, Password: cred.Password}, Mechanism: cred.Mechanism},
			topics.Group(id)
	}
	// worker is a CLI worker of id: registering needs no Kafka (as
	// `zkchat register`), the rest uses userKafka.
	worker := func(id string, zauth *protocol.Auth, withKafka bool) *client.Worker {
		var k *kafka.Clients
		if withKafka {
			ka, group := userKafka(id, zauth)
			var err error
			k, err = kafka.New(kafka.Config{Brokers: kafkaAddr, Topics: topics, Auth: ka, ReaderGroup: group,
				Logger: log.With("kafka", id)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(k.Close)
		}
		w, err := client.New(id, client.Config{ZooKeeper: env.ZooKeeper, Kafka: k,
			RequestTimeout: 20 * time.Second, SessionTimeout: 4 * time.Second, Auth: zauth,
			Logger: log.With("test_worker", id)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Close)
		return w
	}
	for _, c := range []struct {
		id   string
		auth *protocol.Auth
	}{{"alice", aliceAuth}, {"bob", bobAuth}} {
		w := worker(c.id, c.auth, false)
		if _, err := w.Register(ctx); err != nil {
			t.Fatalf("register %s: %v", c.id, err)
		}
		w.Close()
	}
	// The credential node: readable by its user only (and zkchat).
	paths, _ := protocol.ConnectPaths(env.ZooKeeper)
	if _, err := readCredential(ctx, env.ZooKeeper, aliceAuth, "bob"); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("alice reads bob's credential node: %v, want %v", err, zk.ErrNoAuth)
	}
	if _, err := readCredential(ctx, env.ZooKeeper, nil, "bob"); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("an anonymous client reads bob's credential node: %v, want %v", err, zk.ErrNoAuth)
	}
	// A listing of /registry shows ids only.
	if ids, err := m.GetRegisteredUsers(ctx); err != nil || strings.Join(ids, ",") != "alice,bob" {
		t.Errorf("registered users: %v %v", ids, err)
	}
	aliceCred, _ := userKafka("alice", aliceAuth)
	alice, bob := worker("alice", aliceAuth, true), worker("bob", bobAuth, true)
	for _, w := range []*client.Worker{alice, bob} {
		if err := w.GoOnline(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := alice.SendMessage(ctx, "bob", "hi bob"); err != nil {
		t.Fatal(err)
	}
	if err := bob.SendMessage(ctx, "alice", "hi alice"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		w    *client.Worker
		want string
	}{{alice, "bob: hi alice"}, {bob, "alice: hi bob"}} {
		var got []string
		if n, err := c.w.ReadMessages(ctx, func(msg protocol.Message) error {
			got = append(got, msg.String())
			return nil
		}); err != nil || n != 1 || got[0] != c.want {
			t.Fatalf("%s read: n=%d err=%v got %q, want %q", c.w.ID(), n, err, got, c.want)
		}
	}

	// alice's credential: her own topic yes, bob's topic and group no.
	aliceKafka, aliceGroup := userKafka("alice", aliceAuth)
	if code := fetchAs(t, kafkaAddr, aliceKafka, aliceGroup, topics.Topic("alice")); code != ckafka.ErrNoError {
		t.Errorf("alice reads her own topic: %v", code)
	}
	if code := fetchAs(t, kafkaAddr, aliceKafka, aliceGroup, topics.Topic("bob")); code != ckafka.ErrTopicAuthorizationFailed {
		t.Errorf("alice reads bob's topic: %v, want %v", code, ckafka.ErrTopicAuthorizationFailed)
	}
	ak, err := kafka.New(kafka.Config{Brokers: kafkaAddr, Topics: topics, Auth: aliceKafka, ReaderGroup: aliceGroup, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	err = ak.Commit(ctx, topics.Group("bob"), topics.Topic("bob"), protocol.Position{0: 0})
	if code := kafkaCode(err); code != ckafka.ErrGroupAuthorizationFailed {
		t.Errorf("alice commits bob's group: %v (%v), want %v", code, err, ckafka.ErrGroupAuthorizationFailed)
	}
	ak.Close()

	// Registering again (2) keeps the credential; another "alice" (another
	// password) gets no credential and no access to hers.
	if st, err := alice.Register(ctx); err != nil || st != protocol.StatusAlready {
		t.Errorf("alice registers again: %v %v", st, err)
	}
	if again, _ := userKafka("alice", aliceAuth); again.Password != aliceCred.Password {
		t.Errorf("registering again changed alice's credential")
	}
	if code := fetchAs(t, kafkaAddr, aliceCred, topics.Group("alice"), topics.Topic("alice")); code != ckafka.ErrNoError {
		t.Errorf("alice reads her own topic after registering again: %v", code)
	}

	// After alice's quit her credential no longer authenticates, and its
	// node went with her registry node.
	alice.GoOffline()
	if st, err := alice.Quit(ctx); err != nil || st != protocol.StatusDone {
		t.Fatalf("alice quits: %v %v", st, err)
	}
	c := env.Conn(t)
	if exists(t, c, paths.KafkaCredential("alice")) || exists(t, c, paths.Registered("alice")) {
		t.Errorf("alice's registry or credential node left after her quit")
	}
	gone, err := kafka.New(kafka.Config{Brokers: kafkaAddr, Topics: topics, Auth: aliceCred, ReaderGroup: topics.Group("alice"), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer gone.Close()
	cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
	defer ccancel()
	if ok, err := gone.TopicExists(cctx, topics.Topic("bob")); !errors.Is(err, protocol.ErrKafkaAuth) {
		t.Errorf("alice's credential after her quit: TopicExists = %v, %v; want %v", ok, err, protocol.ErrKafkaAuth)
	}
	// bob's is untouched.
	bobCred, _ := userKafka("bob", bobAuth)
	if code := fetchAs(t, kafkaAddr, bobCred, topics.Group("bob"), topics.Topic("bob")); code != ckafka.ErrNoError {
		t.Errorf("bob reads his own topic after alice's quit: %v", code)
	}
}

// readCredential reads id's Kafka credential node as auth (nil: no
// credentials), as cmd/zkchat's workers do.
func readCredential(ctx context.Context, connect string, auth *protocol.Auth, id string) (protocol.KafkaCredential, error) {
	s, err := zookeeper.Dial(ctx, zookeeper.SessionConfig{Connect: connect, Auth: auth})
	if err != nil {
		return protocol.KafkaCredential{}, err
	}
	defer s.Close()
	data, _, err := s.Get(ctx, s.Paths.KafkaCredential(id))
	if err != nil {
		return protocol.KafkaCredential{}, err
	}
	return protocol.ParseKafkaCredential(data)
}
