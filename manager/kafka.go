package manager

import (
	"context"
	"fmt"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/zkchat/zkchat/protocol"
)

// topicTimeout bounds one topic creation or deletion, including the wait
// until every broker knows of it.
const topicTimeout = 30 * time.Second

// CreateKafkaTopic creates the topic of id with one partition. A topic that
// exists already is success.
func (m *Manager) CreateKafkaTopic(ctx context.Context, id string) error {
	topic := m.cfg.Topics.Topic(id)
	ctx, cancel := context.WithTimeout(ctx, topicTimeout)
	defer cancel()
	err := protocol.RetryKafka(ctx, func() error {
		res, err := m.admin.CreateTopics(ctx, []kafka.TopicSpecification{{
			Topic: topic, NumPartitions: 1, ReplicationFactor: m.cfg.ReplicationFactor,
			Config: m.cfg.TopicConfig,
		}},
			// Without an operation timeout the call returns before the topic
			// has spread to the brokers, and a producer that comes at once fails.
			kafka.SetAdminOperationTimeout(topicTimeout))
		if err != nil {
			return err
		}
		for _, r := range res {
			switch r.Error.Code() {
			case kafka.ErrNoError, kafka.ErrTopicAlreadyExists:
			default:
				return r.Error
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	return nil
}

// DeleteKafkaTopic deletes the topic of id and the committed read position
// of its consumer group, so that a user who registers again starts from a
// new, empty topic. What is gone already is success.
func (m *Manager) DeleteKafkaTopic(ctx context.Context, id string) error {
	topic, group := m.cfg.Topics.Topic(id), m.cfg.Topics.Group(id)
	ctx, cancel := context.WithTimeout(ctx, topicTimeout)
	defer cancel()
	err := protocol.RetryKafka(ctx, func() error {
		res, err := m.admin.DeleteTopics(ctx, []string{topic}, kafka.SetAdminOperationTimeout(topicTimeout))
		if err != nil {
			return err
		}
		for _, r := range res {
			switch r.Error.Code() {
			case kafka.ErrNoError, kafka.ErrUnknownTopicOrPart, kafka.ErrUnknownTopic:
			default:
				return r.Error
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete topic %s: %w", topic, err)
	}
	err = protocol.RetryKafka(ctx, func() error {
		gres, err := m.admin.DeleteConsumerGroups(ctx, []string{group})
		if err != nil {
			return err
		}
		for _, r := range gres.ConsumerGroupResults {
			switch r.Error.Code() {
			case kafka.ErrNoError, kafka.ErrGroupIDNotFound:
			default:
				return r.Error
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete consumer group %s: %w", group, err)
	}
	return nil
}
