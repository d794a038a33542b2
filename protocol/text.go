package protocol

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxMessageBytes is the longest message text a zkchat worker sends, in
// bytes of UTF-8.
//
// A chat message is a line or a paragraph, not a file: 4096 bytes is about
// a printed page. On IRC, where a line carries about 400 bytes of text, a
// message at the limit is about eleven PRIVMSGs; a 1 MB record was 2,500.
// It is far below Kafka's own record limit (about 1 MB by default), so a
// message that is too long is refused by zkchat with a clear error, before
// anything is produced, not by the broker. Records written by other
// producers may be longer: readers show their first MaxMessageBytes bytes
// and say how long they were (ShowText), never all of them.
const MaxMessageBytes = 4096

// CheckMessage reports whether text may be sent: nil, or an error wrapping
// ErrMessageTooLong that says its size and the limit.
func CheckMessage(text string) error {
	if len(text) > MaxMessageBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrMessageTooLong, len(text), MaxMessageBytes)
	}
	return nil
}

// Escape returns s fit to show on a terminal or an IRC line. Control
// characters (C0, DEL, and C1, which terminals read as escape sequences:
// U+009B is CSI) are written as \xNN (C1 as \u0080 to \u009f) unless they
// are in keep, and so is each byte that is not valid UTF-8. Everything else
// passes as sent. The result has no control character but those in keep,
// so a text cannot move a cursor, clear a screen, end a line or forge a
// second one. The escapes are for showing only: a backslash in s is not
// doubled, so "\x1b" typed by the sender looks like an escaped ESC.
func Escape(s, keep string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || isControl(r) && !strings.ContainsRune(keep, r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && w == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case isControl(r) && !strings.ContainsRune(keep, r):
			if r < utf8.RuneSelf {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		default:
			b.WriteString(s[i : i+w]) // U+FFFD sent as such passes too
		}
		i += w
	}
	return b.String()
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || r >= 0x80 && r <= 0x9f }

// ShowText is how a reader shows a message text (a record's value, which
// any producer may have written): Escape(text, keep), and for a text over
// MaxMessageBytes its first MaxMessageBytes bytes (cut back to a character
// boundary) followed by " [truncated: N bytes, limit 4096]". A reader shows
// at most about MaxMessageBytes of any record, never silently less.
func ShowText(text, keep string) string {
	if len(text) <= MaxMessageBytes {
		return Escape(text, keep)
	}
	cut := MaxMessageBytes
	for cut > MaxMessageBytes-utf8.UTFMax && !utf8.RuneStart(text[cut]) {
		cut--
	}
	return Escape(text[:cut], keep) + fmt.Sprintf(" [truncated: %d bytes, limit %d]", len(text), MaxMessageBytes)
}

// ShowSender is how a reader shows a message's sender (the record's key,
// which any producer may have set): a valid worker id as it is; anything
// else in double quotes, with every byte but a-z, A-Z, 0-9, '.', '-' and
// '_' escaped (\xNN, or \uNNNN for a non-ASCII character), so with no
// space, and cut after MaxIDLen bytes, followed by "..." if it was longer.
// So a key cannot pass for a valid id (a look-alike "аlice" with a
// Cyrillic а is "\u0430lice"), for another sender, or for the end of the
// sender's field ("bob: hi" or "bob> hi" keep their spaces and punctuation
// escaped), and a missing key is "".
func ShowSender(key string) string {
	if ValidateID(key) == nil {
		return key
	}
	head := key
	if len(head) > MaxIDLen {
		head = head[:MaxIDLen]
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(head); {
		r, w := utf8.DecodeRuneInString(head[i:])
		switch {
		case r < utf8.RuneSelf && (idByte(byte(r)) || 'A' <= r && r <= 'Z' || r == '.'):
			b.WriteByte(byte(r))
		case r < utf8.RuneSelf || r == utf8.RuneError && w == 1:
			fmt.Fprintf(&b, `\x%02x`, head[i])
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
		i += w
	}
	b.WriteByte('"')
	if len(key) > MaxIDLen {
		b.WriteString("...")
	}
	return b.String()
}
