package protocol

import "github.com/confluentinc/confluent-kafka-go/v2/kafka"

// InjectFatalError makes librdkafka raise a fatal error in k's producer,
// as an idempotence failure would (tests only).
func (k *Kafka) InjectFatalError() {
	k.currentProducer().TestFatalError(kafka.ErrOutOfOrderSequenceNumber, "injected by a test")
}
