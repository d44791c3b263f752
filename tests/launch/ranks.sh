# SPDX-License-Identifier: MIT
# ranks.sh - sourced by the launcher tests (mpirun.sh, srun.sh, launch.sh).
#
# free_port - print a port nobody holds at 127.0.0.1 now, a random one below the kernel's
# ephemeral range: between this check and rank 0's bind, no bind to port 0 or connect()
# anywhere (mpirun's own connections, seen taking a port of the range) can be given it.
free_port() {
	python3 - <<'PY'
import random, socket
lo = int(open('/proc/sys/net/ipv4/ip_local_port_range').read().split()[0])
base = 20000 if lo > 21024 else 1024  # as udsm-run's free_port()
def free(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(('127.0.0.1', port))
        return s.getsockname()[1]
    except OSError:
        return None
    finally:
        s.close()
for _ in range(256 if lo > base else 0):
    port = free(random.randrange(base, lo))
    if port:
        break
else:
    port = free(0)  # no room below the range: any port the kernel gives
if not port:
    raise SystemExit('no free port')
print(port)
PY
}
#
# ranks_ok WHAT STATUS OUT ERR - pass if the launcher WHAT exited with STATUS 0 and every one of
# its 4 ranks printed "rank R of 4 ok: node id is the rank" in OUT; else print why (and ERR)
# and return 1.
ranks_ok() {
	cat "$3"
	n=0
	for r in 0 1 2 3; do
		grep -q "^rank $r of 4 ok: node id is the rank" "$3" && n=$((n + 1))
	done
	if [ "$2" -ne 0 ] || [ $n -ne 4 ]; then
		echo "FAIL: $1: status $2, $n of 4 ranks ok"
		cat "$4"
		return 1
	fi
	return 0
}
