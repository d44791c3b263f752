#!/bin/sh
# hello-test.sh HELLO - run the README's example as two processes; node 1 must read 42.
out=$(mktemp)
timeout 30 "$1" > /dev/null &
first=$!
timeout 30 "$1" join > "$out"
rc=$?
wait $first || rc=1
cat "$out"
grep -qx "node 1 reads 42" "$out" && [ $rc = 0 ]
r=$?
rm -f "$out"
exit $r
