package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestSystemdUnits checks deploy/systemd's units: systemd-analyze verify
// (systemd's own parser: unknown keys, bad values, a missing binary) says
// nothing; every ZKCHAT_ variable they set is one the command reads; and
// zkchat accepts their ExecStart's arguments.
func TestSystemdUnits(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		if os.Getenv("ZKCHAT_TEST_STRICT") == "1" {
			t.Fatal("ZKCHAT_TEST_STRICT=1: systemd-analyze is missing (Debian's systemd package)")
		}
		t.Skip("systemd-analyze is missing")
	}
	units, err := filepath.Glob("../../deploy/systemd/*.service")
	if err != nil || len(units) != 2 {
		t.Fatalf("units: %v %v", units, err)
	}
	bin, err := os.Executable() // an executable file where the unit names zkchat's
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, unit := range units {
		data, err := os.ReadFile(unit)
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		copyPath := filepath.Join(dir, filepath.Base(unit))
		if err := os.WriteFile(copyPath, []byte(strings.ReplaceAll(text, "/usr/local/bin/zkchat", bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("systemd-analyze", "verify", "--man=no", copyPath).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("%s: systemd-analyze verify: %v\n%s", unit, err, out)
		}

		var args []string
		var envs []string
		for _, line := range strings.Split(text, "\n") {
			switch {
			case strings.HasPrefix(line, "ExecStart=/usr/local/bin/zkchat "):
				args = strings.Fields(strings.TrimPrefix(line, "ExecStart=/usr/local/bin/zkchat "))
			case strings.HasPrefix(line, "Environment=ZKCHAT_"):
				name, _, _ := strings.Cut(strings.TrimPrefix(line, "Environment="), "=")
				envs = append(envs, name)
			}
		}
		if len(args) == 0 {
			t.Fatalf("%s: no ExecStart of zkchat", unit)
		}
		known := envVars(t, args[0])
		for _, e := range envs {
			if !slices.Contains(known, e) {
				t.Errorf("%s: %s is not read by zkchat %s", unit, e, args[0])
			}
		}
		for i, a := range args {
			args[i] = strings.ReplaceAll(a, "${CREDENTIALS_DIRECTORY}", dir)
		}
		if _, stderr, code := zc(t, nil, nil, append(args, "--help")...); code != 0 {
			t.Errorf("%s: zkchat %s: exit %d: %s", unit, strings.Join(args, " "), code, stderr)
		}
	}
}

// envVars are the environment variables zkchat's command reads: its
// flags' and the global flags'.
func envVars(t *testing.T, command string) []string {
	var flags []cli.Flag
	flags = append(flags, globalFlags()...)
	for _, c := range []*cli.Command{managerCommand(), bridgeCommand()} {
		if c.Name == command {
			flags = append(flags, c.Flags...)
		}
	}
	var names []string
	for _, f := range flags {
		if ev, ok := f.(interface{ GetEnvVars() []string }); ok {
			names = append(names, ev.GetEnvVars()...)
		}
	}
	if len(names) == 0 {
		t.Fatalf("no flags for %s", command)
	}
	return names
}
