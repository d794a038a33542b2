// Command codestats prints the shape of a Go source tree as Markdown: lines
// per package (code and tests), the longest functions, and lines of shell.
// `make stats` runs it on this repository; give it another checkout's path
// to compare.
//
//	go run ./internal/codestats [-top N] [DIR]
package main

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// pkgLines counts the lines of one directory's Go files.
type pkgLines struct{ code, test int }

// fn is one function or method and its length in lines.
type fn struct {
	name  string
	lines int
}

type stats struct {
	pkgs  map[string]*pkgLines
	funcs []fn
	shell map[string]int
}

func main() {
	top := flag.Int("top", 12, "how many of the longest functions to list")
	flag.Parse()
	root := "."
	if flag.NArg() > 0 {
		root = flag.Arg(0)
	}
	s, err := collect(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "codestats:", err)
		os.Exit(1)
	}
	s.write(os.Stdout, *top)
}

// skipDir reports whether a directory holds no project source.
func skipDir(name string) bool {
	return name != "." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor")
}

func collect(root string) (*stats, error) {
	s := &stats{pkgs: map[string]*pkgLines{}, shell: map[string]int{}}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if skipDir(d.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		switch {
		case strings.HasSuffix(path, ".sh"):
			n, err := countLines(path)
			s.shell[rel] = n
			return err
		case !strings.HasSuffix(path, ".go"):
			return nil
		}
		n, err := countLines(path)
		if err != nil {
			return err
		}
		dir := filepath.Dir(rel)
		p := s.pkgs[dir]
		if p == nil {
			p = &pkgLines{}
			s.pkgs[dir] = p
		}
		if strings.HasSuffix(path, "_test.go") {
			p.test += n
			return nil
		}
		p.code += n
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Body != nil {
				lines := fset.Position(fd.End()).Line - fset.Position(fd.Pos()).Line + 1
				s.funcs = append(s.funcs, fn{dir + " " + funcName(fd), lines})
			}
		}
		return nil
	})
	return s, err
}

// funcName is Recv.Name for a method, Name for a function.
func funcName(fd *ast.FuncDecl) string {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return fd.Name.Name
	}
	t := fd.Recv.List[0].Type
	if st, ok := t.(*ast.StarExpr); ok {
		t = st.X
	}
	if ix, ok := t.(*ast.IndexExpr); ok {
		t = ix.X
	}
	if id, ok := t.(*ast.Ident); ok {
		return id.Name + "." + fd.Name.Name
	}
	return fd.Name.Name
}

func countLines(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strings.Count(string(b), "\n"), nil
}

func (s *stats) write(w io.Writer, top int) {
	dirs := make([]string, 0, len(s.pkgs))
	for d := range s.pkgs {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	fmt.Fprintln(w, "| package | code lines | test lines |")
	fmt.Fprintln(w, "|---|---:|---:|")
	var code, test int
	for _, d := range dirs {
		p := s.pkgs[d]
		code, test = code+p.code, test+p.test
		fmt.Fprintf(w, "| %s | %d | %d |\n", d, p.code, p.test)
	}
	fmt.Fprintf(w, "| **total** | %d | %d |\n\n", code, test)

	sort.SliceStable(s.funcs, func(i, j int) bool { return s.funcs[i].lines > s.funcs[j].lines })
	fmt.Fprintln(w, "| longest functions | lines |")
	fmt.Fprintln(w, "|---|---:|")
	for _, f := range s.funcs[:min(top, len(s.funcs))] {
		fmt.Fprintf(w, "| %s | %d |\n", f.name, f.lines)
	}
	var sh int
	for _, n := range s.shell {
		sh += n
	}
	fmt.Fprintf(w, "\nshell: %d lines in %d files\n", sh, len(s.shell))
}
