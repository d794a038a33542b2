package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/protocol"
)

// Managers lists the managers in the election, by the names they wrote
// (escaped for display: protocol.ShowText), leader first: the lowest
// sequence number leads. Empty when no manager runs, so requests wait.
func (s *Session) Managers(ctx context.Context) ([]string, error) {
	election, err := s.Children(ctx, s.Paths.Election())
	if err != nil {
		return nil, fmt.Errorf("election: %w", err)
	}
	sort.Slice(election, func(i, j int) bool { return protocol.ElectionSeq(election[i]) < protocol.ElectionSeq(election[j]) })
	names := []string{}
	for _, n := range election {
		data, _, err := s.Get(ctx, s.Paths.Election()+"/"+n)
		if errors.Is(err, zk.ErrNoNode) {
			continue // gone since the listing
		}
		if err != nil {
			return nil, fmt.Errorf("election node %s: %w", n, err)
		}
		names = append(names, protocol.ShowText(string(data), ""))
	}
	return names, nil
}

// SessionEvents counts what happened to a client's ZooKeeper sessions, for
// operators (zkchat_zookeeper_session_events_total): Observe is an OnState.
// It outlives the sessions it counts (a bridge or a manager replaces an
// expired one).
type SessionEvents struct {
	disconnected atomic.Uint64
	expired      atomic.Uint64
}

// SessionEventKinds are the label values of SessionEvents.Counts.
var SessionEventKinds = [...]string{"disconnected", "expired"}

// Observe counts st: a connection lost (the session may come back on
// another server) or a session expired (its ephemeral nodes are gone).
// Safe from go-zookeeper's event loop: it does not block.
func (c *SessionEvents) Observe(st zk.State) {
	switch st {
	case zk.StateDisconnected:
		c.disconnected.Add(1)
	case zk.StateExpired:
		c.expired.Add(1)
	}
}

// Counts returns the counts by SessionEventKinds.
func (c *SessionEvents) Counts() map[string]uint64 {
	return map[string]uint64{"disconnected": c.disconnected.Load(), "expired": c.expired.Load()}
}
