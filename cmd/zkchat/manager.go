package main

import (
	"fmt"
	"log/slog"

	"github.com/urfave/cli/v2"

	"github.com/zkchat/zkchat/internal/metrics"
	"github.com/zkchat/zkchat/manager"
	"github.com/zkchat/zkchat/protocol"
)

func newManager(c *cli.Context) (*manager.Manager, *slog.Logger, error) {
	log, err := logger(c, slog.LevelInfo)
	if err != nil {
		return nil, nil, err
	}
	za, err := zkAuth(c)
	if err != nil {
		return nil, nil, err
	}
	ka, err := kafkaAuth(c)
	if err != nil {
		return nil, nil, err
	}
	m, err := manager.New(manager.Config{
		ZooKeeper:         c.String("zookeeper"),
		SessionTimeout:    c.Duration("session-timeout"),
		Kafka:             c.String("kafka"),
		Topics:            protocol.Topics{Prefix: c.String("topic-prefix")},
		ReplicationFactor: c.Int("replication-factor"),
		Name:              c.String("name"),
		Logger:            log,
		ZKAuth:            za,
		KafkaAuth:         ka,
		// Only `zkchat manager` has the flag; elsewhere it reads false.
		UserKafkaPrincipals: c.Bool("kafka-user-principals"),
	})
	if err != nil {
		return nil, nil, usageError{err}
	}
	return m, log, nil
}

func initCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "create the zkchat tree in ZooKeeper (idempotent; the manager also does it)",
		Action: func(c *cli.Context) error {
			m, _, err := newManager(c)
			if err != nil {
				return err
			}
			defer m.Close()
			if err := m.CreateZkTreeStructure(c.Context); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "zkchat tree ready at %s\n", c.String("zookeeper"))
			return nil
		},
	}
}

func managerCommand() *cli.Command {
	return &cli.Command{
		Name:  "manager",
		Usage: "run a manager until SIGINT/SIGTERM (several may run: one is elected leader)",
		Description: "The leader answers register/quit requests, deletes /online nodes of\n" +
			"unregistered ids, and creates a user's Kafka topic when the user goes online.\n" +
			"Logs go to stderr; grep for \"became leader\" and \"stopped being leader\".",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", EnvVars: []string{"ZKCHAT_MANAGER_NAME"}, Usage: "name in logs and in the election node (default host:pid)"},
			&cli.IntFlag{Name: "replication-factor", Value: 1, EnvVars: []string{"ZKCHAT_REPLICATION_FACTOR"},
				Usage: "replication factor of new user topics"},
			&cli.BoolFlag{Name: "kafka-user-principals", EnvVars: []string{"ZKCHAT_KAFKA_USER_PRINCIPALS"},
				Usage: "give each user registered with ZooKeeper credentials a Kafka SCRAM principal of its own, " +
					"which may read only the user's topic and group (needs ZooKeeper and Kafka credentials, and " +
					"`zkchat kafka-acls --user-principals` for zkchat's Kafka principal)"},
			debugFlag, metricsFlag(),
		},
		Before: func(c *cli.Context) error { return applyConfig(c, "manager") },
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usagef("manager: takes no arguments")
			}
			m, log, err := newManager(c)
			if err != nil {
				return err
			}
			defer m.Close()
			stopDebug, err := serveDebug(c.Context, c.String("debug-addr"), log)
			if err != nil {
				return err
			}
			defer stopDebug()
			stopOps, err := serveOps(c, log, func(s *metrics.Server) { s.AddManager(m) })
			if err != nil {
				return err
			}
			defer stopOps()
			log.Info("manager starting", "zookeeper", c.String("zookeeper"), "kafka", c.String("kafka"))
			err = m.Run(c.Context)
			log.Info("manager stopped")
			return err
		},
	}
}
