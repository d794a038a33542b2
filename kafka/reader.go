package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/zkchat/zkchat/protocol"
)

// A user's topic has one partition when zkchat's manager made it, but
// another implementation's manager may have made it with more (issue 9),
// and a sender's producer spreads records over all of them. So everything
// here works on every partition of the topic, as the brokers' metadata
// lists them: positions (protocol.Position) are per partition, a reader is
// assigned all of them, and order holds within a partition only.
//
// What is promised about partitions added to a topic later: they are
// looked up whenever a reader opens (the next `zkchat read`, the bridge's
// next delivery), and every partitionCheck (30 s) each consumer asks once
// about all of its readers' topics (partitionLoop); a partition found either
// way is read from the group's position on it, or from its beginning.
// Nothing written to it is skipped.

// readerBuffer is how many fetched records may wait for one reader before
// its partitions are paused; the rest stays in Kafka.
const readerBuffer = 256

// partitionCheck is how often each consumer asks the brokers whether its
// readers' topics have gained partitions: one metadata request per
// consumer (at most ReaderShardSize topics). Before, each open reader
// asked about its own topic: 10,000 idle readers made 333 metadata
// requests a second.
const partitionCheck = 30 * time.Second

// metadataWait bounds one metadata request whose ctx allows more.
const metadataWait = 5 * time.Second

func waitMs(ctx context.Context, most time.Duration) int {
	ms := int(most / time.Millisecond)
	if dl, ok := ctx.Deadline(); ok {
		ms = max(1, min(ms, int(time.Until(dl)/time.Millisecond)))
	}
	return ms
}

// partitions returns the partitions of topic, sorted, as the brokers list
// them now (a metadata request, not librdkafka's cache), asked through c.
// A reader asks through the consumer it is placed on, so that this
// consumer also knows the topic at once: one assigned a topic it has never
// seen waits for its once-a-second scan of unknown topics before it
// fetches (a new user's first message came up to 1 s late; asking in the
// background and assigning at once did no better, 0.5-1 s). The request
// queues on that consumer's connection behind its waiting fetch, so it
// takes up to FetchWait. Other callers ask through the admin client's
// consumer, whose connection has no waiting fetch. A topic that does not
// exist is protocol.ErrNoTopic.
func (k *Clients) partitions(ctx context.Context, c *ckafka.Consumer, topic string) ([]int32, error) {
	// A topic made a moment ago may be unknown to the broker asked (its
	// metadata lags the controller's): "unknown" is believed only after
	// topicSettle. Before, a reader opened right after a user's first time
	// online could fail with ErrNoTopic (found by the fault suite).
	settle := time.Now().Add(topicSettle)
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		parts, err := k.partitionsOnce(ctx, c, topic)
		if !errors.Is(err, protocol.ErrNoTopic) || time.Now().After(settle) {
			return parts, err
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, err
		}
	}
}

// topicSettle is how long a topic reported unknown is asked about again.
const topicSettle = 5 * time.Second

func (k *Clients) partitionsOnce(ctx context.Context, c *ckafka.Consumer, topic string) ([]int32, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var t ckafka.TopicMetadata
	err := Retry(ctx, func() error {
		var md *ckafka.Metadata
		if err := k.use(func() (err error) {
			// Through a shard's consumer it waits behind the fetch.
			md, err = c.GetMetadata(&topic, false, waitMs(ctx, metadataWait+k.cfg.FetchWait))
			return err
		}); err != nil {
			return err
		}
		t = md.Topics[topic]
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", topic, k.explain(err))
	}
	switch t.Error.Code() {
	case ckafka.ErrNoError, ckafka.ErrLeaderNotAvailable:
	case ckafka.ErrUnknownTopicOrPart, ckafka.ErrUnknownTopic:
		return nil, fmt.Errorf("%s: %w", topic, protocol.ErrNoTopic)
	default:
		return nil, fmt.Errorf("metadata of %s: %w", topic, t.Error)
	}
	if len(t.Partitions) == 0 {
		return nil, fmt.Errorf("%s: no partitions: %w", topic, protocol.ErrNoTopic)
	}
	parts := make([]int32, len(t.Partitions))
	for i, p := range t.Partitions {
		parts[i] = p.ID
	}
	slices.Sort(parts)
	return parts, nil
}

// Committed returns group's position on every partition of topic: the
// next offset to read. A partition on which the group has committed
// nothing is absent (its reader starts at the partition's beginning).
func (k *Clients) Committed(ctx context.Context, group, topic string) (protocol.Position, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	parts, err := k.partitions(ctx, k.adminConsumer, topic)
	if err != nil {
		return nil, fmt.Errorf("committed offsets of group %s: %w", group, err)
	}
	return k.committed(ctx, group, topic, parts)
}

// committed is Committed on the partitions parts of topic.
func (k *Clients) committed(ctx context.Context, group, topic string, parts []int32) (protocol.Position, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	tps := make([]ckafka.TopicPartition, len(parts))
	for i, p := range parts {
		tps[i] = ckafka.TopicPartition{Topic: &topic, Partition: p}
	}
	var got []ckafka.TopicPartition
	err := Retry(ctx, func() error {
		return k.groupCall(ctx, func(ctx context.Context, a *ckafka.AdminClient) error {
			res, err := a.ListConsumerGroupOffsets(ctx, []ckafka.ConsumerGroupTopicPartitions{{Group: group, Partitions: tps}},
				ckafka.SetAdminRequireStableOffsets(true))
			if err != nil {
				return err
			}
			if len(res.ConsumerGroupsTopicPartitions) != 1 || len(res.ConsumerGroupsTopicPartitions[0].Partitions) != len(tps) {
				return fmt.Errorf("unexpected answer %v", res)
			}
			got = res.ConsumerGroupsTopicPartitions[0].Partitions
			for _, tp := range got {
				if tp.Error != nil {
					return tp.Error
				}
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("committed offsets of group %s on %s: %w", group, topic, err)
	}
	pos := protocol.Position{}
	for _, tp := range got {
		if tp.Offset >= 0 {
			pos[tp.Partition] = int64(tp.Offset)
		}
	}
	return pos, nil
}

// Commit stores next as group's position on topic: for each partition in
// next, the offset of the next record to read, all in one request.
// Partitions not in next keep their position.
func (k *Clients) Commit(ctx context.Context, group, topic string, next protocol.Position) error {
	if len(next) == 0 {
		return nil
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	tps := make([]ckafka.TopicPartition, 0, len(next))
	for p, off := range next {
		tps = append(tps, ckafka.TopicPartition{Topic: &topic, Partition: p, Offset: ckafka.Offset(off)})
	}
	slices.SortFunc(tps, func(a, b ckafka.TopicPartition) int { return int(a.Partition - b.Partition) })
	err := Retry(ctx, func() error {
		return k.groupCall(ctx, func(ctx context.Context, a *ckafka.AdminClient) error {
			res, err := a.AlterConsumerGroupOffsets(ctx, []ckafka.ConsumerGroupTopicPartitions{{Group: group, Partitions: tps}})
			if err != nil {
				return err
			}
			for _, g := range res.ConsumerGroupsTopicPartitions {
				for _, tp := range g.Partitions {
					if tp.Error != nil {
						return tp.Error
					}
				}
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("commit %s@%v for group %s: %w", topic, next, group, classify(err))
	}
	return nil
}

// Bounds returns, for every partition of topic, its low and high
// watermarks: the first offset still stored, and the offset the next
// record gets.
func (k *Clients) Bounds(ctx context.Context, topic string) (low, high protocol.Position, err error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	parts, err := k.partitions(ctx, k.adminConsumer, topic)
	if err != nil {
		return nil, nil, fmt.Errorf("offsets of %s: %w", topic, err)
	}
	low, high = protocol.Position{}, protocol.Position{}
	for _, p := range parts {
		var lo, hi int64
		// Retried while the partition has no leader yet (a topic made a
		// moment ago: "Not leader for partition", seen 1 run in 30 of
		// TestCLIUserKafkaPrincipals on a loaded machine).
		err := Retry(ctx, func() error {
			return k.use(func() (err error) {
				lo, hi, err = k.adminConsumer.QueryWatermarkOffsets(topic, p, waitMs(ctx, 10*time.Second))
				return err
			})
		})
		if err != nil {
			return nil, nil, fmt.Errorf("offsets of %s partition %d: %w", topic, p, err)
		}
		low[p], high[p] = lo, hi
	}
	return low, high, nil
}

// shard is one consumer handle and the readers assigned to it.
type shard struct {
	c *ckafka.Consumer
	// load is the readers assigned here plus those being opened here
	// (Clients.mu).
	load int
	// closedAt: topics whose reader was closed here, each with iter at
	// its close, until the poll loop has gone past that iteration
	// (Clients.mu). See OpenReader.
	closedAt map[string]uint64
	// iter counts the poll loop's finished iterations (a Poll and the
	// dispatch of what it returned).
	iter atomic.Uint64

	mu      sync.Mutex         // a leaf
	readers map[string]*Reader // by topic, the open readers assigned here: dispatch's

	// assignMu serialises IncrementalAssign and IncrementalUnassign on c:
	// confluent-kafka-go writes a field of the Consumer in both (a data
	// race between two readers of one consumer closing at once, found by
	// the race detector in CI). A leaf, held only across that one call.
	assignMu sync.Mutex
}

// changeAssignment runs f, an IncrementalAssign or IncrementalUnassign on
// s.c, under s.assignMu.
func (s *shard) changeAssignment(f func() error) error {
	s.assignMu.Lock()
	defer s.assignMu.Unlock()
	return f()
}

// newShard makes a consumer and starts its poll, partition and log loops. The caller
// holds Clients.mu, and has checked closed under it.
func (k *Clients) newShard() (*shard, error) {
	c, err := ckafka.NewConsumer(&k.consumerConf)
	if err != nil {
		return nil, fmt.Errorf("kafka consumer: %w", err)
	}
	s := &shard{c: c, closedAt: map[string]uint64{}, readers: map[string]*Reader{}}
	k.shards = append(k.shards, s)
	k.wg.Add(3)
	go k.pollLoop(k.ctx, s)
	go k.partitionLoop(k.ctx, s)
	go k.logLoop(k.ctx, c.Logs())
	return s, nil
}

// place reserves r's topic and a place for it on the least loaded shard with
// room, made if none has. unplace undoes it.
func (k *Clients) place(r *Reader) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed.Load() {
		return errClosed
	}
	if _, dup := k.readers[r.topic]; dup {
		return fmt.Errorf("%s: %w", r.topic, ErrReaderOpen)
	}
	var s *shard
	for _, c := range k.shards {
		if c.load < k.cfg.ReaderShardSize && (s == nil || c.load < s.load) {
			s = c
		}
	}
	if s == nil {
		var err error
		if s, err = k.newShard(); err != nil {
			return err
		}
	}
	s.load++
	r.shard = s
	k.readers[r.topic] = r
	return nil
}

func (k *Clients) unplace(r *Reader) {
	k.mu.Lock()
	defer k.mu.Unlock()
	r.shard.load--
	if k.readers[r.topic] == r {
		delete(k.readers, r.topic)
	}
}

// Reader receives one topic's records, from every partition, from its
// shard's poll loop. Its mu guards the queue, the partitions and the flags;
// it is never held with Clients.mu or a shard's mu. librdkafka calls that
// change the reader's assignment or pause state are made under it, so that
// the poll loop (dispatch) never pauses a partition list that is being
// changed; Close's unassign is the exception, made after it set closed
// under mu, from when on nothing pauses, resumes or assigns for the reader.
type Reader struct {
	k     *Clients
	shard *shard // set by place, then fixed
	group string
	topic string
	wake  chan struct{} // cap 1: something was queued

	mu     sync.Mutex
	parts  []int32 // the partitions assigned to this reader
	queue  []*ckafka.Message
	err    error // a partition error (topic deleted, ...)
	paused bool
	closed bool
}

// MessageReader is what OpenReader returns: an alias of an unnamed
// interface type, so that a consumer can declare the same type (client.Reader)
// and *Clients satisfies its interface without importing this package.
type MessageReader = interface {
	Next(ctx context.Context) (protocol.Message, error)
	Close()
}

// ErrReaderOpen: a topic can have one open reader per process.
var ErrReaderOpen = errors.New("topic already has a reader in this process")

// OpenReader starts fetching every partition of topic from group's
// committed position on it (its beginning if none). A topic that does not
// exist is protocol.ErrNoTopic. Its result is a *Reader.
//
// The reader is placed on a consumer first (place: the least loaded with
// room), so that the topic's metadata is asked through that consumer
// (partitions).
func (k *Clients) OpenReader(ctx context.Context, group, topic string) (MessageReader, error) {
	r := &Reader{k: k, group: group, topic: topic, wake: make(chan struct{}, 1)}
	if err := k.place(r); err != nil {
		return nil, err
	}
	s := r.shard
	parts, err := k.partitions(ctx, s.c, topic)
	if err != nil {
		k.unplace(r)
		return nil, fmt.Errorf("open reader: %w", err)
	}
	start, err := k.committed(ctx, group, topic, parts)
	if err == nil {
		err = k.afterClose(ctx, s, topic)
	}
	if err != nil {
		k.unplace(r)
		return nil, err
	}
	// Known to dispatch before it is assigned: a record fetched at once
	// (a consumer with no fetch waiting fetches a new partition at once)
	// and dispatched before would be dropped, and never fetched again.
	s.mu.Lock()
	s.readers[topic] = r
	s.mu.Unlock()
	if err := r.assign(parts, start); err != nil {
		s.mu.Lock()
		delete(s.readers, topic)
		s.mu.Unlock()
		k.unplace(r)
		return nil, err
	}
	return r, nil
}

// afterClose waits, if a reader of topic was closed on s a moment ago,
// until s's poll loop has finished the iteration that was running then. A
// Poll that began before the unassign may have returned one of that
// reader's records, which dispatch would otherwise hand to the new reader
// (out of order, or before its start). Polls that begin after the unassign
// return none: librdkafka drops the records of an assignment that ended.
// It waits for at most one Poll (100 ms).
func (k *Clients) afterClose(ctx context.Context, s *shard, topic string) error {
	for {
		k.mu.Lock()
		at, ok := s.closedAt[topic]
		if ok && s.iter.Load() > at {
			delete(s.closedAt, topic)
			ok = false
		}
		k.mu.Unlock()
		if !ok {
			return nil
		}
		t := time.NewTimer(5 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		}
	}
}

// assign adds parts to the reader's assignment, each at its offset in
// start (the beginning of the partition if absent).
func (r *Reader) assign(parts []int32, start protocol.Position) error {
	k, c := r.k, r.shard.c
	tps := make([]ckafka.TopicPartition, len(parts))
	for i, p := range parts {
		off := ckafka.OffsetBeginning
		if n, ok := start[p]; ok {
			off = ckafka.Offset(n)
		}
		tps[i] = ckafka.TopicPartition{Topic: &r.topic, Partition: p, Offset: off}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	if err := k.use(func() error { return r.shard.changeAssignment(func() error { return c.IncrementalAssign(tps) }) }); err != nil {
		return fmt.Errorf("assign %s %v: %w", r.topic, parts, err)
	}
	r.parts = append(r.parts, parts...)
	// librdkafka keeps a partition's pause across unassign and assign, and
	// only this reader's Next resumes it: a new partition must start as
	// paused as the reader is (an unpaused reader's queue may be empty, and
	// nothing else would ever resume it). Fetching starts at the assigned
	// offset.
	added := topicPartitions(r.topic, parts)
	if r.paused {
		if err := k.use(func() error { return c.Pause(added) }); err != nil {
			k.log.Warn("pause after assign", "topic", r.topic, "err", err)
		}
	} else if err := k.use(func() error { return c.Resume(added) }); err != nil {
		k.log.Warn("resume after assign", "topic", r.topic, "err", err)
	}
	return nil
}

func topicPartitions(topic string, parts []int32) []ckafka.TopicPartition {
	tps := make([]ckafka.TopicPartition, len(parts))
	for i, p := range parts {
		tps[i] = ckafka.TopicPartition{Topic: &topic, Partition: p}
	}
	return tps
}

// partitionLoop is s's one goroutine that looks for partitions added to
// its readers' topics, every partitionCheck, until ctx ends (Close). One
// metadata request names every topic s knows (librdkafka's local topics,
// its readers' among them), asked through s's own consumer so that it
// knows the partitions too (see partitions); it waits behind the
// consumer's fetch, which holds up nothing else. Failures are logged and
// tried again at the next check: the partitions known keep being read.
func (k *Clients) partitionLoop(ctx context.Context, s *shard) {
	defer k.wg.Done()
	t := time.NewTicker(k.partitionCheck)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		s.mu.Lock()
		readers := make([]*Reader, 0, len(s.readers))
		for _, r := range s.readers {
			readers = append(readers, r)
		}
		s.mu.Unlock()
		if len(readers) == 0 {
			continue
		}
		var md *ckafka.Metadata
		err := k.use(func() (err error) {
			md, err = s.c.GetMetadata(nil, false, waitMs(ctx, metadataWait+k.cfg.FetchWait))
			return err
		})
		if err != nil {
			if ctx.Err() == nil {
				k.noisy.Warn("look for new partitions", "topics", len(readers), "err", k.explain(err))
			}
			continue
		}
		for _, r := range readers {
			tm, ok := md.Topics[r.topic]
			if !ok || tm.Error.Code() != ckafka.ErrNoError {
				continue // deleted or unknown: the reader's own error says so
			}
			r.mu.Lock()
			var added []int32
			for _, p := range tm.Partitions {
				if !slices.Contains(r.parts, p.ID) {
					added = append(added, p.ID)
				}
			}
			closed := r.closed
			r.mu.Unlock()
			if len(added) > 0 && !closed {
				slices.Sort(added)
				r.addPartitions(ctx, added)
			}
		}
	}
}

// addPartitions assigns partitions added to r's topic, from the group's
// position on each (their beginning if none).
func (r *Reader) addPartitions(ctx context.Context, added []int32) {
	k := r.k
	ctx, cancel := context.WithTimeout(ctx, metadataWait)
	defer cancel()
	start, err := k.committed(ctx, r.group, r.topic, added)
	if err != nil {
		k.log.Warn("new partitions of the topic: no position yet; trying again later", "topic", r.topic, "partitions", added, "err", err)
		return
	}
	if err := r.assign(added, start); err != nil {
		k.log.Warn("new partitions of the topic: not assigned; trying again later", "topic", r.topic, "err", err)
		return
	}
	k.log.Info("reading partitions added to the topic", "topic", r.topic, "partitions", added)
}

// Close stops fetching the reader's topic. Once it returns, a reader of
// the topic may be opened again (on any consumer).
func (r *Reader) Close() {
	k, s := r.k, r.shard
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	// From here on nothing is queued, paused, resumed or assigned for r.
	r.closed = true
	r.queue = nil
	parts := r.parts
	r.mu.Unlock()
	s.mu.Lock()
	delete(s.readers, r.topic)
	s.mu.Unlock()
	if err := k.use(func() error {
		return s.changeAssignment(func() error { return s.c.IncrementalUnassign(topicPartitions(r.topic, parts)) })
	}); err != nil && !errors.Is(err, errClosed) {
		k.log.Warn("unassign", "topic", r.topic, "err", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	it := s.iter.Load()
	for t, at := range s.closedAt { // those the poll loop is past
		if it > at {
			delete(s.closedAt, t)
		}
	}
	s.closedAt[r.topic] = it
	s.load--
	if k.readers[r.topic] == r {
		delete(k.readers, r.topic)
	}
}

// Next returns the reader's next record, from whichever partition, waiting
// for one. Records of one partition come in their order; the Partition and
// Offset of each say where it is. Its To is empty: the topic's owner is
// the caller's to say.
func (r *Reader) Next(ctx context.Context) (protocol.Message, error) {
	for {
		r.mu.Lock()
		if len(r.queue) > 0 {
			m := r.queue[0]
			r.queue[0] = nil
			r.queue = r.queue[1:]
			if r.paused && len(r.queue) <= readerBuffer/2 {
				// librdkafka resumes each partition after the last record
				// it handed to the application, which is the last one
				// queued here.
				if err := r.k.use(func() error { return r.shard.c.Resume(topicPartitions(r.topic, r.parts)) }); err != nil {
					r.k.log.Warn("resume", "topic", r.topic, "err", err)
				} else {
					r.paused = false
				}
			}
			r.mu.Unlock()
			return protocol.Message{From: string(m.Key), Text: string(m.Value), Partition: m.TopicPartition.Partition,
				Offset: int64(m.TopicPartition.Offset), Time: m.Timestamp, Headers: headersOf(m)}, nil
		}
		if err := r.err; err != nil {
			r.err = nil
			r.mu.Unlock()
			return protocol.Message{}, err
		}
		r.mu.Unlock()
		select {
		case <-r.wake:
		case <-ctx.Done():
			return protocol.Message{}, context.Cause(ctx)
		}
	}
}

// pollLoop is the one goroutine that polls s's consumer and hands records
// to s's readers. A reader with readerBuffer records queued has its
// partitions paused, so one slow reader never blocks the others and its
// backlog stays in Kafka.
func (k *Clients) pollLoop(ctx context.Context, s *shard) {
	defer k.wg.Done()
	for ctx.Err() == nil {
		switch e := s.c.Poll(100).(type) {
		case *ckafka.Message:
			s.dispatch(k, e)
		case ckafka.Error:
			k.logClientError("kafka consumer", e)
		case *ckafka.Stats:
			if k.onStats != nil {
				k.onStats(e.String())
			}
		case nil:
		default:
			k.log.Debug("kafka consumer event", "event", e.String())
		}
		s.iter.Add(1)
	}
}

func (s *shard) dispatch(k *Clients, m *ckafka.Message) {
	topic := topicOf(m)
	s.mu.Lock()
	r := s.readers[topic]
	s.mu.Unlock()
	if r == nil {
		return // unassigned since
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	if m.TopicPartition.Error != nil {
		r.err = fmt.Errorf("read %s partition %d: %w", topic, m.TopicPartition.Partition, m.TopicPartition.Error)
	} else {
		r.queue = append(r.queue, m)
		if len(r.queue) >= readerBuffer && !r.paused {
			if err := s.c.Pause(topicPartitions(topic, r.parts)); err != nil {
				k.log.Warn("pause", "topic", topic, "err", err)
			} else {
				r.paused = true
			}
		}
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func topicOf(m *ckafka.Message) string {
	if m.TopicPartition.Topic == nil {
		return ""
	}
	return *m.TopicPartition.Topic
}

// headersOf copies a record's headers (nil: none).
func headersOf(m *ckafka.Message) []protocol.Header {
	if len(m.Headers) == 0 {
		return nil
	}
	hs := make([]protocol.Header, len(m.Headers))
	for i, h := range m.Headers {
		hs[i] = protocol.Header{Key: h.Key, Value: h.Value}
	}
	return hs
}
