package protocol

import "fmt"

// MaxIDLen is the longest worker id, in bytes.
const MaxIDLen = 64

// ValidateID reports whether id is a valid worker id: 1 to 64 characters of
// a-z, 0-9, '-' and '_', not starting with '-' or '_'. The id is used as a
// ZooKeeper node name and a Kafka topic name as it is, so this check runs
// before any server call. The error wraps ErrInvalidID.
func ValidateID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty", ErrInvalidID)
	}
	if len(id) > MaxIDLen {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidID, len(id), MaxIDLen)
	}
	if id[0] == '-' || id[0] == '_' {
		return fmt.Errorf("%w: %q starts with %q", ErrInvalidID, id, id[0])
	}
	for i := 0; i < len(id); i++ {
		if !idByte(id[i]) {
			return fmt.Errorf("%w: %q has %q at byte %d (allowed: a-z 0-9 - _)", ErrInvalidID, id, id[i], i)
		}
	}
	return nil
}

func idByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}
