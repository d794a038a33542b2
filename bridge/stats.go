package bridge

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Stats is what the bridge tells an operator about itself (zkchat's
// Prometheus metrics read it at each scrape: internal/metrics). Counters
// only grow while the process lives.
type Stats struct {
	IRCConnected       bool // the bot is connected, in the channel, member list read
	ZooKeeperConnected bool // the bridge's ZooKeeper session is up
	// ZooKeeperEvents counts the bridge's session events, by
	// zookeeper.SessionEventKinds (disconnected, expired).
	ZooKeeperEvents map[string]uint64
	// KafkaConnected: a broker answered within kafka.PingTimeout at this
	// call; KafkaErrors counts the client errors librdkafka reported, by
	// kafka.ErrorKinds.
	KafkaConnected bool
	KafkaErrors    map[string]uint64
	Online         int // users online through this bridge
	Puppets        int // puppets on the server (connected)
	OutboxLines    int // lines the bot's outbox holds (deliveries, PINGs, replies)

	Sent uint64 // messages users sent through the bridge, acknowledged by Kafka
	// SendFailed counts the messages not sent, by reason (SendFailReasons).
	SendFailed map[string]uint64
	// Delivered counts the messages delivered to IRC and proved read by the
	// server; Redelivered the deliveries that stopped before proving their
	// last lines (those come again from the last commit).
	Delivered   uint64
	Redelivered uint64
	// Latency: from a message's Kafka timestamp to the server's proof that
	// it read the delivered lines, by LatencyBuckets (cumulative counts,
	// as Prometheus wants them), with their sum and count.
	LatencyCounts []uint64
	LatencySum    float64
	LatencyCount  uint64
}

// SendFailReasons are the reasons a send fails, the label values of
// Stats.SendFailed: a fixed set, so a metric's labels stay bounded.
var SendFailReasons = [...]string{"not_online", "receiver_offline", "not_registered", "kafka_unreachable", "outcome_unknown", "too_long", "bad_receiver", "other"}

// LatencyBuckets are the upper bounds, in seconds, of the delivery latency
// histogram: 5 ms to 60 s.
var LatencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// counters are the bridge's counters behind Stats. Atomic, except the
// histogram, under its own mutex (a leaf).
type counters struct {
	sent       atomic.Uint64
	delivered  atomic.Uint64
	failed     [len(SendFailReasons)]atomic.Uint64 // by SendFailReasons index
	latencyMu  sync.Mutex
	latency    []uint64 // per bucket, not cumulative; the last: above every bound
	latencySum float64
	latencyN   uint64
}

// fail counts a send that failed for reason (one of SendFailReasons).
func (c *counters) fail(reason string) {
	for i, r := range SendFailReasons {
		if r == reason {
			c.failed[i].Add(1)
			return
		}
	}
	c.failed[len(SendFailReasons)-1].Add(1)
}

// proved counts messages delivered and proved, with their Kafka
// timestamps.
func (c *counters) proved(times []time.Time, now time.Time) {
	c.delivered.Add(uint64(len(times)))
	c.latencyMu.Lock()
	defer c.latencyMu.Unlock()
	if c.latency == nil {
		c.latency = make([]uint64, len(LatencyBuckets)+1)
	}
	for _, t := range times {
		if t.IsZero() {
			continue
		}
		d := max(now.Sub(t).Seconds(), 0)
		i := 0
		for i < len(LatencyBuckets) && d > LatencyBuckets[i] {
			i++
		}
		c.latency[i]++
		c.latencySum += d
		c.latencyN++
	}
}

// Stats returns the bridge's figures now. Safe from any goroutine.
func (b *Bridge) Stats() Stats {
	st := Stats{
		Sent:        b.count.sent.Load(),
		Delivered:   b.count.delivered.Load(),
		Redelivered: uint64(b.deliveries.unproved.Load()),
		SendFailed:  map[string]uint64{},
	}
	for i, r := range SendFailReasons {
		st.SendFailed[r] = b.count.failed[i].Load()
	}
	b.count.latencyMu.Lock()
	st.LatencyCounts = make([]uint64, len(LatencyBuckets))
	var cum uint64
	for i := range LatencyBuckets {
		if b.count.latency != nil {
			cum += b.count.latency[i]
		}
		st.LatencyCounts[i] = cum
	}
	st.LatencySum, st.LatencyCount = b.count.latencySum, b.count.latencyN
	b.count.latencyMu.Unlock()

	st.IRCConnected, _ = b.connection()
	st.ZooKeeperConnected = b.dir != nil && b.dir.Connected()
	if b.dir != nil {
		st.ZooKeeperEvents = b.dir.SessionEvents()
	}
	if b.cfg.Kafka != nil {
		st.KafkaConnected, st.KafkaErrors = b.cfg.Kafka.Ping(context.Background()) == nil, b.cfg.Kafka.Errors()
	}
	b.m.mu.Lock()
	for _, u := range b.m.users {
		if u.onlineNow.Load() {
			st.Online++
		}
	}
	b.m.mu.Unlock()
	b.pup.mu.Lock()
	for _, pp := range b.pup.live {
		if pp.connected() != nil {
			st.Puppets++
		}
	}
	b.pup.mu.Unlock()
	st.OutboxLines = b.out.length()
	return st
}

// readyTimeout bounds Ready's reads of ZooKeeper and Kafka, below a
// container healthcheck's timeout.
const readyTimeout = 2 * time.Second

// Ready reports whether the bridge serves its users now: connected to IRC,
// in the channel with its member list read, its ZooKeeper session up, a
// manager in the election (else registrations wait), and a Kafka broker
// answering; why says what is missing.
func (b *Bridge) Ready() (ok bool, why string) {
	if synced, _ := b.connection(); !synced {
		return false, "not in the IRC channel (connecting, or the member list not read yet)"
	}
	if !b.dir.Connected() {
		return false, "no ZooKeeper session"
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	switch managers, err := b.dir.Managers(ctx); {
	case err != nil:
		return false, fmt.Sprintf("cannot list the managers: %v", err)
	case len(managers) == 0:
		return false, "no manager runs (registrations and quits wait)"
	}
	if b.cfg.Kafka != nil {
		if err := b.cfg.Kafka.Ping(context.Background()); err != nil { // bounded by kafka.PingTimeout
			return false, err.Error()
		}
	}
	return true, ""
}
