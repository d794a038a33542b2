package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/kafka"
	"github.com/zkchat/zkchat/protocol"
	"github.com/zkchat/zkchat/zookeeper"
)

// Config configures a Manager.
type Config struct {
	// ZooKeeper is the connection string, "host:port,...[/chroot]".
	ZooKeeper      string
	SessionTimeout time.Duration // 0: zookeeper.DefaultSessionTimeout
	// Kafka is the bootstrap server list; KafkaExtra are further librdkafka
	// properties (security settings, say).
	Kafka      string
	KafkaExtra map[string]string
	// KafkaAuth, if set, authenticates the manager's Kafka client with SASL
	// (kafka/auth.go); KafkaExtra may still override its properties.
	KafkaAuth         *kafka.Auth
	Topics            protocol.Topics
	ReplicationFactor int               // 0: 1
	TopicConfig       map[string]string // per-topic configs, e.g. min.insync.replicas
	// Name identifies this manager in logs and in its election node.
	// "": host:pid.
	Name string
	// Concurrency is the number of the leader's workers for requests: it
	// bounds the requests handled at once. 0: 64.
	Concurrency int
	// OnlineConcurrency is the number of its workers for online nodes,
	// each of which may wait for its user's topic to be made: the topics
	// of the nodes handled meanwhile go to Kafka in one CreateTopics
	// request of at most min(OnlineConcurrency, 500). 0: 512. Measured (a
	// bridge's 10,000 users coming online, doc/scaling.md): a user waited
	// 1.8 s on average for its topic with 64 workers, 2.2 s with 512, one
	// run each: the machine, not the workers, was the limit there.
	OnlineConcurrency int
	// AnswerGrace is how long an answered request may stay before the
	// leader removes it (its worker normally deletes it at once; a crashed
	// worker or another implementation may never). 0: one minute.
	AnswerGrace time.Duration
	// ConfirmGrace is how long the leader waits for a node it cannot use
	// (unreadable with its credentials, or with ACLs on never touched by its
	// creator) before it deletes it. zkchat's workers touch their nodes at
	// once; a node nobody confirms would otherwise block its id for good.
	// 0: 30 seconds.
	ConfirmGrace time.Duration
	Logger       *slog.Logger
	// ZKAuth is zkchat's own principal (ZooKeeper digest "user:password").
	// With it the manager locks the tree down with ACLs and refuses
	// requests and online nodes not made by the id they name (see
	// protocol/acl.go). nil: no credentials, open ACLs, as without security.
	ZKAuth *protocol.Auth
	// UserKafkaPrincipals gives every id registered by a digest identity a
	// Kafka SCRAM principal of its own (protocol/principal.go), whose ACLs
	// (kafka.UserACLs) let it read only the id's topic and group: the
	// leader makes the credential at registration and deletes it at the
	// quit. It needs ZKAuth and KafkaAuth (SCRAM), and KafkaAuth's
	// principal needs kafka.ProvisionerACLs; New refuses it otherwise.
	UserKafkaPrincipals bool
}

// Manager is the zkchat manager. toolMu (the session of the direct API
// calls) and leaderMu (the leading flag) are leaves, never held together.
type Manager struct {
	cfg   Config
	log   *slog.Logger
	paths protocol.Paths
	admin topicAdmin
	// scram is the SCRAM mechanism of per-user credentials ("" without
	// UserKafkaPrincipals).
	scram string
	// ids serializes, per id, the registering and removing of an id with
	// per-user principals: both write Kafka and ZooKeeper in steps that
	// must not interleave (an enroll and a quit of one id are two nodes,
	// handled by two workers at once). A leaf lock.
	ids keyedMutex

	toolMu sync.Mutex
	tool   *zookeeper.Session // for the API calls made outside Run

	leaderMu sync.Mutex
	leading  bool

	term  atomic.Pointer[leader] // the term leading now (nil: none); gets the watch events
	count counters               // Stats' counters
	// run is the election session while runSession has one (Stats,
	// Ready); zkEvents counts the events of every session the manager
	// dials.
	run      atomic.Pointer[zookeeper.Session]
	zkEvents zookeeper.SessionEvents
}

// topicAdmin is what the manager needs of a Kafka admin client
// (*kafka.Admin; a fake in the tests of the answering writes).
type topicAdmin interface {
	CreateTopic(ctx context.Context, topic string, spec kafka.TopicSpec) error
	DeleteTopic(ctx context.Context, topic, group string) error
	// SetUserPrincipal sets user's SCRAM credential and grants it id's
	// ACLs (kafka.UserACLs).
	SetUserPrincipal(ctx context.Context, id, user, password, mechanism string) error
	DeleteUserPrincipal(ctx context.Context, user, mechanism string) error
	// Ping reports whether a broker answers now; Errors counts the client
	// errors by kafka.ErrorKinds (Stats, Ready).
	Ping(ctx context.Context) error
	Errors() map[string]uint64
	Close()
}

// writer is what the answering writes (register, remove, settle) need of a
// ZooKeeper session: *zookeeper.Session, or internal/fakezk's in tests.
type writer interface {
	Multi(ctx context.Context, ops ...any) ([]zk.MultiResponse, error)
	Exists(ctx context.Context, path string) (bool, *zk.Stat, error)
}

// Log keys and messages an operator greps for.
const (
	msgLeader   = "became leader"
	msgFollower = "stopped being leader"
)

// New returns a manager; it connects to nothing until used.
func New(cfg Config) (*Manager, error) {
	paths, err := protocol.ConnectPaths(cfg.ZooKeeper)
	if err != nil {
		return nil, err
	}
	if cfg.ReplicationFactor <= 0 {
		cfg.ReplicationFactor = 1
	}
	if cfg.AnswerGrace <= 0 {
		cfg.AnswerGrace = time.Minute
	}
	if cfg.ConfirmGrace <= 0 {
		cfg.ConfirmGrace = 30 * time.Second
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 64
	}
	if cfg.OnlineConcurrency <= 0 {
		cfg.OnlineConcurrency = 512
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = zookeeper.DefaultSessionTimeout
	}
	if cfg.Name == "" {
		host, _ := os.Hostname()
		cfg.Name = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var scram string
	if cfg.UserKafkaPrincipals {
		switch {
		case cfg.ZKAuth == nil || cfg.KafkaAuth == nil:
			return nil, errors.New("per-user Kafka principals need ZooKeeper ACLs and Kafka SASL both on (zkchat's ZooKeeper and Kafka credentials)")
		case strings.HasPrefix(cfg.KafkaAuth.User, protocol.KafkaUserPrefix):
			return nil, fmt.Errorf("per-user Kafka principals: zkchat's Kafka user may not start with %q, which is reserved for users' principals", protocol.KafkaUserPrefix)
		}
		if scram, err = cfg.KafkaAuth.SCRAMMechanism(); err != nil {
			return nil, err
		}
	}
	admin, err := kafka.NewAdmin(kafka.Config{Brokers: cfg.Kafka, Topics: cfg.Topics, Logger: cfg.Logger,
		Extra: cfg.KafkaExtra, Auth: cfg.KafkaAuth}, "zkchat-manager")
	if err != nil {
		return nil, err
	}
	m := &Manager{cfg: cfg, log: cfg.Logger.With("manager", cfg.Name), paths: paths, admin: admin, scram: scram}
	return m, nil
}

// CreateKafkaTopic creates the topic of id with one partition. A topic that
// exists already is success.
func (m *Manager) CreateKafkaTopic(ctx context.Context, id string) error {
	return m.admin.CreateTopic(ctx, m.cfg.Topics.Topic(id),
		kafka.TopicSpec{ReplicationFactor: m.cfg.ReplicationFactor, Config: m.cfg.TopicConfig})
}

// DeleteKafkaTopic deletes the topic of id and its consumer group's read
// position, so that a user who registers again starts from a new, empty
// topic. What is gone already is success.
func (m *Manager) DeleteKafkaTopic(ctx context.Context, id string) error {
	return m.admin.DeleteTopic(ctx, m.cfg.Topics.Topic(id), m.cfg.Topics.Group(id))
}

// Close releases the manager's clients. Run must have returned.
func (m *Manager) Close() {
	m.toolMu.Lock()
	if m.tool != nil {
		m.tool.Close()
		m.tool = nil
	}
	m.toolMu.Unlock()
	m.admin.Close()
}

// Leading reports whether the manager acts as leader now.
func (m *Manager) Leading() bool {
	m.leaderMu.Lock()
	defer m.leaderMu.Unlock()
	return m.leading
}

func (m *Manager) setLeading(v bool) {
	m.leaderMu.Lock()
	m.leading = v
	m.leaderMu.Unlock()
}

func (m *Manager) dial(ctx context.Context, onState func(zk.State), onWatch func(zk.Event)) (*zookeeper.Session, error) {
	return zookeeper.Dial(ctx, zookeeper.SessionConfig{
		Connect:        m.cfg.ZooKeeper,
		SessionTimeout: m.cfg.SessionTimeout,
		// The leader lists request directories that may hold many thousand
		// children.
		BufferSize: zookeeper.LargeZKBuffer,
		MaxReply:   zookeeper.ManagerMaxReply,
		Logger:     m.log,
		OnState: func(st zk.State) {
			m.zkEvents.Observe(st)
			if onState != nil {
				onState(st)
			}
		},
		OnWatch: onWatch,
		Auth:    m.cfg.ZKAuth,
	})
}

// toolSession is the session of the API calls (CreateZkTreeStructure,
// RegisterUser, ...): unfenced, for tools and tests.
func (m *Manager) toolSession(ctx context.Context) (*zookeeper.Session, error) {
	m.toolMu.Lock()
	defer m.toolMu.Unlock()
	if m.tool != nil && m.tool.Conn.State() != zk.StateExpired {
		return m.tool, nil
	}
	s, err := m.dial(ctx, nil, nil)
	if err != nil {
		return nil, err
	}
	m.tool = s
	return s, nil
}

// CreateZkTreeStructure creates the persistent nodes of the zkchat tree that
// are missing (the chroot included).
func (m *Manager) CreateZkTreeStructure(ctx context.Context) error {
	s, err := m.toolSession(ctx)
	if err != nil {
		return fmt.Errorf("create tree: %w", err)
	}
	if err := s.CreateTree(ctx); err != nil {
		return fmt.Errorf("create tree: %w", err)
	}
	return nil
}

// RegisterUser registers id directly, without a request: StatusDone or
// StatusAlready.
func (m *Manager) RegisterUser(ctx context.Context, id string) (protocol.Status, error) {
	if err := protocol.ValidateID(id); err != nil {
		return protocol.StatusFailed, err
	}
	s, err := m.toolSession(ctx)
	if err != nil {
		return protocol.StatusFailed, fmt.Errorf("register %s: %w", id, err)
	}
	return m.register(ctx, s, nil, id, "", nil)
}

// RemoveUser unregisters id directly and deletes its topic: StatusDone or
// StatusAlready.
func (m *Manager) RemoveUser(ctx context.Context, id string) (protocol.Status, error) {
	if err := protocol.ValidateID(id); err != nil {
		return protocol.StatusFailed, err
	}
	s, err := m.toolSession(ctx)
	if err != nil {
		return protocol.StatusFailed, fmt.Errorf("remove %s: %w", id, err)
	}
	return m.remove(ctx, s, nil, id, nil)
}

// GetRegisteredUsers lists the registered ids, sorted.
func (m *Manager) GetRegisteredUsers(ctx context.Context) ([]string, error) {
	s, err := m.toolSession(ctx)
	if err != nil {
		return nil, fmt.Errorf("registered users: %w", err)
	}
	return s.RegisteredUsers(ctx)
}

// errNotLeader: a fenced write failed on its check: this manager's election
// node is gone, so it is no longer the leader.
var errNotLeader = errors.New("not the leader any more (election node gone)")

// errOutcomeUnknown: the connection broke during an answering write, which
// may or may not have been applied; the term ends so that the next one
// reads the request again.
var errOutcomeUnknown = errors.New("answer outcome unknown (connection broke during the write)")

// errAnswered: the request was answered or deleted by someone else.
var errAnswered = errors.New("request answered or withdrawn meanwhile")

// failedOp returns the index of the op that made a multi fail, and its error.
func failedOp(resp []zk.MultiResponse, err error) (int, error) {
	for i, r := range resp {
		if r.Error != nil {
			return i, r.Error
		}
	}
	return -1, err
}

// answer is the versioned write of a request's status: it fails if the
// request was answered (or replaced) since it was read.
func answer(req *zk.SetDataRequest, st protocol.Status) *zk.SetDataRequest {
	return &zk.SetDataRequest{Path: req.Path, Data: st.Bytes(), Version: req.Version}
}

// multi runs ops after the fence ops; with neither fence nor request ops it
// is a plain multi. With ops, an error that leaves the write's outcome
// unknown (the connection broke, or ctx ended, with it in flight) wraps
// errOutcomeUnknown.
func multi(ctx context.Context, s writer, fence []any, ops ...any) ([]zk.MultiResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, context.Cause(ctx) // not sent
	}
	all := append(append([]any{}, fence...), ops...)
	resp, err := s.Multi(ctx, all...)
	if err != nil && len(ops) > 0 && (zookeeper.WriteOutcomeUnknown(err) || ctx.Err() != nil) {
		return resp, fmt.Errorf("%w: %w", errOutcomeUnknown, err)
	}
	return resp, err
}

// register creates /registry/<id> and, with req, answers the request in the
// same transaction. ident is the requester's digest identity, bound to the
// id in the registry node's ACL ("" for none).
func (m *Manager) register(ctx context.Context, s writer, fence []any, id, ident string, req *zk.SetDataRequest) (protocol.Status, error) {
	if m.cfg.UserKafkaPrincipals && ident != "" {
		zs, ok := s.(*zookeeper.Session)
		if !ok {
			return protocol.StatusFailed, fmt.Errorf("register %s: per-user Kafka principals need a ZooKeeper session", id)
		}
		defer m.ids.lock(id)()
		return m.registerWithPrincipal(ctx, zs, fence, id, ident, req)
	}
	meta := protocol.RegistryData{RegisteredAt: time.Now().UTC().Format(time.RFC3339)}.Marshal()
	ops := []any{&zk.CreateRequest{Path: m.paths.Registered(id), Data: meta, Acl: m.registryACL(ident)}}
	if req != nil {
		ops = append(ops, answer(req, protocol.StatusDone))
	}
	resp, err := multi(ctx, s, fence, ops...)
	if err == nil {
		return protocol.StatusDone, nil
	}
	i, opErr := failedOp(resp, err)
	switch {
	case i >= 0 && i < len(fence):
		return protocol.StatusFailed, errNotLeader
	case i == len(fence) && errors.Is(opErr, zk.ErrNodeExists):
		if req == nil {
			return protocol.StatusAlready, nil
		}
		return m.settle(ctx, s, fence, req, protocol.StatusAlready)
	case i == len(fence)+1:
		return protocol.StatusFailed, errAnswered
	}
	return protocol.StatusFailed, fmt.Errorf("register %s: %w", id, opErr)
}

// remove deletes the topic of id, then /registry/<id>, answering req in the
// same transaction as the registry delete. The topic goes first: a manager
// that dies between the two leaves a registered user with no topic, which
// the next going online re-creates, rather than a deleted user with a topic.
func (m *Manager) remove(ctx context.Context, s writer, fence []any, id string, req *zk.SetDataRequest) (protocol.Status, error) {
	if m.cfg.UserKafkaPrincipals {
		defer m.ids.lock(id)()
	}
	if len(fence) > 0 {
		// Topic deletion cannot be fenced: check leadership just before it.
		if _, err := multi(ctx, s, fence); err != nil {
			return protocol.StatusFailed, errNotLeader
		}
	}
	// A credential node (per-user principals, now or before) must go
	// before its parent, in the same transaction.
	credPath := m.paths.KafkaCredential(id)
	hasCred, _, err := s.Exists(ctx, credPath)
	if err != nil {
		return protocol.StatusFailed, fmt.Errorf("remove %s: %w", id, err)
	}
	// The Kafka credential goes first, like the topic: a manager that dies
	// before the ZooKeeper write leaves a registered id whose credential
	// is gone, which registering again repairs, rather than an unregistered
	// id whose credential still works.
	if hasCred || m.cfg.UserKafkaPrincipals {
		if err := m.deleteKafkaPrincipal(ctx, id); err != nil {
			if m.cfg.UserKafkaPrincipals {
				return protocol.StatusFailed, fmt.Errorf("remove %s: %w", id, err)
			}
			m.log.Warn("remove: the Kafka credential of a user registered with per-user principals (now off) is left; delete it with kafka-configs and kafka-acls",
				"id", id, "kafka_user", m.cfg.Topics.KafkaUser(id), "err", err)
		}
	}
	if err := m.DeleteKafkaTopic(ctx, id); err != nil {
		return protocol.StatusFailed, fmt.Errorf("remove %s: %w", id, err)
	}
	var ops []any
	if hasCred {
		ops = append(ops, &zk.DeleteRequest{Path: credPath, Version: -1})
	}
	regOp := len(fence) + len(ops) // the index of the registry delete in the multi
	ops = append(ops, &zk.DeleteRequest{Path: m.paths.Registered(id), Version: -1})
	if req != nil {
		ops = append(ops, answer(req, protocol.StatusDone))
	}
	resp, err := multi(ctx, s, fence, ops...)
	st := protocol.StatusDone
	if err != nil {
		i, opErr := failedOp(resp, err)
		switch {
		case i >= 0 && i < len(fence):
			return protocol.StatusFailed, errNotLeader
		case i == regOp && errors.Is(opErr, zk.ErrNoNode):
			st = protocol.StatusAlready
			if req != nil {
				if st, err = m.settle(ctx, s, fence, req, st); err != nil {
					return st, err
				}
			}
		case i == regOp+1:
			return protocol.StatusFailed, errAnswered
		default:
			return protocol.StatusFailed, fmt.Errorf("remove %s: %w", id, opErr)
		}
	}
	// A quitting user goes offline: take /online/<id> down if another
	// session still holds it.
	if resp, err := multi(ctx, s, fence, &zk.DeleteRequest{Path: m.paths.OnlineNode(id), Version: -1}); err != nil {
		i, opErr := failedOp(resp, err)
		switch {
		case i >= 0 && i < len(fence):
			return st, errNotLeader // answered already; the next leader cleans up
		case !errors.Is(opErr, zk.ErrNoNode):
			m.log.Warn("remove: deleting online node", "id", id, "err", opErr)
		}
	}
	return st, nil
}

// settle answers req with st alone (fenced).
func (m *Manager) settle(ctx context.Context, s writer, fence []any, req *zk.SetDataRequest, st protocol.Status) (protocol.Status, error) {
	resp, err := multi(ctx, s, fence, answer(req, st))
	if err == nil {
		return st, nil
	}
	i, opErr := failedOp(resp, err)
	if i >= 0 && i < len(fence) {
		return protocol.StatusFailed, errNotLeader
	}
	if errors.Is(opErr, zk.ErrBadVersion) || errors.Is(opErr, zk.ErrNoNode) {
		return protocol.StatusFailed, errAnswered
	}
	return protocol.StatusFailed, fmt.Errorf("answer %s: %w", req.Path, opErr)
}

// registryACL is the ACL of a new /registry/<id>: open without credentials;
// else zkchat's principal ALL, world READ, and the registrant's identity
// READ, which binds the id to it (protocol.Binding).
func (m *Manager) registryACL(ident string) []zk.ACL {
	acl := m.nodeACL() // one definition of the manager's own nodes' ACL
	if m.cfg.ZKAuth != nil && ident != "" {
		acl = append(acl, zk.ACL{Perms: zk.PermRead, Scheme: "digest", ID: ident})
	}
	return acl
}

// nodeACL is the ACL of a node the manager creates for itself (its election
// node): zkchat's principal ALL and world READ; open without credentials.
func (m *Manager) nodeACL() []zk.ACL {
	if m.cfg.ZKAuth == nil {
		return zk.WorldACL(zk.PermAll)
	}
	return []zk.ACL{zk.ACL(m.cfg.ZKAuth.ACL(zk.PermAll)), {Perms: zk.PermRead, Scheme: "world", ID: "anyone"}}
}

// identity decides, with ACLs on, who made the request or online node at
// path (protocol.RequestIdentity), and checks it against the id's binding:
// a quit or an online node of a registered id must come from the identity
// that registered it (or from zkchat's principal). version is the data
// version the caller read. Without credentials it returns "", nil.
//
// bound reports that the id's registry binding is that identity (checked
// only with checkBinding): an id registered by zkchat's principal has none.
func (m *Manager) identity(ctx context.Context, s *zookeeper.Session, path, id string, version int32, checkBinding bool) (ident string, bound bool, err error) {
	if m.cfg.ZKAuth == nil {
		return "", false, nil
	}
	type got struct {
		acl  []zk.ACL
		stat *zk.Stat
	}
	g, err := zookeeper.Do(ctx, func() (got, error) {
		a, st, err := s.Conn.GetACL(path)
		return got{a, st}, err
	})
	if err != nil {
		return "", false, fmt.Errorf("ACL of %s: %w", path, err)
	}
	// The version read with the data: a touch after that read comes with a
	// watch event, and the node is looked at again.
	ident, err = protocol.RequestIdentity(zookeeper.FromZK(g.acl), version, g.stat.Aversion, id, []string{m.cfg.ZKAuth.ID()})
	if err != nil || !checkBinding || ident == "" {
		return ident, false, err
	}
	r, err := zookeeper.Do(ctx, func() (got, error) {
		a, _, err := s.Conn.GetACL(s.Paths.Registered(id))
		return got{a, nil}, err
	})
	if errors.Is(err, zk.ErrNoNode) {
		return ident, false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("ACL of %s: %w", s.Paths.Registered(id), err)
	}
	b := protocol.Binding(zookeeper.FromZK(r.acl), id)
	if b != "" && b != ident {
		return "", false, fmt.Errorf("%w: %s was registered with another password", protocol.ErrIdentity, id)
	}
	return ident, b == ident, nil
}
