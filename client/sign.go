package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/protocol"
)

// keyTTL is how long a sender's registered key is trusted from the cache,
// noKeyTTL how long "no key" is. A signature that does not verify re-reads
// the key (the sender may have a new one), at most every keyReload per
// sender: records anyone can write must not cost a ZooKeeper read each.
const (
	keyTTL    = time.Minute
	noKeyTTL  = 5 * time.Second
	keyReload = time.Second
)

// maxCachedKeys bounds the cache; past it, it starts over.
const maxCachedKeys = 10000

// senderKeys caches senders' registered public keys. mu is a leaf.
type senderKeys struct {
	mu   sync.Mutex
	keys map[string]cachedKey
}

type cachedKey struct {
	pub ed25519.PublicKey // nil: registered without a key, or not registered
	at  time.Time
}

// signingKey is Config.SigningKey, or what Config.LoadSigningKey gives
// the first time a key is needed (going online, sending): so a worker that
// never gets that far (an IRC nick that only asks the bot for help) makes
// no key. A load that fails is logged; the worker sends unsigned.
func (w *Worker) signingKey() ed25519.PrivateKey {
	if w.cfg.SigningKey != nil || w.cfg.LoadSigningKey == nil {
		return w.cfg.SigningKey
	}
	w.keyOnce.Do(func() {
		k, err := w.cfg.LoadSigningKey()
		if err != nil {
			w.log.Error("signing key: this worker's messages go unsigned", "id", w.id, "err", err)
		}
		w.loadedKey = k
	})
	return w.loadedKey
}

// publicKey is the worker's public key (nil: it does not sign).
func (w *Worker) publicKey() ed25519.PublicKey {
	key := w.signingKey()
	if key == nil {
		return nil
	}
	return key.Public().(ed25519.PublicKey)
}

// sign returns the signature headers of a message to → text (none without
// a key).
func (w *Worker) sign(to, text string) []protocol.Header {
	key := w.signingKey()
	if key == nil {
		return nil
	}
	sig, ms := protocol.Sign(key, w.id, to, time.Now(), text)
	return []protocol.Header{{Key: protocol.HeaderSignature, Value: sig}, {Key: protocol.HeaderTime, Value: ms}}
}

// checkSender decides the trust of a message read from the worker's topic
// against the key registered for its sender. A key that cannot be read
// (ZooKeeper away) leaves the message NoKey: shown as unverified, never
// dropped.
func (w *Worker) checkSender(ctx context.Context, m protocol.Message) protocol.Trust {
	sig, ms := m.Header(protocol.HeaderSignature), m.Header(protocol.HeaderTime)
	if sig == nil && ms == nil {
		return protocol.Unsigned
	}
	if protocol.ValidateID(m.From) != nil {
		return protocol.CheckSignature(nil, m.From, w.id, sig, ms, m.Text)
	}
	pub, age := w.senderKey(ctx, m.From, false)
	t := protocol.CheckSignature(pub, m.From, w.id, sig, ms, m.Text)
	if t != protocol.Verified && age >= keyReload {
		pub, _ = w.senderKey(ctx, m.From, true)
		t = protocol.CheckSignature(pub, m.From, w.id, sig, ms, m.Text)
	}
	return t
}

// senderKey is id's registered key, from the cache unless reload (or
// expired), and how old what it returns is (0: read just now). Without a
// session, or when the read fails, it says it knows none.
func (w *Worker) senderKey(ctx context.Context, id string, reload bool) (pub ed25519.PublicKey, age time.Duration) {
	k := &w.keys
	k.mu.Lock()
	c, ok := k.keys[id]
	k.mu.Unlock()
	ttl := keyTTL
	if c.pub == nil {
		ttl = noKeyTTL
	}
	if ok && !reload && time.Since(c.at) < ttl {
		return c.pub, time.Since(c.at)
	}
	w.mu.Lock()
	s := w.sess
	w.mu.Unlock()
	if s == nil {
		return nil, 0
	}
	data, _, err := s.Get(ctx, w.paths.Registered(id))
	switch {
	case errors.Is(err, zk.ErrNoNode):
		pub = nil
	case err != nil:
		w.log.Warn("reading a sender's key", "id", id, "err", err)
		return nil, 0
	default:
		r, _ := protocol.ParseRegistryData(data) // not JSON: no key
		pub = r.Key()
	}
	k.mu.Lock()
	if k.keys == nil || len(k.keys) >= maxCachedKeys {
		k.keys = map[string]cachedKey{}
	}
	k.keys[id] = cachedKey{pub, time.Now()}
	k.mu.Unlock()
	return pub, 0
}

// DefaultKeyDir is where the CLI keeps its users' signing keys:
// $XDG_CONFIG_HOME/zkchat/keys (~/.config/zkchat/keys).
func DefaultKeyDir() (string, error) {
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("signing keys: %w", err)
	}
	return filepath.Join(d, "zkchat", "keys"), nil
}

// LoadOrCreateKey returns id's signing key from dir/<id>.key, making one
// (mode 0600, dir 0700) if there is none. The file holds the 32-byte seed in
// standard base64.
func LoadOrCreateKey(dir, id string) (ed25519.PrivateKey, error) {
	if err := protocol.ValidateID(id); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, id+".key")
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		// Like every other secret of zkchat's (internal/secret).
		return nil, fmt.Errorf("signing key %s: mode %04o lets others read it; chmod 600 it", path, st.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err == nil {
		seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
		if err != nil || len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("signing key %s: not a base64 Ed25519 seed of %d bytes", path, ed25519.SeedSize)
		}
		return ed25519.NewKeyFromSeed(seed), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	// Written whole to a temporary file, then linked into place: a reader
	// never sees half a key, and two processes making one at once agree on
	// the first (link fails if the name exists).
	f, err := os.CreateTemp(dir, "."+id+".key-*")
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	defer os.Remove(f.Name())
	_, werr := f.WriteString(base64.StdEncoding.EncodeToString(priv.Seed()) + "\n")
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, werr)
	}
	if err := os.Link(f.Name(), path); errors.Is(err, os.ErrExist) {
		return LoadOrCreateKey(dir, id)
	} else if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return priv, nil
}

// keyWait bounds how long GoOnline waits for the manager to record the
// worker's key: a manager that does not (another implementation's) costs
// this much once per GoOnline, and the messages go out unverifiable.
const keyWait = 3 * time.Second

// awaitKeyRecorded waits, briefly, until /registry/<id> holds the worker's
// public key (the manager copies it from /online/<id> before it makes the
// topic, so this is normally at once); receivers check signatures against
// it. It only logs when it is not.
func (w *Worker) awaitKeyRecorded(ctx context.Context, s Session) {
	pub := w.publicKey()
	if pub == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, keyWait)
	defer cancel()
	for d := 5 * time.Millisecond; ; d = min(2*d, 200*time.Millisecond) {
		data, _, err := s.Get(ctx, w.paths.Registered(w.id))
		if err == nil {
			if r, _ := protocol.ParseRegistryData(data); r.Key().Equal(pub) {
				return
			}
		}
		select {
		case <-ctx.Done():
			w.log.Warn("the manager has not recorded this worker's public key: receivers show its messages as unverified until it does", "id", w.id)
			return
		case <-time.After(d):
		}
	}
}
