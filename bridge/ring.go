package bridge

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
)

// Several bridges on one channel (Config.SharedChannel): each live bridge
// has an ephemeral node /bridges/<bridge-id> in its own ZooKeeper session,
// and every bridge watches them all. A user (a channel member, by id) is
// served by one bridge, its owner: the live bridge that maximises
// Weight(bridgeID, userID) (rendezvous, or highest-random-weight, hashing).
// Every bridge computes the same owner from the same listing, with no
// coordination; when a bridge goes (stopped, or killed: its session expires
// and its node goes with its users' /online nodes, in one step), only its
// users move, each to the bridge with its next highest weight; when one
// comes, it takes about 1/n of the users of each of the others.
//
// Only the owner takes a user online, delivers its topic, and answers its
// commands; another bridge treats the user as online elsewhere, silently,
// and answers a command with a notice naming the owner's bot.

// Weight is the rendezvous weight of bridge for key (a user id): the first 8
// bytes of SHA-256(bridge "\x00" key), big-endian. A hash any language has,
// so that another implementation's bridges agree on the owners.
func Weight(bridge, key string) uint64 {
	h := sha256.New()
	h.Write([]byte(bridge))
	h.Write([]byte{0})
	h.Write([]byte(key))
	var sum [sha256.Size]byte
	return binary.BigEndian.Uint64(h.Sum(sum[:0]))
}

// Owner is the bridge of bridges (ids) that owns key: the one of highest
// Weight, ties going to the greater id; "" when there is none.
func Owner(bridges []string, key string) string {
	best, bestW := "", uint64(0)
	for _, b := range bridges {
		w := Weight(b, key)
		if best == "" || w > bestW || w == bestW && b > best {
			best, bestW = b, w
		}
	}
	return best
}

// bridgeInfo is the data of a /bridges node.
type bridgeInfo struct {
	Nick    string `json:"nick"`
	Channel string `json:"channel"`
}

// bridgeNode is one node of /bridges as listed: the bridge id, its data,
// and whether it was made in the listing session (own: the lister's node).
type bridgeNode struct {
	ID   string
	Data []byte
	Own  bool
}

// ring is the membership of the bridges sharing the channel, as last
// listed. Locks: mu guards the fields below it; a leaf, taken under no
// other lock and held only to read or replace them.
type ring struct {
	self string // this bridge's id

	mu      sync.Mutex
	known   bool              // listed at least once
	present bool              // this bridge's own node exists, made in its session
	ids     []string          // the live bridges of the channel, sorted
	nicks   map[string]string // bridge id → its bot's nick
}

// owner returns the owner of key ("": none known) and its bot's nick, and
// whether this bridge serves key: it is the owner and its own node is
// present.
func (r *ring) owner(key string) (id, nick string, mine bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.known {
		return "", "", false
	}
	id = Owner(r.ids, key)
	return id, r.nicks[id], id == r.self && r.present
}

// set records a listing; it reports whether anything that decides an
// owner changed.
func (r *ring) set(ids []string, nicks map[string]string, present bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	changed := !r.known || r.present != present || !slices.Equal(r.ids, ids)
	r.known, r.present, r.ids, r.nicks = true, present, ids, nicks
	return changed
}

// owns reports whether this bridge serves key: always without
// SharedChannel.
func (b *Bridge) owns(key string) bool {
	if !b.cfg.SharedChannel {
		return true
	}
	_, _, mine := b.ring.owner(key)
	return mine
}

// ownerElsewhere returns the nick of key's owner when that is another
// bridge; "" when it is this one, or none is known (the caller then acts
// itself).
func (b *Bridge) ownerElsewhere(key string) string {
	if !b.cfg.SharedChannel {
		return ""
	}
	id, nick, _ := b.ring.owner(key)
	if id == "" || id == b.ring.self {
		return ""
	}
	if nick == "" {
		nick = IDToNick(id)
	}
	return nick
}

// nickKey is the ownership key of a nick that cannot be an id: its folded
// form (ids and folded nicks are both lower case, and this one is only
// ever compared with itself).
func nickKey(nick string, cm CaseMapping) string { return "\x00" + cm.Fold(nick) }

// kickRing has the ring's goroutine look again (the bot's nick changed,
// the bridge is in the channel).
func (b *Bridge) kickRing() {
	select {
	case b.ringKick <- struct{}{}:
	default:
	}
}

// runRing is the ring's owner goroutine (SharedChannel only; Run starts it
// and waits for it): once the bot is first in the channel it makes the
// bridge's node, lists /bridges with a child watch (re-armed at every
// event; a new session's event makes the node again), records the
// bridges of this channel and, when the owners may have changed, pokes
// every user to reconcile. It ends with ctx (Run's).
func (b *Bridge) runRing(ctx context.Context) {
	var (
		armed   <-chan zk.Event // the child watch set by the last listing; nil: none
		backoff time.Duration
	)
	for ctx.Err() == nil {
		if _, ok := b.Synced(); ok || b.joinedOnce.Load() {
			b.joinedOnce.Store(true)
			data, _ := json.Marshal(bridgeInfo{Nick: b.irc.GetNick(), Channel: b.cfg.Channel})
			nodes, watch, err := b.dir.Bridges(ctx, b.ring.self, data, armed == nil)
			if watch != nil { // set, even if a read after it failed
				armed = watch
			}
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				backoff = min(max(2*backoff, 250*time.Millisecond), 10*time.Second)
				b.warn.Warn("shared channel: cannot list the bridges; retrying", "err", err, "retry_in", backoff)
				if !sleepCtx(ctx, backoff/2+rand.N(backoff/2+1)) {
					return
				}
				continue
			}
			backoff = 0
			b.setRing(nodes)
		}
		select {
		case <-armed:
			armed = nil // fired (a change, or the session's end): list and watch again
		case <-b.ringKick:
		case <-ctx.Done():
		}
	}
}

// setRing records a listing of /bridges: the bridges whose node names this
// channel. When the owners may have changed, every user reconciles.
func (b *Bridge) setRing(nodes []bridgeNode) {
	var ids []string
	nicks := map[string]string{}
	present := false
	for _, n := range nodes {
		var info bridgeInfo
		if err := json.Unmarshal(n.Data, &info); err != nil {
			b.warn.Warn("shared channel: a /bridges node with bad data; ignored", "bridge", n.ID, "err", err)
			continue
		}
		if !b.sameChannel(info.Channel) {
			continue // a bridge of another channel
		}
		ids = append(ids, n.ID)
		nicks[n.ID] = info.Nick
		if n.ID == b.ring.self && n.Own {
			present = true
		}
	}
	slices.Sort(ids)
	if !b.ring.set(ids, nicks, present) {
		return
	}
	b.log.Info("shared channel: bridges", "channel", b.cfg.Channel, "bridges", ids, "self", b.ring.self, "present", present)
	b.m.mu.Lock()
	for _, u := range b.m.users {
		u.poke()
	}
	b.m.mu.Unlock()
}

// sleepCtx waits d; false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
