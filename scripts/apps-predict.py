#!/usr/bin/env python3
"""apps-predict.py RESULTS [options] - what the figures of `make apps` predict for one node per
machine (docs/APPS.md).

Reads the RESULT lines `make apps` left in BUILD/apps-results.txt and, for every run on more
than one node, estimates the parallel time if every node had a machine of its own:

    T = T_serial / n                               the computation, split evenly; T_serial is
                                                   the smallest serial time of the program's
                                                   runs with the same sizes, whatever the mode
                                                   (the serial reference does not depend on it;
                                                   the smallest is the least disturbed by load)
      + misses * miss_us                           each miss stalls the node's one thread
      + max(0, pages_in - misses) * 4 KiB / bandwidth   pages that came in batches (read-ahead)
      + barriers * barrier_us + locks * lock_us

with the counts of the slowest node (the largest estimate) taken as measured here: which pages
move depends on the program and the protocol, not on where the nodes run. The latencies are
inputs (defaults: a 4 KiB miss 50 us, a barrier 100 us, a lock 60 us, 10 Gbit/s: a LAN
figure somewhat above the 26-32 us loopback read miss docs/PERFORMANCE.md measures on a quiet
machine).
"""
import argparse
import collections


def parse(path):
    runs = collections.defaultdict(list)
    for line in open(path):
        if not line.startswith("RESULT "):
            continue
        v = dict(kv.split("=", 1) for kv in line.split()[1:])
        runs[(v["app"], v["args"], int(v["nodes"]))].append(v)
    return runs


def sizes(app, args):
    """The program and its size arguments, without the options that only change the parallel
    run (the serial reference is the same for all of them)."""
    keep = [a for a in args.split(",")
            if a.split("=")[0] not in ("reduce", "scatter", "stream", "threads")]
    return (app, ",".join(keep))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--miss-us", type=float, default=50.0)
    ap.add_argument("--barrier-us", type=float, default=100.0)
    ap.add_argument("--lock-us", type=float, default=60.0)
    ap.add_argument("--gbps", type=float, default=10.0)
    o = ap.parse_args()
    page_s = 4096 * 8 / (o.gbps * 1e9)
    print(f"model: miss {o.miss_us:g} us, barrier {o.barrier_us:g} us, lock {o.lock_us:g} us, "
          f"{o.gbps:g} Gbit/s")
    print(f"{'app':<26} {'nodes':>5} {'ser_s':>8} {'comp_s':>8} {'comm_s':>8} {'pred_s':>8} "
          f"{'speedup':>8}")
    runs = parse(o.results)
    best = {}
    for (app, args, n), lines in runs.items():
        s = float(lines[0]["ser_s"])
        k = sizes(app, args)
        best[k] = min(best.get(k, s), s)
    for (app, args, n), lines in sorted(runs.items()):
        ser = best[sizes(app, args)]
        comm = 0.0
        for v in lines:
            misses = int(v["misses"])
            batch = max(0, int(v["pages_in"]) - misses)
            c = (misses * o.miss_us * 1e-6 + batch * page_s +
                 int(v["barriers"]) * o.barrier_us * 1e-6 + int(v.get("locks", 0)) * o.lock_us * 1e-6)
            comm = max(comm, c)
        if n == 1:
            comm = 0.0  # nothing moves on one node; its faults are local zero fills
        comp = ser / n
        pred = comp + comm
        label = app + ("/" + args.split("reduce=")[1].replace(",scatter=", "/")
                       if "reduce=" in args else "")
        print(f"{label:<26} {n:>5} {ser:>8.3f} {comp:>8.3f} {comm:>8.3f} {pred:>8.3f} "
              f"{ser / pred:>8.2f}")


if __name__ == "__main__":
    main()
