# shellcheck shell=bash
# Helpers shared by the zkchat server scripts. Source it, do not run it:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Everything the scripts create lives in two git-ignored folders:
#   ZKCHAT_DATA_DIR  (default <repo>/.data)   server data, configs, logs, pids
#   ZKCHAT_CACHE_DIR (default <repo>/.cache)  downloaded Kafka jars

# Repo root = the folder above scripts/.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Configs need absolute paths, so make a relative override absolute.
_abs_path() {
	case $1 in
	/*) printf '%s\n' "$1" ;;
	*) printf '%s\n' "$PWD/$1" ;;
	esac
}
DATA_DIR=$(_abs_path "${ZKCHAT_DATA_DIR:-$ROOT/.data}")
CACHE_DIR=$(_abs_path "${ZKCHAT_CACHE_DIR:-$ROOT/.cache}")

# Exported so the sub-scripts (and with-servers.sh's command) see the same values.
export ZKCHAT_DATA_DIR=$DATA_DIR
export ZKCHAT_CACHE_DIR=$CACHE_DIR
export ZKCHAT_ZK_PORT=${ZKCHAT_ZK_PORT:-2181}
export ZKCHAT_KAFKA_PORT=${ZKCHAT_KAFKA_PORT:-9092}
export ZKCHAT_KAFKA_CONTROLLER_PORT=${ZKCHAT_KAFKA_CONTROLLER_PORT:-9093}
export ZKCHAT_KAFKA_VERSION=${ZKCHAT_KAFKA_VERSION:-4.1.1}
# InspIRCd (scripts/inspircd.sh): clients on IRC_PORT, the zkchat IRC bridge
# on IRC_BRIDGE_PORT (a connect class without flood limits).
export ZKCHAT_IRC_PORT=${ZKCHAT_IRC_PORT:-6667}
export ZKCHAT_IRC_BRIDGE_PORT=${ZKCHAT_IRC_BRIDGE_PORT:-6668}
# ngIRCd (scripts/ngircd.sh): a second, independent IRC network, one port for
# clients and bridges alike (no flood penalties).
export ZKCHAT_NGIRCD_PORT=${ZKCHAT_NGIRCD_PORT:-6670}
# InspIRCd + Atheme services (scripts/atheme.sh): the network WITH accounts
# (NickServ, SASL). Clients on IRC_ACCOUNTS_PORT, the bridge on
# IRC_ACCOUNTS_BRIDGE_PORT (no flood limits), Atheme links on ATHEME_LINK_PORT.
export ZKCHAT_IRC_ACCOUNTS_PORT=${ZKCHAT_IRC_ACCOUNTS_PORT:-6680}
export ZKCHAT_IRC_ACCOUNTS_BRIDGE_PORT=${ZKCHAT_IRC_ACCOUNTS_BRIDGE_PORT:-6681}
export ZKCHAT_ATHEME_LINK_PORT=${ZKCHAT_ATHEME_LINK_PORT:-7001}

# Everything binds to loopback only.
# shellcheck disable=SC2034 # used by the scripts that source this file
HOST=127.0.0.1

log() {
	printf 'zkchat-scripts: %s\n' "$*" >&2
}

die() {
	log "error: $*"
	exit 1
}

# as_root CMD...: run CMD as root (via sudo when we are not root).
as_root() {
	if [[ $(id -u) -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "need root (or sudo) to run: $*"
	fi
}

# pkg_installed PKG: true when the Debian package is fully installed.
pkg_installed() {
	local status
	# shellcheck disable=SC2016 # ${Status} is a dpkg-query format field, not a shell variable
	status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) || return 1
	[[ $status == *" ok installed" ]]
}

# ensure_apt PKG...: install the packages that are missing, nothing else.
# apt-get update runs at most once per run; the exported flag carries that over
# to sub-scripts (servers.sh -> zookeeper.sh -> install-deps.sh ...).
ensure_apt() {
	local missing=() p apt_log
	for p in "$@"; do
		pkg_installed "$p" || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	command -v apt-get >/dev/null 2>&1 ||
		die "missing packages ${missing[*]} and no apt-get (this expects Debian/Ubuntu)"
	mkdir -p "$DATA_DIR"
	apt_log=$DATA_DIR/apt.log
	if [[ ${ZKCHAT_APT_UPDATED:-0} != 1 ]]; then
		log "apt-get update (once per run)…"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >"$apt_log" 2>&1 ||
			{ tail -n 20 "$apt_log" >&2; die "apt-get update failed (full output: $apt_log)"; }
		export ZKCHAT_APT_UPDATED=1
	fi
	log "installing Debian packages: ${missing[*]}…"
	# --no-install-recommends keeps it lean; callers list every package they really need.
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		"${missing[@]}" >>"$apt_log" 2>&1 ||
		{ tail -n 20 "$apt_log" >&2; die "apt-get install ${missing[*]} failed (full output: $apt_log)"; }
}

# port_open HOST PORT: true when something accepts TCP connections there.
# The subshell closes fd 3 again right away.
port_open() {
	(exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# wait_for TIMEOUT_S PIDFILE CMD...: poll CMD every 0.2 s until it succeeds.
# Returns 0 on success, 1 on timeout, and 2 as soon as the process recorded in
# PIDFILE has died (pass "" to skip that check) — no point waiting for a corpse.
wait_for() {
	local timeout=$1 pidfile=$2
	shift 2
	local deadline=$((SECONDS + timeout))
	while :; do
		"$@" && return 0
		if [[ -n $pidfile ]] && ! pid_running "$pidfile"; then
			# Look again before giving up: a server that writes its own PID
			# to the same file (InspIRCd) truncates it first, and a read in
			# between found it empty ("exited during startup" while it ran).
			sleep 0.2
			pid_running "$pidfile" || return 2
		fi
		((SECONDS < deadline)) || return 1
		sleep 0.2
	done
}

# pid_of PIDFILE: print the recorded PID (empty when there is none).
pid_of() {
	local pid=""
	if [[ -r $1 ]]; then
		read -r pid <"$1" || true # no trailing newline is fine
	fi
	[[ $pid =~ ^[0-9]+$ ]] && printf '%s\n' "$pid"
	return 0
}

# pid_running PIDFILE [PATTERN]: true when the recorded process is alive and
# (if given) its command line contains PATTERN. The pattern guards against a
# stale pid file whose PID was reused by something else, e.g. after a reboot.
pid_running() {
	local pid cmdline
	pid=$(pid_of "$1")
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
	[[ -z ${2:-} ]] && return 0
	cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
	[[ $cmdline == *"$2"* ]]
}

# start_bg PIDFILE LOGFILE CMD...: run CMD detached in its own session (setsid:
# it outlives this shell and the terminal's Ctrl-C, and it leads its own
# process group so stop_pidfile can signal the whole group), output appended
# to LOGFILE, PID written to PIDFILE.
start_bg() {
	local pidfile=$1 logfile=$2
	shift 2
	mkdir -p "$(dirname "$pidfile")" "$(dirname "$logfile")"
	printf '=== %s: starting %s\n' "$(date '+%F %T')" "$*" >>"$logfile"
	# A background job of a non-interactive shell is not a process-group
	# leader, so setsid does not fork and $! is the server's own PID.
	setsid nohup "$@" >>"$logfile" 2>&1 </dev/null &
	printf '%s\n' "$!" >"$pidfile"
}

# stop_pidfile PIDFILE NAME PATTERN [TIMEOUT_S]: TERM the process group, wait
# up to TIMEOUT_S (default 20) seconds, then KILL it. Idempotent. PATTERN is
# as for pid_running, so a stale pid file never gets an unrelated process killed.
stop_pidfile() {
	local pidfile=$1 name=$2 pattern=$3 timeout=${4:-20} pid deadline
	if ! pid_running "$pidfile" "$pattern"; then
		rm -f "$pidfile"
		return 0
	fi
	pid=$(pid_of "$pidfile")
	log "stopping $name (pid $pid)…"
	# Negative PID = the whole process group (the server leads it, see start_bg).
	kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
	deadline=$((SECONDS + timeout))
	while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
		sleep 0.25
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "$name did not stop within ${timeout}s, killing it"
		kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
		while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
	fi
	# Leftovers in the group (none expected for a plain JVM), then the group is gone.
	kill -KILL -- "-$pid" 2>/dev/null || true
	# Only while it still names the process stopped here: a concurrent run
	# (another with-servers.sh) may have started a new server meanwhile, and
	# without its pid file no script would know or stop that one.
	[[ $(pid_of "$pidfile") != "$pid" ]] || rm -f "$pidfile"
	log "$name stopped"
}

# raise_nofile: lift the open-files limit for the servers started from this
# shell; ZooKeeper and Kafka hold one descriptor per client connection.
raise_nofile() {
	local hard
	hard=$(ulimit -Hn)
	[[ $hard == unlimited ]] && hard=1048576
	# Root with CAP_SYS_RESOURCE may raise the hard limit too; else take the hard limit.
	ulimit -n 1048576 2>/dev/null || ulimit -Sn "$hard" 2>/dev/null || true
}

# render_template SRC DST KEY=VALUE...: copy SRC to DST replacing every @KEY@.
# Plain bash substitution, so paths with /, & or | need no escaping.
render_template() {
	local src=$1 dst=$2 text kv key
	shift 2
	text=$(<"$src") || die "cannot read template $src"
	for kv in "$@"; do
		key=${kv%%=*}
		# Quoted pattern and replacement: no globbing, and bash 5.2 does not expand & in the value.
		text=${text//"@$key@"/"${kv#*=}"}
	done
	if [[ $text =~ @[A-Z_]+@ ]]; then
		die "template $src: placeholder ${BASH_REMATCH[0]} was not substituted"
	fi
	mkdir -p "$(dirname "$dst")"
	printf '%s\n' "$text" >"$dst.tmp"
	mv -f "$dst.tmp" "$dst"
}

# now_ms: wall clock in milliseconds, for "ready after 2.3 s" messages.
now_ms() {
	local us=${EPOCHREALTIME/[.,]/}
	printf '%s\n' "$((us / 1000))"
}

# since_s START_MS: seconds elapsed since START_MS, one decimal.
since_s() {
	local ms=$(($(now_ms) - $1))
	printf '%d.%d\n' "$((ms / 1000))" "$((ms % 1000 / 100))"
}

# show_log_tail FILE N: print the last N lines of FILE to stderr (for failures).
show_log_tail() {
	[[ -s $1 ]] || return 0
	log "last $2 lines of $1:"
	tail -n "$2" "$1" >&2
}

# irc_probe PORT: register on $HOST:PORT as a throwaway client and print what
# the server sent up to the end of the MOTD (001..005, 375/376 or 422), then
# QUIT. Fails unless 001 (RPL_WELCOME) arrived, or after PROBE_TIMEOUT
# seconds (default 5). InspIRCd completes registrations in a once-a-second
# pass, so this takes up to ~1 s there even on an idle server.
irc_probe() {
	# shellcheck disable=SC2016 # $1.. expand in the inner bash
	timeout "${PROBE_TIMEOUT:-5}" bash -c '
		exec 3<>"/dev/tcp/$1/$2" || exit 1
		cr=$(printf "\r")
		printf "NICK %s\r\nUSER zkprobe 0 * :zkchat readiness probe\r\n" "$3" >&3
		welcomed=0
		while IFS= read -r line <&3; do
			line=${line%"$cr"}
			printf "%s\n" "$line"
			case $line in
			"PING "*) printf "PONG %s\r\n" "${line#PING }" >&3 ;;
			":"*" 001 "*) welcomed=1 ;;
			":"*" 376 "* | ":"*" 422 "*) break ;; # end of (missing) MOTD
			"ERROR "*) break ;;
			esac
		done
		((welcomed)) || exit 1
		printf "QUIT :probe done\r\n" >&3
		exit 0
	' _ "$HOST" "$1" "zkprobe$$x$RANDOM" 2>/dev/null
}
