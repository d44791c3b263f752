#!/bin/sh
# backpressure.sh CLUSTER WORKER NODES PAGES [WORKER ARGS...] - NODES udsm nodes on the loopback of a network
# namespace whose TCP buffers are 8 KiB (tcp_wmem and tcp_rmem "4096 8192 8192"), running the
# exchange workload: every node writes a share of the pages, then reads and checks every page
# the others wrote with four threads, twice. Sockets are full much of the time: the nodes must
# neither spin on them nor lock up, and every page must arrive intact within the harness's
# time bound. BP_WORKLOAD names another workload (leave: a paced hand-over through full
# sockets).
# Exits 77 (skip) with a reason where namespaces cannot be made.
set -u
cluster=$1
worker=$2
nodes=$3
pages=$4
shift 4
ns=udsm-bp-$$
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "network namespaces need root"
command -v ip >/dev/null 2>&1 || skip "ip(8) from iproute2 is not installed"
cleanup() { ip netns del "$ns" 2>/dev/null; }
trap cleanup EXIT INT TERM
ip netns add "$ns" 2>/dev/null || skip "cannot create a network namespace"
ip -n "$ns" link set lo up || exit 1
ip netns exec "$ns" sh -c 'echo 4096 8192 8192 >/proc/sys/net/ipv4/tcp_wmem &&
		echo 4096 8192 8192 >/proc/sys/net/ipv4/tcp_rmem' ||
	skip "cannot set TCP buffer sizes in a namespace"
echo "tcp_wmem: $(ip netns exec "$ns" cat /proc/sys/net/ipv4/tcp_wmem)"
start=$(date +%s)
ip netns exec "$ns" "$cluster" --worker "$worker" --nodes "$nodes" --timeout 60 -- \
	--pages "$pages" "$@" "${BP_WORKLOAD:-exchange}"
rc=$?
echo "$nodes nodes, $pages pages through 8 KiB TCP buffers: exit $rc in $(($(date +%s) - start)) s"
exit $rc
