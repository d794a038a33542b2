package protocol

import "errors"

// Sentinel errors. Callers branch on them with errors.Is; the returned errors
// wrap them with the id and the action.
var (
	// ErrInvalidID: the id breaks the rules of ValidateID. No server was called.
	ErrInvalidID = errors.New("invalid user id")
	// ErrNotRegistered: the id has no /registry node.
	ErrNotRegistered = errors.New("not registered")
	// ErrAlreadyOnline: /online/<id> exists in another ZooKeeper session.
	ErrAlreadyOnline = errors.New("already online")
	// ErrNotOnline: the worker itself is not online (sending or reading).
	ErrNotOnline = errors.New("not online")
	// ErrReceiverOffline: the receiver is registered but not online.
	ErrReceiverOffline = errors.New("receiver is offline")
	// ErrManagerTimeout: no manager answered a request in time.
	ErrManagerTimeout = errors.New("no manager answered in time")
	// ErrRequestFailed: the manager answered a request with status 0.
	ErrRequestFailed = errors.New("manager answered: failed")
	// ErrRequestHeld: a request node for the id exists that this worker did
	// not create and may not remove: someone else holds the request.
	ErrRequestHeld = errors.New("someone else holds the request")
	// ErrRequestReplaced: the worker's request node was deleted and made
	// again by someone else while it waited; whatever the new node says is
	// not an answer to this worker.
	ErrRequestReplaced = errors.New("request node replaced by someone else")
	// ErrBadRequest: a request node holds data that is not a status code.
	ErrBadRequest = errors.New("malformed request data")
	// ErrKafkaAuth: the Kafka brokers refused the client's SASL credentials.
	ErrKafkaAuth = errors.New("Kafka refused the credentials (check ZKCHAT_KAFKA_AUTH / ZKCHAT_KAFKA_AUTH_FILE)")
	// ErrKafkaUnreachable: no Kafka broker answered.
	ErrKafkaUnreachable = errors.New("cannot reach Kafka")
	// ErrNoKafka: a Kafka operation was asked of a worker made without Kafka.
	ErrNoKafka = errors.New("worker has no Kafka client")
	// ErrNotCommitted: a follow-read ended without committing the position
	// of what it had handed on (its last proof or commit failed): those
	// messages are read again next time.
	ErrNotCommitted = errors.New("read position not committed")
	// ErrOutcomeUnknown: Kafka did not acknowledge a message in time, yet
	// it may have been written (and be read) all the same. Sending it again
	// may deliver it twice.
	ErrOutcomeUnknown = errors.New("outcome unknown: the message may have been written")
	// ErrNoTopic: a user's Kafka topic does not exist (deleted, or not
	// made yet).
	ErrNoTopic = errors.New("topic does not exist")
	// ErrMessageTooLong: a message text is longer than MaxMessageBytes. It
	// is refused before anything is sent; the error says the size and the
	// limit.
	ErrMessageTooLong = errors.New("message too long")
	// ErrTransient: Kafka was away or slow (a broker down, a coordinator
	// moving); the same call may succeed later.
	ErrTransient = errors.New("temporary Kafka failure")
)
