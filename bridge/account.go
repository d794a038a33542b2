package bridge

import "context"

// Identity: on a server with services accounts (IRCv3 extended-join,
// account-notify, WHOX), a nick that registers while logged in is bound to
// its account in /accounts/<id> (directory.Bind). From then on the bridge
// treats the nick as that user only while it is logged in to that account:
// anyone else who takes the nick can neither go online (so reads nothing)
// nor send, nor unregister it. A nick registered while not logged in has no
// binding and no protection; the bot says so.

// accountOf returns the services account nick is logged in to, "" if none
// is known: from the user's own JOIN or ACCOUNT events first, which girc's
// state may not have applied yet, else from girc's state (WHOX replies).
func (b *Bridge) accountOf(u *user, nick string) string {
	u.mu.Lock()
	acct, known := u.account, u.accountKnown
	u.mu.Unlock()
	if known {
		return acct
	}
	if gu := b.irc.LookupUser(nick); gu != nil {
		return gu.Extras.Account
	}
	return ""
}

// verify reports whether nick may act as u: true when u's id has no
// binding or nick is logged in to the bound account. When not, it says
// why in the returned message.
func (b *Bridge) verify(ctx context.Context, u *user, nick string) (bool, string, error) {
	bound, err := b.dir.Binding(ctx, u.id)
	if err != nil || bound == "" {
		return err == nil, "", err
	}
	if acct := b.accountOf(u, nick); acct == bound {
		return true, "", nil
	}
	return false, textAccountRequired(nick, bound), nil
}
