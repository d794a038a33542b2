package client_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/zkchat/zkchat/protocol"
)

// TestSendTooLong: a text over protocol.MaxMessageBytes is refused before
// anything is produced, with an error that says its size and the limit; a
// text at the limit is sent.
func TestSendTooLong(t *testing.T) {
	e := newFakeEnv(t)
	(&fakeManager{e: e}).start(t)
	ctx := ctxT(t)
	e.onlineWorker(t, "max")
	lena := e.onlineWorker(t, "lena")
	long := strings.Repeat("x", protocol.MaxMessageBytes+1)
	err := lena.SendMessage(ctx, "max", long)
	if !errors.Is(err, protocol.ErrMessageTooLong) || !strings.Contains(err.Error(), "4097 bytes, limit 4096") {
		t.Fatalf("send of %d bytes: %v, want ErrMessageTooLong with the size and the limit", len(long), err)
	}
	if recs := e.kafka.Records("p-max"); len(recs) != 0 {
		t.Fatalf("max's topic holds %d records after a refused send", len(recs))
	}
	if err := lena.SendMessage(ctx, "max", long[1:]); err != nil {
		t.Fatalf("send of %d bytes: %v", len(long)-1, err)
	}
	if recs := e.kafka.Records("p-max"); len(recs) != 1 || len(recs[0].Text) != protocol.MaxMessageBytes {
		t.Fatalf("max's topic holds %d records, want the one at the limit", len(recs))
	}
}
