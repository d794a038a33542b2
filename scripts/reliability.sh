#!/usr/bin/env bash
# The fault suite (doc/reliability.md): starts a 3-server ZooKeeper ensemble
# and a 3-broker Kafka cluster (scripts/cluster.sh), runs the tests of
# internal/reliability against them (they start their own IRC servers and
# zkchat processes and inject faults on those PIDs), then stops the cluster
# again if this script started it.
#
#   scripts/reliability.sh [go test flags...]   e.g. -run TestKafka -v
#
# ZKCHAT_CLUSTER_BASE / ZKCHAT_DATA_DIR select another cluster (see
# scripts/cluster.sh), so a suite can run beside another one.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

"$ROOT/scripts/install-deps.sh" go
"$ROOT/scripts/install-deps.sh" irc
export PATH=$PATH:/usr/local/go/bin
export CGO_ENABLED=1

started=0
rc=0
"$ROOT/scripts/cluster.sh" status >/dev/null 2>&1 || rc=$?
case $rc in
0) log "cluster already running; it stays running afterwards" ;;
3)
	log "starting the cluster (3 ZooKeeper, 3 Kafka)…"
	started=1
	;;
*) die "cluster partly running; see scripts/cluster.sh status, or scripts/cluster.sh stop first" ;;
esac

# shellcheck disable=SC2317 # only called from the trap
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if ((started)); then
		"$ROOT/scripts/cluster.sh" stop || true
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
((started)) && "$ROOT/scripts/cluster.sh" start

# testenv reads the servers from here: the cluster's members.
eval "export $("$ROOT/scripts/cluster.sh" env)"
export ZKCHAT_RELIABILITY=1 ZKCHAT_TEST_STRICT=1
log "fault suite: go test ./internal/reliability/ against $ZKCHAT_ZOOKEEPER and $ZKCHAT_KAFKA"
# Faults hit shared servers: one test at a time (the package's tests are
# not parallel), no -race (the zkchat processes under test are built
# normally; the race detector runs in scripts/test.sh).
# -v: each row's "ROW | name | numbers |" line is in the output (CI logs
# keep the numbers of doc/reliability.md's table).
go test -count=1 -p 1 -timeout 70m -v "$@" ./internal/reliability/
