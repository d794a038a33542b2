package kafka_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/kafka"
	"github.com/zkchat/zkchat/protocol"
)

// shardedClients is clients with cfg's Producers, ReaderShardSize and
// FetchWait, on env, and creates topics (in one request).
func shardedClients(t *testing.T, env *testenv.Env, cfg kafka.Config, topics ...string) (*kafka.Clients, context.Context) {
	t.Helper()
	cfg.Brokers, cfg.Topics, cfg.Logger = env.Kafka, protocol.Topics{Prefix: env.Prefix}, testenv.Logger(t)
	k, err := kafka.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	if len(topics) > 0 {
		specs := make([]ckafka.TopicSpecification, len(topics))
		for i, topic := range topics {
			specs[i] = ckafka.TopicSpecification{Topic: topic, NumPartitions: 1, ReplicationFactor: 1}
		}
		res, err := env.Admin(t).CreateTopics(ctx, specs, ckafka.SetAdminOperationTimeout(30*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.Error.Code() != ckafka.ErrNoError {
				t.Fatalf("create %s: %v", r.Topic, r.Error)
			}
		}
		for _, topic := range topics {
			if err := k.WaitTopic(ctx, topic); err != nil {
				t.Fatal(err)
			}
		}
	}
	return k, ctx
}

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%st%02d", prefix, i)
	}
	return out
}

// readTexts reads n records and returns their texts, checking that their
// offsets follow each other from first.
func readTexts(t *testing.T, ctx context.Context, r reader, n int, first int64) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var out []string
	for i := range n {
		m, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("after %d of %d records (%v): %v", i, n, out, err)
		}
		if m.Offset != first+int64(i) {
			t.Fatalf("record %d at offset %d (%q), want offset %d; before: %v", i, m.Offset, m.Text, first+int64(i), out)
		}
		out = append(out, m.Text)
	}
	return out
}

// TestOrderPerTopicAcrossProducers: with several producer handles, each
// topic's records are written in the order they were sent, while many
// topics are sent to at once over all the handles.
func TestOrderPerTopicAcrossProducers(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	topics := names(env.Prefix, 16)
	k, ctx := shardedClients(t, env, kafka.Config{Producers: 4}, topics...)
	used := map[int]bool{}
	for _, topic := range topics {
		used[k.ProducerOf(topic)] = true
	}
	if len(used) < 2 {
		t.Fatalf("16 topics all on one of 4 producers: %v", used)
	}
	const n = 100
	// Several senders per topic, each sending its own numbered sequence:
	// the records of one sender must come in its order.
	const senders = 3
	var wg sync.WaitGroup
	errs := make(chan error, len(topics)*senders)
	for _, topic := range topics {
		for s := range senders {
			wg.Go(func() {
				for i := range n {
					if _, err := k.Produce(ctx, topic, []byte(strconv.Itoa(s)), []byte(strconv.Itoa(i))); err != nil {
						errs <- err
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, topic := range topics {
		r, err := k.OpenReader(ctx, topic, topic)
		if err != nil {
			t.Fatal(err)
		}
		next := make([]int, senders)
		for i := range n * senders {
			m, err := r.Next(ctx)
			if err != nil {
				t.Fatalf("%s: after %d records: %v", topic, i, err)
			}
			s, _ := strconv.Atoi(m.From)
			if m.Text != strconv.Itoa(next[s]) {
				t.Fatalf("%s: sender %s's record %q at offset %d, want %d", topic, m.From, m.Text, m.Offset, next[s])
			}
			next[s]++
		}
		r.Close()
	}
}

// TestReadersOnManyShards: more readers than one consumer holds are spread
// over several consumers, and each receives its topic's records, those
// written before it opened and after.
func TestReadersOnManyShards(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	topics := names(env.Prefix, 10)
	k, ctx := shardedClients(t, env, kafka.Config{ReaderShardSize: 3, FetchWait: 100 * time.Millisecond}, topics...)
	for _, topic := range topics {
		if _, err := k.Produce(ctx, topic, nil, []byte(topic+" before")); err != nil {
			t.Fatal(err)
		}
	}
	var readers []kafka.MessageReader
	perShard := map[int]int{}
	for _, topic := range topics {
		r, err := k.OpenReader(ctx, topic, topic)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		readers = append(readers, r)
		perShard[k.ReaderShardOf(r)]++
	}
	if k.ReaderShards() != 4 {
		t.Fatalf("10 readers of at most 3 a consumer on %d consumers, want 4: %v", k.ReaderShards(), perShard)
	}
	for s, n := range perShard {
		if n > 3 {
			t.Fatalf("consumer %d holds %d readers, more than 3: %v", s, n, perShard)
		}
	}
	for _, topic := range topics {
		if _, err := k.Produce(ctx, topic, nil, []byte(topic+" after")); err != nil {
			t.Fatal(err)
		}
	}
	for i, r := range readers {
		got := readTexts(t, ctx, r, 2, 0)
		if want := fmt.Sprint([]string{topics[i] + " before", topics[i] + " after"}); fmt.Sprint(got) != want {
			t.Fatalf("reader of %s read %v, want %s", topics[i], got, want)
		}
	}
}

// TestReaderReopenedOnAnotherShard: a reader closed on one consumer and
// opened again lands on another, and goes on from the committed position;
// opened again at once on the same consumer, too.
func TestReaderReopenedOnAnotherShard(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	topics := names(env.Prefix, 4)
	a, b, c, d := topics[0], topics[1], topics[2], topics[3]
	k, ctx := shardedClients(t, env, kafka.Config{ReaderShardSize: 2, FetchWait: 100 * time.Millisecond}, topics...)
	for i := range 3 {
		if _, err := k.Produce(ctx, a, nil, []byte(fmt.Sprint("a", i))); err != nil {
			t.Fatal(err)
		}
	}
	open := func(topic string) kafka.MessageReader {
		t.Helper()
		r, err := k.OpenReader(ctx, topic, topic)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Close)
		return r
	}
	ra := open(a)
	open(b)
	open(c) // a, b on consumer 0; c on 1
	if got := fmt.Sprint(readTexts(t, ctx, ra, 2, 0)); got != "[a0 a1]" {
		t.Fatalf("read %s", got)
	}
	if err := k.Commit(ctx, a, a, protocol.Position{0: 2}); err != nil {
		t.Fatal(err)
	}
	shardA := k.ReaderShardOf(ra)
	ra.Close()
	open(d) // the least loaded with room: consumer 0 again (1 reader each)
	if _, err := k.Produce(ctx, a, nil, []byte("a3")); err != nil {
		t.Fatal(err)
	}
	ra = open(a)
	if s := k.ReaderShardOf(ra); s == shardA {
		t.Fatalf("reader of %s reopened on consumer %d, where it was closed; want another", a, s)
	}
	if got := fmt.Sprint(readTexts(t, ctx, ra, 2, 2)); got != "[a2 a3]" {
		t.Fatalf("read after reopening %s", got)
	}
	if err := k.Commit(ctx, a, a, protocol.Position{0: 4}); err != nil {
		t.Fatal(err)
	}
	// Closed and opened at once on the same consumer (the only one with
	// room), with records arriving meanwhile.
	for i := range 5 {
		shard := k.ReaderShardOf(ra)
		ra.Close()
		if _, err := k.Produce(ctx, a, nil, []byte(fmt.Sprint("a", 4+i))); err != nil {
			t.Fatal(err)
		}
		ra = open(a)
		if s := k.ReaderShardOf(ra); s != shard {
			t.Fatalf("reopened on consumer %d, not %d", s, shard)
		}
		if got := readTexts(t, ctx, ra, 1, 4+int64(i)); got[0] != fmt.Sprint("a", 4+i) {
			t.Fatalf("read %v", got)
		}
		if err := k.Commit(ctx, a, a, protocol.Position{0: 5 + int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReopenUnderTraffic: a reader closed and opened again on the same
// consumer while its topic keeps receiving records starts exactly at the
// committed position every time: no record its predecessor's fetches
// brought reaches it (out of order, or twice).
func TestReopenUnderTraffic(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	topic := env.Prefix + "busy"
	k, ctx := shardedClients(t, env, kafka.Config{ReaderShardSize: 1, FetchWait: 50 * time.Millisecond}, topic)
	stop := make(chan struct{})
	var sent sync.WaitGroup
	sent.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := k.Produce(ctx, topic, nil, []byte(strconv.Itoa(i))); err != nil {
				t.Error(err)
				return
			}
		}
	})
	defer func() { close(stop); sent.Wait() }()
	var pos int64
	for range 20 {
		r, err := k.OpenReader(ctx, topic, topic)
		if err != nil {
			t.Fatal(err)
		}
		readTexts(t, ctx, r, 5, pos) // fails on an offset out of sequence
		pos += 5
		if err := k.Commit(ctx, topic, topic, protocol.Position{0: pos}); err != nil {
			t.Fatal(err)
		}
		r.Close()
	}
	if k.ReaderShards() != 1 {
		t.Fatalf("%d consumers for one reader at a time", k.ReaderShards())
	}
}

// TestCloseWithRecordsInFlight: Close with sends in flight on every
// producer: each send returns (acknowledged, or an error), Close returns,
// and every acknowledged record is in Kafka.
func TestCloseWithRecordsInFlight(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	topics := names(env.Prefix, 8)
	k, ctx := shardedClients(t, env, kafka.Config{Producers: 4}, topics...)
	var acked [8]atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	started := make(chan struct{}, 1)
	for i := range 100 {
		wg.Go(func() {
			j := i % len(topics)
			for {
				if _, err := k.Produce(ctx, topics[j], nil, []byte("x")); err != nil {
					failed.Add(1)
					return
				}
				acked[j].Add(1)
				select {
				case started <- struct{}{}:
				default:
				}
			}
		})
	}
	<-started
	time.Sleep(200 * time.Millisecond)
	closed := make(chan struct{})
	go func() { k.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return within 30 s")
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("sends still waiting 60 s after Close")
	}
	if _, err := k.Produce(ctx, topics[0], nil, []byte("late")); err == nil {
		t.Fatal("a send after Close succeeded")
	}
	k2, _ := shardedClients(t, env, kafka.Config{})
	var total int64
	for j, topic := range topics {
		_, high, err := k2.Bounds(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		if high[0] < acked[j].Load() {
			t.Errorf("%s: %d records acknowledged, %d in Kafka", topic, acked[j].Load(), high[0])
		}
		total += acked[j].Load()
	}
	t.Logf("%d records acknowledged, %d sends ended with an error at Close", total, failed.Load())
	if total == 0 {
		t.Fatal("nothing acknowledged before Close")
	}
}

// TestReadersOfOneConsumerCloseAtOnce: readers of one consumer opened and
// closed from many goroutines at once. confluent-kafka-go writes a field of
// the Consumer in IncrementalAssign and IncrementalUnassign; two deliveries
// of the bridge stopping at once raced there (the race detector in CI,
// TestASCIICaseMappingResync). Run under -race.
func TestReadersOfOneConsumerCloseAtOnce(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	topics := names(env.Prefix, 24)
	k, ctx := shardedClients(t, env, kafka.Config{}, topics...)
	for round := range 2 {
		readers := make([]kafka.MessageReader, len(topics))
		var wg sync.WaitGroup
		errs := make(chan error, len(topics))
		for i, topic := range topics {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := k.OpenReader(ctx, "g-"+topic, topic)
				if err != nil {
					errs <- fmt.Errorf("round %d: open %s: %w", round, topic, err)
					return
				}
				readers[i] = r
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		for _, r := range readers {
			wg.Add(1)
			go func() { defer wg.Done(); r.Close() }()
		}
		wg.Wait()
	}
}

// TestWaitTopicShared: many callers waiting for topics that appear later
// all see them, sharing one metadata request per round (before, each
// caller asked about its own topic, backing off to 200 ms: 300 waiters
// made about 1,500 requests in the first second); a wait that ends first
// says the topic does not exist.
func TestWaitTopicShared(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	k, ctx := shardedClients(t, env, kafka.Config{})
	topics := names(env.Prefix+"wait", 300)
	start := time.Now()
	errs := make(chan error, 2*len(topics))
	for _, topic := range topics {
		for range 2 { // two callers of one topic share its wait
			go func() { errs <- k.WaitTopic(ctx, topic) }()
		}
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := k.WaitTopic(short, env.Prefix+"nobody"); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("wait for a topic never made: %v", err)
	}
	specs := make([]ckafka.TopicSpecification, len(topics))
	for i, topic := range topics {
		specs[i] = ckafka.TopicSpecification{Topic: topic, NumPartitions: 1, ReplicationFactor: 1}
	}
	if _, err := env.Admin(t).CreateTopics(ctx, specs, ckafka.SetAdminOperationTimeout(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	for range 2 * len(topics) {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(start)
	// At most one request per round (and one per 1,000 topics), a round
	// every 20 ms: rounds bound the requests, not waiters.
	reqs := k.TopicWaitRequests()
	if most := int64(took/(20*time.Millisecond)) + 2; reqs > most {
		t.Fatalf("%d metadata requests in %v for %d waiters: more than one a round (%d)", reqs, took, 2*len(topics), most)
	}
	t.Logf("%d waiters of %d topics: %d metadata requests in %v", 2*len(topics), len(topics), reqs, took.Round(time.Millisecond))
}
