// Package secret reads credentials from files, refusing files that other
// users of the machine may read.
package secret

import (
	"fmt"
	"os"
	"strings"
)

// ReadFile reads a one-line secret file, refusing one that other users may
// read or write (mode bits 077), as ssh refuses a private key.
func ReadFile(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("secret file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("secret file %s: mode %#o lets other users read it; chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("secret file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimRight(line, "\r"), nil
}
