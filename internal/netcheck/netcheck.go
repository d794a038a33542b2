// Package netcheck tells at once that a server cannot be reached at all:
// every address refused the connection (nothing listens there) or names a
// host that does not exist. The client libraries would retry such an
// address until their own timeout (go-zookeeper: 15 s, librdkafka: its
// socket and metadata timeouts) and then report something vaguer; a
// one-shot command should say it at once, in plain words.
package netcheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"
)

// ErrNotListening: every address refused the connection or does not exist.
var ErrNotListening = errors.New("nothing listens there")

// probeTimeout bounds one address's connection attempt; one that times out
// is not a refusal (a firewall, a slow network) and is left to the client.
const probeTimeout = 2 * time.Second

// Refused dials each address once (at most 2 s each, in parallel) and
// returns an error wrapping ErrNotListening, naming what each said, if
// every one refused the connection or names an unknown host; nil if any
// answered or failed otherwise.
func Refused(ctx context.Context, what string, addrs []string) error {
	if len(addrs) == 0 {
		return nil
	}
	errs := make([]error, len(addrs))
	done := make(chan struct{}, len(addrs))
	for i, a := range addrs {
		go func() {
			defer func() { done <- struct{}{} }()
			d := net.Dialer{Timeout: probeTimeout}
			c, err := d.DialContext(ctx, "tcp", a)
			if err == nil {
				c.Close()
			}
			errs[i] = err
		}()
	}
	for range addrs {
		<-done
	}
	var why []string
	for i, err := range errs {
		var dns *net.DNSError
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			why = append(why, addrs[i]+": connection refused")
		case errors.As(err, &dns) && dns.IsNotFound:
			why = append(why, addrs[i]+": no such host")
		default:
			return nil // answered, or may yet: the client decides
		}
	}
	return fmt.Errorf("%s at %s: %w (%s)", what, strings.Join(addrs, ","), ErrNotListening, strings.Join(why, "; "))
}
