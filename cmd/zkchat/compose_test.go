package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/zkchat/zkchat/internal/servers"
	"github.com/zkchat/zkchat/internal/testenv"
)

// composeService is what TestComposeOutsideContainers reads of a service.
type composeService struct {
	Command     []string
	Environment map[string]string
	Healthcheck struct{ Test []string }
}

// TestComposeOutsideContainers runs docker-compose.yml's stack with the
// containers taken away, as far as this machine (no container engine) can:
//
//   - the zkchat binary is built by the Dockerfile's own build command;
//   - InspIRCd (Debian's, major version 3 as the image) loads the compose
//     file's inspircd.conf, only its two ports moved, and answers on both;
//   - Kafka's storage tool (the image's Kafka version) loads and formats
//     the broker configuration the image makes of the kafka service's
//     KAFKA_* variables;
//   - that binary runs `bridge` with the bridge service's environment (host
//     names mapped to this machine's servers: the InspIRCd above, the test
//     ZooKeeper and Kafka), and the service's healthcheck command, run with
//     the same environment, says ready; SIGTERM (the image's STOPSIGNAL)
//     stops it with exit 0, which Restart=on-failure and Docker's
//     unless-stopped both read as a clean stop.
//
// Not run: the images themselves (Debian bookworm with this binary, the
// zookeeper, apache/kafka and inspircd images), docker's networking and
// volumes.
func TestComposeOutsideContainers(t *testing.T) {
	env := testenv.New(t)
	if testing.Short() {
		t.Skip("builds zkchat and starts InspIRCd")
	}
	var compose struct{ Services map[string]composeService }
	data, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &compose); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	bridgeSvc, kafkaSvc := compose.Services["bridge"], compose.Services["kafka"]
	docker, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()

	bin := imageBinary(t)
	// The runtime stage's ENV lines.
	imageEnv := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^ENV (\w+)=(\S+)$`).FindAllSubmatch(docker, -1) {
		imageEnv[string(m[1])] = string(m[2])
	}

	ircPort, botPort := startComposeInspIRCd(t, dir)
	formatComposeKafka(t, dir, kafkaSvc.Environment)

	// The bridge service: its environment, host names mapped; the image's
	// key folder moved into dir; the nick and channel made unique, and the
	// test's topic prefix added, so that it shares the servers with other
	// tests.
	hosts := strings.NewReplacer("zookeeper:2181", env.ZooKeeper, "kafka:9092", env.Kafka,
		"inspircd:6667", fmt.Sprintf("127.0.0.1:%d", ircPort), "inspircd:6668", fmt.Sprintf("127.0.0.1:%d", botPort))
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	tag := testenv.Tag()
	vars := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	for k, v := range imageEnv {
		if k == "ZKCHAT_KEY_DIR" {
			v = filepath.Join(dir, "keys")
		}
		vars = append(vars, k+"="+v)
	}
	for k, v := range bridgeSvc.Environment {
		switch k {
		case "ZKCHAT_METRICS_ADDR":
			if !strings.HasSuffix(v, ":9464") {
				t.Fatalf("ZKCHAT_METRICS_ADDR %q: the compose file publishes 9464", v)
			}
			v = metricsAddr
		case "ZKCHAT_IRC_NICK":
			v += tag
		case "ZKCHAT_IRC_CHANNEL":
			v += tag
		default:
			v = hosts.Replace(v)
		}
		vars = append(vars, k+"="+v)
	}
	vars = append(vars, "ZKCHAT_TOPIC_PREFIX="+env.Prefix)
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}

	hc := bridgeSvc.Healthcheck.Test
	if len(hc) < 3 || hc[0] != "CMD" || hc[1] != "zkchat" {
		t.Fatalf("bridge healthcheck %v: want [CMD zkchat ...]", hc)
	}
	runUntilReady(t, bin, bridgeSvc.Command, vars, hc[2:], 30*time.Second, nil)
}

// runUntilReady runs bin with args and the environment vars, as a service
// manager would, until check (a zkchat command, run with the same
// environment) prints "ready"; then calls ready, if set, sends SIGTERM and
// wants exit 0 within stop.
func runUntilReady(t *testing.T, bin string, args, vars, check []string, stop time.Duration, ready func()) {
	t.Helper()
	var out testenv.Buffer
	svc := exec.Command(bin, args...)
	svc.Env, svc.Stdout, svc.Stderr = vars, &out, &out
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- svc.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			_ = svc.Process.Kill()
			<-exited
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		c := exec.Command(bin, check...)
		c.Env = vars
		res, err := c.CombinedOutput()
		if err == nil && strings.TrimSpace(string(res)) == "ready" {
			break
		}
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("zkchat %v exited: %v\n%s", args, err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("zkchat %v did not pass within 60 s: %v %s\nzkchat %v:\n%s", check, err, res, args, out.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
	if ready != nil {
		ready()
	}
	if err := svc.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Fatalf("zkchat %v after SIGTERM: %v (want exit 0)\n%s", args, err, out.String())
		}
	case <-time.After(stop):
		t.Fatalf("zkchat %v did not stop within %s of SIGTERM\n%s", args, stop, out.String())
	}
}

var image struct {
	once sync.Once
	bin  string
	err  error
}

// imageBinary is zkchat built by the Dockerfile's build stage: its RUN
// line, run from the repository root (its WORKDIR, after COPY . .), the
// output moved into a folder of the test binary's; built once.
func imageBinary(t *testing.T) string {
	t.Helper()
	image.once.Do(func() {
		docker, err := os.ReadFile("../../Dockerfile")
		if err != nil {
			image.err = err
			return
		}
		build := regexp.MustCompile(`(?m)^RUN (CGO_ENABLED=1 go build .* -o )(\S+)( \./cmd/zkchat)$`).FindSubmatch(docker)
		if build == nil {
			image.err = fmt.Errorf("Dockerfile: no `RUN CGO_ENABLED=1 go build ... -o <file> ./cmd/zkchat` line")
			return
		}
		dir, err := os.MkdirTemp("", "zkchat-image-")
		if err != nil {
			image.err = err
			return
		}
		image.bin = filepath.Join(dir, "zkchat")
		cmd := exec.Command("sh", "-c", string(build[1])+image.bin+string(build[3]))
		cmd.Dir = "../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			image.err = fmt.Errorf("the Dockerfile's build: %v\n%s", err, out)
		}
	})
	if image.err != nil {
		t.Fatal(image.err)
	}
	return image.bin
}

// startComposeInspIRCd starts Debian's InspIRCd on deploy/compose's
// inspircd.conf and motd (copied into dir, the ports 6667 and 6668 moved to
// free ones) and waits until both ports answer a client; it is stopped
// when t ends.
func startComposeInspIRCd(t *testing.T, dir string) (ircPort, botPort int) {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/inspircd"); err != nil {
		t.Fatalf("InspIRCd is not installed (scripts/install-deps.sh irc): %v", err)
	}
	conf, err := os.ReadFile("../../deploy/compose/inspircd.conf")
	if err != nil {
		t.Fatal(err)
	}
	motd, err := os.ReadFile("../../deploy/compose/motd.txt")
	if err != nil {
		t.Fatal(err)
	}
	ircPort, botPort = testenv.FreePort(t), testenv.FreePort(t)
	for botPort == ircPort {
		botPort = testenv.FreePort(t)
	}
	text := string(conf)
	for _, p := range []string{"6667", "6668"} {
		if n := strings.Count(text, `port="`+p+`"`); n != 2 {
			t.Fatalf(`inspircd.conf: port="%s" %d times, want 2 (a bind and a connect class)`, p, n)
		}
	}
	text = strings.NewReplacer(`port="6667"`, fmt.Sprintf(`port="%d"`, ircPort), `port="6668"`, fmt.Sprintf(`port="%d"`, botPort)).Replace(text)
	irc := filepath.Join(dir, "inspircd")
	if err := os.MkdirAll(irc, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(irc, "inspircd.conf")
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(irc, "motd.txt"), motd, 0o644); err != nil {
		t.Fatal(err)
	}
	argv := []string{"--nofork", "--config", cfg}
	if os.Geteuid() == 0 {
		argv = append(argv, "--runasroot")
	}
	var out testenv.Buffer
	cmd := exec.Command("/usr/sbin/inspircd", argv...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = irc, &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for _, p := range []int{ircPort, botPort} {
		for {
			_, err := servers.IRCProbe(p, 10*time.Second)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("InspIRCd on the compose config: port %d: %v\n%s", p, err, out.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return ircPort, botPort
}

// formatComposeKafka turns the kafka service's KAFKA_* variables into the
// broker configuration the apache/kafka image makes of them (KAFKA_ dropped,
// lower case, "_" a dot, "__" an underscore, "___" a dash), and has Kafka's
// storage tool, of the image's Kafka version, load and format it (its log
// directory moved into dir): a setting Kafka cannot use fails here.
func formatComposeKafka(t *testing.T, dir string, vars map[string]string) {
	t.Helper()
	c, err := servers.Load("../..", os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	compose, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`image: apache/kafka:(\S+)`).FindSubmatch(compose); m == nil || string(m[1]) != c.KafkaVersion {
		t.Fatalf("docker-compose.yml's Kafka image %s is not the Kafka this machine runs (%s)", m, c.KafkaVersion)
	}
	if err := c.FetchKafka(); err != nil {
		t.Fatal(err)
	}
	var props []string
	clusterID := vars["CLUSTER_ID"]
	logDirs := filepath.Join(dir, "kafka-data")
	for k, v := range vars {
		if !strings.HasPrefix(k, "KAFKA_") {
			continue
		}
		name := strings.ToLower(strings.TrimPrefix(k, "KAFKA_"))
		name = strings.NewReplacer("___", "-", "__", "_", "_", ".").Replace(name)
		if name == "log.dirs" {
			v = logDirs
		}
		props = append(props, name+"="+v)
	}
	if clusterID == "" || len(props) == 0 {
		t.Fatalf("kafka service: no CLUSTER_ID or no KAFKA_ settings: %v", vars)
	}
	cfg := filepath.Join(dir, "compose-kafka.properties")
	if err := os.WriteFile(cfg, []byte(strings.Join(props, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := c.StorageTool(dir, filepath.Join("..", "..", "deploy", "kafka", "log4j2.properties"),
		"format", "--config", cfg, "--cluster-id", clusterID)
	if err != nil {
		t.Fatalf("Kafka's storage tool on the compose settings: %v\n%s\nsettings:\n%s", err, out, strings.Join(props, "\n"))
	}
	if _, err := os.Stat(filepath.Join(logDirs, "meta.properties")); err != nil {
		t.Fatalf("the storage tool formatted nothing: %v\n%s", err, out)
	}
}

// TestMain removes imageBinary's folder after the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if image.bin != "" {
		_ = os.RemoveAll(filepath.Dir(image.bin))
	}
	os.Exit(code)
}
