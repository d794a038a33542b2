// Package zookeeper is zkchat's ZooKeeper adapter: a Session (one
// go-zookeeper connection under the tree's chroot, with calls bounded by a
// context), the tree's creation, and the I/O half of the ACL rules that
// package protocol states (which ACL a new node gets, the touch that proves
// its creator).
//
// It imports protocol and go-zookeeper, and nothing else of zkchat.
package zookeeper
