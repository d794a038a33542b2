package interop

// A second implementation of the course exercise, as a student would write
// it from the course text ("Recipe: Chat Room", its actions Register, Quit,
// Go online, Go offline and its API), with the raw clients only: nothing
// of zkchat is imported here. Where the course says nothing, it does the
// plainest thing: no node data beyond the status codes, an open ACL, no
// election, topics created with one partition and named by the id, the read
// position kept by an ordinary subscribing consumer whose group is the id.
//
// The one thing it takes from zkchat is the chroot (root), which the course
// does not have: each test runs on its own corner of the shared servers.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/go-zookeeper/zk"
)

// The course's status codes, as the ASCII strings in a request node.
const (
	codePending = "-1"
	codeFailed  = "0"
	codeDone    = "1"
	codeAlready = "2" // quit: the user was not registered
)

type quietZK struct{}

func (quietZK) Printf(string, ...any) {}

// dialZK is a plain go-zookeeper connection, closed when the test ends.
func dialZK(t testing.TB, servers string) *zk.Conn {
	t.Helper()
	c, _, err := zk.Connect(strings.Split(servers, ","), 10*time.Second, zk.WithLogInfo(false), zk.WithLogger(quietZK{}))
	if err != nil {
		t.Fatalf("foreign: zookeeper: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// createZkTreeStructure is the course's manager API of that name: the
// persistent nodes, created when missing, under root.
func createZkTreeStructure(c *zk.Conn, root string) error {
	var paths []string
	p := ""
	for _, part := range strings.Split(strings.Trim(root, "/"), "/") {
		if part != "" {
			p += "/" + part
			paths = append(paths, p)
		}
	}
	for _, d := range []string{"/request", "/request/enroll", "/request/quit", "/registry", "/online"} {
		paths = append(paths, root+d)
	}
	for _, path := range paths {
		if _, err := c.Create(path, nil, 0, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("create %s: %w", path, err)
		}
	}
	return nil
}

// foreignWorker is the course's worker W.
type foreignWorker struct {
	t       testing.TB
	id      string
	root    string
	brokers string
	zk      *zk.Conn

	prod *ckafka.Producer
	cons *ckafka.Consumer // after goOnline
}

func newForeignWorker(t testing.TB, servers, root, brokers, id string) *foreignWorker {
	t.Helper()
	p, err := ckafka.NewProducer(&ckafka.ConfigMap{"bootstrap.servers": brokers, "acks": "all",
		"enable.idempotence": true, "log_level": 3})
	if err != nil {
		t.Fatalf("foreign %s: producer: %v", id, err)
	}
	t.Cleanup(p.Close)
	return &foreignWorker{t: t, id: id, root: root, brokers: brokers, zk: dialZK(t, servers), prod: p}
}

// request is the worker's side of Register and Quit: "create and watch
// /request/<kind>/w_id: -1", "check the watched event data, if 1 or 2 =>
// success", "remove /request/<kind>/w_id" (unless keep: an implementation
// that never cleans up). It returns the code the manager wrote.
func (w *foreignWorker) request(kind string, timeout time.Duration, keep bool) (string, error) {
	path := w.root + "/request/" + kind + "/" + w.id
	if _, err := w.zk.Create(path, []byte(codePending), 0, zk.WorldACL(zk.PermAll)); err != nil {
		return "", fmt.Errorf("create %s: %w", path, err)
	}
	deadline := time.After(timeout)
	for {
		data, _, ch, err := w.zk.GetW(path)
		if err != nil {
			return "", fmt.Errorf("watch %s: %w", path, err)
		}
		if code := string(data); code != codePending {
			if !keep {
				if err := w.zk.Delete(path, -1); err != nil {
					return code, fmt.Errorf("remove %s: %w", path, err)
				}
			}
			return code, nil
		}
		select {
		case <-ch:
		case <-deadline:
			return "", fmt.Errorf("%s: no answer within %s", path, timeout)
		}
	}
}

// goOnline is "create ephemeral node /online/w_id", after checking that
// /registry/w_id exists; then it waits (as long as timeout) for the
// manager to create its topic, and starts consuming it.
func (w *foreignWorker) goOnline(timeout time.Duration) error {
	ok, _, err := w.zk.Exists(w.root + "/registry/" + w.id)
	if err != nil || !ok {
		return fmt.Errorf("go online: registered %v, %v", ok, err)
	}
	if _, err := w.zk.Create(w.root+"/online/"+w.id, nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		return fmt.Errorf("create /online/%s: %w", w.id, err)
	}
	c, err := ckafka.NewConsumer(&ckafka.ConfigMap{"bootstrap.servers": w.brokers, "group.id": w.id,
		"auto.offset.reset": "earliest", "log_level": 3})
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	w.t.Cleanup(func() { _ = c.Close() })
	deadline := time.Now().Add(timeout)
	for !topicExists(c, w.id) {
		if time.Now().After(deadline) {
			return fmt.Errorf("topic %s not created within %s", w.id, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := c.Subscribe(w.id, nil); err != nil {
		return fmt.Errorf("subscribe %s: %w", w.id, err)
	}
	w.cons = c
	return nil
}

// topicExists asks for topic's metadata through a consumer, which does not
// create topics by asking.
func topicExists(c *ckafka.Consumer, topic string) bool {
	md, err := c.GetMetadata(&topic, false, 2000)
	if err != nil {
		return false
	}
	tm, ok := md.Topics[topic]
	return ok && tm.Error.Code() == ckafka.ErrNoError && len(tm.Partitions) > 0
}

// send is SendMessage: key = sender id, value = text, to the receiver's
// topic; it waits for the broker's acknowledgement.
func (w *foreignWorker) send(to, text string) error {
	return produce(w.prod, to, []byte(w.id), []byte(text))
}

// produce writes one record and waits for its delivery report.
func produce(p *ckafka.Producer, topic string, key, value []byte) error {
	done := make(chan ckafka.Event, 1)
	if err := p.Produce(&ckafka.Message{TopicPartition: ckafka.TopicPartition{Topic: &topic, Partition: ckafka.PartitionAny},
		Key: key, Value: value}, done); err != nil {
		return fmt.Errorf("produce to %s: %w", topic, err)
	}
	select {
	case ev := <-done:
		if m, ok := ev.(*ckafka.Message); ok && m.TopicPartition.Error != nil {
			return fmt.Errorf("produce to %s: %w", topic, m.TopicPartition.Error)
		}
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("produce to %s: no delivery report in 30 s", topic)
	}
}

// foreignMsg is a record the foreign worker read.
type foreignMsg struct{ from, text string }

// read is ReadMessages: it reads its own topic until it has n records, for
// as long as timeout.
func (w *foreignWorker) read(n int, timeout time.Duration) ([]foreignMsg, error) {
	var out []foreignMsg
	deadline := time.Now().Add(timeout)
	for len(out) < n {
		if time.Now().After(deadline) {
			return out, fmt.Errorf("read %s: %d of %d records within %s", w.id, len(out), n, timeout)
		}
		m, err := w.cons.ReadMessage(200 * time.Millisecond)
		var ke ckafka.Error
		if errors.As(err, &ke) && ke.Code() == ckafka.ErrTimedOut {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("read %s: %w", w.id, err)
		}
		out = append(out, foreignMsg{string(m.Key), string(m.Value)})
	}
	return out, nil
}

// stopReading closes the consumer: the worker leaves its group.
func (w *foreignWorker) stopReading() {
	if w.cons != nil {
		_ = w.cons.Close()
		w.cons = nil
	}
}

// online is GetOnlineUsers.
func (w *foreignWorker) online() ([]string, error) {
	ids, _, err := w.zk.Children(w.root + "/online")
	return ids, err
}

// foreignManager is the course's manager M, without any election: it
// watches the children of /request/enroll, /request/quit and /online and
// acts on every child it sees.
type foreignManager struct {
	t     testing.TB
	root  string
	zk    *zk.Conn
	admin *ckafka.AdminClient
	probe *ckafka.Consumer // metadata only

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	topics map[string]bool // "first time online": ids whose topic it made
}

// startForeignManager creates the tree under root and runs the manager
// until the test ends.
func startForeignManager(t testing.TB, servers, root, brokers string) *foreignManager {
	t.Helper()
	c := dialZK(t, servers)
	if err := createZkTreeStructure(c, root); err != nil {
		t.Fatalf("foreign manager: %v", err)
	}
	a, err := ckafka.NewAdminClient(&ckafka.ConfigMap{"bootstrap.servers": brokers, "log_level": 3})
	if err != nil {
		t.Fatalf("foreign manager: admin: %v", err)
	}
	probe, err := ckafka.NewConsumer(&ckafka.ConfigMap{"bootstrap.servers": brokers, "group.id": "foreign-probe", "log_level": 3})
	if err != nil {
		a.Close()
		t.Fatalf("foreign manager: consumer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &foreignManager{t: t, root: root, zk: c, admin: a, probe: probe, ctx: ctx, cancel: cancel, topics: map[string]bool{}}
	m.wg.Add(3)
	go m.watch("/request/enroll", m.enroll)
	go m.watch("/request/quit", m.quit)
	go m.watch("/online", m.online)
	t.Cleanup(func() {
		cancel()
		c.Close() // ends a ChildrenW in progress
		m.wg.Wait()
		_ = probe.Close()
		a.Close()
	})
	return m
}

// watch is "watch the children of dir": list with a watch, handle every
// child, wait for the next change.
func (m *foreignManager) watch(dir string, handle func(id string)) {
	defer m.wg.Done()
	for m.ctx.Err() == nil {
		ids, _, ch, err := m.zk.ChildrenW(m.root + dir)
		if err != nil {
			select {
			case <-time.After(100 * time.Millisecond):
			case <-m.ctx.Done():
			}
			continue
		}
		for _, id := range ids {
			handle(id)
		}
		select {
		case <-ch:
		case <-m.ctx.Done():
		}
	}
}

// enroll is registerUser: create /registry/w_id; if that succeeds, answer
// 1, if it fails, 0 (the course's enroll knows no 2).
func (m *foreignManager) enroll(id string) {
	path := m.root + "/request/enroll/" + id
	data, st, err := m.zk.Get(path)
	if err != nil || string(data) != codePending {
		return
	}
	code := codeDone
	if _, err := m.zk.Create(m.root+"/registry/"+id, nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
		code = codeFailed
	}
	_, _ = m.zk.Set(path, []byte(code), st.Version)
}

// quit is removeUser: delete /registry/w_id and answer 1, 2 if the user was
// not registered, 0 if the delete fails; on success delete the user's
// topic (the course's order: registry first, topic second).
func (m *foreignManager) quit(id string) {
	path := m.root + "/request/quit/" + id
	data, st, err := m.zk.Get(path)
	if err != nil || string(data) != codePending {
		return
	}
	code := codeDone
	switch err := m.zk.Delete(m.root+"/registry/"+id, -1); {
	case errors.Is(err, zk.ErrNoNode):
		code = codeAlready
	case err != nil:
		code = codeFailed
	}
	_, _ = m.zk.Set(path, []byte(code), st.Version)
	if code == codeDone {
		m.mu.Lock()
		delete(m.topics, id)
		m.mu.Unlock()
		ctx, cancel := context.WithTimeout(m.ctx, 30*time.Second)
		defer cancel()
		if _, err := m.admin.DeleteTopics(ctx, []string{id}); err != nil {
			m.t.Logf("foreign manager: delete topic %s: %v", id, err)
		}
		// Until the deletion shows, a create would find the old topic.
		for topicExists(m.probe, id) && ctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// online is "if w_id registered and first time online, create /topic/w_id
// in kafka", with one partition, retrying while the broker refuses (a
// topic of that name being deleted).
func (m *foreignManager) online(id string) {
	m.mu.Lock()
	done := m.topics[id]
	m.mu.Unlock()
	if done {
		return
	}
	if ok, _, err := m.zk.Exists(m.root + "/registry/" + id); err != nil || !ok {
		return
	}
	for m.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(m.ctx, 30*time.Second)
		res, err := m.admin.CreateTopics(ctx, []ckafka.TopicSpecification{{Topic: id, NumPartitions: 1, ReplicationFactor: 1}})
		cancel()
		if err == nil && len(res) == 1 && (res[0].Error.Code() == ckafka.ErrNoError || res[0].Error.Code() == ckafka.ErrTopicAlreadyExists) &&
			topicExists(m.probe, id) {
			m.mu.Lock()
			m.topics[id] = true
			m.mu.Unlock()
			return
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-m.ctx.Done():
		}
	}
}
