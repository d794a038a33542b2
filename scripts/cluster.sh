#!/usr/bin/env bash
# A 3-server ZooKeeper ensemble and a 3-node Kafka KRaft cluster on 127.0.0.1,
# groundwork for fault-injection tests (kill -STOP / -KILL one member by pid).
#
#   scripts/cluster.sh start [NAME]   start everything (or one member) and wait
#   scripts/cluster.sh stop [NAME]    stop everything (or one member), gracefully
#   scripts/cluster.sh kill NAME      SIGKILL one member (its whole process group)
#   scripts/cluster.sh status         one line per member; see exit codes below
#   scripts/cluster.sh pids           "zk1 <pid>" ... "kafka3 <pid>" ("-" = down)
#   scripts/cluster.sh zk-leader      the name of the ZooKeeper leader (zk1..zk3)
#   scripts/cluster.sh env            the connection strings (as start prints)
#
# NAME is zk1, zk2, zk3, kafka1, kafka2 or kafka3.
#
#   ZooKeeper  Debian's zookeeper package, clients on 127.0.0.1:22181..22183,
#              quorum 22881..22883, election 23881..23883; config from
#              testdata/cluster/zoo.cfg. Ready: all three answer "srvr" and
#              exactly one says "Mode: leader".
#   Kafka      Kafka $ZKCHAT_KAFKA_VERSION (jars from scripts/kafka.sh fetch),
#              every node broker + controller, brokers on 127.0.0.1:29092..29094,
#              controllers on 29192..29194; config from
#              testdata/cluster/server.properties. Ready: kcat lists 3 brokers.
#
# ZKCHAT_CLUSTER_BASE (0, 10, 20 .. 90; default 0) is added to every port
# above, so several clusters (each with its own ZKCHAT_DATA_DIR) can run side
# by side without their port ranges overlapping.
#
# Everything lives in $ZKCHAT_DATA_DIR/cluster/<name>/ (config, data, logs,
# <name>.pid). The servers of scripts/zookeeper.sh and scripts/kafka.sh
# (2181, 9092/9093) are separate and never touched. Nothing is exported; start
# and env print
#   ZKCHAT_ZOOKEEPER=127.0.0.1:22181,... ZKCHAT_KAFKA=127.0.0.1:29092,...
# status exits 0 when every member runs and answers (and ZooKeeper has a
# leader), 1 when some member is down or not answering, 3 when none runs.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CLUSTER_DIR=$DATA_DIR/cluster
TEMPLATES=$ROOT/testdata/cluster
VERSION=$ZKCHAT_KAFKA_VERSION
LIBS=$CACHE_DIR/kafka-$VERSION/libs
KAFKA_ID_FILE=$CLUSTER_DIR/kafka-cluster.id

ZK_NAMES=(zk1 zk2 zk3)
KAFKA_NAMES=(kafka1 kafka2 kafka3)
ALL_NAMES=("${ZK_NAMES[@]}" "${KAFKA_NAMES[@]}")

ZK_MAIN=org.apache.zookeeper.server.quorum.QuorumPeerMain
# As scripts/zookeeper.sh: Debian's zookeeper.jar plus log4j 1.2 and its
# slf4j binding (else the server logs nothing).
ZK_CLASSPATH=/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar
ZK_START_TIMEOUT=60
KAFKA_START_TIMEOUT=120
STOP_TIMEOUT=30

BASE=${ZKCHAT_CLUSTER_BASE:-0}
[[ $BASE =~ ^[0-9]?0$ ]] || die "ZKCHAT_CLUSTER_BASE=$BASE: want 0, 10, 20 .. 90"
ZK_CONNECT=$HOST:$((22181 + BASE)),$HOST:$((22182 + BASE)),$HOST:$((22183 + BASE))
KAFKA_CONNECT=$HOST:$((29092 + BASE)),$HOST:$((29093 + BASE)),$HOST:$((29094 + BASE))

# Per-member facts, from the name.
num_of() { printf '%s\n' "${1//[!0-9]/}"; }
zk_port() { printf '%s\n' "$((22180 + BASE + $(num_of "$1")))"; }
kafka_port() { printf '%s\n' "$((29091 + BASE + $(num_of "$1")))"; }
controller_port() { printf '%s\n' "$((29191 + BASE + $(num_of "$1")))"; }
quorum_port() { printf '%s\n' "$((22880 + BASE + $1))"; }
election_port() { printf '%s\n' "$((23880 + BASE + $1))"; }
member_dir() { printf '%s\n' "$CLUSTER_DIR/$1"; }
pidfile_of() { printf '%s\n' "$CLUSTER_DIR/$1/$1.pid"; }
cfg_of() {
	case $1 in
	zk*) printf '%s\n' "$CLUSTER_DIR/$1/conf/zoo.cfg" ;;
	kafka*) printf '%s\n' "$CLUSTER_DIR/$1/server.properties" ;;
	esac
}
# pattern_of NAME: what the member's command line must contain (guards
# against stale pid files whose PID now belongs to something else).
pattern_of() {
	case $1 in
	zk*) printf '%s\n' "$ZK_MAIN $(cfg_of "$1")" ;;
	kafka*) printf '%s\n' "kafka.Kafka $(cfg_of "$1")" ;;
	esac
}
ports_of() {
	local n
	n=$(num_of "$1")
	case $1 in
	zk*) printf '%s\n' "$(zk_port "$1")" "$(quorum_port "$n")" "$(election_port "$n")" ;;
	kafka*) printf '%s\n' "$(kafka_port "$1")" "$(controller_port "$1")" ;;
	esac
}

valid_name() {
	local n
	for n in "${ALL_NAMES[@]}"; do
		[[ $1 == "$n" ]] && return 0
	done
	return 1
}

running() { pid_running "$(pidfile_of "$1")" "$(pattern_of "$1")"; }

# --- probes -----------------------------------------------------------------

# zk_srvr NAME: the member's answer to "srvr" (fails when none).
zk_srvr() {
	# shellcheck disable=SC2016 # $1/$2 expand in the inner bash
	timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf srvr >&3 && cat <&3' \
		_ "$HOST" "$(zk_port "$1")" 2>/dev/null
}

# zk_mode NAME: leader / follower (fails when the member does not serve).
zk_mode() {
	local out
	out=$(zk_srvr "$1") || return 1
	[[ $out =~ Mode:\ ([a-z]+) ]] || return 1
	printf '%s\n' "${BASH_REMATCH[1]}"
}

zk_member_ready() {
	local m
	m=$(zk_mode "$1") || return 1
	[[ $m == leader || $m == follower ]]
}

# zk_ensemble_ready: every member serves and exactly one is the leader.
zk_ensemble_ready() {
	local n m leaders=0
	for n in "${ZK_NAMES[@]}"; do
		m=$(zk_mode "$n") || return 1
		[[ $m == leader ]] && leaders=$((leaders + 1))
	done
	((leaders == 1))
}

# kafka_metadata [PORT]: kcat's broker list (fails when nobody answers).
kafka_metadata() {
	local bootstrap=${1:-$KAFKA_CONNECT}
	[[ $bootstrap == *:* ]] || bootstrap=$HOST:$bootstrap
	timeout 10 kcat -b "$bootstrap" -L -m 3 2>/dev/null
}

# kafka_member_ready NAME: the broker answers on its own port and the
# cluster metadata lists it (registered and unfenced).
kafka_member_ready() {
	local md
	md=$(kafka_metadata "$(kafka_port "$1")") || return 1
	[[ $md == *"broker $(num_of "$1") at $HOST:$(kafka_port "$1")"* ]]
}

kafka_cluster_ready() {
	local md
	md=$(timeout 10 kcat -b "$KAFKA_CONNECT" -L -m 3 2>/dev/null) || return 1
	[[ $md == *" 3 brokers:"* ]]
}

member_ready() {
	case $1 in
	zk*) zk_member_ready "$1" ;;
	kafka*) kafka_member_ready "$1" ;;
	esac
}

# --- start ------------------------------------------------------------------

ensure_deps() {
	"$ROOT/scripts/install-deps.sh" zookeeper
	"$ROOT/scripts/install-deps.sh" kafka
	[[ -f $LIBS/kafka_2.13-$VERSION.jar ]] || "$ROOT/scripts/kafka.sh" fetch
}

storage_tool() {
	local name=$1
	shift
	java -Xmx256m -Dkafka.logs.dir="$CLUSTER_DIR/$name/logs" \
		-Dlog4j2.configurationFile="$ROOT/testdata/kafka/log4j2.properties" \
		-cp "$LIBS/*" kafka.tools.StorageTool "$@"
}

# kafka_cluster_id: generated once, shared by all three nodes.
kafka_cluster_id() {
	local id
	if [[ ! -s $KAFKA_ID_FILE ]]; then
		mkdir -p "$CLUSTER_DIR/kafka1/logs"
		id=$(storage_tool kafka1 random-uuid | tail -n 1)
		[[ $id =~ ^[A-Za-z0-9_-]{22}$ ]] || die "StorageTool random-uuid printed '$id', not a cluster id"
		printf '%s\n' "$id" >"$KAFKA_ID_FILE"
	fi
	read -r id <"$KAFKA_ID_FILE"
	printf '%s\n' "$id"
}

# prepare NAME: render the config (and myid / formatted storage).
prepare() {
	local name=$1 dir n id out
	dir=$(member_dir "$name")
	n=$(num_of "$name")
	case $name in
	zk*)
		mkdir -p "$dir/data" "$dir/conf"
		render_template "$TEMPLATES/zoo.cfg" "$(cfg_of "$name")" \
			"DATA_DIR=$dir/data" "CLIENT_PORT=$(zk_port "$name")" \
			"QUORUM_1=$(quorum_port 1)" "QUORUM_2=$(quorum_port 2)" "QUORUM_3=$(quorum_port 3)" \
			"ELECTION_1=$(election_port 1)" "ELECTION_2=$(election_port 2)" "ELECTION_3=$(election_port 3)"
		printf '%s\n' "$n" >"$dir/data/myid"
		cp "$ROOT/testdata/zookeeper/log4j.properties" "$dir/conf/log4j.properties"
		;;
	kafka*)
		mkdir -p "$dir/data" "$dir/logs"
		render_template "$TEMPLATES/server.properties" "$(cfg_of "$name")" \
			"NODE_ID=$n" "KAFKA_PORT=$(kafka_port "$name")" \
			"CONTROLLER_PORT=$(controller_port "$name")" "LOG_DIRS=$dir/data" \
			"VOTERS=1@$HOST:$(controller_port kafka1),2@$HOST:$(controller_port kafka2),3@$HOST:$(controller_port kafka3)"
		if [[ ! -f $dir/data/meta.properties ]]; then
			id=$(kafka_cluster_id)
			log "$name: formatting storage (cluster id $id)…"
			out=$(storage_tool "$name" format -t "$id" -c "$(cfg_of "$name")" 2>&1) ||
				{ printf '%s\n' "$out" >&2; die "$name: formatting Kafka storage failed"; }
			printf '%s\n' "$out" >>"$dir/logs/kafka.out"
		fi
		;;
	esac
}

# launch NAME: start the member's JVM in the background (no waiting).
# Prints nothing; returns 1 when it already runs.
launch() {
	local name=$1 dir pidfile port
	dir=$(member_dir "$name")
	pidfile=$(pidfile_of "$name")
	running "$name" && return 1
	rm -f "$pidfile"
	while read -r port; do
		if port_open "$HOST" "$port"; then
			die "$name: $HOST:$port is already in use by a process this script did not start"
		fi
	done < <(ports_of "$name")
	raise_nofile
	case $name in
	zk*)
		start_bg "$pidfile" "$dir/zookeeper.out" \
			java -Xms64m -Xmx192m \
			-XX:+ExitOnOutOfMemoryError \
			-Djava.awt.headless=true \
			-Dzookeeper.log.dir="$dir" \
			-Dlog4j.configuration="file:$dir/conf/log4j.properties" \
			-cp "$dir/conf:$ZK_CLASSPATH" \
			"$ZK_MAIN" "$(cfg_of "$name")"
		;;
	kafka*)
		start_bg "$pidfile" "$dir/logs/kafka.out" \
			java -Xms256m -Xmx384m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
			-XX:+ExitOnOutOfMemoryError \
			-Djava.awt.headless=true \
			-Dkafka.logs.dir="$dir/logs" \
			-Dlog4j2.configurationFile="$ROOT/testdata/kafka/log4j2.properties" \
			-cp "$LIBS/*" \
			kafka.Kafka "$(cfg_of "$name")"
		;;
	esac
	log "$name: started (pid $(pid_of "$pidfile"))"
}

# wait_member NAME CHECK TIMEOUT: wait for CHECK; on failure show the logs.
wait_member() {
	local name=$1 check=$2 timeout=$3 rc=0 logf
	wait_for "$timeout" "$(pidfile_of "$name")" "$check" "$name" || rc=$?
	((rc == 0)) && return 0
	if ((rc == 2)); then
		log "$name exited during startup"
	else
		log "$name did not become ready within ${timeout}s"
	fi
	case $name in
	zk*) logf=$(member_dir "$name")/zookeeper.log ;;
	kafka*) logf=$(member_dir "$name")/logs/server.log ;;
	esac
	show_log_tail "$logf" 30
	return 1
}

fail_start() {
	log "start failed; the members stay as they are (see: $0 status, $0 stop)"
	exit 1
}

# start_all: all ZooKeeper members at once (a quorum needs two), then all
# Kafka nodes at once (the controllers need two voters).
start_all() {
	local t0 tz tk n pids=() pid
	t0=$(now_ms)
	ensure_deps
	mkdir -p "$CLUSTER_DIR"
	for n in "${ZK_NAMES[@]}"; do prepare "$n"; done
	for n in "${ZK_NAMES[@]}"; do
		launch "$n" 8>&- || log "$n: already running (pid $(pid_of "$(pidfile_of "$n")"))"
	done
	# Format the Kafka storage while ZooKeeper elects (three JVMs in parallel).
	kafka_cluster_id >/dev/null
	for n in "${KAFKA_NAMES[@]}"; do
		prepare "$n" &
		pids+=("$!")
	done
	for pid in "${pids[@]}"; do wait "$pid" || die "preparing the Kafka nodes failed"; done
	for n in "${KAFKA_NAMES[@]}"; do
		launch "$n" 8>&- || log "$n: already running (pid $(pid_of "$(pidfile_of "$n")"))"
	done

	for n in "${ZK_NAMES[@]}"; do
		wait_member "$n" zk_member_ready "$ZK_START_TIMEOUT" || fail_start
	done
	wait_for "$ZK_START_TIMEOUT" "" zk_ensemble_ready ||
		{ log "ZooKeeper: no single leader within ${ZK_START_TIMEOUT}s"; fail_start; }
	tz=$(since_s "$t0")
	log "ZooKeeper ensemble ready after $tz s (leader: $(zk_leader))"
	for n in "${KAFKA_NAMES[@]}"; do
		wait_member "$n" kafka_member_ready "$KAFKA_START_TIMEOUT" || fail_start
	done
	wait_for "$KAFKA_START_TIMEOUT" "" kafka_cluster_ready ||
		{ log "Kafka: not 3 brokers listed within ${KAFKA_START_TIMEOUT}s"; fail_start; }
	tk=$(since_s "$t0")
	log "Kafka cluster ready after $tk s (3 brokers)"
	log "cluster ready after $(since_s "$t0") s; data in $CLUSTER_DIR"
	cmd_env
}

start_one() {
	local name=$1 t0 check timeout
	t0=$(now_ms)
	ensure_deps
	prepare "$name"
	if ! launch "$name" 8>&-; then
		log "$name: already running (pid $(pid_of "$(pidfile_of "$name")"))"
	fi
	case $name in
	zk*) check=zk_member_ready timeout=$ZK_START_TIMEOUT ;;
	kafka*) check=kafka_member_ready timeout=$KAFKA_START_TIMEOUT ;;
	esac
	wait_member "$name" "$check" "$timeout" || fail_start
	case $name in
	zk*) log "$name ready after $(since_s "$t0") s (Mode: $(zk_mode "$name"))" ;;
	kafka*) log "$name ready after $(since_s "$t0") s (listed as broker $(num_of "$name"))" ;;
	esac
}

# --- stop / kill --------------------------------------------------------------

stop_one() {
	local name=$1
	if ! running "$name"; then
		rm -f "$(pidfile_of "$name")"
		return 0
	fi
	stop_pidfile "$(pidfile_of "$name")" "$name" "$(pattern_of "$name")" "$STOP_TIMEOUT"
}

# stop_group NAME...: stop the members in parallel (one by one, the last
# Kafka nodes would wait for a controller quorum that is already gone).
stop_group() {
	local n pids=() pid
	for n in "$@"; do
		stop_one "$n" &
		pids+=("$!")
	done
	for pid in "${pids[@]}"; do wait "$pid" || true; done
}

stop_all() {
	local t0
	t0=$(now_ms)
	stop_group "${KAFKA_NAMES[@]}"
	stop_group "${ZK_NAMES[@]}"
	log "cluster stopped after $(since_s "$t0") s"
}

kill_one() {
	local name=$1 pidfile pid
	pidfile=$(pidfile_of "$name")
	if ! running "$name"; then
		rm -f "$pidfile"
		log "$name: not running"
		return 0
	fi
	pid=$(pid_of "$pidfile")
	# The JVM leads its own process group (start_bg), so this takes it all.
	kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
	while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
	[[ $(pid_of "$pidfile") != "$pid" ]] || rm -f "$pidfile"
	log "$name: killed (pid $pid)"
}

# --- status -------------------------------------------------------------------

zk_leader() {
	local n
	for n in "${ZK_NAMES[@]}"; do
		if [[ $(zk_mode "$n" 2>/dev/null) == leader ]]; then
			printf '%s\n' "$n"
			return 0
		fi
	done
	return 1
}

cmd_pids() {
	local n pid
	for n in "${ALL_NAMES[@]}"; do
		pid=-
		running "$n" && pid=$(pid_of "$(pidfile_of "$n")")
		printf '%s %s\n' "$n" "$pid"
	done
}

cmd_env() {
	printf 'ZKCHAT_ZOOKEEPER=%s ZKCHAT_KAFKA=%s\n' "$ZK_CONNECT" "$KAFKA_CONNECT"
}

cmd_status() {
	local n pid mode md up=0 healthy=1 brokers
	for n in "${ZK_NAMES[@]}"; do
		if running "$n"; then
			up=$((up + 1))
			pid=$(pid_of "$(pidfile_of "$n")")
			if mode=$(zk_mode "$n"); then
				echo "$n: running (pid $pid) on $HOST:$(zk_port "$n"), Mode: $mode"
			else
				echo "$n: running (pid $pid) but not serving on $HOST:$(zk_port "$n")"
				healthy=0
			fi
		else
			echo "$n: not running"
			healthy=0
		fi
	done
	zk_ensemble_ready || healthy=0
	md=$(kafka_metadata) || md=""
	for n in "${KAFKA_NAMES[@]}"; do
		if running "$n"; then
			up=$((up + 1))
			pid=$(pid_of "$(pidfile_of "$n")")
			if [[ $md == *"broker $(num_of "$n") at $HOST:$(kafka_port "$n")"* ]]; then
				echo "$n: running (pid $pid) on $HOST:$(kafka_port "$n") (controller $HOST:$(controller_port "$n")), listed as broker $(num_of "$n")"
			else
				echo "$n: running (pid $pid) but not listed as a live broker"
				healthy=0
			fi
		else
			echo "$n: not running"
			healthy=0
		fi
	done
	brokers=0
	[[ $md =~ \ ([0-9]+)\ brokers: ]] && brokers=${BASH_REMATCH[1]}
	echo "kafka: $brokers broker(s) listed"
	((up > 0)) || return 3
	((healthy)) || return 1
	cmd_env
	return 0
}

# --- main ---------------------------------------------------------------------

usage() {
	echo "usage: $0 start [NAME] | stop [NAME] | kill NAME | status | pids | zk-leader | env" >&2
	echo "       NAME: ${ALL_NAMES[*]}" >&2
	exit 2
}

# Serialize start/stop/kill (parallel runs must not race on pid files).
lock() {
	mkdir -p "$CLUSTER_DIR"
	exec 8>"$CLUSTER_DIR/.lock"
	flock 8
}

cmd=${1:-}
name=${2:-}
if [[ -n $name ]] && ! valid_name "$name"; then
	echo "$0: unknown member '$name'" >&2
	usage
fi
case $cmd in
start)
	lock
	if [[ -n $name ]]; then start_one "$name"; else start_all; fi
	;;
stop)
	lock
	if [[ -n $name ]]; then stop_one "$name"; else stop_all; fi
	;;
kill)
	[[ -n $name ]] || usage
	lock
	kill_one "$name"
	;;
status) cmd_status ;;
pids) cmd_pids ;;
zk-leader) zk_leader ;;
env) cmd_env ;;
*) usage ;;
esac
