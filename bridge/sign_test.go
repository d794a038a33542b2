package bridge_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/zkchat/zkchat/bridge"
	"github.com/zkchat/zkchat/client"
	"github.com/zkchat/zkchat/internal/irctest"
	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/protocol"
)

// TestSignedOnIRC: through the bridge and InspIRCd, a message signed with
// the sender's registered key arrives as "<bob> …", one that is not (a
// record any Kafka client wrote with the key "bob") as "<bob?> …", never
// dropped; what an IRC user sends is signed with the key the bridge holds
// for them, and checks out at the receiver. Before, both arrived as
// "<bob> …", and nothing the bridge sent was signed.
func TestSignedOnIRC(t *testing.T) {
	t.Parallel()
	users, bots := testenv.IRC(t)
	s := launch(t, &setup{}, bots, users, func(c *bridge.Config) {
		c.KeyDir, c.UnverifiedMark = t.TempDir(), "?"
	})
	tag := testenv.Tag()
	nick := "sig" + tag
	u := s.join(t, nick)
	u.Send("PRIVMSG " + s.bot + " :register")
	u.WaitFrom(s.bot, "NOTICE", "Registered")
	s.waitNode(t, s.env.Conn(t), s.env.Path("/online/"+nick), true)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	bobID := "bob" + tag
	bob, err := client.New(bobID, client.Config{ZooKeeper: s.env.ZooKeeper, Kafka: s.kafka,
		RequestTimeout: 10 * time.Second, Logger: testenv.Logger(t), SigningKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	if _, err := bob.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if err := bob.GoOnline(ctx); err != nil {
		t.Fatal(err)
	}
	if err := bob.SendMessage(ctx, nick, "signed by bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.kafka.Produce(ctx, protocol.Topics{Prefix: s.env.Prefix}.Topic(nick), []byte(bobID), []byte("anyone's record")); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<" + bobID + "> signed by bob", "<" + bobID + "?> anyone's record"} {
		if _, got, _ := irctest.TextOf(u.WaitFrom(s.bot, "PRIVMSG", ""), nick); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	u.Send("PRIVMSG " + s.bot + " :msg " + bobID + " from IRC")
	var got []protocol.Message
	testenv.WaitFor(t, 20*time.Second, "bob reads the IRC user's message", func() bool {
		if _, err := bob.ReadMessages(ctx, func(m protocol.Message) error { got = append(got, m); return nil }); err != nil {
			t.Fatal(err)
		}
		return len(got) > 0
	})
	if got[0].Text != "from IRC" || got[0].Trust != protocol.Verified {
		t.Fatalf("bob read %q with trust %v, want verified", got[0].Text, got[0].Trust)
	}
}
