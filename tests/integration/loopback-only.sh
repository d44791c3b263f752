#!/bin/sh
# loopback-only.sh WORKER - protected mode: without a cluster secret a node accepts and contacts
# peers on loopback addresses only. In two network namespaces joined by a veth pair
# (10.78.x.1 and 10.78.x.2, unique per run), node 0 listens on its veth address without a
# secret: it must warn that only loopback peers will be accepted, refuse a raw connection
# from the other namespace (with AUTH_FAIL saying why), and a joiner there must fail with
# UDSM_EAUTH and a clear message: without a secret it refuses to connect; with one, node 0
# refuses it. Exits 77 (skip) with a reason where namespaces cannot be made.
set -u
worker=$1
id=$$
a=udsm-la-$id
b=udsm-lb-$id
net=10.78.$((id % 250)).
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "network namespaces need root"
command -v ip >/dev/null 2>&1 || skip "ip(8) from iproute2 is not installed"
command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"
tmp=$(mktemp -d)
cleanup() { ip netns del "$a" 2>/dev/null; ip netns del "$b" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM
ip netns add "$a" 2>/dev/null || skip "cannot create a network namespace"
ip netns add "$b" || exit 1
ip link add "la$id" netns "$a" type veth peer name "lb$id" netns "$b" || skip "no veth support"
ip -n "$a" addr add "${net}1/24" dev "la$id" && ip -n "$a" link set "la$id" up &&
ip -n "$a" link set lo up &&
ip -n "$b" addr add "${net}2/24" dev "lb$id" && ip -n "$b" link set "lb$id" up &&
ip -n "$b" link set lo up || exit 1
unset UDSM_SECRET UDSM_SECRET_FILE

UDSM_LOG_LEVEL=6 timeout 30 ip netns exec "$a" "$worker" --listen "${net}1:7412" --nodes 2 \
	--open-timeout 8000 --pages 16 crc >"$tmp/n0" 2>&1 &
p0=$!
# Wait until it listens (a loaded machine may take a while to start it).
i=0
until grep -q "node 0 listening on" "$tmp/n0"; do
	i=$((i + 1))
	[ $i -lt 200 ] || { echo "FAIL: node 0 did not start listening"; cat "$tmp/n0"; exit 1; }
	sleep 0.1
done
# A raw client from the other namespace: it connects (the port is open) and is refused at
# once with AUTH_FAIL reason 7 (loopback only) and nothing else, then a hang-up.
timeout 10 ip netns exec "$b" python3 -c '
import socket, struct, sys, time
s = socket.create_connection(("'"${net}1"'", 7412), timeout=5)
s.settimeout(5)
t, got = time.monotonic(), b""
while True:
    b = s.recv(100)
    if not b:
        break
    got += b
want = struct.pack("<BBHIQQI", 9, 0, 0, 4, 0, 0, 7)
sys.exit(0 if got == want and time.monotonic() - t < 2 else 1)' ||
	{ echo "FAIL: node 0 did not refuse a non-loopback client at once"; cat "$tmp/n0"; exit 1; }
timeout 30 ip netns exec "$b" "$worker" --join "${net}1:7412" --pages 16 crc >"$tmp/n1" 2>&1
r1=$?
# A joiner with a secret gets through to node 0, which has none: refused with the reason.
UDSM_SECRET=some-secret timeout 30 ip netns exec "$b" "$worker" --join "${net}1:7412" \
	--pages 16 crc >"$tmp/n2" 2>&1
r2=$?
wait $p0
r0=$?
cat "$tmp/n0" "$tmp/n1" "$tmp/n2"
echo "node 0 exit $r0 (want 2: nobody joined), joiners exit $r1 and $r2 (want 3: UDSM_EAUTH)"
ok=1
grep -q "only peers on loopback addresses" "$tmp/n0" || { echo "FAIL: no listen warning"; ok=0; }
grep -q "refused a connection from ${net}2" "$tmp/n0" || { echo "FAIL: no refusal logged"; ok=0; }
grep -q "refusing to connect to ${net}1:7412 without a cluster secret" "$tmp/n1" ||
	{ echo "FAIL: the joiner did not say why"; ok=0; }
grep -q "accepts peers on loopback addresses only" "$tmp/n2" ||
	{ echo "FAIL: the joiner with a secret did not say why"; ok=0; }
[ $ok = 1 ] && [ $r0 = 2 ] && [ $r1 = 3 ] && [ $r2 = 3 ]
