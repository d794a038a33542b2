#!/usr/bin/env bash
# Single-node Apache Kafka in KRaft combined mode (broker + controller, no
# ZooKeeper) on 127.0.0.1:$ZKCHAT_KAFKA_PORT, controller on
# 127.0.0.1:$ZKCHAT_KAFKA_CONTROLLER_PORT.
#
#   scripts/kafka.sh fetch|start|stop|status|restart
#
# fetch  downloads the Kafka $ZKCHAT_KAFKA_VERSION jars (default 4.1.1) with
#        Maven from testdata/kafka/pom.xml into $ZKCHAT_CACHE_DIR/kafka-<v>/libs,
#        only when they are missing or the pom changed; start does it too.
# Config, data, logs and pid file live in $ZKCHAT_DATA_DIR/kafka; the config
# is rendered from testdata/kafka/{server.properties,log4j2.properties}.
# status exits 0 when the broker answers, 1 when it runs but does not answer,
# 3 when it is not running.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VERSION=$ZKCHAT_KAFKA_VERSION
POM=$ROOT/testdata/kafka/pom.xml
TEMPLATES=$ROOT/testdata/kafka
LIB_PARENT=$CACHE_DIR/kafka-$VERSION
LIBS=$LIB_PARENT/libs
# sha256 of the pom the jars came from: editing the pom refetches.
STAMP=$LIB_PARENT/pom.sha256

KAFKA_DIR=$DATA_DIR/kafka
CFG=$KAFKA_DIR/server.properties
LOG4J_CFG=$KAFKA_DIR/log4j2.properties
LOG_DIRS=$KAFKA_DIR/data    # partitions + KRaft metadata log (log.dirs)
LOGS=$KAFKA_DIR/logs        # server.log (log4j2)
OUTFILE=$LOGS/kafka.out     # stdout/stderr: JVM errors only
CLUSTER_ID_FILE=$KAFKA_DIR/cluster.id
PIDFILE=$KAFKA_DIR/kafka.pid
# Matches only the broker started with our config (guards against reused PIDs).
PATTERN="kafka.Kafka $CFG"
START_TIMEOUT=120
STOP_TIMEOUT=20

# storage_tool ARGS...: Kafka's kafka-storage.sh without the shell wrapper.
storage_tool() {
	java -Xmx256m -Dkafka.logs.dir="$LOGS" -Dlog4j2.configurationFile="$LOG4J_CFG" \
		-cp "$LIBS/*" kafka.tools.StorageTool "$@"
}

libs_complete() {
	[[ -f $LIBS/kafka_2.13-$VERSION.jar && -f $STAMP ]] &&
		[[ $(<"$STAMP") == "$(sha256sum <"$POM" | cut -d' ' -f1)" ]]
}

cmd_fetch() {
	local tmp
	libs_complete && return 0
	mkdir -p "$CACHE_DIR"
	# Two runs at once (e.g. parallel test jobs) must not both move into libs/.
	exec 9>"$CACHE_DIR/.kafka-fetch.lock"
	flock 9
	if libs_complete; then
		exec 9>&-
		return 0
	fi
	command -v mvn >/dev/null 2>&1 || "$ROOT/scripts/install-deps.sh" kafka
	log "fetching Kafka $VERSION from Maven Central (first run only)…"
	# Into a temp folder first: an interrupted download never looks complete.
	tmp=$(mktemp -d "$CACHE_DIR/.kafka-$VERSION.XXXXXX")
	# shellcheck disable=SC2064 # expand $tmp now
	trap "rm -rf '$tmp'" EXIT
	# Output to a file: Maven 3.8 prints stray ANSI resets even with -q -B.
	if ! mvn -q -B -f "$POM" dependency:copy-dependencies \
		-DoutputDirectory="$tmp/libs" -DincludeScope=runtime \
		-Dkafka.version="$VERSION" >"$tmp/mvn.log" 2>&1; then
		tail -n 40 "$tmp/mvn.log" >&2
		die "Maven could not fetch Kafka $VERSION (output above)"
	fi
	[[ -f $tmp/libs/kafka_2.13-$VERSION.jar ]] ||
		die "Maven finished but kafka_2.13-$VERSION.jar is missing"
	mkdir -p "$LIB_PARENT"
	rm -rf "$LIBS"
	mv "$tmp/libs" "$LIBS"
	# The stamp last: only a fully moved libs/ counts as complete.
	sha256sum <"$POM" | cut -d' ' -f1 >"$STAMP"
	rm -rf "$tmp"
	trap - EXIT
	exec 9>&-
	log "Kafka $VERSION jars in $LIBS ($(find "$LIBS" -name '*.jar' | wc -l) jars)"
}

# metadata: kcat's broker list; fails when the broker does not answer.
metadata() {
	timeout 10 kcat -b "$HOST:$ZKCHAT_KAFKA_PORT" -L -m 3 2>/dev/null
}

# broker_answers: the metadata lists broker 1 at our address.
broker_answers() {
	local md
	md=$(metadata) || return 1
	[[ $md == *"broker 1 at $HOST:$ZKCHAT_KAFKA_PORT"* ]]
}

# LOG_OFFSET: size of server.log before this start, so an old
# "Kafka Server started" line from an earlier run does not count.
LOG_OFFSET=0
started_logged() {
	local f=$LOGS/server.log size
	[[ -f $f ]] || return 1
	size=$(stat -c %s "$f")
	((size >= LOG_OFFSET)) || LOG_OFFSET=0 # rolled over meanwhile
	tail -c +"$((LOG_OFFSET + 1))" "$f" | grep -q 'Kafka Server started'
}

kafka_ready() {
	started_logged && broker_answers
}

cmd_status() {
	local pid
	if pid_running "$PIDFILE" "$PATTERN"; then
		pid=$(pid_of "$PIDFILE")
		if broker_answers; then
			echo "kafka: running (pid $pid) on $HOST:$ZKCHAT_KAFKA_PORT (controller $HOST:$ZKCHAT_KAFKA_CONTROLLER_PORT), Kafka $VERSION"
			return 0
		fi
		echo "kafka: running (pid $pid) but not answering on $HOST:$ZKCHAT_KAFKA_PORT (log: $LOGS/server.log)"
		return 1
	fi
	if port_open "$HOST" "$ZKCHAT_KAFKA_PORT" || port_open "$HOST" "$ZKCHAT_KAFKA_CONTROLLER_PORT"; then
		echo "kafka: not running, but port $ZKCHAT_KAFKA_PORT or $ZKCHAT_KAFKA_CONTROLLER_PORT is taken by a process these scripts did not start"
	else
		echo "kafka: not running"
	fi
	return 3
}

# ensure_formatted: KRaft needs formatted storage (meta.properties) before
# the first start. The cluster id is generated once and kept in the data dir.
ensure_formatted() {
	local id out
	[[ -f $LOG_DIRS/meta.properties ]] && return 0
	if [[ ! -s $CLUSTER_ID_FILE ]]; then
		id=$(storage_tool random-uuid | tail -n 1)
		[[ $id =~ ^[A-Za-z0-9_-]{22}$ ]] || die "StorageTool random-uuid printed '$id', not a cluster id"
		printf '%s\n' "$id" >"$CLUSTER_ID_FILE"
	fi
	read -r id <"$CLUSTER_ID_FILE"
	log "formatting Kafka storage in $LOG_DIRS (cluster id $id)…"
	# Static controller.quorum.voters, so no --standalone / --initial-controllers.
	out=$(storage_tool format -t "$id" -c "$CFG" 2>&1) ||
		{ printf '%s\n' "$out" >&2; die "formatting Kafka storage failed"; }
	printf '%s\n' "$out" >>"$OUTFILE"
}

cmd_start() {
	local t0 rc port
	"$ROOT/scripts/install-deps.sh" kafka
	cmd_fetch

	if pid_running "$PIDFILE" "$PATTERN"; then
		# Idempotent; still make sure it is usable before saying yes.
		wait_for "$START_TIMEOUT" "$PIDFILE" broker_answers ||
			die "kafka (pid $(pid_of "$PIDFILE")) runs but does not answer; try: $0 restart"
		log "kafka already running (pid $(pid_of "$PIDFILE")) on $HOST:$ZKCHAT_KAFKA_PORT"
		return 0
	fi
	rm -f "$PIDFILE"
	for port in "$ZKCHAT_KAFKA_PORT" "$ZKCHAT_KAFKA_CONTROLLER_PORT"; do
		if port_open "$HOST" "$port"; then
			die "$HOST:$port is already in use by a process these scripts did not start (set ZKCHAT_KAFKA_PORT / ZKCHAT_KAFKA_CONTROLLER_PORT to use others)"
		fi
	done

	mkdir -p "$LOG_DIRS" "$LOGS"
	render_template "$TEMPLATES/server.properties" "$CFG" \
		"KAFKA_PORT=$ZKCHAT_KAFKA_PORT" \
		"CONTROLLER_PORT=$ZKCHAT_KAFKA_CONTROLLER_PORT" \
		"LOG_DIRS=$LOG_DIRS"
	cp "$TEMPLATES/log4j2.properties" "$LOG4J_CFG"
	ensure_formatted

	raise_nofile
	LOG_OFFSET=0
	[[ -f $LOGS/server.log ]] && LOG_OFFSET=$(stat -c %s "$LOGS/server.log")
	log "starting Kafka $VERSION on $HOST:$ZKCHAT_KAFKA_PORT, controller $HOST:$ZKCHAT_KAFKA_CONTROLLER_PORT (open files limit $(ulimit -n))…"
	t0=$(now_ms)
	start_bg "$PIDFILE" "$OUTFILE" \
		java -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
		-XX:+ExitOnOutOfMemoryError \
		-Djava.awt.headless=true \
		-Dkafka.logs.dir="$LOGS" \
		-Dlog4j2.configurationFile="$LOG4J_CFG" \
		-cp "$LIBS/*" \
		kafka.Kafka "$CFG"

	rc=0
	wait_for "$START_TIMEOUT" "$PIDFILE" kafka_ready || rc=$?
	if ((rc == 0)); then
		log "kafka ready on $HOST:$ZKCHAT_KAFKA_PORT after $(since_s "$t0") s (pid $(pid_of "$PIDFILE"), log $LOGS/server.log)"
		return 0
	fi
	if ((rc == 2)); then
		log "kafka exited during startup"
	else
		log "kafka did not become ready within ${START_TIMEOUT}s"
	fi
	show_log_tail "$LOGS/server.log" 40
	show_log_tail "$OUTFILE" 10
	# The last lines are mostly the shutdown; the cause is in the ERROR lines
	# (plus the exception message on the next line).
	if [[ -f $LOGS/server.log ]]; then
		log "errors logged during this start:"
		tail -c +"$((LOG_OFFSET + 1))" "$LOGS/server.log" |
			grep -A1 -E '^\[[^]]*\] (ERROR|FATAL) ' | tail -n 12 >&2 || true
	fi
	stop_pidfile "$PIDFILE" kafka "$PATTERN" "$STOP_TIMEOUT"
	exit 1
}

cmd_stop() {
	if ! pid_running "$PIDFILE" "$PATTERN"; then
		rm -f "$PIDFILE"
		log "kafka not running"
		return 0
	fi
	stop_pidfile "$PIDFILE" kafka "$PATTERN" "$STOP_TIMEOUT"
}

case ${1:-} in
fetch) cmd_fetch ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
restart)
	cmd_stop
	cmd_start
	;;
*)
	echo "usage: $0 fetch|start|stop|status|restart" >&2
	exit 2
	;;
esac
