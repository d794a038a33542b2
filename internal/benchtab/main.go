// Command benchtab turns the output of `go test -bench` into Markdown
// tables: one section per package, one row per benchmark result, the
// columns iterations, ns/op and then one per other metric the package's
// benchmarks report (b.ReportMetric units such as p50-ms, p99-ms, msgs/s,
// heap-MB). Numbers are copied as `go test` printed them, never recomputed.
//
//	go run ./internal/benchtab < bench-output.txt > doc/benchmarks.md
//	go run ./internal/benchtab -cmd 'make bench' -o doc/benchmarks.md .data/bench-core.txt
//
// With -o the file is written only when the input holds at least one result
// and no failure (a failed run never replaces the last good tables), and
// the exit status is 1 otherwise. Without -o the tables go to stdout
// whatever the input held; an input without results gives a page that
// says so.
//
// Invariants: the output depends only on the input and the flags (-date
// fixes the date), so the same run always gives the same page; each result
// line of the input is one row, in input order (repeated runs of one
// benchmark are separate rows, not averaged).
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Result is one result line of `go test -bench`.
type Result struct {
	Name    string   // without the "Benchmark" prefix and the -GOMAXPROCS suffix
	Procs   string   // the -N suffix, "" if absent
	Iters   string   // b.N as printed
	Metrics []Metric // in the order printed; ns/op included when printed
}

// Metric is one "value unit" pair of a result line.
type Metric struct {
	Value string // as printed, e.g. "2.051"
	Unit  string // e.g. "p50-ms"
}

// Package is the results of one package (a "pkg:" line and what follows).
type Package struct {
	Path     string
	Results  []Result
	Failures []string // "--- FAIL: ..." names and "FAIL pkg" lines
	Elapsed  []string // from each "ok  pkg 12.3s" line
}

// Run is everything read from one input.
type Run struct {
	Env      []string // "goos: linux", "goarch: amd64", "cpu: …", deduplicated, in order
	Packages []*Package
	Failed   bool // a FAIL, panic or build failure anywhere in the input
}

// Results counts the results of all packages.
func (r *Run) Results() int {
	n := 0
	for _, p := range r.Packages {
		n += len(p.Results)
	}
	return n
}

var (
	procsSuffix = regexp.MustCompile(`^(.*)-(\d+)$`)
	okLine      = regexp.MustCompile(`^ok\s+(\S+)\s+(\S+)`)
	failPkgLine = regexp.MustCompile(`^FAIL\s+(\S+)`)
)

// Parse reads `go test -bench` output. Lines it does not know (logs, PASS,
// b.Logf output) are skipped. A result whose name was printed before the
// benchmark ran and whose numbers came on a later line, after the
// benchmark's own output, is joined up again.
func Parse(r io.Reader) (*Run, error) {
	run := &Run{}
	var cur *Package
	pkg := func(path string) *Package {
		for _, p := range run.Packages {
			if p.Path == path {
				return p
			}
		}
		p := &Package{Path: path}
		run.Packages = append(run.Packages, p)
		return p
	}
	current := func() *Package {
		if cur == nil {
			cur = pkg("")
		}
		return cur
	}
	seenEnv := map[string]bool{}
	pending := "" // a benchmark name printed without its numbers yet
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), " \t\r")
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "pkg: "):
			cur = pkg(strings.TrimSpace(strings.TrimPrefix(line, "pkg: ")))
			pending = ""
			continue
		case strings.HasPrefix(line, "goos: "), strings.HasPrefix(line, "goarch: "), strings.HasPrefix(line, "cpu: "):
			if !seenEnv[line] {
				seenEnv[line] = true
				run.Env = append(run.Env, line)
			}
			continue
		case strings.HasPrefix(trimmed, "--- FAIL: "):
			current().Failures = append(current().Failures, strings.TrimPrefix(trimmed, "--- FAIL: "))
			run.Failed = true
			continue
		case strings.HasPrefix(line, "panic: "), strings.HasPrefix(line, "fatal error: "):
			run.Failed = true
			continue
		}
		if m := okLine.FindStringSubmatch(line); m != nil {
			p := pkg(m[1])
			p.Elapsed = append(p.Elapsed, m[2])
			continue
		}
		if m := failPkgLine.FindStringSubmatch(line); m != nil {
			p := pkg(m[1])
			p.Failures = append(p.Failures, line)
			run.Failed = true
			continue
		}
		if line == "FAIL" {
			run.Failed = true
			continue
		}
		if strings.HasPrefix(line, "Benchmark") {
			name, rest, _ := strings.Cut(line, "\t")
			name = strings.TrimSpace(name)
			if strings.ContainsAny(name, " ") {
				// "BenchmarkX-2   some log text": the name, then the
				// benchmark's own output on the same line.
				name, _, _ = strings.Cut(name, " ")
			}
			if res, ok := parseNumbers(rest); ok {
				res.Name, res.Procs = splitName(name)
				current().Results = append(current().Results, res)
				pending = ""
			} else {
				pending = name
			}
			continue
		}
		if pending != "" {
			if res, ok := parseNumbers(trimmed); ok {
				res.Name, res.Procs = splitName(pending)
				current().Results = append(current().Results, res)
				pending = ""
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	// Drop the placeholder package of lines before any "pkg:" line if it
	// got nothing.
	out := run.Packages[:0]
	for _, p := range run.Packages {
		if p.Path != "" || len(p.Results) > 0 || len(p.Failures) > 0 {
			out = append(out, p)
		}
	}
	run.Packages = out
	return run, nil
}

// splitName cuts "BenchmarkSendRead-2" into "SendRead" and "2".
func splitName(s string) (name, procs string) {
	s = strings.TrimPrefix(s, "Benchmark")
	if m := procsSuffix.FindStringSubmatch(s); m != nil {
		return m[1], m[2]
	}
	return s, ""
}

// parseNumbers parses "   2000\t   2557000 ns/op\t 2.051 p50-ms ...": an
// iteration count, then value-unit pairs.
func parseNumbers(s string) (Result, bool) {
	f := strings.Fields(s)
	if len(f) == 0 || len(f)%2 != 1 || !isInt(f[0]) {
		return Result{}, false
	}
	res := Result{Iters: f[0]}
	for i := 1; i+1 < len(f); i += 2 {
		if !isNumber(f[i]) {
			return Result{}, false
		}
		res.Metrics = append(res.Metrics, Metric{Value: f[i], Unit: f[i+1]})
	}
	return res, true
}

func isInt(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

func isNumber(s string) bool {
	s = strings.TrimPrefix(s, "-")
	digits := false
	for _, c := range s {
		switch {
		case c >= '0' && c <= '9':
			digits = true
		case c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-':
		default:
			return false
		}
	}
	return digits || s == "NaN" || s == "Inf"
}

// columns is the metric columns of a set of results: ns/op first, then
// latencies grouped by their prefix (p50, p99, max), then every other unit in
// the order it first appears.
func columns(results []Result) []string {
	var units []string
	seen := map[string]bool{}
	for _, r := range results {
		for _, m := range r.Metrics {
			if !seen[m.Unit] {
				seen[m.Unit] = true
				units = append(units, m.Unit)
			}
		}
	}
	var cols []string
	if seen["ns/op"] {
		cols = append(cols, "ns/op")
	}
	done := map[string]bool{"ns/op": true}
	stats := []string{"p50-ms", "p99-ms", "max-ms"}
	// Latency groups, in the order their first member appears: "" (the
	// operation itself) first, then prefixes such as "send-", "online-".
	var stems []string
	stemSeen := map[string]bool{}
	for _, u := range units {
		for _, st := range stats {
			if stem, ok := strings.CutSuffix(u, st); ok && !stemSeen[stem] {
				stemSeen[stem] = true
				stems = append(stems, stem)
			}
		}
	}
	if stemSeen[""] {
		stems = append([]string{""}, removeString(stems, "")...)
	}
	for _, stem := range stems {
		for _, st := range stats {
			if u := stem + st; seen[u] && !done[u] {
				done[u] = true
				cols = append(cols, u)
			}
		}
	}
	for _, u := range units {
		if !done[u] {
			done[u] = true
			cols = append(cols, u)
		}
	}
	return cols
}

func removeString(ss []string, s string) []string {
	var out []string
	for _, x := range ss {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}

// Options is what the page says besides the tables.
type Options struct {
	Title   string   // the page's heading
	Command string   // the command that produced the input, e.g. "make bench"
	Raw     string   // where the raw output is kept, "" if nowhere
	Date    string   // YYYY-MM-DD
	Notes   []string // extra paragraphs under the header (Markdown)
	Split   bool     // one table per top-level benchmark instead of per package
}

// Render writes the Markdown page.
func Render(w io.Writer, run *Run, o Options) error {
	b := &strings.Builder{}
	fmt.Fprintf(b, "<!-- Generated by internal/benchtab from `go test -bench` output; do not edit. Regenerate with `%s`. -->\n\n", o.Command)
	fmt.Fprintf(b, "# %s\n\n", o.Title)
	if run.Results() == 0 {
		fmt.Fprintf(b, "**Not yet generated on this revision — run `%s`.** ", o.Command)
		b.WriteString("The input held no benchmark results, so there are no numbers here.\n\n")
		for _, n := range o.Notes {
			b.WriteString(n + "\n\n")
		}
		_, err := io.WriteString(w, b.String())
		return err
	}
	fmt.Fprintf(b, "Produced by `%s` on %s", o.Command, o.Date)
	if o.Raw != "" {
		fmt.Fprintf(b, " (raw `go test` output kept in `%s`)", o.Raw)
	}
	b.WriteString(". Every number is copied from that output; nothing here is edited by hand.\n\n")
	if len(run.Env) > 0 {
		b.WriteString("```\n")
		for _, e := range run.Env {
			b.WriteString(e + "\n")
		}
		b.WriteString("```\n\n")
	}
	if hasFloor(run) {
		b.WriteString("Each floor benchmark (a name containing `Floor`: the bare client libraries or the bare IRC server on the same servers) is measured in the same run as the benchmarks it is the floor of, so compare rows of this page with each other, not with another run's.\n\n")
	}
	b.WriteString("Units: `ns/op` is the time per iteration; `-ms` columns are latencies in milliseconds (`p50`, `p99`, `max`; a prefix such as `send-` names the part of the operation measured); `/s` columns are rates; `-%` columns are CPU in percent of one core; `-MB`, `-KB` are sizes. `—`: not reported by that benchmark.\n\n")
	for _, n := range o.Notes {
		b.WriteString(n + "\n\n")
	}
	if run.Failed {
		b.WriteString("**The run reported failures** (listed under their package): its numbers may be incomplete.\n\n")
	}
	for _, p := range run.Packages {
		title := p.Path
		if title == "" {
			title = "(no package line)"
		}
		fmt.Fprintf(b, "## %s\n\n", title)
		if len(p.Elapsed) > 0 {
			fmt.Fprintf(b, "`go test` took %s for this package.\n\n", strings.Join(p.Elapsed, " + "))
		}
		if o.Split {
			for _, g := range groups(p.Results) {
				fmt.Fprintf(b, "### %s\n\n", g[0].top())
				table(b, g)
			}
		} else {
			table(b, p.Results)
		}
		if len(p.Failures) > 0 {
			b.WriteString("Failures:\n\n")
			for _, f := range p.Failures {
				fmt.Fprintf(b, "- `%s`\n", f)
			}
			b.WriteString("\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (r Result) top() string {
	top, _, _ := strings.Cut(r.Name, "/")
	return top
}

// groups splits results by top-level benchmark, in order of first appearance.
func groups(rs []Result) [][]Result {
	var order []string
	by := map[string][]Result{}
	for _, r := range rs {
		if _, ok := by[r.top()]; !ok {
			order = append(order, r.top())
		}
		by[r.top()] = append(by[r.top()], r)
	}
	out := make([][]Result, 0, len(order))
	for _, t := range order {
		out = append(out, by[t])
	}
	return out
}

func hasFloor(run *Run) bool {
	for _, p := range run.Packages {
		for _, r := range p.Results {
			if strings.Contains(r.Name, "Floor") {
				return true
			}
		}
	}
	return false
}

func table(b *strings.Builder, rs []Result) {
	if len(rs) == 0 {
		b.WriteString("No results.\n\n")
		return
	}
	cols := columns(rs)
	b.WriteString("| benchmark | iterations |")
	for _, c := range cols {
		fmt.Fprintf(b, " %s |", c)
	}
	b.WriteString("\n|---|--:|")
	for range cols {
		b.WriteString("--:|")
	}
	b.WriteString("\n")
	for _, r := range rs {
		vals := map[string]string{}
		for _, m := range r.Metrics {
			vals[m.Unit] = m.Value
		}
		fmt.Fprintf(b, "| %s | %s |", escape(r.Name), r.Iters)
		for _, c := range cols {
			v, ok := vals[c]
			if !ok {
				v = "—"
			}
			fmt.Fprintf(b, " %s |", v)
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

// escape keeps a benchmark name from breaking the table.
func escape(s string) string {
	return strings.ReplaceAll(s, "|", `\|`)
}

type notes []string

func (n *notes) String() string     { return strings.Join(*n, "\n") }
func (n *notes) Set(s string) error { *n = append(*n, s); return nil }

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchtab:", err)
		os.Exit(1)
	}
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("benchtab", flag.ContinueOnError)
	var o Options
	var ns notes
	fs.StringVar(&o.Title, "title", "Benchmarks", "the page's heading")
	fs.StringVar(&o.Command, "cmd", "go run ./internal/benchtab", "the command that produced the input, named in the page")
	fs.StringVar(&o.Raw, "raw", "", "where the raw go test output is kept, named in the page (default: the input file)")
	fs.StringVar(&o.Date, "date", time.Now().UTC().Format(time.DateOnly), "the date the page names (YYYY-MM-DD)")
	fs.BoolVar(&o.Split, "split", false, "one table per top-level benchmark instead of one per package")
	fs.Var(&ns, "note", "a paragraph under the header (Markdown); may repeat")
	outPath := fs.String("o", "", "write the page to this file, only if the input holds results and no failure (default: stdout, always)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: benchtab [flags] [go-test-bench-output.txt]   (default: standard input)\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.Notes = ns
	if _, err := time.Parse(time.DateOnly, o.Date); err != nil {
		return fmt.Errorf("-date %q: want YYYY-MM-DD", o.Date)
	}
	in := stdin
	switch fs.NArg() {
	case 0:
	case 1:
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
		if o.Raw == "" {
			o.Raw = fs.Arg(0)
		}
	default:
		return errors.New("at most one input file")
	}
	r, err := Parse(in)
	if err != nil {
		return err
	}
	if *outPath == "" {
		return Render(stdout, r, o)
	}
	switch {
	case r.Results() == 0:
		return fmt.Errorf("no benchmark results in the input; %s left as it was", *outPath)
	case r.Failed:
		return fmt.Errorf("the run failed (FAIL, panic or a failed benchmark in the input); %s left as it was", *outPath)
	}
	tmp, err := os.CreateTemp(filepath.Dir(*outPath), ".benchtab-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := Render(tmp, r, o); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), *outPath)
}
