package bridge

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseCommand(t *testing.T) {
	for in, want := range map[string]Command{
		"help":                {Name: "help"},
		" HELP ":              {Name: "help"},
		"register":            {Name: "register"},
		"quit":                {Name: "quit"},
		"who":                 {Name: "who"},
		"users":               {Name: "users"},
		"msg bob hi there":    {Name: "msg", To: "bob", Text: "hi there"},
		"MSG bob   hi":        {Name: "msg", To: "bob", Text: "hi"},
		"bob: hi: there":      {Name: "msg", To: "bob", Text: "hi: there"},
		"[x]: yo":             {Name: "msg", To: "[x]", Text: "yo"},
		"msg bob":             {Name: "", Text: "msg bob", Usage: usageMsg},
		"msg":                 {Name: "", Text: "msg", Usage: usageMsg},
		"quit confirm":        {Name: "quit", Text: "confirm"},
		"QUIT Confirm":        {Name: "quit", Text: "confirm"},
		"quit now":            {Name: "", Text: "quit now", Usage: usageQuit},
		"bob:hi":              {Name: "", Text: "bob:hi"},
		"dance":               {Name: "", Text: "dance"},
		"register now please": {Name: "", Text: "register"},
		"a b: c":              {Name: "", Text: "a"},
		": hi":                {Name: "", Text: ":"},
		"bob:":                {Name: "", Text: "bob:", Usage: usageMsg},
		"bob:   ":             {Name: "", Text: "bob:", Usage: usageMsg},
		"":                    {Name: "", Text: ""},
	} {
		if got := ParseCommand(in); got != want {
			t.Errorf("ParseCommand(%q) = %+v, want %+v", in, got, want)
		}
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"help", "msg a b", "a: b", "::", "msg  ", "\x00: \x01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		c := ParseCommand(line)
		if c.Name == "msg" && (c.To == "" || c.Text == "" || strings.Contains(c.To, " ")) {
			t.Fatalf("ParseCommand(%q) = %+v", line, c)
		}
		if c.Name == "msg" && !strings.Contains(line, c.Text) {
			t.Fatalf("text %q not from %q", c.Text, line)
		}
	})
}

func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{
		"plain ünïcödé":       "plain ünïcödé",
		"a\r\nb":              `a\x0d\x0ab`,
		"\x01ACTION hi\x01":   `\x01ACTION hi\x01`,
		"nul\x00x":            `nul\x00x`,
		"bad \xff utf8":       `bad \xff utf8`,
		"\x02bold\x02 \u202e": "\x02bold\x02 \u202e",
		"\x03" + "04,01red\x0f \x04ff0000\x11\x16\x1d\x1e\x1f": "\x03" + "04,01red\x0f \x04ff0000\x11\x16\x1d\x1e\x1f",
		"esc\x1b[2J tab\t del\x7f csi\u009b":                   `esc\x1b[2J tab\x09 del\x7f csi\u009b`,
	} {
		if got := Sanitize(in); got != want {
			t.Errorf("Sanitize(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzSplit: pieces fit, are valid UTF-8 when the text is, are not empty,
// and join back to the text.
func FuzzSplit(f *testing.F) {
	f.Add(strings.Repeat("é", 300), 100)
	f.Add(strings.Repeat("日本語 ", 200), 301)
	f.Add("😀😀😀", 5)
	f.Fuzz(func(t *testing.T, text string, max int) {
		if max < 4 || max > 600 {
			return
		}
		text = Sanitize(text)
		pieces := Split(text, max)
		if strings.Join(pieces, "") != text {
			t.Fatal("pieces do not join back to the text")
		}
		for _, p := range pieces {
			if p == "" || len(p) > max || !utf8.ValidString(p) {
				t.Fatalf("bad piece %q (len %d, max %d)", p, len(p), max)
			}
		}
	})
}

func TestSplitEverySplitPoint(t *testing.T) {
	// Multi-byte characters at every offset of a 400-5,000 byte text.
	for _, r := range []string{"é", "€", "😀"} {
		for pad := 0; pad < 4; pad++ {
			text := strings.Repeat("x", pad) + strings.Repeat(r, 5000/len(r))
			room := lineRoom("somenick")
			pieces := Split(text, room)
			if strings.Join(pieces, "") != text {
				t.Fatalf("rune %q pad %d: not reassembled", r, pad)
			}
			for _, p := range pieces {
				if len(p) > room || !utf8.ValidString(p) {
					t.Fatalf("rune %q pad %d: piece of %d bytes, valid %v", r, pad, len(p), utf8.ValidString(p))
				}
			}
		}
	}
}
