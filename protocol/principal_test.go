package protocol

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestKafkaCredential(t *testing.T) {
	topics := Topics{Prefix: "p-"}
	c := KafkaCredential{User: topics.KafkaUser("alice"), Password: "s3cret", Mechanism: "SCRAM-SHA-256"}
	if c.User != "zkchat-user.p-alice" {
		t.Errorf("KafkaUser = %q", c.User)
	}
	got, err := ParseKafkaCredential(c.Marshal())
	if err != nil || got != c {
		t.Fatalf("round trip: %v %v", got, err)
	}
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("x", "cred", c)
	fmt.Fprintf(&b, "%v %+v %#v %s", c, c, c, c)
	if strings.Contains(b.String(), "s3cret") {
		t.Fatalf("password printed: %s", b.String())
	}
	for _, bad := range []string{``, `s3cret`, `{"user":"zkchat","password":"s3cret","mechanism":"SCRAM-SHA-256"}`,
		`{"user":"zkchat-user.a","password":"","mechanism":"SCRAM-SHA-256"}`,
		`{"user":"zkchat-user.a","password":"s3cret","mechanism":"PLAIN"}`} {
		_, err := ParseKafkaCredential([]byte(bad))
		if !errors.Is(err, ErrBadKafkaCredential) {
			t.Errorf("ParseKafkaCredential(%q) = %v", bad, err)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error quotes the password: %v", err)
		}
	}
	p, _ := NewPaths("/chat")
	if got := p.KafkaCredential("alice"); got != "/chat/registry/alice/kafka" {
		t.Errorf("KafkaCredential = %q", got)
	}
	admin := &Auth{User: "zkchat", Password: "pw"}
	acl := KafkaCredentialACL(admin, "alice:hash")
	if len(acl) != 2 || acl[0] != admin.ACL(PermAll) || acl[1] != (ACL{PermRead, "digest", "alice:hash"}) {
		t.Errorf("KafkaCredentialACL = %v", acl)
	}
	// The binding of the registry node is still found with the
	// credential's ACL layout in mind: no world entry, READ only.
	if Binding(acl, "alice") != "alice:hash" {
		t.Errorf("Binding of the credential ACL")
	}
}
