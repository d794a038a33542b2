package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
	"log/slog"

	"github.com/zkchat/zkchat/kafka"
	"github.com/zkchat/zkchat/protocol"
	"github.com/zkchat/zkchat/zookeeper"
)

// Credentials come from the environment or from files the flags name, never
// from a flag's value: the command line is visible to every user of the
// machine (ps, /proc/<pid>/cmdline).
func authFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "zk-auth-file", EnvVars: []string{protocol.EnvZKAuthFile}, TakesFile: true,
			Usage: "`FILE` (mode 0600) holding ZooKeeper digest credentials user:password, for ZooKeeper ACLs; " +
				"or put them in $" + protocol.EnvZKAuth + ". A worker's user is its id; the manager's and bridge's is zkchat's own principal"},
		&cli.StringFlag{Name: "kafka-auth-file", EnvVars: []string{kafka.EnvAuthFile}, TakesFile: true,
			Usage: "`FILE` (mode 0600) holding Kafka SASL credentials user:password; or put them in $" + kafka.EnvAuth +
				" ($" + kafka.EnvSASLMechanism + ", default SCRAM-SHA-256; $" + kafka.EnvSecurityProtocol + ", default SASL_PLAINTEXT)"},
	}
}

// securityHelp is the part of `zkchat --help` about credentials.
const securityHelp = "Security (off unless configured; see the README): ZooKeeper ACLs with the digest scheme take\n" +
	"credentials user:password from $" + protocol.EnvZKAuth + " or the file --zk-auth-file / $" + protocol.EnvZKAuthFile + "\n" +
	"names; Kafka SASL takes them from $" + kafka.EnvAuth + " or --kafka-auth-file / $" + kafka.EnvAuthFile + "; the bridge's\n" +
	"IRC passwords from $" + envIRCPassword + " / $" + envSASLPassword + " or the files --irc-password-file /\n" +
	"--sasl-password-file name. Secrets are never taken from the command line and never logged."

// zkAuth is the ZooKeeper credentials configured, nil for none.
func zkAuth(c *cli.Context) (*protocol.Auth, error) {
	a, err := zookeeper.AuthFromEnv(c.String("zk-auth-file"))
	if err != nil {
		return nil, usageError{err}
	}
	return a, nil
}

// kafkaAuth is the Kafka credentials configured, nil for none.
func kafkaAuth(c *cli.Context) (*kafka.Auth, error) {
	a, err := kafka.AuthFromEnv(c.String("kafka-auth-file"))
	if err != nil {
		return nil, usageError{err}
	}
	return a, nil
}

func kafkaACLsCommand() *cli.Command {
	return &cli.Command{
		Name:  "kafka-acls",
		Usage: "grant zkchat's Kafka principal its ACLs (run with a super user's Kafka credentials)",
		Description: "Creates ALLOW ALL ACLs for --principal on the topics and consumer groups whose names start\n" +
			"with --topic-prefix (PREFIXED; every topic and group with an empty prefix), and on the\n" +
			"shared reader's group. The Kafka credentials (--kafka-auth-file or $" + kafka.EnvAuth + ") must be\n" +
			"a super user's, e.g. the admin.auth file of `ZKCHAT_KAFKA_SASL=1 go run ./cmd/devenv start kafka`.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "principal", Value: "User:zkchat", Usage: "zkchat's Kafka principal"},
			&cli.BoolFlag{Name: "user-principals", Usage: "also ALTER on the cluster, which `zkchat manager " +
				"--kafka-user-principals` needs to make users' SCRAM credentials and ACLs (as strong as a super user: " +
				"grant it to the managers' principal only)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usagef("kafka-acls: takes no arguments")
			}
			if !strings.HasPrefix(c.String("principal"), "User:") {
				return usagef("kafka-acls: --principal %q: want User:<name>", c.String("principal"))
			}
			ka, err := kafkaAuth(c)
			if err != nil {
				return err
			}
			log, err := logger(c, slog.LevelWarn)
			if err != nil {
				return err
			}
			t := protocol.Topics{Prefix: c.String("topic-prefix")}
			admin, err := kafka.NewAdmin(kafka.Config{Brokers: c.String("kafka"), Topics: t, Logger: log, Auth: ka}, "zkchat-acls")
			if err != nil {
				return err
			}
			defer admin.Close()
			if err := admin.GrantACLs(c.Context, c.String("principal"), t); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "granted %s all operations on topics and groups %q*\n", c.String("principal"), t.Prefix)
			if c.Bool("user-principals") {
				p := c.String("principal")
				if err := admin.CreateACLs(c.Context, p, kafka.ProvisionerACLs(p)); err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "granted %s ALTER on the cluster (users' SCRAM credentials and ACLs)\n", p)
			}
			return nil
		},
	}
}
