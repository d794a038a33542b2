package bridge

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/zookeeper"
)

// Identity: on a server with services accounts (IRCv3 extended-join,
// account-notify, WHOX), a nick that registers while logged in is bound to
// its account in /accounts/<id>. From then on the bridge treats the nick as
// that user only while it is logged in to that account: anyone else who
// takes the nick can neither go online (so reads nothing) nor send, nor
// unregister it. A nick registered while not logged in has no binding and
// no protection; the bot says so.

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

// binding reads the account id is bound to, "" for none.
func (b *Bridge) binding(ctx context.Context, id string) (string, error) {
	s, err := b.listSession(ctx)
	if err != nil {
		return "", err
	}
	type got struct{ data []byte }
	g, err := zookeeper.Do(ctx, func() (got, error) {
		d, _, err := s.Conn.Get(s.Paths.Account(id))
		return got{d}, err
	})
	if errors.Is(err, zk.ErrNoNode) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("account binding of %s: %w", id, err)
	}
	return string(g.data), nil
}

// bind binds id to account (replacing a stale binding).
func (b *Bridge) bind(ctx context.Context, id, account string) error {
	s, err := b.listSession(ctx)
	if err != nil {
		return err
	}
	path := s.Paths.Account(id)
	// Open, or with ACLs on: the bridge's principal ALL, world READ.
	acl, _, err := s.NodeACL(ctx, s.Paths.Accounts())
	if err != nil {
		return fmt.Errorf("bind %s to account %s: %w", id, account, err)
	}
	_, err = zookeeper.Do(ctx, func() (string, error) {
		return s.Conn.Create(path, []byte(account), 0, acl)
	})
	if errors.Is(err, zk.ErrNodeExists) {
		_, err = zookeeper.Do(ctx, func() (*zk.Stat, error) { return s.Conn.Set(path, []byte(account), -1) })
	}
	if err != nil {
		return fmt.Errorf("bind %s to account %s: %w", id, account, err)
	}
	return nil
}

// unbind removes id's binding.
func (b *Bridge) unbind(ctx context.Context, id string) error {
	s, err := b.listSession(ctx)
	if err != nil {
		return err
	}
	_, err = zookeeper.Do(ctx, func() (struct{}, error) { return struct{}{}, s.Conn.Delete(s.Paths.Account(id), -1) })
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		return fmt.Errorf("unbind %s: %w", id, err)
	}
	return nil
}

// verify reports whether nick may act as u: true when u's id has no
// binding or nick is logged in to the bound account. When not, it says
// why in the returned message.
func (b *Bridge) verify(ctx context.Context, u *user, nick string) (bool, string, error) {
	bound, err := b.binding(ctx, u.id)
	if err != nil || bound == "" {
		return err == nil, "", err
	}
	if acct := b.accountOf(u, nick); acct == bound {
		return true, "", nil
	}
	return false, fmt.Sprintf("%s is registered to the services account %q: log in to it (SASL, or /msg NickServ IDENTIFY) to use it here.", nick, bound), nil
}
