package bridge

import (
	"strings"
	"unicode/utf8"
)

// Sanitize makes text safe to put in one IRC parameter: CR, LF and NUL
// become spaces (they would end or corrupt the line), and \x01 is removed
// (it would turn the message into CTCP or DCC). Invalid UTF-8 bytes become
// U+FFFD. Everything else, formatting codes included, passes as sent.
func Sanitize(text string) string {
	if !strings.ContainsAny(text, "\r\n\x00\x01") && utf8.ValidString(text) {
		return text
	}
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(text, "\uFFFD") {
		switch r {
		case '\r', '\n', 0:
			b.WriteByte(' ')
		case 1:
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

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
