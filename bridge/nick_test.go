package bridge

import (
	"errors"
	"strings"
	"testing"

	"github.com/zkchat/zkchat/protocol"
)

func TestNickToID(t *testing.T) {
	for _, tc := range []struct {
		nick, id string
		m        CaseMapping
	}{
		{"alice", "alice", RFC1459},
		{"Alice", "alice", RFC1459},
		{"ALICE", "alice", ASCII},
		{"[a]", "0_7ba_7d", RFC1459},
		{"{a}", "0_7ba_7d", RFC1459},
		{"[a]", "0_5ba_5d", ASCII},
		{"_bob", "0_5fbob", RFC1459},
		{"b_b", "b_5fb", RFC1459},
		{"x|y", "x_7cy", RFC1459},
		{"x\\y", "x_7cy", RFC1459},
		{"a^", "a_5e", RFC1459},
		{"a~", "a_5e", RFC1459},
		{"a~", "a_7e", StrictRFC1459},
		{"a`b", "a_60b", RFC1459},
		{"a-1", "a-1", RFC1459},
	} {
		got, err := NickToID(tc.nick, tc.m)
		if err != nil || got != tc.id {
			t.Errorf("NickToID(%q, %v) = %q, %v; want %q", tc.nick, tc.m, got, err, tc.id)
		}
	}
	for _, bad := range []string{"", "1abc", "-x", "a b", "a,b", "a!b", strings.Repeat("[", 30)} {
		if id, err := NickToID(bad, RFC1459); !errors.Is(err, ErrBadNick) {
			t.Errorf("NickToID(%q) = %q, %v; want ErrBadNick", bad, id, err)
		}
	}
}

func TestIDToNick(t *testing.T) {
	for _, nick := range []string{"alice", "{a}", "_bob", "b_b", "x|y", "a^", "a`b", "a-1", "[]\\^{}|_`"} {
		id, err := NickToID(nick, RFC1459)
		if err != nil {
			t.Fatal(err)
		}
		if got := IDToNick(id); got != RFC1459.Fold(nick) {
			t.Errorf("IDToNick(%q) = %q, want %q", id, got, RFC1459.Fold(nick))
		}
	}
	for _, id := range []string{"bob", "9lives", "a_zz", "a_"} { // not from a nick
		if got := IDToNick(id); got != id && id != "bob" {
			t.Errorf("IDToNick(%q) = %q, want it unchanged", id, got)
		}
	}
}

// FuzzNickToID: valid ids only, the same id exactly for nicks that fold the
// same (checked against a second nick made by changing case), and IDToNick
// inverts it.
func FuzzNickToID(f *testing.F) {
	for _, s := range []string{"alice", "[a]", "_x", "A~", "a\\b", "x`y|z", "é", "a\x00"} {
		f.Add(s, uint8(0))
	}
	f.Fuzz(func(t *testing.T, nick string, mode uint8) {
		m := CaseMapping(mode % 3)
		id, err := NickToID(nick, m)
		if err != nil {
			if !errors.Is(err, ErrBadNick) {
				t.Fatalf("error %v is not ErrBadNick", err)
			}
			return
		}
		if err := protocol.ValidateID(id); err != nil {
			t.Fatalf("NickToID(%q) = %q, invalid: %v", nick, id, err)
		}
		if back := IDToNick(id); back != m.Fold(nick) {
			t.Fatalf("IDToNick(NickToID(%q)) = %q, want %q", nick, back, m.Fold(nick))
		}
		up := strings.ToUpper(nick)
		if id2, err := NickToID(up, m); err == nil && (id2 == id) != (m.Fold(up) == m.Fold(nick)) {
			t.Fatalf("%q→%q and %q→%q disagree with folding", nick, id, up, id2)
		}
	})
}

func TestNetsplitReason(t *testing.T) {
	for reason, want := range map[string]bool{
		"irc.left.net irc.right.net":         true,
		"*.net *.split":                      true, // networks that hide server names
		"hub.example.org leaf-2.example.org": true,
		"Quit: bye":                          false,
		"Ping timeout: 240 seconds":          false,
		"a.b c.d e.f":                        false,
		"":                                   false,
	} {
		if got := netsplit.MatchString(reason); got != want {
			t.Errorf("netsplit(%q) = %v, want %v", reason, got, want)
		}
	}
}
