package kafka_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/kafka"
)

// TestCreateTopicForeignLayout: the manager's CreateTopic accepts a user's
// topic that another implementation made with two partitions (zkchat reads
// every partition), and says so once, at Warn, with the partition count.
func TestCreateTopicForeignLayout(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topic := env.Prefix + "bob"
	res, err := env.Admin(t).CreateTopics(ctx, []ckafka.TopicSpecification{{Topic: topic, NumPartitions: 2, ReplicationFactor: 1}},
		ckafka.SetAdminOperationTimeout(30*time.Second))
	if err != nil || res[0].Error.Code() != ckafka.ErrNoError {
		t.Fatalf("create %s: %v %v", topic, err, res)
	}
	// Known to the broker first (its metadata lags the controller's answer
	// on a busy machine), so that the topic exists as the test says.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		md, err := env.Admin(t).GetMetadata(&topic, false, 5000)
		if err == nil && len(md.Topics[topic].Partitions) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not in the metadata: %v", topic, err)
		}
	}
	var logs testenv.Buffer
	a, err := kafka.NewAdmin(kafka.Config{Brokers: env.Kafka, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, "zkchat-test")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for range 3 { // a user going online three times
		if err := a.CreateTopic(ctx, topic, kafka.TopicSpec{}); err != nil {
			t.Fatalf("create over a two-partition topic: %v", err)
		}
	}
	var warns []string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "level=WARN") && strings.Contains(l, topic) {
			warns = append(warns, l)
		}
	}
	if len(warns) != 1 || !strings.Contains(warns[0], "partitions=2") {
		t.Fatalf("warnings about %s = %q; want one, with partitions=2", topic, warns)
	}
	// zkchat's own layout is not worth a warning.
	mine := env.Prefix + "alice"
	if err := a.CreateTopic(ctx, mine, kafka.TopicSpec{}); err != nil {
		t.Fatal(err)
	}
	if err := a.CreateTopic(ctx, mine, kafka.TopicSpec{}); err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, mine) && strings.Contains(l, "level=WARN") {
			t.Fatalf("warning about a one-partition topic: %s", l)
		}
	}
}
