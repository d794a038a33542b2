package bridge

import (
	"errors"
	"fmt"
	"strings"

	"github.com/zkchat/zkchat/protocol"
)

// CaseMapping is an IRC server's CASEMAPPING (ISUPPORT): which nicks it
// treats as the same.
type CaseMapping int

const (
	// RFC1459 folds A-Z to a-z and []\~ to {}|^ (the IRC default).
	RFC1459 CaseMapping = iota
	// StrictRFC1459 folds A-Z and []\ but not ~ to ^.
	StrictRFC1459
	// ASCII folds A-Z only.
	ASCII
)

// ParseCaseMapping reads an ISUPPORT CASEMAPPING value; unknown values
// (and "") are RFC1459, the protocol's default.
func ParseCaseMapping(s string) CaseMapping {
	switch strings.ToLower(s) {
	case "ascii":
		return ASCII
	case "strict-rfc1459":
		return StrictRFC1459
	}
	return RFC1459
}

// Fold returns nick's canonical lower-case form under m.
func (m CaseMapping) Fold(nick string) string {
	b := []byte(nick)
	for i, c := range b {
		switch {
		case c >= 'A' && c <= 'Z':
			b[i] = c + 'a' - 'A'
		case m == ASCII:
		case c == '[':
			b[i] = '{'
		case c == ']':
			b[i] = '}'
		case c == '\\':
			b[i] = '|'
		case c == '~' && m == RFC1459:
			b[i] = '^'
		}
	}
	return string(b)
}

// ErrBadNick: the nick cannot be a zkchat user.
var ErrBadNick = errors.New("nick cannot be mapped to a zkchat id")

// NickToID maps an IRC nick to a worker id:
//
//  1. fold the nick with the server's case mapping, so nicks the server
//     treats as one are one id;
//  2. keep a-z, 0-9 and '-'; write every other byte as '_' and two hex
//     digits ('_' itself is "_5f", '{' is "_7b");
//  3. if the result starts with '_', put '0' in front: ids may not start
//     with '_', and no nick starts with a digit, so this cannot collide.
//
// Different folded nicks give different ids, so the mapping is
// collision-free. It fails for nicks that are empty, start with a digit or
// '-' (not nicks), or map to more than 64 bytes.
func NickToID(nick string, m CaseMapping) (string, error) {
	if nick == "" {
		return "", fmt.Errorf("%w: empty nick", ErrBadNick)
	}
	if c := nick[0]; c >= '0' && c <= '9' || c == '-' {
		return "", fmt.Errorf("%w: %q starts with %q", ErrBadNick, nick, c)
	}
	f := m.Fold(nick)
	var b strings.Builder
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' {
			b.WriteByte(c)
			continue
		}
		if c <= ' ' || c == 0x7f || c == ',' || c == '*' || c == '?' || c == '!' || c == '@' || c == ':' {
			return "", fmt.Errorf("%w: %q has %q, which no nick has", ErrBadNick, nick, c)
		}
		fmt.Fprintf(&b, "_%02x", c)
	}
	id := b.String()
	if id[0] == '_' {
		id = "0" + id
	}
	if err := protocol.ValidateID(id); err != nil {
		return "", fmt.Errorf("%w: %q maps to %q: %v", ErrBadNick, nick, id, err)
	}
	return id, nil
}

// IDToNick is NickToID's inverse: the folded nick of an id, or the id
// itself for ids that no nick maps to (users of other front ends, whose
// ids are usually nicks already).
func IDToNick(id string) string {
	s := id
	if strings.HasPrefix(s, "0_") {
		s = s[1:]
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '_' {
			b.WriteByte(s[i])
			continue
		}
		var c byte
		if i+2 >= len(s) {
			return id
		}
		if _, err := fmt.Sscanf(s[i+1:i+3], "%02x", &c); err != nil {
			return id
		}
		b.WriteByte(c)
		i += 2
	}
	return b.String()
}
