package kafka

import (
	"slices"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// InjectFatalError makes librdkafka raise a fatal error in the producer
// that sends to topic, as an idempotence failure would (tests only).
func (k *Clients) InjectFatalError(topic string) {
	k.producerFor(topic).current().TestFatalError(ckafka.ErrOutOfOrderSequenceNumber, "injected by a test")
}

// NewWithStats is New with librdkafka's statistics of every producer and
// consumer handed to onStats, as JSON, every statsEvery (benchmarks).
func NewWithStats(cfg Config, statsEvery time.Duration, onStats func(string)) (*Clients, error) {
	return newClients(cfg, statsEvery, onStats)
}

// ReaderShards is the number of consumers k has made.
func (k *Clients) ReaderShards() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.shards)
}

// ReaderShardOf is the index of the consumer r is assigned to.
func (k *Clients) ReaderShardOf(r MessageReader) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Index(k.shards, r.(*Reader).shard)
}

// ProducerOf is the index of the producer handle that sends to topic.
func (k *Clients) ProducerOf(topic string) int {
	return slices.Index(k.producers, k.producerFor(topic))
}

// SetPartitionCheck sets how often each consumer looks for partitions
// added to its readers' topics; call it before opening readers (tests only).
func (k *Clients) SetPartitionCheck(d time.Duration) { k.partitionCheck = d }

// HoldCall runs a call that lasts until release is closed, as a slow
// librdkafka call would; started reports it is in flight (tests only).
func (k *Clients) HoldCall(started chan<- struct{}, release <-chan struct{}) error {
	return k.use(func() error { close(started); <-release; return nil })
}

// SetCloseWarnAfter sets how long Close waits for calls before it warns.
func SetCloseWarnAfter(d time.Duration) (restore func()) {
	old := closeWarnAfter
	closeWarnAfter = d
	return func() { closeWarnAfter = old }
}

// TopicWaitRequests is the number of metadata requests WaitTopic has made.
func (k *Clients) TopicWaitRequests() int64 { return k.topicWait.requests.Load() }
