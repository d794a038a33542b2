package protocol

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

func TestValidateID(t *testing.T) {
	good := []string{"a", "alice", "bob-2", "x_y", "0", "9lives", strings.Repeat("a", 64)}
	bad := []string{"", strings.Repeat("a", 65), "/", "a/b", "..", ".", "Alice", "al ice", " alice",
		"-a", "_a", "é", "ali\x00ce", "a\nb", "a.b", "a:b", "日本", "a@b", "ǅ"}
	for _, id := range good {
		if err := ValidateID(id); err != nil {
			t.Errorf("ValidateID(%q) = %v, want nil", id, err)
		}
	}
	for _, id := range bad {
		err := ValidateID(id)
		if !errors.Is(err, ErrInvalidID) {
			t.Errorf("ValidateID(%q) = %v, want ErrInvalidID", id, err)
		}
	}
}

var idRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// FuzzValidateID checks ValidateID against the spec's rule written as a
// regular expression, and that an accepted id is safe as a ZooKeeper node
// name and a Kafka topic name.
func FuzzValidateID(f *testing.F) {
	for _, s := range []string{"", "a", "alice", "-a", "_a", "a/b", "..", "A", "é", strings.Repeat("z", 64), strings.Repeat("z", 65), "a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		err := ValidateID(id)
		if (err == nil) != idRE.MatchString(id) {
			t.Fatalf("ValidateID(%q) = %v, regexp says %v", id, err, idRE.MatchString(id))
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidID) {
				t.Fatalf("error %v does not wrap ErrInvalidID", err)
			}
			return
		}
		if strings.ContainsAny(id, "/.\x00 ") {
			t.Fatalf("accepted id %q is not a safe node name", id)
		}
	})
}
