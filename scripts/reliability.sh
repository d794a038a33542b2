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
mkdir -p "$DATA_DIR"
out=$DATA_DIR/reliability.log
rc=0
go test -count=1 -p 1 -timeout 70m -v "$@" ./internal/reliability/ 2>&1 | tee "$out" || rc=$?

# A failing row dumps its processes' logs (long); CI shows the end of the
# output. So the end says which tests failed and what they themselves
# logged (their *_test.go lines, the process logs left out).
if ((rc != 0)); then
	log "fault suite failed (exit $rc); full output in $out; the failing tests' own lines:"
	awk '
		/^ *=== RUN / { cur = $3; lines[cur] = ""; n[cur] = 0; next }
		/^ *=== (CONT|NAME) / { cur = $3; next }
		/^ +[A-Za-z0-9_]+_test\.go:[0-9]+: / { lines[cur] = lines[cur] $0 "\n"; n[cur]++; next }
		/^ *--- FAIL: / {
			name = $3
			printf "--- FAIL: %s\n", name
			# At most the last 40 lines of each: the errors come last.
			split(lines[name], l, "\n"); k = n[name]
			for (i = (k > 40 ? k - 39 : 1); i <= k; i++) print l[i]
		}
	' "$out"
fi
exit "$rc"
