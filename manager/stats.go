package manager

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/kafka"
	"github.com/zkchat/zkchat/protocol"
)

// Stats is what the manager tells an operator about itself (zkchat's
// Prometheus metrics read it at each scrape: internal/metrics). Counters
// only grow while the process lives.
type Stats struct {
	Leading bool   // this manager leads now
	Terms   uint64 // terms it has led since it started
	// Pending: the requests of each kind (enroll, quit) the leader has
	// listed and not yet seen answered and gone; zero when not leading.
	Pending map[string]int
	// OldestPending: by kind, how long ago this term first listed the
	// oldest of them (0: none pending). A new leader starts counting when
	// it lists them.
	OldestPending map[string]time.Duration
	// ZooKeeperConnected: the election session is up. ZooKeeperEvents
	// counts the events of every session the manager dialled, by
	// zookeeper.SessionEventKinds.
	ZooKeeperConnected bool
	ZooKeeperEvents    map[string]uint64
	// KafkaConnected: a broker answered the admin client within
	// kafka.PingTimeout at this call; KafkaErrors counts its client errors
	// by kafka.ErrorKinds.
	KafkaConnected bool
	KafkaErrors    map[string]uint64
	// Answered: requests answered by this manager, by kind and status
	// ("enroll/done", "quit/failed", ...): a fixed set of label values.
	Answered map[string]uint64
	// Registered: the registered users (/registry's child count, one read
	// through the manager's tool session); -1 when ZooKeeper did not
	// answer within statsTimeout.
	Registered int
}

// statsTimeout bounds Stats' one ZooKeeper read.
const statsTimeout = 2 * time.Second

// counters are the manager's counters behind Stats: terms atomic, the
// answers under their mutex (a leaf).
type counters struct {
	terms    atomic.Uint64
	mu       sync.Mutex
	answered map[string]uint64
}

func (c *counters) answer(k kind, st protocol.Status) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.answered == nil {
		c.answered = map[string]uint64{}
	}
	c.answered[k.String()+"/"+statusLabel(st)]++
}

// statusLabel is a status's label value: its name for the known ones.
func statusLabel(st protocol.Status) string {
	switch st {
	case protocol.StatusDone:
		return "done"
	case protocol.StatusAlready:
		return "already"
	case protocol.StatusFailed:
		return "failed"
	}
	return "other"
}

// Stats returns the manager's figures now. Safe from any goroutine.
func (m *Manager) Stats() Stats {
	st := Stats{Leading: m.Leading(), Terms: m.count.terms.Load(),
		Pending:       map[string]int{kindEnroll.String(): 0, kindQuit.String(): 0},
		OldestPending: map[string]time.Duration{kindEnroll.String(): 0, kindQuit.String(): 0},
		Answered:      map[string]uint64{}, ZooKeeperEvents: m.zkEvents.Counts()}
	if s := m.run.Load(); s != nil {
		st.ZooKeeperConnected = s.State() == zk.StateHasSession
	}
	m.count.mu.Lock()
	for k, v := range m.count.answered {
		st.Answered[k] = v
	}
	m.count.mu.Unlock()
	st.Registered = -1
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	if s, err := m.toolSession(ctx); err == nil {
		if ok, stat, err := s.Exists(ctx, s.Paths.Registry()); err == nil && ok {
			st.Registered = int(stat.NumChildren)
		}
	}
	// The Kafka ping has its own time: a dead Kafka must not starve the
	// ZooKeeper read above of its.
	kctx, kcancel := context.WithTimeout(context.Background(), kafka.PingTimeout)
	defer kcancel()
	st.KafkaConnected, st.KafkaErrors = m.admin.Ping(kctx) == nil, m.admin.Errors()
	if l := m.term.Load(); l != nil {
		l.mu.Lock()
		now := time.Now()
		for key, ns := range l.nodes {
			if key.k != kindOnline {
				k := key.k.String()
				st.Pending[k]++
				st.OldestPending[k] = max(st.OldestPending[k], now.Sub(ns.listedAt))
			}
		}
		l.mu.Unlock()
	}
	return st
}

// Ready reports whether the manager does its job now: its election session
// is up, some manager (this one or another) is in the election, so
// requests are answered or will be by a standby, and a Kafka broker answers
// (a leader makes and deletes topics); why says what is missing.
func (m *Manager) Ready() (ok bool, why string) {
	s := m.run.Load()
	if s == nil || s.State() != zk.StateHasSession {
		return false, "no ZooKeeper session (connecting)"
	}
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	if !m.Leading() {
		switch managers, err := s.Managers(ctx); {
		case err != nil:
			return false, fmt.Sprintf("cannot list the managers: %v", err)
		case len(managers) == 0:
			return false, "not in the election yet"
		}
	}
	kctx, kcancel := context.WithTimeout(context.Background(), kafka.PingTimeout)
	defer kcancel()
	if err := m.admin.Ping(kctx); err != nil {
		return false, err.Error()
	}
	return true, ""
}
