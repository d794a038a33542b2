package kafka

import ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

// InjectFatalError makes librdkafka raise a fatal error in k's producer,
// as an idempotence failure would (tests only).
func (k *Clients) InjectFatalError() {
	k.currentProducer().TestFatalError(ckafka.ErrOutOfOrderSequenceNumber, "injected by a test")
}
