#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""check-json.py - run udsm-bench and check its JSON lines.

usage: check-json.py UDSM-BENCH [ARGS...]   (runs it; ARGS should include --json)
       check-json.py - < output             (checks saved output)

Fails (exit 1) unless the tool exits 0, every line that starts with '{' parses, every
workload produced its figures with the documented keys and finite numbers, and the
deterministic checks hold (zero-page reads move no payload). Performance targets are
reported, not enforced: this machine is shared and noisy.
"""
import json
import math
import statistics
import subprocess
import sys

KEYS = ["bench", "nodes", "n", "p50_us", "p90_us", "p99_us", "max_us", "msgs_per_op",
        "bytes_per_op", "spin_us", "placement"]
# figure -> fields that must be finite numbers
NEED = {
    "floor_tcp_4k": ["p50_us", "p99_us"],
    "floor_tcp_16": ["p50_us", "p99_us"],
    "floor_uffd": ["p50_us", "p99_us"],
    "floor_fault_tcp": ["p50_us", "p99_us"],
    "floor_tcp_4k_sleep": ["p50_us", "p99_us"],
    "floor_tcp_16_sleep": ["p50_us", "p99_us"],
    "floor_uffd_sleep": ["p50_us", "p99_us"],
    "floor_fault_tcp_sleep": ["p50_us", "p99_us"],
    "floor_fault_tcp_wp": ["p50_us", "p99_us"],
    "floor_fault_tcp_wp_sleep": ["p50_us", "p99_us"],
    "floor_fault_tcp_up": ["p50_us", "p99_us"],
    "floor_fault_tcp_up_sleep": ["p50_us", "p99_us"],
    "read_miss_home_local": ["p50_us", "msgs_per_op", "bytes_per_op"],
    "read_miss_home_remote": ["p50_us", "msgs_per_op", "bytes_per_op"],
    "read_miss_home_third": ["p50_us", "msgs_per_op", "bytes_per_op"],
    "write_miss_home_local": ["p50_us", "msgs_per_op", "bytes_per_op"],
    "write_miss_home_remote": ["p50_us", "msgs_per_op", "bytes_per_op"],
    "upgrade1_home_local": ["p50_us", "msgs_per_op", "bytes_per_op"],
    "upgrade1_home_remote": ["p50_us", "msgs_per_op", "bytes_per_op"],
    "upgrade3_home_local": ["p50_us", "msgs_per_op", "bytes_per_op"],
    "upgrade3_home_remote": ["p50_us", "msgs_per_op", "bytes_per_op"],
    "zero_read_home_local": ["p50_us", "zero_frac"],
    "zero_read_home_remote": ["p50_us", "zero_frac", "msgs_per_op", "bytes_per_op"],
    "pingpong": ["p50_us", "mean_us", "msgs_per_op"],
    "false_sharing": ["p50_us", "ops_s", "xfers_per_op"],
    "scan": ["mb_s", "msgs_per_op", "bytes_per_op", "install_us_per_op", "svc0_cpu_us_per_op",
             "svc1_cpu_us_per_op", "app_cpu_us_per_op"],
    "floor_tcp_stream": ["mb_s", "mean_us"],
    "floor_page_ops": ["mean_us"],
    "floor_new_memory": ["mean_us", "mb_s"],
    "floor_first_read": ["mean_us"],
    "floor_page_read": ["mean_us"],
    "scan_write": ["mb_s", "msgs_per_op"],
    # group.c: the floors of groups of processes
    "floor_revoke": ["p50_us", "p99_us"],
    "floor_revoke_busy": ["p50_us", "p99_us"],
    "floor_giveup": ["p50_us", "p99_us"],
    "floor_giveup_busy": ["p50_us", "p99_us"],
    "floor_relay2": ["p50_us", "msgs_per_op"],
    "floor_relay3": ["p50_us", "msgs_per_op"],
    "floor_relay2_sleep": ["p50_us", "msgs_per_op"],
    "floor_relay3_sleep": ["p50_us", "msgs_per_op"],
    "floor_fanout4": ["p50_us", "msgs_per_op"],
    "floor_fanout4_sleep": ["p50_us", "msgs_per_op"],
    "floor_barrier8_central": ["p50_us", "msgs_per_op"],
    "floor_barrier8_dissem": ["p50_us", "msgs_per_op"],
    "floor_barrier8_batch": ["p50_us", "msgs_per_op"],
    "floor_barrier8_batch_sleep": ["p50_us", "msgs_per_op"],
    "floor_barrier8_central_sleep": ["p50_us", "msgs_per_op"],
    "floor_barrier8_dissem_sleep": ["p50_us", "msgs_per_op"],
}
BARRIER_NODES = {2, 4, 8}
RATIOS = {"read_miss_home_remote", "read_miss_home_local", "upgrade1_home_remote",
          "upgrade1_home_local", "upgrade3_home_remote", "pingpong", "scan",
          "zero_read_home_local", "zero_read_home_remote", "read_miss_home_third", "barrier_8"}
# Measured in several rounds, each with its own floors (udsm-bench --rounds).
ROUNDED = ("read_miss_home_remote", "read_miss_home_local", "upgrade1_home_remote",
           "upgrade1_home_local", "pingpong")
# The default run is in the library's automatic mode: the latency figures are measured again
# with each waiting mode forced, each against the floor of its mode.
RATIOS |= {f"{r}@{m}" for r in ("read_miss_home_remote", "upgrade1_home_remote", "pingpong",
                                "barrier_8") for m in ("poll", "sleep")}


def finite(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check(text):
    errs = []
    figs, ratios, barriers = {}, {}, set()
    for i, line in enumerate(text.splitlines(), 1):
        if not line.startswith("{"):
            continue
        try:
            o = json.loads(line)
        except ValueError as e:
            errs.append(f"line {i}: not JSON ({e}): {line[:80]}")
            continue
        if o.get("bench") == "ratio":
            for k in ("name", "value", "target", "cmp", "pass"):
                if k not in o:
                    errs.append(f"line {i}: ratio without '{k}'")
            ratios[o.get("name")] = o
            continue
        for k in KEYS:
            if k not in o:
                errs.append(f"line {i}: {o.get('bench')}: no key '{k}'")
        if not isinstance(o.get("n"), int) or o["n"] <= 0:
            errs.append(f"line {i}: {o.get('bench')}: bad n {o.get('n')}")
        if o.get("bench") == "barrier":
            barriers.add(o.get("nodes"))
            if not finite(o.get("p50_us")) or not finite(o.get("msgs_per_op")):
                errs.append(f"line {i}: barrier: p50_us/msgs_per_op not numbers")
        if "lib_kind" in o:
            # The library's histogram of the window (udsm_stats2): buckets add up to lib_n.
            total = sum(b[2] for b in o.get("lib_buckets_us", []))
            if total != o.get("lib_n"):
                errs.append(f"line {i}: {o.get('bench')}: lib buckets add up to {total}, "
                            f"lib_n is {o.get('lib_n')}")
        if o.get("bench") == "hot_page":
            for k in ("page", "transfers", "false_sharing", "ranges"):
                if k not in o:
                    errs.append(f"line {i}: hot_page without '{k}'")
            continue
        figs[o.get("bench")] = o
    # The one-step give-up needs UFFDIO_MOVE (Linux 6.8): both figures, or the line saying the
    # kernel lacks it.
    takes = [n for n in ("floor_take", "floor_take_busy") if n in figs]
    if takes and len(takes) != 2:
        errs.append(f"only {takes[0]} of floor_take and floor_take_busy")
    if takes:
        NEED.update({n: ["p50_us", "p99_us"] for n in takes})
    elif "has no UFFDIO_MOVE" not in text and "floor_giveup" in figs:
        errs.append("missing figure floor_take (and no line saying the kernel lacks UFFDIO_MOVE)")
    # The batched barrier needs io_uring: its figures, or the line saying it is not there.
    if "floor_barrier8_batch left out" in text:
        for n in ("floor_barrier8_batch", "floor_barrier8_batch_sleep"):
            NEED.pop(n, None)
    for name, fields in NEED.items():
        o = figs.get(name)
        if not o:
            errs.append(f"missing figure {name}")
            continue
        for f in fields:
            if not finite(o.get(f)):
                errs.append(f"{name}: {f} is {o.get(f)!r}, want a number")
        p = [o.get(k) for k in ("p50_us", "p90_us", "p99_us", "max_us")]
        if all(finite(x) for x in p) and not p[0] <= p[1] <= p[2] <= p[3]:
            errs.append(f"{name}: percentiles out of order {p}")
    # One access per page, each a miss of the figure's kind: the library counted each once.
    for name in NEED:
        o = figs.get(name)
        if o and name.split("_")[0] in ("read", "write", "upgrade1", "upgrade3", "zero"):
            if o.get("lib_n") != o.get("n"):
                errs.append(f"{name}: the library counted {o.get('lib_n')} {o.get('lib_kind')}"
                            f" latencies for {o.get('n')} accesses")
    for n in sorted(BARRIER_NODES - barriers):
        errs.append(f"missing barrier figure for {n} nodes")
    for r in sorted(RATIOS - set(ratios)):
        errs.append(f"missing ratio {r}")
    # The 2-node latency targets: a same-run ratio per round (--rounds; at least 2 in the runs
    # this checks), each round's figure and floors emitted, and the median as the value.
    for name in ROUNDED:
        o = ratios.get(name)
        if not o:
            continue
        rs = o.get("rounds")
        if not isinstance(rs, list) or len(rs) < 2 or not all(finite(x) for x in rs):
            errs.append(f"{name}: want a list of at least 2 finite round ratios, got {rs!r}")
            continue
        for k in range(2, len(rs) + 1):
            for f in (name, "floor_tcp_16" if name.startswith("upgrade") else "floor_tcp_4k",
                      "floor_uffd", "floor_uffd_sleep"):
                if not finite(figs.get(f"{f}#{k}", {}).get("p50_us")):
                    errs.append(f"{name}: round {k} has no figure {f}#{k}")
        if abs(statistics.median(rs) - o.get("value", math.nan)) > 1e-3 * max(1.0, abs(o["value"])):
            errs.append(f"{name}: value {o.get('value')} is not the median of rounds {rs}")
    for name in ("zero_read_home_local", "zero_read_home_remote"):
        if name in ratios and not ratios[name].get("pass"):
            errs.append(f"{name}: zero-page reads moved a payload: {ratios[name].get('formula')}")
    return errs, figs, ratios


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    if sys.argv[1] == "-":
        text, rc = sys.stdin.read(), 0
    else:
        p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, text=True, timeout=110)
        text, rc = p.stdout, p.returncode
    sys.stdout.write(text)
    if rc == 77:
        print("check-json: SKIP: udsm-bench cannot run here (no userfaultfd)")
        return 77
    errs, figs, ratios = check(text)
    if rc != 0:
        errs.insert(0, f"udsm-bench exited with status {rc}")
    if errs:
        for e in errs:
            print("check-json: FAIL:", e, file=sys.stderr)
        return 1
    miss = [n for n, r in ratios.items() if not r.get("pass")]
    print(f"check-json: OK: {len(figs)} figures, {len(ratios)} ratios"
          + (f" (targets missed on this run: {', '.join(sorted(miss))})" if miss else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
