// Package reliability is the fault suite's harness: it drives the
// replicated servers that make reliability starts (a 3-server
// ZooKeeper ensemble and a 3-broker Kafka cluster from internal/servers,
// plus IRC servers of the suite's own), injects faults on their PIDs, runs
// zkchat as real processes, and checks the same oracles after every fault:
//
//   - Ledger: every test message names its run, sender, receiver and
//     sequence number; what senders were told, what Kafka holds and what
//     IRC clients received are compared (lost, duplicated, reordered).
//   - Presence: /online against the channel's NAMES, polled until they agree.
//   - Leadership: "became leader" / "stopped being leader" log lines of every
//     manager; intervals must not overlap.
//   - Health: no panic in any log; goroutines, file descriptors and RSS back
//     to their baseline.
//
// The tests (one per fault or input class, *_test.go) run only under
// ZKCHAT_RELIABILITY=1, which make reliability sets; they inject faults
// into shared servers, so none of them is parallel. doc/reliability.md holds
// the table of rows and measured numbers.
package reliability
