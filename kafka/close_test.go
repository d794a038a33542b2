package kafka_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/kafka"
	"github.com/zkchat/zkchat/protocol"
)

// TestCloseWaitsForCallsInFlight: Close never destroys the clients under
// a librdkafka call, however long it lasts; it says it is waiting. Before,
// it gave up after 20 s and destroyed them anyway: a use-after-free.
func TestCloseWaitsForCallsInFlight(t *testing.T) {
	env := testenv.New(t)
	var logs testenv.Buffer
	k, err := kafka.New(kafka.Config{Brokers: env.Kafka, Topics: protocol.Topics{Prefix: env.Prefix},
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer kafka.SetCloseWarnAfter(100 * time.Millisecond)()
	started, release := make(chan struct{}), make(chan struct{})
	callDone := make(chan struct{})
	go func() { _ = k.HoldCall(started, release); close(callDone) }()
	<-started
	closed := make(chan struct{})
	go func() { k.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned with a call in flight")
	case <-time.After(600 * time.Millisecond):
	}
	if !strings.Contains(logs.String(), "still waiting for calls in flight") {
		t.Errorf("Close waited without saying so; log:\n%s", logs.String())
	}
	close(release)
	<-callDone
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return after the call ended")
	}
}

// TestProduceKafkaDown: with every broker down (nothing listens), a record
// queued while the producer knows it is "not sent" (ErrKafkaUnreachable)
// within seconds, not "outcome unknown" after the delivery timeout (30 s);
// the first record, queued before the producer knew, is dropped as early
// but may only be called "outcome unknown" (a broker it was sent to may have
// written it: the producer cannot tell).
func TestProduceKafkaDown(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	k, err := kafka.New(kafka.Config{Brokers: dead, Logger: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i, want := range []error{protocol.ErrOutcomeUnknown, protocol.ErrKafkaUnreachable} {
		start := time.Now()
		_, err = k.Produce(ctx, "zkchat-down", []byte("alice"), []byte("hi"))
		took := time.Since(start)
		if !errors.Is(err, want) || took > 15*time.Second {
			t.Fatalf("record %d, after %s: %v; want %v", i, took.Round(time.Millisecond), err, want)
		}
		if i == 1 && (errors.Is(err, protocol.ErrOutcomeUnknown) || !strings.Contains(err.Error(), "not sent")) {
			t.Fatalf("record %d: %v; want not sent", i, err)
		}
		t.Logf("record %d after %s: %v", i, took.Round(time.Millisecond), err)
	}
}
