package protocol

import (
	"fmt"
	"strings"
	"time"
)

// Topics names the Kafka topics and consumer groups of workers. With a
// prefix (default none), topic and group of id are prefix+id, so that several
// zkchat installations, or tests, share one cluster without meeting.
type Topics struct {
	Prefix string
}

// Topic is the topic that carries messages to id.
func (t Topics) Topic(id string) string { return t.Prefix + id }

// Group is the consumer group under which id's read position is committed.
func (t Topics) Group(id string) string { return t.Prefix + id }

// ID returns the worker id of a topic name, and false for a topic that is
// not a worker topic under this prefix.
func (t Topics) ID(topic string) (string, bool) {
	id, ok := strings.CutPrefix(topic, t.Prefix)
	if !ok || ValidateID(id) != nil {
		return "", false
	}
	return id, true
}

// Message is one chat message: a record in the receiver's topic with
// key = sender id and value = text.
type Message struct {
	From      string    // the record key
	To        string    // the topic's worker id
	Text      string    // the record value, UTF-8 as sent
	Partition int32     // the partition of the receiver's topic it is in (0 in a topic zkchat made)
	Offset    int64     // position in that partition
	Time      time.Time // broker or producer timestamp
	// Headers are the record's headers (zkchat's signature: sign.go).
	Headers []Header
	// Trust is what the reader could verify of From (sign.go); set by the
	// worker that read it.
	Trust Trust
}

// Header is one record header.
type Header struct {
	Key   string
	Value []byte
}

// Header is the value of the record header key (nil: none).
func (m Message) Header(key string) []byte {
	for _, h := range m.Headers {
		if h.Key == key {
			return h.Value
		}
	}
	return nil
}

// Position is a reader's place in a receiver's topic: for each partition,
// the offset of the next record to read. zkchat makes topics of one
// partition; another implementation's may have more, and all are read.
// Order holds within a partition only.
type Position map[int32]int64

func (m Message) String() string { return fmt.Sprintf("%s: %s", m.From, m.Text) }
