package manager

// The answering writes (register, remove, settle) against internal/fakezk:
// fencing, versioned answers, outcome unknown. No server.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/internal/fakezk"
	"github.com/zkchat/zkchat/kafka"
	"github.com/zkchat/zkchat/protocol"
)

var _ writer = (*fakezk.Session)(nil)

// fakeAdmin records topic deletions.
type fakeAdmin struct {
	mu      sync.Mutex
	deleted []string
}

func (a *fakeAdmin) CreateTopic(context.Context, string, kafka.TopicSpec) error { return nil }
func (a *fakeAdmin) SetUserPrincipal(context.Context, string, string, string, string) error {
	return nil
}
func (a *fakeAdmin) DeleteUserPrincipal(context.Context, string, string) error { return nil }
func (a *fakeAdmin) Ping(context.Context) error                                { return nil }
func (a *fakeAdmin) Errors() map[string]uint64                                 { return nil }
func (a *fakeAdmin) Close()                                                    {}
func (a *fakeAdmin) DeleteTopic(_ context.Context, topic, _ string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.deleted = append(a.deleted, topic)
	return nil
}

type answerEnv struct {
	m     *Manager
	admin *fakeAdmin
	srv   *fakezk.Server
	s     *fakezk.Session // the leader's
	fence []any
	paths protocol.Paths
}

func newAnswerEnv(t *testing.T) *answerEnv {
	t.Helper()
	paths, _ := protocol.NewPaths("/chat")
	srv := fakezk.New()
	srv.MustCreate(paths.Persistent()...)
	s := srv.Connect()
	node, err := s.Create(context.Background(), paths.Election()+"/n-", []byte("m1"), zk.FlagEphemeral|zk.FlagSequence, zk.WorldACL(zk.PermAll))
	if err != nil {
		t.Fatal(err)
	}
	admin := &fakeAdmin{}
	m := &Manager{cfg: Config{Topics: protocol.Topics{Prefix: "p-"}}, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		paths: paths, admin: admin}
	return &answerEnv{m: m, admin: admin, srv: srv, s: s, paths: paths,
		fence: []any{&zk.CheckVersionRequest{Path: node, Version: -1}}}
}

// request creates a pending request as a worker would, and returns the
// leader's versioned answer to it.
func (e *answerEnv) request(t *testing.T, path string) *zk.SetDataRequest {
	t.Helper()
	if _, err := e.srv.Connect().Create(context.Background(), path, []byte("-1"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	return &zk.SetDataRequest{Path: path, Version: 0}
}

func TestAnswerRegister(t *testing.T) {
	e := newAnswerEnv(t)
	ctx := context.Background()
	req := e.request(t, e.paths.Enroll("carol"))
	if st, err := e.m.register(ctx, e.s, e.fence, "carol", "", req); err != nil || st != protocol.StatusDone {
		t.Fatalf("register = %v, %v", st, err)
	}
	if d, _ := e.srv.Data(req.Path); d != "1" {
		t.Fatalf("request holds %q, want 1", d)
	}
	if _, ok := e.srv.Data(e.paths.Registered("carol")); !ok {
		t.Fatal("no registry node")
	}
	// Answered already: a second answer at the version read is refused.
	if _, err := e.m.register(ctx, e.s, e.fence, "carol", "", req); !errors.Is(err, errAnswered) {
		t.Fatalf("answering twice = %v, want errAnswered", err)
	}
	// Registered already: 2.
	req = e.request(t, e.paths.Enroll("carol2"))
	e.srv.MustCreate(e.paths.Registered("carol2"))
	if st, err := e.m.register(ctx, e.s, e.fence, "carol2", "", req); err != nil || st != protocol.StatusAlready {
		t.Fatalf("register of a registered id = %v, %v", st, err)
	}
	if d, _ := e.srv.Data(req.Path); d != "2" {
		t.Fatalf("request holds %q, want 2", d)
	}
	// Without a request (the direct API) and unfenced.
	if st, err := e.m.register(ctx, e.s, nil, "dave", "", nil); err != nil || st != protocol.StatusDone {
		t.Fatalf("direct register = %v, %v", st, err)
	}
	if st, err := e.m.register(ctx, e.s, nil, "dave", "", nil); err != nil || st != protocol.StatusAlready {
		t.Fatalf("direct register again = %v, %v", st, err)
	}
}

// TestAnswerFenced: once the election node is gone, no answering write
// lands, and the term learns it is no longer the leader.
func TestAnswerFenced(t *testing.T) {
	e := newAnswerEnv(t)
	ctx := context.Background()
	enroll, quit := e.request(t, e.paths.Enroll("erin")), e.request(t, e.paths.Quit("frank"))
	e.srv.MustCreate(e.paths.Registered("frank"))
	e.s.Expire() // the leader's session, and its election node, are gone
	if _, err := e.m.register(ctx, e.s, e.fence, "erin", "", enroll); !errors.Is(err, errNotLeader) {
		t.Fatalf("register = %v, want errNotLeader", err)
	}
	if _, err := e.m.settle(ctx, e.s, e.fence, enroll, protocol.StatusFailed); !errors.Is(err, errNotLeader) {
		t.Fatalf("settle = %v, want errNotLeader", err)
	}
	if _, err := e.m.remove(ctx, e.s, e.fence, "frank", quit); !errors.Is(err, errNotLeader) {
		t.Fatalf("remove = %v, want errNotLeader", err)
	}
	if len(e.admin.deleted) != 0 {
		t.Fatalf("a fenced-off leader deleted topics %v", e.admin.deleted)
	}
	if _, ok := e.srv.Data(e.paths.Registered("erin")); ok {
		t.Fatal("a fenced-off leader registered erin")
	}
	for _, p := range []string{enroll.Path, quit.Path} {
		if d, _ := e.srv.Data(p); d != "-1" {
			t.Fatalf("%s answered %q by a fenced-off leader", p, d)
		}
	}
}

// TestAnswerOutcomeUnknown: a write cut by a broken connection may or may
// not have landed: errOutcomeUnknown, so the term ends and the next reads
// the request again (never a "failed" answer that could contradict it).
func TestAnswerOutcomeUnknown(t *testing.T) {
	e := newAnswerEnv(t)
	ctx := context.Background()
	req := e.request(t, e.paths.Enroll("gina"))
	e.srv.Fault(func(op, _ string) error {
		if op == "Multi" {
			return zk.ErrConnectionClosed
		}
		return nil
	})
	if _, err := e.m.register(ctx, e.s, e.fence, "gina", "", req); !errors.Is(err, errOutcomeUnknown) {
		t.Fatalf("register = %v, want errOutcomeUnknown", err)
	}
	e.srv.Fault(nil)
	if st, err := e.m.register(ctx, e.s, e.fence, "gina", "", req); err != nil || st != protocol.StatusDone {
		t.Fatalf("register after the connection came back = %v, %v", st, err)
	}
}

func TestAnswerRemove(t *testing.T) {
	e := newAnswerEnv(t)
	ctx := context.Background()
	e.srv.MustCreate(e.paths.Registered("hank"))
	// hank is online in another session: quit takes him offline.
	if _, err := e.srv.Connect().Create(ctx, e.paths.OnlineNode("hank"), nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	req := e.request(t, e.paths.Quit("hank"))
	if st, err := e.m.remove(ctx, e.s, e.fence, "hank", req); err != nil || st != protocol.StatusDone {
		t.Fatalf("remove = %v, %v", st, err)
	}
	if len(e.admin.deleted) != 1 || e.admin.deleted[0] != "p-hank" {
		t.Fatalf("topics deleted: %v", e.admin.deleted)
	}
	for _, p := range []string{e.paths.Registered("hank"), e.paths.OnlineNode("hank")} {
		if _, ok := e.srv.Data(p); ok {
			t.Fatalf("%s left after quit", p)
		}
	}
	if d, _ := e.srv.Data(req.Path); d != "1" {
		t.Fatalf("request holds %q, want 1", d)
	}
	// Not registered: 2.
	req = e.request(t, e.paths.Quit("ivan"))
	if st, err := e.m.remove(ctx, e.s, e.fence, "ivan", req); err != nil || st != protocol.StatusAlready {
		t.Fatalf("remove of an unregistered id = %v, %v", st, err)
	}
	if d, _ := e.srv.Data(req.Path); d != "2" {
		t.Fatalf("request holds %q, want 2", d)
	}
}
