#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""check-s2dsm-bench.py - run s2dsm-bench and check that it emits every figure.

usage: check-s2dsm-bench.py S2DSM-BENCH [ARGS...]   (ARGS should include --json)

Fails (exit 1) unless the tool exits 0 and prints, as JSON lines, the floor's figure and one
s2dsm figure per default regime (the library's default and --spin -1, each with several
accesses in flight and with --serial), each with finite, positive per-page times and a ratio to
the floor. The targets are reported by
the tool, not enforced here: this machine is shared and noisy.
"""
import json
import math
import subprocess
import sys

# The regimes s2dsm-bench measures by default (its --regimes).
REGIMES = ('lib', 'spin=-1', 'serial', 'serial+spin=-1')

def finite_pos(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def main():
    p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sys.stdout.write(p.stdout)
    sys.stderr.write(p.stderr)
    errs = []
    if p.returncode != 0:
        errs.append(f'exit status {p.returncode}')
    figs = {}
    for line in p.stdout.splitlines():
        if line.startswith('{'):
            try:
                o = json.loads(line)
            except ValueError as e:
                errs.append(f'not JSON ({e}): {line[:80]}')
                continue
            figs[(o.get('bench'), o.get('regime'))] = o
    floor = [o for (b, _), o in figs.items() if b == 's2dsm_floor_read_all']
    if len(floor) != 1 or not finite_pos(floor[0].get('us_per_page')):
        errs.append('no floor figure')
    regimes = {r for (b, r) in figs if b == 's2dsm_read_all'}
    for want in REGIMES:
        if want not in regimes:
            errs.append(f's2dsm figure of regime {want} missing')
    for (b, r), o in figs.items():
        if b != 's2dsm_read_all':
            continue
        for k in ('us_per_page', 'cpu_us_per_page', 'write_us_per_page', 'ratio_to_floor'):
            if not (finite_pos(o.get(k)) or (k == 'cpu_us_per_page' and o.get(k) == 0)):
                errs.append(f'{r}: {k} = {o.get(k)!r}')
    for line in [f'{"diagnostic" if "serial" in r else "target"} (s2dsm faster than the floor), '
                 f'{r}:' for r in REGIMES] + \
            ['load average before:', 'load average after:']:
        if line not in p.stdout:
            errs.append(f'no line {line!r}')
    for e in errs:
        print(f'FAIL: {e}', file=sys.stderr)
    return 1 if errs else 0


if __name__ == '__main__':
    sys.exit(main())
