// Package bridge connects an IRC channel to zkchat, so that people chat with
// the IRC clients they have.
//
// The bridge is an IRC bot (github.com/lrstanley/girc) in one channel. It
// maps each nick to a worker id (NickToID), and runs a client.Worker for
// every registered nick that is in the channel: JOIN goes online, PART,
// QUIT, KICK or the bot losing the channel go offline. Private messages to
// the bot are commands (ParseCommand): register, quit, who, users, msg.
// Messages in a user's topic are delivered to the nick as private messages
// from the bot, split under IRC's 512-byte line (Split) and stripped of what
// could end a line or start CTCP (Sanitize).
//
// On a server with services accounts, a nick that registers while logged in
// is bound to its account (/accounts/<id>); the bridge then treats the nick
// as that user only while it is logged in to that account (account.go).
//
// All workers share the process's kafka.Clients: one producer, one
// consumer. Each online user has a ZooKeeper session of its own with small
// buffers; sessions are opened with bounded concurrency.
//
// A read position is committed only after the IRC server has answered a
// PING sent behind the delivered lines, which proves it read them; while
// disconnected nothing is read. Everything the bot writes goes through one
// outbox, paced, so the server's flood limits never kick it. doc/architecture.md
// has the goroutine and lock model.
package bridge
