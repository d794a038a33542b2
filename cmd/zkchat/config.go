package main

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/urfave/cli/v2"
)

// The config file (--config, $ZKCHAT_CONFIG) of the long-running roles: TOML
// whose top-level keys are the global options and whose [manager] and
// [bridge] tables are those commands' options, each key an option's long
// name ("irc-server", "replication-factor"). An option given on the
// command line or in its environment variable wins over the file, which
// wins over the default. A key that is no option of its table, a value of
// the wrong type, or bad TOML is an error naming the file, the line and the
// key; nothing is started. Secrets stay out of it: only the *-password-file
// options name where they are. deploy/zkchat.toml is a commented example.

// configFlag is the global --config.
// A new one for each app (see metricsFlag).
func configFlag() *cli.StringFlag {
	return &cli.StringFlag{Name: "config", EnvVars: []string{"ZKCHAT_CONFIG"}, TakesFile: true,
		Usage: "`FILE` of settings for manager and bridge (TOML: global options at the top, [manager] and [bridge] tables; see deploy/zkchat.toml)"}
}

// configTables are the commands a config file may configure.
var configTables = []string{"manager", "bridge"}

// errConfig is wrapped by every config file error.
var errConfig = errors.New("config")

// configValues reads a config file: the value of each option, as a flag
// would take it, by table ("" for the global options). known lists each
// table's options (long names).
func configValues(path string, data []byte, known map[string][]string) (map[string]map[string]string, error) {
	var raw map[string]any
	_, err := toml.Decode(string(data), &raw)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return nil, fmt.Errorf("%w %s:%d: %s", errConfig, path, perr.Position.Line, perr.Message)
		}
		return nil, fmt.Errorf("%w %s: %v", errConfig, path, err)
	}
	lines := keyLines(string(data))
	out := map[string]map[string]string{}
	where := func(table, key string) string {
		full := key
		if table != "" {
			full = table + "." + key
		}
		return fmt.Sprintf("%s:%d: %s", path, lines[full], full)
	}
	var walk func(table string, m map[string]any) error
	walk = func(table string, m map[string]any) error {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v := m[k]
			if sub, ok := v.(map[string]any); ok {
				if table != "" || !slices.Contains(configTables, k) {
					return fmt.Errorf("%w %s: unknown table (the tables are %s)", errConfig, where(table, k), strings.Join(configTables, ", "))
				}
				if err := walk(k, sub); err != nil {
					return err
				}
				continue
			}
			if !slices.Contains(known[table], k) {
				what := "a global option"
				if table != "" {
					what = "an option of zkchat " + table
				}
				return fmt.Errorf("%w %s: unknown key: not %s", errConfig, where(table, k), what)
			}
			s, err := flagValue(v)
			if err != nil {
				return fmt.Errorf("%w %s: %v", errConfig, where(table, k), err)
			}
			if out[table] == nil {
				out[table] = map[string]string{}
			}
			out[table][k] = s
		}
		return nil
	}
	if err := walk("", raw); err != nil {
		return nil, err
	}
	return out, nil
}

// flagValue is a TOML value as a flag's text.
func flagValue(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case time.Duration:
		return x.String(), nil
	}
	return "", fmt.Errorf("a %T is no option's value (write a string, a number or true/false)", v)
}

var (
	tableLine = regexp.MustCompile(`^\s*\[\s*([A-Za-z0-9_-]+)\s*\]`)
	keyLine   = regexp.MustCompile(`^\s*"?([A-Za-z0-9_-]+)"?\s*=`)
)

// keyLines maps each "key" and "table.key" of a flat config file to its
// line (TOML's decoder keeps no positions for keys).
func keyLines(text string) map[string]int {
	lines := map[string]int{}
	table := ""
	for i, l := range strings.Split(text, "\n") {
		if m := tableLine.FindStringSubmatch(l); m != nil {
			table = m[1]
			lines[table] = i + 1
			continue
		}
		if m := keyLine.FindStringSubmatch(l); m != nil {
			key := m[1]
			if table != "" {
				key = table + "." + key
			}
			if _, seen := lines[key]; !seen {
				lines[key] = i + 1
			}
		}
	}
	return lines
}

// flagNames are the long names of flags.
func flagNames(flags []cli.Flag) []string {
	var names []string
	for _, f := range flags {
		names = append(names, f.Names()[0])
	}
	return names
}

// knownOptions: each config table's options.
func knownOptions() map[string][]string {
	var global []string
	for _, n := range flagNames(globalFlags()) {
		if n != "config" { // a config file names no other
			global = append(global, n)
		}
	}
	known := map[string][]string{"": global}
	for _, c := range []*cli.Command{managerCommand(), bridgeCommand()} {
		known[c.Name] = flagNames(c.Flags)
	}
	return known
}

// applyConfig sets, from --config's file, every option of the global table
// and of command's table that neither the command line nor the environment
// set. A command's Before calls it.
func applyConfig(c *cli.Context, command string) error {
	path := c.String("config")
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return usageError{fmt.Errorf("%w: %w", errConfig, err)}
	}
	values, err := configValues(path, data, knownOptions())
	if err != nil {
		return usageError{err}
	}
	lines := keyLines(string(data))
	for _, table := range []string{"", command} {
		names := make([]string, 0, len(values[table]))
		for k := range values[table] {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, name := range names {
			if c.IsSet(name) {
				continue // the command line or the environment wins
			}
			if err := c.Set(name, values[table][name]); err != nil {
				return usageError{fmt.Errorf("%w %s:%d: %s: %v", errConfig, path, lines[strings.TrimPrefix(table+"."+name, ".")], name, err)}
			}
		}
	}
	return nil
}
