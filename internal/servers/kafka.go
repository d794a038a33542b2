package servers

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// KafkaLibs is the folder of the Kafka jars (FetchKafka puts them there).
func (c *Config) KafkaLibs() string {
	return filepath.Join(c.CacheDir, "kafka-"+c.KafkaVersion, "libs")
}

// FetchKafka downloads the Kafka jars with Maven from deploy/kafka/pom.xml
// into CacheDir/kafka-<version>/libs, only when they are missing or the
// pom changed (its sha256 is kept next to them).
func (c *Config) FetchKafka() error {
	libs := c.KafkaLibs()
	parent := filepath.Dir(libs)
	stamp := filepath.Join(parent, "pom.sha256")
	pom := c.deploy("kafka", "pom.xml")
	jar := filepath.Join(libs, "kafka_2.13-"+c.KafkaVersion+".jar")
	complete := func() bool {
		b, err := os.ReadFile(pom)
		if err != nil || !isFile(jar) {
			return false
		}
		sum := sha256.Sum256(b)
		st, err := os.ReadFile(stamp)
		return err == nil && strings.TrimSpace(string(st)) == hex.EncodeToString(sum[:])
	}
	if complete() {
		return nil
	}
	if err := os.MkdirAll(c.CacheDir, 0o755); err != nil {
		return err
	}
	// Two runs at once (parallel test binaries) must not both move into libs/.
	lock, err := os.OpenFile(filepath.Join(c.CacheDir, ".kafka-fetch.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	if complete() {
		return nil
	}
	if _, err := exec.LookPath("mvn"); err != nil {
		if err := c.Install("kafka"); err != nil {
			return err
		}
	}
	c.logf("fetching Kafka %s with Maven (first run only)…", c.KafkaVersion)
	// Into a temp folder first: an interrupted download never looks complete.
	tmp, err := os.MkdirTemp(c.CacheDir, ".kafka-"+c.KafkaVersion+".")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command("mvn", "-q", "-B", "-f", pom, "dependency:copy-dependencies",
		"-DoutputDirectory="+filepath.Join(tmp, "libs"), "-DincludeScope=runtime",
		"-Dkafka.version="+c.KafkaVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		lines := strings.Split(string(out), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		return fmt.Errorf("maven could not fetch Kafka %s: %v\n%s", c.KafkaVersion, err, strings.Join(lines, "\n"))
	}
	if !isFile(filepath.Join(tmp, "libs", "kafka_2.13-"+c.KafkaVersion+".jar")) {
		return fmt.Errorf("maven finished but kafka_2.13-%s.jar is missing", c.KafkaVersion)
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	_ = os.RemoveAll(libs)
	if err := os.Rename(filepath.Join(tmp, "libs"), libs); err != nil {
		return err
	}
	b, _ := os.ReadFile(pom)
	sum := sha256.Sum256(b)
	// The stamp last: only a fully moved libs/ counts as complete.
	if err := os.WriteFile(stamp, []byte(hex.EncodeToString(sum[:])+"\n"), 0o644); err != nil {
		return err
	}
	n, _ := filepath.Glob(filepath.Join(libs, "*.jar"))
	c.logf("Kafka %s jars in %s (%d jars)", c.KafkaVersion, libs, len(n))
	return nil
}

// StorageTool runs Kafka's StorageTool (kafka-storage.sh without the shell).
func (c *Config) StorageTool(logs, log4j string, args ...string) (string, error) {
	argv := append([]string{"-Xmx256m", "-Dkafka.logs.dir=" + logs, "-Dlog4j2.configurationFile=" + log4j,
		"-cp", filepath.Join(c.KafkaLibs(), "*"), "kafka.tools.StorageTool"}, args...)
	out, err := exec.Command("java", argv...).CombinedOutput()
	return string(out), err
}

var clusterIDRe = regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`)

// kafkaClusterID is the cluster id kept in file, generated once.
func (c *Config) kafkaClusterID(file, logs, log4j string) (string, error) {
	if b, err := os.ReadFile(file); err == nil && len(bytes.TrimSpace(b)) > 0 {
		return string(bytes.TrimSpace(b)), nil
	}
	out, err := c.StorageTool(logs, log4j, "random-uuid")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	id := strings.TrimSpace(lines[len(lines)-1])
	if err != nil || !clusterIDRe.MatchString(id) {
		return "", fmt.Errorf("StorageTool random-uuid printed %q, not a cluster id (%v)", out, err)
	}
	return id, writeFileAtomic(file, []byte(id+"\n"), 0o644)
}

// kafkaHeap is the single broker's heap: Kafka's own default
// (kafka-server-start.sh: -Xmx1G), against which the scaling targets
// (doc/scaling.md) are stated. A smaller heap filled up under a consumer
// assigned 1,000 idle topics.
const kafkaHeap = "1g"

func kafkaArgv(libs, logs, log4j, cfg, heap string) []string {
	return []string{"java", "-Xms256m", "-Xmx" + heap, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
		"-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
		"-Dkafka.logs.dir=" + logs, "-Dlog4j2.configurationFile=" + log4j,
		"-cp", filepath.Join(libs, "*"), "kafka.Kafka", cfg}
}

// saslPassword is user's password, generated on first use into
// dir/<user>.auth ("user:password", mode 0600).
func saslPassword(dir, user string) (string, error) {
	f := filepath.Join(dir, user+".auth")
	if b, err := os.ReadFile(f); err == nil && len(b) > 0 {
		_, pw, _ := strings.Cut(strings.TrimSpace(string(b)), ":")
		return pw, nil
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	pw := strings.Map(func(r rune) rune {
		if r == '+' || r == '/' || r == '=' {
			return -1
		}
		return r
	}, base64.StdEncoding.EncodeToString(raw[:]))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	return pw, writeFileAtomic(f, []byte(user+":"+pw+"\n"), 0o600)
}

// Kafka is a single Kafka node in KRaft combined mode (broker and
// controller) on KafkaPort, controller on KafkaControllerPort; config,
// data, logs and pid file in DataDir/kafka.
//
// With KafkaSASL (on a fresh data dir: SCRAM users are made when the
// storage is formatted) the client listener is SASL_PLAINTEXT with
// SCRAM-SHA-256, the StandardAuthorizer refuses what no ACL allows, and two
// SCRAM users exist: the super user KafkaAdminUser and zkchat's principal
// KafkaSASLUser, with passwords generated once into
// DataDir/kafka/sasl/<user>.auth ("user:password", mode 0600). zkchat's
// ACLs are granted with `zkchat kafka-acls`, as the admin. The controller
// listener stays PLAINTEXT on 127.0.0.1 (SCRAM cannot serve it in KRaft),
// its anonymous principal a super user, as the broker's requests to its
// controller need.
func (c *Config) Kafka() Server {
	k := c.kafkaNode()
	d := &daemon{
		c: c, name: "kafka", deps: "kafka",
		pidfile:  filepath.Join(k.dir, "kafka.pid"),
		pattern:  "kafka.Kafka " + k.cfg,
		outfile:  filepath.Join(k.logs, "kafka.out"),
		ports:    []int{c.KafkaPort, c.KafkaControllerPort},
		portVars: "ZKCHAT_KAFKA_PORT / ZKCHAT_KAFKA_CONTROLLER_PORT",
		// A cold JVM on 2 busy cores takes its time.
		startTimeout: 120 * time.Second, stopTimeout: 20 * time.Second,
		check: func() error {
			return distinct("ZKCHAT_KAFKA_PORT and ZKCHAT_KAFKA_CONTROLLER_PORT", c.KafkaPort, c.KafkaControllerPort)
		},
		prepare:  k.prepare,
		argv:     func() []string { return kafkaArgv(c.KafkaLibs(), k.logs, k.log4j, k.cfg, kafkaHeap) },
		answers:  k.answers,
		ready:    func() bool { return k.startedLogged() && k.answers() },
		failLogs: []string{k.serverLog, filepath.Join(k.logs, "kafka.out")},
		describe: func() string {
			return fmt.Sprintf("on %s (controller %s), Kafka %s", addr(c.KafkaPort), addr(c.KafkaControllerPort), c.KafkaVersion)
		},
		afterFailure: func() { c.kafkaErrors(k.serverLog, k.logOffset) },
	}
	if c.KafkaSASL {
		d.startedMessage = func() string {
			return fmt.Sprintf("SASL/SCRAM on: credentials in %s (%s.auth: super user, %s.auth: zkchat's principal; grant its ACLs with zkchat kafka-acls)",
				k.saslDir, c.KafkaAdminUser, c.KafkaSASLUser)
		}
	}
	return d
}

// kafkaNode is the single broker's files under DataDir/kafka. logOffset is
// server.log's size when the broker was last started: a "started" line
// before it is an earlier run's.
type kafkaNode struct {
	c                              *Config
	dir, cfg, log4j, dataDir, logs string
	serverLog, saslDir, kcatCfg    string
	logOffset                      int64
}

func (c *Config) kafkaNode() *kafkaNode {
	dir := filepath.Join(c.DataDir, "kafka")
	logs := filepath.Join(dir, "logs")
	saslDir := filepath.Join(dir, "sasl")
	return &kafkaNode{c: c, dir: dir,
		cfg:       filepath.Join(dir, "server.properties"),
		log4j:     filepath.Join(dir, "log4j2.properties"),
		dataDir:   filepath.Join(dir, "data"),
		logs:      logs,
		serverLog: filepath.Join(logs, "server.log"),
		saslDir:   saslDir,
		kcatCfg:   filepath.Join(saslDir, "kcat.conf"), // the admin's client settings; marks SASL mode
	}
}

// answers: the metadata lists broker 1 at our address. With SASL the
// listener accepting connections has to do: Debian's kcat (librdkafka 2.0)
// fails SCRAM against Kafka 4.1.
func (k *kafkaNode) answers() bool {
	if isFile(k.kcatCfg) {
		return PortOpen(k.c.KafkaPort)
	}
	md, err := kafkaMetadata(addr(k.c.KafkaPort))
	return err == nil && strings.Contains(md, "broker 1 at "+addr(k.c.KafkaPort))
}

// startedLogged: "Kafka Server started" in server.log after logOffset.
func (k *kafkaNode) startedLogged() bool {
	f, err := os.Open(k.serverLog)
	if err != nil {
		return false
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() < k.logOffset {
		k.logOffset = 0 // rolled over meanwhile
	}
	_, _ = f.Seek(k.logOffset, 0)
	var b bytes.Buffer
	_, _ = b.ReadFrom(f)
	return bytes.Contains(b.Bytes(), []byte("Kafka Server started"))
}

// prepare fetches the jars, renders the configuration, sets SASL mode up
// and formats the storage on first start.
func (k *kafkaNode) prepare() error {
	c := k.c
	if err := c.FetchKafka(); err != nil {
		return err
	}
	for _, d := range []string{k.dataDir, k.logs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := Render(c.deploy("kafka", "server.properties.tmpl"), k.cfg, map[string]any{
		"KAFKA_PORT": c.KafkaPort, "CONTROLLER_PORT": c.KafkaControllerPort, "LOG_DIRS": k.dataDir}); err != nil {
		return err
	}
	if err := copyFile(c.deploy("kafka", "log4j2.properties"), k.log4j); err != nil {
		return err
	}
	scram, err := k.sasl()
	if err != nil {
		return err
	}
	// KRaft needs formatted storage (meta.properties) before the first start.
	if !isFile(filepath.Join(k.dataDir, "meta.properties")) {
		id, err := c.kafkaClusterID(filepath.Join(k.dir, "cluster.id"), k.logs, k.log4j)
		if err != nil {
			return err
		}
		c.logf("formatting Kafka storage in %s (cluster id %s)…", k.dataDir, id)
		// Static controller.quorum.voters, so no --standalone / --initial-controllers.
		out, err := c.StorageTool(k.logs, k.log4j, append([]string{"format", "-t", id, "-c", k.cfg}, scram...)...)
		if err != nil {
			return fmt.Errorf("formatting Kafka storage failed: %v\n%s", err, out)
		}
		appendFile(filepath.Join(k.logs, "kafka.out"), out)
		if c.KafkaSASL {
			if err := os.WriteFile(filepath.Join(k.saslDir, "formatted"), nil, 0o600); err != nil {
				return err
			}
		}
	}
	k.logOffset = 0
	if st, err := os.Stat(k.serverLog); err == nil {
		k.logOffset = st.Size()
	}
	return nil
}

// sasl sets SASL mode up (or removes its marker without it) and returns the
// storage tool's arguments that create the SCRAM users.
func (k *kafkaNode) sasl() ([]string, error) {
	c := k.c
	if !c.KafkaSASL {
		_ = os.Remove(k.kcatCfg)
		return nil, nil
	}
	if isFile(filepath.Join(k.dataDir, "meta.properties")) && !isFile(filepath.Join(k.saslDir, "formatted")) {
		return nil, fmt.Errorf("ZKCHAT_KAFKA_SASL=1 needs storage formatted with SCRAM users; %s was formatted without (use another ZKCHAT_DATA_DIR)", k.dataDir)
	}
	adminPW, err := saslPassword(k.saslDir, c.KafkaAdminUser)
	if err != nil {
		return nil, err
	}
	userPW, err := saslPassword(k.saslDir, c.KafkaSASLUser)
	if err != nil {
		return nil, err
	}
	if err := c.kafkaSASLConfig(k.cfg, k.kcatCfg, adminPW); err != nil {
		return nil, err
	}
	return []string{"--add-scram", fmt.Sprintf("SCRAM-SHA-256=[name=%s,password=%s]", c.KafkaAdminUser, adminPW),
		"--add-scram", fmt.Sprintf("SCRAM-SHA-256=[name=%s,password=%s]", c.KafkaSASLUser, userPW)}, nil
}

// kafkaSASLConfig appends SASL mode's broker settings to the rendered
// server.properties (later keys win) and writes kcat's client settings.
func (c *Config) kafkaSASLConfig(cfg, kcatCfg, adminPW string) error {
	props := fmt.Sprintf(`
# ZKCHAT_KAFKA_SASL=1 (internal/servers): SASL/SCRAM and ACLs.
listeners=SASL_PLAINTEXT://%[1]s,CONTROLLER://%[2]s
advertised.listeners=SASL_PLAINTEXT://%[1]s
inter.broker.listener.name=SASL_PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-256
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-256
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="%[3]s" password="%[4]s";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:%[3]s;User:ANONYMOUS
allow.everyone.if.no.acl.found=false
`, addr(c.KafkaPort), addr(c.KafkaControllerPort), c.KafkaAdminUser, adminPW)
	b, err := os.ReadFile(cfg)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(cfg, append(b, props...), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(kcatCfg, fmt.Appendf(nil, "security.protocol=SASL_PLAINTEXT\nsasl.mechanisms=SCRAM-SHA-256\nsasl.username=%s\nsasl.password=%s\n",
		c.KafkaAdminUser, adminPW), 0o600)
}

// kafkaErrors logs the ERROR lines of server.log after offset (plus the
// line after each): the last lines are mostly the shutdown.
func (c *Config) kafkaErrors(serverLog string, offset int64) {
	b, err := os.ReadFile(serverLog)
	if err != nil || int64(len(b)) < offset {
		return
	}
	lines := strings.Split(string(b[offset:]), "\n")
	re := regexp.MustCompile(`^\[[^]]*\] (ERROR|FATAL) `)
	var out []string
	for i, l := range lines {
		if re.MatchString(l) {
			out = append(out, l)
			if i+1 < len(lines) {
				out = append(out, lines[i+1])
			}
		}
	}
	if len(out) > 12 {
		out = out[len(out)-12:]
	}
	if len(out) > 0 {
		c.logf("errors logged during this start:\n%s", strings.Join(out, "\n"))
	}
}

func appendFile(path, text string) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.WriteString(text)
}
