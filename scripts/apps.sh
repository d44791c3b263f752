#!/bin/bash
# apps.sh BUILD [NODES...] - `make apps`: run each application of apps/ (docs/APPS.md) on 1, 2
# and 4 nodes of this machine with udsm-run, and print one table:
#   app, nodes, parallel seconds (the slowest node's), the serial reference's seconds (node 0,
#   same binary, private memory), speed-up (serial / parallel), and per node (mean over the
#   nodes) the faults, pages received and MB sent + received during the parallel part,
#   and the check's verdict.
# Exits 1 if any run fails or any result is WRONG. The raw RESULT lines of every node go to
# BUILD/apps-results.txt.
#
# Sizes (override with APPS_<NAME>="args", e.g. APPS_JACOBI="--n 4096 --iters 50"): chosen so
# that the whole table takes a few minutes on a 2-CPU machine, 4 nodes included.
set -u
build=${1:-build}
shift
nodes_list=("$@")
[ ${#nodes_list[@]} -eq 0 ] && nodes_list=(1 2 4)
run=$build/tools/udsm-run
out=$build/apps-results.txt

declare -A args=(
	[jacobi]=${APPS_JACOBI:-"--n 2048 --iters 100"}
	[matmul]=${APPS_MATMUL:-"--n 1024"}
	[kmeans]=${APPS_KMEANS:-"--points 1048576 --k 16 --iters 10 --reduce node"}
	[pagerank]=${APPS_PAGERANK:-"--vertices 262144 --degree 8 --iters 10"}
	[radix]=${APPS_RADIX:-"--keys 4194304 --passes 4 --reduce node"}
)
apps=(jacobi matmul kmeans pagerank radix)
# A loaded 2-CPU machine running 4 nodes must not take a slow node for a dead one.
export UDSM_PEER_TIMEOUT_MS=${UDSM_PEER_TIMEOUT_MS:-30000}

for a in "${apps[@]}"; do
	[ -x "$build/apps/$a" ] || { echo "apps: $build/apps/$a not built"; exit 1; }
done
: >"$out"
echo "# $(date -u '+%F %T') UTC; $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out"
fails=0
rows=()
for a in "${apps[@]}"; do
	for n in "${nodes_list[@]}"; do
		# shellcheck disable=SC2086 # the arguments are meant to split
		lines=$(timeout 600 "$run" -n "$n" "$build/apps/$a" ${args[$a]} 2>"$build/apps-$a-$n.err")
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
				if (v["result"] != "OK") bad = v["result"]
			}
			END {
				res = "OK"
				if (st != 0) res = "FAILED(" st ")"
				if (bad != "") res = bad
				if (k != n) res = "FAILED(" st ")"
				if (k == 0) { printf "%-9s %5d %9s %9s %8s %10s %10s %10s  %s\n", app, n, "-", "-", "-", "-", "-", "-", res; exit }
				printf "%-9s %5d %9.3f %9.3f %8.2f %10.0f %10.0f %10.1f  %s\n", app, n, par, ser,
					(par > 0 ? ser / par : 0), faults / k, pages / k, bytes / k / 1e6, res
			}')
		rows+=("$row")
		case $row in
		*"  OK") ;;
		*)
			fails=$((fails + 1))
			echo "apps: $a on $n nodes: status $st; stderr:" >&2
			tail -20 "$build/apps-$a-$n.err" >&2
			;;
		esac
		echo "$row" >&2 # progress
	done
done
echo
echo "load average after the runs: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs"
printf '%-9s %5s %9s %9s %8s %10s %10s %10s  %s\n' app nodes par_s ser_s speedup \
	faults/nd pages/nd MB/nd result
for r in "${rows[@]}"; do
	echo "$r"
done
for a in "${apps[@]}"; do
	echo "  $a: ${args[$a]}"
done
[ $fails -eq 0 ] || { echo "apps: $fails run(s) failed or wrong"; exit 1; }
echo "apps: every result checked OK"
