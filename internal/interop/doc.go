// Package interop holds the tests of zkchat against a second, tiny
// implementation of the course exercise (the ZooKeeper chat room) that the
// tests themselves contain: a worker and a leaderless manager written from
// the course text with raw go-zookeeper and confluent-kafka-go clients,
// importing nothing of zkchat (foreign_test.go). The tests run zkchat's own
// manager and workers against them, both ways, on the real servers, each
// on its own chroot, and pin what zkchat does with nodes and records it did
// not write. doc/interop.md ("Other implementations of the exercise") says
// what they show.
//
// The package has no code outside its tests.
package interop
