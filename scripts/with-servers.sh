#!/usr/bin/env bash
# Runs a command against freshly started ZooKeeper + Kafka + InspIRCd + ngIRCd:
#
#   scripts/with-servers.sh go test ./...
#
# Installs/fetches whatever is missing, starts the servers that are not
# running yet, exports ZKCHAT_ZOOKEEPER, ZKCHAT_KAFKA, ZKCHAT_IRC_SERVER (for
# IRC clients), ZKCHAT_IRC_BRIDGE_SERVER (the IRC bridge's port, without
# flood limits) and ZKCHAT_NGIRCD_SERVER (the second IRC network, one port
# for all), all host:port, runs the command and exits with its exit
# code. On exit (also Ctrl-C / TERM) it stops only the servers it started
# itself; ones already running stay up.
# Also starts atheme (scripts/atheme.sh: InspIRCd + Atheme services, the
# network WITH NickServ accounts and SASL) and exports
# ZKCHAT_IRC_ACCOUNTS_SERVER (its client port) and
# ZKCHAT_IRC_ACCOUNTS_BRIDGE_SERVER (its port without flood limits).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if (($# == 0)); then
	echo "usage: $0 COMMAND [ARGS...]" >&2
	exit 2
fi

S=$ROOT/scripts
STARTED=() # servers to stop on exit, in start order

# shellcheck disable=SC2317 # only called from the trap
cleanup() {
	local rc=$? i
	trap - EXIT INT TERM
	# Reverse order: ngIRCd, InspIRCd, then Kafka, then ZooKeeper.
	# (atheme, started last, is stopped first.)
	for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
		"$S/${STARTED[i]}.sh" stop || true
	done
	exit "$rc"
}
trap cleanup EXIT
# The exit runs the EXIT trap; 128+signal like a shell would report.
trap 'exit 130' INT
trap 'exit 143' TERM

for name in zookeeper kafka inspircd ngircd atheme; do
	rc=0
	"$S/$name.sh" status >/dev/null 2>&1 || rc=$?
	case $rc in
	0) log "$name already running; it stays running afterwards" ;;
	3)
		# Recorded before starting, so an interrupted start is cleaned up too.
		STARTED+=("$name")
		"$S/$name.sh" start
		;;
	*)
		# Runs (started by someone else's run) but does not answer yet:
		# wait for it, but do not stop it afterwards.
		"$S/$name.sh" start
		;;
	esac
done

export ZKCHAT_ZOOKEEPER=$HOST:$ZKCHAT_ZK_PORT
export ZKCHAT_KAFKA=$HOST:$ZKCHAT_KAFKA_PORT
export ZKCHAT_IRC_SERVER=$HOST:$ZKCHAT_IRC_PORT
export ZKCHAT_IRC_BRIDGE_SERVER=$HOST:$ZKCHAT_IRC_BRIDGE_PORT
export ZKCHAT_NGIRCD_SERVER=$HOST:$ZKCHAT_NGIRCD_PORT
export ZKCHAT_IRC_ACCOUNTS_SERVER=$HOST:$ZKCHAT_IRC_ACCOUNTS_PORT
export ZKCHAT_IRC_ACCOUNTS_BRIDGE_SERVER=$HOST:$ZKCHAT_IRC_ACCOUNTS_BRIDGE_PORT
log "running: $* (ZKCHAT_ZOOKEEPER=$ZKCHAT_ZOOKEEPER ZKCHAT_KAFKA=$ZKCHAT_KAFKA ZKCHAT_IRC_SERVER=$ZKCHAT_IRC_SERVER ZKCHAT_IRC_BRIDGE_SERVER=$ZKCHAT_IRC_BRIDGE_SERVER ZKCHAT_NGIRCD_SERVER=$ZKCHAT_NGIRCD_SERVER)"
log "accounts network: ZKCHAT_IRC_ACCOUNTS_SERVER=$ZKCHAT_IRC_ACCOUNTS_SERVER ZKCHAT_IRC_ACCOUNTS_BRIDGE_SERVER=$ZKCHAT_IRC_ACCOUNTS_BRIDGE_SERVER"

set +e
"$@"
rc=$?
set -e
exit "$rc"
