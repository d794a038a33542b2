package main

import (
	"errors"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/zkchat/zkchat/bridge"
	"github.com/zkchat/zkchat/internal/metrics"
	"github.com/zkchat/zkchat/internal/secret"
	"github.com/zkchat/zkchat/kafka"
	"github.com/zkchat/zkchat/manager"
	"github.com/zkchat/zkchat/protocol"
)

// The bot's passwords come from these environment variables, or from the
// files the --*-password-file flags (or $<name>_FILE) name; never from the
// command line, which other users of the machine can read.
const (
	envIRCPassword  = "ZKCHAT_IRC_PASSWORD"
	envSASLPassword = "ZKCHAT_SASL_PASSWORD"
)

// secretOf is the secret in the file the flag names, else in the
// environment variable env, else "".
func secretOf(c *cli.Context, flag, env string) (string, error) {
	if f := c.String(flag); f != "" {
		v, err := secret.ReadFile(f)
		if err != nil {
			return "", usagef("--%s: %w", flag, err)
		}
		return v, nil
	}
	return os.Getenv(env), nil
}

func bridgeCommand() *cli.Command {
	return &cli.Command{
		Name:  "bridge",
		Usage: "run the IRC bridge (with a built-in manager) until SIGINT/SIGTERM",
		Description: "The bot joins --channel. A registered nick in the channel is online; private\n" +
			"messages to the bot are commands: help, register, quit, who, users,\n" +
			"msg <nick> <text> (or <nick>: <text>). Messages to a user arrive as private\n" +
			"messages from the bot, or, from a user online through the CLI or another\n" +
			"network (a puppet: a nick of its own, one connection each, --puppets), from\n" +
			"that user's nick, which IRC users /msg directly. Give the bot a connect class\n" +
			"without flood limits and use --rate -1, or keep the default pacing (20 lines/s,\n" +
			"bursts of 40).\n" +
			"A nick registered while logged in to a services account (IRCv3 accounts) is bound\n" +
			"to it; other nicks are not protected: whoever holds one is that user.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "irc-server", EnvVars: []string{"ZKCHAT_IRC_SERVER"}, Value: "127.0.0.1:6667",
				Usage: "IRC server `HOST:PORT`"},
			&cli.BoolFlag{Name: "irc-tls", EnvVars: []string{"ZKCHAT_IRC_TLS"}, Usage: "connect with TLS"},
			&cli.StringFlag{Name: "irc-password-file", EnvVars: []string{"ZKCHAT_IRC_PASSWORD_FILE"}, TakesFile: true,
				Usage: "`FILE` holding the server password (PASS); or the password itself in $" + envIRCPassword},
			&cli.StringFlag{Name: "sasl-user", EnvVars: []string{"ZKCHAT_SASL_USER"}, Usage: "SASL PLAIN account of the bot"},
			&cli.StringFlag{Name: "sasl-password-file", EnvVars: []string{"ZKCHAT_SASL_PASSWORD_FILE"}, TakesFile: true,
				Usage: "`FILE` holding the SASL PLAIN password of the bot; or the password itself in $" + envSASLPassword},
			&cli.StringFlag{Name: "nick", EnvVars: []string{"ZKCHAT_IRC_NICK"}, Value: "zkchat", Usage: "the bot's nick"},
			&cli.StringFlag{Name: "channel", EnvVars: []string{"ZKCHAT_IRC_CHANNEL"}, Value: "#chatroom", Usage: "the channel the bot serves"},
			&cli.StringFlag{Name: "format", EnvVars: []string{"ZKCHAT_IRC_FORMAT"}, Value: "<%s> %s",
				Usage: "delivered message format: sender nick, text"},
			&cli.StringFlag{Name: "unverified-mark", EnvVars: []string{"ZKCHAT_IRC_UNVERIFIED_MARK"}, Value: "?",
				Usage: "follows the sender's nick on a message whose signature does not check out (\"<bob?> hi\")"},
			&cli.Float64Flag{Name: "rate", EnvVars: []string{"ZKCHAT_IRC_RATE"}, Value: 20,
				Usage: "most lines a second the bot writes (-1: no pacing, for an exempt connect class)"},
			&cli.IntFlag{Name: "burst", EnvVars: []string{"ZKCHAT_IRC_BURST"}, Value: 40, Usage: "lines the bot may write at once"},
			&cli.DurationFlag{Name: "split-grace", EnvVars: []string{"ZKCHAT_IRC_SPLIT_GRACE"}, Value: time.Minute,
				Usage: "how long users who left in a netsplit stay online"},
			&cli.BoolFlag{Name: "shared-channel", EnvVars: []string{"ZKCHAT_IRC_SHARED_CHANNEL"},
				Usage: "share --channel with the other bridges that serve it with this flag (each its own --nick): " +
					"each user is served by one of the live bridges, and a bridge's users move to the others when it stops or dies"},
			&cli.StringFlag{Name: "bridge-id", EnvVars: []string{"ZKCHAT_BRIDGE_ID"},
				Usage: "with --shared-channel: the bridge's `ID` among them, unique (default: the id of --nick)"},
			&cli.BoolFlag{Name: "puppets", EnvVars: []string{"ZKCHAT_IRC_PUPPETS"}, Value: true,
				Usage: "show users online through the CLI or another network as IRC nicks of their own (one connection each; off with --shared-channel)"},
			&cli.IntFlag{Name: "max-puppets", EnvVars: []string{"ZKCHAT_IRC_MAX_PUPPETS"}, Value: 100,
				Usage: "most puppets at once; the other users are reachable through the bot"},
			&cli.BoolFlag{Name: "no-manager", EnvVars: []string{"ZKCHAT_NO_MANAGER"}, Usage: "do not run the built-in manager"},
			&cli.IntFlag{Name: "replication-factor", Value: 1, EnvVars: []string{"ZKCHAT_REPLICATION_FACTOR"},
				Usage: "replication factor of new user topics (built-in manager)"},
			&cli.StringFlag{Name: "name", EnvVars: []string{"ZKCHAT_MANAGER_NAME"}, Usage: "the built-in manager's name in logs (default host:pid)"},
			debugFlag, metricsFlag(),
		},
		Before: func(c *cli.Context) error { return applyConfig(c, "bridge") },
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usagef("bridge: takes no arguments")
			}
			log, err := logger(c, slog.LevelInfo)
			if err != nil {
				return err
			}
			za, err := zkAuth(c)
			if err != nil {
				return err
			}
			ka, err := kafkaAuth(c)
			if err != nil {
				return err
			}
			ircPass, err := secretOf(c, "irc-password-file", envIRCPassword)
			if err != nil {
				return err
			}
			saslPass, err := secretOf(c, "sasl-password-file", envSASLPassword)
			if err != nil {
				return err
			}
			// Before anything is started: a --debug-addr that cannot be bound
			// returned after the built-in manager's goroutine had started, so
			// m.Close ran under a Run nobody stopped or waited for.
			stopDebug, err := serveDebug(c.Context, c.String("debug-addr"), log)
			if err != nil {
				return err
			}
			defer stopDebug()
			k, err := kafka.New(kafka.Config{
				Brokers: c.String("kafka"), Topics: protocol.Topics{Prefix: c.String("topic-prefix")}, Logger: log,
				Auth: ka,
			})
			if err != nil {
				return err
			}
			defer k.Close()
			keyDir, err := keyDirOf(c)
			if err != nil {
				return err
			}
			b, err := bridge.New(bridge.Config{
				Server: c.String("irc-server"), TLS: c.Bool("irc-tls"), Password: ircPass,
				SASLUser: c.String("sasl-user"), SASLPass: saslPass,
				Nick: c.String("nick"), Channel: c.String("channel"), Format: c.String("format"),
				Rate: c.Float64("rate"), Burst: c.Int("burst"), SplitGrace: c.Duration("split-grace"),
				ZooKeeper: c.String("zookeeper"), Kafka: k,
				SessionTimeout: c.Duration("session-timeout"), RequestTimeout: c.Duration("timeout"),
				Logger: log, ZKAuth: za,
				KeyDir: keyDir, UnverifiedMark: c.String("unverified-mark"),
				SharedChannel: c.Bool("shared-channel"), BridgeID: c.String("bridge-id"),
				Puppets: c.Bool("puppets"), MaxPuppets: c.Int("max-puppets"),
			})
			if err != nil {
				return usageError{err}
			}
			var wg sync.WaitGroup
			var mErr error
			var m *manager.Manager
			if !c.Bool("no-manager") {
				m, _, err = newManager(c)
				if err != nil {
					return err
				}
				defer m.Close()
			}
			stopOps, err := serveOps(c, log, func(s *metrics.Server) {
				s.AddBridge(b)
				if m != nil {
					s.AddManager(m)
				}
			})
			if err != nil {
				return err
			}
			defer stopOps()
			if m != nil {
				wg.Add(1)
				go func() { defer wg.Done(); mErr = m.Run(c.Context) }()
			}
			log.Info("bridge starting", "irc", c.String("irc-server"), "channel", c.String("channel"),
				"zookeeper", c.String("zookeeper"), "kafka", c.String("kafka"), "shared_channel", c.Bool("shared-channel"))
			bErr := b.Run(c.Context)
			wg.Wait()
			log.Info("bridge stopped")
			return errors.Join(bErr, mErr)
		},
	}
}
