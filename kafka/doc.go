// Package kafka is zkchat's Kafka adapter, and the one place where
// librdkafka clients (through confluent-kafka-go, cgo) are made and
// configured:
//
//   - Clients, the clients one process shares between all its users: one
//     idempotent producer, one admin client for offsets and metadata, one
//     manually assigned consumer whose poll loop hands records to Readers;
//   - Admin, a standalone admin client (topic creation and deletion for the
//     manager, ACLs for the kafka-acls command);
//   - Auth, the optional SASL credentials every client is configured with.
//
// Errors a caller branches on are the contract's (protocol.ErrKafkaAuth,
// ErrKafkaUnreachable, ErrOutcomeUnknown, ErrNoTopic, ErrTransient); no
// librdkafka type needs to leave this package for a caller to decide.
package kafka
