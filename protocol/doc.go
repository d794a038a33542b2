// Package protocol is zkchat's contract and its client library.
//
// It owns everything two zkchat processes must agree on, as written in
// shared/spec/PROTOCOL.md: worker ids and their validation (id.go), the
// ZooKeeper tree and the request status codes (paths.go), topic and consumer
// group names and the record format (topic.go), the sentinel errors callers
// branch on (errors.go), and the Worker, a chat user's client (worker.go).
//
// A Worker owns one ZooKeeper session: going online creates the ephemeral
// node /online/<id> in it, going offline closes it. Workers of one process
// borrow a shared Kafka value (kafka.go) for producing and reading, so a
// process that runs thousands of workers (the IRC bridge) still has one
// producer and one consumer.
//
// Nothing here imports the manager or the bridge; they import this package.
package protocol
