package client

import (
	"errors"
	"strings"
	"testing"

	"github.com/zkchat/zkchat/protocol"
)

// TestBadIDNoServerCall: a worker with a bad id is refused before any
// server is contacted (the address below has no server).
func TestBadIDNoServerCall(t *testing.T) {
	for _, id := range []string{"", "Alice", "a/b", "..", "a b", "ü", strings.Repeat("x", 65)} {
		_, err := New(id, Config{ZooKeeper: "127.0.0.1:1"})
		if !errors.Is(err, protocol.ErrInvalidID) {
			t.Errorf("NewWorker(%q) = %v, want protocol.ErrInvalidID", id, err)
		}
	}
}
