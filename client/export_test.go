package client

import "time"

func init() {
	// The tests fail commits on purpose: retry them at once.
	commitRetryDelay = 10 * time.Millisecond
}
