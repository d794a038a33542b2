package manager

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

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
		Pending: map[string]int{kindEnroll.String(): 0, kindQuit.String(): 0}, Answered: map[string]uint64{}}
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
	if l := m.term.Load(); l != nil {
		l.mu.Lock()
		for key := range l.nodes {
			if key.k != kindOnline {
				st.Pending[key.k.String()]++
			}
		}
		l.mu.Unlock()
	}
	return st
}
