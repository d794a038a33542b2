package benchmarks_test

// Benchmarks against the real ZooKeeper and Kafka; doc/scaling.md has
// the numbers and how to run them, e.g.
//
//	go test -run '^$' -bench 'Floor|Register|Send' -benchtime 2000x ./internal/benchmarks/
//	go test -run '^$' -bench FirstMessage -benchtime 200x -timeout 30m ./internal/benchmarks/
//
// Every benchmark gets its own ZooKeeper chroot and Kafka topic prefix from
// testenv, and (except the floors) its own manager, started before the
// timer. Each records the latency of every operation and reports p50, p99
// and max in milliseconds, and a rate, with b.ReportMetric. The floors are
// the bare client libraries on the same servers with the same client
// settings:
//
//	ZKCreateDeleteFloor      ↔ Register, RegisterParallel (the target's floor)
//	ZKRegisterProtocolFloor  ↔ Register (the protocol's round trips, bare)
//	KafkaProduceConsumeFloor ↔ SendRead, FirstMessage

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/client"
	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/kafka"
	"github.com/zkchat/zkchat/manager"
	"github.com/zkchat/zkchat/protocol"
	"github.com/zkchat/zkchat/zookeeper"
)

// benchOpTimeout bounds every single wait of a benchmark: a hang fails the
// benchmark with what it waited for instead of running into go test's
// timeout.
const benchOpTimeout = 30 * time.Second

// benchLogger shows warnings and errors of the manager, the workers and the
// Kafka clients; their Info lines (one per request) would only slow the
// measured code down.
func benchLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// benchStartManager runs a manager on env until the benchmark ends and waits
// until it leads.
func benchStartManager(b *testing.B, env *testenv.Env) *manager.Manager {
	b.Helper()
	m, err := manager.New(manager.Config{
		ZooKeeper: env.ZooKeeper,
		Kafka:     env.Kafka,
		Topics:    protocol.Topics{Prefix: env.Prefix},
		Name:      "bench",
		Logger:    benchLogger(),
	})
	if err != nil {
		b.Fatalf("manager.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				b.Errorf("manager Run: %v", err)
			}
		case <-time.After(benchOpTimeout):
			b.Errorf("manager Run did not return %s after its context ended", benchOpTimeout)
		}
		m.Close()
	})
	deadline := time.Now().Add(benchOpTimeout)
	for !m.Leading() {
		select {
		case err := <-done:
			b.Fatalf("manager Run returned before leading: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("manager not leading after %s", benchOpTimeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return m
}

// benchNewKafka is the process's shared Kafka clients, closed when the benchmark
// ends.
func benchNewKafka(b *testing.B, env *testenv.Env) *kafka.Clients {
	b.Helper()
	k, err := kafka.New(kafka.Config{
		Brokers: env.Kafka,
		Topics:  protocol.Topics{Prefix: env.Prefix},
		Logger:  benchLogger(),
	})
	if err != nil {
		b.Fatalf("NewKafka: %v", err)
	}
	b.Cleanup(k.Close)
	return k
}

func benchNewWorker(b *testing.B, env *testenv.Env, id string, k *kafka.Clients, key ...ed25519.PrivateKey) *client.Worker {
	b.Helper()
	cfg := client.Config{
		ZooKeeper:      env.ZooKeeper,
		RequestTimeout: benchOpTimeout,
		Kafka:          k,
		Logger:         benchLogger(),
	}
	if len(key) > 0 {
		cfg.SigningKey = key[0]
	}
	w, err := client.New(id, cfg)
	if err != nil {
		b.Fatalf("NewWorker %s: %v", id, err)
	}
	return w
}

// benchOnlineWorker registers id and takes it online; offline when the benchmark
// ends.
func benchOnlineWorker(b *testing.B, env *testenv.Env, id string, k *kafka.Clients, key ...ed25519.PrivateKey) *client.Worker {
	b.Helper()
	w := benchNewWorker(b, env, id, k, key...)
	b.Cleanup(w.Close)
	ctx, cancel := context.WithTimeout(context.Background(), benchOpTimeout)
	defer cancel()
	if st, err := w.Register(ctx); err != nil || !st.OK() {
		b.Fatalf("register %s: status %v, err %v", id, st, err)
	}
	if err := w.GoOnline(ctx); err != nil {
		b.Fatalf("online %s: %v", id, err)
	}
	return w
}

// benchOpenSession makes w open its ZooKeeper session (Worker opens it lazily, on
// the first call that needs it) with a call that changes nothing.
func benchOpenSession(ctx context.Context, w *client.Worker) error {
	_, err := w.GetOnlineUsers(ctx)
	return err
}

// benchZkConnect is a bare go-zookeeper connection with the settings of a
// worker's session (zookeeper.Dial for a worker), once it has a session.
func benchZkConnect(b *testing.B, servers string) *zk.Conn {
	b.Helper()
	ready := make(chan struct{})
	var once sync.Once
	c, _, err := zk.Connect(strings.Split(servers, ","), zookeeper.DefaultSessionTimeout,
		zk.WithLogInfo(false),
		zk.WithLogger(benchQuietZK{}),
		zk.WithMaxBufferSize(zookeeper.SmallZKBuffer),
		zk.WithMaxConnBufferSize(zookeeper.SmallZKBuffer),
		zk.WithEventCallback(func(ev zk.Event) {
			if ev.Type == zk.EventSession && ev.State == zk.StateHasSession {
				once.Do(func() { close(ready) })
			}
		}))
	if err != nil {
		b.Fatalf("zookeeper: %v", err)
	}
	b.Cleanup(c.Close)
	select {
	case <-ready:
	case <-time.After(benchOpTimeout):
		b.Fatalf("zookeeper: no session after %s", benchOpTimeout)
	}
	return c
}

type benchQuietZK struct{}

func (benchQuietZK) Printf(string, ...any) {}

// BenchmarkZKCreateDeleteFloor is the floor of Register: one bare
// go-zookeeper Create of a request-like node (data "-1", persistent) and its
// Delete, on one session, in the same directory a register request uses.
// No manager runs, so nobody watches the directory.
func BenchmarkZKCreateDeleteFloor(b *testing.B) {
	env := testenv.New(b)
	c := benchZkConnect(b, env.ZKServers)
	paths, err := protocol.NewPaths(env.Chroot)
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range paths.Persistent() {
		if _, err := c.Create(p, nil, 0, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			b.Fatalf("create %s: %v", p, err)
		}
	}
	// Warm-up: the first requests of a connection are not what is measured.
	for i := range 10 {
		p := paths.Enroll(fmt.Sprintf("warm%d", i))
		if _, err := c.Create(p, protocol.StatusPending.Bytes(), 0, zk.WorldACL(zk.PermAll)); err != nil {
			b.Fatal(err)
		}
		if err := c.Delete(p, -1); err != nil {
			b.Fatal(err)
		}
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := paths.Enroll(fmt.Sprintf("u%07d", i))
		t0 := time.Now()
		if _, err := c.Create(p, protocol.StatusPending.Bytes(), 0, zk.WorldACL(zk.PermAll)); err != nil {
			b.Fatalf("create %s: %v", p, err)
		}
		if err := c.Delete(p, -1); err != nil {
			b.Fatalf("delete %s: %v", p, err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	testenv.ReportLatency(b, "", lat)
	testenv.ReportRate(b, "ops/s", b.N)
}

// BenchmarkZKRegisterProtocolFloor is the register protocol done with bare
// go-zookeeper calls and no zkchat code: a client session creates the
// request (-1) and waits on a data watch until it is answered, then deletes
// it; a second session, standing in for the manager, keeps a child watch on
// the request directory and answers every new request with one multi (check
// of its own election node, create /registry/<id>, versioned set of the
// request to 1), as the manager does. It is the least the protocol's
// ZooKeeper round trips cost on this server: what Register could reach if
// the manager and worker added nothing.
func BenchmarkZKRegisterProtocolFloor(b *testing.B) {
	env := testenv.New(b)
	c := benchZkConnect(b, env.ZKServers)
	mc := benchZkConnect(b, env.ZKServers)
	paths, err := protocol.NewPaths(env.Chroot)
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range paths.Persistent() {
		if _, err := c.Create(p, nil, 0, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			b.Fatalf("create %s: %v", p, err)
		}
	}
	election, err := mc.Create(paths.Election()+"/n_", nil, zk.FlagEphemeral|zk.FlagSequence, zk.WorldACL(zk.PermAll))
	if err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	managerErr := make(chan error, 1)
	go func() {
		handled := map[string]bool{}
		for {
			names, _, ch, err := mc.ChildrenW(paths.EnrollRequests())
			if err != nil {
				managerErr <- err
				return
			}
			for _, id := range names {
				if handled[id] {
					continue
				}
				handled[id] = true
				path := paths.Enroll(id)
				data, st, err := mc.Get(path)
				if errors.Is(err, zk.ErrNoNode) {
					continue
				}
				if err != nil {
					managerErr <- err
					return
				}
				if string(data) != string(protocol.StatusPending.Bytes()) {
					continue
				}
				if _, err := mc.Multi(
					&zk.CheckVersionRequest{Path: election, Version: -1},
					&zk.CreateRequest{Path: paths.Registered(id), Data: []byte("{}"), Acl: zk.WorldACL(zk.PermAll)},
					&zk.SetDataRequest{Path: path, Data: protocol.StatusDone.Bytes(), Version: st.Version},
				); err != nil {
					managerErr <- fmt.Errorf("multi for %s: %w", id, err)
					return
				}
			}
			select {
			case <-ch:
			case <-stop:
				return
			}
		}
	}()
	defer close(stop)
	register := func(id string) error {
		path := paths.Enroll(id)
		if _, err := c.Create(path, protocol.StatusPending.Bytes(), 0, zk.WorldACL(zk.PermAll)); err != nil {
			return err
		}
		for {
			data, _, ch, err := c.GetW(path)
			if err != nil {
				return err
			}
			if string(data) != string(protocol.StatusPending.Bytes()) {
				break
			}
			select {
			case <-ch:
			case err := <-managerErr:
				return fmt.Errorf("manager stand-in: %w", err)
			case <-time.After(benchOpTimeout):
				return fmt.Errorf("%s not answered after %s", path, benchOpTimeout)
			}
		}
		return c.Delete(path, -1)
	}
	for i := range 10 {
		if err := register(fmt.Sprintf("warm%d", i)); err != nil {
			b.Fatalf("warm-up: %v", err)
		}
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := register(fmt.Sprintf("u%07d", i)); err != nil {
			b.Fatalf("register %d: %v", i, err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	testenv.ReportLatency(b, "", lat)
	testenv.ReportRate(b, "ops/s", b.N)
}

// benchRegisterBatch is how many workers BenchmarkRegister opens sessions for at
// a time, outside the timer.
const benchRegisterBatch = 50

// BenchmarkRegister times Worker.Register of a new id, one at a time: create
// the request, the manager registers and answers, the worker reads the
// answer and deletes the request. A Worker's id is fixed and a second
// registration of it is "already registered", so every iteration has its own
// worker; their sessions are opened in batches with the timer stopped, so
// session setup is not measured.
func BenchmarkRegister(b *testing.B) {
	env := testenv.New(b)
	benchStartManager(b, env)
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	// Warm-up: the manager's first request, and the first workers.
	for i := range 5 {
		w := benchNewWorker(b, env, fmt.Sprintf("warm%d", i), nil)
		if st, err := w.Register(ctx); err != nil || st != protocol.StatusDone {
			b.Fatalf("warm-up register: status %v, err %v", st, err)
		}
		w.Close()
	}
	b.ResetTimer()
	for start := 0; start < b.N; start += benchRegisterBatch {
		b.StopTimer()
		n := min(benchRegisterBatch, b.N-start)
		ws := make([]*client.Worker, n)
		var wg sync.WaitGroup
		errs := make([]error, n)
		for j := range ws {
			ws[j] = benchNewWorker(b, env, fmt.Sprintf("u%07d", start+j), nil)
			wg.Go(func() {
				cctx, cancel := context.WithTimeout(ctx, benchOpTimeout)
				defer cancel()
				errs[j] = benchOpenSession(cctx, ws[j])
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			b.Fatalf("open sessions: %v", err)
		}
		// go-zookeeper's Connect allocates a 1.5 MB buffer before the
		// small-buffer option replaces it: collect that garbage now rather
		// than while registering.
		runtime.GC()
		b.StartTimer()
		for _, w := range ws {
			cctx, cancel := context.WithTimeout(ctx, benchOpTimeout)
			t0 := time.Now()
			st, err := w.Register(cctx)
			d := time.Since(t0)
			cancel()
			if err != nil || st != protocol.StatusDone {
				b.Fatalf("register %s: status %v, err %v (after %s)", w.ID(), st, err, d)
			}
			lat = append(lat, d)
		}
		b.StopTimer()
		for _, w := range ws {
			wg.Go(w.Close)
		}
		wg.Wait()
		b.StartTimer()
	}
	b.StopTimer()
	testenv.ReportLatency(b, "", lat)
	testenv.ReportRate(b, "ops/s", b.N)
}

// benchParallelClients is how many clients register at once in
// BenchmarkRegisterParallel.
const benchParallelClients = 64

// BenchmarkRegisterParallel is registrations per second with
// benchParallelClients clients registering new ids at once against one manager.
// All b.N workers open their sessions before the timer starts (with a 30 s
// session timeout, so that their pings — every 10 s — stay out of the way);
// the clients then take the next worker from a shared counter and register
// it, until all are registered.
func BenchmarkRegisterParallel(b *testing.B) {
	env := testenv.New(b)
	benchStartManager(b, env)
	ctx := context.Background()
	ws := make([]*client.Worker, b.N)
	for i := range ws {
		w, err := client.New(fmt.Sprintf("u%07d", i), client.Config{
			ZooKeeper:      env.ZooKeeper,
			SessionTimeout: 30 * time.Second,
			RequestTimeout: benchOpTimeout,
			Logger:         benchLogger(),
		})
		if err != nil {
			b.Fatal(err)
		}
		ws[i] = w
	}
	b.Cleanup(func() {
		var wg sync.WaitGroup
		for _, w := range ws {
			wg.Go(w.Close)
		}
		wg.Wait()
	})
	var next atomic.Int64
	var openErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for range benchParallelClients {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(ws)); i = next.Add(1) - 1 {
				cctx, cancel := context.WithTimeout(ctx, benchOpTimeout)
				err := benchOpenSession(cctx, ws[i])
				cancel()
				if err != nil {
					openErr.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	if p := openErr.Load(); p != nil {
		b.Fatalf("open sessions: %v", *p)
	}
	runtime.GC() // the session setup's garbage (see BenchmarkRegister)

	lats := make([][]time.Duration, benchParallelClients)
	errs := make([]error, benchParallelClients)
	next.Store(0)
	b.ResetTimer()
	for c := range benchParallelClients {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(ws)); i = next.Add(1) - 1 {
				cctx, cancel := context.WithTimeout(ctx, benchOpTimeout)
				t0 := time.Now()
				st, err := ws[i].Register(cctx)
				d := time.Since(t0)
				cancel()
				if err != nil || st != protocol.StatusDone {
					errs[c] = fmt.Errorf("register %s: status %v, err %v (after %s)", ws[i].ID(), st, err, d)
					return
				}
				lats[c] = append(lats[c], d)
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	testenv.ReportLatency(b, "", slices.Concat(lats...))
	testenv.ReportRate(b, "regs/s", b.N)
}

// benchKafkaFloorTopic creates the floor's topic with the admin client, one
// partition, and waits until the producer's metadata has it.
func benchKafkaFloorTopic(b *testing.B, env *testenv.Env, name string) string {
	b.Helper()
	topic := env.Prefix + name
	a := env.Admin(b)
	ctx, cancel := context.WithTimeout(context.Background(), benchOpTimeout)
	defer cancel()
	res, err := a.CreateTopics(ctx, []ckafka.TopicSpecification{{Topic: topic, NumPartitions: 1, ReplicationFactor: 1}},
		ckafka.SetAdminOperationTimeout(benchOpTimeout))
	if err != nil {
		b.Fatalf("create topic %s: %v", topic, err)
	}
	for _, r := range res {
		if r.Error.Code() != ckafka.ErrNoError {
			b.Fatalf("create topic %s: %v", topic, r.Error)
		}
	}
	return topic
}

// BenchmarkKafkaProduceConsumeFloor is the floor of SendRead: a bare
// confluent-kafka-go producer with kafka/kafka.go's settings (acks=all,
// idempotence, linger.ms=1) and a bare consumer assigned to the topic with
// its settings (fetch.wait.max.ms=50, no group membership), polled by one
// goroutine as kafka.Clients's poll loop does. Each iteration produces one
// record and waits for its delivery report and its arrival.
func BenchmarkKafkaProduceConsumeFloor(b *testing.B) {
	env := testenv.New(b)
	topic := benchKafkaFloorTopic(b, env, "floor")
	p, err := ckafka.NewProducer(&ckafka.ConfigMap{
		"bootstrap.servers":      env.Kafka,
		"client.id":              "zkchat-bench",
		"acks":                   "all",
		"enable.idempotence":     true,
		"linger.ms":              1,
		"delivery.timeout.ms":    30000,
		"go.logs.channel.enable": false,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	go func() {
		for range p.Events() { // errors only: delivery reports go per message
		}
	}()
	c, err := ckafka.NewConsumer(&ckafka.ConfigMap{
		"bootstrap.servers":                  env.Kafka,
		"client.id":                          "zkchat-bench-reader",
		"group.id":                           env.Prefix + "floor-reader",
		"enable.auto.commit":                 false,
		"enable.auto.offset.store":           false,
		"auto.offset.reset":                  "earliest",
		"fetch.wait.max.ms":                  50,
		"enable.partition.eof":               false,
		"topic.metadata.refresh.interval.ms": 10000,
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Assign([]ckafka.TopicPartition{{Topic: &topic, Partition: 0, Offset: ckafka.OffsetBeginning}}); err != nil {
		b.Fatal(err)
	}
	arrived := make(chan string, 1024)
	pollCtx, stopPoll := context.WithCancel(context.Background())
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		for pollCtx.Err() == nil {
			if m, ok := c.Poll(100).(*ckafka.Message); ok && m.TopicPartition.Error == nil {
				arrived <- string(m.Value)
			}
		}
	}()
	defer func() {
		stopPoll()
		<-pollDone
		c.Close()
	}()

	produce := func(text string) error {
		done := make(chan ckafka.Event, 1)
		if err := p.Produce(&ckafka.Message{
			TopicPartition: ckafka.TopicPartition{Topic: &topic, Partition: ckafka.PartitionAny},
			Key:            []byte("alice"), Value: []byte(text),
		}, done); err != nil {
			return err
		}
		select {
		case ev := <-done:
			return ev.(*ckafka.Message).TopicPartition.Error
		case <-time.After(benchOpTimeout):
			return fmt.Errorf("no delivery report after %s", benchOpTimeout)
		}
	}
	roundTrip := func(text string) error {
		if err := produce(text); err != nil {
			return err
		}
		return benchAwaitText(arrived, text)
	}
	for i := range 5 {
		if err := roundTrip(fmt.Sprintf("warm%d", i)); err != nil {
			b.Fatalf("warm-up: %v", err)
		}
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := roundTrip(strconv.Itoa(i)); err != nil {
			b.Fatalf("message %d: %v", i, err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	testenv.ReportLatency(b, "", lat)
	testenv.ReportRate(b, "msgs/s", b.N)
}

// benchAwaitText waits for text on arrived. Anything else arriving first is an
// error: every benchmark sends one message at a time.
func benchAwaitText(arrived <-chan string, text string) error {
	select {
	case got := <-arrived:
		if got != text {
			return fmt.Errorf("expected message %q, got %q", text, got)
		}
		return nil
	case <-time.After(benchOpTimeout):
		return fmt.Errorf("message %q not read after %s", text, benchOpTimeout)
	}
}

// benchFollow runs w.FollowMessages until the benchmark ends, handing every
// message's text to the returned channel.
func benchFollow(b *testing.B, w *client.Worker, want ...protocol.Trust) <-chan string {
	b.Helper()
	arrived := make(chan string, 1<<16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- w.FollowMessages(ctx, func(m protocol.Message) error {
			if len(want) > 0 && m.Trust != want[0] {
				// Never the text awaited: the benchmark fails on it.
				arrived <- m.Text + " (" + m.Trust.String() + ")"
				return nil
			}
			arrived <- m.Text
			return nil
		})
	}()
	b.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				b.Errorf("FollowMessages of %s: %v", w.ID(), err)
			}
		case <-time.After(benchOpTimeout):
			b.Errorf("FollowMessages of %s did not return %s after its context ended", w.ID(), benchOpTimeout)
		}
	})
	return arrived
}

// benchSendReadSetup is a manager, one shared kafka.Clients, alice online and
// bob online and following his messages. A few warm-up messages have gone
// through.
func benchSendReadSetup(b *testing.B, signed ...bool) (alice *client.Worker, arrived <-chan string) {
	b.Helper()
	env := testenv.New(b)
	benchStartManager(b, env)
	k := benchNewKafka(b, env)
	if len(signed) > 0 && signed[0] {
		_, ka, _ := ed25519.GenerateKey(rand.Reader)
		_, kb, _ := ed25519.GenerateKey(rand.Reader)
		alice = benchOnlineWorker(b, env, "alice", k, ka)
		bob := benchOnlineWorker(b, env, "bob", k, kb)
		arrived = benchFollow(b, bob, protocol.Verified)
	} else {
		alice = benchOnlineWorker(b, env, "alice", k)
		bob := benchOnlineWorker(b, env, "bob", k)
		arrived = benchFollow(b, bob)
	}
	ctx, cancel := context.WithTimeout(context.Background(), benchOpTimeout)
	defer cancel()
	for i := range 5 {
		text := fmt.Sprintf("warm%d", i)
		if err := alice.SendMessage(ctx, "bob", text); err != nil {
			b.Fatalf("warm-up: %v", err)
		}
		if err := benchAwaitText(arrived, text); err != nil {
			b.Fatalf("warm-up: %v", err)
		}
	}
	return alice, arrived
}

// BenchmarkSendRead times one message from SendMessage (checks both are
// online in ZooKeeper, produces, waits for the acknowledgement) until the
// receiver's FollowMessages hands it over, one message at a time. Also
// reported: the SendMessage call alone (send-p50-ms ...).
func BenchmarkSendRead(b *testing.B) {
	alice, arrived := benchSendReadSetup(b)
	benchSendRead(b, alice, arrived)
}

// BenchmarkSendReadSigned is BenchmarkSendRead with signing keys: each
// message signed by the sender and checked by the receiver against the
// sender's registered key (each must arrive verified). The difference to
// BenchmarkSendRead in the same run is what signatures cost a message.
func BenchmarkSendReadSigned(b *testing.B) {
	alice, arrived := benchSendReadSetup(b, true)
	benchSendRead(b, alice, arrived)
}

func benchSendRead(b *testing.B, alice *client.Worker, arrived <-chan string) {
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	sendLat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		text := strconv.Itoa(i)
		cctx, cancel := context.WithTimeout(ctx, benchOpTimeout)
		t0 := time.Now()
		err := alice.SendMessage(cctx, "bob", text)
		sendLat = append(sendLat, time.Since(t0))
		cancel()
		if err != nil {
			b.Fatalf("send %d: %v", i, err)
		}
		if err := benchAwaitText(arrived, text); err != nil {
			b.Fatalf("read %d: %v", i, err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	testenv.ReportLatency(b, "", lat)
	testenv.ReportLatency(b, "send-", sendLat)
	testenv.ReportRate(b, "msgs/s", b.N)
}

// BenchmarkSendReadSpaced is BenchmarkSendRead with an untimed pause of
// benchSpacing between messages, so that the receiver's work after a message
// (FollowMessages commits its position once no further message waits) is
// over before the next message is sent. The difference to BenchmarkSendRead
// is what that work costs a message sent right after another.
func BenchmarkSendReadSpaced(b *testing.B) {
	alice, arrived := benchSendReadSetup(b)
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	sendLat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		time.Sleep(benchSpacing)
		b.StartTimer()
		text := strconv.Itoa(i)
		cctx, cancel := context.WithTimeout(ctx, benchOpTimeout)
		t0 := time.Now()
		err := alice.SendMessage(cctx, "bob", text)
		sendLat = append(sendLat, time.Since(t0))
		cancel()
		if err != nil {
			b.Fatalf("send %d: %v", i, err)
		}
		if err := benchAwaitText(arrived, text); err != nil {
			b.Fatalf("read %d: %v", i, err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	testenv.ReportLatency(b, "", lat)
	testenv.ReportLatency(b, "send-", sendLat)
}

// benchSpacing is the pause between messages of BenchmarkSendReadSpaced.
const benchSpacing = 20 * time.Millisecond

// benchPipelineSenders is how many goroutines send at once in
// BenchmarkSendReadPipelined.
const benchPipelineSenders = 16

// BenchmarkSendReadPipelined is throughput: benchPipelineSenders goroutines of
// one sender share b.N messages, each goroutine sending its next message as
// soon as the previous one is acknowledged, without waiting for arrivals;
// the timer stops when the receiver has read all of them. It also reports
// the acknowledgement latency of SendMessage under that load (ack-p50-ms).
func BenchmarkSendReadPipelined(b *testing.B) {
	alice, arrived := benchSendReadSetup(b)
	ctx := context.Background()
	lats := make([][]time.Duration, benchPipelineSenders)
	errs := make([]error, benchPipelineSenders)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for s := range benchPipelineSenders {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(b.N); i = next.Add(1) - 1 {
				cctx, cancel := context.WithTimeout(ctx, benchOpTimeout)
				t0 := time.Now()
				err := alice.SendMessage(cctx, "bob", strconv.FormatInt(i, 10))
				cancel()
				if err != nil {
					errs[s] = fmt.Errorf("send %d: %w", i, err)
					return
				}
				lats[s] = append(lats[s], time.Since(t0))
			}
		})
	}
	seen := make([]bool, b.N)
	var readErr error
	for got := 0; got < b.N && readErr == nil; {
		select {
		case text := <-arrived:
			i, err := strconv.Atoi(text)
			switch {
			case err != nil || i < 0 || i >= b.N:
				readErr = fmt.Errorf("unexpected message %q", text)
			case seen[i]:
				readErr = fmt.Errorf("message %d read twice", i)
			default:
				seen[i] = true
				got++
			}
		case <-time.After(benchOpTimeout):
			readErr = fmt.Errorf("%d of %d messages read; nothing more after %s", got, b.N, benchOpTimeout)
		}
	}
	b.StopTimer()
	wg.Wait()
	if err := errors.Join(append(errs, readErr)...); err != nil {
		b.Fatal(err)
	}
	testenv.ReportLatency(b, "ack-", slices.Concat(lats...))
	testenv.ReportRate(b, "msgs/s", b.N)
}

// BenchmarkFirstMessage is a first-time user's first message. Untimed: a new
// id registers (which opens its session). Timed: it goes online (the
// manager sees /online/<id> and creates the topic; GoOnline polls until the
// topic exists), starts FollowMessages, an online sender sends it a message,
// and FollowMessages hands the message over. Also reported: the GoOnline
// part alone (online-p50-ms ...) and the SendMessage call alone (send-...);
// the rest is the wait for FollowMessages to hand the message over.
func BenchmarkFirstMessage(b *testing.B) {
	env := testenv.New(b)
	benchStartManager(b, env)
	k := benchNewKafka(b, env)
	alice := benchOnlineWorker(b, env, "alice", k)
	ctx := context.Background()

	var lat, onlineLat, sendLat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		id := fmt.Sprintf("new%07d", i)
		w := benchNewWorker(b, env, id, k)
		cctx, cancel := context.WithTimeout(ctx, benchOpTimeout)
		if st, err := w.Register(cctx); err != nil || st != protocol.StatusDone {
			cancel()
			b.Fatalf("register %s: status %v, err %v", id, st, err)
		}
		arrived := make(chan string, 16)
		fctx, stopFollow := context.WithCancel(ctx)
		followDone := make(chan error, 1)
		text := "hello " + id
		b.StartTimer()

		t0 := time.Now()
		if err := w.GoOnline(cctx); err != nil {
			b.Fatalf("%v (after %s)", err, time.Since(t0))
		}
		tOnline := time.Since(t0)
		go func() {
			followDone <- w.FollowMessages(fctx, func(m protocol.Message) error {
				arrived <- m.Text
				return nil
			})
		}()
		t1 := time.Now()
		if err := alice.SendMessage(cctx, id, text); err != nil {
			b.Fatalf("%v (after %s)", err, time.Since(t0))
		}
		tSend := time.Since(t1)
		var readErr error
		select {
		case got := <-arrived:
			if got != text {
				readErr = fmt.Errorf("%s: expected %q, read %q", id, text, got)
			}
		case err := <-followDone:
			readErr = fmt.Errorf("%s: FollowMessages returned before the message arrived: %v", id, err)
		case <-time.After(benchOpTimeout):
			readErr = fmt.Errorf("%s: message not read after %s", id, benchOpTimeout)
		}
		d := time.Since(t0)

		b.StopTimer()
		cancel()
		stopFollow()
		if readErr != nil {
			b.Fatal(readErr)
		}
		select {
		case err := <-followDone:
			if err != nil {
				b.Fatalf("FollowMessages of %s: %v", id, err)
			}
		case <-time.After(benchOpTimeout):
			b.Fatalf("FollowMessages of %s did not return %s after its context ended", id, benchOpTimeout)
		}
		w.Close()
		lat = append(lat, d)
		onlineLat = append(onlineLat, tOnline)
		sendLat = append(sendLat, tSend)
		b.StartTimer()
	}
	b.StopTimer()
	testenv.ReportLatency(b, "", lat)
	testenv.ReportLatency(b, "online-", onlineLat)
	testenv.ReportLatency(b, "send-", sendLat)
	testenv.ReportRate(b, "users/s", b.N)
}
