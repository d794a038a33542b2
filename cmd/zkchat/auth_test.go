package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/manager"
	"github.com/zkchat/zkchat/protocol"
	"github.com/zkchat/zkchat/zookeeper"
)

// TestHelpDocumentsCredentials: `zkchat --help` names every credential
// variable, and no flag takes a secret itself.
func TestHelpDocumentsCredentials(t *testing.T) {
	out, _, code := zc(t, nil, nil, "--help")
	if code != 0 {
		t.Fatalf("--help: code %d", code)
	}
	for _, v := range []string{"ZKCHAT_ZK_AUTH", "ZKCHAT_ZK_AUTH_FILE", "--zk-auth-file", "ZKCHAT_KAFKA_AUTH",
		"ZKCHAT_KAFKA_AUTH_FILE", "--kafka-auth-file", "ZKCHAT_KAFKA_SASL_MECHANISM", "never taken from the command line"} {
		if !strings.Contains(out, v) {
			t.Errorf("--help does not mention %s", v)
		}
	}
	if strings.Contains(out, "--zk-auth ") || strings.Contains(out, "--password") {
		t.Errorf("--help offers a secret as a flag value:\n%s", out)
	}
}

// writeSecret writes a credentials file with mode perm.
func writeSecret(t *testing.T, name, content string, perm os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content+"\n"), perm); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCLIWithZKACLs: the CLI end to end with ZooKeeper ACLs: `init` and the
// manager as zkchat's principal (from a 0600 file), users with their own
// credentials (one from a file, one from ZKCHAT_ZK_AUTH); a group-readable
// credentials file is refused; no output shows a password.
func TestCLIWithZKACLs(t *testing.T) {
	env := testenv.New(t)
	adminPW, alicePW, bobPW := "cli-adm-"+testenv.Tag(), "cli-alice-"+testenv.Tag(), "cli-bob-"+testenv.Tag()
	env.CleanupAuth = "zkchat:" + adminPW
	adminFile := writeSecret(t, "admin", "zkchat:"+adminPW, 0o600)
	aliceFile := writeSecret(t, "alice", "alice:"+alicePW, 0o600)
	loose := writeSecret(t, "loose", "alice:"+alicePW, 0o644)
	var all strings.Builder
	check := func(what string, code, want int, outs ...string) {
		t.Helper()
		for _, o := range outs {
			all.WriteString(o)
		}
		if code != want {
			t.Fatalf("%s: exit %d, want %d; output %q", what, code, want, outs)
		}
	}
	out, errOut, code := zc(t, env, nil, "--zk-auth-file", adminFile, "init")
	check("init", code, 0, out, errOut)
	startManagerAuth(t, env, adminFile)

	out, errOut, code = zc(t, env, nil, "--zk-auth-file", loose, "register", "alice")
	check("group-readable file", code, 2, out, errOut)
	if !strings.Contains(errOut, "chmod 600") {
		t.Errorf("loose file: %q", errOut)
	}
	out, errOut, code = zc(t, env, nil, "--zk-auth-file", aliceFile, "register", "alice")
	check("register alice", code, 0, out, errOut)
	t.Setenv("ZKCHAT_ZK_AUTH", "bob:"+bobPW)
	out, errOut, code = zc(t, env, nil, "register", "bob")
	check("register bob", code, 0, out, errOut)
	// bob's credentials cannot register carol.
	out, errOut, code = zc(t, env, nil, "--timeout", "5s", "register", "carol")
	check("register carol as bob", code, 1, out, errOut)
	// No credentials at all: refused before anything is written.
	t.Setenv("ZKCHAT_ZK_AUTH", "")
	out, errOut, code = zc(t, env, nil, "register", "dave")
	check("register without credentials", code, 1, out, errOut)
	if !strings.Contains(errOut, "ZKCHAT_ZK_AUTH") {
		t.Errorf("no credentials: %q", errOut)
	}
	out, errOut, code = zc(t, env, nil, "users")
	check("users", code, 0, out, errOut)
	if out != "alice\nbob\n" {
		t.Errorf("users: %q", out)
	}
	for _, pw := range []string{adminPW, alicePW, bobPW} {
		if strings.Contains(all.String(), pw) {
			t.Errorf("a password appears in zkchat's output")
		}
	}
}

// startManagerAuth runs a leading manager authenticated with the
// credentials in file.
func startManagerAuth(t *testing.T, env *testenv.Env, file string) {
	t.Helper()
	auth, err := zookeeper.AuthFromEnv(file)
	if err != nil {
		t.Fatal(err)
	}
	m, err := manager.New(manager.Config{ZooKeeper: env.ZooKeeper, Kafka: env.Kafka, ZKAuth: auth,
		Topics: protocol.Topics{Prefix: env.Prefix}, Logger: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; m.Close() })
	deadline := time.Now().Add(15 * time.Second)
	for !m.Leading() {
		if time.Now().After(deadline) {
			t.Fatal("manager did not lead")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
