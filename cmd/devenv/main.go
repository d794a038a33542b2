// Command devenv runs the servers zkchat is developed and tested against
// (internal/servers): ZooKeeper, Kafka, InspIRCd, ngIRCd, InspIRCd with
// Atheme, the linked InspIRCd pair, and the replicated cluster of the fault
// suite.
//
//	devenv start|stop|status|restart [NAME...]  the servers (default: zookeeper
//	                                        kafka inspircd ngircd atheme)
//	devenv exec [NAME...] -- CMD [ARGS...]  start what is missing, run CMD with
//	                                        ZKCHAT_ZOOKEEPER, ZKCHAT_KAFKA,
//	                                        ZKCHAT_IRC_SERVER, ... set, then stop
//	                                        what this run started
//	devenv env                              those variables
//	devenv fetch                            the Kafka jars into .cache
//	devenv irclinked split|join|pids        netsplit the linked pair, or link it
//	devenv cluster start|stop [MEMBER]      the 3 ZooKeeper + 3 Kafka cluster
//	devenv cluster kill|restart MEMBER      (members zk1..3, kafka1..3)
//	devenv cluster status|pids|zk-leader|env
//	devenv cluster exec -- CMD [ARGS...]    as exec, on the cluster
//	devenv reliability [go test flags]      the fault suite on the cluster
//	devenv run [--no-wait] | run stop       the README's run command
//
// Ports, folders and versions come from the environment (ZKCHAT_DATA_DIR,
// ZKCHAT_ZK_PORT, ZKCHAT_KAFKA_PORT, ...; see internal/servers.Config).
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/zkchat/zkchat/internal/servers"
)

func main() {
	// A run's output often goes through a pipe (`make run | tee run.log`),
	// whose reader Ctrl-C ends too: the next line written must fail, not
	// kill devenv with SIGPIPE before it stopped what it started. Notify,
	// not Ignore: an ignored signal stays ignored in the programs devenv
	// starts, a handler does not. (Signals to a full channel are dropped.)
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	cfg, err := servers.Load("", nil)
	if err != nil {
		fatal(err)
	}
	args := os.Args[1:]
	if len(args) == 0 {
		usage()
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "start", "stop", "status", "restart":
		os.Exit(each(cfg, cmd, args))
	case "exec":
		names, argv := splitDashes(args)
		os.Exit(execWith(cfg, names, argv))
	case "env":
		fmt.Println(strings.Join(cfg.Env(), "\n"))
	case "fetch":
		check(cfg.FetchKafka())
	case "irclinked":
		os.Exit(linked(cfg, args))
	case "cluster":
		os.Exit(cluster(cfg, args))
	case "reliability":
		os.Exit(reliability(cfg, args))
	case "run":
		os.Exit(run(cfg, args))
	case "-h", "--help", "help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "devenv: unknown command %q\n", cmd)
		usage()
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage: devenv start|stop|status|restart [NAME...]
       devenv exec [NAME...] -- CMD [ARGS...]
       devenv env | fetch
       devenv irclinked split|join|pids
       devenv cluster start|stop [MEMBER] | kill|restart MEMBER | status|pids|zk-leader|env | exec -- CMD...
       devenv reliability [go test flags]
       devenv run [--no-wait] | run stop
NAME: `+strings.Join(servers.Names, " ")+` (default: `+strings.Join(servers.DefaultNames, " ")+`)
MEMBER: `+strings.Join(servers.Members, " ")+"\n")
	os.Exit(2)
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "devenv: error: %v\n", err)
	os.Exit(1)
}

func check(err error) {
	if err != nil {
		fatal(err)
	}
}

func splitDashes(args []string) (before, after []string) {
	if i := slices.Index(args, "--"); i >= 0 {
		return args[:i], args[i+1:]
	}
	return nil, args
}

func get(cfg *servers.Config, names []string) []servers.Server {
	if len(names) == 0 {
		names = servers.DefaultNames
	}
	var ss []servers.Server
	for _, n := range names {
		s, err := cfg.Get(n)
		check(err)
		ss = append(ss, s)
	}
	return ss
}

// each runs start, stop (in reverse order; all even when one fails),
// status (exit 0 only when all answer) or restart.
func each(cfg *servers.Config, cmd string, names []string) int {
	ss := get(cfg, names)
	rc := 0
	switch cmd {
	case "start":
		for _, s := range ss {
			check(s.Start())
		}
	case "stop":
		for _, s := range slices.Backward(ss) {
			if err := s.Stop(); err != nil {
				fmt.Fprintf(os.Stderr, "devenv: %s: %v\n", s.Name(), err)
				rc = 1
			}
		}
	case "status":
		for _, s := range ss {
			st := s.Status()
			fmt.Println(st.Line)
			if rc == 0 {
				rc = int(st.State)
			}
		}
	case "restart":
		for _, s := range slices.Backward(ss) {
			check(s.Stop())
		}
		for _, s := range ss {
			check(s.Start())
		}
	}
	return rc
}

// session tracks what this process started, to stop it (in reverse order)
// on exit, Ctrl-C or TERM; servers that already ran stay up.
type session struct {
	mu      sync.Mutex
	stops   []func()
	child   *os.Process
	sigs    chan os.Signal
	stopped bool
	// cleaned is closed when cleanup has run every stop: a second caller
	// (the signal handler's and the main path's) waits for the first, so
	// the process never exits half-way through the stops.
	cleaned chan struct{}
}

func newSession() *session {
	s := &session{sigs: make(chan os.Signal, 2), cleaned: make(chan struct{})}
	// SIGHUP: the terminal closed; stop as for Ctrl-C.
	signal.Notify(s.sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		for sig := range s.sigs {
			s.mu.Lock()
			child := s.child
			s.mu.Unlock()
			if child != nil {
				// The command decides; its exit ends this run.
				_ = child.Signal(sig)
				continue
			}
			fmt.Fprintf(os.Stderr, "devenv: %v; stopping what this run started…\n", sig)
			s.cleanup()
			os.Exit(128 + int(sig.(syscall.Signal)))
		}
	}()
	return s
}

// started records a stop function; recorded before starting, so that an
// interrupted start is cleaned up too.
func (s *session) started(stop func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stops = append(s.stops, stop)
}

func (s *session) cleanup() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		<-s.cleaned
		return
	}
	s.stopped = true
	stops := s.stops
	s.mu.Unlock()
	defer close(s.cleaned)
	for _, stop := range slices.Backward(stops) {
		stop()
	}
}

// ensure starts srv unless it answers; only what it started is recorded.
func (s *session) ensure(srv servers.Server) error {
	switch st := srv.Status(); st.State {
	case servers.Up:
		fmt.Fprintf(os.Stderr, "devenv: %s already running; it stays running afterwards\n", srv.Name())
		return nil
	case servers.Down:
		s.started(func() { _ = srv.Stop() })
	}
	// Unhealthy: runs (someone else's start) but does not answer yet: wait
	// for it, but do not stop it afterwards.
	return srv.Start()
}

// runChild runs argv with env added and returns its exit code; signals to
// this process go to it.
func (s *session) runChild(argv []string, env []string) int { return s.runChildTo(argv, env, nil) }

// runChildTo is runChild with stdout and stderr going to out (nil: ours).
func (s *session) runChildTo(argv []string, env []string, out io.Writer) int {
	if len(argv) == 0 {
		fmt.Fprintln(os.Stderr, "devenv: no command given (devenv exec -- CMD ARGS...)")
		return 2
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if out != nil {
		cmd.Stdout, cmd.Stderr = out, out
	}
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "devenv: %v\n", err)
		return 127
	}
	s.mu.Lock()
	s.child = cmd.Process
	s.mu.Unlock()
	err := cmd.Wait()
	s.mu.Lock()
	s.child = nil
	s.mu.Unlock()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	if err != nil {
		return 1
	}
	return 0
}

// execWith starts the missing servers, runs the command with their
// addresses, and stops what this run started.
func execWith(cfg *servers.Config, names, argv []string) int {
	s := newSession()
	defer s.cleanup()
	for _, srv := range get(cfg, names) {
		if err := s.ensure(srv); err != nil {
			fmt.Fprintf(os.Stderr, "devenv: error: %v\n", err)
			return 1
		}
	}
	env := cfg.Env()
	fmt.Fprintf(os.Stderr, "devenv: running: %s (%s)\n", strings.Join(argv, " "), strings.Join(env, " "))
	return s.runChild(argv, env)
}

func linked(cfg *servers.Config, args []string) int {
	l := cfg.IRCLinked()
	if len(args) != 1 {
		usage()
	}
	switch args[0] {
	case "pids":
		for n, pid := range l.Pids() {
			fmt.Println(n, pid)
		}
		return 0
	case "split", "join":
		if len(l.Pids()) != 2 {
			fatal(errors.New("irclinked: not running (both servers): devenv start irclinked"))
		}
		var err error
		if args[0] == "split" {
			_, err = l.Split()
		} else {
			_, err = l.Join()
		}
		check(err)
		return 0
	}
	usage()
	return 2
}

func cluster(cfg *servers.Config, args []string) int {
	cl := cfg.Cluster()
	if len(args) == 0 {
		usage()
	}
	member := ""
	if len(args) > 1 && args[0] != "exec" {
		member = args[1]
	}
	switch args[0] {
	case "start":
		if member != "" {
			check(cl.StartMember(member))
			return 0
		}
		check(cl.Start())
		fmt.Println(strings.Join(cl.Env(), " "))
	case "stop":
		if member != "" {
			check(cl.StopMember(member))
			return 0
		}
		check(cl.Stop())
	case "kill":
		if member == "" {
			usage()
		}
		check(cl.Kill(member))
	case "restart":
		if member == "" {
			usage()
		}
		check(cl.StopMember(member))
		check(cl.StartMember(member))
	case "status":
		st := cl.Status()
		fmt.Println(st.Line)
		return int(st.State)
	case "pids":
		for _, m := range servers.Members {
			pid := "-"
			if p := cl.PID(m); p != 0 {
				pid = fmt.Sprint(p)
			}
			fmt.Println(m, pid)
		}
	case "zk-leader":
		l := cl.ZKLeader()
		if l == "" {
			return 1
		}
		fmt.Println(l)
	case "env":
		fmt.Println(strings.Join(cl.Env(), " "))
	case "exec":
		_, argv := splitDashes(args[1:])
		s := newSession()
		defer s.cleanup()
		if err := s.ensureCluster(cl); err != nil {
			fmt.Fprintf(os.Stderr, "devenv: error: %v\n", err)
			return 1
		}
		return s.runChild(argv, cl.Env())
	default:
		usage()
	}
	return 0
}

// ensureCluster starts the cluster unless it is healthy; a partly running
// cluster is an error (someone's faults are under way, or left over).
func (s *session) ensureCluster(cl *servers.Cluster) error {
	switch cl.Status().State {
	case servers.Up:
		fmt.Fprintln(os.Stderr, "devenv: cluster already running; it stays running afterwards")
		return nil
	case servers.Down:
		fmt.Fprintln(os.Stderr, "devenv: starting the cluster (3 ZooKeeper, 3 Kafka)…")
		s.started(func() { _ = cl.Stop() })
		return cl.Start()
	}
	return errors.New("cluster partly running; see devenv cluster status, or devenv cluster stop first")
}
