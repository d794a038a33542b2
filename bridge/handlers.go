package bridge

import (
	"regexp"
	"strings"

	"github.com/lrstanley/girc"
)

// handlers registers the IRC handlers, once (New). girc runs them one at a
// time in its event loop, so none of them blocks: each takes the members'
// lock briefly, posts to the outbox without waiting for room, and hands
// anything slow (ZooKeeper, Kafka) to a user's goroutine.
func (b *Bridge) handlers() {
	h := b.irc.Handlers
	h.Add(girc.CONNECTED, b.onConnected)
	h.Add(girc.DISCONNECTED, func(*girc.Client, girc.Event) { b.registered.Store(false); b.disconnected() })
	h.Add(girc.ERROR, b.onError)
	h.Add(girc.RPL_NAMREPLY, b.onNames)
	h.Add(girc.RPL_ENDOFNAMES, b.onEndOfNames)
	h.Add(girc.JOIN, b.onJoin)
	h.Add(girc.CAP_ACCOUNT, b.onAccount)
	h.Add(girc.RPL_ENDOFWHO, func(_ *girc.Client, e girc.Event) {
		if len(e.Params) >= 2 {
			b.recheckAccounts(e.Params[1])
		}
	})
	h.Add(girc.PART, b.onPart)
	h.Add(girc.KICK, b.onKick)
	h.Add(girc.QUIT, b.onQuit)
	h.Add(girc.NICK, b.onNick)
	h.Add(girc.PRIVMSG, b.onPrivmsg)
	for _, code := range []string{girc.ERR_BANNEDFROMCHAN, girc.ERR_INVITEONLYCHAN, girc.ERR_CHANNELISFULL, girc.ERR_BADCHANNELKEY} {
		h.Add(code, b.onJoinRefused)
	}
	h.Add(girc.ERR_NOSUCHNICK, b.onNoSuchNick)
	h.Add(girc.PONG, func(_ *girc.Client, e girc.Event) { b.out.pongFor(e.Last()) })
}

func (b *Bridge) onConnected(c *girc.Client, e girc.Event) {
	b.registered.Store(true)
	cm, _ := c.GetServerOption("CASEMAPPING")
	b.casemap.Store(int32(ParseCaseMapping(cm)))
	b.m.mu.Lock()
	b.m.names = nil
	b.m.mu.Unlock()
	b.log.Info("irc connected; joining", "server", b.host, "channel", b.cfg.Channel, "casemapping", cm)
	c.Cmd.Join(b.cfg.Channel)
}

// onError logs the server's reason for closing the link (KILL, K-line,
// flood): the reconnect's own error is often only "EOF".
func (b *Bridge) onError(_ *girc.Client, e girc.Event) {
	b.log.Warn("the irc server closed the link", "server", b.host, "reason", e.Last())
}

// onNames collects the member list from the NAMES replies themselves:
// girc's channel state folds nicks with RFC 1459 rules whatever the
// server's CASEMAPPING, so on an ASCII server "[a]" and "{a}" would
// collapse.
func (b *Bridge) onNames(_ *girc.Client, e girc.Event) {
	if len(e.Params) < 4 || !b.sameChannel(e.Params[2]) {
		return
	}
	var names []string
	for _, n := range strings.Fields(e.Last()) {
		n = strings.TrimLeft(n, "~&@%+")            // membership prefixes (multi-prefix)
		if i := strings.IndexByte(n, '!'); i >= 0 { // userhost-in-names
			n = n[:i]
		}
		if n != "" {
			names = append(names, n)
		}
	}
	b.m.mu.Lock()
	b.m.names = append(b.m.names, names...)
	b.m.mu.Unlock()
}

func (b *Bridge) onEndOfNames(c *girc.Client, e girc.Event) {
	if len(e.Params) >= 2 && b.sameChannel(e.Params[1]) {
		b.resync()
		b.setTopic(c)
	}
}

// setTopic gives the channel a topic that says what the bot is, if it has
// none (RPL_TOPIC comes before the end of the member list, so girc knows
// by now). A channel with a topic keeps it; where the bot may not set it,
// the server refuses and nothing else happens.
func (b *Bridge) setTopic(c *girc.Client) {
	ch := c.LookupChannel(b.cfg.Channel)
	if ch == nil || ch.Topic != "" {
		return
	}
	c.Cmd.Topic(b.cfg.Channel, textTopic(c.GetNick()))
}

func (b *Bridge) onJoin(_ *girc.Client, e girc.Event) {
	if e.Source == nil || len(e.Params) == 0 || !b.sameChannel(e.Params[0]) || b.isMe(e.Source.Name) {
		return
	}
	if len(e.Params) >= 2 { // extended-join: the account, or "*"
		b.setAccount(e.Source.Name, e.Params[1])
	}
	b.presence(e.Source.Name, true, false)
}

func (b *Bridge) onAccount(_ *girc.Client, e girc.Event) {
	if e.Source != nil && len(e.Params) == 1 {
		b.setAccount(e.Source.Name, e.Params[0])
	}
}

func (b *Bridge) onPart(_ *girc.Client, e girc.Event) {
	if e.Source == nil || len(e.Params) == 0 || !b.sameChannel(e.Params[0]) {
		return
	}
	if b.isMe(e.Source.Name) {
		b.lostChannel("parted")
		return
	}
	b.presence(e.Source.Name, false, false)
}

func (b *Bridge) onKick(_ *girc.Client, e girc.Event) {
	if len(e.Params) < 2 || !b.sameChannel(e.Params[0]) {
		return
	}
	if b.isMe(e.Params[1]) {
		b.lostChannel("kicked")
		return
	}
	b.presence(e.Params[1], false, false)
}

func (b *Bridge) onQuit(_ *girc.Client, e girc.Event) {
	if e.Source == nil || b.isMe(e.Source.Name) {
		return
	}
	b.reclaimNick(e.Source.Name)
	b.presence(e.Source.Name, false, netsplit.MatchString(e.Last()))
}

// netsplit matches the QUIT reason servers give for a netsplit:
// "irc.left.net irc.right.net", or "*.net *.split" where server names are hidden.
var netsplit = regexp.MustCompile(`^[\w*.-]+\.[\w*-]+ [\w*.-]+\.[\w*-]+$`)

// onNick is a leave of the old nick and a join of the new one.
func (b *Bridge) onNick(c *girc.Client, e girc.Event) {
	// The bot's own change (taking its nick back) is not a user's; with
	// SharedChannel the ring writes the new nick to the bridge's node.
	// (The other bridges read it at their next listing, when a bridge
	// comes or goes: they watch /bridges' children, not each node's data.)
	if e.Source == nil || len(e.Params) == 0 || b.isMe(e.Source.Name) || b.isMe(e.Last()) {
		if e.Source != nil && len(e.Params) > 0 && b.isMe(e.Last()) && b.cfg.SharedChannel {
			b.kickRing()
		}
		return
	}
	b.reclaimNick(e.Source.Name)
	if ch := c.LookupChannel(b.cfg.Channel); ch == nil {
		return
	}
	b.presence(e.Source.Name, false, false)
	b.presence(e.Last(), true, false)
}

// onPrivmsg: a private message to the bot is a command; channel talk and
// CTCP are not for the bot.
func (b *Bridge) onPrivmsg(_ *girc.Client, e girc.Event) {
	if e.Source != nil && len(e.Params) >= 2 && b.sameChannel(e.Params[0]) {
		b.channelTalk(e.Source.Name, e.Last())
		return
	}
	if e.Source == nil || len(e.Params) < 2 || !b.isMe(e.Params[0]) {
		return
	}
	if ok, _ := e.IsCTCP(); ok {
		return
	}
	if b.trace != nil {
		b.trace(traceReceived, e.Last())
	}
	b.command(e.Source.Name, e.Last(), sizeOf(e), b.msgAccount(e))
}

// onJoinRefused: the server refused the JOIN (banned, invite only, full,
// keyed). Nothing else would try again, so joinRefused does.
func (b *Bridge) onJoinRefused(_ *girc.Client, e girc.Event) {
	if len(e.Params) >= 2 && b.sameChannel(e.Params[1]) {
		b.joinRefused(e.Command, e.Last())
	}
}

// onNoSuchNick: 401 to a PRIVMSG of a delivery means the nick is gone (left,
// split or renamed before the bridge saw it); it fails that user's next
// proof (see user.refusedLines).
func (b *Bridge) onNoSuchNick(_ *girc.Client, e girc.Event) {
	if len(e.Params) < 2 {
		return
	}
	id, err := NickToID(e.Params[1], b.caseMapping())
	if err != nil {
		return
	}
	if u := b.lookup(id); u != nil {
		u.refusedLines.Add(1)
		b.log.Warn("the server refused a line: no such nick; it will be delivered again", "id", id, "nick", e.Params[1])
	}
}
