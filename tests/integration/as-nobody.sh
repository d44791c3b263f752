#!/bin/sh
# as-nobody.sh ARGS... - run $UDSM_WORKER as uid/gid 65534 (used by the unprivileged test).
exec setpriv --reuid=65534 --regid=65534 --clear-groups "$UDSM_WORKER" "$@"
