#!/bin/sh
# demo.sh BUILD - run the 3-node demo (make demo).
exec timeout 60 "${1:-build}/examples/udsm-demo"
