package bridge

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lrstanley/girc"

	"github.com/zkchat/zkchat/protocol"
)

// Commands: a private message to the bot is parsed (ParseCommand) by the IRC
// handler and run in order in the nick's user goroutine (do). Every text a
// user reads from the bot is written in this file.

// Command is a parsed private message to the bot.
type Command struct {
	Name string // help, register, quit, who, users, msg; "" for unknown
	To   string // msg: the receiver's nick
	Text string // msg: the text; quit: "confirm" or ""; unknown: the word not understood
	// Usage, for a command word with its arguments missing or wrong
	// (Name ""): the command's usage line, the whole answer.
	Usage string
}

// Usage lines, for a command given wrongly.
const (
	usageMsg  = "Usage: msg <nick> <text>   or   <nick>: <text>"
	usageQuit = "Usage: quit confirm   (unregisters you; see help)"
)

// ParseCommand reads a private message to the bot:
//
//	help | register | quit [confirm] | who | users | msg <nick> <text> | <nick>: <text>
//
// Command words are case-insensitive. A command word with its arguments
// missing or wrong ("msg", "msg bob", "bob:") is Command{Name: "", Usage:
// its usage line}; anything else is Command{Name: ""}, answered with help.
func ParseCommand(line string) Command {
	line = strings.TrimSpace(line)
	word, rest, _ := strings.Cut(line, " ")
	rest = strings.TrimLeft(rest, " ")
	switch w := strings.ToLower(word); w {
	case "help", "register", "who", "users":
		if rest == "" {
			return Command{Name: w}
		}
	case "quit":
		switch strings.ToLower(rest) {
		case "":
			return Command{Name: "quit"}
		case "confirm":
			return Command{Name: "quit", Text: "confirm"}
		}
		return Command{Text: line, Usage: usageQuit}
	case "msg", "send":
		to, text, _ := strings.Cut(rest, " ")
		text = strings.TrimLeft(text, " ")
		if to != "" && text != "" {
			return Command{Name: "msg", To: to, Text: text}
		}
		return Command{Text: line, Usage: usageMsg}
	}
	// "<nick>: text": a nick has no spaces, so the colon ends the first word.
	if i := strings.Index(line, ":"); i > 0 && !strings.ContainsAny(line[:i], " ") && (i+1 == len(line) || line[i+1] == ' ') {
		if text := strings.TrimLeft(line[i+1:], " "); text != "" {
			return Command{Name: "msg", To: line[:i], Text: text}
		}
		return Command{Text: line, Usage: usageMsg} // "bob:" with no text
	}
	return Command{Name: "", Text: word}
}

// helpText is the bot's answer to help and to what it does not understand.
var helpText = []string{
	"zkchat bridge: chat with registered users over ZooKeeper and Kafka. Commands (private message to me):",
	"  register        register your nick; you are online while you are in %s",
	"  quit confirm    unregister your nick (you go offline; unread messages are deleted); /part keeps them",
	"  who             users online now      users   registered users",
	"  msg <nick> <text>   or   <nick>: <text>    send a message",
	"Messages to you arrive as private messages from me: <sender> text",
}

// helpPuppets ends the help when the bridge shows puppets.
const helpPuppets = "Users online outside this channel (the CLI, other networks) are nicks of their own: /msg them directly; their messages come from those nicks."

// help is the bot's help, its channel filled in.
func (b *Bridge) help() []string {
	lines := make([]string, 0, len(helpText)+1)
	for _, l := range helpText {
		if strings.Contains(l, "%s") {
			l = fmt.Sprintf(l, b.cfg.Channel)
		}
		lines = append(lines, l)
	}
	if b.cfg.Puppets {
		lines = append(lines, helpPuppets)
	}
	return lines
}

// textTopic is the topic the bot gives a channel that has none.
func textTopic(bot string) string {
	return fmt.Sprintf("zkchat: chat with zkchat users over ZooKeeper and Kafka. /msg %s help", bot)
}

// channelTalk answers a line said in the channel to the bot ("zkchat:
// help", "zkchat, who"): help as private notices, anything else with where
// commands go. Other channel talk is not for the bot. An IRC handler calls
// it: it never waits.
func (b *Bridge) channelTalk(nick, line string) {
	bot := b.irc.GetNick()
	cm := b.caseMapping()
	if len(line) <= len(bot) || cm.Fold(line[:len(bot)]) != cm.Fold(bot) || !strings.ContainsRune(":,", rune(line[len(bot)])) {
		return
	}
	if strings.ToLower(strings.TrimSpace(line[len(bot)+1:])) == "help" {
		for _, l := range b.help() {
			b.out.postNotice(nick, l)
		}
		return
	}
	b.out.postNotice(nick, fmt.Sprintf("Commands go to me in private: /msg %s help", bot))
}

// command queues the private message line from nick, with what the message
// said of nick's account (msgAccount), to its user's goroutine; rawLen is
// the whole line's length as the server sent it (prefix included). An IRC
// handler calls it: it never waits.
func (b *Bridge) command(nick, line string, size lineSize, acct account) {
	id, err := NickToID(nick, b.caseMapping())
	if err != nil {
		b.out.postNotice(nick, textBadNickCommand(err))
		return
	}
	cmd := ParseCommand(line)
	// A shared channel's user is served by its owner bridge (ring.go):
	// another one only says which, in one notice; help (and what it does
	// not understand) it answers itself.
	owner := b.ownerElsewhere(id)
	if owner != "" && cmd.Name != "help" && cmd.Name != "" {
		b.out.postNotice(nick, textYourBridge(owner, cmd))
		return
	}
	b.enqueueLine(nick, id, line, size, cmd, acct, "")
}

// enqueueLine queues a line from nick, user id, parsed as cmd, to its user's
// goroutine (doPiece); via is the id of the puppet it was sent to, "" for
// the bot. An IRC handler calls it: it never waits.
func (b *Bridge) enqueueLine(nick, id, line string, size lineSize, cmd Command, acct account, via string) {
	b.m.mu.Lock()
	u := b.userLocked(id)
	u.mu.Lock()
	if u.nick == "" {
		u.nick = nick
	}
	u.mu.Unlock()
	op := func(ctx context.Context) { b.doPiece(ctx, u, nick, line, size, cmd, acct, via) }
	select {
	case u.ops <- op: // under members.mu, see leave
		b.m.mu.Unlock()
	default:
		b.m.mu.Unlock()
		b.out.postNotice(nick, "Too many commands at once; wait for the answers and try again.")
	}
}

// A message longer than an IRC line (512 bytes with the sender's prefix)
// reaches the bot in pieces: a client such as irssi splits it into several
// PRIVMSGs, each as full as the client dares, and only the first says "msg
// bob"; a client such as ii sends it whole and the server cuts it at the
// limit. A client does not know exactly how the server will write its
// prefix (nick!user@host): irssi 1.4 assumes the longest user@host (63
// bytes) and splits at the last space before that, so that its pieces
// reach the bot 40-80 bytes short of the limit (a real irssi's, in
// TestIrssiLongMessage: 450 of 510, for a user@host of 18 bytes), and 6 s
// apart. So a
// line "fills" (fills) when it came within splitLineSlack of the limit
// less the room such a client keeps for a longer user@host than the
// sender's. A msg that fills waits, up to joinWait, for the next line
// from the same nick, which is its next piece and joined to it unless it
// is a bare command word (help, who, ...: a split piece is never only
// that); a piece that does not fill its own line ends the message. A
// shorter msg is sent at once, so a command typed after it is never taken
// for a piece; so is a line longer than IRC's (a server that takes long
// lines: no client split it). (irssi splits "msg bob <one word longer than
// a line>" after "bob": the bot answers that "msg bob" with its usage, and
// the word's pieces as unknown commands. Not handled: waiting on every
// bare "msg bob" would delay the usage answer to a typo by joinWait.) A message whose last piece
// came at the server's limit may have been cut there: its sender is told.
// Up to protocol.MaxMessageBytes joined; above, the usual "too long"
// answer.
const (
	// ircLineMax is the most an IRC line holds before CRLF.
	ircLineMax = 510
	// maxUserhost is the longest user@host a client assumes for itself
	// when it splits (irssi's MAX_USERHOST_LEN).
	maxUserhost = 63
	// splitLineSlack: a client that splits at word boundaries leaves the
	// rest of the last word's room unused.
	splitLineSlack = 30
	// joinWait: irssi 1.4.3 sends the pieces of one long line 6 s apart
	// (its own flood protection, on a server that would take 20 lines a
	// second: measured in TestIrssiLongMessage's setup).
	joinWait = 10 * time.Second
	// cutLineLen: a line this long may have been cut by the server.
	cutLineLen = ircLineMax - 10
)

// lineSize is how long a line to the bot or a puppet was as the server
// sent it (prefix included), and the user@host in its prefix.
type lineSize struct{ raw, userhost int }

// sizeOf is e's lineSize.
func sizeOf(e girc.Event) lineSize {
	ls := lineSize{raw: e.LenOpts(false)}
	if e.Source != nil {
		ls.userhost = len(e.Source.Ident) + 1 + len(e.Source.Host)
	}
	return ls
}

// fills reports whether the line came so close to IRC's limit, as its
// client sees it, that its client may have split the text there.
func (ls lineSize) fills() bool {
	return ls.raw >= ircLineMax-splitLineSlack-max(0, maxUserhost-ls.userhost) && ls.raw <= ircLineMax
}

// pending is a msg whose pieces are being joined (doPiece); its user's
// goroutine's own.
type pending struct {
	nick   string
	via    string  // the puppet it was sent to ("": the bot); pieces go the same way
	cmd    Command // msg; Text grows by each piece
	acct   account
	last   time.Time // when its last piece came
	lastAt int       // its last line's length as the server sent it
}

// doPiece runs one line from nick in the user's goroutine: a piece of a
// pending msg, or a command (do). via: the puppet the line was sent to
// (its text, whatever it says, is a msg to that user), "" for the bot.
func (b *Bridge) doPiece(ctx context.Context, u *user, nick, line string, size lineSize, cmd Command, acct account, via string) {
	if p := u.pending; p != nil && p.nick == nick && p.via == via && (via != "" || !isCommandWord(line)) {
		p.cmd.Text += line
		p.last, p.lastAt = time.Now(), size.raw
		if !size.fills() {
			b.flushPending(ctx, u)
		} else {
			u.later(joinWait)
		}
		return
	}
	b.flushPending(ctx, u) // not a piece: what was pending is complete
	if cmd.Name == "msg" && size.fills() {
		if via == "" {
			// ParseCommand trimmed the line (a puppet's is taken whole); a
			// client that split at a space left it at the end of this piece.
			cmd.Text += line[len(strings.TrimRight(line, " ")):]
		}
		u.pending = &pending{nick: nick, via: via, cmd: cmd, acct: acct, last: time.Now(), lastAt: size.raw}
		u.later(joinWait)
		return
	}
	b.do(ctx, u, nick, cmd, acct)
}

// flushPending sends the pending msg, if any.
func (b *Bridge) flushPending(ctx context.Context, u *user) {
	p := u.pending
	if p == nil {
		return
	}
	u.pending = nil
	b.do(ctx, u, p.nick, p.cmd, p.acct)
	if p.lastAt >= cutLineLen {
		b.out.notice(p.nick, fmt.Sprintf("Your message's last line reached IRC's line limit (%d bytes): if you typed more, your client or the server cut it before it reached me. Send the rest as another message.", p.lastAt))
	}
}

// duePending sends the pending msg once joinWait has passed since its last
// piece; the user's goroutine calls it after every event.
func (b *Bridge) duePending(ctx context.Context, u *user) {
	if p := u.pending; p != nil {
		if wait := joinWait - time.Since(p.last); wait > 0 {
			u.later(wait)
			return
		}
		b.flushPending(ctx, u)
	}
}

// isCommandWord reports whether line is a bare command word, which a
// split piece never is.
func isCommandWord(line string) bool {
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "help", "register", "who", "users", "quit", "quit confirm":
		return true
	}
	return false
}

// do runs one command in the user's goroutine; acct is what the message
// said of nick's account.
func (b *Bridge) do(ctx context.Context, u *user, nick string, cmd Command, acct account) {
	switch cmd.Name {
	case "register":
		b.doRegister(ctx, u, nick, acct)
	case "quit":
		b.doQuit(ctx, u, nick, acct, cmd.Text == "confirm")
	case "who", "users":
		b.doList(ctx, nick, cmd.Name)
	case "msg":
		b.doMsg(ctx, u, nick, cmd)
	default: // help, and what the bot does not understand
		switch {
		case cmd.Usage != "":
			b.out.notice(nick, cmd.Usage)
			return
		case cmd.Name == "" && cmd.Text != "":
			b.out.notice(nick, fmt.Sprintf("Unknown command %q. Commands: register, quit, who, users, msg <nick> <text> (or <nick>: <text>), help.", cmd.Text))
			return
		}
		for _, l := range b.help() {
			b.out.notice(nick, l)
		}
		if owner := b.ownerElsewhere(u.id); owner != "" {
			b.out.notice(nick, fmt.Sprintf("Your bridge is %s: send it your commands (/msg %s <command>).", owner, owner))
		}
	}
}

// doRegister registers the nick's id and, if the nick is logged in to a
// services account, binds the id to it. Only a new registration binds:
// "register" on someone else's registered nick must not take it over. The
// account is settled first (msg, what the bridge knows, or a WHOIS): when
// it cannot be, nothing is registered, since an unbound registration of a
// logged-in nick would leave it to whoever takes the nick next.
func (b *Bridge) doRegister(ctx context.Context, u *user, nick string, msg account) {
	acct, err := b.resolveAccount(ctx, u, nick, msg)
	if err != nil {
		b.log.Warn("register: account unknown; not registered", "id", u.id, "err", err)
		b.out.notice(nick, textAccountUnknown(err))
		return
	}
	st, err := u.w.Register(ctx)
	switch {
	case err != nil:
		b.out.notice(nick, "Registration failed: "+err.Error())
	case st == protocol.StatusAlready:
		b.out.notice(nick, fmt.Sprintf("%s is registered already.", nick))
	default:
		if acct != "" {
			if berr := b.dir.Bind(ctx, u.id, acct); berr != nil {
				b.out.notice(nick, "Registered, but binding to your account failed: "+berr.Error())
			}
		} else {
			_ = b.dir.Unbind(ctx, u.id) // a stale binding of an earlier registration
		}
		b.out.notice(nick, fmt.Sprintf("Registered %s (zkchat id %s). You are online while you are in %s.", nick, u.id, b.cfg.Channel))
		if acct != "" {
			b.out.notice(nick, fmt.Sprintf("Your nick is bound to your services account %q: only that account can use it here.", acct))
		} else {
			b.out.notice(nick, "You are not logged in to a services account, so anyone who takes your nick can use it here.")
		}
	}
	if err == nil {
		u.registered(true)
	}
}

// doQuit unregisters the nick's id (the protocol's quit), if the nick may
// act as it (msg: what the message said of its account): delivery stops
// first, the worker goes offline, the binding goes.
func (b *Bridge) doQuit(ctx context.Context, u *user, nick string, msg account, confirmed bool) {
	if ok, why, err := b.verifyAs(ctx, u, nick, msg); err != nil || !ok {
		switch {
		case errors.Is(err, errAccountUnknown):
			why = textAccountUnknown(err)
		case err != nil:
			why = "Unregistering failed: " + err.Error()
		}
		b.out.notice(nick, why)
		return
	}
	// quit deletes what was not delivered yet, and is easily taken for
	// IRC's /quit: it is done on "quit confirm", or on a second quit
	// within quitConfirmWindow of the first.
	if !confirmed && (u.quitAsked.IsZero() || time.Since(u.quitAsked) > quitConfirmWindow) {
		u.quitAsked = time.Now()
		b.out.notice(nick, textQuitConfirm(nick, b.irc.GetNick()))
		return
	}
	u.quitAsked = time.Time{}
	u.stopDelivery()
	st, err := u.w.Quit(ctx)
	if err == nil {
		// Quit took the worker offline; on failure it stays online and
		// reconcile restarts its delivery.
		u.online = false
		if uerr := b.dir.Unbind(ctx, u.id); uerr != nil {
			b.log.Warn("unbind after quit", "id", u.id, "err", uerr)
		}
	}
	switch {
	case err != nil:
		b.out.notice(nick, "Unregistering failed: "+err.Error())
	case st == protocol.StatusAlready:
		b.out.notice(nick, fmt.Sprintf("%s was not registered.", nick))
	default:
		b.out.notice(nick, fmt.Sprintf("Unregistered %s. Send `register` to come back.", nick))
	}
	if err == nil {
		u.registered(false)
	}
}

// quitConfirmWindow: a second quit within it is the confirmation.
const quitConfirmWindow = time.Minute

func textQuitConfirm(nick, bot string) string {
	return fmt.Sprintf("quit unregisters %s: you go offline, and the messages not yet delivered to you are deleted. "+
		"To do it, send `quit confirm` (or `quit` again within a minute). To leave IRC only, use your client's /quit; "+
		"to go offline and keep your messages, /part the channel. (/msg %s help)", nick, bot)
}

// textNotOnline says why a sender u is not online, and what to do: join
// the channel if it is registered and not in it (after a /part), register
// if it is not.
func (b *Bridge) textNotOnline(ctx context.Context, u *user) string {
	u.mu.Lock()
	in, refused, elsewhere := u.in, u.refused, u.elsewhere
	u.mu.Unlock()
	reg, err := b.dir.IsRegistered(ctx, u.id)
	switch {
	case err != nil:
		return fmt.Sprintf("Not sent: you are not online (whether you are registered could not be read: %v).", err)
	case !reg:
		return fmt.Sprintf("Not sent: you are not online: you are not registered. Register (/msg %s register) and join %s.", b.irc.GetNick(), b.cfg.Channel)
	case !in:
		return fmt.Sprintf("Not sent: you are not online: you are registered, but not in %s. Join it to be online.", b.cfg.Channel)
	case refused:
		return "Not sent: you are not online: your nick is bound to a services account you are not logged in to."
	case elsewhere:
		return "Not sent: you are not online here: your id is online in another client."
	}
	return "Not sent: you are not online yet; try again in a moment."
}

// doList answers who (the users online) or users (the registered ones).
func (b *Bridge) doList(ctx context.Context, nick, which string) {
	list, label := b.dir.OnlineUsers, "Online"
	if which == "users" {
		list, label = b.dir.RegisteredUsers, "Registered"
	}
	ids, err := list(ctx)
	if err != nil {
		b.out.notice(nick, "Listing failed: "+err.Error())
		return
	}
	names := make([]string, len(ids))
	for i, id := range ids {
		names[i] = IDToNick(id)
	}
	sort.Strings(names)
	b.out.notice(nick, fmt.Sprintf("%s (%d): %s", label, len(names), strings.Join(names, " ")))
}

// doMsg sends cmd.Text to cmd.To: a nick, or the id of a user of another
// front end.
func (b *Bridge) doMsg(ctx context.Context, u *user, nick string, cmd Command) {
	to, err := NickToID(cmd.To, b.caseMapping())
	if err != nil {
		to = strings.ToLower(cmd.To)
		if protocol.ValidateID(to) != nil {
			b.count.fail("bad_receiver")
			b.out.notice(nick, fmt.Sprintf("Not sent: %q is neither a nick nor a zkchat id.", cmd.To))
			return
		}
	}
	// The worker refuses it too; checked here first, so that the answer
	// says so whatever else is wrong. (An IRC line is shorter than the
	// limit, but a server may take longer ones.)
	if protocol.CheckMessage(cmd.Text) != nil {
		b.count.fail("too_long")
		b.out.notice(nick, textTooLong(len(cmd.Text)))
		return
	}
	if !u.online {
		b.count.fail("not_online")
		b.out.notice(nick, b.textNotOnline(ctx, u))
		return
	}
	if b.trace != nil {
		b.trace(traceSending, cmd.Text)
	}
	err = u.w.SendMessage(ctx, to, cmd.Text)
	if b.trace != nil {
		b.trace(traceAcked, cmd.Text)
	}
	switch {
	case err == nil:
		b.count.sent.Add(1)
	case errors.Is(err, protocol.ErrOutcomeUnknown):
		b.count.fail("outcome_unknown")
		// Kafka did not confirm in time, yet the message may be written and
		// delivered: "Not sent" would be a lie.
		b.out.notice(nick, "Maybe not sent: Kafka did not confirm it in time, and it may still arrive; sending it again may deliver it twice. ("+err.Error()+")")
	case errors.Is(err, protocol.ErrKafkaUnreachable):
		b.count.fail("kafka_unreachable")
		b.out.notice(nick, "Not sent: Kafka is unreachable, and nothing was written; try again later. ("+err.Error()+")")
	case errors.Is(err, protocol.ErrReceiverOffline):
		b.count.fail("receiver_offline")
		b.out.notice(nick, "Not sent: "+cmd.To+" is offline.")
	case errors.Is(err, protocol.ErrNotRegistered):
		b.count.fail("not_registered")
		b.out.notice(nick, "Not sent: "+cmd.To+" is not a registered user.")
	default:
		b.count.fail("other")
		b.out.notice(nick, "Not sent: "+err.Error()+".")
	}
}

// textYourBridge is a shared channel's answer to a command sent to a bot
// that does not serve the nick: the command, to the bot that does (a long
// text cut, so that the answer is one line).
func textYourBridge(owner string, cmd Command) string {
	line := cmd.Name
	if cmd.Name == "msg" {
		text := cmd.Text
		if len(text) > 120 {
			cut := 120
			for cut > 0 && !utf8.RuneStart(text[cut]) {
				cut--
			}
			text = text[:cut] + "…"
		}
		line = "msg " + cmd.To + " " + text
	}
	return fmt.Sprintf("Your bridge is %s: /msg %s %s", owner, owner, line)
}

func textTooLong(n int) string {
	return fmt.Sprintf("Not sent: the message is %d bytes, more than the limit of %d bytes.", n, protocol.MaxMessageBytes)
}

// What the bot tells a nick outside the commands' answers.

func textBadNickJoined(err error, bot string) string {
	return fmt.Sprintf("your nick cannot be a zkchat user (%v); change it with /nick to chat through %s", err, bot)
}

func textBadNickCommand(err error) string {
	return fmt.Sprintf("Your nick cannot be a zkchat user (%v); change it with /nick.", err)
}

func textNotRegistered(nick, bot string) string {
	return fmt.Sprintf("Hi %s! You are not registered with zkchat: send me `register` (/msg %s register) to chat here.", nick, bot)
}

func textOnlineElsewhere(id string) string {
	return fmt.Sprintf("%s is online elsewhere (another zkchat client); messages go there until it leaves. Rejoin to try again.", id)
}

func textOnlineFailed(err error) string { return "Sorry, going online failed: " + err.Error() }

func textUnregisteredElsewhere(id, bot string) string {
	return fmt.Sprintf("%s was unregistered (by a quit from another zkchat client), so you are offline here; send me `register` (/msg %s register) to chat again.", id, bot)
}

func textAwayOutage(timeout time.Duration) string {
	return fmt.Sprintf("You are offline for a moment: the bridge's connection to ZooKeeper was interrupted, and ZooKeeper still holds your presence from before; "+
		"it lets go within %s, and you will be back online then (messages to you wait in Kafka).", timeout)
}

func textPresenceLost(err error) string {
	return "You are offline: zkchat could not keep your presence (" + err.Error() + "). Trying again in 30 s."
}

// textAccountUnknown: err wraps errAccountUnknown; the user reads its reason.
func textAccountUnknown(err error) string {
	why := strings.TrimPrefix(err.Error(), errAccountUnknown.Error()+": ")
	return fmt.Sprintf("Could not check your services account (%s); nothing was done: try again.", why)
}

func textAccountRequired(nick, bound string) string {
	return fmt.Sprintf("%s is registered to the services account %q: log in to it (SASL, or /msg NickServ IDENTIFY) to use it here.", nick, bound)
}
