#!/usr/bin/env bash
# Installs what the zkchat scripts and build need, only when missing.
#
#   scripts/install-deps.sh [all|servers|zookeeper|kafka|go]   (default: all)
#
#   zookeeper  Java 17+, Debian's zookeeper package (server + zkCli.sh)
#   kafka      Java 17+, Maven (fetches the Kafka jars), kcat (readiness probe)
#   servers    zookeeper + kafka (what scripts/*.sh start needs)
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
servers)
	deps_zookeeper
	deps_kafka
	;;
go) deps_go ;;
all)
	deps_zookeeper
	deps_kafka
	ensure_apt netcat-openbsd
	deps_go
	log "all dependencies present"
	;;
*) die "usage: $0 [all|servers|zookeeper|kafka|go]" ;;
esac
