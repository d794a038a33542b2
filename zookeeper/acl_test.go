package zookeeper

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/protocol"
)

// TestDigestMatchesZooKeeper: the contract's digest identity is the one
// go-zookeeper (and ZooKeeper) computes.
func TestDigestMatchesZooKeeper(t *testing.T) {
	a := &protocol.Auth{User: "alice", Password: "s3cret:with:colons"}
	if want := zk.DigestACL(zk.PermAll, "alice", "s3cret:with:colons")[0].ID; a.ID() != want {
		t.Fatalf("ID %q, want %q", a.ID(), want)
	}
	for _, p := range []int32{protocol.PermRead, protocol.PermWrite, protocol.PermCreate, protocol.PermDelete, protocol.PermAdmin, protocol.PermAll} {
		if got := ToZK([]protocol.ACL{{Perms: p}})[0].Perms; got != p {
			t.Errorf("perm %d converted to %d", p, got)
		}
	}
	if protocol.PermAll != zk.PermAll || protocol.PermAdmin != zk.PermAdmin || protocol.PermWrite != zk.PermWrite {
		t.Error("permission bits differ from go-zookeeper's")
	}
}

func TestAuthFromFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "auth")
	if err := os.WriteFile(f, []byte("alice:pw\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := AuthFromEnv(f); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("group-readable file accepted: %v", err)
	}
	if err := os.Chmod(f, 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := AuthFromEnv(f)
	if err != nil || a.User != "alice" || a.Password != "pw" {
		t.Fatalf("AuthFromEnv: %v %v", a, err)
	}
	t.Setenv(protocol.EnvZKAuthFile, "")
	t.Setenv(protocol.EnvZKAuth, "bob:pw2")
	if a, err := AuthFromEnv(""); err != nil || a.User != "bob" {
		t.Fatalf("from %s: %v %v", protocol.EnvZKAuth, a, err)
	}
	t.Setenv(protocol.EnvZKAuth, "")
	if a, err := AuthFromEnv(""); a != nil || err != nil {
		t.Fatalf("nothing configured: %v %v", a, err)
	}
}
