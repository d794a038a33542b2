package kafka

import (
	"context"
	"fmt"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Lag is, for each id, how many messages its topic holds past its consumer
// group's committed position: what the user has not read (or been
// delivered) yet. A topic whose group has committed nothing counts from its
// earliest offset. An id whose topic does not exist is left out. One
// request per id for the committed offsets (librdkafka takes one group a
// call), one for all the end offsets and one for all the start offsets.
func (a *Admin) Lag(ctx context.Context, ids []string) (map[string]int64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	committed := map[tpKey]int64{}
	ends := map[ckafka.TopicPartition]ckafka.OffsetSpec{}
	owner := map[string]string{} // topic -> id
	for _, id := range ids {
		topic, group := a.cfg.Topics.Topic(id), a.cfg.Topics.Group(id)
		md, err := a.a.GetMetadata(&topic, false, int(topicTimeout.Milliseconds()))
		if err != nil {
			return nil, fmt.Errorf("lag of %s: metadata: %w", id, err)
		}
		tm, ok := md.Topics[topic]
		if !ok || tm.Error.Code() == ckafka.ErrUnknownTopicOrPart || len(tm.Partitions) == 0 {
			continue
		}
		owner[topic] = id
		var parts []ckafka.TopicPartition
		for _, p := range tm.Partitions {
			t := topic
			tp := ckafka.TopicPartition{Topic: &t, Partition: p.ID}
			parts = append(parts, tp)
			ends[tp] = ckafka.LatestOffsetSpec
		}
		res, err := a.a.ListConsumerGroupOffsets(ctx, []ckafka.ConsumerGroupTopicPartitions{{Group: group, Partitions: parts}})
		if err != nil {
			return nil, fmt.Errorf("lag of %s: committed offsets: %w", id, err)
		}
		for _, g := range res.ConsumerGroupsTopicPartitions {
			for _, tp := range g.Partitions {
				if tp.Error == nil && tp.Offset >= 0 {
					committed[key(tp)] = int64(tp.Offset)
				}
			}
		}
	}
	if len(ends) == 0 {
		return map[string]int64{}, nil
	}
	starts := map[ckafka.TopicPartition]ckafka.OffsetSpec{}
	for tp := range ends {
		starts[tp] = ckafka.EarliestOffsetSpec
	}
	endRes, err := a.a.ListOffsets(ctx, ends)
	if err != nil {
		return nil, fmt.Errorf("lag: end offsets: %w", err)
	}
	startRes, err := a.a.ListOffsets(ctx, starts)
	if err != nil {
		return nil, fmt.Errorf("lag: start offsets: %w", err)
	}
	start := map[tpKey]int64{}
	for tp, info := range startRes.ResultInfos {
		start[key(tp)] = int64(info.Offset)
	}
	lag := map[string]int64{}
	for tp, info := range endRes.ResultInfos {
		if info.Error.Code() != ckafka.ErrNoError {
			return nil, fmt.Errorf("lag: end offset of %s[%d]: %w", *tp.Topic, tp.Partition, info.Error)
		}
		k := key(tp)
		from, ok := committed[k]
		if !ok {
			from = start[k]
		}
		lag[owner[*tp.Topic]] += max(int64(info.Offset)-from, 0)
	}
	return lag, nil
}

// tpKey is a partition as a map key: TopicPartition holds its topic by
// pointer, so two of the same partition are different keys.
type tpKey struct {
	topic     string
	partition int32
}

func key(tp ckafka.TopicPartition) tpKey { return tpKey{*tp.Topic, tp.Partition} }
