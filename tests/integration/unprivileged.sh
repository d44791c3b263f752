#!/bin/sh
# unprivileged.sh CLUSTER WORKER - the crc workload on 2 nodes running as uid 65534 (nobody).
# With vm.unprivileged_userfaultfd=0 (the default) this only works through UFFD_USER_MODE_ONLY
# or /dev/userfaultfd, which is what it proves. Skips (77) where it cannot switch users.
cluster=$1
worker=$2
here=$(cd "$(dirname "$0")" && pwd)
[ "$(id -u)" = 0 ] || { echo "SKIP: must start as root to drop to uid 65534"; exit 77; }
command -v setpriv >/dev/null 2>&1 || { echo "SKIP: setpriv(1) not installed"; exit 77; }

# The build tree may sit where uid 65534 cannot reach (a clone under /root, a mktemp dir):
# run a copy of the worker and its library from a directory anybody can read.
lib=$(ldd "$worker" | awk '/libudsm/ { print $3 }')
[ -n "$lib" ] || { echo "cannot find libudsm of $worker"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
chmod 755 "$tmp"
cp "$worker" "$tmp/" && cp -L "$lib" "$tmp/" || exit 1 # the soname the worker loads
export UDSM_WORKER="$tmp/$(basename "$worker")" LD_LIBRARY_PATH="$tmp"
setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$UDSM_WORKER" ||
	{ echo "SKIP: uid 65534 cannot execute $UDSM_WORKER"; exit 77; }
echo "vm.unprivileged_userfaultfd=$(cat /proc/sys/vm/unprivileged_userfaultfd 2>/dev/null)"
UDSM_LOG_LEVEL=debug "$cluster" --worker "$here/as-nobody.sh" --nodes 2 --timeout 60 -- \
	--pages 64 crc
