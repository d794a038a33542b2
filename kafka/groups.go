package kafka

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// groupHandle carries the admin client of the group offset calls
// (Committed, Commit): a consumer that never reads, as the main admin
// client (see New: librdkafka issue #5040), with its own poll and log
// loops.
//
// Why a handle of their own, replaced when a coordinator moves: librdkafka
// (2.11) keeps a group's coordinator in a per-handle cache whose entries
// expire only after metadata.max.age.ms (15 min) without use, and its
// admin group calls never drop an entry when the broker answers
// NOT_COORDINATOR (only the transaction code does). After a group's
// coordinator moves to another broker while the old one stays up (Kafka's
// preferred leader election, every 5 minutes by default, after any broker
// restart), every call for that group goes to the old broker and fails
// for as long as it is retried: the fault suite saw a bridge's deliveries
// for two users restart every 17 s for a minute, never recovering. A new
// handle has an empty cache, so it asks for the coordinator again.
type groupHandle struct {
	c      *ckafka.Consumer
	a      *ckafka.AdminClient
	calls  sync.WaitGroup     // group calls in flight on it
	cancel context.CancelFunc // ends its loops
	loops  sync.WaitGroup
}

// groupAttempt bounds one attempt of a group offset call: a retry on a new
// handle then asks for the coordinator again.
const groupAttempt = 5 * time.Second

// groupCall runs f, one attempt of a group offset call, on the current
// group handle (made at the first call), with at most groupAttempt of
// ctx's time. The handle is replaced when f says the coordinator moved
// (NOT_COORDINATOR) or gets no answer in time (a coordinator that went
// down: librdkafka waits for it to come back rather than ask again): the
// next attempt asks a new handle, which looks the coordinator up afresh.
// A timed-out attempt returns a retriable ErrTimedOut.
func (k *Clients) groupCall(ctx context.Context, f func(ctx context.Context, a *ckafka.AdminClient) error) error {
	return k.use(func() error {
		g, err := k.groupHandle()
		if err != nil {
			return err
		}
		actx, cancel := context.WithTimeout(ctx, groupAttempt)
		err = f(actx, g.a)
		timedOut := err != nil && actx.Err() != nil && ctx.Err() == nil
		cancel()
		g.calls.Done()
		var ke ckafka.Error
		switch {
		case timedOut:
			err = ckafka.NewError(ckafka.ErrTimedOut, fmt.Sprintf("no answer within %s (%v)", groupAttempt, err), false)
			k.dropGroupHandle(g, err)
		case errors.As(err, &ke) && ke.Code() == ckafka.ErrNotCoordinator:
			k.dropGroupHandle(g, err)
		}
		return err
	})
}

// groupHandle returns the current group handle, made if there is none,
// with a call counted on it. Under groupMu (a leaf): making a handle
// does not wait for the brokers.
func (k *Clients) groupHandle() (*groupHandle, error) {
	k.groupMu.Lock()
	defer k.groupMu.Unlock()
	if k.group == nil {
		cfg := clientConfig(k.cfg, ckafka.ConfigMap{
			"client.id":              "zkchat-groups",
			"group.id":               cmp.Or(k.cfg.ReaderGroup, sharedReaderGroup),
			"enable.auto.commit":     false,
			"go.logs.channel.enable": true,
		})
		c, err := ckafka.NewConsumer(&cfg)
		if err != nil {
			return nil, fmt.Errorf("kafka group offsets client: %w", err)
		}
		a, err := ckafka.NewAdminClientFromConsumer(c)
		if err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("kafka group offsets client: %w", err)
		}
		ctx, cancel := context.WithCancel(k.ctx)
		g := &groupHandle{c: c, a: a, cancel: cancel}
		g.loops.Add(2)
		go func() { defer g.loops.Done(); k.pollIdle(ctx, c, "kafka groups") }()
		go func() { defer g.loops.Done(); RouteLogs(ctx, c.Logs(), k.log) }()
		k.group = g
		k.groupsMade.Add(1)
	}
	k.group.calls.Add(1)
	return k.group, nil
}

// dropGroupHandle retires g, if it is still the current handle: the next
// group call makes a new one; g is closed once its calls in flight end,
// by a goroutine Close waits for (k.wg). Called within use, so before
// Close waits on k.wg.
func (k *Clients) dropGroupHandle(g *groupHandle, why error) {
	k.groupMu.Lock()
	if k.group != g {
		k.groupMu.Unlock()
		return // another call retired it already
	}
	k.group = nil
	k.groupMu.Unlock()
	k.noisy.Log(slog.LevelInfo, "coordinator moved",
		"kafka: a consumer group's coordinator moved or does not answer; asking for it again on a new client", "err", why)
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		g.calls.Wait()
		g.close(k.log)
	}()
}

// close ends g's loops and closes its clients; no call may be in flight.
func (g *groupHandle) close(log *slog.Logger) {
	g.cancel()
	g.loops.Wait()
	g.a.Close()
	if err := g.c.Close(); err != nil {
		log.Warn("kafka group offsets client close", "err", err)
	}
}

// pollIdle serves a consumer that never reads until ctx ends: it keeps
// client errors for explain, counts and logs them, and keeps the queue
// drained.
func (k *Clients) pollIdle(ctx context.Context, c *ckafka.Consumer, name string) {
	for ctx.Err() == nil {
		switch e := c.Poll(100).(type) {
		case ckafka.Error:
			if e.Code() != ckafka.ErrAllBrokersDown {
				k.lastErr.Store(&clientError{e, time.Now()})
			}
			k.logClientError(name, e)
		case nil:
		default:
			k.log.Debug(name+" event", "event", e.String())
		}
	}
}
