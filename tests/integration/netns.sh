#!/bin/sh
# netns.sh WORKER - two udsm nodes in two network namespaces joined by a veth pair, each with
# its own address (10.77.0.1 and 10.77.0.2), running the crc workload. Exits 77 (skip) with a
# reason where namespaces cannot be made (not root, no ip(8), no CONFIG_NET_NS).
# Across addresses that are not loopback, udsm needs a cluster secret: both nodes get one.
set -u
worker=$1
id=$$
a=udsm-a-$id
b=udsm-b-$id
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "network namespaces need root"
command -v ip >/dev/null 2>&1 || skip "ip(8) from iproute2 is not installed"
cleanup() { ip netns del "$a" 2>/dev/null; ip netns del "$b" 2>/dev/null; }
trap cleanup EXIT INT TERM
ip netns add "$a" 2>/dev/null || skip "cannot create a network namespace"
ip netns add "$b" || exit 1
ip link add "va$id" netns "$a" type veth peer name "vb$id" netns "$b" || skip "no veth support"
ip -n "$a" addr add 10.77.0.1/24 dev "va$id" && ip -n "$a" link set "va$id" up &&
ip -n "$a" link set lo up &&
ip -n "$b" addr add 10.77.0.2/24 dev "vb$id" && ip -n "$b" link set "vb$id" up &&
ip -n "$b" link set lo up || exit 1

export UDSM_SECRET="netns-test-$id"
timeout 60 ip netns exec "$a" "$worker" --listen 10.77.0.1:7411 --nodes 2 --pages 128 crc &
p0=$!
timeout 60 ip netns exec "$b" "$worker" --join 10.77.0.1:7411 --pages 128 crc
r1=$?
wait $p0
r0=$?
echo "node 0 (10.77.0.1) exit $r0, node 1 (10.77.0.2) exit $r1"
[ $r0 = 0 ] && [ $r1 = 0 ]
