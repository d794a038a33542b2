#!/usr/bin/env bash
# Standalone ZooKeeper (Debian's zookeeper package) on 127.0.0.1:$ZKCHAT_ZK_PORT.
#
#   scripts/zookeeper.sh start|stop|status|restart
#
# Config, data, log and pid file live in $ZKCHAT_DATA_DIR/zookeeper; the config
# is rendered from testdata/zookeeper/{zoo.cfg,log4j.properties} on each start.
# status exits 0 when the server answers, 1 when it runs but does not answer,
# 3 when it is not running.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ZK_DIR=$DATA_DIR/zookeeper
CONF_DIR=$ZK_DIR/conf
CFG=$CONF_DIR/zoo.cfg
PIDFILE=$ZK_DIR/zookeeper.pid
LOGFILE=$ZK_DIR/zookeeper.log # log4j output (see testdata/zookeeper/log4j.properties)
OUTFILE=$ZK_DIR/zookeeper.out # stdout/stderr: JVM errors only
TEMPLATES=$ROOT/testdata/zookeeper
MAIN=org.apache.zookeeper.server.quorum.QuorumPeerMain
# Matches only the server started with our config (guards against reused PIDs).
PATTERN="$MAIN $CFG"
START_TIMEOUT=60

# Debian's zookeeper.jar lists its dependencies in its manifest Class-Path, but
# no slf4j binding: with the classpath of zkEnv.sh alone the server logs
# nothing ("SLF4J: Defaulting to no-operation (NOP) logger"). Add log4j 1.2
# and its binding (both dependencies of libzookeeper-java). The conf dir comes
# first so our log4j.properties wins.
CLASSPATH=$CONF_DIR:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar

# zk_srvr: print the answer to the "srvr" four-letter word (fails when none).
zk_srvr() {
	# shellcheck disable=SC2016 # $1/$2 expand in the inner bash
	timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf srvr >&3 && cat <&3' _ "$HOST" "$ZKCHAT_ZK_PORT" 2>/dev/null
}

zk_ready() {
	local out
	out=$(zk_srvr) || return 1
	[[ $out == *"Mode: standalone"* ]]
}

cmd_status() {
	local pid
	if pid_running "$PIDFILE" "$PATTERN"; then
		pid=$(pid_of "$PIDFILE")
		if zk_ready; then
			echo "zookeeper: running (pid $pid) on $HOST:$ZKCHAT_ZK_PORT, Mode: standalone"
			return 0
		fi
		echo "zookeeper: running (pid $pid) but not answering on $HOST:$ZKCHAT_ZK_PORT (log: $LOGFILE)"
		return 1
	fi
	if port_open "$HOST" "$ZKCHAT_ZK_PORT"; then
		echo "zookeeper: not running, but $HOST:$ZKCHAT_ZK_PORT is taken by a process these scripts did not start"
	else
		echo "zookeeper: not running"
	fi
	return 3
}

cmd_start() {
	local t0 rc
	"$ROOT/scripts/install-deps.sh" zookeeper

	if pid_running "$PIDFILE" "$PATTERN"; then
		# Idempotent; still make sure it is usable before saying yes.
		wait_for "$START_TIMEOUT" "$PIDFILE" zk_ready ||
			die "zookeeper (pid $(pid_of "$PIDFILE")) runs but does not answer; try: $0 restart"
		log "zookeeper already running (pid $(pid_of "$PIDFILE")) on $HOST:$ZKCHAT_ZK_PORT"
		return 0
	fi
	rm -f "$PIDFILE"
	if port_open "$HOST" "$ZKCHAT_ZK_PORT"; then
		die "$HOST:$ZKCHAT_ZK_PORT is already in use by a process these scripts did not start (set ZKCHAT_ZK_PORT to use another port)"
	fi

	mkdir -p "$ZK_DIR/data" "$CONF_DIR"
	render_template "$TEMPLATES/zoo.cfg" "$CFG" \
		"DATA_DIR=$ZK_DIR/data" "ZK_PORT=$ZKCHAT_ZK_PORT"
	cp "$TEMPLATES/log4j.properties" "$CONF_DIR/log4j.properties"

	raise_nofile
	log "starting zookeeper on $HOST:$ZKCHAT_ZK_PORT (open files limit $(ulimit -n))…"
	t0=$(now_ms)
	start_bg "$PIDFILE" "$OUTFILE" \
		java -Xms64m -Xmx256m \
		-XX:+ExitOnOutOfMemoryError \
		-Djava.awt.headless=true \
		-Dzookeeper.log.dir="$ZK_DIR" \
		-Dlog4j.configuration="file:$CONF_DIR/log4j.properties" \
		-cp "$CLASSPATH" \
		"$MAIN" "$CFG"

	rc=0
	wait_for "$START_TIMEOUT" "$PIDFILE" zk_ready || rc=$?
	if ((rc == 0)); then
		log "zookeeper ready on $HOST:$ZKCHAT_ZK_PORT after $(since_s "$t0") s (pid $(pid_of "$PIDFILE"), log $LOGFILE)"
		return 0
	fi
	if ((rc == 2)); then
		log "zookeeper exited during startup"
	else
		log "zookeeper did not answer within ${START_TIMEOUT}s"
	fi
	show_log_tail "$LOGFILE" 30
	show_log_tail "$OUTFILE" 10
	stop_pidfile "$PIDFILE" zookeeper "$PATTERN"
	exit 1
}

cmd_stop() {
	if ! pid_running "$PIDFILE" "$PATTERN"; then
		rm -f "$PIDFILE"
		log "zookeeper not running"
		return 0
	fi
	stop_pidfile "$PIDFILE" zookeeper "$PATTERN" 20
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
restart)
	cmd_stop
	cmd_start
	;;
*)
	echo "usage: $0 start|stop|status|restart" >&2
	exit 2
	;;
esac
