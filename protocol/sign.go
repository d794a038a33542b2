package protocol

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Signed messages. The record keeps the exercise's format (key = sender id,
// value = text), so any implementation reads it; zkchat adds two record
// headers, which others ignore:
//
//	zkchat-sig   the Ed25519 signature (64 bytes) of SignedBytes
//	zkchat-time  the send time, Unix milliseconds in ASCII decimal
//
// The sender's public key is kept in /registry/<id> (RegistryData) by the
// manager, copied from the sender's own /online node (OnlineData), which
// with ZooKeeper ACLs on only the id's identity can make. The private key
// stays with the user (the IRC bridge holds its users').
const (
	HeaderSignature = "zkchat-sig"
	HeaderTime      = "zkchat-time"
)

// signContext separates zkchat's message signatures from anything else the
// same key might sign.
const signContext = "zkchat message v1\x00"

// SignedBytes is what a signature covers: sender, receiver, time and text,
// each unambiguous (ids hold no NUL, the time is decimal, the text is last).
// The receiver is in it, so a record copied into another user's topic does
// not verify there.
func SignedBytes(from, to string, unixMilli int64, text string) []byte {
	var b bytes.Buffer
	b.Grow(len(signContext) + len(from) + len(to) + 24 + len(text))
	b.WriteString(signContext)
	b.WriteString(from)
	b.WriteByte(0)
	b.WriteString(to)
	b.WriteByte(0)
	b.WriteString(strconv.FormatInt(unixMilli, 10))
	b.WriteByte(0)
	b.WriteString(text)
	return b.Bytes()
}

// Sign returns the two headers' values for a message from → to sent at.
func Sign(key ed25519.PrivateKey, from, to string, at time.Time, text string) (sig, ms []byte) {
	t := at.UnixMilli()
	return ed25519.Sign(key, SignedBytes(from, to, t, text)), []byte(strconv.FormatInt(t, 10))
}

// Trust says what a receiver can vouch for about a message's sender.
type Trust int

const (
	// Unsigned: no signature (another implementation, a raw Kafka client,
	// a zkchat user without a key). The key names the sender; nothing
	// vouches for it.
	Unsigned Trust = iota
	// Verified: signed with the key registered for the sender id.
	Verified
	// NoKey: signed, but the sender id has no registered key (not
	// registered, or its key not recorded yet).
	NoKey
	// Forged: a signature that does not verify with the sender's key (or a
	// malformed one): someone else wrote it, or it was altered.
	Forged
)

func (t Trust) String() string {
	switch t {
	case Verified:
		return "verified"
	case NoKey:
		return "unverified: the sender has no registered key"
	case Forged:
		return "unverified: the signature does not match the sender's key"
	}
	return "unverified: not signed"
}

// CheckSignature decides the trust of a message from → to with the given
// header values (nil: absent) against pub, the key registered for from
// (nil: none).
func CheckSignature(pub ed25519.PublicKey, from, to string, sig, ms []byte, text string) Trust {
	if sig == nil && ms == nil {
		return Unsigned
	}
	t, err := strconv.ParseInt(string(ms), 10, 64)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return Forged
	}
	if pub == nil {
		return NoKey
	}
	if !ed25519.Verify(pub, SignedBytes(from, to, t, text), sig) {
		return Forged
	}
	return Verified
}

// RegistryData is the JSON of /registry/<id>. Fields zkchat does not know
// are kept by whoever rewrites it; a node with no data (another
// implementation's manager) is a registered id without a key.
type RegistryData struct {
	RegisteredAt string `json:"registered_at,omitempty"`
	// PublicKey is the id's Ed25519 public key, standard base64.
	PublicKey string         `json:"public_key,omitempty"`
	Other     map[string]any `json:"-"`
}

// ErrBadPublicKey: a public key that is not 32 bytes of standard base64.
var ErrBadPublicKey = errors.New("not an Ed25519 public key (32 bytes, standard base64)")

// EncodePublicKey is the text form of a public key.
func EncodePublicKey(pub ed25519.PublicKey) string { return base64.StdEncoding.EncodeToString(pub) }

// DecodePublicKey parses EncodePublicKey's form.
func DecodePublicKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public key %.60q: %w", s, ErrBadPublicKey)
	}
	return ed25519.PublicKey(b), nil
}

// ParseRegistryData reads a registry node. Empty data is a registration
// without a key; data that is not a JSON object is an error (the id stays
// registered; it just has no key).
func ParseRegistryData(data []byte) (RegistryData, error) {
	var r RegistryData
	if len(bytes.TrimSpace(data)) == 0 {
		return r, nil
	}
	var all map[string]any
	if err := json.Unmarshal(data, &all); err != nil {
		return r, fmt.Errorf("registry data: %w", err)
	}
	if v, ok := all["registered_at"].(string); ok {
		r.RegisteredAt = v
	}
	if v, ok := all["public_key"].(string); ok {
		r.PublicKey = v
	}
	delete(all, "registered_at")
	delete(all, "public_key")
	if len(all) > 0 {
		r.Other = all
	}
	return r, nil
}

// Key is the registered public key (nil: none, or not a valid key).
func (r RegistryData) Key() ed25519.PublicKey {
	if r.PublicKey == "" {
		return nil
	}
	k, err := DecodePublicKey(r.PublicKey)
	if err != nil {
		return nil
	}
	return k
}

// Marshal writes the registry node's JSON, unknown fields included.
func (r RegistryData) Marshal() []byte {
	all := map[string]any{}
	for k, v := range r.Other {
		all[k] = v
	}
	if r.RegisteredAt != "" {
		all["registered_at"] = r.RegisteredAt
	}
	if r.PublicKey != "" {
		all["public_key"] = r.PublicKey
	}
	b, _ := json.Marshal(all) // strings and decoded JSON values only
	return b
}

// OnlineKeyField is the field of the /online node's JSON that carries the
// worker's public key (EncodePublicKey).
const OnlineKeyField = "public_key"

// OnlinePublicKey reads the public key from an /online node's JSON: nil,
// nil when there is none; an error when it is there but malformed.
func OnlinePublicKey(data []byte) (ed25519.PublicKey, error) {
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, nil // not zkchat's JSON: another implementation's node
	}
	s, ok := m[OnlineKeyField].(string)
	if !ok {
		return nil, nil
	}
	return DecodePublicKey(s)
}
