package netcheck

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// TestRefused: an address where nothing listens, and a host that does not
// exist, are told at once; one that listens is not.
func TestRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := closed.Addr().String()
	closed.Close()
	ctx := context.Background()
	start := time.Now()
	err = Refused(ctx, "ZooKeeper", []string{dead, "no-such-host.invalid:2181"})
	if !errors.Is(err, ErrNotListening) || !strings.Contains(err.Error(), dead+": connection refused") ||
		!strings.Contains(err.Error(), "no-such-host.invalid:2181: no such host") {
		t.Fatalf("Refused = %v", err)
	}
	if d := time.Since(start); d > probeTimeout {
		t.Fatalf("took %s", d)
	}
	if err := Refused(ctx, "ZooKeeper", []string{dead, l.Addr().String()}); err != nil {
		t.Fatalf("one listening: %v", err)
	}
}
