#!/bin/sh
# stall.sh WORKER stall|stallfull|stalldead - two nodes on loopback with
# UDSM_PEER_TIMEOUT_MS=5000.
#   stall:     node 1 stops itself (SIGSTOP) for 2 s while node 0 reads its pages: the work
#              completes with the right contents and nobody is lost or fenced.
#   stalldead: node 1 stays stopped: node 0 gets SIGBUS on its pages and UDSM_EPEER within
#              the bound (5 s + one heartbeat tick + slack for a loaded machine); continued
#              afterwards, node 1 finds itself fenced (every page LOST).
#   stallfull: node 1 stops with many page requests answered toward it, inside a network
#              namespace with 8 KiB TCP buffers so that node 0's socket to it is full; node
#              0 must not spin while it waits (skipped without root); continued after 3 s,
#              everything completes.
set -u
worker=$1
mode=$2
dir=$(mktemp -d)
p0=; p1=
cleanup() {
	[ -n "$p1" ] && kill -KILL "$p1" 2>/dev/null
	[ -n "$p0" ] && kill -KILL "$p0" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM
export UDSM_PEER_TIMEOUT_MS=5000
run=
if [ "$mode" = stallfull ]; then
	ns=udsm-sf-$$
	[ "$(id -u)" = 0 ] || { echo "SKIP: network namespaces need root"; exit 77; }
	ip netns add "$ns" 2>/dev/null || { echo "SKIP: cannot create a network namespace"; exit 77; }
	trap 'cleanup; ip netns del "$ns" 2>/dev/null' EXIT INT TERM
	ip -n "$ns" link set lo up || exit 1
	ip netns exec "$ns" sh -c 'echo 4096 8192 8192 >/proc/sys/net/ipv4/tcp_wmem &&
		echo 4096 8192 8192 >/proc/sys/net/ipv4/tcp_rmem' || exit 1
	run="ip netns exec $ns"
fi

# Wait until process $1 is stopped (state T in /proc/PID/stat), at most 10 s.
wait_stopped() {
	i=0
	while [ $i -lt 1000 ]; do
		st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
		[ "$st" = T ] && return 0
		[ -z "$st" ] && return 1
		sleep 0.01; i=$((i + 1))
	done
	return 1
}

timeout 40 $run "$worker" --listen 127.0.0.1:0 --nodes 2 --pages 512 --port-fd 3 \
	--expect-ms 7500 "$mode" 3>"$dir/port" &
p0=$!
i=0
while [ ! -s "$dir/port" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i + 1)); done
[ -s "$dir/port" ] || { echo "node 0 did not listen"; exit 1; }
$run "$worker" --join "$(cat "$dir/port")" --pages 512 "$mode" &
p1=$! # ip netns exec execs the worker: the same pid
wait_stopped $p1 || { echo "node 1 never stopped itself"; exit 1; }
if [ "$mode" = stall ] || [ "$mode" = stallfull ]; then
	[ "$mode" = stall ] && sleep 2 || sleep 3
	kill -CONT $p1
	wait $p0; r0=$?
	wait $p1; r1=$?
	p0=; p1=
else
	wait $p0; r0=$?
	p0=
	kill -CONT $p1
	( sleep 20; kill -KILL $p1 2>/dev/null ) >/dev/null 2>&1 &
	dog=$!
	wait $p1; r1=$?
	p1=
	kill $dog 2>/dev/null
fi
echo "$mode: node 0 exit $r0, node 1 exit $r1"
[ $r0 = 0 ] && [ $r1 = 0 ]
