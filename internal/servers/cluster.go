package servers

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Cluster is a 3-server ZooKeeper ensemble and a 3-node Kafka KRaft cluster
// on 127.0.0.1, for the fault suite (which freezes and kills members by
// pid). Members are zk1..zk3 and kafka1..kafka3:
//
//	ZooKeeper  clients on 22181..22183, quorum 22881..22883, election
//	           23881..23883 (deploy/zookeeper/ensemble.cfg.tmpl). Ready: all
//	           three answer "srvr" and exactly one says "Mode: leader".
//	Kafka      every node broker + controller, brokers on 29092..29094,
//	           controllers on 29192..29194, replication factor 3, min ISR 2
//	           (deploy/kafka/cluster.properties.tmpl). Ready: 3 brokers listed.
//
// ClusterBase is added to every port. Everything lives in
// DataDir/cluster/<member>/; the standalone servers are separate.
type Cluster struct {
	c   *Config
	dir string
}

// Member names.
var (
	ZKMembers    = []string{"zk1", "zk2", "zk3"}
	KafkaMembers = []string{"kafka1", "kafka2", "kafka3"}
	Members      = append(append([]string{}, ZKMembers...), KafkaMembers...)
)

const (
	zkStartTimeout    = 60 * time.Second
	kafkaStartTimeout = 120 * time.Second
	clusterStop       = 30 * time.Second
)

// Cluster is the replicated cluster of c.
func (c *Config) Cluster() *Cluster {
	return &Cluster{c: c, dir: filepath.Join(c.DataDir, "cluster")}
}

func num(member string) int   { n, _ := strconv.Atoi(strings.TrimLeft(member, "zkaf")); return n }
func isZK(member string) bool { return strings.HasPrefix(member, "zk") }

// ZKPort, KafkaPort: a member's client port.
func (cl *Cluster) ZKPort(m string) int    { return 22180 + cl.c.ClusterBase + num(m) }
func (cl *Cluster) KafkaPort(m string) int { return 29091 + cl.c.ClusterBase + num(m) }
func (cl *Cluster) controllerPort(m string) int {
	return 29191 + cl.c.ClusterBase + num(m)
}
func (cl *Cluster) quorumPort(n int) int   { return 22880 + cl.c.ClusterBase + n }
func (cl *Cluster) electionPort(n int) int { return 23880 + cl.c.ClusterBase + n }

func (cl *Cluster) memberDir(m string) string { return filepath.Join(cl.dir, m) }
func (cl *Cluster) pidfile(m string) string   { return filepath.Join(cl.dir, m, m+".pid") }
func (cl *Cluster) cfg(m string) string {
	if isZK(m) {
		return filepath.Join(cl.dir, m, "conf", "zoo.cfg")
	}
	return filepath.Join(cl.dir, m, "server.properties")
}
func (cl *Cluster) pattern(m string) string {
	if isZK(m) {
		return zkMain + " " + cl.cfg(m)
	}
	return "kafka.Kafka " + cl.cfg(m)
}
func (cl *Cluster) ports(m string) []int {
	if isZK(m) {
		return []int{cl.ZKPort(m), cl.quorumPort(num(m)), cl.electionPort(num(m))}
	}
	return []int{cl.KafkaPort(m), cl.controllerPort(m)}
}

// ZooKeeper and Kafka are the connection strings of all members.
func (cl *Cluster) ZooKeeper() string { return cl.connect(ZKMembers, cl.ZKPort) }
func (cl *Cluster) Kafka() string     { return cl.connect(KafkaMembers, cl.KafkaPort) }
func (cl *Cluster) connect(ms []string, port func(string) int) string {
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = addr(port(m))
	}
	return strings.Join(s, ",")
}

// Env is what clients need: ZKCHAT_ZOOKEEPER and ZKCHAT_KAFKA.
func (cl *Cluster) Env() []string {
	return []string{"ZKCHAT_ZOOKEEPER=" + cl.ZooKeeper(), "ZKCHAT_KAFKA=" + cl.Kafka()}
}

func valid(m string) error {
	for _, n := range Members {
		if n == m {
			return nil
		}
	}
	return fmt.Errorf("unknown member %q (members: %s)", m, strings.Join(Members, " "))
}

// PID is the member's pid (0 when it is down).
func (cl *Cluster) PID(m string) int {
	pid, _ := PidRunning(cl.pidfile(m), cl.pattern(m))
	return pid
}

// lock serializes start, stop and kill (parallel runs must not race on pid files).
func (cl *Cluster) lock() (unlock func(), err error) {
	if err := os.MkdirAll(cl.dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(cl.dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// zkMode is a member's mode (leader, follower), "" when it does not serve.
func (cl *Cluster) zkMode(m string) string {
	mode, _ := zkMode(cl.ZKPort(m))
	return mode
}

// ZKLeader names the ZooKeeper member leading the ensemble ("" when none).
func (cl *Cluster) ZKLeader() string {
	for _, m := range ZKMembers {
		if cl.zkMode(m) == "leader" {
			return m
		}
	}
	return ""
}

func (cl *Cluster) zkEnsembleReady() bool {
	leaders := 0
	for _, m := range ZKMembers {
		switch cl.zkMode(m) {
		case "leader":
			leaders++
		case "follower":
		default:
			return false
		}
	}
	return leaders == 1
}

// memberReady: a ZooKeeper member leads or follows; a broker answers on its
// own port and the metadata lists it (registered and unfenced).
func (cl *Cluster) memberReady(m string) bool {
	if isZK(m) {
		mode := cl.zkMode(m)
		return mode == "leader" || mode == "follower"
	}
	md, err := kafkaMetadata(addr(cl.KafkaPort(m)))
	return err == nil && strings.Contains(md, fmt.Sprintf("broker %d at %s", num(m), addr(cl.KafkaPort(m))))
}

var brokersRe = regexp.MustCompile(` (\d+) brokers:`)

func (cl *Cluster) brokers() (md string, n int) {
	md, err := kafkaMetadata(cl.Kafka())
	if err != nil {
		return "", 0
	}
	if m := brokersRe.FindStringSubmatch(md); m != nil {
		n, _ = strconv.Atoi(m[1])
	}
	return md, n
}

func (cl *Cluster) deps() error {
	if err := cl.c.Install("zookeeper"); err != nil {
		return err
	}
	if err := cl.c.Install("kafka"); err != nil {
		return err
	}
	return cl.c.FetchKafka()
}

func (cl *Cluster) log4j() string { return cl.c.deploy("kafka", "log4j2.properties") }

// prepare renders a member's config (and myid, or formats its storage).
func (cl *Cluster) prepare(m string) error {
	c, dir, n := cl.c, cl.memberDir(m), num(m)
	if isZK(m) {
		if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
			return err
		}
		if err := Render(c.deploy("zookeeper", "ensemble.cfg.tmpl"), cl.cfg(m), map[string]any{
			"DATA_DIR": filepath.Join(dir, "data"), "CLIENT_PORT": cl.ZKPort(m),
			"QUORUM_1": cl.quorumPort(1), "QUORUM_2": cl.quorumPort(2), "QUORUM_3": cl.quorumPort(3),
			"ELECTION_1": cl.electionPort(1), "ELECTION_2": cl.electionPort(2), "ELECTION_3": cl.electionPort(3),
		}); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "data", "myid"), []byte(strconv.Itoa(n)+"\n"), 0o644); err != nil {
			return err
		}
		return copyFile(c.deploy("zookeeper", "log4j.properties"), filepath.Join(dir, "conf", "log4j.properties"))
	}
	logs := filepath.Join(dir, "logs")
	for _, d := range []string{filepath.Join(dir, "data"), logs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	voters := fmt.Sprintf("1@%s,2@%s,3@%s", addr(cl.controllerPort("kafka1")), addr(cl.controllerPort("kafka2")), addr(cl.controllerPort("kafka3")))
	if err := Render(c.deploy("kafka", "cluster.properties.tmpl"), cl.cfg(m), map[string]any{
		"NODE_ID": n, "KAFKA_PORT": cl.KafkaPort(m), "CONTROLLER_PORT": cl.controllerPort(m),
		"LOG_DIRS": filepath.Join(dir, "data"), "VOTERS": voters}); err != nil {
		return err
	}
	if isFile(filepath.Join(dir, "data", "meta.properties")) {
		return nil
	}
	id, err := cl.clusterID()
	if err != nil {
		return err
	}
	c.logf("%s: formatting storage (cluster id %s)…", m, id)
	out, err := c.StorageTool(logs, cl.log4j(), "format", "-t", id, "-c", cl.cfg(m))
	if err != nil {
		return fmt.Errorf("%s: formatting Kafka storage failed: %v\n%s", m, err, out)
	}
	appendFile(filepath.Join(logs, "kafka.out"), out)
	return nil
}

var clusterIDMu sync.Mutex

// clusterID is generated once, shared by all three nodes.
func (cl *Cluster) clusterID() (string, error) {
	clusterIDMu.Lock()
	defer clusterIDMu.Unlock()
	logs := filepath.Join(cl.dir, "kafka1", "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return "", err
	}
	return cl.c.kafkaClusterID(filepath.Join(cl.dir, "kafka-cluster.id"), logs, cl.log4j())
}

// launch starts a member's JVM (no waiting); false when it already runs.
func (cl *Cluster) launch(m string) (bool, error) {
	if pid := cl.PID(m); pid != 0 {
		cl.c.logf("%s: already running (pid %d)", m, pid)
		return false, nil
	}
	_ = os.Remove(cl.pidfile(m))
	for _, p := range cl.ports(m) {
		if PortOpen(p) {
			return false, fmt.Errorf("%s: %s is already in use by a process devenv did not start", m, addr(p))
		}
	}
	dir := cl.memberDir(m)
	var argv []string
	out := filepath.Join(dir, "zookeeper.out")
	if isZK(m) {
		argv = zkArgv(dir, cl.cfg(m), "192m")
	} else {
		out = filepath.Join(dir, "logs", "kafka.out")
		argv = kafkaArgv(cl.c.KafkaLibs(), filepath.Join(dir, "logs"), cl.log4j(), cl.cfg(m), "384m")
	}
	pid, err := StartProcess(cl.pidfile(m), out, nil, argv...)
	if err != nil {
		return false, err
	}
	cl.c.logf("%s: started (pid %d)", m, pid)
	return true, nil
}

// waitMember waits until m is ready; on failure it shows m's log.
func (cl *Cluster) waitMember(m string) error {
	timeout, logf := zkStartTimeout, filepath.Join(cl.memberDir(m), "zookeeper.log")
	if !isZK(m) {
		timeout, logf = kafkaStartTimeout, filepath.Join(cl.memberDir(m), "logs", "server.log")
	}
	err := WaitFor(timeout, cl.PID(m), func() bool { return cl.memberReady(m) })
	if err == nil {
		return nil
	}
	if errors.Is(err, errTimeout) {
		err = fmt.Errorf("%s did not become ready within %v", m, timeout)
	} else {
		err = fmt.Errorf("%s %w", m, err)
	}
	cl.c.logf("%v", err)
	cl.c.tail(logf, 30)
	return fmt.Errorf("%w; the members stay as they are (devenv cluster status, devenv cluster stop)", err)
}

// Start starts every member that is down: the ZooKeeper members at once (a
// quorum needs two), then the Kafka nodes at once (the controllers need two
// voters); it returns once the ensemble has one leader and 3 brokers are
// listed.
func (cl *Cluster) Start() error {
	unlock, err := cl.lock()
	if err != nil {
		return err
	}
	defer unlock()
	t0 := time.Now()
	if err := cl.deps(); err != nil {
		return err
	}
	for _, m := range ZKMembers {
		if err := cl.prepare(m); err != nil {
			return err
		}
	}
	for _, m := range ZKMembers {
		if _, err := cl.launch(m); err != nil {
			return err
		}
	}
	// Format the Kafka storage while ZooKeeper elects (three JVMs in parallel).
	if _, err := cl.clusterID(); err != nil {
		return err
	}
	errs := make([]error, len(KafkaMembers))
	var wg sync.WaitGroup
	for i, m := range KafkaMembers {
		wg.Go(func() { errs[i] = cl.prepare(m) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, m := range KafkaMembers {
		if _, err := cl.launch(m); err != nil {
			return err
		}
	}
	for _, m := range ZKMembers {
		if err := cl.waitMember(m); err != nil {
			return err
		}
	}
	if WaitFor(zkStartTimeout, 0, cl.zkEnsembleReady) != nil {
		return fmt.Errorf("ZooKeeper: no single leader within %v", zkStartTimeout)
	}
	cl.c.logf("ZooKeeper ensemble ready after %.1f s (leader: %s)", time.Since(t0).Seconds(), cl.ZKLeader())
	for _, m := range KafkaMembers {
		if err := cl.waitMember(m); err != nil {
			return err
		}
	}
	if WaitFor(kafkaStartTimeout, 0, func() bool { _, n := cl.brokers(); return n == 3 }) != nil {
		return fmt.Errorf("kafka: not 3 brokers listed within %v", kafkaStartTimeout)
	}
	cl.c.logf("cluster ready after %.1f s (3 brokers); data in %s", time.Since(t0).Seconds(), cl.dir)
	return nil
}

// StartMember starts one member and waits until it serves.
func (cl *Cluster) StartMember(m string) error {
	if err := valid(m); err != nil {
		return err
	}
	unlock, err := cl.lock()
	if err != nil {
		return err
	}
	defer unlock()
	t0 := time.Now()
	if err := cl.deps(); err != nil {
		return err
	}
	if err := cl.prepare(m); err != nil {
		return err
	}
	if _, err := cl.launch(m); err != nil {
		return err
	}
	if err := cl.waitMember(m); err != nil {
		return err
	}
	if isZK(m) {
		cl.c.logf("%s ready after %.1f s (Mode: %s)", m, time.Since(t0).Seconds(), cl.zkMode(m))
	} else {
		cl.c.logf("%s ready after %.1f s (listed as broker %d)", m, time.Since(t0).Seconds(), num(m))
	}
	return nil
}

func (cl *Cluster) stopMember(m string) {
	cl.c.stopPidfile(cl.pidfile(m), m, cl.pattern(m), clusterStop)
}

// StopMember stops one member gracefully.
func (cl *Cluster) StopMember(m string) error {
	if err := valid(m); err != nil {
		return err
	}
	unlock, err := cl.lock()
	if err != nil {
		return err
	}
	defer unlock()
	cl.stopMember(m)
	return nil
}

// stopGroup stops members in parallel (one by one, the last Kafka nodes
// would wait for a controller quorum that is already gone).
func (cl *Cluster) stopGroup(ms []string) {
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(func() { cl.stopMember(m) })
	}
	wg.Wait()
}

// Stop stops every member: the Kafka nodes, then the ensemble.
func (cl *Cluster) Stop() error {
	unlock, err := cl.lock()
	if err != nil {
		return err
	}
	defer unlock()
	t0 := time.Now()
	cl.stopGroup(KafkaMembers)
	cl.stopGroup(ZKMembers)
	cl.c.logf("cluster stopped after %.1f s", time.Since(t0).Seconds())
	return nil
}

// Kill SIGKILLs a member's whole process group and waits until it is gone.
func (cl *Cluster) Kill(m string) error {
	if err := valid(m); err != nil {
		return err
	}
	unlock, err := cl.lock()
	if err != nil {
		return err
	}
	defer unlock()
	pid := cl.PID(m)
	if pid == 0 {
		_ = os.Remove(cl.pidfile(m))
		cl.c.logf("%s: not running", m)
		return nil
	}
	KillGroup(pid)
	if ReadPid(cl.pidfile(m)) == pid {
		_ = os.Remove(cl.pidfile(m))
	}
	cl.c.logf("%s: killed (pid %d)", m, pid)
	return nil
}

// Status has one line per member; Up when every member runs and answers
// (and ZooKeeper has a leader), Unhealthy when some member is down or not
// answering, Down when none runs.
func (cl *Cluster) Status() Status {
	var lines []string
	up, healthy := 0, true
	for _, m := range ZKMembers {
		pid := cl.PID(m)
		switch mode := cl.zkMode(m); {
		case pid == 0:
			lines, healthy = append(lines, m+": not running"), false
		case mode != "":
			up++
			lines = append(lines, fmt.Sprintf("%s: running (pid %d) on %s, Mode: %s", m, pid, addr(cl.ZKPort(m)), mode))
		default:
			up++
			lines, healthy = append(lines, fmt.Sprintf("%s: running (pid %d) but not serving on %s", m, pid, addr(cl.ZKPort(m)))), false
		}
	}
	if !cl.zkEnsembleReady() {
		healthy = false
	}
	md, n := cl.brokers()
	for _, m := range KafkaMembers {
		pid := cl.PID(m)
		switch {
		case pid == 0:
			lines, healthy = append(lines, m+": not running"), false
		case strings.Contains(md, fmt.Sprintf("broker %d at %s", num(m), addr(cl.KafkaPort(m)))):
			up++
			lines = append(lines, fmt.Sprintf("%s: running (pid %d) on %s (controller %s), listed as broker %d", m, pid, addr(cl.KafkaPort(m)), addr(cl.controllerPort(m)), num(m)))
		default:
			up++
			lines, healthy = append(lines, fmt.Sprintf("%s: running (pid %d) but not listed as a live broker", m, pid)), false
		}
	}
	lines = append(lines, fmt.Sprintf("kafka: %d broker(s) listed", n))
	st := Status{State: Up}
	switch {
	case up == 0:
		st.State = Down
	case !healthy:
		st.State = Unhealthy
	default:
		lines = append(lines, strings.Join(cl.Env(), " "))
	}
	st.Line = strings.Join(lines, "\n")
	return st
}

// Healthy reports whether every member runs and answers; cheaper than
// Status (it stops at the first problem).
func (cl *Cluster) Healthy() bool {
	for _, m := range Members {
		if cl.PID(m) == 0 {
			return false
		}
	}
	if !cl.zkEnsembleReady() {
		return false
	}
	md, n := cl.brokers()
	if n != 3 {
		return false
	}
	for _, m := range KafkaMembers {
		if !strings.Contains(md, fmt.Sprintf("broker %d at %s", num(m), addr(cl.KafkaPort(m)))) {
			return false
		}
	}
	return true
}
