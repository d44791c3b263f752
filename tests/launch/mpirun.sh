#!/bin/sh
# mpirun.sh RANK_CHECK - Open MPI's mpirun starts 4 ranks of a udsm program that opens the
# cluster from the environment alone (OMPI_COMM_WORLD_RANK/SIZE, UDSM_JOIN and UDSM_SECRET
# passed with -x): each rank's node id must be its MPI rank and every rank's page must be
# seen by all (tests/launch/rank-check.c). Skipped (77) when mpirun is not installed.
set -u
. "$(dirname "$0")/ranks.sh"
rc=$1
command -v mpirun >/dev/null 2>&1 || { echo "SKIP: mpirun not installed (Debian: openmpi-bin)"; exit 77; }
mpirun --version 2>&1 | grep -q "Open MPI" || { echo "SKIP: mpirun is not Open MPI's"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
port=$(free_port) || exit 1
# mpirun refuses to run as root unless told twice; harmless for other users.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export UDSM_SECRET="mpirun-test-$$-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export UDSM_PEER_TIMEOUT_MS=20000
# No UDSM_RANK/UDSM_NODES may leak in from outside: the ranks must come from Open MPI.
unset UDSM_RANK UDSM_NODES UDSM_JOIN UDSM_SIZE
timeout 120 mpirun --oversubscribe -np 4 -x UDSM_SECRET -x UDSM_PEER_TIMEOUT_MS \
	-x UDSM_JOIN=127.0.0.1:"$port" "$rc" >"$dir/out" 2>"$dir/err"
st=$?
if ! ranks_ok "mpirun -np 4" $st "$dir/out" "$dir/err"; then
	exit 1
fi
echo "ok: mpirun --oversubscribe -np 4: node id == MPI rank on every rank, every page verified"
