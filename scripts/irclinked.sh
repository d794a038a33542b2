#!/usr/bin/env bash
# Two InspIRCd 3 servers (Debian's inspircd) linked into one network, for
# netsplit tests: irc1.zkchat.test and irc2.zkchat.test on 127.0.0.1.
# Independent of the other scripts' servers.
#
#   scripts/irclinked.sh start|stop|status|restart|pids|split|join
#
#                      irc1                          irc2
#   people, clients    $ZKCHAT_IRCL1_PORT (6690)     $ZKCHAT_IRCL2_PORT (6692)
#   bots (no limits)   $ZKCHAT_IRCL1_BOT_PORT (6691) $ZKCHAT_IRCL2_BOT_PORT (6693)
#   strict (kills)     $ZKCHAT_IRCL1_STRICT_PORT (6694) $ZKCHAT_IRCL2_STRICT_PORT (6695)
#   server link        $ZKCHAT_IRCL1_LINK_PORT (6696) $ZKCHAT_IRCL2_LINK_PORT (6697)
#
# start  starts both servers and links them; returns once a client on each
#        side sees a client of the other side in a channel. On a running
#        pair it only links them (a split pair joins).
# split  makes a real netsplit: an oper on irc1 sends SQUIT irc2.zkchat.test.
#        Both servers stay up; each quits the other side's users towards its
#        own clients with the netsplit reason "irc1.zkchat.test
#        irc2.zkchat.test" ("*.net *.split" with ZKCHAT_IRCL_HIDESPLITS=yes;
#        opers still see the names), exactly as when a link breaks. Returns once a client on each side
#        has seen a client of the other side QUIT that way (prints the
#        reasons and the time). Already split: says so, exits 0.
# join   relinks them: an oper on irc1 sends CONNECT irc2.zkchat.test (there
#        is no <autoconnect>, which would undo a split). Returns once a
#        client on each side sees the other side's client JOIN the channel
#        again (that JOIN is part of the netburst). Already linked: exits 0.
# pids   prints "irc1 PID" and "irc2 PID" (running servers only), e.g. for
#        kill -STOP in fault tests. A frozen irc2 is a link failure rather
#        than a SQUIT: irc1 quits irc2's users with "irc1.zkchat.test
#        irc2.zkchat.test" once the server PING times out (11 s measured,
#        <options:serverpingfreq> 10s); after kill -CONT irc2 quits irc1's
#        users at once, and the pair stays split until join.
# status exits 0 when both servers answer (and says "linked" or "split"),
#        1 when something runs but does not answer (or only one runs), 3
#        when neither runs.
#
# Configs, logs and pid files live in $ZKCHAT_DATA_DIR/irclinked/irc1 and
# .../irc2, rendered from testdata/inspircd/inspircd-linked.conf on each
# start. ZKCHAT_IRC_CASEMAPPING (rfc1459, the default, or ascii) as for
# scripts/inspircd.sh. The strict class's limits: ZKCHAT_IRCL_STRICT_THRESHOLD
# (20), ZKCHAT_IRCL_STRICT_COMMANDRATE (1000, i.e. 1 line/s) and
# ZKCHAT_IRCL_STRICT_FAKELAG (no); see the template.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT1=${ZKCHAT_IRCL1_PORT:-6690}
BOT1=${ZKCHAT_IRCL1_BOT_PORT:-6691}
PORT2=${ZKCHAT_IRCL2_PORT:-6692}
BOT2=${ZKCHAT_IRCL2_BOT_PORT:-6693}
STRICT1=${ZKCHAT_IRCL1_STRICT_PORT:-6694}
STRICT2=${ZKCHAT_IRCL2_STRICT_PORT:-6695}
LINK1=${ZKCHAT_IRCL1_LINK_PORT:-6696}
LINK2=${ZKCHAT_IRCL2_LINK_PORT:-6697}
STRICT_THRESHOLD=${ZKCHAT_IRCL_STRICT_THRESHOLD:-20}
STRICT_COMMANDRATE=${ZKCHAT_IRCL_STRICT_COMMANDRATE:-1000}
STRICT_FAKELAG=${ZKCHAT_IRCL_STRICT_FAKELAG:-no}
HIDESPLITS=${ZKCHAT_IRCL_HIDESPLITS:-no}
CASEMAPPING=${ZKCHAT_IRC_CASEMAPPING:-rfc1459}

NAME1=irc1.zkchat.test
NAME2=irc2.zkchat.test
BASE_DIR=$DATA_DIR/irclinked
IRCD=/usr/sbin/inspircd
TEMPLATE=$ROOT/testdata/inspircd/inspircd-linked.conf
START_TIMEOUT=30
STOP_TIMEOUT=10
LINK_TIMEOUT=30 # split/join: from connecting the probe clients to done
# The channel the probe clients of split/join meet in.
PROBE_CHANNEL="#zkchat-irclinked"

# Per server (1 or 2): folder, config, pid file (written by start_bg and by
# InspIRCd itself), log (<log>: link events show up here), stdout/stderr.
dir_of() { printf '%s\n' "$BASE_DIR/irc$1"; }
cfg_of() { printf '%s\n' "$BASE_DIR/irc$1/inspircd.conf"; }
pidfile_of() { printf '%s\n' "$BASE_DIR/irc$1/inspircd.pid"; }
logfile_of() { printf '%s\n' "$BASE_DIR/irc$1/inspircd.log"; }
outfile_of() { printf '%s\n' "$BASE_DIR/irc$1/inspircd.out"; }
# Matches only the server started with our config (guards against reused PIDs).
pattern_of() { printf '%s\n' "--config $(cfg_of "$1")"; }

running() { pid_running "$(pidfile_of "$1")" "$(pattern_of "$1")"; }

listening() {
	if (($1 == 1)); then
		port_open "$HOST" "$PORT1" && port_open "$HOST" "$BOT1" &&
			port_open "$HOST" "$STRICT1" && port_open "$HOST" "$LINK1"
	else
		port_open "$HOST" "$PORT2" && port_open "$HOST" "$BOT2" &&
			port_open "$HOST" "$STRICT2" && port_open "$HOST" "$LINK2"
	fi
}

check_config() {
	local n
	case $CASEMAPPING in
	rfc1459 | ascii) ;;
	*) die "ZKCHAT_IRC_CASEMAPPING must be rfc1459 or ascii (InspIRCd 3 knows no other), not '$CASEMAPPING'" ;;
	esac
	case $STRICT_FAKELAG:$HIDESPLITS in
	yes:yes | yes:no | no:yes | no:no) ;;
	*) die "ZKCHAT_IRCL_STRICT_FAKELAG and ZKCHAT_IRCL_HIDESPLITS must be yes or no" ;;
	esac
	[[ $STRICT_THRESHOLD =~ ^[0-9]+$ && $STRICT_COMMANDRATE =~ ^[0-9]+$ ]] ||
		die "ZKCHAT_IRCL_STRICT_THRESHOLD and ZKCHAT_IRCL_STRICT_COMMANDRATE must be numbers"
	n=$(printf '%s\n' "$PORT1" "$BOT1" "$STRICT1" "$LINK1" "$PORT2" "$BOT2" "$STRICT2" "$LINK2" | sort -u | wc -l)
	((n == 8)) || die "the eight ZKCHAT_IRCL{1,2}_{,BOT_,STRICT_,LINK_}PORT ports must differ"
}

# link_session split|join|check: drives two raw clients in one process and
# prints what it saw ("key value" lines). An oper on irc1's bot port and a
# watcher on irc2's bot port (no flood limits) join $PROBE_CHANNEL.
#   check: exit 0 when irc1 lists irc2 in LINKS, 3 when not.
#   split: when linked, SQUIT irc2 and wait until each client saw the other
#          QUIT; prints quit1 (reason as seen on irc2), quit2 (on irc1) and
#          ms (SQUIT to both QUITs seen). Exit 3 when already split.
#   join:  when split, CONNECT irc2 and wait until each client saw the other
#          JOIN; prints ms. Exit 3 when already linked.
# Exits 1 on errors (message on stderr); the caller's timeout ends a hang.
link_session() {
	# shellcheck disable=SC2016 # $1.. expand in the inner bash
	timeout "$LINK_TIMEOUT" bash -c '
		action=$1 host=$2 p1=$3 p2=$4 peer=$5 chan=$6
		cr=$(printf "\r")
		now_ms() { local us=${EPOCHREALTIME/[.,]/}; printf "%s\n" "$((us / 1000))"; }
		fail() { printf "irclinked: %s\n" "$*" >&2; exit 1; }
		n1=zkop$RANDOM$$ n2=zkwatch$RANDOM$$
		exec 3<>"/dev/tcp/$host/$p1" || fail "cannot connect to irc1 $host:$p1"
		printf "NICK %s\r\nUSER zkl 0 * :irclinked.sh %s\r\n" "$n1" "$action" >&3
		if [[ $action != check ]]; then
			exec 4<>"/dev/tcp/$host/$p2" || fail "cannot connect to irc2 $host:$p2"
			printf "NICK %s\r\nUSER zkl 0 * :irclinked.sh %s\r\n" "$n2" "$action" >&4
			w=1
		else
			w=0 # no watcher, no channel
		fi
		oper=0 joined1=$((1 - w)) joined2=$((1 - w)) links="" linked=-1
		see1=0 see2=0 quit1="" quit2="" t0=0 phase=0 buf3="" buf4=""
		# seen FD: the client on FD sees the other one in the channel.
		seen() { if (($1 == 3)); then see2=1; else see1=1; fi; }
		# on_line FD LINE: one line from irc1 (3) or irc2 (4).
		on_line() {
			local fd=$1 line=${2%"$cr"} me other w1 w2 rest nm
			if ((fd == 3)); then me=$n1 other=$n2; else me=$n2 other=$n1; fi
			read -r w1 w2 rest <<<"$line"
			case $w1 in
			PING) printf "PONG %s\r\n" "$w2" >&"$fd"; return ;;
			ERROR) fail "irc$((fd - 2)) closed the probe connection: $line" ;;
			esac
			case $w2 in
			001)
				if ((fd == 3)); then
					printf "OPER zkadmin zkadmin\r\nLINKS\r\n" >&3
					[[ $action == check ]] || printf "JOIN %s\r\n" "$chan" >&3
				else
					printf "JOIN %s\r\n" "$chan" >&4
				fi ;;
			381) oper=1 ;;
			491 | 464) fail "OPER refused on irc1: $line" ;;
			364) [[ $rest != *" $peer "* ]] || links=yes ;;
			365) [[ $links == yes ]] && linked=1 || linked=0 ;;
			353)
				for nm in ${rest#*:}; do
					nm=${nm#"${nm%%[!@+%&~]*}"} # drop the status prefixes
					[[ $nm != "$other" ]] || seen "$fd"
				done ;;
			366) if ((fd == 3)); then joined1=1; else joined2=1; fi ;;
			JOIN) [[ $w1 != ":$other!"* ]] || seen "$fd" ;;
			QUIT)
				if [[ $w1 == ":$other!"* ]]; then
					rest=${rest#:}
					if ((fd == 3)); then see2=0 quit2=$rest; else see1=0 quit1=$rest; fi
				fi ;;
			NOTICE) [[ $fd != 3 || $rest != *CONNECT* ]] || printf "notice %s\n" "${rest#*:}" ;;
			esac
			: "$me"
		}
		# pump FD: handle the lines that arrive on FD within ~20 ms.
		# read -t keeps a partial line in the variable: carry it over.
		pump() {
			local fd=$1 part rc
			while :; do
				part="" rc=0
				IFS= read -r -t 0.02 part <&"$fd" || rc=$?
				if ((rc == 0)); then
					if ((fd == 3)); then on_line 3 "$buf3$part"; buf3=""; else on_line 4 "$buf4$part"; buf4=""; fi
				elif ((rc > 128)); then
					if ((fd == 3)); then buf3+=$part; else buf4+=$part; fi
					return 0
				else
					fail "irc$((fd - 2)) closed the probe connection"
				fi
			done
		}
		deadline=0
		while :; do
			pump 3
			((w == 0)) || pump 4
			case $phase in
			0) # registered, opered, joined, LINKS answered
				((oper && joined1 && joined2 && linked >= 0)) || continue
				if [[ $action == check ]]; then
					printf "QUIT :done\r\n" >&3
					((linked)) && exit 0 || exit 3
				fi
				if [[ $action == split ]] && ((linked == 0)); then exit 3; fi
				if [[ $action == join ]] && ((linked == 1)); then
					# Linked; still wait until the clients see each other
					# (a burst may still be under way).
					phase=3 deadline=$(($(now_ms) + 10000)); continue
				fi
				if [[ $action == split ]]; then
					# The QUITs are only visible once each sees the other.
					phase=1 deadline=$(($(now_ms) + 10000)); continue
				fi
				t0=$(now_ms)
				printf "CONNECT %s\r\n" "$peer" >&3
				phase=2 ;;
			1) # split: wait until each sees the other, then SQUIT
				if ((see1 && see2)); then
					t0=$(now_ms)
					printf "SQUIT %s :irclinked.sh split\r\n" "$peer" >&3
					phase=2
				elif (($(now_ms) > deadline)); then
					fail "linked, but the probe clients do not see each other in $chan after 10 s"
				fi ;;
			2) # wait for the effect
				if [[ $action == split && -n $quit1 && -n $quit2 ]]; then
					printf "quit1 %s\nquit2 %s\nms %s\n" "$quit1" "$quit2" "$(($(now_ms) - t0))"
					break
				fi
				if [[ $action == join ]] && ((see1 && see2)); then
					printf "ms %s\n" "$(($(now_ms) - t0))"
					break
				fi ;;
			3) # join, already linked
				if ((see1 && see2)); then
					printf "QUIT :done\r\n" >&3; printf "QUIT :done\r\n" >&4
					exit 3
				fi
				(($(now_ms) <= deadline)) ||
					fail "irc1 lists irc2 in LINKS, but the probe clients do not see each other in $chan after 10 s"
				;;
			esac
		done
		printf "QUIT :done\r\n" >&3
		printf "QUIT :done\r\n" >&4
		exit 0
	' _ "$1" "$HOST" "$BOT1" "$BOT2" "$NAME2" "$PROBE_CHANNEL"
}

# linked: 0 when irc1 lists irc2 in LINKS, 3 when not, else 1.
linked() {
	local rc=0
	link_session check >/dev/null || rc=$?
	return "$rc"
}

start_one() {
	local i=$1 dir cfg args
	dir=$(dir_of "$i")
	cfg=$(cfg_of "$i")
	rm -f "$(pidfile_of "$i")"
	mkdir -p "$dir"
	if ((i == 1)); then
		render_template "$TEMPLATE" "$cfg" \
			"SERVER_NAME=$NAME1" "SERVER_ID=1ZK" "PEER_NAME=$NAME2" \
			"IRC_PORT=$PORT1" "BRIDGE_PORT=$BOT1" "STRICT_PORT=$STRICT1" \
			"LINK_PORT=$LINK1" "PEER_LINK_PORT=$LINK2" \
			"CONF_DIR=$dir" "RUN_DIR=$dir" "PID_FILE=$(pidfile_of 1)" "LOG_FILE=$(logfile_of 1)" \
			"CASEMAPPING=$CASEMAPPING" "HIDESPLITS=$HIDESPLITS" \
			"STRICT_THRESHOLD=$STRICT_THRESHOLD" "STRICT_COMMANDRATE=$STRICT_COMMANDRATE" \
			"STRICT_FAKELAG=$STRICT_FAKELAG"
	else
		render_template "$TEMPLATE" "$cfg" \
			"SERVER_NAME=$NAME2" "SERVER_ID=2ZK" "PEER_NAME=$NAME1" \
			"IRC_PORT=$PORT2" "BRIDGE_PORT=$BOT2" "STRICT_PORT=$STRICT2" \
			"LINK_PORT=$LINK2" "PEER_LINK_PORT=$LINK1" \
			"CONF_DIR=$dir" "RUN_DIR=$dir" "PID_FILE=$(pidfile_of 2)" "LOG_FILE=$(logfile_of 2)" \
			"CASEMAPPING=$CASEMAPPING" "HIDESPLITS=$HIDESPLITS" \
			"STRICT_THRESHOLD=$STRICT_THRESHOLD" "STRICT_COMMANDRATE=$STRICT_COMMANDRATE" \
			"STRICT_FAKELAG=$STRICT_FAKELAG"
	fi
	cp "$ROOT/testdata/inspircd/motd.txt" "$dir/motd.txt"
	# As for scripts/inspircd.sh: stay in the foreground; as root InspIRCd
	# exits at once without --runasroot.
	args=(--nofork --config "$cfg")
	[[ $(id -u) -ne 0 ]] || args+=(--runasroot)
	start_bg "$(pidfile_of "$i")" "$(outfile_of "$i")" "$IRCD" "${args[@]}"
}

# fail MSG: show the logs, stop both, exit 1.
fail() {
	local i
	log "$1"
	for i in 1 2; do
		show_log_tail "$(outfile_of "$i")" 20 # config errors go here, before the log opens
		show_log_tail "$(logfile_of "$i")" 15 # LINK: lines say why a link failed
	done
	stop_both
	exit 1
}

cmd_status() {
	local i n=0 rc what=""
	for i in 1 2; do
		if running "$i"; then
			n=$((n + 1))
			what+="irc$i pid $(pid_of "$(pidfile_of "$i")"), "
		else
			what+="irc$i not running, "
		fi
	done
	if ((n == 0)); then
		echo "irclinked: not running"
		return 3
	fi
	if ((n == 2)) && irc_probe "$PORT1" >/dev/null && irc_probe "$PORT2" >/dev/null; then
		rc=0
		linked || rc=$?
		case $rc in
		0) what+="linked" ;;
		3) what+="split" ;;
		*) what+="link state unknown" ;;
		esac
		echo "irclinked: running ($what) on $HOST:$PORT1 (bot $BOT1, strict $STRICT1) and $HOST:$PORT2 (bot $BOT2, strict $STRICT2)"
		return 0
	fi
	echo "irclinked: ${what%, }, but not both answer on $HOST:$PORT1 / $HOST:$PORT2 (logs: $(logfile_of 1), $(logfile_of 2))"
	return 1
}

cmd_pids() {
	local i
	for i in 1 2; do
		running "$i" && printf 'irc%s %s\n' "$i" "$(pid_of "$(pidfile_of "$i")")"
	done
	return 0
}

# do_join: link them (idempotent), log the time.
do_join() {
	local out rc=0 t0
	t0=$(now_ms)
	out=$(link_session join) || rc=$?
	case $rc in
	0) log "linked: $NAME1 and $NAME2 see each other's clients after $(since_s "$t0") s ($(awk '$1 == "ms" { print $2 }' <<<"$out") ms after CONNECT)" ;;
	3) log "already linked" ;;
	*)
		[[ -z $out ]] || log "$out"
		return 1
		;;
	esac
}

do_split() {
	local out rc=0 t0
	t0=$(now_ms)
	out=$(link_session split) || rc=$?
	case $rc in
	0) log "split: after $(since_s "$t0") s ($(awk '$1 == "ms" { print $2 }' <<<"$out") ms after SQUIT) irc2 saw a client of irc1 QUIT with '$(sed -n 's/^quit1 //p' <<<"$out")', irc1 saw a client of irc2 QUIT with '$(sed -n 's/^quit2 //p' <<<"$out")'" ;;
	3) log "already split" ;;
	*)
		[[ -z $out ]] || log "$out"
		return 1
		;;
	esac
}

need_running() {
	if ! running 1 || ! running 2; then
		die "irclinked: not running (both servers): $0 start"
	fi
}

cmd_start() {
	local t0 i rc port
	check_config
	"$ROOT/scripts/install-deps.sh" irc
	raise_nofile
	t0=$(now_ms)
	if running 1 && running 2; then
		if ! wait_for "$START_TIMEOUT" "" listening 1 || ! wait_for "$START_TIMEOUT" "" listening 2; then
			die "irclinked servers run but do not listen; try: $0 restart"
		fi
		do_join || die "irclinked servers run but do not link; try: $0 restart"
		log "irclinked already running (irc1 pid $(pid_of "$(pidfile_of 1)"), irc2 pid $(pid_of "$(pidfile_of 2)"))"
		return 0
	fi
	for i in 1 2; do
		running "$i" && continue
		if ((i == 1)); then set -- "$PORT1" "$BOT1" "$STRICT1" "$LINK1"; else set -- "$PORT2" "$BOT2" "$STRICT2" "$LINK2"; fi
		for port in "$@"; do
			port_open "$HOST" "$port" &&
				die "$HOST:$port is already in use by a process these scripts did not start (set the ZKCHAT_IRCL* ports to use others)"
		done
		log "starting inspircd irc$i.zkchat.test on $HOST:$1 (bot $2, strict $3, link $4)…"
		start_one "$i"
	done
	for i in 1 2; do
		rc=0
		wait_for "$START_TIMEOUT" "$(pidfile_of "$i")" listening "$i" || rc=$?
		((rc != 2)) || fail "inspircd irc$i exited during startup"
		((rc == 0)) || fail "inspircd irc$i did not listen within ${START_TIMEOUT}s"
	done
	do_join || fail "the servers did not link"
	log "irclinked ready after $(since_s "$t0") s: irc1 $HOST:$PORT1 (bot $BOT1, strict $STRICT1, pid $(pid_of "$(pidfile_of 1)")), irc2 $HOST:$PORT2 (bot $BOT2, strict $STRICT2, pid $(pid_of "$(pidfile_of 2)")); logs in $BASE_DIR"
}

# stop_both: both at once (each takes ~1.5 s to shut down).
stop_both() {
	local rc=0 i pids=()
	for i in 2 1; do
		stop_pidfile "$(pidfile_of "$i")" "inspircd irc$i" "$(pattern_of "$i")" "$STOP_TIMEOUT" &
		pids+=("$!")
	done
	for i in "${pids[@]}"; do
		wait "$i" || rc=1
	done
	return "$rc"
}

cmd_stop() {
	if ! running 1 && ! running 2; then
		rm -f "$(pidfile_of 1)" "$(pidfile_of 2)"
		log "irclinked not running"
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
pids) cmd_pids ;;
split)
	need_running
	do_split
	;;
join)
	need_running
	do_join
	;;
*)
	echo "usage: $0 start|stop|status|restart|pids|split|join" >&2
	exit 2
	;;
esac
