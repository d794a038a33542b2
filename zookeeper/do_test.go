package zookeeper

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"
)

// TestDoBoundsAbandonedCalls: calls whose callers gave up while ZooKeeper
// does not answer (a hung ensemble) keep at most MaxAbandoned goroutines;
// past that, Do fails at once with ErrStalled. Before, each abandoned call
// kept its goroutine: 5,000 retries, 5,000 goroutines.
func TestDoBoundsAbandonedCalls(t *testing.T) {
	hung := make(chan struct{})
	base := runtime.NumGoroutine()
	stalled := 0
	for i := 0; i < 5000; i++ {
		// The caller gives up once the call is out.
		ctx, cancel := context.WithCancel(context.Background())
		started := make(chan struct{})
		go func() {
			select {
			case <-started:
				cancel()
			case <-ctx.Done():
			}
		}()
		_, err := Do(ctx, func() (int, error) { close(started); <-hung; return 0, nil })
		cancel()
		if errors.Is(err, ErrStalled) {
			stalled++
		} else if !errors.Is(err, context.Canceled) {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	time.Sleep(10 * time.Millisecond) // the cancelling goroutines end
	// Absolute numbers, not MaxAbandoned's: the bound itself is tested.
	if g := runtime.NumGoroutine() - base; g > 1100 {
		t.Errorf("%d goroutines left by 5,000 abandoned calls, want at most 1,100", g)
	}
	if stalled < 3900 {
		t.Errorf("%d of 5,000 calls refused with ErrStalled, want at least 3,900", stalled)
	}
	close(hung) // the server answers: they all end, and calls run again
	deadline := time.Now().Add(5 * time.Second)
	for abandoned.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := abandoned.Load(); n != 0 {
		t.Fatalf("%d calls still counted after they ended", n)
	}
	if v, err := Do(context.Background(), func() (int, error) { return 7, nil }); v != 7 || err != nil {
		t.Fatalf("Do after recovery = %v, %v", v, err)
	}
}
