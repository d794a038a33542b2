package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/kafka"
	"github.com/zkchat/zkchat/manager"
	"github.com/zkchat/zkchat/protocol"
)

// TestCLIUserKafkaPrincipals: with a manager giving users Kafka principals
// of their own, a CLI user with only ZooKeeper credentials (no
// ZKCHAT_KAFKA_AUTH) reads through Kafka SASL as their own principal;
// kafka-acls --user-principals grants the manager what it needs.
func TestCLIUserKafkaPrincipals(t *testing.T) {
	addr, dir, _ := testenv.PrivateServerEnv(t, "kafka", "ZKCHAT_KAFKA_PORT",
		fmt.Sprintf("ZKCHAT_KAFKA_CONTROLLER_PORT=%d", testenv.FreePort(t)), "ZKCHAT_KAFKA_SASL=1")
	adminFile := filepath.Join(dir, "kafka", "sasl", "admin.auth")
	zkchatKafka, err := kafka.AuthFromEnv(filepath.Join(dir, "kafka", "sasl", "zkchat.auth"))
	if err != nil || zkchatKafka == nil {
		t.Fatalf("zkchat's Kafka credentials: %v", err)
	}
	admin, _ := kafka.AuthFromEnv(adminFile)
	env := testenv.New(t)
	env.Kafka = addr
	env.KafkaExtra = admin.Properties()
	zkAdmin := &protocol.Auth{User: "zkchat", Password: "cli-adm-" + testenv.Tag() + testenv.Tag()}
	env.CleanupAuth = zkAdmin.User + ":" + zkAdmin.Password
	t.Setenv(kafka.EnvAuth, "")
	t.Setenv(kafka.EnvAuthFile, "")

	out, errOut, code := zc(t, env, nil, "--kafka-auth-file", adminFile, "kafka-acls",
		"--principal", "User:"+zkchatKafka.User, "--user-principals")
	if code != 0 || !strings.Contains(out, "ALTER on the cluster") {
		t.Fatalf("kafka-acls: exit %d: %s %s", code, out, errOut)
	}
	m, err := manager.New(manager.Config{ZooKeeper: env.ZooKeeper, Kafka: addr, ZKAuth: zkAdmin, KafkaAuth: zkchatKafka,
		UserKafkaPrincipals: true, Topics: protocol.Topics{Prefix: env.Prefix}, Logger: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; m.Close() })
	testenv.WaitFor(t, 15*time.Second, "manager leads", m.Leading)

	t.Setenv(protocol.EnvZKAuth, "alice:cli-alice-"+testenv.Tag())
	if out, errOut, code := zc(t, env, nil, "register", "alice"); code != 0 {
		t.Fatalf("register alice: exit %d: %s %s", code, out, errOut)
	}
	// No Kafka credentials given: the CLI uses alice's own principal.
	if out, errOut, code := zc(t, env, nil, "--timeout", "20s", "read", "alice"); code != 0 {
		t.Fatalf("read alice with her own Kafka principal: exit %d: %q %q", code, out, errOut)
	}
}
