#!/usr/bin/env bash
# Both zkchat test servers: ZooKeeper, then Kafka (stopped in reverse order).
#
#   scripts/servers.sh start|stop|status|restart
#
# status exits 0 only when both answer.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

S=$ROOT/scripts

start() {
	"$S/zookeeper.sh" start
	"$S/kafka.sh" start
}

# Try both even when the first fails, so nothing is left behind.
stop() {
	local rc=0
	"$S/kafka.sh" stop || rc=1
	"$S/zookeeper.sh" stop || rc=1
	return "$rc"
}

status() {
	local rc=0 r
	for name in zookeeper kafka; do
		r=0
		"$S/$name.sh" status || r=$?
		((rc != 0)) || rc=$r
	done
	return "$rc"
}

case ${1:-} in
start) start ;;
stop) stop ;;
status) status ;;
restart)
	stop
	start
	;;
*)
	echo "usage: $0 start|stop|status|restart" >&2
	exit 2
	;;
esac
