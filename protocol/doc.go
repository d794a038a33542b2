// Package protocol is zkchat's contract: what two zkchat processes, or
// zkchat and another implementation of the same exercise, must agree on, as
// written in shared/spec/PROTOCOL.md and doc/protocol.md.
//
// It holds worker ids and their validation (id.go), the ZooKeeper tree and
// the request status codes (paths.go), topic and consumer group names and
// the record format (topic.go), the message size limit and how a reader
// shows a record's key and text (text.go), the ACL rules of a locked-down
// tree (acl.go), per-user Kafka principals' names and credential node
// (principal.go), and the sentinel errors callers branch on (errors.go).
//
// It imports only the standard library and does no I/O: the zookeeper and
// kafka packages apply it to the servers, the client package (a chat user)
// and the manager and bridge packages build on those.
package protocol
