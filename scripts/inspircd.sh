#!/usr/bin/env bash
# InspIRCd 3 (Debian's inspircd package) on 127.0.0.1:$ZKCHAT_IRC_PORT for
# people and test clients, and 127.0.0.1:$ZKCHAT_IRC_BRIDGE_PORT for the zkchat
# IRC bridge (its own connect class without flood limits).
#
#   scripts/inspircd.sh start|stop|status|restart
#
# Config, MOTD, log and pid file live in $ZKCHAT_DATA_DIR/inspircd; they are
# rendered from testdata/inspircd/{inspircd.conf,motd.txt} on each start
# (nothing is read from /etc/inspircd; the package's own service is not used).
# ZKCHAT_IRC_CASEMAPPING (rfc1459, the default, or ascii) picks the casemapping.
# status exits 0 when the server answers (a client completes registration),
# 1 when it runs but does not answer, 3 when it is not running.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IRC_DIR=$DATA_DIR/inspircd
CFG=$IRC_DIR/inspircd.conf
PIDFILE=$IRC_DIR/inspircd.pid # written by start_bg, and by InspIRCd itself (<pid>)
LOGFILE=$IRC_DIR/inspircd.log # the server's log (<log> in the config)
OUTFILE=$IRC_DIR/inspircd.out # stdout/stderr: startup banner and config errors
TEMPLATES=$ROOT/testdata/inspircd
IRCD=/usr/sbin/inspircd
# Matches only the server started with our config (guards against reused PIDs).
PATTERN="--config $CFG"
CASEMAPPING=${ZKCHAT_IRC_CASEMAPPING:-rfc1459}
START_TIMEOUT=30
STOP_TIMEOUT=10
# shellcheck disable=SC2034 # read by irc_probe (lib.sh)
PROBE_TIMEOUT=5 # for irc_probe (lib.sh); one registration takes up to ~1 s here

# irc_ready: a client registers on the client port, and the bridge port accepts.
irc_ready() {
	irc_probe "$ZKCHAT_IRC_PORT" >/dev/null && port_open "$HOST" "$ZKCHAT_IRC_BRIDGE_PORT"
}

check_casemapping() {
	case $CASEMAPPING in
	rfc1459 | ascii) ;;
	*) die "ZKCHAT_IRC_CASEMAPPING must be rfc1459 or ascii (InspIRCd 3 knows no other), not '$CASEMAPPING'" ;;
	esac
}

cmd_status() {
	local pid out version
	if pid_running "$PIDFILE" "$PATTERN"; then
		pid=$(pid_of "$PIDFILE")
		if out=$(irc_probe "$ZKCHAT_IRC_PORT") && port_open "$HOST" "$ZKCHAT_IRC_BRIDGE_PORT"; then
			# 004: ":server 004 nick servername version usermodes chanmodes ..."
			version=$(awk '$2 == "004" { print $5; exit }' <<<"$out")
			echo "inspircd: running (pid $pid) on $HOST:$ZKCHAT_IRC_PORT, bridge port $HOST:$ZKCHAT_IRC_BRIDGE_PORT, ${version:-version unknown}"
			return 0
		fi
		echo "inspircd: running (pid $pid) but not answering on $HOST:$ZKCHAT_IRC_PORT / $ZKCHAT_IRC_BRIDGE_PORT (log: $LOGFILE)"
		return 1
	fi
	if port_open "$HOST" "$ZKCHAT_IRC_PORT" || port_open "$HOST" "$ZKCHAT_IRC_BRIDGE_PORT"; then
		echo "inspircd: not running, but port $ZKCHAT_IRC_PORT or $ZKCHAT_IRC_BRIDGE_PORT is taken by a process these scripts did not start"
	else
		echo "inspircd: not running"
	fi
	return 3
}

cmd_start() {
	local t0 rc port args
	check_casemapping
	"$ROOT/scripts/install-deps.sh" irc

	if pid_running "$PIDFILE" "$PATTERN"; then
		# Idempotent; still make sure it is usable before saying yes.
		wait_for "$START_TIMEOUT" "$PIDFILE" irc_ready ||
			die "inspircd (pid $(pid_of "$PIDFILE")) runs but does not answer; try: $0 restart"
		log "inspircd already running (pid $(pid_of "$PIDFILE")) on $HOST:$ZKCHAT_IRC_PORT, bridge port $ZKCHAT_IRC_BRIDGE_PORT"
		return 0
	fi
	rm -f "$PIDFILE"
	[[ $ZKCHAT_IRC_PORT != "$ZKCHAT_IRC_BRIDGE_PORT" ]] ||
		die "ZKCHAT_IRC_PORT and ZKCHAT_IRC_BRIDGE_PORT are both $ZKCHAT_IRC_PORT; they must differ"
	for port in "$ZKCHAT_IRC_PORT" "$ZKCHAT_IRC_BRIDGE_PORT"; do
		if port_open "$HOST" "$port"; then
			die "$HOST:$port is already in use by a process these scripts did not start (set ZKCHAT_IRC_PORT / ZKCHAT_IRC_BRIDGE_PORT to use others; the inspircd package's own daemon runs as user irc: pgrep -a -u irc inspircd)"
		fi
	done
	mkdir -p "$IRC_DIR"
	render_template "$TEMPLATES/inspircd.conf" "$CFG" \
		"CONF_DIR=$IRC_DIR" "RUN_DIR=$IRC_DIR" "PID_FILE=$PIDFILE" "LOG_FILE=$LOGFILE" \
		"IRC_PORT=$ZKCHAT_IRC_PORT" "BRIDGE_PORT=$ZKCHAT_IRC_BRIDGE_PORT" \
		"CASEMAPPING=$CASEMAPPING"
	cp "$TEMPLATES/motd.txt" "$IRC_DIR/motd.txt"

	# --nofork: stay in the foreground so start_bg's PID is the server's.
	args=(--nofork --config "$CFG")
	# As root InspIRCd exits at once ("You have started as root", no TTY) or,
	# on a terminal, sleeps 30 s first; --runasroot skips that check.
	[[ $(id -u) -ne 0 ]] || args+=(--runasroot)

	# One descriptor per client; <performance:softlimit> defaults to this limit.
	raise_nofile
	log "starting inspircd on $HOST:$ZKCHAT_IRC_PORT, bridge port $ZKCHAT_IRC_BRIDGE_PORT, casemapping $CASEMAPPING (open files limit $(ulimit -n))…"
	t0=$(now_ms)
	start_bg "$PIDFILE" "$OUTFILE" "$IRCD" "${args[@]}"

	rc=0
	wait_for "$START_TIMEOUT" "$PIDFILE" irc_ready || rc=$?
	if ((rc == 0)); then
		log "inspircd ready on $HOST:$ZKCHAT_IRC_PORT (bridge $HOST:$ZKCHAT_IRC_BRIDGE_PORT) after $(since_s "$t0") s (pid $(pid_of "$PIDFILE"), log $LOGFILE)"
		return 0
	fi
	if ((rc == 2)); then
		log "inspircd exited during startup"
	else
		log "inspircd did not answer within ${START_TIMEOUT}s"
	fi
	# Config errors go to stdout (OUTFILE), before the log file is opened.
	show_log_tail "$OUTFILE" 30
	show_log_tail "$LOGFILE" 10 # the end is mostly "module was unloaded" lines
	stop_pidfile "$PIDFILE" inspircd "$PATTERN" "$STOP_TIMEOUT"
	exit 1
}

cmd_stop() {
	if ! pid_running "$PIDFILE" "$PATTERN"; then
		rm -f "$PIDFILE"
		log "inspircd not running"
		return 0
	fi
	stop_pidfile "$PIDFILE" inspircd "$PATTERN" "$STOP_TIMEOUT"
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
restart)
	check_casemapping
	cmd_stop
	cmd_start
	;;
*)
	echo "usage: $0 start|stop|status|restart" >&2
	exit 2
	;;
esac
