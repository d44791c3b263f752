#!/bin/sh
# SPDX-License-Identifier: MIT
#
# expect-wrong.sh COMMAND... - run an application with APPS_INJECT_ERROR=1 and pass only if it
# fails for the right reason: a non-zero exit AND node 0 reporting result=WRONG (a crash or a
# hang that happens to exit non-zero does not count as the check working).
out=$(APPS_INJECT_ERROR=1 "$@" 2>&1)
rc=$?
printf '%s\n' "$out"
if [ "$rc" -eq 0 ]; then
	echo "expect-wrong: the run succeeded although node 0 corrupted its result" >&2
	exit 1
fi
if ! printf '%s\n' "$out" | grep -q 'RESULT .*node=0 .*result=WRONG'; then
	echo "expect-wrong: exit status $rc, but node 0 did not report result=WRONG" >&2
	exit 1
fi
echo "expect-wrong: the check caught the corrupted result (exit status $rc)"
