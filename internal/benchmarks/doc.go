// Package benchmarks holds zkchat's end-to-end core benchmarks against real
// ZooKeeper and Kafka: a manager, workers and the shared Kafka clients, each
// measured beside a floor (the bare client libraries on the same servers)
// in the same run. `make bench` runs them and regenerates
// doc/benchmarks.md; doc/scaling.md says what they measure.
//
// The IRC bridge's benchmarks live with the bridge (bridge/bench_test.go).
package benchmarks
