package bridge

import (
	"strings"
	"unicode/utf8"

	"github.com/zkchat/zkchat/protocol"
)

// ircFormatting are IRC's own formatting codes, which pass as sent: bold
// \x02, colour \x03, hex colour \x04, reset \x0f, monospace \x11, reverse
// \x16, italic \x1d, strikethrough \x1e, underline \x1f.
const ircFormatting = "\x02\x03\x04\x0f\x11\x16\x1d\x1e\x1f"

// Sanitize makes text safe to put in one IRC parameter (protocol.Escape):
// IRC's formatting codes pass; every other control character is shown as
// \xNN (C1 as \u0080 to \u009f), and so is each byte of invalid UTF-8.
// That is ESC (a terminal escape sequence would reach the users of IRC
// clients in terminals), CR, LF and NUL (they would end or corrupt the
// line), \x01 (it would make the message CTCP or DCC), tab, DEL and C1.
// The result has no control character but formatting codes.
func Sanitize(text string) string { return protocol.Escape(text, ircFormatting) }

// Split cuts text into pieces of at most max bytes, on UTF-8 boundaries,
// preferring to cut after a space in the last quarter of a piece. It never
// returns an empty piece; an empty text gives nothing. Joining the pieces
// gives text back.
func Split(text string, max int) []string {
	if max < utf8.UTFMax {
		max = utf8.UTFMax
	}
	var out []string
	for len(text) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		if sp := strings.LastIndexByte(text[:cut], ' '); sp >= cut*3/4 {
			cut = sp + 1
		}
		out = append(out, text[:cut])
		text = text[cut:]
	}
	if text != "" {
		out = append(out, text)
	}
	return out
}

// lineRoom is how many bytes of text fit in "PRIVMSG <target> :<text>\r\n"
// as the server relays it to the target, prefixed with the bot's
// ":nick!user@host ". IRC lines are at most 512 bytes with CR LF; the host
// part is not known exactly, so 100 bytes are kept for the prefix.
func lineRoom(target string) int {
	return 512 - 2 - len("PRIVMSG  :") - len(target) - 100
}
