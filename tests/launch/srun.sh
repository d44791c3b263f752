#!/bin/bash
# srun.sh RANK_CHECK - Slurm's srun starts 4 ranks of a udsm program that opens the cluster
# from the environment alone: rank and size from SLURM_PROCID/SLURM_NTASKS, rank 0's address
# from the first host of SLURM_STEP_NODELIST and the port udsm derives from the job and step
# ids (src/os/env.c). Each rank's node id must be its Slurm rank and every rank's page must be
# seen by all (tests/launch/rank-check.c).
#
# The test brings up a private single-host Slurm: a munge key and munged on a socket in a
# temporary directory, a slurm.conf for one node "localhost" (127.0.0.1) with unused ports,
# slurmctld and slurmd in the foreground; it stops all three and removes the directory at the
# end, whatever happens. Every wait is bounded. Skipped (77), with the reason, when Slurm or
# munge is not installed or cannot start here (no root, a sandbox without what slurmd needs).
set -u
. "$(dirname "$0")/ranks.sh"
rc_bin=$(realpath "$1")
skip() { echo "SKIP: $*"; exit 77; }
for c in srun slurmctld slurmd munged mungekey scontrol; do
	command -v $c >/dev/null 2>&1 || skip "$c not installed (Debian: slurm-wlm, munge)"
done
[ "$(id -u)" = 0 ] || skip "slurmd must run as root to start tasks; not root"

dir=$(mktemp -d /tmp/udsm-slurm.XXXXXX)
chmod 755 "$dir" # munged wants its socket's directory searchable by all
pids=()
cleanup() {
	local p i
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for ((i = 0; i < 50; i++)); do
		local alive=0
		for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
		[ $alive = 0 ] && break
		sleep 0.1
	done
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT
set +m
logs() {
	for f in "$dir"/*.log "$dir"/*.out; do
		[ -s "$f" ] && { echo "--- $f"; tail -25 "$f"; }
	done
}
# Wait at most $1 seconds for the command in "$@" (after $1) to succeed.
wait_for() {
	local t=$1 i
	shift
	for ((i = 0; i < t * 10; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}
port_free() {
	python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" \
		2>/dev/null
}

# munge: a fresh key, our own socket
mungekey -c -k "$dir/munge.key" >/dev/null 2>&1 || skip "mungekey cannot create a key"
chmod 600 "$dir/munge.key"
munged -F --force -S "$dir/munge.sock" --key-file="$dir/munge.key" --pid-file="$dir/munged.pid" \
	--seed-file="$dir/munged.seed" --log-file="$dir/munged.log" >"$dir/munged.out" 2>&1 &
pids+=($!)
wait_for 10 munge -S "$dir/munge.sock" -n || { logs; skip "munged does not start here"; }

# The job id decides the port rank 0 listens on (20000 + (job * 16 + step) mod 12000, the
# step of a plain srun being 0): pick a first job id whose port is free now.
job=
for ((i = 0; i < 50; i++)); do
	j=$((100 + RANDOM % 600)) # j * 16 < 12000: no wrap
	port_free $((20000 + j * 16)) && { job=$j; break; }
done
[ -n "$job" ] || skip "no free port for rank 0 in 20000..31999"
rank0_port=$((20000 + job * 16))
# free_port (ranks.sh): below the ephemeral ports, which Slurm's own connections are given.
ctld_port=$(free_port) || exit 1
while [ "$ctld_port" = "$rank0_port" ]; do ctld_port=$(free_port) || exit 1; done
slurmd_port=$(free_port) || exit 1
while [ "$slurmd_port" = "$ctld_port" ] || [ "$slurmd_port" = "$rank0_port" ]; do
	slurmd_port=$(free_port) || exit 1
done
cpus=$(nproc)
mkdir -p "$dir/state" "$dir/spool"
cat >"$dir/slurm.conf" <<EOF
ClusterName=udsmtest$$
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge.sock
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
FirstJobId=$job
MaxJobCount=100
InactiveLimit=0
KillWait=5
SlurmdTimeout=60
SlurmctldTimeout=60
# Four tasks on this machine whatever its CPU count: the node is declared with 4 CPUs and
# slurmd takes the declaration as it is.
SlurmdParameters=config_overrides
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$((cpus > 4 ? cpus : 4)) State=UNKNOWN
PartitionName=udsm Nodes=localhost Default=YES MaxTime=10 State=UP OverSubscribe=YES
EOF
export SLURM_CONF=$dir/slurm.conf
slurmctld -D -i -f "$SLURM_CONF" >"$dir/slurmctld.out" 2>&1 &
pids+=($!)
wait_for 20 scontrol ping || { logs; skip "slurmctld does not start here"; }
slurmd -D -N localhost -f "$SLURM_CONF" >"$dir/slurmd.out" 2>&1 &
pids+=($!)
node_up() { scontrol show node localhost 2>/dev/null | grep -Eq "State=(IDLE|MIXED|ALLOCATED)"; }
wait_for 30 node_up || { logs; skip "slurmd does not register here"; }
echo "Slurm up: slurmctld :$ctld_port, slurmd :$slurmd_port, first job $job"

# rank-check under srun; no UDSM_* but the secret and timeout may come from outside
unset UDSM_RANK UDSM_NODES UDSM_JOIN UDSM_SIZE OMPI_COMM_WORLD_RANK OMPI_COMM_WORLD_SIZE PMI_RANK PMI_SIZE
export UDSM_SECRET="srun-test-$$-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export UDSM_PEER_TIMEOUT_MS=20000
timeout 120 srun -n 4 --time=5 --export=ALL "$rc_bin" >"$dir/out" 2>"$dir/err"
st=$?
if ! ranks_ok "srun -n 4" $st "$dir/out" "$dir/err"; then
	logs
	exit 1
fi
echo "ok: srun -n 4 (job $job, rank 0 at localhost:$rank0_port): node id == Slurm" \
	"rank on every rank, every page verified"
