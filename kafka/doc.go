// Package kafka is zkchat's Kafka adapter, and the one place where
// librdkafka clients (through confluent-kafka-go, cgo) are made and
// configured:
//
//   - Clients, the clients one process shares between all its users:
//     several idempotent producer handles (a topic always on the same one),
//     one admin client for offsets and metadata, and manually assigned
//     consumers, each holding at most ReaderShardSize readers' topics, whose
//     poll loops hand records to Readers;
//   - Admin, a standalone admin client (topic creation and deletion for the
//     manager, ACLs for the kafka-acls command);
//   - Auth, the optional SASL credentials every client is configured with.
//
// Errors a caller branches on are the contract's (protocol.ErrKafkaAuth,
// ErrKafkaUnreachable, ErrOutcomeUnknown, ErrNoTopic, ErrTransient); no
// librdkafka type needs to leave this package for a caller to decide.
package kafka
