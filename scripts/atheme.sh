#!/usr/bin/env bash
# The IRC network WITH accounts: a second InspIRCd 3 (Debian's inspircd)
# linked to Atheme IRC services (Debian's atheme-services), which provide
# NickServ accounts and SASL PLAIN. Independent of scripts/inspircd.sh's
# server (no services, ports 6667/6668).
#
#   scripts/atheme.sh start|stop|status|restart
#
#   127.0.0.1:$ZKCHAT_IRC_ACCOUNTS_PORT         (6680) people and test clients
#   127.0.0.1:$ZKCHAT_IRC_ACCOUNTS_BRIDGE_PORT  (6681) the zkchat IRC bridge
#                                                      (no flood limits)
#   127.0.0.1:$ZKCHAT_ATHEME_LINK_PORT          (7001) server link, Atheme only
#
# start starts InspIRCd, then Atheme, and returns once NickServ answers a
# client; stop stops Atheme, then InspIRCd. Configs, logs, pid files and
# Atheme's database live in $ZKCHAT_DATA_DIR/inspircd-accounts and
# $ZKCHAT_DATA_DIR/atheme; the configs are rendered from
# testdata/inspircd/inspircd-accounts.conf and testdata/atheme/atheme.conf on
# each start. The database (the registered accounts) survives restarts;
# remove $ZKCHAT_DATA_DIR/atheme/services.db while stopped to start empty.
# ZKCHAT_IRC_CASEMAPPING (rfc1459, the default, or ascii) is used by both.
# status exits 0 when NickServ answers a client, 1 when something runs but
# does not answer (or only one of the two runs), 3 when neither runs.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Defaults also in lib.sh; repeated so this script works on its own.
USERS_PORT=${ZKCHAT_IRC_ACCOUNTS_PORT:-6680}
BRIDGE_PORT=${ZKCHAT_IRC_ACCOUNTS_BRIDGE_PORT:-6681}
LINK_PORT=${ZKCHAT_ATHEME_LINK_PORT:-7001}

IRC_DIR=$DATA_DIR/inspircd-accounts
IRC_CFG=$IRC_DIR/inspircd.conf
IRC_PIDFILE=$IRC_DIR/inspircd.pid # written by start_bg, and by InspIRCd itself (<pid>)
IRC_LOGFILE=$IRC_DIR/inspircd.log # the server's log (<log>): links show up here
IRC_OUTFILE=$IRC_DIR/inspircd.out # stdout/stderr: startup banner and config errors
IRC_PATTERN="--config $IRC_CFG"   # matches only the server started with our config
IRCD=/usr/sbin/inspircd

ATHEME_DIR=$DATA_DIR/atheme
ATHEME_CFG=$ATHEME_DIR/atheme.conf
ATHEME_PIDFILE=$ATHEME_DIR/atheme.pid # written by start_bg
# Atheme's own pid file (-p). Not ATHEME_PIDFILE: Atheme refuses to start
# ("daemon is already running") when the PID in it is alive, and start_bg has
# already written Atheme's own PID there.
ATHEME_OWN_PIDFILE=$ATHEME_DIR/atheme-services.pid
ATHEME_LOGFILE=$ATHEME_DIR/atheme.log # Atheme's log (-l)
ATHEME_OUTFILE=$ATHEME_DIR/atheme.out # stdout/stderr (-n also logs to the screen)
ATHEME_PATTERN="-c $ATHEME_CFG"
ATHEME=/usr/bin/atheme-services

CASEMAPPING=${ZKCHAT_IRC_CASEMAPPING:-rfc1459}
START_TIMEOUT=30
STOP_TIMEOUT=10
PROBE_TIMEOUT=5

# services_probe PORT: register as a throwaway client, send NickServ HELP and
# print what came back up to NickServ's first NOTICE, then QUIT. Fails unless
# that NOTICE arrived: "401 No such nick" means Atheme is not linked (yet).
# InspIRCd completes registrations in a once-a-second pass, so this takes up
# to ~1 s even on an idle server.
services_probe() {
	# shellcheck disable=SC2016 # $1.. expand in the inner bash
	timeout "$PROBE_TIMEOUT" bash -c '
		exec 3<>"/dev/tcp/$1/$2" || exit 1
		cr=$(printf "\r")
		printf "NICK %s\r\nUSER zkprobe 0 * :zkchat readiness probe\r\n" "$3" >&3
		ok=1
		while IFS= read -r line <&3; do
			line=${line%"$cr"}
			printf "%s\n" "$line"
			case $line in
			"PING "*) printf "PONG %s\r\n" "${line#PING }" >&3 ;;
			":"*" 001 "*) printf "PRIVMSG NickServ :HELP\r\n" >&3 ;;
			":NickServ!"*" NOTICE "*) ok=0; break ;;
			":"*" 401 "*) break ;; # no such nick: services not linked
			"ERROR "*) break ;;
			esac
		done
		printf "QUIT :probe done\r\n" >&3
		exit "$ok"
	' _ "$HOST" "$1" "zkprobe$$x$RANDOM" 2>/dev/null
}

services_ready() {
	services_probe "$USERS_PORT" >/dev/null && port_open "$HOST" "$BRIDGE_PORT"
}

# The listeners are up (InspIRCd has read its config and bound them).
ircd_listening() {
	port_open "$HOST" "$USERS_PORT" && port_open "$HOST" "$BRIDGE_PORT" && port_open "$HOST" "$LINK_PORT"
}

ircd_running() { pid_running "$IRC_PIDFILE" "$IRC_PATTERN"; }
atheme_running() { pid_running "$ATHEME_PIDFILE" "$ATHEME_PATTERN"; }

check_config() {
	case $CASEMAPPING in
	rfc1459 | ascii) ;;
	*) die "ZKCHAT_IRC_CASEMAPPING must be rfc1459 or ascii (InspIRCd 3 and Atheme know no other), not '$CASEMAPPING'" ;;
	esac
	local ports
	ports=$(printf '%s\n' "$USERS_PORT" "$BRIDGE_PORT" "$LINK_PORT" | sort -u | wc -l)
	((ports == 3)) ||
		die "ZKCHAT_IRC_ACCOUNTS_PORT ($USERS_PORT), ZKCHAT_IRC_ACCOUNTS_BRIDGE_PORT ($BRIDGE_PORT) and ZKCHAT_ATHEME_LINK_PORT ($LINK_PORT) must differ"
}

cmd_status() {
	local irc=0 ath=0 what
	ircd_running && irc=1
	atheme_running && ath=1
	if ((irc && ath)) && services_ready; then
		echo "atheme: running (inspircd pid $(pid_of "$IRC_PIDFILE"), atheme pid $(pid_of "$ATHEME_PIDFILE")) on $HOST:$USERS_PORT, bridge port $HOST:$BRIDGE_PORT, NickServ answers"
		return 0
	fi
	if ((irc || ath)); then
		what="inspircd not running"
		((irc == 0)) || what="inspircd running (pid $(pid_of "$IRC_PIDFILE"))"
		if ((ath)); then
			what+=", atheme running (pid $(pid_of "$ATHEME_PIDFILE"))"
		else
			what+=", atheme not running"
		fi
		echo "atheme: $what, but NickServ does not answer on $HOST:$USERS_PORT (logs: $IRC_LOGFILE, $ATHEME_LOGFILE)"
		return 1
	fi
	if port_open "$HOST" "$USERS_PORT" || port_open "$HOST" "$BRIDGE_PORT" || port_open "$HOST" "$LINK_PORT"; then
		echo "atheme: not running, but port $USERS_PORT, $BRIDGE_PORT or $LINK_PORT is taken by a process these scripts did not start"
	else
		echo "atheme: not running"
	fi
	return 3
}

start_ircd() {
	local port args
	rm -f "$IRC_PIDFILE"
	for port in "$USERS_PORT" "$BRIDGE_PORT" "$LINK_PORT"; do
		if port_open "$HOST" "$port"; then
			die "$HOST:$port is already in use by a process these scripts did not start (set ZKCHAT_IRC_ACCOUNTS_PORT / ZKCHAT_IRC_ACCOUNTS_BRIDGE_PORT / ZKCHAT_ATHEME_LINK_PORT to use others)"
		fi
	done
	mkdir -p "$IRC_DIR"
	render_template "$ROOT/testdata/inspircd/inspircd-accounts.conf" "$IRC_CFG" \
		"CONF_DIR=$IRC_DIR" "RUN_DIR=$IRC_DIR" "PID_FILE=$IRC_PIDFILE" "LOG_FILE=$IRC_LOGFILE" \
		"IRC_PORT=$USERS_PORT" "BRIDGE_PORT=$BRIDGE_PORT" "LINK_PORT=$LINK_PORT" \
		"CASEMAPPING=$CASEMAPPING"
	cp "$ROOT/testdata/inspircd/motd.txt" "$IRC_DIR/motd.txt"
	# As for scripts/inspircd.sh: stay in the foreground; as root InspIRCd
	# exits at once without --runasroot.
	args=(--nofork --config "$IRC_CFG")
	[[ $(id -u) -ne 0 ]] || args+=(--runasroot)
	log "starting inspircd (accounts) on $HOST:$USERS_PORT, bridge port $BRIDGE_PORT, link port $LINK_PORT, casemapping $CASEMAPPING…"
	start_bg "$IRC_PIDFILE" "$IRC_OUTFILE" "$IRCD" "${args[@]}"
}

start_atheme() {
	# Not running (checked by the caller): a pid file left by a killed Atheme
	# whose PID now belongs to another process would stop it from starting.
	rm -f "$ATHEME_PIDFILE" "$ATHEME_OWN_PIDFILE"
	mkdir -p "$ATHEME_DIR"
	render_template "$ROOT/testdata/atheme/atheme.conf" "$ATHEME_CFG" \
		"LINK_PORT=$LINK_PORT" "CASEMAPPING=$CASEMAPPING"
	log "starting atheme-services (services.zkchat.test, uplink $HOST:$LINK_PORT)…"
	# -n: no fork (start_bg's PID is Atheme's); -D: data dir (services.db);
	# -l/-p: log and pid file. Runs as root as well (no refusal, no flag).
	start_bg "$ATHEME_PIDFILE" "$ATHEME_OUTFILE" "$ATHEME" -n -c "$ATHEME_CFG" \
		-D "$ATHEME_DIR" -l "$ATHEME_LOGFILE" -p "$ATHEME_OWN_PIDFILE"
}

# fail MSG: show the logs, stop both, exit 1.
fail() {
	log "$1"
	show_log_tail "$IRC_OUTFILE" 20 # config errors go here, before the log opens
	show_log_tail "$IRC_LOGFILE" 15 # LINK: lines say why Atheme was refused
	show_log_tail "$ATHEME_OUTFILE" 20
	stop_both
	exit 1
}

cmd_start() {
	local t0 rc
	check_config
	"$ROOT/scripts/install-deps.sh" irc
	raise_nofile

	if ircd_running && atheme_running; then
		# Idempotent; still make sure it is usable before saying yes.
		wait_for "$START_TIMEOUT" "$ATHEME_PIDFILE" services_ready ||
			die "inspircd (pid $(pid_of "$IRC_PIDFILE")) and atheme (pid $(pid_of "$ATHEME_PIDFILE")) run but NickServ does not answer on $HOST:$USERS_PORT; try: $0 restart"
		log "atheme already running (inspircd pid $(pid_of "$IRC_PIDFILE"), atheme pid $(pid_of "$ATHEME_PIDFILE")) on $HOST:$USERS_PORT, bridge port $BRIDGE_PORT"
		return 0
	fi

	t0=$(now_ms)
	if ! ircd_running; then
		start_ircd
		rc=0
		wait_for "$START_TIMEOUT" "$IRC_PIDFILE" ircd_listening || rc=$?
		((rc != 2)) || fail "inspircd (accounts) exited during startup"
		((rc == 0)) || fail "inspircd (accounts) did not listen within ${START_TIMEOUT}s"
	fi
	# Atheme connects at once, and retries every serverinfo::recontime (2 s)
	# when InspIRCd was restarted under it.
	atheme_running || start_atheme

	rc=0
	wait_for "$START_TIMEOUT" "$ATHEME_PIDFILE" services_ready || rc=$?
	if ((rc == 0)); then
		log "atheme ready: NickServ answers on $HOST:$USERS_PORT (bridge $HOST:$BRIDGE_PORT) after $(since_s "$t0") s (inspircd pid $(pid_of "$IRC_PIDFILE"), atheme pid $(pid_of "$ATHEME_PIDFILE"); logs $IRC_LOGFILE, $ATHEME_LOGFILE)"
		return 0
	fi
	if ((rc == 2)); then
		fail "atheme-services exited during startup"
	elif ! ircd_running; then
		fail "inspircd (accounts) exited during startup"
	fi
	fail "NickServ did not answer on $HOST:$USERS_PORT within ${START_TIMEOUT}s (Atheme not linked?)"
}

stop_both() {
	local rc=0
	# Atheme first: it saves services.db on TERM and leaves the network cleanly.
	stop_pidfile "$ATHEME_PIDFILE" atheme-services "$ATHEME_PATTERN" "$STOP_TIMEOUT" || rc=1
	stop_pidfile "$IRC_PIDFILE" "inspircd (accounts)" "$IRC_PATTERN" "$STOP_TIMEOUT" || rc=1
	return "$rc"
}

cmd_stop() {
	if ! ircd_running && ! atheme_running; then
		rm -f "$IRC_PIDFILE" "$ATHEME_PIDFILE"
		log "atheme (and its inspircd) not running"
		return 0
	fi
	stop_both
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
restart)
	check_config
	cmd_stop
	cmd_start
	;;
*)
	echo "usage: $0 start|stop|status|restart" >&2
	exit 2
	;;
esac
