package reliability

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/zkchat/zkchat/kafka"
	"github.com/zkchat/zkchat/protocol"
)

// offsetsTopic is Kafka's topic of committed offsets: a group's
// coordinator is the leader of its partition of it.
const offsetsTopic = "__consumer_offsets"

// offsetsPartition is the partition of offsetsTopic that holds group's
// offsets, as Kafka computes it: the absolute value of the group name's
// Java hashCode, modulo the partition count.
func offsetsPartition(group string, partitions int) int32 {
	var h int32
	for _, c := range group { // ASCII names: UTF-16 units are the runes
		h = 31*h + int32(c)
	}
	return int32(int(h&0x7fffffff) % partitions)
}

// TestKafkaCoordinatorMoves: a consumer group's coordinator moves to
// another broker while the one before stays up, as Kafka's preferred
// leader election does (every 5 minutes by default, after any broker
// restart). zkchat's reads and commits of a user's position (the admin
// group calls, under every delivery) must go on at once. Before the fix
// they failed with NOT_COORDINATOR for as long as they were retried:
// librdkafka's per-client coordinator cache kept the old broker, and its
// admin calls never drop it (a bridge's deliveries for two users restarted
// every 17 s and never recovered, TestNetsplit in a CI run).
//
// The group's coordinator is put on a broker that is not its partition's
// preferred leader (stopping the coordinator, if it is the preferred one,
// and reading while it is down), the client reads there, then a preferred
// leader election moves the partition back to its preferred replica.
func TestKafkaCoordinatorMoves(t *testing.T) {
	s := New(t)
	ctx := Ctx(t, 5*time.Minute)
	ad, err := kafka.NewAdmin(kafka.Config{Brokers: s.Env.Kafka, Logger: slog.New(slog.DiscardHandler)}, "zkchat-suite")
	if err != nil {
		t.Fatal(err)
	}
	defer ad.Close()
	a := ad.Client()
	topic, group := s.Topic("coord"), s.Env.Prefix+"coord"
	if err := ad.CreateTopic(ctx, topic, kafka.TopicSpec{ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	k := s.Kafka
	var last int64
	commitRead := func(what string) time.Duration {
		t.Helper()
		start := time.Now()
		last++
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := k.Commit(cctx, group, topic, protocol.Position{0: last}); err != nil {
			t.Fatalf("%s: commit %d: %v (after %s)", what, last, err, time.Since(start).Round(time.Millisecond))
		}
		pos, err := k.Committed(cctx, group, topic)
		if err != nil || pos[0] != last {
			t.Fatalf("%s: read %v %v, want offset %d (after %s)", what, pos, err, last, time.Since(start).Round(time.Millisecond))
		}
		return time.Since(start)
	}
	commitRead("before any move")

	md, err := a.GetMetadata(ptr(offsetsTopic), false, 10000)
	if err != nil {
		t.Fatal(err)
	}
	parts := md.Topics[offsetsTopic].Partitions
	if len(parts) == 0 {
		t.Fatalf("no partitions of %s", offsetsTopic)
	}
	part := offsetsPartition(group, len(parts))
	var preferred int32 = -1
	for _, p := range parts {
		if p.ID == part {
			preferred = p.Replicas[0]
			t.Logf("group %s: %s[%d], replicas %v, leader %d, isr %v", group, offsetsTopic, part, p.Replicas, p.Leader, p.Isrs)
		}
	}
	// The coordinator is the leader of the group's partition, from the
	// metadata: asking the group (DescribeConsumerGroups) would go through
	// this admin client's coordinator cache, stale in the same way.
	coordinator := func() int32 {
		md, err := a.GetMetadata(ptr(offsetsTopic), false, 5000)
		if err != nil {
			return -1
		}
		for _, p := range md.Topics[offsetsTopic].Partitions {
			if p.ID == part && p.Error.Code() == ckafka.ErrNoError {
				return p.Leader
			}
		}
		return -1
	}
	WaitFor(t, time.Minute, "the group's coordinator", func() bool { return coordinator() >= 0 })
	downTook := "not run (the coordinator was not the preferred replica)"
	if c := coordinator(); c == preferred {
		// Off the preferred broker: stop it, and read while it is down,
		// so the client knows the new coordinator; then start it again.
		name := fmt.Sprintf("kafka%d", c)
		s.C.Stop(t, name)
		WaitFor(t, 2*time.Minute, "the coordinator moved off "+name, func() bool { n := coordinator(); return n >= 0 && n != c })
		downTook = commitRead("with " + name + " down").Round(time.Millisecond).String()
		s.C.Start(t, name)
		s.C.WaitHealthy(t, 3*time.Minute)
	}
	from := coordinator()
	commitRead(fmt.Sprintf("at coordinator kafka%d", from)) // the client's cache: from
	if from == preferred {
		t.Fatalf("the coordinator is the preferred replica kafka%d already: nothing to move", from)
	}

	electAt := time.Now()
	lastSaid := ""
	WaitFor(t, 2*time.Minute, fmt.Sprintf("a preferred leader election moving the coordinator to kafka%d", preferred), func() bool {
		res, err := a.ElectLeaders(ctx, ckafka.NewElectLeadersRequest(ckafka.ElectionTypePreferred,
			[]ckafka.TopicPartition{{Topic: ptr(offsetsTopic), Partition: part}}))
		c := coordinator()
		if said := fmt.Sprintf("election of %s[%d]: %v %v; coordinator kafka%d", offsetsTopic, part, res, err, c); said != lastSaid {
			t.Log(said)
			lastSaid = said
		}
		return c == preferred
	})
	moved := time.Since(electAt)
	after := commitRead(fmt.Sprintf("after the move kafka%d -> kafka%d (kafka%d up)", from, preferred, from))
	again := commitRead("once more")
	Row(t, "kafka: group coordinator moves, the old one up (preferred leader election)",
		"from", fmt.Sprintf("kafka%d", from), "to", fmt.Sprintf("kafka%d", preferred), "election took", moved.Round(time.Millisecond),
		"commit+read after the move", after.Round(time.Millisecond), "next commit+read", again.Round(time.Millisecond),
		"commit+read with the coordinator stopped", downTook)
}

func ptr[T any](v T) *T { return &v }
