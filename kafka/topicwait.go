package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/zkchat/zkchat/protocol"
)

// maxTopicLook is the most topics one DescribeTopics request names.
const maxTopicLook = 1000

// topicLookEvery is how often the topics being waited for are looked up
// while any are.
const topicLookEvery = 20 * time.Millisecond

// topicWaiter answers every WaitTopic of a Clients with one metadata
// request (DescribeTopics, many topics to a request) per round, a round
// every topicLookEvery while anyone waits. Before, each waiter asked
// about its own topic, backing off to 200 ms: going online, 10,000 users
// of one bridge spent 304 ms each on average in WaitTopic, with 32 of
// them waiting at a time, and more waiting meant more requests.
//
// Its one goroutine (run) is owned by the Clients like the poll loops: it
// ends with the Clients' context (Close), and the waits still open fail
// with errClosed.
//
// Locks: mu guards waits; a leaf.
type topicWaiter struct {
	k    *Clients
	wake chan struct{} // cap 1
	// requests counts the DescribeTopics requests made (tests).
	requests atomic.Int64

	mu    sync.Mutex
	waits map[string]*topicWait // by topic
}

// topicWait is the callers waiting for one topic.
type topicWait struct {
	found chan struct{} // closed when the topic is seen
	n     int           // callers waiting
	last  error         // why the topic was not seen at the last look
}

// newTopicWaiter makes k's topic waiter and starts its loop (under k.wg,
// until k.ctx ends).
func newTopicWaiter(k *Clients) *topicWaiter {
	w := &topicWaiter{k: k, wake: make(chan struct{}, 1), waits: map[string]*topicWait{}}
	k.wg.Add(1)
	go w.run(k.ctx)
	return w
}

// WaitTopic waits until topic exists (has partitions) or ctx ends.
func (k *Clients) WaitTopic(ctx context.Context, topic string) error {
	w := k.topicWait
	if k.closed.Load() {
		return errClosed
	}
	w.mu.Lock()
	tw := w.waits[topic]
	if tw == nil {
		tw = &topicWait{found: make(chan struct{})}
		w.waits[topic] = tw
	}
	tw.n++
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	var closed bool
	select {
	case <-tw.found:
		return nil
	case <-k.ctx.Done():
		closed = true
	case <-ctx.Done():
	}
	w.mu.Lock()
	last := tw.last
	if tw.n--; tw.n == 0 && w.waits[topic] == tw {
		delete(w.waits, topic)
	}
	w.mu.Unlock()
	if closed {
		return errClosed
	}
	if errors.Is(last, protocol.ErrKafkaAuth) {
		return last
	}
	var ke ckafka.Error
	if errors.As(last, &ke) && (ke.Code() == ckafka.ErrTransport || ke.Code() == ckafka.ErrAllBrokersDown) {
		return fmt.Errorf("%w (%s): %v", protocol.ErrKafkaUnreachable, k.cfg.Brokers, last)
	}
	if last != nil {
		return fmt.Errorf("topic %s not seen (last error: %v): %w", topic, last, context.Cause(ctx))
	}
	return fmt.Errorf("topic %s does not exist: %w", topic, context.Cause(ctx))
}

func (w *topicWaiter) run(ctx context.Context) {
	defer w.k.wg.Done()
	for {
		select {
		case <-w.wake:
		case <-ctx.Done():
			return
		}
		for w.look() {
			t := time.NewTimer(topicLookEvery)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
	}
}

// look asks about every topic waited for, maxTopicLook to a request, and
// reports whether some are still waited for.
func (w *topicWaiter) look() bool {
	w.mu.Lock()
	names := make([]string, 0, len(w.waits))
	for t := range w.waits {
		names = append(names, t)
	}
	w.mu.Unlock()
	for len(names) > 0 {
		n := min(len(names), maxTopicLook)
		w.lookUp(names[:n])
		names = names[n:]
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.waits) > 0
}

// lookUp makes one DescribeTopics request of names and wakes the waiters
// of those that exist.
func (w *topicWaiter) lookUp(names []string) {
	k := w.k
	ctx, cancel := context.WithTimeout(context.Background(), metadataWait)
	defer cancel()
	var res ckafka.DescribeTopicsResult
	w.requests.Add(1)
	err := k.use(func() (err error) {
		res, err = k.admin.DescribeTopics(ctx, ckafka.NewTopicCollectionOfTopicNames(names),
			ckafka.SetAdminRequestTimeout(metadataWait))
		return err
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("metadata: %w", k.explain(err))
		k.log.Debug("wait topic", "topics", len(names), "err", err)
		for _, t := range names {
			if tw := w.waits[t]; tw != nil {
				tw.last = err
			}
		}
		return
	}
	for _, d := range res.TopicDescriptions {
		tw := w.waits[d.Name]
		if tw == nil {
			continue
		}
		switch d.Error.Code() {
		case ckafka.ErrNoError:
			if len(d.Partitions) > 0 {
				close(tw.found)
				delete(w.waits, d.Name)
			}
		case ckafka.ErrUnknownTopicOrPart, ckafka.ErrUnknownTopic, ckafka.ErrLeaderNotAvailable:
			tw.last = nil // not made yet
		default:
			tw.last = fmt.Errorf("metadata of %s: %w", d.Name, k.explain(d.Error))
		}
	}
}
