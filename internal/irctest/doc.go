// Package irctest is the IRC side of zkchat's tests: a raw client that
// speaks the protocol by hand (Client), so a test sees exactly what a server
// relays, and a scripted server for one bot (Server), so a test of the
// bridge sees exactly what the bot writes, with no IRC server running.
package irctest
