package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestConfigExample: deploy/zkchat.toml loads, and every key of it is
// taken.
func TestConfigExample(t *testing.T) {
	data, err := os.ReadFile("../../deploy/zkchat.toml")
	if err != nil {
		t.Fatal(err)
	}
	v, err := configValues("zkchat.toml", data, knownOptions())
	if err != nil {
		t.Fatal(err)
	}
	if v[""]["zookeeper"] != "127.0.0.1:2181/zkchat" || v["bridge"]["irc-tls"] != "true" ||
		v["bridge"]["max-puppets"] != "100" || v["manager"]["replication-factor"] != "3" {
		t.Fatalf("values %v", v)
	}
}

// TestConfigErrors: bad TOML, an unknown key or table, a value of no
// option's type: an error naming the file, the line and the key.
func TestConfigErrors(t *testing.T) {
	for _, c := range []struct{ name, text, want string }{
		{"unknown global", "zookeeper = \"x\"\nzookeper = \"y\"\n", "f.toml:2: zookeper: unknown key: not a global option"},
		{"unknown in table", "[bridge]\nnick = \"b\"\nnik = \"a\"\n", "f.toml:3: bridge.nik: unknown key: not an option of zkchat bridge"},
		{"manager option in bridge", "[bridge]\nkafka-user-principals = true\n", "f.toml:2: bridge.kafka-user-principals: unknown key"},
		{"unknown table", "[bot]\nnick = \"b\"\n", "f.toml:1: bot: unknown table"},
		{"bad toml", "[bridge]\nnick = \n", "f.toml:2:"},
		{"list", "kafka = [\"a\", \"b\"]\n", "f.toml:1: kafka: a []interface {} is no option's value"},
		{"config in config", "config = \"other.toml\"\n", "f.toml:1: config: unknown key"},
	} {
		_, err := configValues("f.toml", []byte(c.text), knownOptions())
		if err == nil || !errors.Is(err, errConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

// TestConfigPrecedence: a running command takes the file's values where
// neither the command line nor the environment set the option; a bad file
// is a usage error (exit 2) naming the line.
func TestConfigPrecedence(t *testing.T) {
	for _, e := range []string{"ZKCHAT_ZOOKEEPER", "ZKCHAT_KAFKA", "ZKCHAT_TIMEOUT", "ZKCHAT_LOG_LEVEL", "ZKCHAT_MANAGER_NAME", "ZKCHAT_REPLICATION_FACTOR"} {
		t.Setenv(e, "") // restored at the end
		os.Unsetenv(e)
	}
	dir := t.TempDir()
	path := dir + "/z.toml"
	if err := os.WriteFile(path, []byte("zookeeper = \"127.0.0.1:1/fromfile\"\n[manager]\nname = \"fromfile\"\nnope = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := zc(t, nil, nil, "--config", path, "manager")
	if code != 2 || !strings.Contains(stderr, "z.toml:4: manager.nope: unknown key") {
		t.Fatalf("bad file: exit %d, %q", code, stderr)
	}
	if err := os.WriteFile(path, []byte("zookeeper = \"127.0.0.1:1/fromfile\"\nlog-level = \"bogus\"\n[manager]\nname = \"fromfile\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The file's log-level reaches the command (and is refused there);
	// the command line's wins over it.
	if _, stderr, code := zc(t, nil, nil, "--config", path, "manager"); code != 2 || !strings.Contains(stderr, "bogus") {
		t.Fatalf("file value not applied: exit %d, %q", code, stderr)
	}
	// Precedence, on the manager's own flags: the command line, then the
	// environment, then the file, then the default.
	if err := os.WriteFile(path, []byte("zookeeper = \"zk.file:2181\"\nlog-level = \"debug\"\ntimeout = \"3s\"\n[manager]\nname = \"fromfile\"\nreplication-factor = 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ZKCHAT_LOG_LEVEL", "warn")
	got := map[string]string{}
	probe := managerCommand()
	probe.Action = func(c *cli.Context) error {
		for _, k := range []string{"zookeeper", "log-level", "timeout", "name", "replication-factor", "kafka"} {
			got[k] = fmt.Sprint(c.Value(k))
		}
		return nil
	}
	app := &cli.App{Flags: globalFlags(), Commands: []*cli.Command{probe}}
	if err := app.Run([]string{"zkchat", "--config", path, "manager", "--name", "fromflag"}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"zookeeper": "zk.file:2181", "log-level": "warn", "timeout": "3s",
		"name": "fromflag", "replication-factor": "3", "kafka": "127.0.0.1:9092"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}
