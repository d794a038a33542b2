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
	From   string    // the record key
	To     string    // the topic's worker id
	Text   string    // the record value, UTF-8 as sent
	Offset int64     // position in the receiver's topic
	Time   time.Time // broker or producer timestamp
}

func (m Message) String() string { return fmt.Sprintf("%s: %s", m.From, m.Text) }
