#!/bin/sh
# unprivileged.sh CLUSTER WORKER - the crc workload on 2 nodes running as uid 65534 (nobody).
# With vm.unprivileged_userfaultfd=0 (the default) this only works through UFFD_USER_MODE_ONLY
# or /dev/userfaultfd, which is what it proves. Skips (77) where it cannot switch users.
cluster=$1
export UDSM_WORKER=$2
here=$(dirname "$0")
[ "$(id -u)" = 0 ] || { echo "SKIP: must start as root to drop to uid 65534"; exit 77; }
command -v setpriv >/dev/null 2>&1 || { echo "SKIP: setpriv(1) not installed"; exit 77; }
setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$UDSM_WORKER" ||
	{ echo "SKIP: uid 65534 cannot execute $UDSM_WORKER"; exit 77; }
echo "vm.unprivileged_userfaultfd=$(cat /proc/sys/vm/unprivileged_userfaultfd 2>/dev/null)"
UDSM_LOG_LEVEL=debug exec "$cluster" --worker "$here/as-nobody.sh" --nodes 2 --timeout 60 -- \
	--pages 64 crc
