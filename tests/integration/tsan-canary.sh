#!/bin/sh
# tsan-canary.sh CLUSTER WORKER - ThreadSanitizer builds only: the racy workload (two threads
# storing to one region word with nothing ordering them) must be reported as a data race in
# racy_main. Proves that what src/os/tsan.h and tests/tsan.supp hide from TSan (the DSM's own
# data flow) does not hide the application's races in the region.
cluster=$1
worker=$2
out=$("$cluster" --worker "$worker" --nodes 2 --timeout 60 -- --pages 4 racy 2>&1)
rc=$?
printf '%s\n' "$out" | grep -E "ThreadSanitizer|racy_main|cluster:" | head -20
if [ $rc = 0 ]; then
	echo "FAIL: the racy workload passed: TSan saw no race"
	exit 1
fi
if ! printf '%s\n' "$out" | grep -q "WARNING: ThreadSanitizer: data race" ||
   ! printf '%s\n' "$out" | grep -q "racy_main"; then
	echo "FAIL: the cluster failed, but not with a TSan data race in racy_main:"
	printf '%s\n' "$out" | tail -30
	exit 1
fi
echo "PASS: TSan reported the race between the two application threads"
