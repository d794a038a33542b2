package kafka_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/kafka"
)

// createConcurrently creates n topics through create, 64 at a time, and
// returns how long it took.
func createConcurrently(t testing.TB, n int, name func(int) string, create func(ctx context.Context, topic string) error) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := time.Now()
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := create(ctx, name(i)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return time.Since(start)
}

// TestCreateTopicBatched: topics asked for at once are made, each once, the
// same topic asked for twice at once included (a CreateTopics naming a
// topic twice is refused whole), and all exist afterwards.
func TestCreateTopicBatched(t *testing.T) {
	env := testenv.New(t)
	a, err := kafka.NewAdmin(kafka.Config{Brokers: env.Kafka, Logger: testenv.Logger(t)}, "zkchat-test")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	const n = 200
	name := func(i int) string { return fmt.Sprintf("%sbatch-%d", env.Prefix, i/2) } // each twice
	createConcurrently(t, 2*n, name, func(ctx context.Context, topic string) error {
		return a.CreateTopic(ctx, topic, kafka.TopicSpec{})
	})
	// The broker applies the controller's records a moment after the
	// answer: metadata may lag (the workers wait for it: WaitTopic).
	var missing string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		md, err := env.Admin(t).GetMetadata(nil, true, 10000)
		if err != nil {
			t.Fatal(err)
		}
		missing = ""
		for i := range n {
			if tm, ok := md.Topics[name(2*i)]; !ok || len(tm.Partitions) != 1 {
				missing = fmt.Sprintf("%s: %+v", name(2*i), tm)
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s, want one partition", missing)
		}
	}
}

// BenchmarkCreateTopic (run with -benchtime 400x): b.N topics asked for by 64 goroutines at once (the
// manager's online workers), through Admin.CreateTopic; the floor makes
// them one per CreateTopics request, as CreateTopic did before it batched.
func BenchmarkCreateTopic(b *testing.B) {
	env := testenv.New(b)
	bare := env.Admin(b)
	a, err := kafka.NewAdmin(kafka.Config{Brokers: env.Kafka, Logger: testenv.Logger(b)}, "zkchat-test")
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	for _, c := range []struct {
		name   string
		create func(ctx context.Context, topic string) error
	}{
		{"OnePerRequestFloor", func(ctx context.Context, topic string) error {
			res, err := bare.CreateTopics(ctx, []ckafka.TopicSpecification{{Topic: topic, NumPartitions: 1, ReplicationFactor: 1}},
				ckafka.SetAdminOperationTimeout(30*time.Second))
			if err == nil && res[0].Error.Code() != ckafka.ErrNoError {
				err = res[0].Error
			}
			return err
		}},
		{"Batched", func(ctx context.Context, topic string) error { return a.CreateTopic(ctx, topic, kafka.TopicSpec{}) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			name := func(i int) string { return fmt.Sprintf("%s%s-%d-%d", env.Prefix, c.name, b.N, i) }
			d := createConcurrently(b, b.N, name, c.create)
			b.ReportMetric(float64(b.N)/d.Seconds(), "topics/s")
		})
	}
}
