package protocol

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCheckMessage(t *testing.T) {
	if err := CheckMessage(strings.Repeat("x", MaxMessageBytes)); err != nil {
		t.Fatalf("a text at the limit: %v", err)
	}
	err := CheckMessage(strings.Repeat("é", MaxMessageBytes/2+1)) // 4098 bytes, 2049 characters
	if !errors.Is(err, ErrMessageTooLong) || !strings.Contains(err.Error(), "4098 bytes, limit 4096") {
		t.Fatalf("a text over the limit: %v", err)
	}
}

func TestEscape(t *testing.T) {
	for _, c := range []struct{ in, keep, want string }{
		{"plain ünïcödé \u202e\uFFFD", "", "plain ünïcödé \u202e\uFFFD"},
		{"bob\x1b[2J", "", `bob\x1b[2J`},
		{"a\r\nb\x00c\x7f", "", `a\x0d\x0ab\x00c\x7f`},
		{"tab\there", "\t", "tab\there"},
		{"tab\there", "", `tab\x09here`},
		{"csi\u009b2J", "", `csi\u009b2J`},
		{"bad \xff\xfe utf8 \xc3", "", `bad \xff\xfe utf8 \xc3`},
		{"\x02bold\x02 \x03" + "4red\x0f \x01ACTION\x01", "\x02\x03\x0f", "\x02bold\x02 \x03" + `4red` + "\x0f " + `\x01ACTION\x01`},
	} {
		if got := Escape(c.in, c.keep); got != c.want {
			t.Errorf("Escape(%q, %q) = %q, want %q", c.in, c.keep, got, c.want)
		}
	}
}

func TestShowText(t *testing.T) {
	if got := ShowText("hi\x1b", ""); got != `hi\x1b` {
		t.Fatalf("short text: %q", got)
	}
	// 1 MB of 3-byte characters, offset by one byte: the cut falls inside
	// a character and moves back to its start.
	long := "x" + strings.Repeat("€", 1<<20/3)
	got := ShowText(long, "")
	head, marker, ok := strings.Cut(got, " [truncated: ")
	if !ok || marker != "1048576 bytes, limit 4096]" {
		t.Fatalf("no marker: …%q", got[max(0, len(got)-60):])
	}
	if len(head) > MaxMessageBytes || len(head) < MaxMessageBytes-utf8.UTFMax || !utf8.ValidString(head) || !strings.HasPrefix(long, head) {
		t.Fatalf("head of %d bytes, valid UTF-8 %v", len(head), utf8.ValidString(head))
	}
}

func TestShowSender(t *testing.T) {
	for in, want := range map[string]string{
		"alice":                       "alice",
		"a_1b-2":                      "a_1b-2",
		"":                            `""`,
		"bob\x1b[2J":                  `"bob\x1b\x5b2J"`,
		"bob\r\nalice: hi":            `"bob\x0d\x0aalice\x3a\x20hi"`,
		"alice> <bob":                 `"alice\x3e\x20\x3cbob"`,
		"Alice":                       `"Alice"`,
		"\u0430lice":                  `"\u0430lice"`,
		"k\xff😀":                      `"k\xff\U0001f600"`,
		`q"uote\`:                     `"q\x22uote\x5c"`,
		strings.Repeat("k", 600):      `"` + strings.Repeat("k", 64) + `"...`,
		strings.Repeat("é", 40):       `"` + strings.Repeat(`\u00e9`, 32) + `"...`,
		"x" + strings.Repeat("é", 40): `"x` + strings.Repeat(`\u00e9`, 31) + `\xc3"...`,
	} {
		got := ShowSender(in)
		if got != want {
			t.Errorf("ShowSender(%q) = %q, want %q", in, got, want)
		}
		for _, r := range got {
			if r < 0x20 || r == ' ' || r >= 0x7f {
				t.Errorf("ShowSender(%q) = %q has %q", in, got, r)
			}
		}
	}
}

// FuzzShow: whatever a record holds, what a reader shows is valid UTF-8
// with no control character but those let through, a sender with no space
// that is the key only if the key is a valid id, and a text of bounded
// length.
func FuzzShow(f *testing.F) {
	f.Add("bob\x1b[2J", "hi\r\n\x00\x01\u009b\xff")
	f.Add("", strings.Repeat("é", 3000))
	f.Fuzz(func(t *testing.T, key, text string) {
		for _, s := range []string{ShowSender(key), ShowText(text, "\t"), Escape(text, "\x02\x03")} {
			if !utf8.ValidString(s) {
				t.Fatalf("%q is not valid UTF-8", s)
			}
			for _, r := range s {
				if isControl(r) && r != '\t' && r != 2 && r != 3 {
					t.Fatalf("%q has %q", s, r)
				}
			}
		}
		if s := ShowSender(key); strings.ContainsRune(s, ' ') || (s == key) != (ValidateID(key) == nil) {
			t.Fatalf("ShowSender(%q) = %q", key, s)
		}
		if s := ShowText(text, ""); len(s) > 4*MaxMessageBytes+50 {
			t.Fatalf("ShowText of %d bytes is %d bytes", len(text), len(s))
		}
	})
}
