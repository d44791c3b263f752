#!/bin/sh
# address-taken.sh WORKER - a joiner whose process already uses the region's address range
# must fail with UDSM_EADDR (and a clear message); the first node, left waiting, must give up
# at its timeout instead of hanging.
worker=$1
port=$((20000 + $$ % 20000))
timeout 30 "$worker" --listen 127.0.0.1:$port --nodes 2 --open-timeout 3000 crc &
first=$!
timeout 30 "$worker" --join 127.0.0.1:$port --squat crc
joiner=$?
wait $first
first_rc=$?
echo "joiner exit $joiner (want 0: saw UDSM_EADDR), first node exit $first_rc (want 2: timed out)"
[ $joiner = 0 ] && [ $first_rc = 2 ]
