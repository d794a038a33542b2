package reliability

import (
	"slices"
	"testing"
	"time"
)

// WaitAgree polls online (the ids under /online) and names (the ids the
// channel's NAMES shows, bot and observers removed by the caller) until they
// are equal, and returns how long that took; t fails after d.
func WaitAgree(t testing.TB, d time.Duration, online, names func() ([]string, error)) time.Duration {
	t.Helper()
	t0 := time.Now()
	var a, b []string
	var errA, errB error
	for {
		a, errA = online()
		b, errB = names()
		if errA == nil && errB == nil {
			slices.Sort(a)
			slices.Sort(b)
			if slices.Equal(a, b) {
				return time.Since(t0)
			}
		}
		if time.Since(t0) > d {
			t.Errorf("presence did not agree within %v: /online %v (err %v), NAMES %v (err %v)", d, a, errA, b, errB)
			return time.Since(t0)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
