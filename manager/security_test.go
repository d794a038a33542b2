package manager_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/zkchat/zkchat/client"
	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/kafka"
	"github.com/zkchat/zkchat/manager"
	"github.com/zkchat/zkchat/protocol"
)

// saslKafka starts a private Kafka with ZKCHAT_KAFKA_SASL=1 and returns its
// address and the credentials internal/servers generated for its super user
// and for zkchat's principal.
func saslKafka(t *testing.T) (addr string, admin, zkchat *kafka.Auth) {
	t.Helper()
	addr, dir, _ := testenv.PrivateServerEnv(t, "kafka", "ZKCHAT_KAFKA_PORT",
		fmt.Sprintf("ZKCHAT_KAFKA_CONTROLLER_PORT=%d", testenv.FreePort(t)), "ZKCHAT_KAFKA_SASL=1")
	read := func(user string) *kafka.Auth {
		a, err := kafka.AuthFromEnv(filepath.Join(dir, "kafka", "sasl", user+".auth"))
		if err != nil || a == nil {
			t.Fatalf("credentials of %s: %v", user, err)
		}
		return a
	}
	return addr, read("admin"), read("zkchat")
}

// TestSecurityEndToEnd runs the whole flow with ZooKeeper ACLs and Kafka
// SASL/SCRAM + ACLs on a private Kafka: register, online, send, read. It
// checks that zkchat's Kafka principal is refused a topic outside its
// prefix, that wrong or missing Kafka credentials fail with a clear error,
// and that no secret appears in the log output: every logger (manager,
// workers, go-zookeeper's and librdkafka's lines routed through slog, with
// librdkafka's debug contexts on) writes at debug level into one buffer
// that is searched for each password.
func TestSecurityEndToEnd(t *testing.T) {
	kafkaAddr, kafkaAdmin, kafkaZkchat := saslKafka(t)
	env := testenv.New(t)
	env.Kafka = kafkaAddr
	env.KafkaExtra = kafkaAdmin.Properties() // for the cleanup
	zkAdmin := &protocol.Auth{User: "zkchat", Password: "zk-adm-" + testenv.Tag() + testenv.Tag()}
	env.CleanupAuth = zkAdmin.User + ":" + zkAdmin.Password
	aliceAuth := &protocol.Auth{User: "alice", Password: "zk-alice-" + testenv.Tag()}
	bobAuth := &protocol.Auth{User: "bob", Password: "zk-bob-" + testenv.Tag()}
	wrongPassword := "wrong-" + testenv.Tag() + testenv.Tag()
	secrets := map[string]string{
		"ZooKeeper admin": zkAdmin.Password, "alice": aliceAuth.Password, "bob": bobAuth.Password,
		"Kafka admin": kafkaAdmin.Password, "Kafka zkchat": kafkaZkchat.Password, "wrong Kafka": wrongPassword,
	}
	var logs testenv.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// librdkafka's own debug output, configuration dump included.
	debug := map[string]string{"debug": "generic,broker,security,protocol,conf,admin,metadata"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// zkchat's Kafka principal gets its ACLs, from the super user.
	superAdmin, err := kafka.NewAdmin(kafka.Config{Brokers: kafkaAddr, Auth: kafkaAdmin, Logger: log}, "zkchat-test-super")
	if err != nil {
		t.Fatal(err)
	}
	defer superAdmin.Close()
	if err := superAdmin.GrantACLs(ctx, "User:"+kafkaZkchat.User, protocol.Topics{Prefix: env.Prefix}); err != nil {
		t.Fatal(err)
	}

	m, err := manager.New(manager.Config{
		ZooKeeper: env.ZooKeeper, Kafka: kafkaAddr, KafkaAuth: kafkaZkchat, KafkaExtra: debug,
		Topics: protocol.Topics{Prefix: env.Prefix}, Name: "m1", SessionTimeout: 4 * time.Second,
		ZKAuth: zkAdmin, Logger: log.With("test_manager", "m1"),
	})
	if err != nil {
		t.Fatal(err)
	}
	mctx, mcancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(mctx) }()
	defer func() { mcancel(); <-done; m.Close() }()
	waitLeader(t, m)

	k, err := kafka.New(kafka.Config{Brokers: kafkaAddr, Topics: protocol.Topics{Prefix: env.Prefix},
		Auth: kafkaZkchat, Extra: debug, Logger: log.With("kafka", "workers")})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	worker := func(id string, auth *protocol.Auth) *client.Worker {
		w, err := client.New(id, client.Config{ZooKeeper: env.ZooKeeper, Kafka: k,
			RequestTimeout: 20 * time.Second, SessionTimeout: 4 * time.Second, Auth: auth,
			Logger: log.With("test_worker", id)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Close)
		return w
	}
	alice, bob := worker("alice", aliceAuth), worker("bob", bobAuth)
	start := time.Now()
	for _, w := range []*client.Worker{alice, bob} {
		if _, err := w.Register(ctx); err != nil {
			t.Fatal(err)
		}
		if err := w.GoOnline(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		if err := alice.SendMessage(ctx, "bob", fmt.Sprintf("secret-free message %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	if n, err := bob.ReadMessages(ctx, func(msg protocol.Message) error {
		got = append(got, msg.Text)
		return nil
	}); err != nil || n != 10 {
		t.Fatalf("read: n=%d err=%v", n, err)
	}
	t.Logf("SASL + ACLs: 2 registered, online, 10 messages sent and read in %s", time.Since(start).Round(time.Millisecond))

	// zkchat's principal may not create a topic outside its prefix.
	zcfg := ckafka.ConfigMap{"bootstrap.servers": kafkaAddr}
	for k, v := range kafkaZkchat.Properties() {
		zcfg[k] = v
	}
	za, err := ckafka.NewAdminClient(&zcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer za.Close()
	res, err := za.CreateTopics(ctx, []ckafka.TopicSpecification{{Topic: "outside-" + testenv.Tag(), NumPartitions: 1, ReplicationFactor: 1}})
	if err != nil || len(res) != 1 || res[0].Error.Code() != ckafka.ErrTopicAuthorizationFailed {
		t.Errorf("topic outside the prefix: %v %v, want %v", res, err, ckafka.ErrTopicAuthorizationFailed)
	}
	res, err = za.CreateTopics(ctx, []ckafka.TopicSpecification{{Topic: env.Prefix + "inside", NumPartitions: 1, ReplicationFactor: 1}})
	if err != nil || len(res) != 1 || res[0].Error.Code() != ckafka.ErrNoError {
		t.Errorf("topic inside the prefix: %v %v", res, err)
	}

	// Wrong and missing credentials: a clear error, soon.
	for _, c := range []struct {
		name string
		auth *kafka.Auth
		want string
	}{
		{"wrong password", &kafka.Auth{Auth: protocol.Auth{User: kafkaZkchat.User, Password: wrongPassword}}, "refused the credentials"},
		// PLAINTEXT to a SASL listener: the broker drops the connection.
		{"no credentials", nil, "if the brokers require SASL, set ZKCHAT_KAFKA_AUTH"},
	} {
		bad, err := kafka.New(kafka.Config{Brokers: kafkaAddr, Topics: protocol.Topics{Prefix: env.Prefix},
			Auth: c.auth, Extra: debug, Logger: log.With("kafka", c.name)})
		if err != nil {
			t.Fatal(err)
		}
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		ok, err := bad.TopicExists(cctx, env.Prefix+"bob")
		ccancel()
		bad.Close()
		t.Logf("%s: TopicExists = %v, %v", c.name, ok, err)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: TopicExists = %v, %v; want an error mentioning %q", c.name, ok, err, c.want)
		}
	}

	alice.Close()
	bob.Close()
	out := logs.String()
	for what, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("the %s password appears in the logs", what)
		}
	}
	// ZKCHAT_TEST_DUMP_LOGS=FILE keeps the searched logs for a look.
	if p := os.Getenv("ZKCHAT_TEST_DUMP_LOGS"); p != "" {
		_ = os.WriteFile(p, []byte(out), 0o600)
	}
	t.Logf("searched %d log lines (%d bytes) for %d secrets", strings.Count(out, "\n"), len(out), len(secrets))
}
