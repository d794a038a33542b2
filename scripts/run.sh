#!/usr/bin/env bash
# The main job (`make run`): everything a fresh Debian machine needs to chat,
# from the zkchat CLI and from any IRC client.
#
#   scripts/run.sh            install what is missing, start ZooKeeper, Kafka
#                             and InspIRCd, build ./zkchat, create the zkchat
#                             tree, start the IRC bridge (`zkchat bridge`,
#                             which has a manager built in), print how to
#                             chat, then wait; Ctrl-C (or TERM) stops what
#                             this run started.
#   scripts/run.sh --no-wait  the same, but leave everything running and exit
#                             (also: ZKCHAT_RUN_DETACH=1). Stop it later with
#                             scripts/run.sh stop.
#   scripts/run.sh stop       stop the bridge started by a run, and the
#                             servers a --no-wait run started (each with its
#                             own script; servers it did not start stay up).
#
# ZooKeeper, Kafka and InspIRCd that already run (someone else's, or an
# earlier run's) are reused, and a run never stops servers it did not start
# itself; `scripts/servers.sh stop` stops the local servers whoever started
# them.
#
# zkchat's own settings come from the environment, as for every zkchat
# command: ZKCHAT_ZOOKEEPER (default 127.0.0.1:$ZKCHAT_ZK_PORT, may carry a
# chroot), ZKCHAT_KAFKA (default 127.0.0.1:$ZKCHAT_KAFKA_PORT),
# ZKCHAT_TOPIC_PREFIX, ZKCHAT_REPLICATION_FACTOR, ZKCHAT_LOG_LEVEL, ... When
# ZKCHAT_ZOOKEEPER or ZKCHAT_KAFKA names other hosts than the local server,
# that server is neither started nor stopped here.
#
# The bridge connects to ZKCHAT_IRC_BRIDGE_SERVER (default
# 127.0.0.1:$ZKCHAT_IRC_BRIDGE_PORT, the local InspIRCd's connect class
# without flood limits, hence --rate -1 unless ZKCHAT_IRC_RATE says
# otherwise); people connect to ZKCHAT_IRC_SERVER (default
# 127.0.0.1:$ZKCHAT_IRC_PORT). The bot's nick and channel are
# ZKCHAT_IRC_NICK (zkchat) and ZKCHAT_IRC_CHANNEL (#chatroom). When
# ZKCHAT_IRC_BRIDGE_SERVER names another server, InspIRCd is neither started
# nor stopped here.
#
# Files: $ZKCHAT_DATA_DIR (default .data)/bridge.log, bridge.pid, and
# run.started (the servers a --no-wait run started, for `run.sh stop`).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

S=$ROOT/scripts
BIN=$ROOT/zkchat
BRIDGE_LOG=$DATA_DIR/bridge.log
BRIDGE_PID=$DATA_DIR/bridge.pid
# Matches only a bridge started from this checkout's binary (see pid_running).
BRIDGE_PATTERN="$BIN bridge"
# Earlier versions of this script ran a separate manager; `stop` and a new
# run still stop one that is left over (the bridge has a manager built in).
OLD_MANAGER_PID=$DATA_DIR/manager.pid
OLD_MANAGER_PATTERN="$BIN manager"
STATE=$DATA_DIR/run.started
READY_TIMEOUT=90 # seconds until the bridge must lead (or stand by) and be in its channel
STANDBY_AFTER=5  # seconds after joining the election without "became leader": another leads

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

# ---------------------------------------------------------------------------
# Settings

export PATH=$PATH:/usr/local/go/bin # the official Go tarball's place
export CGO_ENABLED=1                # confluent-kafka-go is cgo

export ZKCHAT_ZOOKEEPER=${ZKCHAT_ZOOKEEPER:-$HOST:$ZKCHAT_ZK_PORT}
export ZKCHAT_KAFKA=${ZKCHAT_KAFKA:-$HOST:$ZKCHAT_KAFKA_PORT}
# Where the bot connects, and where people connect.
IRC_BRIDGE_SERVER=${ZKCHAT_IRC_BRIDGE_SERVER:-$HOST:$ZKCHAT_IRC_BRIDGE_PORT}
IRC_SERVER=${ZKCHAT_IRC_SERVER:-$HOST:$ZKCHAT_IRC_PORT}
IRC_NICK=${ZKCHAT_IRC_NICK:-zkchat}
IRC_CHANNEL=${ZKCHAT_IRC_CHANNEL:-#chatroom}

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
IRC_LOCAL=0
if is_local "$IRC_BRIDGE_SERVER" "$ZKCHAT_IRC_BRIDGE_PORT"; then
	SERVERS+=(inspircd)
	IRC_LOCAL=1
fi
# Our InspIRCd's bridge port exempts the bot from flood limits: no pacing.
# Elsewhere the bridge's own default (20 lines/s, bursts of 40) applies.
IRC_RATE=${ZKCHAT_IRC_RATE:-}
if [[ -z $IRC_RATE ]] && ((IRC_LOCAL)); then
	IRC_RATE=-1
fi
# The wait below greps the bridge's info lines ("became leader", "channel
# member list read"), so the bridge logs at least at info.
BRIDGE_LOG_LEVEL=${ZKCHAT_LOG_LEVEL:-info}
case $BRIDGE_LOG_LEVEL in
warn | WARN | error | ERROR) BRIDGE_LOG_LEVEL=info ;;
esac

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

stop_bridge() {
	# The bridge takes its users offline and quits IRC on TERM: give it time.
	stop_pidfile "$BRIDGE_PID" bridge "$BRIDGE_PATTERN" 30
	# A manager of an earlier version of this script, if one is left.
	stop_pidfile "$OLD_MANAGER_PID" manager "$OLD_MANAGER_PATTERN" 20
}

# stop_servers NAME...: stop exactly these local servers, each with its own
# script, in reverse start order (InspIRCd, Kafka, ZooKeeper). Not
# servers.sh stop: that stops all three, whoever started them.
stop_servers() {
	local names=" $* " rc=0 n
	for n in inspircd kafka zookeeper; do
		[[ $names == *" $n "* ]] || continue
		"$S/$n.sh" stop || rc=1
		state_remove "$n"
	done
	return "$rc"
}

cmd_stop() {
	local names=() n
	stop_bridge
	if [[ -f $STATE ]]; then
		while read -r n; do
			case $n in
			zookeeper | kafka | inspircd) names+=("$n") ;;
			esac
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

STARTED=() # local servers this run started, in start order
BUILD_PID=""
BRIDGE_STARTED=0
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
	if ((BRIDGE_STARTED)); then
		stop_bridge || true
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

# server_port NAME: the port that tells whether someone else serves NAME.
server_port() {
	case $1 in
	zookeeper) echo "$ZKCHAT_ZK_PORT" ;;
	kafka) echo "$ZKCHAT_KAFKA_PORT" ;;
	inspircd) echo "$ZKCHAT_IRC_BRIDGE_PORT" ;;
	esac
}

for name in "${SERVERS[@]}"; do
	rc=0
	"$S/$name.sh" status >/dev/null 2>&1 || rc=$?
	case $rc in
	0) log "$name already running; reusing it (this run will not stop it)" ;;
	3)
		port=$(server_port "$name")
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
	# kcat comes with the dependencies; a warning only, the bridge retries.
	timeout 15 kcat -b "$ZKCHAT_KAFKA" -L -m 5 >/dev/null 2>&1 ||
		log "warning: Kafka at $ZKCHAT_KAFKA does not answer (yet); the bridge keeps retrying"
fi
if ((!IRC_LOCAL)); then
	log "IRC: the bridge uses $IRC_BRIDGE_SERVER (not a local server of these scripts), --rate ${IRC_RATE:-default}"
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
# 4. The zkchat tree (the bridge's manager would create it too; this fails
#    early and clearly when ZooKeeper is not reachable).

rc=0
timeout 60 "$BIN" init || rc=$?
case $rc in
0) ;;
124) die "zkchat init got no ZooKeeper session within 60 s: is ZooKeeper at $ZKCHAT_ZOOKEEPER reachable?" ;;
*) die "zkchat init failed (exit $rc)" ;;
esac

# ---------------------------------------------------------------------------
# 5. The IRC bridge, with its built-in manager, in the background (its own
#    session: it outlives a --no-wait run and does not see the terminal's
#    Ctrl-C; we stop it).

if pid_running "$BRIDGE_PID" "$BRIDGE_PATTERN" || pid_running "$OLD_MANAGER_PID" "$OLD_MANAGER_PATTERN"; then
	log "a bridge (or manager) of an earlier run is still running; replacing it with the new build"
	stop_bridge
fi

# irc_nick_online SERVER NICK: NICK is connected to SERVER (host:port), by
# ISON from a throwaway client. Fails (status 2) when the server does not
# answer; the bridge's own reconnect loop then takes over.
irc_nick_online() {
	local out
	# shellcheck disable=SC2016 # $1.. expand in the inner bash
	out=$(timeout 10 bash -c '
		exec 3<>"/dev/tcp/${1%:*}/${1##*:}" || exit 2
		cr=$(printf "\r")
		printf "NICK %s\r\nUSER zkrun 0 * :zkchat run.sh nick check\r\n" "$3" >&3
		while IFS= read -r line <&3; do
			line=${line%"$cr"}
			case $line in
			"PING "*) printf "PONG %s\r\n" "${line#PING }" >&3 ;;
			":"*" 001 "*) printf "ISON %s\r\n" "$2" >&3 ;;
			":"*" 303 "*)
				printf "%s\n" "${line#*" 303 "*" :"}"
				printf "QUIT :done\r\n" >&3
				exit 0
				;;
			"ERROR "*) exit 2 ;;
			esac
		done
		exit 2
	' _ "$1" "$2" "zkrun$$x$RANDOM" 2>/dev/null) || return 2
	# The 303 reply lists the nicks that are online, as the server spells them.
	[[ -n ${out// /} ]]
}

rc=0
irc_nick_online "$IRC_BRIDGE_SERVER" "$IRC_NICK" || rc=$?
case $rc in
0) die "the nick $IRC_NICK is already connected to $IRC_BRIDGE_SERVER (another zkchat bridge?). IRC would rename ours to ${IRC_NICK}_ and two bots would serve the channel; stop the other one, or choose another bot: ZKCHAT_IRC_NICK=... ZKCHAT_IRC_CHANNEL=... scripts/run.sh" ;;
2) log "warning: could not ask $IRC_BRIDGE_SERVER whether $IRC_NICK is taken; the bridge keeps trying to connect" ;;
esac

mkdir -p "$DATA_DIR"
log_offset=0
[[ -f $BRIDGE_LOG ]] && log_offset=$(stat -c %s "$BRIDGE_LOG")
bridge_args=(bridge --irc-server "$IRC_BRIDGE_SERVER"
	--nick "$IRC_NICK" --channel "$IRC_CHANNEL")
[[ -z $IRC_RATE ]] || bridge_args+=(--rate "$IRC_RATE")
export ZKCHAT_LOG_LEVEL=$BRIDGE_LOG_LEVEL
BRIDGE_STARTED=1
start_bg "$BRIDGE_PID" "$BRIDGE_LOG" "$BIN" "${bridge_args[@]}"
bridge_pid=$(pid_of "$BRIDGE_PID")
log "bridge started (pid $bridge_pid, log $BRIDGE_LOG): $IRC_NICK on $IRC_BRIDGE_SERVER in $IRC_CHANNEL; waiting until its manager leads and it is in the channel…"

# bridge_logged TEXT: this run's part of the bridge log contains TEXT.
bridge_logged() {
	tail -c +"$((log_offset + 1))" "$BRIDGE_LOG" 2>/dev/null | grep -q -- "$1"
}

t0=$(now_ms)
joined_at=""
role=""
in_channel=0
while :; do
	if [[ -z $role ]] && bridge_logged 'became leader'; then
		role=leader
	fi
	if [[ -z $joined_at ]] && bridge_logged 'joined election'; then
		joined_at=$SECONDS
	fi
	if [[ -z $role && -n $joined_at ]] && ((SECONDS - joined_at >= STANDBY_AFTER)); then
		# Another manager leads this tree (same ZooKeeper chroot); ours
		# takes over if it goes away. Chatting works either way.
		role=standby
	fi
	if ((!in_channel)) && bridge_logged 'channel member list read'; then
		in_channel=1
	fi
	[[ -n $role ]] && ((in_channel)) && break
	if ! pid_running "$BRIDGE_PID" "$BRIDGE_PATTERN"; then
		show_log_tail "$BRIDGE_LOG" 20
		die "the bridge exited during startup (log $BRIDGE_LOG)"
	fi
	if (($(now_ms) - t0 >= READY_TIMEOUT * 1000)); then
		show_log_tail "$BRIDGE_LOG" 20
		if [[ -z $role ]]; then
			die "the bridge's manager did not join the election within ${READY_TIMEOUT}s (log $BRIDGE_LOG)"
		fi
		die "the bridge did not join $IRC_CHANNEL on $IRC_BRIDGE_SERVER within ${READY_TIMEOUT}s (log $BRIDGE_LOG)"
	fi
	sleep 0.2
done
if [[ $role == leader ]]; then
	log "bridge in $IRC_CHANNEL, its manager leads; ready after $(since_s "$t0") s"
else
	log "bridge in $IRC_CHANNEL; another manager leads ${ZKCHAT_ZOOKEEPER}, the bridge's stands by and takes over if it stops"
fi

# ---------------------------------------------------------------------------
# 6. How to chat

# The settings other terminals need to reach the same zkchat.
exports=()
[[ $ZKCHAT_ZOOKEEPER == "127.0.0.1:2181" ]] || exports+=("ZKCHAT_ZOOKEEPER=$ZKCHAT_ZOOKEEPER")
[[ $ZKCHAT_KAFKA == "127.0.0.1:9092" ]] || exports+=("ZKCHAT_KAFKA=$ZKCHAT_KAFKA")
[[ -z ${ZKCHAT_TOPIC_PREFIX:-} ]] || exports+=("ZKCHAT_TOPIC_PREFIX=$ZKCHAT_TOPIC_PREFIX")

rel() { printf '%s\n' "${1#"$ROOT"/}"; }

{
	echo
	echo "zkchat is up: ZooKeeper $ZKCHAT_ZOOKEEPER, Kafka $ZKCHAT_KAFKA, IRC $IRC_SERVER;"
	echo "bridge pid $bridge_pid: bot $IRC_NICK in $IRC_CHANNEL (via $IRC_BRIDGE_SERVER), built-in manager $role."
	echo
	echo "Chat from an IRC client (irssi, weechat, hexchat, ii, ...):"
	echo
	echo "  irssi -c ${IRC_SERVER%:*} -p ${IRC_SERVER##*:} -n alice"
	echo "    /join $IRC_CHANNEL"
	echo "    /msg $IRC_NICK register          # once; you are online while you are in $IRC_CHANNEL"
	echo "    /msg $IRC_NICK help"
	echo "    /msg $IRC_NICK msg bob hello     # or: /msg $IRC_NICK bob: hello"
	echo
	echo "Messages to alice arrive as private messages from $IRC_NICK: <bob> hi alice"
	echo
	echo "The CLI works alongside, from other terminals:"
	echo
	echo "  cd $ROOT"
	if ((${#exports[@]})); then
		echo "  export ${exports[*]}"
	fi
	echo "  ./zkchat register carol"
	echo "  ./zkchat chat carol            # then type:  alice: hello from the CLI"
	echo "  ./zkchat users --online"
	echo
	echo "Only online users can send, and only to online users."
	echo
	echo "Logs: bridge      $(rel "$BRIDGE_LOG")"
	# The servers' logs, where these scripts run them (not for servers
	# someone else runs).
	[[ ! -f $DATA_DIR/zookeeper/zookeeper.log ]] ||
		echo "      ZooKeeper   $(rel "$DATA_DIR/zookeeper/zookeeper.log")"
	[[ ! -f $DATA_DIR/kafka/logs/server.log ]] ||
		echo "      Kafka       $(rel "$DATA_DIR/kafka/logs/server.log")"
	[[ ! -f $DATA_DIR/inspircd/inspircd.log ]] ||
		echo "      InspIRCd    $(rel "$DATA_DIR/inspircd/inspircd.log")"
	echo
	if ((DETACH)); then
		echo "Everything keeps running. Stop it with:  scripts/run.sh stop"
		echo "(the bridge, and the servers this run started; scripts/servers.sh stop stops the servers in any case)"
	else
		if ((${#STARTED[@]})); then
			echo "Ctrl-C here stops everything: the bridge and the servers this run started (${STARTED[*]})."
		else
			echo "Ctrl-C here stops the bridge. The servers were running already and stay up"
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
# 7. Wait until Ctrl-C / TERM (traps above), or until the bridge dies.

rc=0
wait "$bridge_pid" || rc=$?
# wait returns early (> 128) for a trapped signal; the trap has run by then
# and exited. Here the bridge ended on its own (or `run.sh stop` ended it).
if pid_running "$BRIDGE_PID" "$BRIDGE_PATTERN"; then
	die "lost track of the bridge (pid $bridge_pid)"
fi
rm -f "$BRIDGE_PID"
BRIDGE_STARTED=0
if ((rc == 0)); then
	# A clean exit: someone stopped it (scripts/run.sh stop, kill -TERM).
	log "the bridge stopped; stopping the rest"
	exit 0
fi
show_log_tail "$BRIDGE_LOG" 10
die "the bridge exited with status $rc; stopping (log $BRIDGE_LOG)"
