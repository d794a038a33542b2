package reliability

import (
	"testing"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Record is one Kafka record as an outside consumer reads it.
type Record struct {
	Key, Value string
	Offset     int64
}

// DumpTopic reads partition 0 of topic from the beginning up to its high
// watermark with a consumer of its own (no group offsets touched): what
// Kafka really holds, independent of zkchat's readers.
func DumpTopic(t testing.TB, brokers, topic string) []Record {
	t.Helper()
	c, err := ckafka.NewConsumer(&ckafka.ConfigMap{
		"bootstrap.servers": brokers, "group.id": "zkchat-reliability-dump",
		"enable.auto.commit": false, "enable.partition.eof": true,
		"isolation.level": "read_committed",
	})
	if err != nil {
		t.Fatalf("dump %s: %v", topic, err)
	}
	defer c.Close()
	lo, hi, err := c.QueryWatermarkOffsets(topic, 0, 15000)
	if err != nil {
		t.Fatalf("dump %s: watermarks: %v", topic, err)
	}
	if hi <= lo {
		return nil
	}
	if err := c.Assign([]ckafka.TopicPartition{{Topic: &topic, Partition: 0, Offset: ckafka.Offset(lo)}}); err != nil {
		t.Fatalf("dump %s: assign: %v", topic, err)
	}
	var out []Record
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		switch ev := c.Poll(500).(type) {
		case *ckafka.Message:
			out = append(out, Record{Key: string(ev.Key), Value: string(ev.Value), Offset: int64(ev.TopicPartition.Offset)})
			if int64(ev.TopicPartition.Offset) >= hi-1 {
				return out
			}
		case ckafka.PartitionEOF:
			if int64(ev.Offset) >= hi {
				return out
			}
		case ckafka.Error:
			t.Logf("dump %s: %v", topic, ev)
		}
	}
	t.Fatalf("dump %s: read %d of offsets %d..%d in 2 minutes", topic, len(out), lo, hi)
	return nil
}

// SawTopic feeds every record of topic to the ledger as source "kafka",
// checking that the record's key is the sender named in its text.
func (l *Ledger) SawTopic(t testing.TB, brokers, topic string) int {
	t.Helper()
	recs := DumpTopic(t, brokers, topic)
	for _, r := range recs {
		m := msgRE.FindStringSubmatch(r.Value)
		if m != nil && m[1] == l.Run && m[2] != r.Key {
			t.Errorf("kafka %s offset %d: key %q but text from %q", topic, r.Offset, r.Key, m[2])
		}
		l.Saw("kafka", r.Value)
	}
	return len(recs)
}
