package reliability

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zkchat/zkchat/internal/testenv"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds cmd/zkchat once per test binary and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "zkchat-reliability-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "zkchat")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/zkchat")
		cmd.Dir = testenv.RepoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/zkchat: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Proc is a zkchat process (bridge, manager, ...) the test runs: its log
// (stderr and stdout) goes to a file of its own that outlives restarts, so
// the oracles can read every line it ever wrote.
type Proc struct {
	t       testing.TB
	Name    string
	Args    []string
	Env     []string
	LogPath string
	// DebugAddr is the --debug-addr the process serves /debug/pprof on
	// (set by StartProc when args ask for one with "--debug-addr=auto").
	DebugAddr string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// StartProc runs the zkchat binary with args (and env added to the
// test's environment); it is killed at cleanup. An argument
// "--debug-addr=auto" is replaced by a free loopback port.
func StartProc(t testing.TB, name string, env []string, args ...string) *Proc {
	t.Helper()
	p := &Proc{t: t, Name: name, Env: env, LogPath: filepath.Join(t.TempDir(), name+".log")}
	for _, a := range args {
		if a == "--debug-addr=auto" {
			p.DebugAddr = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
			a = "--debug-addr=" + p.DebugAddr
		}
		p.Args = append(p.Args, a)
	}
	f, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p.log = f
	t.Cleanup(func() {
		p.Signal(syscall.SIGCONT)
		p.Stop(10 * time.Second)
		f.Close()
		if t.Failed() {
			t.Logf("%s log (%s), last lines:\n%s", name, p.LogPath, tail(p.LogPath, 40))
		}
	})
	p.Start()
	return p
}

// Start starts the process (again).
func (p *Proc) Start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.log, "=== %s start %s\n", time.Now().UTC().Format(time.RFC3339Nano), strings.Join(p.Args, " "))
	cmd := exec.Command(Binary(p.t), p.Args...)
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.Stdout, cmd.Stderr = p.log, p.log
	// If the test binary dies (a -timeout, a kill) its cleanups do not
	// run: the kernel then kills the process instead of leaving it behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done
}

// PID is the running process's id (0 when it is not running).
func (p *Proc) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	select {
	case <-p.done:
		return 0
	default:
		return p.cmd.Process.Pid
	}
}

// Signal sends sig to the process, if it runs.
func (p *Proc) Signal(sig syscall.Signal) {
	if pid := p.PID(); pid != 0 {
		_ = syscall.Kill(pid, sig)
	}
}

// Kill SIGKILLs the process and waits for it to be gone.
func (p *Proc) Kill() {
	p.Signal(syscall.SIGKILL)
	p.wait(10 * time.Second)
}

// Stop sends SIGTERM and waits up to d, then SIGKILL. It reports whether
// the process exited on SIGTERM in time.
func (p *Proc) Stop(d time.Duration) bool {
	p.Signal(syscall.SIGTERM)
	if p.wait(d) {
		return true
	}
	p.Kill()
	return false
}

// Exited reports whether the process has exited (and its exit code).
func (p *Proc) Exited() (bool, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return true, -1
	}
	select {
	case <-p.done:
		return true, p.cmd.ProcessState.ExitCode()
	default:
		return false, 0
	}
}

func (p *Proc) wait(d time.Duration) bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// Log is everything the process has written so far (all runs).
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// QuietLogs waits until none of ps's logs has grown for 500 ms (at most
// 10 s) and returns them. A requester sees its answer as soon as ZooKeeper
// applied the write, before the manager has read the reply and logged it:
// logs read at once after the last request can miss its line.
func QuietLogs(ps ...*Proc) []string {
	read := func() []string {
		out := make([]string, len(ps))
		for i, p := range ps {
			out[i] = p.Log()
		}
		return out
	}
	logs, still := read(), time.Now()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		next := read()
		if !slices.Equal(next, logs) {
			logs, still = next, time.Now()
		} else if time.Since(still) >= 500*time.Millisecond {
			break
		}
	}
	return logs
}

// WaitLog waits until the log matches re (after the first offset bytes)
// and returns the matching line.
func (p *Proc) WaitLog(d time.Duration, offset int, re *regexp.Regexp) (string, bool) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		l := p.Log()
		if offset < len(l) {
			if m := re.FindString(l[offset:]); m != "" {
				return m, true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", false
}

var panicRE = regexp.MustCompile(`(?m)^(panic: |fatal error: |WARNING: DATA RACE|goroutine \d+ \[running\]:)`)

// NoPanic fails t when a log holds a Go panic, fatal error or data race.
func NoPanic(t testing.TB, logs ...string) {
	t.Helper()
	for _, l := range logs {
		if loc := panicRE.FindStringIndex(l); loc != nil {
			end := loc[0] + 2000
			if end > len(l) {
				end = len(l)
			}
			t.Errorf("panic in a log:\n%s", l[loc[0]:end])
		}
	}
}

func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// Health is a process's resource use at one moment.
type Health struct {
	Goroutines int // -1 when unknown
	FDs        int
	RSSKiB     int
}

func (h Health) String() string {
	return fmt.Sprintf("goroutines %d, fds %d, rss %.1f MiB", h.Goroutines, h.FDs, float64(h.RSSKiB)/1024)
}

// HealthOf reads pid's file descriptors and RSS from /proc, and its
// goroutine count from debugAddr's /debug/pprof (when not empty).
func HealthOf(pid int, debugAddr string) (Health, error) {
	h := Health{Goroutines: -1}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return h, err
	}
	h.FDs = len(ents)
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return h, err
	}
	for _, line := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			h.RSSKiB, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	if debugAddr != "" {
		n, err := goroutines(debugAddr)
		if err != nil {
			return h, err
		}
		h.Goroutines = n
	}
	return h, nil
}

func goroutines(addr string) (int, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return 0, err
	}
	// First line: "goroutine profile: total N".
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) == 0 {
		return 0, fmt.Errorf("goroutine profile: %q", line)
	}
	return strconv.Atoi(f[len(f)-1])
}

// Health reads the process's health (t fails when it is not running).
func (p *Proc) Health(t testing.TB) Health {
	t.Helper()
	pid := p.PID()
	if pid == 0 {
		t.Fatalf("%s is not running", p.Name)
	}
	h, err := HealthOf(pid, p.DebugAddr)
	if err != nil {
		t.Fatalf("%s health: %v", p.Name, err)
	}
	return h
}

// Within reports whether h is back to base: each value at most 10 % above
// it, with an absolute slack for small numbers (5 goroutines, 3 fds, 8 MiB
// of RSS: a GC cycle or a reconnect's buffers) stated in doc/reliability.md.
func (h Health) Within(base Health) bool {
	ok := func(v, b, slack int) bool { return v <= b+max(b/10, slack) }
	return (h.Goroutines < 0 || ok(h.Goroutines, base.Goroutines, 5)) &&
		ok(h.FDs, base.FDs, 3) && ok(h.RSSKiB, base.RSSKiB, 8*1024)
}

// BackToBaseline waits up to d for the process's health to come back
// within base (see Within) and fails t when it does not.
func (p *Proc) BackToBaseline(t testing.TB, base Health, d time.Duration) Health {
	t.Helper()
	return backToBaseline(t, p.Name, base, d, 500*time.Millisecond, func() Health { return p.Health(t) })
}

// backToBaseline polls probe every interval until what it measures of the
// process name is within base, or d has passed (then it fails t); it
// returns the last measure.
func backToBaseline[H interface{ Within(H) bool }](t testing.TB, name string, base H, d, every time.Duration, probe func() H) H {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		h := probe()
		if h.Within(base) {
			t.Logf("%s health back to baseline: %v (baseline %v)", name, h, base)
			return h
		}
		if time.Now().After(deadline) {
			t.Errorf("%s health not back to baseline after %v: %v (baseline %v)", name, d, h, base)
			return h
		}
		time.Sleep(every)
	}
}
