package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/urfave/cli/v2"

	"github.com/zkchat/zkchat/kafka"
	"github.com/zkchat/zkchat/protocol"
	"github.com/zkchat/zkchat/zookeeper"
)

// status is what `zkchat status` reports: one read of ZooKeeper and Kafka.
type status struct {
	Leader     string           `json:"leader"`   // the leading manager's name; "" if none
	Managers   []string         `json:"managers"` // every manager in the election, leader first
	Registered int              `json:"registered"`
	Online     int              `json:"online"`
	Pending    []pendingRequest `json:"pending"`
	// Frontends: the online users by where they are online (a bridge's
	// nick and channel, or "cli"), with the messages waiting for them.
	Frontends []frontend `json:"frontends"`
	// LagChecked: how many online users' lag was read (at most --lag-max).
	LagChecked int `json:"lag_checked"`
}

type pendingRequest struct {
	Kind string        `json:"kind"` // enroll or quit
	ID   string        `json:"id"`
	Age  time.Duration `json:"age_ns"`
}

type frontend struct {
	Name   string `json:"name"` // "bridge zkchat #chatroom", "cli", ...
	Online int    `json:"online"`
	Unread int64  `json:"unread"` // messages in their topics past their groups' commits
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "say who leads, how many are registered and online, the pending requests, and each front end's unread messages",
		Description: "Reads ZooKeeper (election, registry, online nodes, requests) and Kafka (each\n" +
			"online user's topic end against its group's committed position). A table for\n" +
			"people; --json for scripts.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print JSON instead of a table"},
			&cli.IntFlag{Name: "lag-max", Value: 1000, Usage: "read the unread count of at most this many online users (one Kafka request each)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usagef("status: takes no arguments")
			}
			s, err := listingSession(c, true)
			if err != nil {
				return err
			}
			defer s.Close()
			st, onlineIDs, err := readStatus(c.Context, s)
			if err != nil {
				return err
			}
			ka, err := kafkaAuth(c)
			if err != nil {
				return err
			}
			admin, err := kafka.NewAdmin(kafka.Config{Brokers: c.String("kafka"),
				Topics: protocol.Topics{Prefix: c.String("topic-prefix")}, Auth: ka}, "zkchat-status")
			if err != nil {
				return err
			}
			defer admin.Close()
			if err := addLag(c.Context, admin, &st, onlineIDs, c.Int("lag-max")); err != nil {
				return err
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			printStatus(c.App.Writer, st)
			return nil
		},
	}
}

// readStatus reads the ZooKeeper half; onlineIDs maps each front end's
// name to its online ids.
func readStatus(ctx context.Context, s *zookeeper.Session) (status, map[string][]string, error) {
	st := status{Managers: []string{}}
	managers, err := s.Managers(ctx)
	if err != nil {
		return st, nil, err
	}
	st.Managers = managers
	if len(st.Managers) > 0 {
		st.Leader = st.Managers[0]
	}
	reg, err := s.RegisteredUsers(ctx)
	if err != nil {
		return st, nil, err
	}
	st.Registered = len(reg)
	online, err := s.OnlineUsers(ctx)
	if err != nil {
		return st, nil, err
	}
	st.Online = len(online)
	st.Pending = []pendingRequest{}
	for _, k := range []struct{ kind, dir string }{{"enroll", s.Paths.EnrollRequests()}, {"quit", s.Paths.QuitRequests()}} {
		names, err := s.Children(ctx, k.dir)
		if err != nil {
			return st, nil, fmt.Errorf("%s requests: %w", k.kind, err)
		}
		for _, n := range names {
			_, stat, err := s.Get(ctx, k.dir+"/"+n)
			if errors.Is(err, zk.ErrNoNode) {
				continue // answered meanwhile
			}
			if err != nil {
				return st, nil, fmt.Errorf("request %s: %w", n, err)
			}
			st.Pending = append(st.Pending, pendingRequest{Kind: k.kind, ID: protocol.ShowText(n, ""),
				Age: time.Since(time.UnixMilli(stat.Ctime)).Round(time.Millisecond)})
		}
	}
	byFrontend := map[string][]string{}
	for _, id := range online {
		data, _, err := s.Get(ctx, s.Paths.OnlineNode(id))
		if errors.Is(err, zk.ErrNoNode) {
			continue
		}
		if err != nil {
			return st, nil, fmt.Errorf("online node %s: %w", id, err)
		}
		byFrontend[frontendOf(data)] = append(byFrontend[frontendOf(data)], id)
	}
	return st, byFrontend, nil
}

// frontendOf names where an /online node's user is online, from its
// metadata: "bridge <nick> <channel>", or "cli".
func frontendOf(data []byte) string {
	var meta struct{ Via, Bridge, Channel string }
	if json.Unmarshal(data, &meta) == nil && meta.Via == "irc" {
		return protocol.ShowText("bridge "+meta.Bridge+" "+meta.Channel, "")
	}
	return "cli"
}

// addLag reads the unread messages of up to most online users, front end
// by front end.
func addLag(ctx context.Context, admin *kafka.Admin, st *status, byFrontend map[string][]string, most int) error {
	names := make([]string, 0, len(byFrontend))
	for n := range byFrontend {
		names = append(names, n)
	}
	sort.Strings(names)
	st.Frontends = []frontend{}
	for _, n := range names {
		ids := byFrontend[n]
		f := frontend{Name: n, Online: len(ids)}
		if room := most - st.LagChecked; room > 0 {
			ids = ids[:min(len(ids), room)]
			lag, err := admin.Lag(ctx, ids)
			if err != nil {
				return err
			}
			for _, l := range lag {
				f.Unread += l
			}
			st.LagChecked += len(ids)
		}
		st.Frontends = append(st.Frontends, f)
	}
	return nil
}

// printStatus writes st as a table.
func printStatus(w io.Writer, st status) {
	leader := st.Leader
	if leader == "" {
		leader = "none (no manager runs: requests wait)"
	}
	fmt.Fprintf(w, "leader:      %s (%d manager(s) in the election)\n", leader, len(st.Managers))
	fmt.Fprintf(w, "registered:  %d\n", st.Registered)
	fmt.Fprintf(w, "online:      %d\n", st.Online)
	if len(st.Pending) == 0 {
		fmt.Fprintln(w, "pending:     none")
	} else {
		oldest := st.Pending[0]
		for _, p := range st.Pending {
			if p.Age > oldest.Age {
				oldest = p
			}
		}
		fmt.Fprintf(w, "pending:     %d (oldest: %s %s, %s old)\n", len(st.Pending), oldest.Kind, oldest.ID, oldest.Age)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FRONT END\tONLINE\tUNREAD")
	for _, f := range st.Frontends {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", f.Name, f.Online, f.Unread)
	}
	_ = tw.Flush()
	if st.LagChecked < st.Online {
		fmt.Fprintf(w, "(unread counted for %d of %d online users: --lag-max)\n", st.LagChecked, st.Online)
	}
}

// healthcheckCommand asks a running manager or bridge's --metrics-addr
// listener whether it is alive (/healthz) or ready (/readyz): for a
// container's HEALTHCHECK, where no curl is installed.
func healthcheckCommand() *cli.Command {
	return &cli.Command{
		Name:  "healthcheck",
		Usage: "exit 0 if the zkchat process at --metrics-addr is alive (with --ready: connected and serving), else 1",
		Flags: []cli.Flag{
			metricsFlag(),
			&cli.BoolFlag{Name: "ready", Usage: "ask /readyz (connected to ZooKeeper and IRC, in the channel) instead of /healthz"},
		},
		Action: func(c *cli.Context) error {
			addr := c.String("metrics-addr")
			if addr == "" {
				return usagef("healthcheck: --metrics-addr (or $ZKCHAT_METRICS_ADDR) names the process's listener")
			}
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return usagef("healthcheck: --metrics-addr %s: %v", addr, err)
			}
			if host == "" || host == "0.0.0.0" || host == "::" {
				host = "127.0.0.1" // a listener on every address answers on loopback
			}
			path := "/healthz"
			if c.Bool("ready") {
				path = "/readyz"
			}
			ctx, cancel := context.WithTimeout(c.Context, 5*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+path, nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("healthcheck: %w", err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("healthcheck: %s: %s", resp.Status, strings.TrimSpace(string(body)))
			}
			fmt.Fprint(c.App.Writer, string(body))
			return nil
		},
	}
}
