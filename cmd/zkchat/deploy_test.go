package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"

	"github.com/zkchat/zkchat/internal/testenv"
)

// TestSystemdUnits checks deploy/systemd's units: systemd-analyze verify
// (systemd's own parser: unknown keys, bad values, a missing binary) says
// nothing; every ZKCHAT_ variable they set is one the command reads; and
// zkchat accepts their ExecStart's arguments.
func TestSystemdUnits(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		if os.Getenv("ZKCHAT_TEST_STRICT") == "1" {
			t.Fatal("ZKCHAT_TEST_STRICT=1: systemd-analyze is missing (Debian's systemd package)")
		}
		t.Skip("systemd-analyze is missing")
	}
	units, err := filepath.Glob("../../deploy/systemd/*.service")
	if err != nil || len(units) != 2 {
		t.Fatalf("units: %v %v", units, err)
	}
	bin, err := os.Executable() // an executable file where the unit names zkchat's
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, unit := range units {
		data, err := os.ReadFile(unit)
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		copyPath := filepath.Join(dir, filepath.Base(unit))
		if err := os.WriteFile(copyPath, []byte(strings.ReplaceAll(text, "/usr/local/bin/zkchat", bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("systemd-analyze", "verify", "--man=no", copyPath).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("%s: systemd-analyze verify: %v\n%s", unit, err, out)
		}

		var args []string
		var envs []string
		for _, line := range strings.Split(text, "\n") {
			switch {
			case strings.HasPrefix(line, "ExecStart=/usr/local/bin/zkchat "):
				args = strings.Fields(strings.TrimPrefix(line, "ExecStart=/usr/local/bin/zkchat "))
			case strings.HasPrefix(line, "Environment=ZKCHAT_"):
				name, _, _ := strings.Cut(strings.TrimPrefix(line, "Environment="), "=")
				envs = append(envs, name)
			}
		}
		if len(args) == 0 {
			t.Fatalf("%s: no ExecStart of zkchat", unit)
		}
		known := envVars(t, args[0])
		for _, e := range envs {
			if !slices.Contains(known, e) {
				t.Errorf("%s: %s is not read by zkchat %s", unit, e, args[0])
			}
		}
		for i, a := range args {
			args[i] = strings.ReplaceAll(a, "${CREDENTIALS_DIRECTORY}", dir)
		}
		if _, stderr, code := zc(t, nil, nil, append(args, "--help")...); code != 0 {
			t.Errorf("%s: zkchat %s: exit %d: %s", unit, strings.Join(args, " "), code, stderr)
		}
	}
}

// envVars are the environment variables zkchat's command reads: its
// flags' and the global flags'.
func envVars(t *testing.T, command string) []string {
	var flags []cli.Flag
	flags = append(flags, globalFlags()...)
	for _, c := range []*cli.Command{managerCommand(), bridgeCommand()} {
		if c.Name == command {
			flags = append(flags, c.Flags...)
		}
	}
	var names []string
	for _, f := range flags {
		if ev, ok := f.(interface{ GetEnvVars() []string }); ok {
			names = append(names, ev.GetEnvVars()...)
		}
	}
	if len(names) == 0 {
		t.Fatalf("no flags for %s", command)
	}
	return names
}

// TestComposeFile checks docker-compose.yml and the Dockerfile as far as
// this machine can without a container engine: the compose file parses;
// the files it mounts exist; zkchat reads every ZKCHAT_ variable the bridge
// service sets and accepts its command and its healthcheck's; the
// Dockerfile's Go is go.mod's major version, and the package it builds
// exists. (Not run: docker compose config, docker build.)
func TestComposeFile(t *testing.T) {
	data, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Image       string
			Command     []string
			Environment map[string]string
			Volumes     []string
			Healthcheck struct{ Test []string }
		}
	}
	if err := yaml.Unmarshal(data, &compose); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for name, svc := range compose.Services {
		for _, v := range svc.Volumes {
			if src, _, _ := strings.Cut(v, ":"); strings.HasPrefix(src, "./") {
				if _, err := os.Stat(filepath.Join("../..", src)); err != nil {
					t.Errorf("service %s mounts %s: %v", name, src, err)
				}
			}
		}
	}
	bridge, ok := compose.Services["bridge"]
	if !ok || len(bridge.Command) == 0 {
		t.Fatalf("no bridge service with a command: %+v", compose.Services)
	}
	known := envVars(t, bridge.Command[0])
	for e := range bridge.Environment {
		if strings.HasPrefix(e, "ZKCHAT_") && !slices.Contains(known, e) {
			t.Errorf("bridge service: %s is not read by zkchat %s", e, bridge.Command[0])
		}
	}
	if _, stderr, code := zc(t, nil, nil, append(bridge.Command, "--help")...); code != 0 {
		t.Errorf("bridge service command %v: %s", bridge.Command, stderr)
	}
	hc := bridge.Healthcheck.Test
	if len(hc) < 3 || hc[0] != "CMD" || hc[1] != "zkchat" {
		t.Fatalf("bridge healthcheck %v: want [CMD zkchat ...]", hc)
	}
	if _, stderr, code := zc(t, nil, nil, append(hc[2:], "--help")...); code != 0 {
		t.Errorf("bridge healthcheck %v: %s", hc, stderr)
	}

	docker, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mod)
	from := regexp.MustCompile(`(?m)^FROM golang:(\d+\.\d+)`).FindSubmatch(docker)
	if goLine == nil || from == nil || string(goLine[1]) != string(from[1]) {
		t.Errorf("Dockerfile builds with Go %s, go.mod says %s", from, goLine)
	}
	pkg := regexp.MustCompile(`go build .* (\./\S+)`).FindSubmatch(docker)
	if pkg == nil {
		t.Fatal("Dockerfile: no go build line")
	}
	if _, err := os.Stat(filepath.Join("../..", string(pkg[1]))); err != nil {
		t.Errorf("Dockerfile builds %s: %v", pkg[1], err)
	}
}

// TestSystemdUnitsRun starts each unit's service the way systemd would,
// except for its sandbox (this machine has no systemd as PID 1): a notify
// socket (Type=notify: READY=1 once ready, STOPPING=1 at SIGTERM), the
// binary the Dockerfile builds, the unit's ExecStart arguments, its
// Environment= lines (%S, the state directory, in a temporary folder
// made as StateDirectory= would), its credentials in CREDENTIALS_DIRECTORY
// (LoadCredential=), and the settings an operator puts in the
// EnvironmentFile (the test's servers). `zkchat healthcheck --ready`, as
// the units' comments suggest, must say ready; SIGTERM (KillSignal=) must
// stop it with exit 0 within TimeoutStopSec, so that Restart=on-failure
// leaves a clean stop alone.
func TestSystemdUnitsRun(t *testing.T) {
	env := testenv.New(t)
	_, bots := testenv.IRC(t)
	bin := imageBinary(t)
	for _, name := range []string{"zkchat-manager.service", "zkchat-bridge.service"} {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("../../deploy/systemd", name))
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			state, creds := filepath.Join(dir, "state"), filepath.Join(dir, "credentials")
			if err := os.MkdirAll(filepath.Join(state, "zkchat"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(creds, 0o700); err != nil {
				t.Fatal(err)
			}
			tag := testenv.Tag()
			// The EnvironmentFile's settings: this test's servers, a nick
			// and a channel of its own.
			vars := []string{"PATH=" + os.Getenv("PATH"), "CREDENTIALS_DIRECTORY=" + creds,
				"ZKCHAT_ZOOKEEPER=" + env.ZooKeeper, "ZKCHAT_KAFKA=" + env.Kafka, "ZKCHAT_TOPIC_PREFIX=" + env.Prefix,
				"ZKCHAT_IRC_SERVER=" + bots, "ZKCHAT_IRC_RATE=-1", "ZKCHAT_IRC_NICK=zs" + tag, "ZKCHAT_IRC_CHANNEL=#s" + tag}
			var args []string
			stop := 90 * time.Second // systemd's default TimeoutStopSec
			metrics := ""
			for _, line := range strings.Split(string(data), "\n") {
				key, val, _ := strings.Cut(line, "=")
				switch key {
				case "Environment":
					k, v, _ := strings.Cut(val, "=")
					v = strings.ReplaceAll(v, "%S", state)
					if k == "ZKCHAT_METRICS_ADDR" {
						metrics = v
						v = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) // the unit's port may be taken here
					}
					vars = append(vars, k+"="+v)
				case "LoadCredential":
					cred, _, _ := strings.Cut(val, ":")
					// The test's IRC server has no password: InspIRCd
					// ignores PASS then.
					if err := os.WriteFile(filepath.Join(creds, cred), []byte("unused\n"), 0o600); err != nil {
						t.Fatal(err)
					}
				case "ExecStart":
					f := strings.Fields(val)
					if len(f) < 2 || f[0] != "/usr/local/bin/zkchat" {
						t.Fatalf("ExecStart=%s: want /usr/local/bin/zkchat <command> ...", val)
					}
					for _, a := range f[1:] {
						args = append(args, strings.ReplaceAll(a, "${CREDENTIALS_DIRECTORY}", creds))
					}
				case "TimeoutStopSec":
					d, err := time.ParseDuration(val + "s")
					if err != nil {
						t.Fatalf("TimeoutStopSec=%s: %v", val, err)
					}
					stop = d
				case "KillSignal":
					if val != "SIGTERM" {
						t.Fatalf("KillSignal=%s: zkchat drains on SIGTERM", val)
					}
				}
			}
			if metrics == "" {
				t.Fatal("the unit sets no ZKCHAT_METRICS_ADDR: nothing to check its health with")
			}
			if !strings.Contains(string(data), "\nType=notify\n") {
				t.Fatal("the unit is not Type=notify: systemd would not wait for zkchat to be ready")
			}
			notify := listenNotify(t)
			vars = append(vars, "NOTIFY_SOCKET="+os.Getenv("NOTIFY_SOCKET"))
			runUntilReady(t, bin, args, vars, []string{"healthcheck", "--ready"}, stop, func() {
				notify.wait(t, "READY=1", 3*notifyEvery)
			})
			notify.wait(t, "STOPPING=1", time.Second) // sent before the exit runUntilReady saw
		})
	}
}
