#!/usr/bin/env bash
# The zkchat test servers: ZooKeeper, Kafka, then InspIRCd (the IRC server
# for the IRC bridge) and ngIRCd (a second, independent IRC network); stopped
# in reverse order. Then atheme (scripts/atheme.sh: a third network, InspIRCd
# linked to Atheme services, WITH NickServ accounts and SASL), stopped first.
#
#   scripts/servers.sh start|stop|status|restart
#
# status exits 0 only when all answer.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

S=$ROOT/scripts

start() {
	"$S/zookeeper.sh" start
	"$S/kafka.sh" start
	"$S/inspircd.sh" start
	"$S/ngircd.sh" start
	"$S/atheme.sh" start
}

# Try all even when one fails, so nothing is left behind.
stop() {
	local rc=0
	"$S/atheme.sh" stop || rc=1
	"$S/ngircd.sh" stop || rc=1
	"$S/inspircd.sh" stop || rc=1
	"$S/kafka.sh" stop || rc=1
	"$S/zookeeper.sh" stop || rc=1
	return "$rc"
}

status() {
	local rc=0 r
	for name in zookeeper kafka inspircd ngircd atheme; do
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
