// Package manager is zkchat's manager: it owns /registry, creates and deletes
// the workers' Kafka topics, and answers the register and quit requests that
// workers leave under /request.
//
// Several managers may run against one ZooKeeper (a standalone one, one in
// each IRC bridge). They elect a leader with ephemeral sequential nodes under
// /election, the standard recipe: each watches its predecessor only, so a
// leader's exit wakes one follower. Only the leader acts, and every write it
// makes is a multi-op that first checks its own election node, so a leader
// whose session expired behind its back cannot write.
//
// The leader stops acting as soon as its connection is lost (it cannot know
// whether its session survives), resumes if the same session comes back, and
// starts over as a follower in a new session otherwise: Curator's SUSPENDED
// and LOST states. Becoming leader, it answers every pending request first.
//
// Every action is idempotent, so a manager that dies halfway is finished by
// the next leader: a request is answered once (the answer is a versioned
// write), and a topic that exists already, or is gone already, is success.
package manager
