// Package fakekafka is an in-memory stand-in for a process's Kafka clients
// (kafka.Clients) in tests: topics of one partition, produce with offsets,
// positions committed per consumer group, and readers. It has the methods
// client.Kafka asks for; a test plays the manager with CreateTopic and
// DeleteTopic, and injects failures with Fault.
package fakekafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/zkchat/zkchat/protocol"
)

// ErrReaderOpen: a topic has one open reader per Cluster, as per process
// with kafka.Clients.
var ErrReaderOpen = errors.New("topic already has a reader in this process")

// Cluster is the brokers and the clients in one. Its zero value is not
// usable: call New.
type Cluster struct {
	topics protocol.Topics

	mu      sync.Mutex
	logs    map[string][]protocol.Message // by topic; offset = index
	groups  map[string]map[string]int64   // group → topic → next offset
	readers map[string]bool               // topics with an open reader
	changed chan struct{}                 // closed and replaced on every change
	fault   func(op, topic string) error
}

// New returns a cluster with no topics; t names topics and groups.
func New(t protocol.Topics) *Cluster {
	return &Cluster{topics: t, logs: map[string][]protocol.Message{}, groups: map[string]map[string]int64{},
		readers: map[string]bool{}, changed: make(chan struct{})}
}

// Fault makes every later call run f first (op is the method's name:
// "Produce", "Commit", "Committed", "Bounds", "OpenReader", "Next"); a
// non-nil error fails the call, with nothing done. nil: no faults.
func (c *Cluster) Fault(f func(op, topic string) error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fault = f
}

func (c *Cluster) faultLocked(op, topic string) error {
	if c.fault == nil {
		return nil
	}
	return c.fault(op, topic)
}

func (c *Cluster) changedLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// CreateTopic creates topic; an existing one is left alone.
func (c *Cluster) CreateTopic(topic string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.logs[topic]; !ok {
		c.logs[topic] = []protocol.Message{}
		c.changedLocked()
	}
}

// DeleteTopic deletes topic and group's position on it, as the manager does
// on quit.
func (c *Cluster) DeleteTopic(topic, group string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.logs, topic)
	delete(c.groups, group)
	c.changedLocked()
}

// HasTopic reports whether topic exists.
func (c *Cluster) HasTopic(topic string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.logs[topic]
	return ok
}

// Records returns topic's records.
func (c *Cluster) Records(topic string) []protocol.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]protocol.Message(nil), c.logs[topic]...)
}

// Topics names topics and groups.
func (c *Cluster) Topics() protocol.Topics { return c.topics }

// WaitTopic waits until topic exists or ctx ends.
func (c *Cluster) WaitTopic(ctx context.Context, topic string) error {
	for {
		c.mu.Lock()
		_, ok := c.logs[topic]
		ch := c.changed
		c.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("topic %s does not exist: %w", topic, context.Cause(ctx))
		}
	}
}

// Produce appends a record to topic and returns its offset.
func (c *Cluster) Produce(ctx context.Context, topic string, key, value []byte, headers ...protocol.Header) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return 0, context.Cause(ctx)
	}
	if err := c.faultLocked("Produce", topic); err != nil {
		return 0, fmt.Errorf("produce to %s: %w", topic, err)
	}
	log, ok := c.logs[topic]
	if !ok {
		return 0, fmt.Errorf("produce to %s: %w", topic, protocol.ErrNoTopic)
	}
	off := int64(len(log))
	c.logs[topic] = append(log, protocol.Message{From: string(key), Text: string(value), Offset: off, Time: time.Now(),
		Headers: append([]protocol.Header(nil), headers...)})
	c.changedLocked()
	return off, nil
}

// Bounds is the low and high watermark of topic's one partition.
func (c *Cluster) Bounds(ctx context.Context, topic string) (low, high protocol.Position, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.faultLocked("Bounds", topic); err != nil {
		return nil, nil, fmt.Errorf("offsets of %s: %w", topic, err)
	}
	log, ok := c.logs[topic]
	if !ok {
		return nil, nil, fmt.Errorf("offsets of %s: %w", topic, protocol.ErrNoTopic)
	}
	return protocol.Position{0: 0}, protocol.Position{0: int64(len(log))}, nil
}

// Committed is group's position on topic's one partition (absent if none).
func (c *Cluster) Committed(ctx context.Context, group, topic string) (protocol.Position, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.committedLocked(group, topic)
	if err != nil || n < 0 {
		return protocol.Position{}, err
	}
	return protocol.Position{0: n}, nil
}

// Offset is group's position on topic, -1 if none (tests).
func (c *Cluster) Offset(group, topic string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok := c.groups[group][topic]; ok {
		return n
	}
	return -1
}

func (c *Cluster) committedLocked(group, topic string) (int64, error) {
	if err := c.faultLocked("Committed", topic); err != nil {
		return 0, fmt.Errorf("committed offset of group %s: %w", group, err)
	}
	if n, ok := c.groups[group][topic]; ok {
		return n, nil
	}
	return -1, nil
}

// Commit stores next as group's position on topic. Its topics have one
// partition: a position on another is an error.
func (c *Cluster) Commit(ctx context.Context, group, topic string, pos protocol.Position) error {
	next, ok := pos[0]
	if len(pos) != 1 || !ok {
		return fmt.Errorf("commit %s@%v for group %s: the fake's topics have one partition", topic, pos, group)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	if err := c.faultLocked("Commit", topic); err != nil {
		return fmt.Errorf("commit %s@%d for group %s: %w", topic, next, group, err)
	}
	if _, ok := c.logs[topic]; !ok {
		return fmt.Errorf("commit %s@%d for group %s: %w", topic, next, group, protocol.ErrNoTopic)
	}
	if c.groups[group] == nil {
		c.groups[group] = map[string]int64{}
	}
	c.groups[group][topic] = next
	return nil
}

// OpenReader reads topic from group's position (its start if none).
func (c *Cluster) OpenReader(ctx context.Context, group, topic string) (interface {
	Next(ctx context.Context) (protocol.Message, error)
	Close()
}, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.faultLocked("OpenReader", topic); err != nil {
		return nil, err
	}
	start, err := c.committedLocked(group, topic)
	if err != nil {
		return nil, err
	}
	if c.readers[topic] {
		return nil, fmt.Errorf("%s: %w", topic, ErrReaderOpen)
	}
	c.readers[topic] = true
	return &Reader{c: c, topic: topic, next: max(start, 0)}, nil
}

// Readers is how many readers are open.
func (c *Cluster) Readers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.readers)
}

// Reader reads one topic.
type Reader struct {
	c      *Cluster
	topic  string
	next   int64
	closed bool // under c.mu
}

// Next waits for the record at the reader's position. A topic that does
// not exist (deleted) fails it with protocol.ErrNoTopic.
func (r *Reader) Next(ctx context.Context) (protocol.Message, error) {
	c := r.c
	for {
		c.mu.Lock()
		if err := c.faultLocked("Next", r.topic); err != nil {
			c.mu.Unlock()
			return protocol.Message{}, fmt.Errorf("read %s: %w", r.topic, err)
		}
		log, ok := c.logs[r.topic]
		ch := c.changed
		c.mu.Unlock()
		if !ok {
			return protocol.Message{}, fmt.Errorf("read %s: %w", r.topic, protocol.ErrNoTopic)
		}
		if int64(len(log)) > r.next {
			m := log[r.next]
			r.next++
			return m, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return protocol.Message{}, context.Cause(ctx)
		}
	}
}

// Close ends the reader.
func (r *Reader) Close() {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	if !r.closed {
		r.closed = true
		delete(r.c.readers, r.topic)
	}
}
