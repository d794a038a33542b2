#!/usr/bin/env bash
# Installs what the zkchat scripts and build need, only when missing.
#
#   scripts/install-deps.sh [all|servers|zookeeper|kafka|irc|go]   (default: all)
#
#   zookeeper  Java 17+, Debian's zookeeper package (server + zkCli.sh)
#   kafka      Java 17+, Maven (fetches the Kafka jars), kcat (readiness probe)
#   irc        Debian's inspircd (3.x, the IRC server scripts/inspircd.sh runs),
#              ngircd (a second, independent IRC network: scripts/ngircd.sh)
#              and ii (a tiny real IRC client the tests drive through FIFOs)
#              and atheme-services (NickServ accounts + SASL for the second
#              InspIRCd, the network with accounts: scripts/atheme.sh)
#   servers    zookeeper + kafka + irc (what scripts/*.sh start needs)
#   go         Go >= 1.26 (checked only) and gcc + libc6-dev for cgo,
#              which confluent-kafka-go needs
#   all        everything above plus netcat-openbsd (handy: echo srvr | nc …)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

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
	# Pulls log4j 1.2 and slf4j-log4j12 too, which zookeeper.sh puts on the classpath.
	ensure_apt zookeeper
}

deps_kafka() {
	deps_java
	command -v mvn >/dev/null 2>&1 || ensure_apt maven
	ensure_apt kcat
}

# packaged_pids NAME PIDFILE: PIDs of the NAME package's own daemon (inspircd,
# ngircd). Both packages' init scripts and systemd units run it as user irc
# (with /etc/NAME); scripts/NAME.sh runs ours with a config of ours.
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
# and takes the port scripts/inspircd.sh needs. Stop it, and disable it so a
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
	log "stopping the $name service the package started (pid ${pids[*]}); scripts/$name.sh runs its own"
	as_root service "$name" stop >/dev/null 2>&1 || true
	as_root kill -TERM "${pids[@]}" 2>/dev/null || true
	# shellcheck disable=SC2016 # $1 expands in the inner bash
	if ! wait_for 10 "" bash -c '! pgrep -u irc -x "$1" >/dev/null' _ "$name"; then
		mapfile -t pids < <(packaged_pids "$name" "$pidfile")
		((${#pids[@]} == 0)) || as_root kill -KILL "${pids[@]}" 2>/dev/null || true
		sleep 0.5
	fi
	mapfile -t pids < <(packaged_pids "$name" "$pidfile")
	((${#pids[@]} == 0)) ||
		die "could not stop the packaged $name service (pid ${pids[*]}, user irc); stop it by hand: service $name stop"
}

deps_irc() {
	local had_inspircd=1 had_ngircd=1
	pkg_installed inspircd || had_inspircd=0
	pkg_installed ngircd || had_ngircd=0
	local had_atheme=1
	pkg_installed atheme-services || had_atheme=0
	ensure_apt inspircd ngircd ii
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
*) die "usage: $0 [all|servers|zookeeper|kafka|irc|go]" ;;
esac
