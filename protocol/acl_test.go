package protocol

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-zookeeper/zk"
)

func TestAuthHidesPassword(t *testing.T) {
	a, err := ParseAuth("alice:s3cret:with:colons\n")
	if err != nil || a.User != "alice" || a.Password != "s3cret:with:colons" {
		t.Fatalf("ParseAuth: %+v %v", a, err)
	}
	var b strings.Builder
	log := slog.New(slog.NewTextHandler(&b, nil))
	log.Info("x", "auth", a, "deref", *a)
	fmt.Fprintf(&b, "%v %+v %#v %s %v", a, a, a, a, struct{ A *Auth }{a})
	if strings.Contains(b.String(), "s3cret") {
		t.Fatalf("password printed: %s", b.String())
	}
	if want := zk.DigestACL(zk.PermAll, "alice", "s3cret:with:colons")[0].ID; a.ID() != want {
		t.Fatalf("ID %q, want %q", a.ID(), want)
	}
	for _, bad := range []string{"", "alice", ":pw", "alice:", "a b:pw"} {
		if _, err := ParseAuth(bad); err == nil {
			t.Errorf("ParseAuth(%q) accepted", bad)
		} else if bad != "" && strings.Contains(err.Error(), bad) {
			t.Errorf("ParseAuth(%q) quotes its input: %v", bad, err)
		}
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
	t.Setenv(EnvZKAuthFile, "")
	t.Setenv(EnvZKAuth, "bob:pw2")
	if a, err := AuthFromEnv(""); err != nil || a.User != "bob" {
		t.Fatalf("from %s: %v %v", EnvZKAuth, a, err)
	}
	t.Setenv(EnvZKAuth, "")
	if a, err := AuthFromEnv(""); a != nil || err != nil {
		t.Fatalf("nothing configured: %v %v", a, err)
	}
}

func TestRequestIdentity(t *testing.T) {
	admin := (&Auth{User: "zkchat", Password: "a"}).ID()
	alice := (&Auth{User: "alice", Password: "p"}).ID()
	other := (&Auth{User: "alice", Password: "q"}).ID()
	d := func(id string, perms int32) zk.ACL { return zk.ACL{Perms: perms, Scheme: "digest", ID: id} }
	world := zk.ACL{Perms: zk.PermRead, Scheme: "world", ID: "anyone"}
	touched := &zk.Stat{Version: 1}
	for _, c := range []struct {
		name  string
		acl   []zk.ACL
		stat  *zk.Stat
		want  string
		err   error
		never bool // not touched
	}{
		{"own", []zk.ACL{d(alice, zk.PermAll), d(admin, zk.PermAll), world}, touched, alice, nil, false},
		{"admin", []zk.ACL{d(admin, zk.PermAll), world}, touched, "", nil, false},
		{"untouched", []zk.ACL{d(alice, zk.PermAll), d(admin, zk.PermAll)}, &zk.Stat{}, "", nil, true},
		{"acl changed", []zk.ACL{d(alice, zk.PermAll)}, &zk.Stat{Version: 1, Aversion: 1}, "", ErrIdentity, false},
		{"other id", []zk.ACL{d((&Auth{User: "mallory", Password: "m"}).ID(), zk.PermAll)}, touched, "", ErrIdentity, false},
		{"world write", []zk.ACL{d(alice, zk.PermAll), zk.WorldACL(zk.PermAll)[0]}, touched, "", ErrIdentity, false},
		{"two passwords", []zk.ACL{d(alice, zk.PermAll), d(other, zk.PermAll)}, touched, "", ErrIdentity, false},
		{"reader only", []zk.ACL{d(alice, zk.PermAll), d("mallory:x", zk.PermRead)}, touched, alice, nil, false},
	} {
		got, err := RequestIdentity(c.acl, c.stat, "alice", []string{admin})
		switch {
		case c.never:
			if !ErrNotTouched(err) {
				t.Errorf("%s: %q %v, want not touched", c.name, got, err)
			}
		case c.err != nil:
			if !errors.Is(err, c.err) {
				t.Errorf("%s: %q %v, want %v", c.name, got, err, c.err)
			}
		case err != nil || got != c.want:
			t.Errorf("%s: %q %v, want %q", c.name, got, err, c.want)
		}
	}
	if b := Binding([]zk.ACL{d(admin, zk.PermAll), world, d(alice, zk.PermRead)}, "alice"); b != alice {
		t.Errorf("Binding = %q", b)
	}
}
