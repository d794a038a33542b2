package manager_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/protocol"
)

// TestPublicKeyRecorded: the leader copies the public key of a registered
// id's /online node into /registry/<id> (receivers verify signatures with
// it), replaces it when the id comes online with another key, and keeps
// the rest of the registry data. A malformed key is not recorded, and the
// node is accepted all the same (its topic is made).
func TestPublicKeyRecorded(t *testing.T) {
	env := testenv.New(t)
	m := env.LeadingManager(t, "m1")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := m.RegisterUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	c := env.Conn(t)
	online, reg := env.Path("/online/bob"), env.Path("/registry/bob")
	key := func() ed25519.PublicKey {
		d, _, err := c.Get(reg)
		if err != nil {
			t.Fatal(err)
		}
		r, err := protocol.ParseRegistryData(d)
		if err != nil || r.RegisteredAt == "" {
			t.Fatalf("registry data %q: %v", d, err)
		}
		return r.Key()
	}
	goOnline := func(data string) {
		t.Helper()
		if _, err := c.Create(online, []byte(data), zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2; i++ {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		goOnline(`{"host":"h","public_key":"` + protocol.EncodePublicKey(pub) + `"}`)
		testenv.WaitFor(t, 10*time.Second, "key recorded", func() bool { return key().Equal(pub) })
		if err := c.Delete(online, -1); err != nil {
			t.Fatal(err)
		}
	}
	before := key()
	goOnline(`{"host":"h","public_key":"not a key"}`)
	testenv.WaitFor(t, 20*time.Second, "topic made for a node with a malformed key", func() bool {
		for _, tp := range env.Topics(t) {
			if tp == env.Prefix+"bob" {
				return true
			}
		}
		return false
	})
	if !key().Equal(before) {
		t.Error("a malformed key replaced the recorded one")
	}
}
