package servers

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

const zkMain = "org.apache.zookeeper.server.quorum.QuorumPeerMain"

// zkClasspath: Debian's zookeeper.jar lists its dependencies in its
// manifest, but no slf4j binding: without log4j 1.2 and its binding the
// server logs nothing. The conf dir (first) holds our log4j.properties.
func zkClasspath(confDir string) string {
	return confDir + ":/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar"
}

// zkArgv is the JVM command of a ZooKeeper server whose folder is dir.
func zkArgv(dir, cfg, heap string) []string {
	conf := filepath.Join(dir, "conf")
	return []string{"java", "-Xms64m", "-Xmx" + heap,
		"-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
		"-Dzookeeper.log.dir=" + dir,
		"-Dlog4j.configuration=file:" + filepath.Join(conf, "log4j.properties"),
		"-cp", zkClasspath(conf), zkMain, cfg}
}

// ZooKeeper is the standalone ZooKeeper (Debian's zookeeper package) on
// ZKPort; config, data, logs and pid file in DataDir/zookeeper.
func (c *Config) ZooKeeper() Server {
	dir := filepath.Join(c.DataDir, "zookeeper")
	cfg := filepath.Join(dir, "conf", "zoo.cfg")
	answers := func() bool { m, err := zkMode(c.ZKPort); return err == nil && m == "standalone" }
	return &daemon{
		c: c, name: "zookeeper", deps: "zookeeper",
		pidfile:      filepath.Join(dir, "zookeeper.pid"),
		pattern:      zkMain + " " + cfg,
		outfile:      filepath.Join(dir, "zookeeper.out"), // JVM errors only
		ports:        []int{c.ZKPort},
		portVars:     "ZKCHAT_ZK_PORT",
		startTimeout: 60 * time.Second, stopTimeout: 20 * time.Second,
		prepare: func() error {
			if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
				return err
			}
			if err := Render(c.deploy("zookeeper", "zoo.cfg.tmpl"), cfg, map[string]any{
				"DATA_DIR": filepath.Join(dir, "data"), "ZK_PORT": c.ZKPort}); err != nil {
				return err
			}
			return copyFile(c.deploy("zookeeper", "log4j.properties"), filepath.Join(dir, "conf", "log4j.properties"))
		},
		argv:     func() []string { return zkArgv(dir, cfg, "256m") },
		answers:  answers,
		describe: func() string { return fmt.Sprintf("on %s, Mode: standalone", addr(c.ZKPort)) },
		failLogs: []string{filepath.Join(dir, "zookeeper.log"), filepath.Join(dir, "zookeeper.out")},
	}
}
