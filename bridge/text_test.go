package bridge_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/zkchat/zkchat/internal/irctest"
	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/protocol"
)

// TestEscapesOnIRC: records a foreign producer wrote straight into an IRC
// user's topic, through the bridge and InspIRCd: colour and bold pass,
// ESC, CR, LF and a hostile key arrive escaped on one line each, and a
// record over protocol.MaxMessageBytes arrives cut, with the marker.
func TestEscapesOnIRC(t *testing.T) {
	t.Parallel()
	s := start(t)
	tag := testenv.Tag()
	nick := "esc" + tag
	u := s.join(t, nick)
	u.Send("PRIVMSG " + s.bot + " :register")
	u.WaitFrom(s.bot, "NOTICE", "Registered")
	s.waitNode(t, s.env.Conn(t), s.env.Path("/online/"+nick), true)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topic := protocol.Topics{Prefix: s.env.Prefix}.Topic(nick)
	long := strings.Repeat("z", 900_000)
	for _, r := range []struct{ key, value, want string }{
		{"bob", "\x02bold\x02 \x0304red\x0f clear\x1b[2J\r\nQUIT :bye", "<bob> \x02bold\x02 \x0304red\x0f " + `clear\x1b[2J\x0d\x0aQUIT :bye`},
		{"bob> \x1b[31mmallory", "hi", `<"bob\x3e\x20\x1b\x5b31mmallory"> hi`},
		{"bob", long, ""},
	} {
		if _, err := s.kafka.Produce(ctx, topic, []byte(r.key), []byte(r.value)); err != nil {
			t.Fatal(err)
		}
		if r.want == "" {
			break
		}
		_, got, _ := irctest.TextOf(u.WaitFrom(s.bot, "PRIVMSG", ""), nick)
		if got != r.want {
			t.Errorf("record %q: %q\n got %q\nwant %q", r.key, r.value, got, r.want)
		}
	}
	var lines int
	for {
		_, got, _ := irctest.TextOf(u.WaitFrom(s.bot, "PRIVMSG", ""), nick)
		if lines++; lines > 20 {
			t.Fatalf("more than 20 lines for one record")
		}
		if strings.HasSuffix(got, " [truncated: 900000 bytes, limit 4096]") {
			break
		}
	}
	if lines < 10 {
		t.Fatalf("%d lines for the first 4096 bytes", lines)
	}
}
