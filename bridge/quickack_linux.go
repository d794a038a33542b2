package bridge

import (
	"net"
	"syscall"
	"time"
)

// quickAckDialer dials the IRC server and turns delayed ACKs off after every
// read. The bot waits for the PONG of each delivery proof; with delayed ACKs
// its kernel held the ACK of that PONG up to 40 ms, and the server (which
// sends with Nagle on) held the next line to the bot until it came: at 100
// messages a second every message waited about 20 ms.
type quickAckDialer struct{}

func (quickAckDialer) Dial(network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{Timeout: 10 * time.Second}).Dial(network, addr)
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c, nil
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c, nil
	}
	return &quickAckConn{TCPConn: tc, raw: raw}, nil
}

type quickAckConn struct {
	*net.TCPConn
	raw syscall.RawConn
}

// Read reads, then asks for an immediate ACK: Linux clears TCP_QUICKACK
// by itself, so it is set again after every read.
func (c *quickAckConn) Read(p []byte) (int, error) {
	n, err := c.TCPConn.Read(p)
	_ = c.raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
	return n, err
}
