package manager_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/manager"
	"github.com/zkchat/zkchat/protocol"
)

// opMulti is ZooKeeper's opcode of a multi-op (the manager answers every
// request with one).
const opMulti = 14

// cutProxy forwards ZooKeeper connections to a server. Once armed, it lets
// the next multi-op through to the server, drops everything the server
// sends back from then on, and closes the connection 300 ms later: the
// server has applied the write, the client never hears of it.
type cutProxy struct {
	ln     net.Listener
	target string
	armed  atomic.Bool
	cuts   atomic.Int32
	wg     sync.WaitGroup
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.serve(c) }()
	}
}

func (p *cutProxy) serve(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer server.Close()
	var mute atomic.Bool
	done := make(chan struct{})
	go func() { // server → client, until muted
		defer close(done)
		buf := make([]byte, 32<<10)
		for {
			n, err := server.Read(buf)
			if n > 0 && !mute.Load() {
				if _, werr := client.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				client.Close()
				return
			}
		}
	}()
	// client → server, frame by frame: int32 length, then (after the
	// connect request, which has no header) xid int32, opcode int32.
	first := true
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(client, hdr[:]); err != nil {
			break
		}
		frame := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(client, frame); err != nil {
			break
		}
		cut := !first && len(frame) >= 8 && int32(binary.BigEndian.Uint32(frame[4:8])) == opMulti &&
			p.armed.CompareAndSwap(true, false)
		first = false
		if cut {
			mute.Store(true) // before the server can answer
		}
		if _, err := server.Write(append(hdr[:], frame...)); err != nil {
			break
		}
		if cut {
			p.cuts.Add(1)
			time.Sleep(300 * time.Millisecond)
			break
		}
	}
	client.Close()
	server.Close()
	<-done
}

// TestAnswerCutByConnectionLoss: the connection breaks with the manager's
// answering write in flight, after ZooKeeper applied it. The requester has
// its answer (done); the manager cannot know it and must neither call the
// request failed nor try to answer it again: it logs that the outcome is
// unknown, and leads on once reconnected (the next request is answered).
func TestAnswerCutByConnectionLoss(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	proxy := newCutProxy(t, strings.Split(env.ZKServers, ",")[0])
	var logs testenv.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m, err := manager.New(manager.Config{
		ZooKeeper: proxy.addr() + env.Chroot, Kafka: env.Kafka,
		Topics: protocol.Topics{Prefix: env.Prefix}, Name: "cut",
		SessionTimeout: 4 * time.Second, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("manager Run: %v", err)
		}
		m.Close()
		if t.Failed() {
			t.Logf("manager log:\n%s", logs.String())
		}
	})
	waitLeader(t, m)

	proxy.armed.Store(true)
	w := env.NewWorker(t, "cutme", nil)
	st, err := w.Register(ctxT(t))
	if err != nil || st != protocol.StatusDone {
		t.Fatalf("register cutme: %v %v, want done", st, err)
	}
	if proxy.cuts.Load() != 1 {
		t.Fatalf("the proxy cut %d connections, want 1", proxy.cuts.Load())
	}
	waitFor(t, 10*time.Second, "outcome unknown logged", func() bool {
		return strings.Contains(logs.String(), `msg="request answer outcome unknown"`)
	})
	if l := logs.String(); strings.Contains(l, "request failed") || strings.Contains(l, `id=cutme status=`) {
		t.Errorf("the cut answer was logged as failed or answered:\n%s", l)
	}

	// Reconnected (same session or a new one), it leads and answers again.
	w2 := env.NewWorker(t, "after", nil)
	if st, err := w2.Register(ctxT(t)); err != nil || st != protocol.StatusDone {
		t.Fatalf("register after the cut: %v %v, want done", st, err)
	}
	c := env.Conn(t)
	paths, err := protocol.NewPaths(env.Chroot)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"cutme", "after"} {
		if !exists(t, c, paths.Registered(id)) {
			t.Errorf("/registry/%s missing", id)
		}
	}
}
