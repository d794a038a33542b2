package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The samples in testdata/ are in the exact format `go test -bench` prints
// (each line made by testing.BenchmarkResult.String, padded as the testing
// package pads names), with the benchmark names and metric units of
// manager/bench_test.go and bridge/bench_test.go, and the two invocations
// per package of `make bench` and `make bench-bridge`. They are parser
// fixtures: the numbers are shaped like the measured ones, not a record of
// a run.

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func parseFile(t *testing.T, name string) *Run {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestParseCore(t *testing.T) {
	r := parseFile(t, "bench-core.txt")
	if r.Failed {
		t.Error("Failed = true, want false")
	}
	if want := []string{"goos: linux", "goarch: amd64", "cpu: AMD EPYC"}; !slices.Equal(r.Env, want) {
		t.Errorf("Env = %q, want %q", r.Env, want)
	}
	if len(r.Packages) != 1 {
		t.Fatalf("%d packages, want 1 (two invocations of one package are one section)", len(r.Packages))
	}
	p := r.Packages[0]
	if p.Path != "github.com/zkchat/zkchat/manager" {
		t.Errorf("Path = %q", p.Path)
	}
	if want := []string{"41.322s", "14.875s"}; !slices.Equal(p.Elapsed, want) {
		t.Errorf("Elapsed = %q, want %q", p.Elapsed, want)
	}
	var names []string
	for _, res := range p.Results {
		names = append(names, res.Name)
		if res.Procs != "2" {
			t.Errorf("%s: Procs = %q, want 2", res.Name, res.Procs)
		}
	}
	want := []string{"ZKCreateDeleteFloor", "ZKRegisterProtocolFloor", "Register", "RegisterParallel",
		"KafkaProduceConsumeFloor", "SendRead", "SendReadSpaced", "SendReadPipelined", "FirstMessage"}
	if !slices.Equal(names, want) {
		t.Errorf("names = %q, want %q", names, want)
	}
	reg := p.Results[2]
	if reg.Iters != "2000" {
		t.Errorf("Register iterations = %q", reg.Iters)
	}
	if want := []Metric{{"2557545", "ns/op"}, {"14.37", "max-ms"}, {"391.0", "ops/s"}, {"2.051", "p50-ms"}, {"9.082", "p99-ms"}}; !slices.Equal(reg.Metrics, want) {
		t.Errorf("Register metrics = %v, want %v", reg.Metrics, want)
	}
	cols := columns(p.Results)
	wantCols := []string{"ns/op", "p50-ms", "p99-ms", "max-ms", "send-p50-ms", "send-p99-ms", "send-max-ms",
		"ack-p50-ms", "ack-p99-ms", "ack-max-ms", "online-p50-ms", "online-p99-ms", "online-max-ms",
		"ops/s", "regs/s", "msgs/s", "users/s"}
	if !slices.Equal(cols, wantCols) {
		t.Errorf("columns = %q,\nwant %q", cols, wantCols)
	}
}

func TestParseBridge(t *testing.T) {
	r := parseFile(t, "bench-bridge.txt")
	if len(r.Packages) != 1 || len(r.Packages[0].Results) != 7 {
		t.Fatalf("packages %d, want 1 with 7 results", len(r.Packages))
	}
	res := r.Packages[0].Results
	if res[2].Name != "BridgeLatency/online=10/rate=100" {
		t.Errorf("sub-benchmark name = %q", res[2].Name)
	}
	for _, x := range res {
		hasNS := slices.ContainsFunc(x.Metrics, func(m Metric) bool { return m.Unit == "ns/op" })
		if hasNS != (x.Name == "BridgeThroughput") {
			t.Errorf("%s: ns/op present = %v (b.ReportMetric(0, \"ns/op\") omits it)", x.Name, hasNS)
		}
	}
	mem := res[6]
	if mem.Name != "BridgeMemory" || mem.Iters != "1" || len(mem.Metrics) != 22 {
		t.Errorf("BridgeMemory = %+v", mem)
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./internal/benchtab -update writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (go test ./internal/benchtab -update rewrites it):\n%s", path, got)
	}
}

func TestRenderGolden(t *testing.T) {
	for _, c := range []struct {
		in, out string
		args    []string
	}{
		{"bench-core.txt", "bench-core.golden.md", []string{"-title", "Benchmarks: core", "-cmd", "make bench"}},
		{"bench-bridge.txt", "bench-bridge.golden.md", []string{"-title", "Benchmarks: IRC bridge", "-cmd", "make bench-bridge", "-split",
			"-note", "What each benchmark measures: [scaling.md](scaling.md)."}},
	} {
		t.Run(c.in, func(t *testing.T) {
			var out bytes.Buffer
			args := append(append([]string{"-date", "2026-12-07"}, c.args...), filepath.Join("testdata", c.in))
			if err := run(args, nil, &out); err != nil {
				t.Fatal(err)
			}
			golden(t, c.out, out.Bytes())
		})
	}
}

func TestRenderTable(t *testing.T) {
	r := parseFile(t, "bench-core.txt")
	var out bytes.Buffer
	if err := Render(&out, r, Options{Title: "T", Command: "make bench", Date: "2026-12-07"}); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{
		"Produced by `make bench` on 2026-12-07",
		"goos: linux\ngoarch: amd64\ncpu: AMD EPYC\n",
		"Each floor benchmark (a name containing `Floor`",
		"## github.com/zkchat/zkchat/manager",
		"`go test` took 41.322s + 14.875s",
		"| benchmark | iterations | ns/op | p50-ms | p99-ms | max-ms |",
		"| Register | 2000 | 2557545 | 2.051 | 9.082 | 14.37 | — | — | — |",
		"| FirstMessage | 200 | 43956044 | 43.20 | 62.30 | 70.90 |",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "Not yet generated") {
		t.Error("a page with results says it was not generated")
	}
}

// TestNameThenOutput: without -v, go test prints a benchmark's name before
// running it, so whatever the benchmark writes to stdout or stderr lands
// between the name and its numbers.
func TestNameThenOutput(t *testing.T) {
	in := "pkg: example.com/p\n" +
		"BenchmarkSlow-2   \ttime=2026-12-07T10:00:00Z level=INFO msg=\"became leader\"\n" +
		"time=2026-12-07T10:00:01Z level=INFO msg=\"request answered\"\n" +
		"     100\t   5000 ns/op\t  1.500 p50-ms\n" +
		"BenchmarkFast-2   \t     200\t   10.00 ns/op\n"
	r, err := Parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	res := r.Packages[0].Results
	if len(res) != 2 || res[0].Name != "Slow" || res[0].Iters != "100" || len(res[0].Metrics) != 2 || res[1].Name != "Fast" {
		t.Errorf("results = %+v", res)
	}
}

func TestFailures(t *testing.T) {
	in := "pkg: example.com/p\n" +
		"BenchmarkA-2   \t     100\t   5000 ns/op\n" +
		"--- FAIL: BenchmarkB\n" +
		"    b_test.go:10: servers do not answer\n" +
		"FAIL\n" +
		"exit status 1\n" +
		"FAIL\texample.com/p\t1.234s\n"
	r, err := Parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if !r.Failed {
		t.Fatal("Failed = false")
	}
	if f := r.Packages[0].Failures; len(f) != 2 || f[0] != "BenchmarkB" {
		t.Errorf("Failures = %q", f)
	}
	// -o refuses to replace the page with a failed run's.
	dir := t.TempDir()
	out := filepath.Join(dir, "benchmarks.md")
	if err := os.WriteFile(out, []byte("last good\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	in2 := filepath.Join(dir, "raw.txt")
	if err := os.WriteFile(in2, []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"-o", out, in2}, nil, nil); err == nil || !strings.Contains(err.Error(), "failed") {
		t.Errorf("run -o on a failed run: err = %v, want a failure", err)
	}
	if b, _ := os.ReadFile(out); string(b) != "last good\n" {
		t.Errorf("page replaced by a failed run's: %q", b)
	}
	var page bytes.Buffer // to stdout it still renders, with the failures
	if err := run([]string{"-date", "2026-12-07", in2}, nil, &page); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(page.String(), "**The run reported failures**") || !strings.Contains(page.String(), "- `BenchmarkB`") {
		t.Errorf("page does not list the failures:\n%s", page.String())
	}
}

func TestEmptyInput(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"-cmd", "make bench", "-title", "Benchmarks"}, strings.NewReader("PASS\nok  \texample.com/p\t0.01s\n"), &out); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if !strings.Contains(s, "**Not yet generated on this revision — run `make bench`.**") {
		t.Errorf("empty input: page lacks the label:\n%s", s)
	}
	if strings.Contains(s, "|") {
		t.Errorf("empty input: page has a table:\n%s", s)
	}
	out2 := filepath.Join(t.TempDir(), "b.md")
	if err := run([]string{"-o", out2}, strings.NewReader(""), nil); err == nil {
		t.Error("run -o with no results: no error")
	}
	if _, err := os.Stat(out2); !os.IsNotExist(err) {
		t.Errorf("run -o with no results wrote %s", out2)
	}
}

func TestWriteFile(t *testing.T) {
	out := filepath.Join(t.TempDir(), "benchmarks.md")
	if err := run([]string{"-date", "2026-12-07", "-cmd", "make bench", "-o", out, filepath.Join("testdata", "bench-core.txt")}, nil, nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "(raw `go test` output kept in `testdata/bench-core.txt`)") {
		t.Errorf("page does not name its input:\n%s", b)
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-date", "yesterday"}, {"a", "b"}, {"-nosuch"}} {
		var sink bytes.Buffer
		if err := run(args, strings.NewReader(""), &sink); err == nil {
			t.Errorf("run %q: no error", args)
		}
	}
}

func TestParseNumbers(t *testing.T) {
	for s, ok := range map[string]bool{
		"     100\t   5000 ns/op":         true,
		"       1\t      7030 goroutines": true,
		"     100":                        true,
		"     100\t   5000":               false,
		"abc\t 1 ns/op":                   false,
		"     100\t   x ns/op":            false,
		"  12\t -1 cpu-bench-%":           true,
	} {
		if _, got := parseNumbers(s); got != ok {
			t.Errorf("parseNumbers(%q) ok = %v, want %v", s, got, ok)
		}
	}
}
