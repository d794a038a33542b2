package main

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// notifyEvery is how often notifySystemd asks the readiness conditions.
const notifyEvery = 2 * time.Second

// notifySystemd speaks systemd's notify protocol (a Type=notify unit:
// deploy/systemd) when systemd started the process (NOTIFY_SOCKET set):
// READY=1 the first time ready holds, so `systemctl start` returns and
// units ordered after this one start once it serves; STATUS= whenever what
// ready says changes, which `systemctl status` shows ("not ready: bridge:
// no ZooKeeper session"); STOPPING=1 when ctx ends (SIGTERM). Without
// NOTIFY_SOCKET it starts nothing. The goroutine it starts is stopped by
// stop, which waits for it.
func notifySystemd(ctx context.Context, log *slog.Logger, ready func() (bool, string)) (stop func()) {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		warned := false
		send := func(state string) {
			if _, err := daemon.SdNotify(false, state); err != nil && !warned {
				warned = true // once: the socket does not come back
				log.Warn("systemd notify failed", "state", state, "err", err)
			}
		}
		t := time.NewTicker(notifyEvery)
		defer t.Stop()
		last, readySent := "", false
		for {
			ok, why := ready() // up to a few seconds: it asks ZooKeeper and Kafka
			state := ""
			if why != last && ctx.Err() == nil {
				state, last = "STATUS="+why+"\n", why
			}
			if ok && !readySent && ctx.Err() == nil {
				state, readySent = "READY=1\n"+state, true
			}
			if state != "" {
				send(state)
			}
			select {
			case <-ctx.Done():
				send("STOPPING=1\nSTATUS=stopping\n")
				return
			case <-t.C:
			}
		}
	}()
	return func() { cancel(); wg.Wait() }
}
