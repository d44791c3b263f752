#!/bin/bash
# launch.sh UDSM_RUN RANK_CHECK - launching udsm programs from the environment:
#  1. udsm-run -n 4 --tag: every rank's node id is its rank, every rank's page is seen by all
#     (tests/launch/rank-check.c), output lines tagged "[r] ";
#  2. a rank exiting with 7: udsm-run stops the others and exits 7, leaving no process;
#  3. SIGTERM to udsm-run reaches every rank: exit 143, no process left;
#  4. an incomplete or inconsistent environment: a clear error before any network use;
#  5. node 0 refuses a rank another node already has, a rank outside the cluster, and a
#     joiner launched with another cluster size, each with a clear error on both sides.
set -u
. "$(dirname "$0")/ranks.sh" # free_port
run=$1
dir=$(mktemp -d)
# A private name for rank-check, so that "is any of ours left?" cannot see anyone else's.
rc=$dir/rank-check-$$
ln -s "$(realpath "$2")" "$rc"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	pkill -KILL -f "^$rc" 2>/dev/null # only ours: the path is unique to this run
	rm -rf "$dir"
}
trap cleanup EXIT
# No "Killed" notices from the shell for the processes this script kills on purpose.
set +m
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok (${SECONDS} s): $*"; }
left() { pgrep -f "^$rc" >/dev/null; }
# Wait (at most $2 s) for process $1 to end; its status in $status.
await() {
	local i
	status=
	for ((i = 0; i < $2 * 10; i++)); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$1" 2>/dev/null; then
		status=timeout
		kill -KILL "$1" 2>/dev/null
	fi
	wait "$1"
	local w=$?
	[ "$status" = timeout ] || status=$w
}
export UDSM_PEER_TIMEOUT_MS=20000 # a loaded 2-CPU machine must not lose a node by accident

# 1. four ranks, tagged output
timeout 120 "$run" -n 4 --tag --size 256K "$rc" >"$dir/out" 2>"$dir/err"
st=$?
n=0
for r in 0 1 2 3; do
	grep -q "^\[$r\] rank $r of 4 ok: node id is the rank" "$dir/out" && n=$((n + 1))
done
if [ $st -eq 0 ] && [ $n -eq 4 ]; then
	ok "udsm-run -n 4: node id == rank on every rank, every page verified, output tagged"
else
	fail "udsm-run -n 4: status $st, $n of 4 ranks ok"; cat "$dir/out" "$dir/err"
fi

# 2. one rank fails: the others are stopped, the status is passed on
start=$SECONDS
timeout 120 "$run" -n 4 "$rc" fail 2 7 >"$dir/out" 2>"$dir/err"
st=$?
took=$((SECONDS - start))
if [ $st -eq 7 ] && grep -q "rank 2 (pid [0-9]*) exited with status 7" "$dir/err" &&
   [ $took -lt 60 ] && ! left; then
	ok "a rank exiting with 7: the others stopped, udsm-run exits 7 (${took} s), none left"
else
	fail "failing rank: status $st after ${took} s"; cat "$dir/out" "$dir/err"; left && ps -ef | grep -F "$rc"
fi

# 3. SIGTERM is forwarded
"$run" -n 3 --tag "$rc" sleep >"$dir/out" 2>"$dir/err" &
up=$!
pids+=("$up")
for ((i = 0; i < 600; i++)); do
	[ "$(grep -c sleeping "$dir/out")" -eq 3 ] && break
	sleep 0.1
done
kill -TERM "$up"
await "$up" 30
if [ "$status" = 143 ] && [ "$(grep -c sleeping "$dir/out")" -eq 3 ] && ! left; then
	ok "SIGTERM to udsm-run reaches every rank: exit 143, none left"
else
	fail "SIGTERM forwarding: status $status"; cat "$dir/out" "$dir/err"
fi

# 3b. -H: the ssh command line, run by a stand-in ssh that records its arguments and runs the
#     remote command here with sh (as sshd would with the user's shell)
mkdir "$dir/bin"
cat >"$dir/bin/ssh" <<'EOS'
#!/bin/sh
printf '%s\n' "$*" >>"$SSH_LOG"
[ "$1" = -o ] && [ "$2" = BatchMode=yes ] || exit 255
shift 3
exec sh -c "$1"
EOS
chmod +x "$dir/bin/ssh"
port=$(free_port) || exit 1 # free_port says why
SSH_LOG=$dir/ssh.log UDSM_SECRET="s3cr3t-$$" PATH="$dir/bin:$PATH" timeout 120 \
	"$run" -n 3 -H localhost,127.0.0.1 --port "$port" --tag "$rc" >"$dir/out" 2>"$dir/err"
st=$?
n=0
for r in 0 1 2; do
	grep -q "^\[$r\] rank $r of 3 ok" "$dir/out" && n=$((n + 1))
done
if [ $st -eq 0 ] && [ $n -eq 3 ] && [ "$(grep -c "UDSM_JOIN=localhost:$port" "$dir/ssh.log")" -eq 3 ] &&
   grep -q "BatchMode=yes 127.0.0.1 " "$dir/ssh.log" && ! grep -q "s3cr3t" "$dir/ssh.log"; then
	ok "-H over (a stand-in) ssh: 3 ranks on 2 hosts, the secret on no command line"
else
	fail "-H: status $st, $n of 3 ok"; cat "$dir/out" "$dir/err" "$dir/ssh.log"
fi

# 4. environment errors: clear, and before any network use (so fast)
check_env() { # expected-message VAR=value...
	local want=$1
	shift
	env -u UDSM_RANK -u UDSM_NODES -u UDSM_JOIN -u UDSM_SIZE "$@" timeout 20 "$rc" \
		>"$dir/out" 2>"$dir/err"
	local st=$?
	if [ $st -ne 0 ] && [ $st -ne 124 ] && grep -qF -- "$want" "$dir/err"; then
		ok "env $*: refused: $want"
	else
		fail "env $*: status $st, wanted '$want'"; cat "$dir/err"
	fi
}
check_env "UDSM_RANK=4 is not below UDSM_NODES=4" UDSM_RANK=4 UDSM_NODES=4
check_env "UDSM_RANK=1 is set but UDSM_NODES is not" UDSM_RANK=1
check_env "UDSM_RANK=1 but nothing says where rank 0 is" UDSM_RANK=1 UDSM_NODES=2
check_env "UDSM_NODES=3 contradicts OMPI_COMM_WORLD_SIZE=4" \
	UDSM_NODES=3 OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_SIZE=4
check_env "PMI_RANK=x is not a rank" PMI_RANK=x PMI_SIZE=2
check_env "UDSM_SIZE=12Q is not a size" UDSM_SIZE=12Q UDSM_RANK=0 UDSM_NODES=2
check_env "UDSM_NODES=65: a cluster has 1 to 64 nodes" UDSM_NODES=65

# 5. ranks node 0 must refuse
port=$(free_port) || exit 1 # free_port says why
join=127.0.0.1:$port
UDSM_LOG_LEVEL=info UDSM_RANK=0 UDSM_NODES=3 UDSM_JOIN=$join "$rc" --timeout 60000 >"$dir/n0.out" 2>"$dir/n0.err" &
n0=$!
pids+=("$n0")
UDSM_RANK=1 UDSM_NODES=3 UDSM_JOIN=$join "$rc" --timeout 60000 >"$dir/a.out" 2>"$dir/a.err" &
a=$!
pids+=("$a")
# Let the first rank 1 be admitted (node 0 logs it) before the second one comes.
for ((i = 0; i < 300; i++)); do
	grep -q "joined (2 of 3)" "$dir/n0.err" && break
	sleep 0.1
done
UDSM_RANK=1 UDSM_NODES=3 UDSM_JOIN=$join "$rc" --timeout 60000 >"$dir/b.out" 2>"$dir/b.err" &
b=$!
UDSM_RANK=4 UDSM_NODES=5 UDSM_JOIN=$join "$rc" --timeout 60000 >"$dir/c.out" 2>"$dir/c.err" &
c=$!
UDSM_RANK=2 UDSM_NODES=4 UDSM_JOIN=$join "$rc" --timeout 60000 >"$dir/d.out" 2>"$dir/d.err" &
dd=$!
pids+=("$b" "$c" "$dd")
await "$b" 30; sb=$status
await "$c" 30; sc=$status
await "$dd" 30; sd=$status
if [ "$sb" = 1 ] && grep -q "refused this node as node 1 (its rank)" "$dir/b.err" &&
   grep -q "it asks to be node 1 (its rank), which .* already is" "$dir/n0.err"; then
	ok "a second rank 1 is refused (both sides say why)"
else
	fail "duplicate rank: status $sb"; cat "$dir/b.err" "$dir/n0.err"
fi
if [ "$sc" = 1 ] && grep -q "refused this node as node 4 (its rank)" "$dir/c.err" &&
   grep -q "it asks to be node 4 (its rank), but this cluster has nodes 0..2" "$dir/n0.err"; then
	ok "rank 4 of a 3-node cluster is refused (both sides say why)"
else
	fail "out-of-range rank: status $sc"; cat "$dir/c.err" "$dir/n0.err"
fi
if [ "$sd" = 1 ] && grep -q "launched into a 4-node cluster, but the first node at .* forms one of 3 nodes" "$dir/d.err"; then
	ok "a rank launched with another cluster size says so"
else
	fail "size mismatch: status $sd"; cat "$dir/d.err"
fi
{
	kill -KILL "$n0" "$a"
	wait "$n0" "$a"
} 2>/dev/null
pids=()

# 6. ranked and unranked joiners together, admitted in the order rank 2, rank 3, unranked,
#    rank 1 (a 4-cycle for node 0 to untangle): every rank keeps its id, the unranked joiner
#    takes the one left free (4)
port=$(free_port) || exit 1 # free_port says why
join=127.0.0.1:$port
UDSM_LOG_LEVEL=info UDSM_RANK=0 UDSM_NODES=5 UDSM_JOIN=$join "$rc" --timeout 60000 \
	>"$dir/n0.out" 2>"$dir/n0.err" &
pids=($!)
k=1
for r in 2 3 any 1; do
	if [ $r = any ]; then
		UDSM_JOIN=$join "$rc" --timeout 60000 >"$dir/r$r.out" 2>&1 &
	else
		UDSM_RANK=$r UDSM_NODES=5 UDSM_JOIN=$join "$rc" --timeout 60000 >"$dir/r$r.out" 2>&1 &
	fi
	pids+=($!)
	k=$((k + 1))
	for ((i = 0; i < 300; i++)); do
		grep -q "joined ($k of 5)" "$dir/n0.err" && break
		sleep 0.1
	done
done
sts=
for p in "${pids[@]}"; do
	await "$p" 60
	sts="$sts $status"
done
n=0
for r in 1 2 3; do
	grep -q "^rank $r of 5 ok: node id is the rank" "$dir/r$r.out" && n=$((n + 1))
done
if [ "$sts" = " 0 0 0 0 0" ] && [ $n -eq 3 ] &&
   grep -q "^rank 4 of 5 ok: id given in order of arrival" "$dir/rany.out"; then
	ok "ranks admitted out of order keep their ids; an unranked joiner takes the free one"
else
	fail "mixed: statuses$sts"; cat "$dir/n0.err" "$dir"/r*.out
fi
pids=()

[ $fails -eq 0 ] && echo "all launch checks passed"
exit $((fails > 0))
