// Command zkchat runs every zkchat role: the manager, one-shot worker
// commands (register, send, read, ...) and an interactive terminal chat.
// This package only wires flags to the protocol and manager packages.
//
// Exit codes: 0 success; 1 a failure (server unreachable, not registered,
// receiver offline, no manager answering, ...); 2 bad usage (unknown flag,
// missing or invalid argument such as an invalid user id).
package main
