package client_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/client"
	"github.com/zkchat/zkchat/internal/fakekafka"
	"github.com/zkchat/zkchat/internal/fakezk"
	"github.com/zkchat/zkchat/kafka"
	"github.com/zkchat/zkchat/protocol"
	"github.com/zkchat/zkchat/zookeeper"
)

// The real adapters and the fakes satisfy the Worker's interfaces.
var (
	_ client.Session = (*zookeeper.Session)(nil)
	_ client.Session = (*fakezk.Session)(nil)
	_ client.Kafka   = (*kafka.Clients)(nil)
	_ client.Kafka   = (*fakekafka.Cluster)(nil)
)

// fakeEnv is a ZooKeeper tree under a chroot and a Kafka cluster, both in
// memory.
type fakeEnv struct {
	zk     *fakezk.Server
	kafka  *fakekafka.Cluster
	paths  protocol.Paths
	topics protocol.Topics

	mu       sync.Mutex
	sessions []*fakezk.Session // every session a worker dialled, in order
}

const fakeConnect = "zk.invalid:2181/chat"

func newFakeEnv(t testing.TB) *fakeEnv {
	t.Helper()
	paths, err := protocol.NewPaths("/chat")
	if err != nil {
		t.Fatal(err)
	}
	e := &fakeEnv{zk: fakezk.New(), paths: paths, topics: protocol.Topics{Prefix: "p-"}}
	e.kafka = fakekafka.New(e.topics)
	e.zk.MustCreate(paths.Persistent()...)
	return e
}

// dial is the workers' Config.Dial.
func (e *fakeEnv) dial(ctx context.Context, cfg zookeeper.SessionConfig) (client.Session, error) {
	if cfg.Connect != fakeConnect {
		return nil, errors.New("dialled " + cfg.Connect)
	}
	s := e.zk.Connect()
	e.mu.Lock()
	e.sessions = append(e.sessions, s)
	e.mu.Unlock()
	return s, nil
}

// lastSession is the session the workers dialled last.
func (e *fakeEnv) lastSession(t testing.TB) *fakezk.Session {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.sessions) == 0 {
		t.Fatal("no session dialled")
	}
	return e.sessions[len(e.sessions)-1]
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// worker returns a worker on e; withKafka false: a worker without Kafka.
func (e *fakeEnv) worker(t testing.TB, id string, withKafka bool) *client.Worker {
	t.Helper()
	cfg := client.Config{ZooKeeper: fakeConnect, Dial: e.dial, RequestTimeout: 5 * time.Second, Logger: quietLogger()}
	if withKafka {
		cfg.Kafka = e.kafka
	}
	w, err := client.New(id, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

// onlineWorker is a registered worker that is online.
func (e *fakeEnv) onlineWorker(t testing.TB, id string) *client.Worker {
	t.Helper()
	e.register(t, id)
	w := e.worker(t, id, true)
	if err := w.GoOnline(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	return w
}

// register makes id registered, as a manager's answer would.
func (e *fakeEnv) register(t testing.TB, ids ...string) {
	t.Helper()
	for _, id := range ids {
		e.zk.MustCreate(e.paths.Registered(id))
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fakeManager plays the leader on a fakeEnv: it answers register and quit
// requests (1, 2, or 0 for the ids in refuse), creates the topic of a
// registered user that goes online, deletes an unregistered /online node,
// and on quit deletes the topic, the group and the user's /online node.
// Not fenced: one per test.
type fakeManager struct {
	e      *fakeEnv
	refuse map[string]bool
}

// start runs m until the test ends.
func (m *fakeManager) start(t testing.TB) {
	ctx, cancel := context.WithCancel(context.Background())
	s := m.e.zk.Connect()
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.run(ctx, s)
	}()
	t.Cleanup(func() { cancel(); <-done; s.Close() })
}

func (m *fakeManager) run(ctx context.Context, s *fakezk.Session) {
	p := m.e.paths
	for {
		var watches []<-chan zk.Event
		for _, dir := range []string{p.EnrollRequests(), p.QuitRequests(), p.Online()} {
			ids, _, ch, err := s.ChildrenW(ctx, dir)
			if err != nil {
				return
			}
			watches = append(watches, ch)
			for _, id := range ids {
				m.handle(ctx, s, dir, id)
			}
		}
		select {
		case <-watches[0]:
		case <-watches[1]:
		case <-watches[2]:
		case <-ctx.Done():
			return
		}
	}
}

func (m *fakeManager) handle(ctx context.Context, s *fakezk.Session, dir, id string) {
	p, k := m.e.paths, m.e.kafka
	registered, _, _ := s.Exists(ctx, p.Registered(id))
	if dir == p.Online() {
		if registered {
			k.CreateTopic(m.e.topics.Topic(id))
		} else {
			_ = s.Delete(ctx, p.OnlineNode(id), -1)
		}
		return
	}
	req := dir + "/" + id
	data, st, err := s.Get(ctx, req)
	if err != nil || string(data) != "-1" {
		return
	}
	answer := func(code protocol.Status) *zk.SetDataRequest {
		return &zk.SetDataRequest{Path: req, Data: code.Bytes(), Version: st.Version}
	}
	open := zk.WorldACL(zk.PermAll)
	switch {
	case m.refuse[id]:
		_, _ = s.Multi(ctx, answer(protocol.StatusFailed))
	case dir == p.EnrollRequests() && registered:
		_, _ = s.Multi(ctx, answer(protocol.StatusAlready))
	case dir == p.EnrollRequests():
		_, _ = s.Multi(ctx, &zk.CreateRequest{Path: p.Registered(id), Data: []byte("{}"), Acl: open}, answer(protocol.StatusDone))
	case !registered:
		_, _ = s.Multi(ctx, answer(protocol.StatusAlready))
	default:
		k.DeleteTopic(m.e.topics.Topic(id), m.e.topics.Group(id))
		if _, err := s.Multi(ctx, &zk.DeleteRequest{Path: p.Registered(id), Version: -1}, answer(protocol.StatusDone)); err == nil {
			_ = s.Delete(ctx, p.OnlineNode(id), -1)
		}
	}
}

// waitFor polls cond every millisecond for up to d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
