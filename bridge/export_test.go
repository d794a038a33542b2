package bridge

import "github.com/lrstanley/girc"

// Trace stages, for the hop-by-hop latency benchmark.
const (
	TraceReceived = int(traceReceived)
	TraceSending  = int(traceSending)
	TraceAcked    = int(traceAcked)
	TraceConsumed = int(traceConsumed)
	TraceWritten  = int(traceWritten)
	TraceStages   = TraceWritten + 1
)

// SetTrace has b tell f when a message passes each stage (before Run).
func SetTrace(b *Bridge, f func(stage int, text string)) {
	t := func(s traceStage, text string) { f(int(s), text) }
	b.trace = t
	b.out.trace = t
}

// ConnectLikeTheBridge connects c with the dialer the bot and its puppets
// use (benchmarks: a bare client as the floor of a puppet's cost).
func ConnectLikeTheBridge(c *girc.Client) error { return c.DialerConnect(quickAckDialer{}) }
