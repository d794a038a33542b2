package protocol

import (
	"go/build"
	"strings"
	"testing"
)

// TestStandardLibraryOnly: the contract imports nothing outside the
// standard library (no client library, no cgo), so anything may import it.
func TestStandardLibraryOnly(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkg.CgoFiles) > 0 {
		t.Errorf("cgo files: %v", pkg.CgoFiles)
	}
	for _, imp := range pkg.Imports {
		if first, _, _ := strings.Cut(imp, "/"); strings.Contains(first, ".") {
			t.Errorf("protocol imports %s: the contract may use the standard library only", imp)
		}
	}
}
