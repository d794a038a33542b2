package kafka

import (
	"errors"
	"fmt"
	"testing"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/zkchat/zkchat/protocol"
)

// TestClassify: a failed commit says whether the topic is gone or Kafka was
// only away, in the contract's terms, so the client needs no librdkafka.
func TestClassify(t *testing.T) {
	for _, c := range []struct {
		err             error
		noTopic, transt bool
	}{
		{ckafka.NewError(ckafka.ErrTransport, "down", false), false, true},
		{ckafka.NewError(ckafka.ErrNotCoordinator, "moving", false), false, true},
		{fmt.Errorf("x: %w", ckafka.NewError(ckafka.ErrUnknownTopicOrPart, "gone", false)), true, false},
		{ckafka.NewError(ckafka.ErrUnknownTopic, "gone", false), true, false},
		{errors.New("refused"), false, false},
	} {
		got := classify(c.err)
		if errors.Is(got, protocol.ErrNoTopic) != c.noTopic || errors.Is(got, protocol.ErrTransient) != c.transt {
			t.Errorf("classify(%v) = %v: no topic %v, transient %v", c.err, got, c.noTopic, c.transt)
		}
		if !errors.Is(got, c.err) {
			t.Errorf("classify(%v) lost the cause", c.err)
		}
	}
}
