package client

import (
	"context"
	"reflect"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/protocol"
	"github.com/zkchat/zkchat/zookeeper"
)

// Session is what a Worker needs of a ZooKeeper session. *zookeeper.Session
// is the real one; tests use internal/fakezk. Errors are go-zookeeper's
// sentinels (zk.ErrNoNode, zk.ErrNodeExists, ...), and every call gives up
// waiting when ctx ends.
//
// Like a go-zookeeper connection, a Session outlives a session expiry: it
// opens a new ZooKeeper session, with a new SessionID and none of the old
// one's ephemeral nodes, and closes the channel of Changed.
type Session interface {
	Create(ctx context.Context, path string, data []byte, flags int32, acl []zk.ACL) (string, error)
	Delete(ctx context.Context, path string, version int32) error
	// Multi applies ops (*zk.CreateRequest, *zk.SetDataRequest, ...) all
	// or none.
	Multi(ctx context.Context, ops ...any) ([]zk.MultiResponse, error)
	Get(ctx context.Context, path string) ([]byte, *zk.Stat, error)
	// GetW reads path and sets a one-shot watch on it.
	GetW(ctx context.Context, path string) ([]byte, *zk.Stat, <-chan zk.Event, error)
	Exists(ctx context.Context, path string) (bool, *zk.Stat, error)
	Children(ctx context.Context, path string) ([]string, error)
	// NodeACL is the ACL for a node created under parent; locked: the tree
	// has ACLs, and the node must be touched (Touch) right after creation.
	NodeACL(ctx context.Context, parent string) (acl []zk.ACL, locked bool, err error)
	Touch(ctx context.Context, path string, data []byte) error
	State() zk.State
	SessionID() int64
	// Changed returns a channel closed at the next state change.
	Changed() <-chan struct{}
	Close()
}

// DialFunc opens a ZooKeeper session and waits until it is established.
type DialFunc func(ctx context.Context, cfg zookeeper.SessionConfig) (Session, error)

// dialZooKeeper is the default DialFunc: zookeeper.Dial.
func dialZooKeeper(ctx context.Context, cfg zookeeper.SessionConfig) (Session, error) {
	s, err := zookeeper.Dial(ctx, cfg)
	if err != nil {
		return nil, err // not a nil *Session in a non-nil interface
	}
	return s, nil
}

// Kafka is what a Worker needs of the process's Kafka clients.
// *kafka.Clients is the real one; tests use internal/fakekafka.
type Kafka interface {
	Topics() protocol.Topics
	// WaitTopic waits until topic exists or ctx ends.
	WaitTopic(ctx context.Context, topic string) error
	// Produce writes one record and waits for its acknowledgement; it
	// returns the record's offset.
	Produce(ctx context.Context, topic string, key, value []byte, headers ...protocol.Header) (int64, error)
	// Bounds is the low and high watermark of every partition of topic
	// (one, in a topic zkchat made; another implementation's may have more).
	Bounds(ctx context.Context, topic string) (low, high protocol.Position, err error)
	// Committed is group's position on each partition of topic; a
	// partition with none is absent.
	Committed(ctx context.Context, group, topic string) (protocol.Position, error)
	// Commit stores group's position on the partitions in next; the
	// others keep theirs.
	Commit(ctx context.Context, group, topic string, next protocol.Position) error
	// OpenReader reads every partition of topic from group's committed
	// position on it (the partition's low watermark if none).
	OpenReader(ctx context.Context, group, topic string) (Reader, error)
}

// Reader reads one topic. An alias of an unnamed interface type, so that
// an adapter can return it (kafka.MessageReader is the same type) without
// importing this package.
type Reader = interface {
	// Next waits for the next record, from any partition (in order
	// within one); its To is empty.
	Next(ctx context.Context) (protocol.Message, error)
	Close()
}

// isNil reports whether k is nil or holds a nil pointer: a caller that
// passes a nil *kafka.Clients means no Kafka.
func isNil(k Kafka) bool {
	if k == nil {
		return true
	}
	v := reflect.ValueOf(k)
	return v.Kind() == reflect.Pointer && v.IsNil()
}
