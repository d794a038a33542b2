package kafka

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/zkchat/zkchat/internal/ratelog"
	"github.com/zkchat/zkchat/protocol"
)

// Config configures the per-process Kafka clients.
type Config struct {
	Brokers string // bootstrap servers, "host:port,..."
	Topics  protocol.Topics
	Logger  *slog.Logger
	// Extra librdkafka properties for every client (security settings, say).
	Extra map[string]string
	// Auth, if set, makes every client authenticate with SASL (auth.go).
	Auth *Auth
	// ReaderGroup is the shared consumers' group.id ("": the shared
	// sharedReaderGroup). The consumers never join or commit to it, but
	// librdkafka looks up its coordinator, which the brokers' ACLs check
	// (DESCRIBE): a client authenticated as one user's principal, which
	// may use only that user's group, names that group here.
	ReaderGroup string
	// Producers is the number of producer handles sends are spread over
	// (0: DefaultProducers). A topic always goes through the same one.
	Producers int
	// ReaderShardSize is the most topics one consumer handle reads
	// (0: DefaultReaderShardSize); more open readers get more consumers.
	ReaderShardSize int
	// FetchWait is the consumers' fetch.wait.max.ms (0: DefaultFetchWait).
	FetchWait time.Duration
}

// DefaultProducers is Config.Producers' default. librdkafka puts one
// partition in each ProduceRequest, so with a topic per receiver a request
// carries about 2 records, and one handle's records wait in its queue
// (40-120 ms at 1,000 senders; its statistics showed 2-3.6 requests in
// flight of the 5 an idempotent producer may have: its own request cycle
// is the limit, not that cap). On the development machine (2
// cores, broker on loopback) 1 handle sent 12,000-23,000 records a second
// depending on the machine's load, 4 handles 21,000-30,000, 8 handles
// 27,000-30,000, the last CPU-bound (scale_bench_test.go, doc/scaling.md);
// with a broker a network round trip away one handle carries less. A handle
// costs a few threads and a connection.
const DefaultProducers = 8

// DefaultReaderShardSize is Config.ReaderShardSize's default. A consumer's
// every fetch lists all of its partitions (librdkafka has no incremental
// fetch sessions) and librdkafka matches each partition of a reply to its
// topic by a linear scan; the broker keeps each waiting fetch under every
// partition it names until its purgatory is purged (every 1,000 completed
// operations), so its heap grows with the partitions per fetch. Measured
// with 5,000 idle readers (500 ms wait, 1 GB broker heap): 250 topics a
// consumer, broker heap at most 545 MB; 500, 645 MB; 1,000, 750 MB; one
// consumer for all (50 ms), 990 MB, and 70 % of a core in this process.
const DefaultReaderShardSize = 250

// DefaultFetchWait is Config.FetchWait's default: how long the broker holds
// a fetch with nothing to return. A record written to a partition in a
// waiting fetch completes it at once (an open reader gets it in a few ms
// whatever the wait); the wait delays a partition assigned (a reader
// opened: its first record comes after about one wait) or resumed (a
// reader catching up on a backlog) while a fetch is outstanding, and any
// other request on the consumer's connection. Idle, each consumer sends a
// fetch per wait: with 5,000 idle readers, 250 to a consumer, the broker
// used 11.3 % of a core at 500 ms (doc/benchmarks-kafka.md; 24.7 % with
// one consumer at 50 ms); with a bridge's 10,000 idle users (40
// consumers), 30-34 % at 500 ms, 16.8 % at 1 s (doc/scaling.md).
const DefaultFetchWait = time.Second

// readerQueueKiB is the consumers' queued.max.messages.kbytes: how much
// one consumer fetches ahead of its poll loop. librdkafka's default, 64 MiB
// per consumer, let one consumer hold a whole backlog in C memory (10,000
// records of 1 KiB: the bridge's RSS grew 28-32 MiB delivering it, against
// a bound of 32), and with a consumer per 250 readers it allowed 2.5 GiB at
// 10,000 online. The poll loop hands records on to the readers' own
// buffers at once, so the queue only smooths one fetch: 2 MiB holds
// 20,000 records of 100 bytes.
const readerQueueKiB = 2048

// readerFetchMaxBytes is the consumers' fetch.max.bytes (librdkafka's
// default is 50 MiB): one fetch reply is at most this much, on top of
// readerQueueKiB. It must be at least message.max.bytes (1 MB).
const readerFetchMaxBytes = 2 << 20

// sharedReaderGroup is the shared consumers' group.id.
const sharedReaderGroup = "zkchat-shared-reader"

// Clients holds the Kafka clients one process shares between all its workers:
// Config.Producers idempotent producer handles, one admin client, and
// consumer handles (shards) whose assignments follow the readers that are
// open. A worker never has a client of its own: each costs about four
// threads before it connects.
//
// Producers: a topic's records always go through the same handle (a hash
// of the topic), so each receiver's records keep the order they were sent
// in; handles only multiply the requests in flight (one connection each).
// Each handle is replaced on its own after a fatal error (replaceProducer).
//
// Consumers: each reader's topic is assigned to one consumer, which holds
// at most Config.ReaderShardSize topics (readers and readers being opened).
// A reader goes to the least loaded consumer with room; a consumer is made
// when all are full, and kept until Close even if its readers all go: an
// empty consumer sends no fetches (20 empty ones cost this process 2 % of a
// core and the broker about 1 %), with least-loaded placement one rarely
// empties, and keeping them means no consumer is ever closed under a call.
// Each consumer has its own poll loop, which hands records only to the
// readers of its own consumer; a reader of a topic closed on a consumer a
// moment ago is not handed records there before that consumer's poll loop
// is past the close (OpenReader, afterClose).
//
// The shared consumers never join a consumer group. They read by manual
// assignment and each worker's position is committed under that worker's
// own group with the admin API, so a group that has no live member is all
// it needs.
//
// Locks: mu (the readers by topic, the consumers, their load and recent
// closes) is a leaf: no lock is taken under it and no librdkafka call made,
// except making a consumer when all are full. A
// Reader's mu is held across the librdkafka calls that change its
// assignment or pause state, and a shard's mu (its readers) is a leaf taken
// alone; neither is ever held with Clients.mu. A producerSlot's mu is taken
// alone and held while a record is queued, so that none is queued on a
// producer being replaced. groupMu (the group offsets handle, groups.go)
// is a leaf too. No lock is held across a wait for the brokers.
type Clients struct {
	cfg       Config
	log       *slog.Logger
	admin     *ckafka.AdminClient
	producers []*producerSlot // fixed at New
	// producerConf makes every producer, the replacements too.
	producerConf ckafka.ConfigMap
	// consumerConf makes every shard's consumer.
	consumerConf ckafka.ConfigMap
	// adminConsumer carries admin and never reads: see New.
	adminConsumer *ckafka.Consumer

	mu      sync.Mutex
	readers map[string]*Reader // by topic, from OpenReader's start to Close's end
	shards  []*shard
	// partitionCheck is how often each consumer looks for partitions
	// added to its readers' topics (reader.go); set once, before any
	// reader opens.
	partitionCheck time.Duration
	// topicWait answers WaitTopic (topicwait.go).
	topicWait *topicWaiter

	ctx    context.Context // ends at Close: the poll, partition and log loops, the topic waiter
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool
	// calls counts the librdkafka calls in flight (see use): Close waits
	// for them before it destroys the clients, which confluent-kafka-go
	// does not (a call racing Close uses freed memory).
	calls atomic.Int64
	noisy *ratelog.Logger // client errors, once a minute per kind
	// lastErr is the last client-level error librdkafka reported (an
	// authentication failure, a listener that speaks another protocol):
	// a failed call only says "transport failure", this says why.
	lastErr atomic.Pointer[clientError]
	// onStats, if set, gets librdkafka's statistics of every producer and
	// consumer, as JSON (benchmarks).
	onStats func(string)
	errs    errorCounts // every client error, as logClientError sees it
	// group is the handle of the group offset calls (groups.go): nil
	// until the first, and after a NOT_COORDINATOR retired it. groupMu
	// guards it, a leaf; groupsMade counts the handles made (tests).
	groupMu    sync.Mutex
	group      *groupHandle
	groupsMade atomic.Int64
}

// producerSlot is one producer handle. mu is held while a record is queued
// on p and while replaceProducer swaps p, so no record is queued on a
// producer after it was replaced.
type producerSlot struct {
	mu sync.Mutex
	p  *ckafka.Producer
	// downSince is when the producer said all its brokers were down (unix
	// ns), 0 once a record was acknowledged since; purgedDown is set while
	// downLoop's purges of such a producer's queue are reported, so that
	// their ErrPurgeQueue reads as "not sent: Kafka is unreachable" rather
	// than as a failed producer's.
	downSince  atomic.Int64
	purgedDown atomic.Bool
	// upDrops counts the producer's broker connections lost after they
	// were up (librdkafka's log: "... (after Nms in state UP)"): a record
	// goes out only on such a connection. One queued while the brokers
	// were down, purged before any connection was up and lost, never left;
	// any other may have been sent, then queued again for a retry. (A
	// limit: librdkafka leaves out of its log a connection error identical
	// to the one before, so a second identical loss within its suppression
	// window would go uncounted.)
	upDrops atomic.Int64
}

// downGrace is how long records wait in a producer's queue while all its
// brokers are down before downLoop purges them: they never left, so their
// senders hear "not sent" within seconds rather than "maybe not sent" after
// the delivery timeout. Records already sent stay until their answer or
// the timeout: those may have been written.
const downGrace = 5 * time.Second

// downLoop purges the queues of the producers whose brokers have all been
// down for downGrace, every second until ctx ends.
func (k *Clients) downLoop(ctx context.Context) {
	defer k.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, slot := range k.producers {
			since := slot.downSince.Load()
			if since == 0 || time.Since(time.Unix(0, since)) < downGrace {
				continue
			}
			slot.mu.Lock()
			if !k.closed.Load() {
				slot.purgedDown.Store(true)
				if err := slot.p.Purge(ckafka.PurgeQueue | ckafka.PurgeNonBlocking); err != nil {
					k.noisy.Log(slog.LevelWarn, "purge", "kafka producer: purging records queued while Kafka is unreachable failed", "err", err)
				}
			}
			slot.mu.Unlock()
		}
	}
}

type clientError struct {
	err ckafka.Error
	at  time.Time
}

// explain adds the client's last error, if recent, to err, a failed call:
// wrapping protocol.ErrKafkaAuth when the brokers refused the credentials.
func (k *Clients) explain(err error) error {
	last := k.lastErr.Load()
	var ke ckafka.Error
	if err != nil && k.cfg.Auth == nil && errors.As(err, &ke) && ke.Code() == ckafka.ErrTransport &&
		(last == nil || last.err.Code() == ckafka.ErrTransport) {
		// A SASL listener drops a client that does not authenticate.
		if last != nil {
			err = fmt.Errorf("%w (client error: %v)", err, last.err)
		}
		return fmt.Errorf("%w (if the brokers require SASL, set %s or %s)", err, EnvAuth, EnvAuthFile)
	}
	if err == nil || last == nil || time.Since(last.at) > time.Minute {
		return err
	}
	if last.err.Code() == ckafka.ErrAuthentication {
		return fmt.Errorf("%w: %v (%v)", protocol.ErrKafkaAuth, last.err, err)
	}
	return fmt.Errorf("%w (client error: %v)", err, last.err)
}

// logClientError logs a librdkafka client error, once per message and
// code a minute (ratelog): librdkafka reports "all brokers down" several
// times a second while Kafka is away.
func (k *Clients) logClientError(msg string, e ckafka.Error) {
	k.errs.add(e)
	k.noisy.Log(slog.LevelWarn, msg+"\x00"+e.Code().String(), msg, "err", e.Error(), "code", e.Code().String())
}

// GoChannelSizes are the Go channel buffers of a confluent-kafka-go
// producer. The defaults (a million each) are allocated when the producer is
// made, 23 MB of live heap per producer, which the garbage collector doubles.
// zkchat never uses ProduceChannel (each record has its own delivery
// channel) and drains Events() at once, so small buffers never fill.
var GoChannelSizes = map[string]ckafka.ConfigValue{
	"go.events.channel.size":  1000,
	"go.produce.channel.size": 1000,
}

// New creates the shared clients. It does not wait for the brokers: the
// first operation that needs them reports an unreachable cluster. The
// producers and the admin client are made at once, the first consumer when
// the first reader opens.
func New(cfg Config) (*Clients, error) { return newClients(cfg, 0, nil) }

// newClients is New; with onStats, librdkafka's statistics of every
// producer and consumer go to it every statsEvery.
func newClients(cfg Config, statsEvery time.Duration, onStats func(string)) (*Clients, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Producers <= 0 {
		cfg.Producers = DefaultProducers
	}
	if cfg.ReaderShardSize <= 0 {
		cfg.ReaderShardSize = DefaultReaderShardSize
	}
	if cfg.FetchWait <= 0 {
		cfg.FetchWait = DefaultFetchWait
	}
	pc := producerConfig(cfg, ckafka.ConfigMap{
		"client.id":          "zkchat",
		"acks":               "all",
		"enable.idempotence": true,
		// Send at once: chat latency matters more than batching.
		"linger.ms":           1,
		"delivery.timeout.ms": int(deliveryTimeout / time.Millisecond),
	})
	cc := clientConfig(cfg, ckafka.ConfigMap{
		"client.id": "zkchat-reader",
		// Needed by librdkafka for offsets APIs; never joined or committed to.
		"group.id":                 cmp.Or(cfg.ReaderGroup, sharedReaderGroup),
		"enable.auto.commit":       false,
		"enable.auto.offset.store": false,
		"auto.offset.reset":        "earliest",
		// See DefaultFetchWait.
		"fetch.wait.max.ms":    max(1, int(cfg.FetchWait/time.Millisecond)),
		"enable.partition.eof": false,
		// See readerQueueKiB.
		"queued.max.messages.kbytes":         readerQueueKiB,
		"fetch.max.bytes":                    readerFetchMaxBytes,
		"topic.metadata.refresh.interval.ms": 10000,
		// librdkafka logs to stderr unless its logs go to a channel;
		// logLoop routes them to slog.
		"go.logs.channel.enable": true,
	})
	if onStats != nil {
		pc["statistics.interval.ms"] = int(statsEvery / time.Millisecond)
		cc["statistics.interval.ms"] = int(statsEvery / time.Millisecond)
	}
	var ps []*ckafka.Producer
	closeAll := func() {
		for _, p := range ps {
			p.Close()
		}
	}
	for range cfg.Producers {
		p, err := ckafka.NewProducer(&pc)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("kafka producer: %w", err)
		}
		ps = append(ps, p)
	}
	// The admin client gets connections of its own: Kafka answers one
	// request per connection at a time, and an offset commit (5 ms of
	// coordinator linger) would hold up the produce requests behind it.
	// It is made from a consumer that never reads (its logs and errors are
	// routed by adminLoop), not from a producer: librdkafka 2.11 answers a
	// NOT_COORDINATOR in ListConsumerGroupOffsets by queueing a coordinator
	// query on the client's consumer group, which a producer has not, and
	// crashes (librdkafka issue #5040; seen here 1 run in 15 of
	// TestCLIUserKafkaPrincipals, right after a fresh broker's start).
	acc := clientConfig(cfg, ckafka.ConfigMap{
		"client.id":              "zkchat-admin",
		"group.id":               cmp.Or(cfg.ReaderGroup, sharedReaderGroup),
		"enable.auto.commit":     false,
		"go.logs.channel.enable": true,
	})
	ac, err := ckafka.NewConsumer(&acc)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("kafka admin: %w", err)
	}
	a, err := ckafka.NewAdminClientFromConsumer(ac)
	if err != nil {
		_ = ac.Close()
		closeAll()
		return nil, fmt.Errorf("kafka admin: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	k := &Clients{cfg: cfg, log: cfg.Logger, noisy: ratelog.New(cfg.Logger, time.Minute),
		producerConf: pc, consumerConf: cc, admin: a, adminConsumer: ac,
		readers: map[string]*Reader{}, partitionCheck: partitionCheck, ctx: ctx, cancel: cancel, onStats: onStats}
	k.topicWait = newTopicWaiter(k)
	k.wg.Add(2)
	go k.adminLoop(ctx)
	go k.logLoop(ctx, ac.Logs())
	for _, p := range ps {
		slot := &producerSlot{p: p}
		k.producers = append(k.producers, slot)
		k.wg.Add(2)
		go k.drainProducerEvents(slot, p)
		go k.producerLogLoop(ctx, slot, p.Logs())
	}
	k.wg.Add(1)
	go k.downLoop(ctx) // after k.producers is filled: it reads the slice
	return k, nil
}

// closeWarnAfter is how long Close waits for calls in flight before it
// says so (and again after each such interval); a variable for the tests.
var closeWarnAfter = 20 * time.Second

// errClosed: a call after Close.
var errClosed = errors.New("kafka clients closed")

// use runs f, a call into librdkafka's admin client or a consumer, unless
// Close has begun. (Close sets closed before it reads calls, and use
// counts itself before it reads closed: a call either is waited for or
// does not start.)
func (k *Clients) use(f func() error) error {
	k.calls.Add(1)
	defer k.calls.Add(-1)
	if k.closed.Load() {
		return errClosed
	}
	return f()
}

// producerFor is the producer slot of topic: always the same one, so that
// a topic's records are queued, sent and written in order.
func (k *Clients) producerFor(topic string) *producerSlot {
	h := fnv.New32a()
	_, _ = h.Write([]byte(topic))
	return k.producers[h.Sum32()%uint32(len(k.producers))]
}

func (s *producerSlot) current() *ckafka.Producer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p
}

// replaceProducer puts a new producer in slot in place of old after old
// raised a fatal error. A fatal error (an idempotence state librdkafka
// cannot recover, such as an out-of-order sequence the broker reports)
// leaves a producer refusing every record for good: without a new one, a
// bridge could not send again (to the topics of that slot) until it was
// restarted. Records old still holds fail (their senders are told the
// outcome is unknown): old is flushed, which hands every record a delivery
// report, then closed, in the background. A second call for the same old
// does nothing. The other slots are not touched: a topic's records still go
// through one producer at a time, in order.
func (k *Clients) replaceProducer(slot *producerSlot, old *ckafka.Producer, why error) {
	slot.mu.Lock()
	defer slot.mu.Unlock()
	if slot.p != old || k.closed.Load() {
		return
	}
	if f := old.GetFatalError(); f != nil {
		why = f // what happened, where why may only say "Local: Fatal error"
	}
	p, err := ckafka.NewProducer(&k.producerConf)
	if err != nil {
		k.log.Error("kafka producer: fatal error, and a new producer failed; sends keep failing", "err", why, "new_err", err)
		return
	}
	k.log.Error("kafka producer: fatal error; replaced by a new producer", "err", why)
	slot.p = p
	k.wg.Add(3)
	go k.drainProducerEvents(slot, p)
	go k.producerLogLoop(context.Background(), slot, p.Logs()) // ends when Close closes p
	go func() {
		defer k.wg.Done()
		// Close drops the delivery reports still to come, and their
		// senders would wait for them for ever: flush first (a failed
		// producer fails its records at once; the delivery timeout bounds
		// it anyway).
		if n := old.Flush(int(deliveryTimeout / time.Millisecond)); n > 0 {
			k.log.Warn("kafka producer replaced: records of the old one without a delivery report", "count", n)
		}
		old.Close() // ends its event and log loops
	}()
}

// deliveryTimeout is the producer's delivery.timeout.ms: after it every
// record has its delivery report.
const deliveryTimeout = 30 * time.Second

// Topics returns the topic naming in use.
func (k *Clients) Topics() protocol.Topics { return k.cfg.Topics }

// Close stops the poll loops and closes the clients. Records not yet
// acknowledged are waited for up to 10 s (every producer at once).
func (k *Clients) Close() {
	if !k.closed.CompareAndSwap(false, true) {
		return
	}
	k.cancel()
	// Calls in flight end within their own timeouts (15 s at most). Close
	// waits for them however long: destroying the clients under a call is
	// a use-after-free in librdkafka, worse than a slow exit.
	for warn := time.Now().Add(closeWarnAfter); k.calls.Load() > 0; {
		if time.Now().After(warn) {
			k.log.Warn("kafka close: still waiting for calls in flight", "calls", k.calls.Load())
			warn = time.Now().Add(closeWarnAfter)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// No consumer is made from here on (OpenReader checks closed under mu).
	k.mu.Lock()
	shards := k.shards
	k.mu.Unlock()
	var ps []*ckafka.Producer
	for _, slot := range k.producers {
		ps = append(ps, slot.current()) // no enqueue and no replaceProducer from here on (closed is set)
	}
	var unacked atomic.Int64
	var flushes sync.WaitGroup
	for _, p := range ps {
		flushes.Go(func() { unacked.Add(int64(p.Flush(10000))) })
	}
	flushes.Wait()
	if n := unacked.Load(); n > 0 {
		k.log.Warn("kafka close: messages not acknowledged", "count", n)
	}
	k.admin.Close()
	k.groupMu.Lock()
	g := k.group
	k.group = nil
	k.groupMu.Unlock()
	if g != nil {
		g.close(k.log) // no call in flight: waited for above
	}
	for _, p := range ps {
		p.Close() // closes Events() and Logs(), which ends their loops
	}
	k.wg.Wait() // the poll loops too: no consumer is polled any more
	if err := k.adminConsumer.Close(); err != nil {
		k.log.Warn("kafka admin close", "err", err)
	}
	for _, s := range shards {
		if err := s.c.Close(); err != nil {
			k.log.Warn("kafka consumer close", "err", err)
		}
	}
}

// drainProducerEvents reads the producer's event channel: delivery reports go
// to per-message channels, but errors land here, and an undrained channel
// blocks librdkafka.
func (k *Clients) drainProducerEvents(slot *producerSlot, p *ckafka.Producer) {
	defer k.wg.Done()
	for ev := range p.Events() {
		switch e := ev.(type) {
		case ckafka.Error:
			if e.Code() != ckafka.ErrAllBrokersDown { // says less than the error before it
				k.lastErr.Store(&clientError{e, time.Now()})
			} else {
				slot.downSince.CompareAndSwap(0, time.Now().UnixNano())
			}
			if e.IsFatal() {
				k.replaceProducer(slot, p, e) // logs it, unless closing
			}
			k.logClientError("kafka producer", e)
		case *ckafka.Message:
			k.log.Warn("kafka delivery report without a waiter", "topic", topicOf(e))
		case *ckafka.Stats:
			if k.onStats != nil {
				k.onStats(e.String())
			}
		}
	}
}

// adminLoop serves the admin client's consumer, which never reads (see
// pollIdle), until ctx ends.
func (k *Clients) adminLoop(ctx context.Context) {
	defer k.wg.Done()
	k.pollIdle(ctx, k.adminConsumer, "kafka admin")
}

// logLoop routes one client's librdkafka log lines to slog.
func (k *Clients) logLoop(ctx context.Context, logs chan ckafka.LogEvent) {
	defer k.wg.Done()
	RouteLogs(ctx, logs, k.log)
}

// producerLogLoop is logLoop for slot's producer: it also counts the
// connections lost after they were up (upDrops).
func (k *Clients) producerLogLoop(ctx context.Context, slot *producerSlot, logs chan ckafka.LogEvent) {
	defer k.wg.Done()
	routeLogs(ctx, logs, k.log, func(l ckafka.LogEvent) {
		if l.Tag == "FAIL" && strings.Contains(l.Message, "in state UP") {
			slot.upDrops.Add(1)
		}
	})
}

// RouteLogs writes librdkafka's log lines (a client made with
// go.logs.channel.enable) to log until ctx ends or logs is closed.
// librdkafka's levels are syslog's: 0-2 become errors, the rest debug.
func RouteLogs(ctx context.Context, logs chan ckafka.LogEvent, log *slog.Logger) {
	routeLogs(ctx, logs, log, nil)
}

// routeLogs is RouteLogs that also shows each line to observe, if set.
func routeLogs(ctx context.Context, logs chan ckafka.LogEvent, log *slog.Logger, observe func(ckafka.LogEvent)) {
	for {
		select {
		case l, ok := <-logs:
			if !ok {
				return
			}
			if observe != nil {
				observe(l)
			}
			// Only critical lines above debug: librdkafka also reports its
			// errors as events, which the owners log once per condition.
			level := slog.LevelDebug
			if l.Level <= 2 {
				level = slog.LevelError
			}
			log.Log(ctx, level, l.Message, "component", "librdkafka", "client", l.Name, "tag", l.Tag)
		case <-ctx.Done():
			return
		}
	}
}

// opTimeout bounds one admin or metadata call whose ctx has no deadline.
const opTimeout = 15 * time.Second

func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, opTimeout)
}

// Produce writes one record and waits for the broker's acknowledgement.
func (k *Clients) Produce(ctx context.Context, topic string, key, value []byte, headers ...protocol.Header) (int64, error) {
	var hs []ckafka.Header
	for _, h := range headers {
		hs = append(hs, ckafka.Header{Key: h.Key, Value: h.Value})
	}
	slot := k.producerFor(topic)
	off, err, again := k.produceOnce(ctx, slot, topic, key, value, hs)
	if again {
		// Certainly not sent, and the producer was replaced meanwhile:
		// the new one may take it.
		off, err, _ = k.produceOnce(ctx, slot, topic, key, value, hs)
	}
	return off, err
}

// produceOnce is one attempt of Produce. again: the record was certainly
// not sent (refused, or purged from the queue before it left) by a
// producer that has been replaced since.
func (k *Clients) produceOnce(ctx context.Context, slot *producerSlot, topic string, key, value []byte, headers []ckafka.Header) (off int64, err error, again bool) {
	done := make(chan ckafka.Event, 1)
	// Queued under the slot's mu: replaceProducer swaps under it too, so
	// nothing is queued on a producer after it was replaced (its close in
	// the background would race the call), nor after Close began.
	slot.mu.Lock()
	p := slot.p
	downAt, drops := slot.downSince.Load(), slot.upDrops.Load()
	if k.closed.Load() {
		err = errClosed
	} else {
		err = p.Produce(&ckafka.Message{
			TopicPartition: ckafka.TopicPartition{Topic: &topic, Partition: ckafka.PartitionAny},
			Key:            key,
			Value:          value,
			Headers:        headers,
		}, done)
	}
	slot.mu.Unlock()
	if err != nil {
		if isFatal(err) {
			k.replaceProducer(slot, p, err)
		}
		// Refused by a failed producer, or by one closed as it was being
		// replaced: nothing was queued.
		return 0, produceError(topic, err), slot.current() != p
	}
	// Every queued record gets a delivery report within the delivery
	// timeout; the timer guards a report lost all the same (a producer
	// closed under it), which would leave the sender waiting for ever.
	lost := time.NewTimer(deliveryTimeout + 15*time.Second)
	defer lost.Stop()
	select {
	case <-lost.C:
		return 0, fmt.Errorf("produce to %s: no delivery report: %w", topic, protocol.ErrOutcomeUnknown), false
	case ev := <-done:
		m := ev.(*ckafka.Message)
		err := m.TopicPartition.Error
		var ke ckafka.Error
		switch {
		case err == nil:
			slot.downSince.Store(0)
			slot.purgedDown.Store(false)
			return int64(m.TopicPartition.Offset), nil, false
		case errors.As(err, &ke) && ke.Code() == ckafka.ErrPurgeQueue && slot.purgedDown.Load() && downAt != 0 && slot.upDrops.Load() == drops:
			// downLoop's, of a record queued while the brokers were down,
			// and no connection was up and lost since: it never left (one
			// that came up and stayed up would have taken it from the
			// queue).
			return 0, fmt.Errorf("produce to %s: not sent: %w (all brokers down since %s)", topic, protocol.ErrKafkaUnreachable,
				time.Unix(0, downAt).Format("15:04:05")), false
		case errors.As(err, &ke) && ke.Code() == ckafka.ErrPurgeQueue && slot.purgedDown.Load():
			// downLoop's, of a record queued before the brokers went down,
			// or that saw a connection come up and go: it may have been
			// sent once.
			return 0, fmt.Errorf("produce to %s: dropped after Kafka was unreachable for %s; it may have been written before: %w: %w (%w)",
				topic, downGrace, protocol.ErrOutcomeUnknown, err, protocol.ErrKafkaUnreachable), false
		case isFatal(err):
			// Failed with the producer: it may have been written before
			// the fatal error (an idempotent producer's error is about
			// sequence numbers of records it sent).
			k.replaceProducer(slot, p, err)
			return 0, fmt.Errorf("produce to %s: the Kafka producer failed for good (replaced by a new one; the cause is in the log): %w: %w", topic, protocol.ErrOutcomeUnknown, err), false
		case errors.As(err, &ke) && ke.Code() == ckafka.ErrPurgeQueue:
			// A producer that failed purges its queues (zkchat purges
			// nothing itself): this record never left. The report may
			// come before the fatal error's event: replace it from here.
			k.replaceProducer(slot, p, err)
			return 0, produceError(topic, err), slot.current() != p
		case errors.As(err, &ke) && ke.Code() == ckafka.ErrPurgeInflight:
			return 0, fmt.Errorf("produce to %s: dropped by the client in flight: %w: %w", topic, protocol.ErrOutcomeUnknown, err), false
		case errors.As(err, &ke) && ke.Code() == ckafka.ErrMsgTimedOut:
			// librdkafka gives up after delivery.timeout.ms also on a
			// record it had sent to a broker that went silent, and such
			// a record may be written once the broker answers again. Go
			// cannot tell it from a record that never left, so the
			// sender is never told "not sent".
			return 0, fmt.Errorf("produce to %s: no acknowledgement within the delivery timeout: %w: %w", topic, protocol.ErrOutcomeUnknown, err), false
		}
		return 0, produceError(topic, err), false
	case <-ctx.Done():
		// The record may still be written: librdkafka cannot take it back.
		return 0, fmt.Errorf("produce to %s: no acknowledgement yet: %w: %w", topic, protocol.ErrOutcomeUnknown, context.Cause(ctx)), false
	}
}

// isFatal reports whether err says its producer raised a fatal error
// (librdkafka then fails every record with "Local: Fatal error";
// replaceProducer logs the cause).
func isFatal(err error) bool {
	var ke ckafka.Error
	return errors.As(err, &ke) && (ke.Code() == ckafka.ErrFatal || ke.IsFatal())
}

// produceError is a failed produce. A topic deleted behind the manager's
// back (it makes a user's topic when the user goes online) fails with
// librdkafka's terse "Unknown topic": say what it means.
func produceError(topic string, err error) error {
	var ke ckafka.Error
	if errors.As(err, &ke) {
		switch ke.Code() {
		case ckafka.ErrUnknownTopic, ckafka.ErrUnknownPartition, ckafka.ErrUnknownTopicOrPart:
			return fmt.Errorf("produce to %s: the topic does not exist (deleted? the manager makes it again when its user goes online): %w", topic, err)
		case ckafka.ErrPurgeQueue:
			return fmt.Errorf("produce to %s: not sent: the Kafka client dropped it from its queue (failed or closing): %w", topic, err)
		case ckafka.ErrDestroy:
			// librdkafka dropped the record from a partition handle it
			// tore down (its topic deleted with the record in flight): it
			// may have been sent.
			return fmt.Errorf("produce to %s: dropped by the client in flight: %w: %w", topic, protocol.ErrOutcomeUnknown, err)
		}
	}
	return fmt.Errorf("produce to %s: %w", topic, err)
}

// TopicExists asks the cluster whether topic exists.
func (k *Clients) TopicExists(ctx context.Context, topic string) (bool, error) {
	ms := 5000
	if dl, ok := ctx.Deadline(); ok {
		ms = max(1, int(time.Until(dl)/time.Millisecond))
	}
	var md *ckafka.Metadata
	err := k.use(func() (err error) { md, err = k.admin.GetMetadata(&topic, false, ms); return err })
	if err != nil {
		return false, fmt.Errorf("metadata of %s: %w", topic, k.explain(err))
	}
	t, ok := md.Topics[topic]
	if !ok {
		return false, nil
	}
	switch t.Error.Code() {
	case ckafka.ErrNoError:
		return len(t.Partitions) > 0, nil
	case ckafka.ErrUnknownTopicOrPart, ckafka.ErrUnknownTopic, ckafka.ErrLeaderNotAvailable:
		return false, nil
	}
	return false, fmt.Errorf("metadata of %s: %w", topic, t.Error)
}

// retriable reports whether err is a Kafka error worth trying again: the
// group coordinator moving or loading (common on a fresh cluster, whose
// __consumer_offsets topic is created on first use), a leader election,
// a timeout.
func retriable(err error) bool {
	var ke ckafka.Error
	if !errors.As(err, &ke) {
		return false
	}
	switch ke.Code() {
	case ckafka.ErrNotCoordinator, ckafka.ErrCoordinatorLoadInProgress, ckafka.ErrCoordinatorNotAvailable,
		ckafka.ErrLeaderNotAvailable, ckafka.ErrNotLeaderForPartition, ckafka.ErrRequestTimedOut,
		ckafka.ErrTimedOut, ckafka.ErrTransport:
		return true
	}
	return ke.IsRetriable()
}

// classify wraps a failed offset commit with what a caller branches on:
// protocol.ErrNoTopic for a topic that is gone (a retry that lands once a
// topic of the same name is made again would store the old topic's position
// for the new one), protocol.ErrTransient for Kafka away or slow.
func classify(err error) error {
	var ke ckafka.Error
	if errors.As(err, &ke) {
		switch ke.Code() {
		case ckafka.ErrUnknownTopicOrPart, ckafka.ErrUnknownTopic, ckafka.ErrUnknownPartition:
			return fmt.Errorf("%w: %w", protocol.ErrNoTopic, err)
		}
	}
	if retriable(err) {
		return fmt.Errorf("%w: %w", protocol.ErrTransient, err)
	}
	return err
}

// Retry calls f until it succeeds, fails with an error that is not
// retriable, or ctx ends (then the last error is returned).
func Retry(ctx context.Context, f func() error) error {
	delay := 50 * time.Millisecond
	for {
		err := f()
		if err == nil || !retriable(err) {
			return err
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return err
		}
		delay = min(delay*2, time.Second)
	}
}
