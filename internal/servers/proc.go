package servers

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// children are the processes this process started: pid -> closed once
// reaped. A child that exited is a zombie until waited for, and kill -0
// still finds a zombie; these are waited for in the background.
var children sync.Map

func command(name string, args ...string) *exec.Cmd { return exec.Command(name, args...) }

// StartProcess runs argv detached in its own session (so its own process
// group, which StopGroup signals as a whole; the terminal's Ctrl-C does not
// reach it), stdin from /dev/null, output appended to logfile, and writes
// its pid to pidfile. env, if not nil, replaces the environment.
func StartProcess(pidfile, logfile string, env []string, argv ...string) (int, error) {
	for _, d := range []string{filepath.Dir(pidfile), filepath.Dir(logfile)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return 0, err
		}
	}
	f, err := os.OpenFile(logfile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fmt.Fprintf(f, "=== %s: starting %s\n", time.Now().Format("2006-01-02 15:04:05"), strings.Join(argv, " "))
	// Through sh, which lifts the open-files limit for the server only (it
	// holds a descriptor per client connection) and execs it: the pid stays.
	cmd := exec.Command("/bin/sh", append([]string{"-c", raiseNofile, "sh"}, argv...)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	pid := cmd.Process.Pid
	done := make(chan struct{})
	children.Store(pid, done)
	go func() {
		_ = cmd.Wait()
		close(done)
		children.CompareAndDelete(pid, done)
	}()
	if err := writeFileAtomic(pidfile, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		return 0, err
	}
	return pid, nil
}

// Alive reports whether pid is a live process (not a zombie).
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if v, ok := children.Load(pid); ok {
		select {
		case <-v.(chan struct{}):
			return false
		default:
			return true
		}
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "pid (comm) S ...": the state follows the last ')'.
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z' && b[i+2] != 'X'
	}
	return true
}

// ReadPid is the pid recorded in pidfile (0 when there is none).
func ReadPid(pidfile string) int {
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// PidRunning returns the pid recorded in pidfile when that process is
// alive and its command line contains pattern ("" matches any): a stale
// pid file whose pid was reused by something else does not count.
func PidRunning(pidfile, pattern string) (int, bool) {
	pid := ReadPid(pidfile)
	if !Alive(pid) {
		return 0, false
	}
	if pattern == "" {
		return pid, true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0, false
	}
	if !strings.Contains(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})), pattern) {
		return 0, false
	}
	return pid, true
}

// StopGroup sends SIGTERM to pid's process group (pid leads it), waits up
// to timeout for pid to exit, then sends SIGKILL. It returns whether it had
// to kill.
func StopGroup(pid int, timeout time.Duration) (killed bool) {
	if err := syscall.Kill(-pid, syscall.SIGTERM); err != nil {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(timeout)
	for Alive(pid) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if Alive(pid) {
		killed = true
		KillGroup(pid)
	}
	// Leftovers in the group (none expected), then the group is gone.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	return killed
}

// KillGroup sends SIGKILL to pid's process group and waits until pid is gone.
func KillGroup(pid int) {
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for Alive(pid) {
		time.Sleep(20 * time.Millisecond)
	}
}

// stopPidfile stops the process of pidfile (when it runs with pattern) and
// removes the pid file, unless another start wrote a new pid meanwhile.
func (c *Config) stopPidfile(pidfile, name, pattern string, timeout time.Duration) {
	pid, ok := PidRunning(pidfile, pattern)
	if !ok {
		_ = os.Remove(pidfile)
		return
	}
	c.logf("stopping %s (pid %d)…", name, pid)
	if StopGroup(pid, timeout) {
		c.logf("%s did not stop within %v, killed it", name, timeout)
	}
	if ReadPid(pidfile) == pid {
		_ = os.Remove(pidfile)
	}
	c.logf("%s stopped", name)
}

// raiseNofile is the sh script StartProcess runs the server with: the
// highest open-files limit allowed (root may raise the hard limit too).
const raiseNofile = `ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"`

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
