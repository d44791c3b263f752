#!/bin/bash
# apps.sh BUILD [NODES...] - `make apps`: run each application of apps/ (docs/APPS.md) on 1, 2
# and 4 nodes of this machine with udsm-run, and print one table:
#   app, nodes, parallel seconds (the slowest node's), the serial reference's seconds (node 0,
#   same binary, private memory), speed-up (serial / parallel), and per node (mean over the
#   nodes) the faults, pages received and MB sent + received during the parallel part; the
#   mean latency of a miss (read miss, write miss or upgrade, as the service thread measures
#   it), of a barrier and of a udsm_lock() acquisition over all nodes' samples; the verdict.
# Exits 1 if any run fails or any result is WRONG. The raw RESULT lines of every node go to
# BUILD/apps-results.txt.
#
# Sizes (override with APPS_<NAME>="args", e.g. APPS_JACOBI="--n 4096 --iters 50"; for
# APPS_KMEANS and APPS_RADIX without the mode options): chosen so that the whole table takes
# a few minutes on a 2-CPU machine, 4 nodes included.
set -u
build=${1:-build}
shift
nodes_list=("$@")
[ ${#nodes_list[@]} -eq 0 ] && nodes_list=(1 2 4)
run=$build/tools/udsm-run
out=$build/apps-results.txt

# Each row of the table: a label, the program, its arguments. k-means and radix also run in
# their other mode (reduction by node instead of under a lock; the staged scatter).
kmeans_args=${APPS_KMEANS:-"--points 1048576 --k 16 --iters 10"}
radix_args=${APPS_RADIX:-"--keys 4194304 --passes 4"}
declare -A prog=([jacobi]=jacobi [matmul]=matmul [kmeans]=kmeans [kmeans/node]=kmeans
	[pagerank]=pagerank [radix]=radix [radix/staged]=radix)
declare -A args=(
	[jacobi]=${APPS_JACOBI:-"--n 2048 --iters 100"}
	[matmul]=${APPS_MATMUL:-"--n 1024"}
	[kmeans]="$kmeans_args --reduce lock"
	[kmeans/node]="$kmeans_args --reduce node"
	[pagerank]=${APPS_PAGERANK:-"--vertices 262144 --degree 8 --iters 10"}
	[radix]="$radix_args --reduce lock --scatter direct"
	[radix/staged]="$radix_args --reduce node --scatter staged"
)
apps=(jacobi matmul kmeans kmeans/node pagerank radix radix/staged)
# A loaded 2-CPU machine running 4 nodes must not take a slow node for a dead one.
export UDSM_PEER_TIMEOUT_MS=${UDSM_PEER_TIMEOUT_MS:-30000}

for a in "${apps[@]}"; do
	[ -x "$build/apps/${prog[$a]}" ] || { echo "apps: $build/apps/${prog[$a]} not built"; exit 1; }
done
: >"$out"
echo "# $(date -u '+%F %T') UTC; $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out"
fails=0
rows=()
for a in "${apps[@]}"; do
	for n in "${nodes_list[@]}"; do
		# shellcheck disable=SC2086 # the arguments are meant to split
		err=$build/apps-${a//\//-}-$n.err
		lines=$(timeout 600 "$run" -n "$n" "$build/apps/${prog[$a]}" ${args[$a]} 2>"$err")
		st=$?
		printf '%s\n' "$lines" | grep '^RESULT ' >>"$out"
		row=$(printf '%s\n' "$lines" | grep '^RESULT ' | awk -v app="$a" -v n="$n" -v st="$st" '
			{
				for (i = 2; i <= NF; i++) {
					split($i, kv, "=")
					v[kv[1]] = kv[2]
				}
				k++
				if (v["par_s"] > par) par = v["par_s"]
				ser = v["ser_s"]
				faults += v["faults"]
				pages += v["pages_in"]
				bytes += v["bytes_in"] + v["bytes_out"]
				mus += v["misses"] * v["miss_us"]; mn += v["misses"]
				bus += v["barriers"] * v["barrier_us"]; bn += v["barriers"]
				lus += v["locks"] * v["lock_us"]; ln += v["locks"]
				if (v["result"] != "OK") bad = v["result"]
			}
			END {
				res = "OK"
				if (st != 0) res = "FAILED(" st ")"
				if (bad != "") res = bad
				if (k != n) res = "FAILED(" st ")"
				if (k == 0) { printf "%-12s %5d %9s  %s\n", app, n, "-", res; exit }
				printf "%-12s %5d %9.3f %9.3f %8.2f %9.0f %9.0f %8.1f %8.0f %8.0f %8s  %s\n", app, n,
					par, ser, (par > 0 ? ser / par : 0), faults / k, pages / k,
					bytes / k / 1e6, (mn ? mus / mn : 0), (bn ? bus / bn : 0),
					(ln ? sprintf("%.0f", lus / ln) : "-"), res
			}')
		rows+=("$row")
		case $row in
		*"  OK") ;;
		*)
			fails=$((fails + 1))
			echo "apps: $a on $n nodes: status $st; stderr:" >&2
			tail -20 "$err" >&2
			;;
		esac
		echo "$row" >&2 # progress
	done
done
echo
echo "load average after the runs: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs"
printf '%-12s %5s %9s %9s %8s %9s %9s %8s %8s %8s %8s  %s\n' app nodes par_s ser_s speedup \
	faults/nd pages/nd MB/nd miss_us bar_us lock_us result
for r in "${rows[@]}"; do
	echo "$r"
done
for a in "${apps[@]}"; do
	echo "  $a: ${prog[$a]} ${args[$a]}"
done
[ $fails -eq 0 ] || { echo "apps: $fails run(s) failed or wrong"; exit 1; }
echo "apps: every result checked OK"
