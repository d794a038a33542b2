package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/zkchat/zkchat/internal/servers"
)

// reliability runs the fault suite (doc/reliability.md) on the replicated
// cluster, started here unless it runs: go test ./internal/reliability/,
// one test at a time (faults hit shared servers), no -race (the zkchat
// processes under test are built normally), -v so that every row's
// "ROW | name | numbers |" line is in the output. The output is kept in
// DataDir/reliability.log; when it fails, the end says which tests failed
// and what they themselves logged (their *_test.go lines, without the
// process logs a failing row dumps).
func reliability(cfg *servers.Config, goTestFlags []string) int {
	s := newSession()
	defer s.cleanup()
	cl := cfg.Cluster()
	if err := s.ensureCluster(cl); err != nil {
		fmt.Fprintf(os.Stderr, "devenv: error: %v\n", err)
		return 1
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "devenv: error: %v\n", err)
		return 1
	}
	logPath := filepath.Join(cfg.DataDir, "reliability.log")
	f, err := os.Create(logPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "devenv: error: %v\n", err)
		return 1
	}
	defer f.Close()
	env := append(cl.Env(), "ZKCHAT_RELIABILITY=1", "ZKCHAT_TEST_STRICT=1")
	fmt.Fprintf(os.Stderr, "devenv: fault suite: go test ./internal/reliability/ against %s and %s\n", cl.ZooKeeper(), cl.Kafka())
	argv := append([]string{"go", "test", "-count=1", "-p", "1", "-timeout", "70m", "-v"}, goTestFlags...)
	argv = append(argv, "./internal/reliability/")
	rc := s.runChildTo(argv, env, io.MultiWriter(os.Stdout, f))
	if rc != 0 {
		fmt.Fprintf(os.Stderr, "devenv: fault suite failed (exit %d); full output in %s; the failing tests' own lines:\n", rc, logPath)
		if _, err := f.Seek(0, io.SeekStart); err == nil {
			failSummary(f, os.Stdout)
		}
	}
	return rc
}

var (
	runRe    = regexp.MustCompile(`^ *=== RUN +(\S+)`)
	contRe   = regexp.MustCompile(`^ *=== (CONT|NAME) +(\S+)`)
	ownRe    = regexp.MustCompile(`^ +[A-Za-z0-9_]+_test\.go:[0-9]+: `)
	failedRe = regexp.MustCompile(`^ *--- FAIL: +(\S+)`)
)

// failSummary prints, for each failing test, its last 40 lines from its
// own *_test.go files.
func failSummary(r io.Reader, w io.Writer) {
	lines := map[string][]string{}
	cur := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		l := sc.Text()
		if m := runRe.FindStringSubmatch(l); m != nil {
			cur = m[1]
			lines[cur] = nil
			continue
		}
		if m := contRe.FindStringSubmatch(l); m != nil {
			cur = m[2]
			continue
		}
		if ownRe.MatchString(l) {
			lines[cur] = append(lines[cur], l)
			continue
		}
		if m := failedRe.FindStringSubmatch(l); m != nil {
			fmt.Fprintf(w, "--- FAIL: %s\n", m[1])
			own := lines[m[1]]
			if len(own) > 40 {
				own = own[len(own)-40:]
			}
			if len(own) > 0 {
				fmt.Fprintln(w, strings.Join(own, "\n"))
			}
		}
	}
}
