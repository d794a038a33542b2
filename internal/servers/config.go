// Package servers runs the real servers zkchat is developed and tested
// against, on 127.0.0.1: ZooKeeper (standalone, or a 3-server ensemble),
// Kafka 4 in KRaft mode (one broker, or a 3-broker cluster), InspIRCd, a
// linked InspIRCd pair, InspIRCd with Atheme services, and ngIRCd.
//
// Configs are rendered with text/template from deploy/ into the data folder
// (ZKCHAT_DATA_DIR, default <repo>/.data) on each start. Every server runs in
// its own session and process group, its pid in a file of the data folder so
// that a later process finds and stops it, its output in log files next to
// it. Start returns once the server really answers (ZooKeeper "srvr", Kafka
// metadata, an IRC client registering); Stop sends SIGTERM to the group and
// SIGKILL after a bound. A server that already runs is reused as it is.
//
// Installing packages is scripts/install-deps.sh's job; Start runs it for
// what it needs (it returns at once when everything is there).
package servers

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Host is where every server listens.
const Host = "127.0.0.1"

// Config says where the servers live and which ports they use. Load fills
// it from the environment, with the defaults below.
type Config struct {
	Root     string // the repository (go.mod, deploy/, scripts/)
	DataDir  string // ZKCHAT_DATA_DIR, default Root/.data
	CacheDir string // ZKCHAT_CACHE_DIR, default Root/.cache

	ZKPort              int    // ZKCHAT_ZK_PORT 2181
	KafkaPort           int    // ZKCHAT_KAFKA_PORT 9092
	KafkaControllerPort int    // ZKCHAT_KAFKA_CONTROLLER_PORT 9093
	KafkaVersion        string // ZKCHAT_KAFKA_VERSION 4.1.1
	// KafkaSASL (ZKCHAT_KAFKA_SASL=1) turns on SASL/SCRAM and ACLs; see Kafka.
	KafkaSASL      bool
	KafkaAdminUser string // ZKCHAT_KAFKA_ADMIN_USER admin
	KafkaSASLUser  string // ZKCHAT_KAFKA_SASL_USER zkchat

	IRCPort       int // ZKCHAT_IRC_PORT 6667: InspIRCd for people
	IRCBridgePort int // ZKCHAT_IRC_BRIDGE_PORT 6668: for the bridge, no flood limits
	NgircdPort    int // ZKCHAT_NGIRCD_PORT 6670
	// The InspIRCd linked to Atheme services (the network with accounts).
	IRCAccountsPort       int    // ZKCHAT_IRC_ACCOUNTS_PORT 6680
	IRCAccountsBridgePort int    // ZKCHAT_IRC_ACCOUNTS_BRIDGE_PORT 6681
	AthemeLinkPort        int    // ZKCHAT_ATHEME_LINK_PORT 7001
	Casemapping           string // ZKCHAT_IRC_CASEMAPPING rfc1459 (or ascii)

	Linked LinkedConfig

	// ClusterBase (ZKCHAT_CLUSTER_BASE: 0, 10 .. 90) shifts every port of
	// the replicated cluster, so that clusters can run side by side.
	ClusterBase int

	// Log receives what the servers' supervision says (os.Stderr when nil).
	Log io.Writer
	// Deps installs what a server needs ("zookeeper", "kafka", "irc");
	// nil runs scripts/install-deps.sh, once per process and argument.
	Deps func(what string) error
}

// LinkedConfig are the linked InspIRCd pair's ports and settings.
type LinkedConfig struct {
	Port1, Bot1, Strict1, Link1 int    // ZKCHAT_IRCL1_{,BOT_,STRICT_,LINK_}PORT 6690 6691 6694 6696
	Port2, Bot2, Strict2, Link2 int    // ZKCHAT_IRCL2_... 6692 6693 6695 6697
	StrictThreshold             int    // ZKCHAT_IRCL_STRICT_THRESHOLD 20
	StrictCommandRate           int    // ZKCHAT_IRCL_STRICT_COMMANDRATE 1000
	StrictFakelag               string // ZKCHAT_IRCL_STRICT_FAKELAG no
	HideSplits                  string // ZKCHAT_IRCL_HIDESPLITS no
}

// Load reads the configuration from getenv (os.Getenv when nil). root is
// the repository; "" finds it above the working directory.
func Load(root string, getenv func(string) string) (*Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if root == "" {
		var err error
		if root, err = FindRoot(); err != nil {
			return nil, err
		}
	}
	var errs []error
	str := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	num := func(k string, def int) int {
		v := getenv(k)
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("%s=%q: not a number", k, v))
		}
		return n
	}
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return p
	}
	c := &Config{
		Root:                  root,
		DataDir:               abs(str("ZKCHAT_DATA_DIR", filepath.Join(root, ".data"))),
		CacheDir:              abs(str("ZKCHAT_CACHE_DIR", filepath.Join(root, ".cache"))),
		ZKPort:                num("ZKCHAT_ZK_PORT", 2181),
		KafkaPort:             num("ZKCHAT_KAFKA_PORT", 9092),
		KafkaControllerPort:   num("ZKCHAT_KAFKA_CONTROLLER_PORT", 9093),
		KafkaVersion:          str("ZKCHAT_KAFKA_VERSION", "4.1.1"),
		KafkaSASL:             getenv("ZKCHAT_KAFKA_SASL") == "1",
		KafkaAdminUser:        str("ZKCHAT_KAFKA_ADMIN_USER", "admin"),
		KafkaSASLUser:         str("ZKCHAT_KAFKA_SASL_USER", "zkchat"),
		IRCPort:               num("ZKCHAT_IRC_PORT", 6667),
		IRCBridgePort:         num("ZKCHAT_IRC_BRIDGE_PORT", 6668),
		NgircdPort:            num("ZKCHAT_NGIRCD_PORT", 6670),
		IRCAccountsPort:       num("ZKCHAT_IRC_ACCOUNTS_PORT", 6680),
		IRCAccountsBridgePort: num("ZKCHAT_IRC_ACCOUNTS_BRIDGE_PORT", 6681),
		AthemeLinkPort:        num("ZKCHAT_ATHEME_LINK_PORT", 7001),
		Casemapping:           str("ZKCHAT_IRC_CASEMAPPING", "rfc1459"),
		ClusterBase:           num("ZKCHAT_CLUSTER_BASE", 0),
		Linked: LinkedConfig{
			Port1: num("ZKCHAT_IRCL1_PORT", 6690), Bot1: num("ZKCHAT_IRCL1_BOT_PORT", 6691),
			Strict1: num("ZKCHAT_IRCL1_STRICT_PORT", 6694), Link1: num("ZKCHAT_IRCL1_LINK_PORT", 6696),
			Port2: num("ZKCHAT_IRCL2_PORT", 6692), Bot2: num("ZKCHAT_IRCL2_BOT_PORT", 6693),
			Strict2: num("ZKCHAT_IRCL2_STRICT_PORT", 6695), Link2: num("ZKCHAT_IRCL2_LINK_PORT", 6697),
			StrictThreshold:   num("ZKCHAT_IRCL_STRICT_THRESHOLD", 20),
			StrictCommandRate: num("ZKCHAT_IRCL_STRICT_COMMANDRATE", 1000),
			StrictFakelag:     str("ZKCHAT_IRCL_STRICT_FAKELAG", "no"),
			HideSplits:        str("ZKCHAT_IRCL_HIDESPLITS", "no"),
		},
	}
	if c.ClusterBase%10 != 0 || c.ClusterBase > 90 {
		errs = append(errs, fmt.Errorf("ZKCHAT_CLUSTER_BASE=%d: want 0, 10, 20 .. 90", c.ClusterBase))
	}
	if c.Casemapping != "rfc1459" && c.Casemapping != "ascii" {
		errs = append(errs, fmt.Errorf("ZKCHAT_IRC_CASEMAPPING must be rfc1459 or ascii (InspIRCd 3 and Atheme know no other), not %q", c.Casemapping))
	}
	return c, errors.Join(errs...)
}

// FindRoot is the folder holding go.mod and deploy/, at or above the working
// directory.
func FindRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if isFile(filepath.Join(dir, "go.mod")) && isDir(filepath.Join(dir, "deploy")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no zkchat repository (go.mod and deploy/) at or above the working directory")
		}
		dir = parent
	}
}

// Env is what the servers' clients need (devenv exec exports it):
// ZKCHAT_ZOOKEEPER, ZKCHAT_KAFKA, ZKCHAT_IRC_SERVER, ZKCHAT_IRC_BRIDGE_SERVER,
// ZKCHAT_NGIRCD_SERVER, ZKCHAT_IRC_ACCOUNTS_SERVER and
// ZKCHAT_IRC_ACCOUNTS_BRIDGE_SERVER, as "KEY=host:port".
func (c *Config) Env() []string {
	return []string{
		"ZKCHAT_ZOOKEEPER=" + addr(c.ZKPort),
		"ZKCHAT_KAFKA=" + addr(c.KafkaPort),
		"ZKCHAT_IRC_SERVER=" + addr(c.IRCPort),
		"ZKCHAT_IRC_BRIDGE_SERVER=" + addr(c.IRCBridgePort),
		"ZKCHAT_NGIRCD_SERVER=" + addr(c.NgircdPort),
		"ZKCHAT_IRC_ACCOUNTS_SERVER=" + addr(c.IRCAccountsPort),
		"ZKCHAT_IRC_ACCOUNTS_BRIDGE_SERVER=" + addr(c.IRCAccountsBridgePort),
	}
}

func (c *Config) out() io.Writer {
	if c.Log == nil {
		return os.Stderr
	}
	return c.Log
}

func (c *Config) logf(format string, args ...any) {
	fmt.Fprintf(c.out(), "devenv: "+format+"\n", args...)
}

// deploy is a file under Root/deploy.
func (c *Config) deploy(parts ...string) string {
	return filepath.Join(append([]string{c.Root, "deploy"}, parts...)...)
}

var (
	depsMu   sync.Mutex
	depsDone = map[string]bool{}
)

// Install makes sure what is installed (scripts/install-deps.sh what:
// zookeeper, kafka, inspircd, irc, run, go, all).
func (c *Config) Install(what string) error {
	if c.Deps != nil {
		return c.Deps(what)
	}
	depsMu.Lock()
	defer depsMu.Unlock()
	if depsDone[what] {
		return nil
	}
	out, err := command(filepath.Join(c.Root, "scripts", "install-deps.sh"), what).CombinedOutput()
	if len(out) > 0 {
		_, _ = c.out().Write(out)
	}
	if err != nil {
		return fmt.Errorf("scripts/install-deps.sh %s: %v", what, err)
	}
	depsDone[what] = true
	return nil
}

func addr(port int) string { return Host + ":" + strconv.Itoa(port) }

func isFile(p string) bool { st, err := os.Stat(p); return err == nil && st.Mode().IsRegular() }
func isDir(p string) bool  { st, err := os.Stat(p); return err == nil && st.IsDir() }

// distinct fails unless the ports differ.
func distinct(what string, ports ...int) error {
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			return fmt.Errorf("%s must differ (port %d twice)", what, p)
		}
		seen[p] = true
	}
	return nil
}

func joinInts(ports []int, sep string) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, sep)
}
