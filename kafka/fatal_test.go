package kafka_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/kafka"
	"github.com/zkchat/zkchat/protocol"
)

// TestProducerReplacedAfterFatalError: librdkafka raises a fatal error in
// the shared producer (as an idempotence failure does). Such a producer
// refuses every record for good; the Kafka client must put a new one in
// its place, so sends work again without a restart, and say so in the log.
func TestProducerReplacedAfterFatalError(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	var logs testenv.Buffer
	k, err := kafka.New(kafka.Config{Brokers: env.Kafka,
		Topics: protocol.Topics{Prefix: env.Prefix}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	topic := env.Prefix + "fatal"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := env.Admin(t).CreateTopics(ctx, []ckafka.TopicSpecification{{Topic: topic, NumPartitions: 1, ReplicationFactor: 1}})
	if err != nil || res[0].Error.Code() != ckafka.ErrNoError {
		t.Fatalf("create %s: %v %v", topic, err, res)
	}
	if err := k.WaitTopic(ctx, topic); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Produce(ctx, topic, []byte("a"), []byte("before")); err != nil {
		t.Fatalf("produce before: %v", err)
	}

	// Records in flight when it happens: each sender gets an answer (ack,
	// or an error that says the outcome is unknown), none waits for ever
	// for a delivery report the replaced producer dropped.
	const inFlight = 200
	answers := make(chan error, inFlight)
	for i := 0; i < inFlight; i++ {
		go func() {
			_, err := k.Produce(context.Background(), topic, []byte("a"), []byte("in flight"))
			answers <- err
		}()
	}
	k.InjectFatalError(topic)
	var acked, unknown int
	for i := 0; i < inFlight; i++ {
		select {
		case err := <-answers:
			switch {
			case err == nil:
				acked++
			case errors.Is(err, protocol.ErrOutcomeUnknown), strings.Contains(err.Error(), "Fatal"):
				unknown++
			default:
				t.Errorf("in-flight send: unclear error %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%d of %d in-flight sends still waiting 20 s after a fatal producer error", inFlight-i, inFlight)
		}
	}
	t.Logf("in flight at the fatal error: %d acked, %d failed (outcome unknown or refused as fatal)", acked, unknown)
	// The first send after it may fail (it raced the replacement) and then
	// says so; within a few seconds sends work again.
	var failed []error
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := k.Produce(ctx, topic, []byte("a"), []byte("after"))
		if err == nil {
			break
		}
		failed = append(failed, err)
		if time.Now().After(deadline) {
			t.Fatalf("sends still fail 20 s after a fatal producer error: %v\nlog:\n%s", failed, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("sends after the fatal error: %d failed first: %v", len(failed), failed)
	for _, e := range failed {
		if !strings.Contains(e.Error(), "failed for good") && !strings.Contains(e.Error(), "Fatal") {
			t.Errorf("unclear error after a fatal producer error: %v", e)
		}
	}
	if !strings.Contains(logs.String(), "replaced by a new producer") {
		t.Errorf("no log line about the replacement:\n%s", logs.String())
	}
}
