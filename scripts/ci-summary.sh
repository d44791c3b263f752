#!/bin/sh
# ci-summary.sh TESTLOG.json... - one line "N passed, N failed, N skipped" over meson test logs.
ok=0 bad=0 skip=0
for j in "$@"; do
	[ -f "$j" ] || { bad=$((bad + 1)); continue; }
	ok=$((ok + $(grep -c '"result": "OK"' "$j")))
	skip=$((skip + $(grep -c '"result": "SKIP"' "$j")))
	bad=$((bad + $(grep -cE '"result": "(FAIL|TIMEOUT|ERROR|UNEXPECTEDPASS)"' "$j")))
done
echo "$ok passed, $bad failed, $skip skipped"
