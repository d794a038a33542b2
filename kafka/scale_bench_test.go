package kafka_test

// Scale benchmarks (issue "bridge at community scale"): the produce
// throughput of one Clients to 1,000 topics, and what readers open on
// thousands of idle topics cost this process and the broker.
//
// They run against a private single-node broker of their own (internal/servers,
// Kafka's default 1 GB heap), so that the broker's CPU and heap are theirs
// alone and a broker that runs out of heap disturbs no one; with
// ZKCHAT_SCALE_SHARED=1 they use the shared test broker instead (its topics
// are deleted at the end). Run them one at a time, each sub-benchmark once:
//
//	go test -run '^$' -bench 'ScaleProduce' -benchtime 200000x -timeout 30m ./kafka/
//	go test -run '^$' -bench 'ScaleIdle|ScaleEmpty' -benchtime 1x -timeout 120m ./kafka/
//
// ZKCHAT_SCALE_SENDERS (1000) is the number of goroutines that send, each
// waiting for its record's acknowledgement before the next;
// ZKCHAT_SCALE_PRODUCERS ("1,2,4,8") the Config.Producers values;
// ZKCHAT_SCALE_IDLE_TOPICS ("1000,5000") the idle topic counts;
// ZKCHAT_SCALE_IDLE ("none,all/50ms,250/500ms,500/500ms") the idle
// configurations, ReaderShardSize/fetch wait ("all/50ms": one consumer, as
// before issue 10; "none": no reader, the broker's baseline);
// ZKCHAT_SCALE_IDLE_SECONDS (30) how long the idle readers are measured.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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

// scaleEnv is the broker of the scale benchmarks and the topics made on it.
type scaleEnv struct {
	brokers string
	pid     func() int // the broker's java process; 0: not running
	admin   *ckafka.AdminClient
	prefix  string
	topics  []string // ensureTopics'
	fresh   []string // makeTopics'
	restart func()   // nil: the shared broker, never restarted
}

func newScaleEnv(b *testing.B) *scaleEnv {
	b.Helper()
	se := &scaleEnv{prefix: "scale" + testenv.Tag() + "-"}
	if os.Getenv("ZKCHAT_SCALE_SHARED") == "1" {
		env := testenv.New(b)
		se.brokers = env.Kafka
		se.pid = func() int {
			out, _ := exec.Command("pgrep", "-f", "kafka.Kafka").Output()
			f := strings.Fields(string(out))
			if len(f) != 1 {
				return 0 // none, or several brokers: whose CPU is unclear
			}
			n, _ := strconv.Atoi(f[0])
			return n
		}
		se.prefix = env.Prefix // testenv deletes them at cleanup
	} else {
		addr, dir, run := testenv.PrivateServerEnv(b, "kafka", "ZKCHAT_KAFKA_PORT",
			fmt.Sprintf("ZKCHAT_KAFKA_CONTROLLER_PORT=%d", testenv.FreePort(b)))
		se.brokers = addr
		pidfile := filepath.Join(dir, "kafka", "kafka.pid")
		se.pid = func() int {
			bs, err := os.ReadFile(pidfile)
			if err != nil {
				return 0
			}
			n, _ := strconv.Atoi(strings.TrimSpace(string(bs)))
			if n > 0 && !alive(n) {
				return 0
			}
			return n
		}
		se.restart = func() { run("restart") }
	}
	a, err := kafka.NewAdmin(kafka.Config{Brokers: se.brokers, Logger: slog.New(slog.DiscardHandler)}, "zkchat-scale")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(a.Close)
	se.admin = a.Client()
	b.Cleanup(func() { se.deleteTopics(b) })
	b.Logf("broker %s, pid %d", se.brokers, se.pid())
	return se
}

func alive(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil
}

// ensureTopics makes topics until there are n (one partition each), in
// batches, and waits until the broker lists them all.
func (se *scaleEnv) ensureTopics(b *testing.B, n int) []string {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	start := time.Now()
	made := len(se.topics)
	for len(se.topics) < n {
		var specs []ckafka.TopicSpecification
		for i := len(se.topics); i < n && len(specs) < 500; i++ {
			specs = append(specs, ckafka.TopicSpecification{Topic: fmt.Sprintf("%s%05d", se.prefix, i), NumPartitions: 1, ReplicationFactor: 1})
		}
		res, err := se.admin.CreateTopics(ctx, specs, ckafka.SetAdminOperationTimeout(2*time.Minute))
		if err != nil {
			b.Fatalf("create topics: %v", err)
		}
		for _, r := range res {
			if c := r.Error.Code(); c != ckafka.ErrNoError && c != ckafka.ErrTopicAlreadyExists {
				b.Fatalf("create %s: %v", r.Topic, r.Error)
			}
		}
		for _, s := range specs {
			se.topics = append(se.topics, s.Topic)
		}
	}
	for {
		md, err := se.admin.GetMetadata(nil, true, 30000)
		if err == nil {
			ready := 0
			for name, t := range md.Topics {
				if strings.HasPrefix(name, se.prefix) && t.Error.Code() == ckafka.ErrNoError && len(t.Partitions) == 1 && t.Partitions[0].Leader >= 0 {
					ready++
				}
			}
			if ready >= n {
				break
			}
		}
		if ctx.Err() != nil {
			b.Fatalf("topics not ready: %v", err)
		}
		time.Sleep(time.Second)
	}
	if len(se.topics) > made {
		b.Logf("made %d topics in %.1f s", len(se.topics)-made, time.Since(start).Seconds())
	}
	return se.topics[:n]
}

// makeTopics makes n more topics, apart from those of ensureTopics, and
// waits until the broker lists them.
func (se *scaleEnv) makeTopics(b *testing.B, n int) []string {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var specs []ckafka.TopicSpecification
	var names []string
	for range n {
		t := fmt.Sprintf("%sfresh%05d", se.prefix, len(se.fresh)+len(names))
		specs = append(specs, ckafka.TopicSpecification{Topic: t, NumPartitions: 1, ReplicationFactor: 1})
		names = append(names, t)
	}
	res, err := se.admin.CreateTopics(ctx, specs, ckafka.SetAdminOperationTimeout(time.Minute))
	if err != nil {
		b.Fatalf("create topics: %v", err)
	}
	for _, r := range res {
		if r.Error.Code() != ckafka.ErrNoError {
			b.Fatalf("create %s: %v", r.Topic, r.Error)
		}
	}
	se.fresh = append(se.fresh, names...)
	return names
}

// deleteTopics deletes the topics made, in batches: a broker slows down
// with thousands of topics left behind.
func (se *scaleEnv) deleteTopics(b *testing.B) {
	if se.restart != nil {
		return // a private broker goes away with its data
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for t := range slices.Chunk(append(se.topics, se.fresh...), 500) {
		if _, err := se.admin.DeleteTopics(ctx, t, ckafka.SetAdminOperationTimeout(2*time.Minute)); err != nil {
			b.Logf("delete topics: %v", err)
		}
	}
	se.topics, se.fresh = nil, nil
}

// cpuTicks is the user+system CPU time of pid (0: this process) in clock
// ticks (1/100 s), from /proc/<pid>/stat.
func cpuTicks(pid int) int64 {
	path := "/proc/self/stat"
	if pid > 0 {
		path = fmt.Sprintf("/proc/%d/stat", pid)
	}
	bs, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	s := string(bs)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return -1
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

// cpuMeter measures the CPU used by this process and by the broker from
// its start to done, in percent of one core.
type cpuMeter struct {
	at         time.Time
	self, kafk int64
	pid        int
}

func startCPU(pid int) cpuMeter {
	return cpuMeter{at: time.Now(), self: cpuTicks(0), kafk: cpuTicks(pid), pid: pid}
}

func (m cpuMeter) report(b *testing.B) (self, kafk float64) {
	el := time.Since(m.at).Seconds()
	self = float64(cpuTicks(0)-m.self) / el
	b.ReportMetric(self, "cpu-self-%")
	if m.pid > 0 && m.kafk >= 0 {
		if t := cpuTicks(m.pid); t >= 0 {
			kafk = float64(t-m.kafk) / el
			b.ReportMetric(kafk, "cpu-kafka-%")
		}
	}
	return self, kafk
}

// jstatGC is `jstat -gc pid`: the heap's columns by name (KB, counts).
func jstatGC(pid int) map[string]float64 {
	if pid <= 0 {
		return nil
	}
	out, err := exec.Command("jstat", "-gc", strconv.Itoa(pid)).Output()
	if err != nil {
		return nil
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 2 {
		return nil
	}
	names, vals := strings.Fields(lines[0]), strings.Fields(lines[len(lines)-1])
	m := map[string]float64{}
	for i, n := range names {
		if i < len(vals) {
			v, err := strconv.ParseFloat(vals[i], 64)
			if err == nil {
				m[n] = v
			}
		}
	}
	return m
}

func heapUsedMB(g map[string]float64) float64 {
	return (g["S0U"] + g["S1U"] + g["EU"] + g["OU"]) / 1024
}

// rdStats is what the benchmarks read of librdkafka's statistics
// (STATISTICS.md): gauges, window averages in microseconds, counters.
type rdStats struct {
	Name    string              `json:"name"`
	Type    string              `json:"type"`
	TS      int64               `json:"ts"`
	MsgCnt  int64               `json:"msg_cnt"`
	TxMsgs  int64               `json:"txmsgs"`
	RxMsgs  int64               `json:"rxmsgs"`
	Brokers map[string]rdBroker `json:"brokers"`
}

type rdBroker struct {
	NodeID         int32            `json:"nodeid"`
	OutbufCnt      int64            `json:"outbuf_cnt"`
	OutbufMsgCnt   int64            `json:"outbuf_msg_cnt"`
	WaitrespCnt    int64            `json:"waitresp_cnt"`
	WaitrespMsgCnt int64            `json:"waitresp_msg_cnt"`
	Req            map[string]int64 `json:"req"`
	IntLatency     rdWindow         `json:"int_latency"`
	Rtt            rdWindow         `json:"rtt"`
}

type rdWindow struct {
	Avg int64 `json:"avg"`
	P99 int64 `json:"p99"`
	Cnt int64 `json:"cnt"`
}

// statsLog keeps the statistics every client of a benchmark emits.
type statsLog struct {
	mu      sync.Mutex
	samples []statSample
}

type statSample struct {
	at time.Time
	s  rdStats
}

func (l *statsLog) add(js string) {
	var s rdStats
	if json.Unmarshal([]byte(js), &s) != nil {
		return
	}
	l.mu.Lock()
	l.samples = append(l.samples, statSample{time.Now(), s})
	l.mu.Unlock()
}

// between is the samples of clients of type typ taken in [from, to], by
// client name.
func (l *statsLog) between(typ string, from, to time.Time) map[string][]rdStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string][]rdStats{}
	for _, s := range l.samples {
		if s.s.Type == typ && !s.at.Before(from) && !s.at.After(to) {
			out[s.s.Name] = append(out[s.s.Name], s.s)
		}
	}
	return out
}

// sum adds up f over the client's brokers that have a node id (not the
// bootstrap or coordinator handles, which carry no produce or fetch).
func (s rdStats) sum(f func(rdBroker) int64) int64 {
	var n int64
	for _, b := range s.Brokers {
		if b.NodeID >= 0 {
			n += f(b)
		}
	}
	return n
}

// reportProducerStats reports what the producers' statistics show over
// [from, to]: requests in flight per handle, records per ProduceRequest,
// records queued in the client, the internal queue latency and the round
// trip.
func reportProducerStats(b *testing.B, l *statsLog, from, to time.Time) {
	by := l.between("producer", from, to)
	var inflight, waitMsgs, outbuf, outbufMsgs, queued, intLat, rtt, n float64
	var txmsgs, reqs int64
	for _, ss := range by {
		if len(ss) < 2 {
			continue
		}
		first, last := ss[0], ss[len(ss)-1]
		txmsgs += last.TxMsgs - first.TxMsgs
		reqs += last.sum(func(b rdBroker) int64 { return b.Req["Produce"] }) - first.sum(func(b rdBroker) int64 { return b.Req["Produce"] })
		for _, s := range ss[1:] {
			inflight += float64(s.sum(func(b rdBroker) int64 { return b.WaitrespCnt }))
			waitMsgs += float64(s.sum(func(b rdBroker) int64 { return b.WaitrespMsgCnt }))
			outbuf += float64(s.sum(func(b rdBroker) int64 { return b.OutbufCnt }))
			outbufMsgs += float64(s.sum(func(b rdBroker) int64 { return b.OutbufMsgCnt }))
			queued += float64(s.MsgCnt)
			for _, br := range s.Brokers {
				if br.NodeID >= 0 && br.Rtt.Cnt > 0 {
					intLat += float64(br.IntLatency.Avg)
					rtt += float64(br.Rtt.Avg)
				}
			}
			n++
		}
	}
	if n == 0 {
		b.Logf("no producer statistics")
		return
	}
	b.ReportMetric(inflight/n, "inflight-reqs/handle")
	b.ReportMetric(waitMsgs/n, "inflight-msgs/handle")
	b.ReportMetric(outbuf/n, "outbuf-reqs/handle")
	b.ReportMetric(outbufMsgs/n, "outbuf-msgs/handle")
	b.ReportMetric(queued/n, "held-msgs/handle")
	b.ReportMetric(intLat/n/1000, "int-latency-ms")
	b.ReportMetric(rtt/n/1000, "rtt-ms")
	if reqs > 0 {
		b.ReportMetric(float64(txmsgs)/float64(reqs), "msgs/request")
	}
}

// reportConsumerStats reports the consumers' fetch requests a second over
// [from, to].
func reportConsumerStats(b *testing.B, l *statsLog, from, to time.Time) {
	by := l.between("consumer", from, to)
	var fetches int64
	var secs float64
	for _, ss := range by {
		if len(ss) < 2 {
			continue
		}
		first, last := ss[0], ss[len(ss)-1]
		fetches += last.sum(func(b rdBroker) int64 { return b.Req["Fetch"] }) - first.sum(func(b rdBroker) int64 { return b.Req["Fetch"] })
		secs = max(secs, float64(last.TS-first.TS)/1e6)
	}
	if secs > 0 {
		b.ReportMetric(float64(fetches)/secs, "fetches/s")
	}
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

func envList(name, def string) []string {
	v := os.Getenv(name)
	if v == "" {
		v = def
	}
	return strings.Split(v, ",")
}

// bareProducer is a confluent-kafka-go producer with zkchat's settings
// (acks=all, idempotence, linger.ms=1), or without idempotence and with
// 1,000 requests in flight; its statistics go to stats. Its Close waits
// for its event loop.
func bareProducer(b *testing.B, se *scaleEnv, idem bool, stats *statsLog) (interface{ Close() }, sendFunc) {
	conf := ckafka.ConfigMap{"bootstrap.servers": se.brokers, "acks": "all", "enable.idempotence": idem,
		"linger.ms": 1, "go.logs.channel.enable": true}
	if stats != nil {
		conf["statistics.interval.ms"] = 1000
	}
	if !idem {
		conf["max.in.flight.requests.per.connection"] = 1000
	}
	for k, v := range kafka.GoChannelSizes {
		conf[k] = v
	}
	p, err := ckafka.NewProducer(&conf)
	if err != nil {
		b.Fatal(err)
	}
	go kafka.RouteLogs(context.Background(), p.Logs(), slog.New(slog.DiscardHandler))
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for ev := range p.Events() {
			if s, ok := ev.(*ckafka.Stats); ok && stats != nil {
				stats.add(s.String())
			}
		}
	}()
	send := func(ctx context.Context, topic string, value []byte) error {
		done := make(chan ckafka.Event, 1)
		if err := p.Produce(&ckafka.Message{TopicPartition: ckafka.TopicPartition{Topic: &topic, Partition: ckafka.PartitionAny},
			Value: value}, done); err != nil {
			return err
		}
		select {
		case ev := <-done:
			return ev.(*ckafka.Message).TopicPartition.Error
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return closer(func() { p.Close(); <-drained }), send
}

type closer func()

func (c closer) Close() { c() }

// sendFunc sends one record to topic and waits for its acknowledgement.
type sendFunc func(ctx context.Context, topic string, value []byte) error

// runSenders sends b.N records from senders goroutines, each to a random
// topic and waiting for the acknowledgement before its next, and reports
// the rate and the CPU used.
func runSenders(b *testing.B, se *scaleEnv, topics []string, senders int, send sendFunc, stats *statsLog) {
	// Each topic known to the producers first.
	if n := sendEach(topics, senders, send); n > 0 {
		b.Fatalf("%d sends failed", n)
	}
	time.Sleep(2 * time.Second) // a statistics sample before the timed part
	from := time.Now()
	cpu := startCPU(se.pid())
	b.ResetTimer()
	failed := sendAll(b.N, topics, senders, send)
	b.StopTimer()
	to := time.Now()
	testenv.ReportRate(b, "msgs/s", b.N)
	cpu.report(b)
	if stats != nil {
		time.Sleep(1100 * time.Millisecond) // the sample that closes the window
		reportProducerStats(b, stats, from, to.Add(time.Second))
	}
	if failed > 0 {
		b.Errorf("%d sends failed", failed)
	}
}

// sendAll sends n records to random topics from senders goroutines; it
// returns how many failed.
func sendAll(n int, topics []string, senders int, send sendFunc) int64 {
	return sendN(int64(n), senders, send, func(int64) string { return topics[rand.IntN(len(topics))] })
}

// sendEach sends one record to each topic.
func sendEach(topics []string, senders int, send sendFunc) int64 {
	return sendN(int64(len(topics)), senders, send, func(i int64) string { return topics[i] })
}

func sendN(n int64, senders int, send sendFunc, pick func(i int64) string) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var next, failed atomic.Int64
	for range senders {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < n; i = next.Add(1) - 1 {
				if err := send(ctx, pick(i), []byte("hello from the scale benchmark")); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return failed.Load()
}

// BenchmarkScaleProduce: one process sends to 1,000 topics (one receiver
// each) from many goroutines: a bare confluent-kafka-go producer with
// zkchat's settings (the floor of one handle), the same without
// idempotence (no cap of 5 requests in flight), and Clients with 1 to 8
// producer handles.
func BenchmarkScaleProduce(b *testing.B) {
	se := newScaleEnv(b)
	topics := se.ensureTopics(b, envInt("ZKCHAT_SCALE_TOPICS", 1000))
	senders := envInt("ZKCHAT_SCALE_SENDERS", 1000)
	// A fresh broker's JVM compiles its hot paths during the first
	// seconds of traffic: warm it up so that the first variant is not
	// measured on a cold one.
	func() {
		p, send := bareProducer(b, se, true, nil)
		defer p.Close()
		t0 := time.Now()
		n := envInt("ZKCHAT_SCALE_WARMUP", 200000)
		sendAll(n, topics, senders, send)
		b.Logf("broker warm-up: %d records in %.1f s", n, time.Since(t0).Seconds())
	}()
	for _, idem := range []bool{true, false} {
		name := "bare-idempotent"
		if !idem {
			name = "bare-not-idempotent"
		}
		b.Run(name, func(b *testing.B) {
			var stats statsLog
			p, send := bareProducer(b, se, idem, &stats)
			defer p.Close()
			runSenders(b, se, topics, senders, send, &stats)
		})
	}
	for _, s := range envList("ZKCHAT_SCALE_PRODUCERS", "1,2,4,8") {
		n, _ := strconv.Atoi(s)
		b.Run(fmt.Sprintf("producers=%d", n), func(b *testing.B) {
			var stats statsLog
			cfg := kafka.Config{Brokers: se.brokers, Topics: protocol.Topics{Prefix: se.prefix}, Logger: slog.New(slog.DiscardHandler)}
			if !applyKnobs(&cfg, scaleKnobs{producers: n}) {
				b.Skip("not supported by this version")
			}
			k, err := kafka.NewWithStats(cfg, time.Second, stats.add)
			if err != nil {
				b.Fatal(err)
			}
			defer k.Close()
			runSenders(b, se, topics, senders, func(ctx context.Context, topic string, value []byte) error {
				_, err := k.Produce(ctx, topic, nil, value)
				return err
			}, &stats)
		})
	}
}

// BenchmarkScaleIdle: readers open on thousands of idle topics for
// ZKCHAT_SCALE_IDLE_SECONDS: the CPU of this process and of the broker,
// the broker's heap (jstat), the consumers' fetches; then how long a record
// takes to reach an open idle reader (live-*), and a newly opened reader
// its first record (open-*).
func BenchmarkScaleIdle(b *testing.B) {
	se := newScaleEnv(b)
	secs := envInt("ZKCHAT_SCALE_IDLE_SECONDS", 30)
	for _, ts := range envList("ZKCHAT_SCALE_IDLE_TOPICS", "1000,5000") {
		n, _ := strconv.Atoi(ts)
		b.Run("topics="+ts, func(b *testing.B) {
			for _, c := range envList("ZKCHAT_SCALE_IDLE", "none,all/50ms,250/500ms,500/500ms") {
				shard, wait, _ := strings.Cut(c, "/")
				if c == "none" { // the broker with the topics and no reader: the baseline
					shard, wait = "none", "0s"
				}
				kn := scaleKnobs{shard: 1 << 30}
				if shard != "all" {
					kn.shard, _ = strconv.Atoi(shard) // "none": 0
				}
				kn.wait, _ = time.ParseDuration(wait)
				b.Run("shard="+shard+",wait="+wait, func(b *testing.B) {
					if se.pid() == 0 && se.restart != nil {
						b.Log("the broker is gone (heap?): restarting it")
						se.restart()
					}
					benchIdle(b, se, se.ensureTopics(b, n), kn, secs)
				})
			}
		})
	}
}

func benchIdle(b *testing.B, se *scaleEnv, topics []string, kn scaleKnobs, secs int) {
	var stats statsLog
	cfg := kafka.Config{Brokers: se.brokers, Topics: protocol.Topics{Prefix: se.prefix}, Logger: slog.New(slog.DiscardHandler)}
	if !applyKnobs(&cfg, kn) {
		b.Skip("not supported by this version")
	}
	if pid := se.pid(); pid > 0 {
		_ = exec.Command("jcmd", strconv.Itoa(pid), "GC.run").Run() // the same start for every configuration
	}
	// Statistics every 5 s: librdkafka's JSON lists every partition, and
	// making and parsing it every second showed in this process's CPU.
	k, err := kafka.NewWithStats(cfg, 5*time.Second, stats.add)
	if err != nil {
		b.Fatal(err)
	}
	defer k.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	none := kn.shard == 0
	if none {
		topics = nil
	}
	start := time.Now()
	readers := make([]kafka.MessageReader, len(topics))
	var next atomic.Int64
	var wg sync.WaitGroup
	var openErrs atomic.Int64
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(len(topics)); i = next.Add(1) - 1 {
				r, err := k.OpenReader(ctx, topics[i], topics[i])
				if err != nil {
					if openErrs.Add(1) <= 5 {
						b.Logf("open reader %s: %v", topics[i], err)
					}
					continue
				}
				readers[i] = r
			}
		}()
	}
	wg.Wait()
	opened := time.Since(start)
	defer func() {
		for _, r := range readers {
			if r != nil {
				r.Close()
			}
		}
	}()
	if n := openErrs.Load(); n > 0 {
		b.Fatalf("%d readers failed to open", n)
	}
	b.ReportMetric(opened.Seconds(), "open-all-s")
	b.ReportMetric(float64(shardCount(k)), "consumers")
	time.Sleep(5 * time.Second)
	pid := se.pid()
	g0 := jstatGC(pid)
	cpu := startCPU(pid)
	from := time.Now()
	var heapMax, oldMax float64
	for end := time.Now().Add(time.Duration(secs) * time.Second); time.Now().Before(end); {
		time.Sleep(min(5*time.Second, time.Until(end)))
		if g := jstatGC(se.pid()); g != nil {
			heapMax, oldMax = max(heapMax, heapUsedMB(g)), max(oldMax, g["OU"]/1024)
		}
	}
	to := time.Now()
	_, kafkaCPU := cpu.report(b)
	g1 := jstatGC(se.pid())
	// What the broker's old generation keeps after a full collection: the
	// live set, without the garbage that old-max may count.
	if pid := se.pid(); pid > 0 && exec.Command("jcmd", strconv.Itoa(pid), "GC.run").Run() == nil {
		if g := jstatGC(pid); g != nil {
			b.ReportMetric(g["OU"]/1024, "old-after-gc-MB")
		}
	}
	alive := 0.0
	if se.pid() > 0 {
		alive = 1
	}
	b.ReportMetric(alive, "broker-alive")
	if g0 != nil && g1 != nil {
		b.ReportMetric(heapMax, "heap-max-MB")
		b.ReportMetric(oldMax, "old-max-MB")
		b.ReportMetric(g1["FGC"]-g0["FGC"], "full-gcs")
		b.ReportMetric(g1["YGC"]-g0["YGC"], "young-gcs")
	}
	time.Sleep(1100 * time.Millisecond)
	reportConsumerStats(b, &stats, from, to.Add(time.Second))
	b.Logf("%d topics, shard %d, wait %v: %d consumers; opened in %.1f s; kafka %.0f %% of a core; heap max %.0f MB (old %.0f MB)",
		len(topics), kn.shard, kn.wait, shardCount(k), opened.Seconds(), kafkaCPU, heapMax, oldMax)
	if alive == 0 || none {
		return
	}
	// Probe failures are logged, not failed: a broker that runs out of
	// heap during them would hide the numbers above.
	probeErr := func(what string, err error) {
		b.Logf("probe %s: %v", what, err)
		b.ReportMetric(1, "probe-failed")
	}
	// live-*: a record to an open idle reader.
	var live, open []time.Duration
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer pcancel()
	for i := range 10 {
		j := rand.IntN(len(topics))
		want := fmt.Sprintf("live %d %d", i, time.Now().UnixNano())
		t0 := time.Now()
		if _, err := k.Produce(pctx, topics[j], nil, []byte(want)); err != nil {
			probeErr("produce", err)
			return
		}
		// Records of earlier configurations' probes come first.
		for m, err := readers[j].Next(pctx); m.Text != want; m, err = readers[j].Next(pctx) {
			if err != nil {
				probeErr("next", err)
				return
			}
		}
		live = append(live, time.Since(t0))
	}
	// open-*: a reader opened on a topic holding one record, until the
	// record comes: the metadata, the committed offset, the assignment and
	// the first fetch that includes the partition.
	testenv.ReportLatency(b, "live-", live)
	fresh := se.makeTopics(b, 10)
	for _, t := range fresh {
		if _, err := k.Produce(pctx, t, nil, []byte("backlog")); err != nil {
			probeErr("produce", err)
			return
		}
	}
	time.Sleep(time.Second)
	for _, t := range fresh {
		t0 := time.Now()
		r, err := k.OpenReader(pctx, t, t)
		if err != nil {
			probeErr("open", err)
			return
		}
		_, err = r.Next(pctx)
		open = append(open, time.Since(t0))
		r.Close()
		if err != nil {
			probeErr("next after open", err)
			return
		}
	}
	testenv.ReportLatency(b, "open-", open)
	// catchup-*: a reader opened on a backlog of 2,000 records, on a
	// consumer whose other partitions are idle: paused at 256 records
	// queued, it is resumed at 128, and a resumed partition waits for the
	// consumer's outstanding fetch.
	const backlog = 2000
	bt := se.makeTopics(b, 1)[0]
	if n := sendN(backlog, 50, func(ctx context.Context, topic string, value []byte) error {
		_, err := k.Produce(ctx, topic, nil, value)
		return err
	}, func(int64) string { return bt }); n > 0 {
		probeErr("backlog", fmt.Errorf("%d sends failed", n))
		return
	}
	t0 := time.Now()
	r, err := k.OpenReader(pctx, bt, bt)
	if err != nil {
		probeErr("open backlog", err)
		return
	}
	defer r.Close()
	for i := range backlog {
		if _, err := r.Next(pctx); err != nil {
			probeErr(fmt.Sprintf("backlog record %d", i), err)
			return
		}
	}
	b.ReportMetric(backlog/time.Since(t0).Seconds(), "catchup-msgs/s")
}

// BenchmarkScaleEmptyConsumers: what consumers left without readers cost
// (Clients keeps them until Close): ZKCHAT_SCALE_EMPTY (20) consumers, made
// by one reader each and emptied, for ZKCHAT_SCALE_IDLE_SECONDS; then the
// same Clients with its readers open again, for comparison.
func BenchmarkScaleEmptyConsumers(b *testing.B) {
	se := newScaleEnv(b)
	n := envInt("ZKCHAT_SCALE_EMPTY", 20)
	topics := se.ensureTopics(b, n)
	cfg := kafka.Config{Brokers: se.brokers, Topics: protocol.Topics{Prefix: se.prefix}, Logger: slog.New(slog.DiscardHandler)}
	if !applyKnobs(&cfg, scaleKnobs{shard: 1}) {
		b.Skip("not supported by this version")
	}
	k, err := kafka.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer k.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	open := func() []kafka.MessageReader {
		var rs []kafka.MessageReader
		for _, t := range topics {
			r, err := k.OpenReader(ctx, t, t)
			if err != nil {
				b.Fatal(err)
			}
			rs = append(rs, r)
		}
		return rs
	}
	secs := time.Duration(envInt("ZKCHAT_SCALE_IDLE_SECONDS", 30)) * time.Second
	for _, r := range open() {
		r.Close()
	}
	idle := func(b *testing.B) {
		time.Sleep(2 * time.Second)
		cpu := startCPU(se.pid())
		time.Sleep(secs)
		cpu.report(b)
		b.ReportMetric(float64(shardCount(k)), "consumers")
	}
	b.Run("empty", idle)
	rs := open()
	defer func() {
		for _, r := range rs {
			r.Close()
		}
	}()
	b.Run("one-idle-reader-each", idle)
}
