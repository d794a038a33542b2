package client_test

// A user's topic made by another implementation with more than one
// partition (issue 9): zkchat reads every partition and commits the
// position of each under the user's group.

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/zkchat/zkchat/client"
	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/protocol"
)

// foreignTopic creates topic with partitions partitions through a raw admin
// client, the way another implementation's manager would.
func foreignTopic(t *testing.T, env *testenv.Env, topic string, partitions int) {
	t.Helper()
	ctx := ctxT(t)
	res, err := env.Admin(t).CreateTopics(ctx, []ckafka.TopicSpecification{{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1}},
		ckafka.SetAdminOperationTimeout(30*time.Second))
	if err != nil || res[0].Error.Code() != ckafka.ErrNoError {
		t.Fatalf("create %s: %v %v", topic, err, res)
	}
}

// produceTo writes key=from, value=text records to the given partitions of
// topic with a raw producer (n records to each, in order), and returns the
// texts written per partition.
func produceTo(t *testing.T, env *testenv.Env, topic, from string, n int, partitions ...int32) map[int32][]string {
	t.Helper()
	p, err := ckafka.NewProducer(&ckafka.ConfigMap{"bootstrap.servers": env.Kafka, "acks": "all"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	sent := map[int32][]string{}
	done := make(chan ckafka.Event, n*len(partitions))
	for i := range n {
		for _, part := range partitions {
			text := fmt.Sprintf("p%d-%d", part, i)
			if err := p.Produce(&ckafka.Message{TopicPartition: ckafka.TopicPartition{Topic: &topic, Partition: part},
				Key: []byte(from), Value: []byte(text)}, done); err != nil {
				t.Fatal(err)
			}
			sent[part] = append(sent[part], text)
		}
	}
	for range n * len(partitions) {
		m := (<-done).(*ckafka.Message)
		if m.TopicPartition.Error != nil {
			t.Fatalf("produce to %v: %v", m.TopicPartition, m.TopicPartition.Error)
		}
	}
	return sent
}

// checkPerPartitionOrder fails t unless got holds exactly the texts of
// sent, each partition's in the order it was written.
func checkPerPartitionOrder(t *testing.T, got []protocol.Message, sent map[int32][]string) {
	t.Helper()
	byPart := map[int32][]string{}
	total := 0
	for _, m := range got {
		var part int32
		var i int
		if _, err := fmt.Sscanf(m.Text, "p%d-%d", &part, &i); err != nil {
			t.Fatalf("unexpected message %+v", m)
		}
		if m.Partition != part {
			t.Errorf("message %q says partition %d", m.Text, m.Partition)
		}
		byPart[part] = append(byPart[part], m.Text)
	}
	for part, texts := range sent {
		total += len(texts)
		if fmt.Sprint(byPart[part]) != fmt.Sprint(texts) {
			t.Errorf("partition %d: read %q, want %q", part, byPart[part], texts)
		}
	}
	if len(got) != total {
		texts := make([]string, 0, len(got))
		for _, m := range got {
			texts = append(texts, m.Text)
		}
		sort.Strings(texts)
		t.Fatalf("read %d messages %q, want %d", len(got), texts, total)
	}
}

// TestReadEveryPartition: `zkchat read` (ReadMessages) on a user's topic
// that another implementation made with two partitions returns the
// messages of both, and a second read returns none: the position of each
// partition was committed under the user's group.
func TestReadEveryPartition(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	foreignTopic(t, env, env.Prefix+"bob", 2)
	leadingManager(t, env)
	k := env.NewKafka(t)
	ctx := ctxT(t)
	mustRegister(t, env, "bob")
	bob := env.NewWorker(t, "bob", k)
	if err := bob.GoOnline(ctx); err != nil {
		t.Fatal(err)
	}
	sent := produceTo(t, env, env.Prefix+"bob", "alice", 3, 0, 1)
	var got []protocol.Message
	n, err := bob.ReadMessages(ctx, func(m protocol.Message) error {
		if m.From != "alice" || m.To != "bob" {
			t.Errorf("message %+v: want from alice to bob", m)
		}
		got = append(got, m)
		return nil
	})
	if err != nil || n != len(got) {
		t.Fatalf("read = %d, %v (handed %d)", n, err, len(got))
	}
	checkPerPartitionOrder(t, got, sent)
	n, err = bob.ReadMessages(ctx, func(m protocol.Message) error {
		t.Errorf("read again: %+v", m)
		return nil
	})
	if err != nil || n != 0 {
		t.Fatalf("second read = %d, %v; want nothing unread", n, err)
	}
	// More on partition 1 only: the next read has exactly those.
	more := produceTo(t, env, env.Prefix+"bob", "alice", 2, 1)
	got = nil
	if _, err := bob.ReadMessages(ctx, func(m protocol.Message) error { got = append(got, m); return nil }); err != nil {
		t.Fatal(err)
	}
	checkPerPartitionOrder(t, got, more)
}

// TestFollowEveryPartition: the read the IRC bridge delivers with
// (FollowMessagesWith and its BeforeCommit proof) sees the messages of
// every partition of a two-partition topic, and commits both positions.
func TestFollowEveryPartition(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	foreignTopic(t, env, env.Prefix+"bob", 2)
	leadingManager(t, env)
	k := env.NewKafka(t)
	ctx := ctxT(t)
	mustRegister(t, env, "bob")
	bob := env.NewWorker(t, "bob", k)
	if err := bob.GoOnline(ctx); err != nil {
		t.Fatal(err)
	}
	sent := produceTo(t, env, env.Prefix+"bob", "alice", 3, 0, 1)

	var mu sync.Mutex
	var got []protocol.Message
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- bob.FollowMessagesWith(fctx, client.ReadOptions{BeforeCommit: func(context.Context) error { return nil }},
			func(m protocol.Message) error {
				mu.Lock()
				got = append(got, m)
				mu.Unlock()
				return nil
			})
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 6 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // nothing more may come
	stop()
	if err := <-done; err != nil {
		t.Fatalf("follow: %v", err)
	}
	checkPerPartitionOrder(t, got, sent)
	n, err := bob.ReadMessages(ctx, func(m protocol.Message) error {
		t.Errorf("read after the follow: %+v", m)
		return nil
	})
	if err != nil || n != 0 {
		t.Fatalf("read after the follow = %d, %v; want nothing unread", n, err)
	}
}
