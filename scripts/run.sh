#!/usr/bin/env bash
# The main job (`make run`): everything a fresh Debian machine needs to chat.
#
#   scripts/run.sh            install what is missing, start ZooKeeper and
#                             Kafka, build ./zkchat, create the zkchat tree,
#                             start a manager, print how to chat, then wait;
#                             Ctrl-C (or TERM) stops what this run started.
#   scripts/run.sh --no-wait  the same, but leave everything running and exit
#                             (also: ZKCHAT_RUN_DETACH=1). Stop it later with
#                             scripts/run.sh stop.
#   scripts/run.sh stop       stop the manager started by a run, and the
#                             servers a --no-wait run started.
#
# ZooKeeper and Kafka that already run (someone else's, or an earlier run's)
# are reused, and a run never stops servers it did not start itself;
# `scripts/servers.sh stop` stops the local servers whoever started them.
#
# zkchat's own settings come from the environment, as for every zkchat
# command: ZKCHAT_ZOOKEEPER (default 127.0.0.1:$ZKCHAT_ZK_PORT, may carry a
# chroot), ZKCHAT_KAFKA (default 127.0.0.1:$ZKCHAT_KAFKA_PORT),
# ZKCHAT_TOPIC_PREFIX, ZKCHAT_REPLICATION_FACTOR, ZKCHAT_LOG_LEVEL, ... When
# ZKCHAT_ZOOKEEPER or ZKCHAT_KAFKA names other hosts than the local server,
# that server is neither started nor stopped here.
#
# Files: $ZKCHAT_DATA_DIR (default .data)/manager.log, manager.pid, and
# run.started (the servers a --no-wait run started, for `run.sh stop`).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

S=$ROOT/scripts
BIN=$ROOT/zkchat
MANAGER_LOG=$DATA_DIR/manager.log
MANAGER_PID=$DATA_DIR/manager.pid
# Matches only a manager started from this checkout's binary (see pid_running).
MANAGER_PATTERN="$BIN manager"
STATE=$DATA_DIR/run.started
LEADER_TIMEOUT=60 # seconds until the manager must have joined the election
STANDBY_AFTER=5   # seconds after joining without "became leader": another leads

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

# ---------------------------------------------------------------------------
# Settings

export PATH=$PATH:/usr/local/go/bin # the official Go tarball's place
export CGO_ENABLED=1                # confluent-kafka-go is cgo

export ZKCHAT_ZOOKEEPER=${ZKCHAT_ZOOKEEPER:-$HOST:$ZKCHAT_ZK_PORT}
export ZKCHAT_KAFKA=${ZKCHAT_KAFKA:-$HOST:$ZKCHAT_KAFKA_PORT}

# is_local HOSTS PORT: HOSTS (a connection string without chroot) is the
# local server these scripts run on PORT.
is_local() {
	case $1 in
	"$HOST:$2" | "localhost:$2") return 0 ;;
	esac
	return 1
}

ZK_HOSTS=${ZKCHAT_ZOOKEEPER%%/*}
SERVERS=() # the local servers to look after, in start order
if is_local "$ZK_HOSTS" "$ZKCHAT_ZK_PORT"; then
	SERVERS+=(zookeeper)
fi
if is_local "$ZKCHAT_KAFKA" "$ZKCHAT_KAFKA_PORT"; then
	SERVERS+=(kafka)
fi

# ---------------------------------------------------------------------------
# run.started: the servers a --no-wait run started, one name per line.

state_has() { [[ -f $STATE ]] && grep -qx "$1" "$STATE"; }

state_add() {
	mkdir -p "$DATA_DIR"
	state_has "$1" || printf '%s\n' "$1" >>"$STATE"
}

state_remove() {
	[[ -f $STATE ]] || return 0
	grep -vx "$1" "$STATE" >"$STATE.tmp" || true
	mv -f "$STATE.tmp" "$STATE"
	[[ -s $STATE ]] || rm -f "$STATE"
}

# ---------------------------------------------------------------------------
# Stopping

stop_manager() {
	stop_pidfile "$MANAGER_PID" manager "$MANAGER_PATTERN" 20
}

# stop_servers NAME...: stop these local servers, Kafka before ZooKeeper.
stop_servers() {
	local names=" $* " rc=0
	if [[ $names == *" zookeeper "* && $names == *" kafka "* ]]; then
		"$S/servers.sh" stop || rc=1
	else
		[[ $names != *" kafka "* ]] || "$S/kafka.sh" stop || rc=1
		[[ $names != *" zookeeper "* ]] || "$S/zookeeper.sh" stop || rc=1
	fi
	local n
	for n in "$@"; do state_remove "$n"; done
	return "$rc"
}

cmd_stop() {
	local names=() n
	# IRC bridge: stop it here, before the manager, once it exists.
	stop_manager
	if [[ -f $STATE ]]; then
		while read -r n; do
			[[ $n == zookeeper || $n == kafka ]] && names+=("$n")
		done <"$STATE"
	fi
	if ((${#names[@]})); then
		stop_servers "${names[@]}"
	else
		log "no servers recorded as started by scripts/run.sh --no-wait; running ones stay up (scripts/servers.sh stop stops them)"
	fi
}

# ---------------------------------------------------------------------------
# Arguments

DETACH=${ZKCHAT_RUN_DETACH:-0}
[[ $DETACH == 1 || $DETACH == true || $DETACH == yes ]] && DETACH=1 || DETACH=0
case ${1:-} in
"") ;;
--no-wait | --detach) DETACH=1 ;;
stop)
	cmd_stop
	exit 0
	;;
-h | --help | help)
	usage
	exit 0
	;;
*)
	usage >&2
	exit 2
	;;
esac
(($# <= 1)) || {
	usage >&2
	exit 2
}

# ---------------------------------------------------------------------------
# Cleanup: on Ctrl-C / TERM, and on any failure, stop what this run started.

STARTED=()  # local servers this run started, in start order
BUILD_PID=""
MANAGER_STARTED=0
DONE=0 # 1 once a --no-wait run succeeded: leave everything up

# shellcheck disable=SC2317 # only called from traps
cleanup() {
	local rc=$?
	trap - EXIT
	trap '' INT TERM # a second Ctrl-C must not cut the cleanup short
	if ((DONE)); then
		exit "$rc"
	fi
	if [[ -n $BUILD_PID ]]; then
		kill -TERM -- "-$BUILD_PID" 2>/dev/null || kill -TERM "$BUILD_PID" 2>/dev/null || true
		wait "$BUILD_PID" 2>/dev/null || true
	fi
	# ---- IRC bridge: stop it here, before the manager, once it exists. ----
	if ((MANAGER_STARTED)); then
		stop_manager || true
	fi
	if ((${#STARTED[@]})); then
		stop_servers "${STARTED[@]}" || true
	fi
	exit "$rc"
}
trap cleanup EXIT
# Ctrl-C and TERM are how a waiting run is meant to end: exit 0.
trap 'log "interrupted; stopping…"; exit 0' INT TERM

# ---------------------------------------------------------------------------
# 1. Dependencies

"$S/install-deps.sh" all

# ---------------------------------------------------------------------------
# 2. Servers (like with-servers.sh: reuse what runs, remember what we start)

for name in "${SERVERS[@]}"; do
	rc=0
	"$S/$name.sh" status >/dev/null 2>&1 || rc=$?
	case $rc in
	0) log "$name already running; reusing it (this run will not stop it)" ;;
	3)
		port=$ZKCHAT_ZK_PORT
		[[ $name == kafka ]] && port=$ZKCHAT_KAFKA_PORT
		if port_open "$HOST" "$port"; then
			# Not started by these scripts from this checkout (another data
			# dir, another checkout, a system service): use it as it is.
			log "$name: $HOST:$port is served by a process these scripts did not start; using it as it is"
			continue
		fi
		# Recorded before starting, so an interrupted start is cleaned up too.
		STARTED+=("$name")
		"$S/$name.sh" start
		;;
	*)
		# Runs (someone else's start) but does not answer yet: wait for it,
		# do not stop it afterwards.
		"$S/$name.sh" start
		;;
	esac
done
if ! is_local "$ZK_HOSTS" "$ZKCHAT_ZK_PORT"; then
	log "ZooKeeper: using $ZKCHAT_ZOOKEEPER (not a local server of these scripts)"
fi
if ! is_local "$ZKCHAT_KAFKA" "$ZKCHAT_KAFKA_PORT"; then
	log "Kafka: using $ZKCHAT_KAFKA (not a local server of these scripts)"
	# kcat comes with the dependencies; a warning only, the manager retries.
	timeout 15 kcat -b "$ZKCHAT_KAFKA" -L -m 5 >/dev/null 2>&1 ||
		log "warning: Kafka at $ZKCHAT_KAFKA does not answer (yet); the manager keeps retrying"
fi

# ---------------------------------------------------------------------------
# 3. Build ./zkchat, with a line every 15 s while it runs.

log "building ./zkchat (go build; a first, cold build compiles confluent-kafka-go's cgo part: up to a minute)…"
t0=$(now_ms)
# Its own process group (setsid does not fork here, so $! is go's PID):
# cleanup() stops go and the compilers it runs at once.
setsid go build -o "$BIN" ./cmd/zkchat &
BUILD_PID=$!
next=15
while kill -0 "$BUILD_PID" 2>/dev/null; do
	sleep 0.5
	if (($(now_ms) - t0 >= next * 1000)) && kill -0 "$BUILD_PID" 2>/dev/null; then
		log "still building… ${next} s"
		next=$((next + 15))
	fi
done
rc=0
wait "$BUILD_PID" || rc=$?
BUILD_PID=""
((rc == 0)) || die "go build failed (exit $rc, output above)"
log "built $BIN in $(since_s "$t0") s"

# ---------------------------------------------------------------------------
# 4. The zkchat tree (the manager would create it too; this fails early and
#    clearly when ZooKeeper is not reachable).

rc=0
timeout 60 "$BIN" init || rc=$?
case $rc in
0) ;;
124) die "zkchat init got no ZooKeeper session within 60 s: is ZooKeeper at $ZKCHAT_ZOOKEEPER reachable?" ;;
*) die "zkchat init failed (exit $rc)" ;;
esac

# ---------------------------------------------------------------------------
# 5. The manager, in the background (its own session: it outlives a
#    --no-wait run and does not see the terminal's Ctrl-C; we stop it).

if pid_running "$MANAGER_PID" "$MANAGER_PATTERN"; then
	log "a manager of an earlier run is still running (pid $(pid_of "$MANAGER_PID")); replacing it with the new build"
	stop_manager
fi
mkdir -p "$DATA_DIR"
log_offset=0
[[ -f $MANAGER_LOG ]] && log_offset=$(stat -c %s "$MANAGER_LOG")
MANAGER_STARTED=1
start_bg "$MANAGER_PID" "$MANAGER_LOG" "$BIN" manager
manager_pid=$(pid_of "$MANAGER_PID")
log "manager started (pid $manager_pid, log $MANAGER_LOG); waiting until it leads…"

# manager_logged TEXT: this run's part of the manager log contains TEXT.
manager_logged() {
	tail -c +"$((log_offset + 1))" "$MANAGER_LOG" 2>/dev/null | grep -q -- "$1"
}

t0=$(now_ms)
joined_at=""
role=""
while :; do
	if manager_logged 'became leader'; then
		role=leader
		break
	fi
	if ! pid_running "$MANAGER_PID" "$MANAGER_PATTERN"; then
		show_log_tail "$MANAGER_LOG" 20
		die "the manager exited during startup (log $MANAGER_LOG)"
	fi
	if [[ -z $joined_at ]] && manager_logged 'joined election'; then
		joined_at=$SECONDS
	fi
	if [[ -n $joined_at ]] && ((SECONDS - joined_at >= STANDBY_AFTER)); then
		# Another manager leads this tree (same ZooKeeper chroot); ours
		# takes over if it goes away. Chatting works either way.
		role=standby
		break
	fi
	if (($(now_ms) - t0 >= LEADER_TIMEOUT * 1000)); then
		show_log_tail "$MANAGER_LOG" 20
		die "the manager did not join the election within ${LEADER_TIMEOUT}s (log $MANAGER_LOG)"
	fi
	sleep 0.2
done
if [[ $role == leader ]]; then
	log "manager is the leader after $(since_s "$t0") s"
else
	log "another manager leads ${ZKCHAT_ZOOKEEPER}; this one stands by and takes over if it stops"
fi

# ---------------------------------------------------------------------------
# 6. IRC bridge: start it here once it exists (after the manager, before the
#    banner), record its pid file, stop it in cleanup() and cmd_stop() before
#    the manager, and add its address to the banner below.

# ---------------------------------------------------------------------------
# 7. How to chat

# The settings other terminals need to reach the same zkchat.
exports=()
[[ $ZKCHAT_ZOOKEEPER == "127.0.0.1:2181" ]] || exports+=("ZKCHAT_ZOOKEEPER=$ZKCHAT_ZOOKEEPER")
[[ $ZKCHAT_KAFKA == "127.0.0.1:9092" ]] || exports+=("ZKCHAT_KAFKA=$ZKCHAT_KAFKA")
[[ -z ${ZKCHAT_TOPIC_PREFIX:-} ]] || exports+=("ZKCHAT_TOPIC_PREFIX=$ZKCHAT_TOPIC_PREFIX")

rel() { printf '%s\n' "${1#"$ROOT"/}"; }

{
	echo
	echo "zkchat is up: ZooKeeper $ZKCHAT_ZOOKEEPER, Kafka $ZKCHAT_KAFKA, manager pid $manager_pid ($role)."
	echo
	echo "Chat from two other terminals:"
	echo
	echo "  cd $ROOT"
	echo "  export PATH=\"$ROOT:\$PATH\"     # or type ./zkchat instead of zkchat"
	if ((${#exports[@]})); then
		echo "  export ${exports[*]}"
	fi
	echo "  zkchat register alice"
	echo "  zkchat register bob"
	echo
	echo "  terminal 1:  zkchat read --follow bob    # bob is online and prints what he gets"
	echo "  terminal 2:  zkchat chat alice           # then type:  bob: hello"
	echo "  anywhere:    zkchat users --online"
	echo
	echo "Only online users can send, and only to online users: start bob first."
	echo
	echo "Logs: manager     $(rel "$MANAGER_LOG")"
	[[ " ${SERVERS[*]} " != *" zookeeper "* ]] ||
		echo "      ZooKeeper   $(rel "$DATA_DIR/zookeeper/zookeeper.log")"
	[[ " ${SERVERS[*]} " != *" kafka "* ]] ||
		echo "      Kafka       $(rel "$DATA_DIR/kafka/logs/server.log")"
	echo
	if ((DETACH)); then
		echo "Everything keeps running. Stop it with:  scripts/run.sh stop"
		echo "(the manager, and the servers this run started; scripts/servers.sh stop stops the servers in any case)"
	else
		if ((${#STARTED[@]})); then
			echo "Ctrl-C here stops everything: the manager and the servers this run started (${STARTED[*]})."
		else
			echo "Ctrl-C here stops the manager. ZooKeeper and Kafka were running already and stay up"
			echo "(scripts/servers.sh stop stops them)."
		fi
	fi
	echo
}

if ((DETACH)); then
	for name in "${STARTED[@]}"; do state_add "$name"; done
	DONE=1
	exit 0
fi

# ---------------------------------------------------------------------------
# 8. Wait until Ctrl-C / TERM (traps above), or until the manager dies.

rc=0
wait "$manager_pid" || rc=$?
# wait returns early (> 128) for a trapped signal; the trap has run by then
# and exited. Here the manager ended on its own (or `run.sh stop` ended it).
if pid_running "$MANAGER_PID" "$MANAGER_PATTERN"; then
	die "lost track of the manager (pid $manager_pid)"
fi
rm -f "$MANAGER_PID"
MANAGER_STARTED=0
if ((rc == 0)); then
	# A clean exit: someone stopped it (scripts/run.sh stop, kill -TERM).
	log "the manager stopped; stopping the rest"
	exit 0
fi
show_log_tail "$MANAGER_LOG" 10
die "the manager exited with status $rc; stopping (log $MANAGER_LOG)"
