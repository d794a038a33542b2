#!/usr/bin/env bash
# Runs every check and test against real ZooKeeper and Kafka (started here,
# stopped afterwards): gofmt, go vet, go test -race on all packages, then
# the fault suite on a replicated cluster (scripts/reliability.sh,
# doc/reliability.md).
#
#   scripts/test.sh [go test flags...]      e.g. scripts/test.sh -run TestSend -v
#
# With go test flags only the first part runs (a targeted run); the fault
# suite then runs on its own with scripts/reliability.sh [flags].
#
# Integration tests fail rather than skip when a server is missing
# (ZKCHAT_TEST_STRICT=1).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

"$ROOT/scripts/install-deps.sh" go
export PATH=$PATH:/usr/local/go/bin
export CGO_ENABLED=1

log "gofmt"
bad=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*'))
if [ -n "$bad" ]; then
	die "gofmt would change: $bad (run gofmt -w)"
fi
log "go vet ./... (first build of confluent-kafka-go's cgo takes a while)"
go vet ./...

export ZKCHAT_TEST_STRICT=1
log "go test -race ./... against real servers"
# The test binaries run in parallel; -timeout bounds a hung test.
"$ROOT/scripts/with-servers.sh" go test -race -count=1 -timeout 20m "$@" ./...
if (($# > 0)); then
	log "go test flags given: fault suite not run (scripts/reliability.sh runs it)"
	exit 0
fi
log "fault suite on a 3-server ZooKeeper ensemble and a 3-broker Kafka cluster"
exec "$ROOT/scripts/reliability.sh"
