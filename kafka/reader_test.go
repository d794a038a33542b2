package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/kafka"
	"github.com/zkchat/zkchat/protocol"
)

// clients returns the shared clients on env, and creates topics.
func clients(t *testing.T, env *testenv.Env, topics ...string) (*kafka.Clients, context.Context) {
	t.Helper()
	k, err := kafka.New(kafka.Config{Brokers: env.Kafka, Topics: protocol.Topics{Prefix: env.Prefix}, Logger: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	for _, topic := range topics {
		res, err := env.Admin(t).CreateTopics(ctx, []ckafka.TopicSpecification{{Topic: topic, NumPartitions: 1, ReplicationFactor: 1}},
			ckafka.SetAdminOperationTimeout(30*time.Second))
		if err != nil || res[0].Error.Code() != ckafka.ErrNoError {
			t.Fatalf("create %s: %v %v", topic, err, res)
		}
		if err := k.WaitTopic(ctx, topic); err != nil {
			t.Fatal(err)
		}
	}
	return k, ctx
}

// TestReaderStartsAtCommitted: positions are committed under the group
// with the admin API, and a reader starts at the committed one; one reader
// per topic.
func TestReaderStartsAtCommitted(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	topic, group := env.Prefix+"bob", env.Prefix+"bob"
	k, ctx := clients(t, env, topic)
	for i := range 3 {
		if off, err := k.Produce(ctx, topic, []byte("alice"), []byte(fmt.Sprint(i))); err != nil || off != int64(i) {
			t.Fatalf("produce %d = %d, %v", i, off, err)
		}
	}
	if low, high, err := k.Bounds(ctx, topic); err != nil || fmt.Sprint(low, high) != "map[0:0] map[0:3]" {
		t.Fatalf("bounds = %v, %v, %v", low, high, err)
	}
	if n, err := k.Committed(ctx, group, topic); err != nil || len(n) != 0 {
		t.Fatalf("committed before any commit = %v, %v", n, err)
	}
	if err := k.Commit(ctx, group, topic, protocol.Position{0: 2}); err != nil {
		t.Fatal(err)
	}
	if n, err := k.Committed(ctx, group, topic); err != nil || fmt.Sprint(n) != "map[0:2]" {
		t.Fatalf("committed = %v, %v; want 2 on partition 0", n, err)
	}
	r, err := k.OpenReader(ctx, group, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := k.OpenReader(ctx, group, topic); !errors.Is(err, kafka.ErrReaderOpen) {
		t.Fatalf("second reader = %v, want ErrReaderOpen", err)
	}
	m, err := r.Next(ctx)
	if err != nil || m.From != "alice" || m.Text != "2" || m.Offset != 2 {
		t.Fatalf("next = %+v, %v; want alice's 2 at offset 2", m, err)
	}
}

// TestSharedReaderBackpressure: one slow reader does not hold up another on
// the same shared consumer, and loses nothing while its partition is paused.
func TestSharedReaderBackpressure(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	slowTopic, fastTopic := env.Prefix+"slow", env.Prefix+"fast"
	k, ctx := clients(t, env, slowTopic, fastTopic)
	const n = 1000 // four times the reader buffer
	for i := range n {
		if _, err := k.Produce(ctx, slowTopic, []byte("src"), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	slow, err := k.OpenReader(ctx, slowTopic, slowTopic)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	time.Sleep(500 * time.Millisecond) // nobody reads slow: its buffer fills, its partition pauses
	if _, err := k.Produce(ctx, fastTopic, []byte("src"), []byte("hello")); err != nil {
		t.Fatal(err)
	}
	fast, err := k.OpenReader(ctx, fastTopic, fastTopic)
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if m, err := fast.Next(fctx); err != nil || m.Text != "hello" {
		t.Fatalf("fast reader blocked behind the slow one: %+v, %v", m, err)
	}
	for i := range n {
		m, err := slow.Next(ctx)
		if err != nil {
			t.Fatalf("slow reader after %d: %v", i, err)
		}
		if m.Text != fmt.Sprint(i) {
			t.Fatalf("slow reader got %q, want %d", m.Text, i)
		}
	}
}
