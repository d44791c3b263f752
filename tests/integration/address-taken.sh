#!/bin/sh
# address-taken.sh WORKER - a joiner whose process already uses the region's address range
# must fail with UDSM_EADDR (and a clear message); the first node, left waiting, must give up
# at its timeout instead of hanging.
worker=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# The first node listens on a port the kernel picks and reports it (a port chosen here could
# be taken by another test's connection).
timeout 30 "$worker" --listen 127.0.0.1:0 --nodes 2 --open-timeout 3000 --port-fd 3 crc \
	3>"$dir/port" &
first=$!
i=0
while [ ! -s "$dir/port" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i + 1)); done
[ -s "$dir/port" ] || { echo "first node did not listen"; exit 1; }
timeout 30 "$worker" --join "$(cat "$dir/port")" --squat crc
joiner=$?
wait $first
first_rc=$?
echo "joiner exit $joiner (want 0: saw UDSM_EADDR), first node exit $first_rc (want 2: timed out)"
[ $joiner = 0 ] && [ $first_rc = 2 ]
