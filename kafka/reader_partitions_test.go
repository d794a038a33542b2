package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/protocol"
)

// foreignTopic creates topic with n partitions through a raw admin client,
// as another implementation's manager would.
func foreignTopic(t *testing.T, ctx context.Context, env *testenv.Env, topic string, n int) {
	t.Helper()
	res, err := env.Admin(t).CreateTopics(ctx, []ckafka.TopicSpecification{{Topic: topic, NumPartitions: n, ReplicationFactor: 1}},
		ckafka.SetAdminOperationTimeout(30*time.Second))
	if err != nil || res[0].Error.Code() != ckafka.ErrNoError {
		t.Fatalf("create %s: %v %v", topic, err, res)
	}
}

// produceTo writes "p<partition>-<i>" from alice to partition of topic with
// a raw producer, for i in [from, to).
func produceTo(t *testing.T, env *testenv.Env, topic string, partition int32, from, to int) {
	t.Helper()
	p, err := ckafka.NewProducer(&ckafka.ConfigMap{"bootstrap.servers": env.Kafka, "acks": "all"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	done := make(chan ckafka.Event, to-from)
	for i := from; i < to; i++ {
		if err := p.Produce(&ckafka.Message{TopicPartition: ckafka.TopicPartition{Topic: &topic, Partition: partition},
			Key: []byte("alice"), Value: []byte(fmt.Sprintf("p%d-%d", partition, i))}, done); err != nil {
			t.Fatal(err)
		}
	}
	for i := from; i < to; i++ {
		if m := (<-done).(*ckafka.Message); m.TopicPartition.Error != nil {
			t.Fatalf("produce to %v: %v", m.TopicPartition, m.TopicPartition.Error)
		}
	}
}

// reader is what OpenReader returns.
type reader interface {
	Next(ctx context.Context) (protocol.Message, error)
}

// readN reads n messages and checks that each partition's come in order,
// each saying its partition and offset.
func readN(t *testing.T, ctx context.Context, r reader, n int) map[int32][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	got := map[int32][]string{}
	for i := range n {
		m, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("after %d of %d messages (%v): %v", i, n, got, err)
		}
		want := fmt.Sprintf("p%d-%d", m.Partition, m.Offset)
		if m.From != "alice" || m.Text != want {
			t.Fatalf("message %+v: want %q from alice (partition %d, offset %d)", m, want, m.Partition, m.Offset)
		}
		got[m.Partition] = append(got[m.Partition], m.Text)
	}
	return got
}

// TestReaderEveryPartition: on a topic another implementation made with
// two partitions, the bounds, the committed position and the reader cover
// both partitions, in order within each.
func TestReaderEveryPartition(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	topic, group := env.Prefix+"bob", env.Prefix+"bob"
	k, ctx := clients(t, env)
	foreignTopic(t, ctx, env, topic, 2)
	produceTo(t, env, topic, 0, 0, 3)
	produceTo(t, env, topic, 1, 0, 2)
	if low, high, err := k.Bounds(ctx, topic); err != nil || fmt.Sprint(low, high) != "map[0:0 1:0] map[0:3 1:2]" {
		t.Fatalf("bounds = %v, %v, %v", low, high, err)
	}
	r, err := k.OpenReader(ctx, group, topic)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(readN(t, ctx, r, 5)); got != "map[0:[p0-0 p0-1 p0-2] 1:[p1-0 p1-1]]" {
		t.Fatalf("read %s", got)
	}
	r.Close()
	if err := k.Commit(ctx, group, topic, protocol.Position{0: 3, 1: 1}); err != nil {
		t.Fatal(err)
	}
	if pos, err := k.Committed(ctx, group, topic); err != nil || fmt.Sprint(pos) != "map[0:3 1:1]" {
		t.Fatalf("committed = %v, %v", pos, err)
	}
	// A new reader starts at the committed position of each partition.
	produceTo(t, env, topic, 0, 3, 4)
	r, err = k.OpenReader(ctx, group, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := fmt.Sprint(readN(t, ctx, r, 2)); got != "map[0:[p0-3] 1:[p1-1]]" {
		t.Fatalf("read after the commit %s", got)
	}
}

// TestReaderNewPartitions: partitions added to a topic are read, from their
// beginning, by a reader that is open (at its next look) and by one opened
// later.
func TestReaderNewPartitions(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	topic, group := env.Prefix+"bob", env.Prefix+"bob"
	k, ctx := clients(t, env, topic)
	k.SetPartitionCheck(200 * time.Millisecond)
	r, err := k.OpenReader(ctx, group, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	produceTo(t, env, topic, 0, 0, 1)
	if got := fmt.Sprint(readN(t, ctx, r, 1)); got != "map[0:[p0-0]]" {
		t.Fatalf("read %s", got)
	}
	res, err := env.Admin(t).CreatePartitions(ctx, []ckafka.PartitionsSpecification{{Topic: topic, IncreaseTo: 3}},
		ckafka.SetAdminOperationTimeout(30*time.Second))
	if err != nil || res[0].Error.Code() != ckafka.ErrNoError {
		t.Fatalf("add partitions: %v %v", err, res)
	}
	produceTo(t, env, topic, 1, 0, 2)
	produceTo(t, env, topic, 2, 0, 1)
	if got := fmt.Sprint(readN(t, ctx, r, 3)); got != "map[1:[p1-0 p1-1] 2:[p2-0]]" {
		t.Fatalf("read after adding partitions %s", got)
	}
}

// TestReaderNoTopic: a reader of a topic that does not exist fails at once
// with ErrNoTopic, instead of waiting for records that never come.
func TestReaderNoTopic(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	k, ctx := clients(t, env)
	if _, err := k.OpenReader(ctx, env.Prefix+"nobody", env.Prefix+"nobody"); !errors.Is(err, protocol.ErrNoTopic) {
		t.Fatalf("reader of a missing topic: %v, want ErrNoTopic", err)
	}
}

// TestReaderTopicMadeMeanwhile: a reader opened while its topic is still
// unknown to the broker asked (made a moment ago: the broker's metadata
// lags) waits for it a little instead of failing. Before, `zkchat read
// --follow` right after a user's first time online could exit with "topic
// does not exist" (found by the fault suite, 1 run in 4).
func TestReaderTopicMadeMeanwhile(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	k, ctx := clients(t, env)
	topic := env.Prefix + "late"
	type opened struct {
		r   interface{ Close() }
		err error
	}
	res := make(chan opened, 1)
	go func() {
		r, err := k.OpenReader(ctx, topic, topic)
		res <- opened{r, err}
	}()
	time.Sleep(time.Second)
	foreignTopic(t, ctx, env, topic, 1)
	o := <-res
	if o.err != nil {
		t.Fatalf("reader of a topic made 1 s later: %v", o.err)
	}
	o.r.Close()
}
