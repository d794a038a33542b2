package bridge

import (
	"strings"
)

// Command is a parsed private message to the bot.
type Command struct {
	Name string // help, register, quit, who, users, msg; "" for unknown
	To   string // msg: the receiver's nick
	Text string // msg: the text; unknown: the word not understood
}

// ParseCommand reads a private message to the bot:
//
//	help | register | quit | who | users | msg <nick> <text> | <nick>: <text>
//
// Command words are case-insensitive. Anything else is Command{Name: ""},
// answered with help.
func ParseCommand(line string) Command {
	line = strings.TrimSpace(line)
	word, rest, _ := strings.Cut(line, " ")
	rest = strings.TrimLeft(rest, " ")
	switch w := strings.ToLower(word); w {
	case "help", "register", "quit", "who", "users":
		if rest == "" {
			return Command{Name: w}
		}
	case "msg", "send":
		to, text, _ := strings.Cut(rest, " ")
		text = strings.TrimLeft(text, " ")
		if to != "" && text != "" {
			return Command{Name: "msg", To: to, Text: text}
		}
		return Command{Name: "", Text: line}
	}
	// "<nick>: text": a nick has no spaces, so the colon ends the first word.
	if i := strings.Index(line, ": "); i > 0 && !strings.ContainsAny(line[:i], " ") {
		if text := strings.TrimLeft(line[i+2:], " "); text != "" {
			return Command{Name: "msg", To: line[:i], Text: text}
		}
	}
	return Command{Name: "", Text: word}
}

// helpText is the bot's answer to help and to what it does not understand.
var helpText = []string{
	"zkchat bridge: chat with registered users over ZooKeeper and Kafka. Commands (private message to me):",
	"  register        register your nick; you are online while you are in %s",
	"  quit            unregister your nick (you go offline; unread messages are dropped)",
	"  who             users online now      users   registered users",
	"  msg <nick> <text>   or   <nick>: <text>    send a message",
	"Messages to you arrive as private messages from me: <sender> text",
}
