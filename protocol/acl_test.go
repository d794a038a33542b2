package protocol

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
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
	for _, bad := range []string{"", "alice", ":pw", "alice:", "a b:pw"} {
		if _, err := ParseAuth(bad); err == nil {
			t.Errorf("ParseAuth(%q) accepted", bad)
		} else if bad != "" && strings.Contains(err.Error(), bad) {
			t.Errorf("ParseAuth(%q) quotes its input: %v", bad, err)
		}
	}
}

type stat struct{ Version, Aversion int32 }

func TestRequestIdentity(t *testing.T) {
	admin := (&Auth{User: "zkchat", Password: "a"}).ID()
	alice := (&Auth{User: "alice", Password: "p"}).ID()
	other := (&Auth{User: "alice", Password: "q"}).ID()
	d := func(id string, perms int32) ACL { return ACL{Perms: perms, Scheme: "digest", ID: id} }
	world := ACL{Perms: PermRead, Scheme: "world", ID: "anyone"}
	touched := stat{Version: 1}
	for _, c := range []struct {
		name  string
		acl   []ACL
		stat  stat
		want  string
		err   error
		never bool // not touched
	}{
		{"own", []ACL{d(alice, PermAll), d(admin, PermAll), world}, touched, alice, nil, false},
		{"admin", []ACL{d(admin, PermAll), world}, touched, "", nil, false},
		{"untouched", []ACL{d(alice, PermAll), d(admin, PermAll)}, stat{}, "", nil, true},
		{"acl changed", []ACL{d(alice, PermAll)}, stat{Version: 1, Aversion: 1}, "", ErrIdentity, false},
		{"other id", []ACL{d((&Auth{User: "mallory", Password: "m"}).ID(), PermAll)}, touched, "", ErrIdentity, false},
		{"world write", []ACL{d(alice, PermAll), WorldACL(PermAll)[0]}, touched, "", ErrIdentity, false},
		{"two passwords", []ACL{d(alice, PermAll), d(other, PermAll)}, touched, "", ErrIdentity, false},
		{"reader only", []ACL{d(alice, PermAll), d("mallory:x", PermRead)}, touched, alice, nil, false},
	} {
		got, err := RequestIdentity(c.acl, c.stat.Version, c.stat.Aversion, "alice", []string{admin})
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
	if b := Binding([]ACL{d(admin, PermAll), world, d(alice, PermRead)}, "alice"); b != alice {
		t.Errorf("Binding = %q", b)
	}
}
