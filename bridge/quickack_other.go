//go:build !linux

package bridge

import (
	"net"
	"time"
)

// quickAckDialer is a plain dialer where TCP_QUICKACK does not exist.
type quickAckDialer struct{}

func (quickAckDialer) Dial(network, addr string) (net.Conn, error) {
	return (&net.Dialer{Timeout: 10 * time.Second}).Dial(network, addr)
}
