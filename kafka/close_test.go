package kafka_test

import (
	"log/slog"
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
