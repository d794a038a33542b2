package protocol

import (
	"errors"
	"reflect"
	"testing"
)

func TestPaths(t *testing.T) {
	p, err := NewPaths("/chat/x/")
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Enroll("bob"); got != "/chat/x/request/enroll/bob" {
		t.Errorf("Enroll = %q", got)
	}
	if got := p.OnlineNode("bob"); got != "/chat/x/online/bob" {
		t.Errorf("OnlineNode = %q", got)
	}
	want := []string{"/chat", "/chat/x", "/chat/x/request", "/chat/x/request/enroll", "/chat/x/request/quit",
		"/chat/x/registry", "/chat/x/online", "/chat/x/election", "/chat/x/accounts", "/chat/x/bridges"}
	if got := p.Persistent(); !reflect.DeepEqual(got, want) {
		t.Errorf("Persistent = %q, want %q", got, want)
	}
	if got := p.Bridge("zkchat-a"); got != "/chat/x/bridges/zkchat-a" {
		t.Errorf("Bridge = %q", got)
	}
	root, _ := NewPaths("")
	if got := root.Bridges(); got != "/bridges" {
		t.Errorf("Bridges without chroot = %q", got)
	}
	if got := root.PersistentACL(root.Bridges(), &Auth{User: "zkchat", Password: "x"}); len(got) != 2 || got[1] != (ACL{PermRead, "world", "anyone"}) {
		t.Errorf("PersistentACL(/bridges) = %v, want the admin ALL and world READ only", got)
	}
	if got := root.Registered("a"); got != "/registry/a" {
		t.Errorf("Registered without chroot = %q", got)
	}
	if root.Root() != "/" || p.Root() != "/chat/x" {
		t.Errorf("Root = %q, %q", root.Root(), p.Root())
	}
	for _, bad := range []string{"chat", "/a//b", "/a/../b", "/./a"} {
		if _, err := NewPaths(bad); err == nil {
			t.Errorf("NewPaths(%q) accepted", bad)
		}
	}
}

func TestSplitConnect(t *testing.T) {
	for _, tc := range []struct {
		in      string
		servers []string
		chroot  string
		bad     bool
	}{
		{in: "127.0.0.1:2181", servers: []string{"127.0.0.1:2181"}},
		{in: "a:1,b:2, c:3/zkchat", servers: []string{"a:1", "b:2", "c:3"}, chroot: "/zkchat"},
		{in: "a:1/x/y/", servers: []string{"a:1"}, chroot: "/x/y"},
		{in: "", bad: true},
		{in: "/chroot", bad: true},
		{in: "a:1/x/../y", bad: true},
	} {
		s, c, err := SplitConnect(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("SplitConnect(%q) accepted", tc.in)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(s, tc.servers) || c != tc.chroot {
			t.Errorf("SplitConnect(%q) = %q, %q, %v", tc.in, s, c, err)
		}
	}
}

func TestStatus(t *testing.T) {
	for in, want := range map[string]Status{"-1": StatusPending, "0": StatusFailed, "1": StatusDone, "2": StatusAlready, " 1\n": StatusDone} {
		got, err := ParseStatus([]byte(in))
		if err != nil || got != want {
			t.Errorf("ParseStatus(%q) = %v, %v; want %v", in, got, err, want)
		}
		if string(want.Bytes()) != trim(in) {
			t.Errorf("%v.Bytes() = %q", want, want.Bytes())
		}
	}
	for _, in := range []string{"", "3", "-2", "one", "1.0", "\x00", "99999999999999999999999"} {
		if _, err := ParseStatus([]byte(in)); !errors.Is(err, ErrBadRequest) {
			t.Errorf("ParseStatus(%q) = %v, want ErrBadRequest", in, err)
		}
	}
	if !StatusDone.OK() || !StatusAlready.OK() || StatusFailed.OK() || StatusPending.OK() {
		t.Error("OK() wrong")
	}
}

func trim(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[len(s)-1] == '\n') {
		if s[0] == ' ' {
			s = s[1:]
		} else {
			s = s[:len(s)-1]
		}
	}
	return s
}

func TestTopics(t *testing.T) {
	tp := Topics{Prefix: "t1-"}
	if tp.Topic("bob") != "t1-bob" || tp.Group("bob") != "t1-bob" {
		t.Errorf("Topic/Group = %q/%q", tp.Topic("bob"), tp.Group("bob"))
	}
	if id, ok := tp.ID("t1-bob"); !ok || id != "bob" {
		t.Errorf("ID(t1-bob) = %q, %v", id, ok)
	}
	for _, bad := range []string{"bob", "t1-", "t1-Bob", "__consumer_offsets"} {
		if _, ok := tp.ID(bad); ok {
			t.Errorf("ID(%q) accepted", bad)
		}
	}
}

func TestConnectPaths(t *testing.T) {
	p, err := ConnectPaths("a:1,b:2/zk/chat/")
	if err != nil || p.Registry() != "/zk/chat/registry" {
		t.Fatalf("ConnectPaths: %q %v", p.Registry(), err)
	}
	for _, bad := range []string{"", "/chroot", "a:1/bad//x"} {
		if _, err := ConnectPaths(bad); err == nil {
			t.Errorf("ConnectPaths(%q) accepted", bad)
		}
	}
}
