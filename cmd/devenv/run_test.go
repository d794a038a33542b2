package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunStops runs the README's run command (devenv run: ZooKeeper, Kafka,
// InspIRCd and the bridge, on ports and a data directory of its own) the
// ways people stop it, and checks that nothing it started is left:
//
//   - through a pipe (`devenv run 2>&1 | tee run.log`) and Ctrl-C, which
//     interrupts tee too: the run's next line hit a closed pipe, and it
//     died of SIGPIPE before stopping anything;
//   - SIGHUP (the terminal closed): it died at once, and the servers stayed;
//   - SIGTERM.
//
// Each case starts the servers anew (about 30 s), so it runs with the fault
// suite (make reliability sets ZKCHAT_TEST_RUN_STOP=1), not in make test.
func TestRunStops(t *testing.T) {
	if os.Getenv("ZKCHAT_TEST_RUN_STOP") != "1" {
		t.Skip("starts the whole run three times; set ZKCHAT_TEST_RUN_STOP=1 (make reliability does)")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "devenv")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build devenv: %v\n%s", err, out)
	}
	for i, tc := range []struct {
		name string
		sig  syscall.Signal
		pipe bool // run it as `devenv run 2>&1 | tee`, signal the whole group
	}{
		{"pipe-interrupt", syscall.SIGINT, true},
		{"hangup", syscall.SIGHUP, false},
		{"terminate", syscall.SIGTERM, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := t.TempDir()
			base := 31000 + 100*i
			env := append(os.Environ(),
				"ZKCHAT_DATA_DIR="+data,
				"ZKCHAT_ZK_PORT="+strconv.Itoa(base+81),
				"ZKCHAT_KAFKA_PORT="+strconv.Itoa(base+92),
				"ZKCHAT_KAFKA_CONTROLLER_PORT="+strconv.Itoa(base+93),
				"ZKCHAT_IRC_PORT="+strconv.Itoa(base+67),
				"ZKCHAT_IRC_BRIDGE_PORT="+strconv.Itoa(base+68),
				"ZKCHAT_IRC_NICK=zkrun", "ZKCHAT_IRC_CHANNEL=#runstop",
			)
			// Settings that would point the run elsewhere.
			env = dropEnv(env, "ZKCHAT_ZOOKEEPER", "ZKCHAT_KAFKA", "ZKCHAT_IRC_SERVER", "ZKCHAT_IRC_BRIDGE_SERVER", "ZKCHAT_RUN_DETACH")
			logFile := filepath.Join(data, "run.log")
			var cmd *exec.Cmd
			if tc.pipe {
				cmd = exec.Command("sh", "-c", `"$0" run 2>&1 | tee "$1" >/dev/null`, bin, logFile)
			} else {
				out, err := os.Create(logFile)
				if err != nil {
					t.Fatal(err)
				}
				defer out.Close()
				cmd = exec.Command(bin, "run")
				cmd.Stdout, cmd.Stderr = out, out
			}
			cmd.Dir, cmd.Env = root, env
			// A group of its own, as a terminal's foreground job is: the
			// signal goes to every process of it, tee included.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			ready := time.Now().Add(4 * time.Minute)
			for !bytes.Contains(readFile(logFile), []byte("zkchat is up:")) {
				select {
				case err := <-exited:
					t.Fatalf("the run ended before it was ready (%v):\n%s", err, readFile(logFile))
				case <-time.After(500 * time.Millisecond):
				}
				if time.Now().After(ready) {
					_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
					t.Fatalf("not ready within 4 minutes:\n%s", readFile(logFile))
				}
			}
			pids := runPids(t, data)
			if len(pids) < 4 {
				t.Fatalf("pid files of the run: %v, want ZooKeeper, Kafka, InspIRCd and the bridge", pids)
			}
			if err := syscall.Kill(-cmd.Process.Pid, tc.sig); err != nil {
				t.Fatal(err)
			}
			select {
			case <-exited:
			case <-time.After(2 * time.Minute):
				t.Errorf("the run did not end within 2 minutes of %v", tc.sig)
			}
			// What it started stops within a while of the run's end (the
			// stops are synchronous; this allows for a slow reaper).
			deadline := time.Now().Add(30 * time.Second)
			for name, pid := range pids {
				for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
					time.Sleep(200 * time.Millisecond)
				}
				if syscall.Kill(pid, 0) == nil {
					t.Errorf("%s (pid %d) still runs after %v to the run", name, pid, tc.sig)
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			if t.Failed() {
				t.Logf("the run's output:\n%s", readFile(logFile))
			}
		})
	}
}

func readFile(path string) []byte {
	b, _ := os.ReadFile(path)
	return b
}

// runPids is every process of a pid file under data, by file.
func runPids(t *testing.T, data string) map[string]int {
	pids := map[string]int{}
	err := filepath.WalkDir(data, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".pid") {
			return err
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(readFile(path)))); err == nil && syscall.Kill(pid, 0) == nil {
			rel, _ := filepath.Rel(data, path)
			pids[rel] = pid
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pids
}

func dropEnv(env []string, names ...string) []string {
	var out []string
	for _, kv := range env {
		keep := true
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}
