// Package client is a zkchat user: the Worker of the course exercise. A
// Worker registers and quits through requests a manager answers, goes
// online with an ephemeral node in a ZooKeeper session of its own, sends to
// other online users' topics and reads its own topic.
//
// Workers of one process share one kafka.Clients, so a process that runs
// thousands of them (the IRC bridge) still has one producer and one
// consumer.
package client
