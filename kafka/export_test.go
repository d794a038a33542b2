package kafka

import (
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// InjectFatalError makes librdkafka raise a fatal error in k's producer,
// as an idempotence failure would (tests only).
func (k *Clients) InjectFatalError() {
	k.currentProducer().TestFatalError(ckafka.ErrOutOfOrderSequenceNumber, "injected by a test")
}

// SetPartitionCheck sets how often an open reader looks for partitions
// added to its topic; call it before opening readers (tests only).
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
