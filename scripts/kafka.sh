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
#
# ZKCHAT_KAFKA_SASL=1 (on a fresh data dir: SCRAM users are made when the
# storage is formatted) turns security on: the client listener becomes
# SASL_PLAINTEXT with SCRAM-SHA-256, the StandardAuthorizer refuses whatever
# no ACL allows, and two SCRAM users exist: the super user
# $ZKCHAT_KAFKA_ADMIN_USER (default admin) and zkchat's principal
# $ZKCHAT_KAFKA_SASL_USER (default zkchat). Their passwords are generated
# once into $ZKCHAT_DATA_DIR/kafka/sasl/<user>.auth ("user:password", mode
# 0600: give zkchat ZKCHAT_KAFKA_AUTH_FILE=.../zkchat.auth). zkchat's ACLs
# (every operation on topics and groups starting with ZKCHAT_TOPIC_PREFIX)
# are granted with `zkchat kafka-acls`, as the admin. The controller
# listener stays PLAINTEXT on 127.0.0.1 (SCRAM cannot serve it in KRaft), and
# its anonymous principal is a super user, as the broker's requests to its
# controller need; only local processes can reach it. The passwords appear on
# the StorageTool command line once, while the storage is formatted.
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
SASL=${ZKCHAT_KAFKA_SASL:-0}
SASL_DIR=$KAFKA_DIR/sasl
ADMIN_USER=${ZKCHAT_KAFKA_ADMIN_USER:-admin}
ZKCHAT_USER=${ZKCHAT_KAFKA_SASL_USER:-zkchat}
# The admin's librdkafka settings (kcat -F, say); its presence marks SASL mode.
KCAT_CFG=$SASL_DIR/kcat.conf
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

# sasl_password USER: the user's password, generated on first use into
# $SASL_DIR/USER.auth ("user:password", mode 0600).
sasl_password() {
	local f=$SASL_DIR/$1.auth line
	if [[ ! -s $f ]]; then
		(
			umask 077
			mkdir -p "$SASL_DIR"
			printf '%s:%s\n' "$1" "$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')" >"$f.tmp"
			mv -f "$f.tmp" "$f"
		)
	fi
	read -r line <"$f"
	printf '%s\n' "${line#*:}"
}

# sasl_config: the broker settings of SASL mode, appended to the rendered
# server.properties (later keys win), and kcat's client settings.
sasl_config() {
	local admin_pw
	admin_pw=$(sasl_password "$ADMIN_USER")
	sasl_password "$ZKCHAT_USER" >/dev/null
	chmod 600 "$CFG"
	cat >>"$CFG" <<PROPS

# ZKCHAT_KAFKA_SASL=1 (scripts/kafka.sh): SASL/SCRAM and ACLs.
listeners=SASL_PLAINTEXT://$HOST:$ZKCHAT_KAFKA_PORT,CONTROLLER://$HOST:$ZKCHAT_KAFKA_CONTROLLER_PORT
advertised.listeners=SASL_PLAINTEXT://$HOST:$ZKCHAT_KAFKA_PORT
inter.broker.listener.name=SASL_PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-256
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-256
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$ADMIN_USER" password="$admin_pw";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:$ADMIN_USER;User:ANONYMOUS
allow.everyone.if.no.acl.found=false
PROPS
	(
		umask 077
		printf 'security.protocol=SASL_PLAINTEXT\nsasl.mechanisms=SCRAM-SHA-256\nsasl.username=%s\nsasl.password=%s\n' \
			"$ADMIN_USER" "$admin_pw" >"$KCAT_CFG"
	)
}

# broker_answers: the metadata lists broker 1 at our address. With SASL the
# SASL listener accepting connections has to do: Debian's kcat 1.7
# (librdkafka 2.0.2) fails SCRAM against Kafka 4.1 ("invalid credentials"
# with the right password; librdkafka 2.11, which zkchat uses, succeeds).
broker_answers() {
	local md
	if [[ -f $KCAT_CFG ]]; then
		port_open "$HOST" "$ZKCHAT_KAFKA_PORT"
		return
	fi
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
	local scram=()
	if [[ $SASL == 1 ]]; then
		scram=(--add-scram "SCRAM-SHA-256=[name=$ADMIN_USER,password=$(sasl_password "$ADMIN_USER")]"
			--add-scram "SCRAM-SHA-256=[name=$ZKCHAT_USER,password=$(sasl_password "$ZKCHAT_USER")]")
	fi
	# Static controller.quorum.voters, so no --standalone / --initial-controllers.
	out=$(storage_tool format -t "$id" -c "$CFG" "${scram[@]}" 2>&1) ||
		{ printf '%s\n' "$out" >&2; die "formatting Kafka storage failed"; }
	printf '%s\n' "$out" >>"$OUTFILE"
	[[ $SASL == 1 ]] && touch "$SASL_DIR/formatted"
	return 0
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
	if [[ $SASL == 1 ]]; then
		if [[ -f $LOG_DIRS/meta.properties && ! -f $SASL_DIR/formatted ]]; then
			die "ZKCHAT_KAFKA_SASL=1 needs storage formatted with SCRAM users; $LOG_DIRS was formatted without (use another ZKCHAT_DATA_DIR)"
		fi
		sasl_config
	else
		rm -f "$KCAT_CFG"
	fi
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
		if [[ $SASL == 1 ]]; then
			log "SASL/SCRAM on: credentials in $SASL_DIR ($ADMIN_USER.auth: super user, $ZKCHAT_USER.auth: zkchat's principal; grant its ACLs with zkchat kafka-acls)"
		fi
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
