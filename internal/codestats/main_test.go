package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCollect(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a/a.go", "package a\n\ntype T struct{}\n\nfunc (t *T) Long() {\n\t_ = 1\n\t_ = 2\n}\n\nfunc short() {}\n")
	write("a/a_test.go", "package a\n\nfunc x() {}\n")
	write("s/run.sh", "#!/bin/sh\necho hi\n")
	write(".git/x.go", "package x\n")
	s, err := collect(dir)
	if err != nil {
		t.Fatal(err)
	}
	if p := s.pkgs["a"]; p == nil || p.code != 10 || p.test != 3 {
		t.Fatalf("lines of a: %+v", p)
	}
	if len(s.pkgs) != 1 {
		t.Errorf("packages: %v", s.pkgs)
	}
	var b strings.Builder
	s.write(&b, 1)
	for _, want := range []string{"| a | 10 | 3 |", "| a T.Long | 4 |", "shell: 2 lines in 1 files"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, b.String())
		}
	}
}
