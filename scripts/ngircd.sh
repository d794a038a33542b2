#!/usr/bin/env bash
# ngIRCd (Debian's ngircd package) on 127.0.0.1:$ZKCHAT_NGIRCD_PORT: a second,
# independent IRC network for tests (the first is InspIRCd, scripts/
# inspircd.sh). One port for people, test clients and bridges: command
# penalties (ngIRCd's flood protection) are off.
#
#   scripts/ngircd.sh start|stop|status|restart
#
# Config, MOTD, log and pid files live in $ZKCHAT_DATA_DIR/ngircd; they are
# rendered from testdata/ngircd/{ngircd.conf,motd.txt} on each start
# (nothing is read from /etc/ngircd; the package's own service is not used).
# Started as root, ngIRCd drops to user irc: its own pid file goes to
# $ZKCHAT_DATA_DIR/ngircd/run, which belongs to irc.
# status exits 0 when the server answers (a client completes registration),
# 1 when it runs but does not answer, 3 when it is not running.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IRC_DIR=$DATA_DIR/ngircd
CFG=$IRC_DIR/ngircd.conf
PIDFILE=$IRC_DIR/ngircd.pid  # written by start_bg (ngIRCd runs with -n: same PID)
RUN_DIR=$IRC_DIR/run         # ngIRCd's own pid file, written after it drops root
LOGFILE=$IRC_DIR/ngircd.log  # stdout/stderr: with -n ngIRCd logs to the console
TEMPLATES=$ROOT/testdata/ngircd
IRCD=/usr/sbin/ngircd
# Matches only the server started with our config (guards against reused PIDs).
PATTERN="-f $CFG"
START_TIMEOUT=30
STOP_TIMEOUT=10
# shellcheck disable=SC2034 # read by irc_probe (lib.sh)
PROBE_TIMEOUT=5 # registration is immediate (no DNS/IDENT lookups)

# adopt: ngIRCd writes its own pid file too ($RUN_DIR). When ours is gone
# or stale but that one names a server running our config (say a concurrent
# run removed ours), take that PID over, so status/stop/start know it again.
adopt() {
	local pid
	pid_running "$PIDFILE" "$PATTERN" && return 0
	pid_running "$RUN_DIR/ngircd.pid" "$PATTERN" || return 0
	pid=$(pid_of "$RUN_DIR/ngircd.pid")
	printf '%s\n' "$pid" >"$PIDFILE"
	log "ngircd (pid $pid) had lost its pid file $PIDFILE; taken over from $RUN_DIR/ngircd.pid"
}

irc_ready() {
	irc_probe "$ZKCHAT_NGIRCD_PORT" >/dev/null
}

cmd_status() {
	local pid out version
	adopt
	if pid_running "$PIDFILE" "$PATTERN"; then
		pid=$(pid_of "$PIDFILE")
		if out=$(irc_probe "$ZKCHAT_NGIRCD_PORT"); then
			# 004: ":server 004 nick servername version usermodes chanmodes"
			version=$(awk '$2 == "004" { print $5; exit }' <<<"$out")
			echo "ngircd: running (pid $pid) on $HOST:$ZKCHAT_NGIRCD_PORT, ${version:-version unknown}"
			return 0
		fi
		echo "ngircd: running (pid $pid) but not answering on $HOST:$ZKCHAT_NGIRCD_PORT (log: $LOGFILE)"
		return 1
	fi
	if port_open "$HOST" "$ZKCHAT_NGIRCD_PORT"; then
		echo "ngircd: not running, but port $ZKCHAT_NGIRCD_PORT is taken by a process these scripts did not start"
	else
		echo "ngircd: not running"
	fi
	return 3
}

# configtest: ngircd --configtest exits 0 even for unknown variables, so any
# " - " remark it prints fails the start, except the expected warning about
# MaxPenaltyTime = 0 (penalties off on purpose).
configtest() {
	local out remarks
	out=$("$IRCD" --configtest -f "$CFG" 2>&1) ||
		{ printf '%s\n' "$out" >&2; die "ngircd --configtest -f $CFG failed"; }
	[[ $out == *"Ok, dump of your server configuration follows"* ]] ||
		{ printf '%s\n' "$out" >&2; die "ngircd --configtest -f $CFG did not accept the config"; }
	remarks=$(grep '^ - ' <<<"$out" | grep -v "'MaxPenaltyTime') is set to 0" || true)
	[[ -z $remarks ]] ||
		{ printf '%s\n' "$remarks" >&2; die "ngircd --configtest -f $CFG: the config has problems (above)"; }
}

cmd_start() {
	local t0 rc user group
	adopt
	"$ROOT/scripts/install-deps.sh" irc

	if pid_running "$PIDFILE" "$PATTERN"; then
		# Idempotent; still make sure it is usable before saying yes.
		wait_for "$START_TIMEOUT" "$PIDFILE" irc_ready ||
			die "ngircd (pid $(pid_of "$PIDFILE")) runs but does not answer; try: $0 restart"
		log "ngircd already running (pid $(pid_of "$PIDFILE")) on $HOST:$ZKCHAT_NGIRCD_PORT"
		return 0
	fi
	rm -f "$PIDFILE"
	case $ZKCHAT_NGIRCD_PORT in
	"$ZKCHAT_IRC_PORT" | "$ZKCHAT_IRC_BRIDGE_PORT")
		die "ZKCHAT_NGIRCD_PORT is $ZKCHAT_NGIRCD_PORT, an InspIRCd port (ZKCHAT_IRC_PORT / ZKCHAT_IRC_BRIDGE_PORT); they must differ"
		;;
	esac
	if port_open "$HOST" "$ZKCHAT_NGIRCD_PORT"; then
		die "$HOST:$ZKCHAT_NGIRCD_PORT is already in use by a process these scripts did not start (set ZKCHAT_NGIRCD_PORT to use another; the ngircd package's own daemon runs as user irc: pgrep -a -u irc ngircd)"
	fi

	# As root, ngIRCd drops to irc:irc right after reading its config; not as
	# root it cannot switch, so name the invoking user (a no-op for ngIRCd).
	if [[ $(id -u) -eq 0 ]]; then
		user=irc group=irc
		id -u "$user" >/dev/null 2>&1 || die "user $user does not exist (Debian's base-passwd has it)"
	else
		user=$(id -un) group=$(id -gn)
	fi
	mkdir -p "$IRC_DIR/conf.d" "$RUN_DIR"
	# A pid file left by a killed server: ngIRCd does not overwrite one.
	rm -f "$RUN_DIR/ngircd.pid"
	[[ $(id -u) -ne 0 ]] || chown "$user:$group" "$RUN_DIR"
	render_template "$TEMPLATES/ngircd.conf" "$CFG" \
		"CONF_DIR=$IRC_DIR" "PID_DIR=$RUN_DIR" "IRC_PORT=$ZKCHAT_NGIRCD_PORT" \
		"SERVER_USER=$user" "SERVER_GROUP=$group"
	cp "$TEMPLATES/motd.txt" "$IRC_DIR/motd.txt"
	configtest
	# REHASH re-reads config and MOTD as $user; say so when it cannot (e.g. the
	# repo under a home directory only its owner may enter).
	if [[ $(id -u) -eq 0 ]] && ! runuser -u "$user" -- test -r "$CFG" -a -r "$IRC_DIR/motd.txt" 2>/dev/null; then
		log "warning: user $user cannot read $CFG or its MOTD; the server runs, but REHASH will fail"
	fi

	# One descriptor per client (MaxConnections = 0: as many as the limit allows).
	raise_nofile
	log "starting ngircd on $HOST:$ZKCHAT_NGIRCD_PORT as $user (open files limit $(ulimit -n))…"
	t0=$(now_ms)
	# -n: stay in the foreground (start_bg's PID is the server's) and log to stdout.
	start_bg "$PIDFILE" "$LOGFILE" "$IRCD" -n -f "$CFG"

	rc=0
	wait_for "$START_TIMEOUT" "$PIDFILE" irc_ready || rc=$?
	if ((rc == 0)); then
		log "ngircd ready on $HOST:$ZKCHAT_NGIRCD_PORT after $(since_s "$t0") s (pid $(pid_of "$PIDFILE"), log $LOGFILE)"
		return 0
	fi
	if ((rc == 2)); then
		log "ngircd exited during startup"
	else
		log "ngircd did not answer within ${START_TIMEOUT}s"
	fi
	show_log_tail "$LOGFILE" 30
	stop_pidfile "$PIDFILE" ngircd "$PATTERN" "$STOP_TIMEOUT"
	exit 1
}

cmd_stop() {
	adopt
	if ! pid_running "$PIDFILE" "$PATTERN"; then
		rm -f "$PIDFILE"
		log "ngircd not running"
		return 0
	fi
	stop_pidfile "$PIDFILE" ngircd "$PATTERN" "$STOP_TIMEOUT"
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
