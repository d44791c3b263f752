# SPDX-License-Identifier: MIT
# ranks.sh - sourced by the launcher tests (mpirun.sh, srun.sh).
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
