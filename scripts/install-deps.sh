#!/usr/bin/env bash
# Installs what the zkchat scripts and build need, only when missing.
#
#   scripts/install-deps.sh [all|servers|zookeeper|kafka|irc|go]   (default: all)
#
#   zookeeper  Java 17+, Debian's zookeeper package (server + zkCli.sh)
#   kafka      Java 17+, Maven (fetches the Kafka jars), kcat (readiness probe)
#   inspircd   Debian's inspircd (3.x) alone: the IRC server of `make run`
#   run        zookeeper + kafka + inspircd + go: what `make run` needs
#   irc        Debian's inspircd (3.x), ngircd (a second, independent IRC
#              network), ii (a tiny real IRC client the tests drive through
#              FIFOs), irssi and tmux (irssi, typed into through tmux, in
#              TestIrssiLongMessage) and atheme-services (NickServ accounts + SASL for the
#              InspIRCd with accounts)
#   servers    zookeeper + kafka + irc (what internal/servers runs)
#   go         Go >= 1.26 (checked only) and gcc + libc6-dev for cgo,
#              which confluent-kafka-go needs
#   all        everything above plus netcat-openbsd (handy: echo srvr | nc …)
#
# internal/servers (cmd/devenv, the tests) runs it before starting a server;
# it returns at once when everything is there. apt output goes to
# $ZKCHAT_DATA_DIR/apt.log.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA_DIR=${ZKCHAT_DATA_DIR:-$ROOT/.data}

log() { printf 'install-deps: %s\n' "$*" >&2; }
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
	# shellcheck disable=SC2016 # ${Status} is a dpkg-query format field
	status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) || return 1
	[[ $status == *" ok installed" ]]
}

# ensure_apt PKG...: install the packages that are missing, nothing else
# (apt-get update at most once per run).
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
	if [[ ${APT_UPDATED:-0} != 1 ]]; then
		log "apt-get update (once per run)…"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >"$apt_log" 2>&1 ||
			{ tail -n 20 "$apt_log" >&2; die "apt-get update failed (full output: $apt_log)"; }
		APT_UPDATED=1
	fi
	log "installing Debian packages: ${missing[*]}…"
	# --no-install-recommends keeps it lean; callers list every package they really need.
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		"${missing[@]}" >>"$apt_log" 2>&1 ||
		{ tail -n 20 "$apt_log" >&2; die "apt-get install ${missing[*]} failed (full output: $apt_log)"; }
}

# pid_of PIDFILE: the recorded PID (empty when there is none).
pid_of() {
	local pid=""
	[[ ! -r $1 ]] || read -r pid <"$1" || true
	[[ ! $pid =~ ^[0-9]+$ ]] || printf '%s\n' "$pid"
}

MIN_JAVA=17
MIN_GO_MINOR=26 # Go 1.x

java_major() {
	local v
	v=$(java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)
	v=${v#1.}         # Java 8 and older report 1.8.0_…
	v=${v%%[!0-9]*}   # 17.0.15 / 21-ea -> 17 / 21
	printf '%s\n' "${v:-0}"
}

deps_java() {
	if ! command -v java >/dev/null 2>&1 || (($(java_major) < MIN_JAVA)); then
		ensure_apt openjdk-17-jre-headless
	fi
	command -v java >/dev/null 2>&1 || die "java not found after installing openjdk-17-jre-headless"
	(($(java_major) >= MIN_JAVA)) ||
		die "java on PATH is $(java_major), Kafka 4 needs Java $MIN_JAVA+ (check update-alternatives --config java)"
}

deps_zookeeper() {
	deps_java
	# Pulls log4j 1.2 and slf4j-log4j12 too, which internal/servers puts on the classpath.
	ensure_apt zookeeper
}

deps_kafka() {
	deps_java
	command -v mvn >/dev/null 2>&1 || ensure_apt maven
	ensure_apt kcat
}

# packaged_pids NAME PIDFILE: PIDs of the NAME package's own daemon (inspircd,
# ngircd). Both packages' init scripts and systemd units run it as user irc
# (with /etc/NAME); internal/servers runs ours with a config of ours.
packaged_pids() {
	local name=$1 pid
	pid=$(pid_of "$2") # the init script's pid file
	{
		# A stale pid file's PID may belong to something else by now.
		if [[ -n $pid && $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]]; then
			printf '%s\n' "$pid"
		fi
		pgrep -u irc -x "$name" 2>/dev/null || true
	} | sort -u
}

# stop_packaged NAME PIDFILE: installing inspircd or ngircd runs
# `invoke-rc.d NAME start` from its postinst. Docker-style images forbid that
# (policy-rc.d exits 101) and there is no systemd here, but where it is
# allowed the packaged daemon comes up on port 6667 (/etc/NAME/NAME.conf)
# and takes the port internal/servers needs. Stop it, and disable it so a
# reboot does not bring it back.
stop_packaged() {
	local name=$1 pidfile=$2 pids=()
	[[ -e /etc/init.d/$name || -e /lib/systemd/system/$name.service ]] || return 0
	# Only renames the rc?.d links; harmless where there are none.
	as_root update-rc.d "$name" disable >/dev/null 2>&1 || true
	if [[ -d /run/systemd/system ]]; then
		as_root systemctl disable --now "$name" >/dev/null 2>&1 || true
	fi
	mapfile -t pids < <(packaged_pids "$name" "$pidfile")
	((${#pids[@]})) || return 0
	log "stopping the $name service the package started (pid ${pids[*]}); internal/servers runs its own"
	as_root service "$name" stop >/dev/null 2>&1 || true
	as_root kill -TERM "${pids[@]}" 2>/dev/null || true
	local i
	for ((i = 0; i < 50; i++)); do
		pgrep -u irc -x "$name" >/dev/null || break
		sleep 0.2
	done
	if pgrep -u irc -x "$name" >/dev/null; then
		mapfile -t pids < <(packaged_pids "$name" "$pidfile")
		((${#pids[@]} == 0)) || as_root kill -KILL "${pids[@]}" 2>/dev/null || true
		sleep 0.5
	fi
	mapfile -t pids < <(packaged_pids "$name" "$pidfile")
	((${#pids[@]} == 0)) ||
		die "could not stop the packaged $name service (pid ${pids[*]}, user irc); stop it by hand: service $name stop"
}

deps_inspircd() {
	local had_inspircd=1
	pkg_installed inspircd || had_inspircd=0
	ensure_apt inspircd
	((had_inspircd)) || stop_packaged inspircd /var/run/inspircd/inspircd.pid
	[[ -x /usr/sbin/inspircd ]] || die "/usr/sbin/inspircd missing after installing the inspircd package"
}

deps_irc() {
	local had_inspircd=1 had_ngircd=1
	pkg_installed inspircd || had_inspircd=0
	pkg_installed ngircd || had_ngircd=0
	local had_atheme=1
	pkg_installed atheme-services || had_atheme=0
	ensure_apt inspircd ngircd ii irssi tmux
	ensure_apt atheme-services
	# Only right after our own install: a daemon someone set up on purpose earlier stays.
	((had_inspircd)) || stop_packaged inspircd /var/run/inspircd/inspircd.pid
	((had_ngircd)) || stop_packaged ngircd /run/ngircd/ngircd.pid
	# Debian ships no /etc/atheme/atheme.conf, so its daemon cannot really
	# start; stopped and disabled all the same, like the two above.
	((had_atheme)) || stop_packaged atheme-services /var/run/atheme/atheme.pid
	[[ -x /usr/sbin/inspircd ]] || die "/usr/sbin/inspircd missing after installing the inspircd package"
	[[ -x /usr/sbin/ngircd ]] || die "/usr/sbin/ngircd missing after installing the ngircd package"
	command -v ii >/dev/null 2>&1 || die "ii not found after installing the ii package"
	command -v irssi >/dev/null 2>&1 || die "irssi not found after installing the irssi package"
	[[ -x /usr/bin/atheme-services ]] || die "/usr/bin/atheme-services missing after installing the atheme-services package"
}

deps_go() {
	local gobin="" v
	if command -v go >/dev/null 2>&1; then
		gobin=$(command -v go)
	elif [[ -x /usr/local/go/bin/go ]]; then
		gobin=/usr/local/go/bin/go # the official tarball's location, often not on PATH
	fi
	# No Debian package is anywhere near new enough, so do not try apt.
	[[ -n $gobin ]] ||
		die "Go >= 1.$MIN_GO_MINOR is required but not installed; install it from https://go.dev/dl/ (Debian's golang package is too old)"
	v=$("$gobin" env GOVERSION)
	if [[ $v =~ ^go1\.([0-9]+) ]] && ((BASH_REMATCH[1] >= MIN_GO_MINOR)); then
		:
	else
		die "$gobin is $v, zkchat needs Go >= 1.$MIN_GO_MINOR; install it from https://go.dev/dl/"
	fi
	# gcc alone (no recommends) would lack the C headers cgo needs.
	ensure_apt gcc libc6-dev
}

what=${1:-all}
case $what in
zookeeper) deps_zookeeper ;;
kafka) deps_kafka ;;
irc) deps_irc ;;
inspircd) deps_inspircd ;;
run)
	deps_zookeeper
	deps_kafka
	deps_inspircd
	deps_go
	;;
servers)
	deps_zookeeper
	deps_kafka
	deps_irc
	;;
go) deps_go ;;
all)
	deps_zookeeper
	deps_kafka
	deps_irc
	ensure_apt netcat-openbsd
	deps_go
	log "all dependencies present"
	;;
*) die "usage: $0 [all|run|servers|zookeeper|kafka|inspircd|irc|go]" ;;
esac
