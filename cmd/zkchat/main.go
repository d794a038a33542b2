package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/zkchat/zkchat/protocol"
	"github.com/zkchat/zkchat/zookeeper"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// usageError marks a command line mistake: exit code 2.
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// exitCode prints err as one line and maps it to the exit code.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "zkchat: %s\n", oneLine(err))
	var ue usageError
	if errors.As(err, &ue) || errors.Is(err, protocol.ErrInvalidID) {
		return 2
	}
	return 1
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// run is the whole program; tests call it with their own streams.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	app := &cli.App{
		Name:  "zkchat",
		Usage: "chat over ZooKeeper (who is registered, who is online) and Kafka (one topic per user)",
		Description: "Start the servers and a manager with `make run`, then register users and chat:\n\n" +
			"   zkchat register alice && zkchat register bob\n" +
			"   zkchat read bob --follow   # in one terminal: bob is online, prints what he gets\n" +
			"   zkchat chat alice          # in another; type `bob: hello`\n\n" +
			"Every failure prints one line on stderr. Exit codes: 0 success, 1 failure, 2 bad usage.\n\n" +
			securityHelp,
		Version:         version(),
		Reader:          stdin,
		Writer:          stdout,
		ErrWriter:       stderr,
		HideHelpCommand: true,
		// Errors are printed once, by main, as one line.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{err}
		},
		Flags: globalFlags(),
		// Bare `zkchat` is a usage error (2), not a success.
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("unknown command %s (see zkchat --help)", c.Args().First())
			}
			return usagef("no command given (see zkchat --help)")
		},
		Commands: []*cli.Command{
			initCommand(), managerCommand(),
			registerCommand(), unregisterCommand(), usersCommand(),
			sendCommand(), readCommand(), chatCommand(), bridgeCommand(),
			kafkaACLsCommand(), statusCommand(), healthcheckCommand(),
		},
	}
	for _, c := range app.Commands {
		// Otherwise a bad command flag prints the whole help before the
		// error; the error names the command.
		c.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
			return usageError{fmt.Errorf("%s: %w (see zkchat %s --help)", c.Name, err, c.Name)}
		}
	}
	err := app.RunContext(ctx, intersperse(app, args))
	// urfave/cli reports these without calling OnUsageError.
	if err != nil && strings.HasPrefix(err.Error(), "No help topic for ") {
		return usagef("unknown command %s (see zkchat --help)", strings.TrimPrefix(err.Error(), "No help topic for "))
	}
	if err != nil {
		for _, p := range []string{"flag provided but not defined", "Required flag", "Required flags", "No help topic", "invalid value"} {
			if strings.HasPrefix(err.Error(), p) {
				return usageError{err}
			}
		}
	}
	return err
}

// version is the module's version and VCS revision from the build info
// (`zkchat --version`).
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, st := range bi.Settings {
		switch st.Key {
		case "vcs.revision":
			v += " " + st.Value[:min(12, len(st.Value))]
		case "vcs.modified":
			if st.Value == "true" {
				v += "+modified"
			}
		}
	}
	return v
}

func init() {
	// A command's help lists its own flags; the global ones, which may come
	// before or after the command, are named there too.
	cli.CommandHelpTemplate += "\nGLOBAL OPTIONS (before or after the command; details in zkchat --help):\n   " +
		strings.Join(globalFlagNames(), ", ") + "\n"
}

func globalFlagNames() []string {
	var names []string
	for _, f := range globalFlags() {
		names = append(names, "--"+f.Names()[0])
	}
	return names
}

func globalFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "zookeeper", Aliases: []string{"z"}, EnvVars: []string{"ZKCHAT_ZOOKEEPER"},
			Value: "127.0.0.1:2181", Usage: "ZooKeeper connection string `HOSTS[/chroot]`"},
		&cli.StringFlag{Name: "kafka", Aliases: []string{"k"}, EnvVars: []string{"ZKCHAT_KAFKA"},
			Value: "127.0.0.1:9092", Usage: "Kafka bootstrap servers `HOSTS`"},
		&cli.StringFlag{Name: "topic-prefix", EnvVars: []string{"ZKCHAT_TOPIC_PREFIX"},
			Usage: "prefix of every user topic and consumer group (to share a Kafka cluster)"},
		&cli.DurationFlag{Name: "timeout", EnvVars: []string{"ZKCHAT_TIMEOUT"}, Value: 15 * time.Second,
			Usage: "how long to wait for the manager to answer a request or create a topic"},
		&cli.DurationFlag{Name: "session-timeout", EnvVars: []string{"ZKCHAT_SESSION_TIMEOUT"},
			Value: zookeeper.DefaultSessionTimeout, Usage: "ZooKeeper session timeout"},
		&cli.StringFlag{Name: "log-level", EnvVars: []string{"ZKCHAT_LOG_LEVEL"},
			Usage: "debug, info, warn or error (default: info for manager and bridge, error otherwise)"},
		&cli.StringFlag{Name: "log-format", EnvVars: []string{"ZKCHAT_LOG_FORMAT"}, Value: "text",
			Usage: "text or json (logs go to stderr)"},
		&cli.StringFlag{Name: "key-dir", EnvVars: []string{"ZKCHAT_KEY_DIR"},
			Usage: "`DIR` of the users' signing keys, <id>.key, made when missing (default: ~/.config/zkchat/keys); \"none\": send unsigned"},
		configFlag(),
	}, authFlags()...)
}

// logger builds the slog logger from the global flags.
func logger(c *cli.Context, def slog.Level) (*slog.Logger, error) {
	level := def
	if s := c.String("log-level"); s != "" {
		if err := level.UnmarshalText([]byte(s)); err != nil {
			return nil, usagef("--log-level %q: want debug, info, warn or error", s)
		}
	}
	opts := &slog.HandlerOptions{Level: level}
	w := c.App.ErrWriter
	switch c.String("log-format") {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usagef("--log-format %q: want text or json", c.String("log-format"))
}

// oneArg returns the single positional argument named name.
func oneArg(c *cli.Context, name string) (string, error) {
	if c.NArg() != 1 {
		return "", usagef("%s: want exactly one %s, got %d arguments (see `zkchat %s --help`)", c.Command.Name, name, c.NArg(), c.Command.Name)
	}
	return c.Args().First(), nil
}
