package servers

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// State is what Status found; its value is devenv status's exit code, as an
// init script's status: 0 runs and answers, 1 runs but does not answer (or
// only partly runs), 3 not running.
type State int

const (
	Up        State = 0
	Unhealthy State = 1
	Down      State = 3
)

// Status is a server's state and a line saying it.
type Status struct {
	State State
	Line  string
	// PortTaken: not running as ours, but its port is served by a process
	// these tools did not start (another checkout, a system service).
	PortTaken bool
}

// Server is one server (or a pair that only makes sense together).
type Server interface {
	Name() string
	// Start starts it unless it runs, and returns once it answers.
	Start() error
	// Stop stops it if it runs (idempotent).
	Stop() error
	Status() Status
}

// Names are the servers Get knows, in start order; the default set of
// exec and start is the first five.
var Names = []string{"zookeeper", "kafka", "inspircd", "ngircd", "atheme", "irclinked"}

// DefaultNames are what tests need: all but the linked pair (tests start
// private pairs of their own).
var DefaultNames = Names[:5]

// Get returns the server called name.
func (c *Config) Get(name string) (Server, error) {
	switch name {
	case "zookeeper":
		return c.ZooKeeper(), nil
	case "kafka":
		return c.Kafka(), nil
	case "inspircd":
		return c.InspIRCd(), nil
	case "ngircd":
		return c.NgIRCd(), nil
	case "atheme":
		return c.Atheme(), nil
	case "irclinked":
		return c.IRCLinked(), nil
	}
	return nil, fmt.Errorf("unknown server %q (known: %s)", name, strings.Join(Names, ", "))
}

// daemon is one supervised process: the common part of every server.
type daemon struct {
	c              *Config
	name           string
	deps           string // for install-deps.sh
	pidfile        string
	pattern        string // in the command line of ours (guards against reused pids)
	outfile        string // stdout/stderr
	ports          []int  // all must be free before a start
	portVars       string // which variables move them
	startTimeout   time.Duration
	stopTimeout    time.Duration
	check          func() error    // before anything: settings
	prepare        func() error    // render configs, format storage
	argv           func() []string // the command
	answers        func() bool     // it serves (status, and an already running one)
	ready          func() bool     // a fresh start is done (default: answers)
	describe       func() string   // the status line's end once it answers
	failLogs       []string        // files whose tails explain a failed start
	afterFailure   func()          // more explaining
	startedMessage func() string
}

func (d *daemon) Name() string { return d.name }

func (d *daemon) running() (int, bool) { return PidRunning(d.pidfile, d.pattern) }

func (d *daemon) Status() Status {
	if pid, ok := d.running(); ok {
		if d.answers() {
			return Status{State: Up, Line: fmt.Sprintf("%s: running (pid %d) %s", d.name, pid, d.describe())}
		}
		return Status{State: Unhealthy, Line: fmt.Sprintf("%s: running (pid %d) but not answering on port %s", d.name, pid, joinInts(d.ports, "/"))}
	}
	for _, p := range d.ports {
		if PortOpen(p) {
			return Status{State: Down, PortTaken: true, Line: fmt.Sprintf("%s: not running, but %s is taken by a process devenv did not start", d.name, addr(p))}
		}
	}
	return Status{State: Down, Line: d.name + ": not running"}
}

func (d *daemon) Start() error {
	if d.check != nil {
		if err := d.check(); err != nil {
			return err
		}
	}
	if err := d.c.Install(d.deps); err != nil {
		return err
	}
	if pid, ok := d.running(); ok {
		// Idempotent; still make sure it is usable before saying yes.
		if err := WaitFor(d.startTimeout, pid, d.answers); err != nil {
			return fmt.Errorf("%s (pid %d) runs but does not answer (%v); try: devenv stop %s", d.name, pid, err, d.name)
		}
		d.c.logf("%s already running (pid %d) %s", d.name, pid, d.describe())
		return nil
	}
	_ = os.Remove(d.pidfile)
	for _, p := range d.ports {
		if PortOpen(p) {
			return fmt.Errorf("%s is already in use by a process devenv did not start (set %s to use others)", addr(p), d.portVars)
		}
	}
	if err := d.prepare(); err != nil {
		return fmt.Errorf("%s: %w", d.name, err)
	}
	d.c.logf("starting %s on %s…", d.name, joinInts(d.ports, ", "))
	t0 := time.Now()
	pid, err := StartProcess(d.pidfile, d.outfile, nil, d.argv()...)
	if err != nil {
		return fmt.Errorf("%s: %w", d.name, err)
	}
	ready := d.ready
	if ready == nil {
		ready = d.answers
	}
	err = WaitFor(d.startTimeout, pid, ready)
	if err == nil {
		msg := ""
		if d.startedMessage != nil {
			msg = "; " + d.startedMessage()
		}
		d.c.logf("%s ready after %.1f s (pid %d, log %s)%s", d.name, time.Since(t0).Seconds(), pid, d.failLogs[0], msg)
		return nil
	}
	if errors.Is(err, errTimeout) {
		err = fmt.Errorf("%s did not answer within %v", d.name, d.startTimeout)
	} else {
		err = fmt.Errorf("%s %w", d.name, err)
	}
	d.c.logf("%v", err)
	for _, f := range d.failLogs {
		d.c.tail(f, 30)
	}
	if d.afterFailure != nil {
		d.afterFailure()
	}
	d.c.stopPidfile(d.pidfile, d.name, d.pattern, d.stopTimeout)
	return err
}

func (d *daemon) Stop() error {
	if _, ok := d.running(); !ok {
		_ = os.Remove(d.pidfile)
		d.c.logf("%s not running", d.name)
		return nil
	}
	d.c.stopPidfile(d.pidfile, d.name, d.pattern, d.stopTimeout)
	return nil
}

// asRoot: InspIRCd refuses to run as root without --runasroot, ngIRCd drops
// to user irc.
func asRoot() bool { return os.Getuid() == 0 }
