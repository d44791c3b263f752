#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""check-stats.py - run udsm-stats-prog and check the UDSM_STATS reports it leaves.

usage: check-stats.py PROG MODE [--stderr]

MODE is false, padded or counts (see stats-prog.c). Every report line must parse as JSON and
carry the documented keys; every histogram's buckets must add up to its count and to the
matching counter; then the mode's own checks. With --stderr the reports go to stderr
(UDSM_STATS=stderr) instead of files. Exit 0 pass, 1 fail, 77 skip (no userfaultfd).
"""
import json
import os
import subprocess
import sys
import tempfile

KINDS = ["read_miss", "write_miss", "upgrade", "barrier", "lock"]
COUNTER_OF = {"read_miss": "read_misses", "write_miss": "write_misses", "upgrade": "upgrades",
              "barrier": "barriers", "lock": "lock_acquisitions"}
TOP = ["udsm_stats", "node", "nodes", "reason", "time_unix_ms", "uptime_ms", "page_size",
       "region_bytes", "counters", "waiting", "latency_us", "hot_pages"]
HOT = ["page", "addr", "home", "transfers", "transfers_err", "nodes", "writers",
       "false_sharing", "disjoint", "overlap", "ranges"]
errs = []


def fail(msg):
    errs.append(msg)


def check_report(r):
    where = f"node {r.get('node')} ({r.get('reason')})"
    for k in TOP:
        if k not in r:
            fail(f"{where}: no key {k}")
    c = r.get("counters", {})
    for kind in KINDS:
        h = r.get("latency_us", {}).get(kind)
        if h is None:
            fail(f"{where}: no latency_us.{kind}")
            continue
        total = 0
        prev_hi = 0
        for lo, hi, n in h["buckets_us"]:
            if lo < prev_hi or (hi is not None and hi <= lo) or n <= 0:
                fail(f"{where}: {kind}: bad bucket {[lo, hi, n]}")
            prev_hi = hi if hi is not None else lo
            total += n
        if total != h["count"]:
            fail(f"{where}: {kind}: buckets add up to {total}, count is {h['count']}")
        if c.get(COUNTER_OF[kind]) != h["count"]:
            fail(f"{where}: {kind}: counter {COUNTER_OF[kind]} is {c.get(COUNTER_OF[kind])}, "
                 f"histogram count {h['count']}")
        if h["count"] and not (h["p50_us"] <= h["p90_us"] <= h["p99_us"] <= h["max_us"] + 0.06):
            fail(f"{where}: {kind}: quantiles out of order {h}")
    w = r.get("waiting", {})
    if w.get("policy") not in ("auto", "poll", "sleep"):
        fail(f"{where}: waiting.policy {w.get('policy')}")
    for kind in ("requests", "barriers"):
        v = w.get(kind, {})
        if v.get("mode") not in ("poll", "sleep"):
            fail(f"{where}: waiting.{kind}.mode {v.get('mode')}")
        for m in ("poll", "sleep"):
            if (v.get(f"{m}_samples", -1) > 0) != (v.get(f"{m}_median_us", -1) > 0):
                fail(f"{where}: waiting.{kind}: {v.get(f'{m}_samples')} {m} samples, median "
                     f"{v.get(f'{m}_median_us')} us")
    # The stats program's nodes wait in barriers and for pages, in the automatic mode.
    if w.get("policy") == "auto" and r.get("reason") == "close" and \
            w.get("barriers", {}).get("poll_samples", 0) + \
            w.get("barriers", {}).get("sleep_samples", 0) == 0 and c.get("barriers", 0) > 8:
        fail(f"{where}: {c.get('barriers')} barriers, no barrier learnt: {w}")
    for hp in r.get("hot_pages", []):
        for k in HOT:
            if k not in hp:
                fail(f"{where}: hot page without {k}: {hp}")
    if c.get("read_misses", 0) + c.get("write_misses", 0) + c.get("upgrades", 0) > c.get("faults", 0):
        fail(f"{where}: more misses than faults: {c}")
    for k in ("installs", "installed_pages", "install_us"):
        if k not in c:
            fail(f"{where}: no counters.{k}")
    if c.get("installs", 0) > c.get("installed_pages", 0) or \
            (c.get("installs", 0) > 0) != (c.get("install_us", 0) > 0):
        fail(f"{where}: installs {c.get('installs')}, pages {c.get('installed_pages')}, "
             f"time {c.get('install_us')} us")


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    prog, mode = sys.argv[1], sys.argv[2]
    to_stderr = "--stderr" in sys.argv[3:]
    with tempfile.TemporaryDirectory(prefix="udsm-stats-") as tmp:
        env = dict(os.environ)
        env["UDSM_STATS"] = "stderr" if to_stderr else os.path.join(tmp, "stats")
        p = subprocess.run([prog, mode], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=100)
        sys.stdout.write(p.stdout)
        if p.returncode == 77 or "userfaultfd" in p.stderr and p.returncode:
            sys.stderr.write(p.stderr)
            if p.returncode == 77:
                return 77
        if p.returncode != 0:
            sys.stderr.write(p.stderr)
            print(f"check-stats: FAIL: {prog} {mode} exited with {p.returncode}")
            return 1
        lines = []
        if to_stderr:
            lines = [ln for ln in p.stderr.splitlines() if ln.startswith("{")]
        else:
            for n in (0, 1):
                path = os.path.join(tmp, f"stats.{n}")
                if not os.path.exists(path):
                    fail(f"no report file {path}")
                    continue
                with open(path) as f:
                    lines += f.read().splitlines()
    reports = []
    for ln in lines:
        try:
            reports.append(json.loads(ln))
        except ValueError as e:
            fail(f"a report line is not JSON ({e}): {ln[:100]}")
    for r in reports:
        check_report(r)
    final = {r["node"]: r for r in reports if r.get("reason") == "close"}
    if sorted(final) != [0, 1]:
        fail(f"want one close report per node, have {sorted(final)}")
        return report()
    if not to_stderr and mode != "counts":
        sig = [r for r in reports if r.get("reason") == "SIGUSR2"]
        if [r["node"] for r in sig] != [0]:
            fail(f"want one SIGUSR2 report, from node 0; have {[r['node'] for r in sig]}")
    hot = sorted((hp for r in final.values() for hp in r["hot_pages"]),
                 key=lambda hp: -hp["transfers"])
    if mode == "false":
        if not hot:
            fail("no hot pages")
            return report()
        top = hot[0]
        print("check-stats: hottest page:", json.dumps(top))
        if top["page"] != 4:
            fail(f"hottest page is {top['page']}, want 4")
        if top["nodes"] != [0, 1] or top["writers"] != [0, 1]:
            fail(f"page 4: nodes {top['nodes']} writers {top['writers']}, want [0, 1] each")
        if top["false_sharing"] is not True:
            fail(f"page 4 is not flagged false_sharing: {top}")
        want = [{"node": 0, "start": 0, "end": 8}, {"node": 1, "start": 8, "end": 16}]
        if top["ranges"] != want:
            fail(f"page 4: ranges {top['ranges']}, want {want}")
        if top["transfers"] < 30:
            fail(f"page 4 moved {top['transfers']} times; 30 rounds move it at least 30 times")
    elif mode == "padded":
        fs = [hp for hp in hot if hp["false_sharing"]]
        if fs:
            fail(f"padded words, yet false sharing reported: {fs}")
        if any(hp["disjoint"] or hp["overlap"] for hp in hot):
            fail(f"padded words, yet hand-overs between writers: {hot}")
    elif mode == "counts":
        want = {0: {"write_misses": 20, "read_misses": 0, "upgrades": 0, "barriers": 5},
                1: {"write_misses": 10, "read_misses": 20, "upgrades": 20, "barriers": 5}}
        for n, w in want.items():
            c = final[n]["counters"]
            for k, v in w.items():
                if c[k] != v:
                    fail(f"node {n}: {k} = {c[k]}, want {v}")
            if c["latency_dropped"]:
                fail(f"node {n}: {c['latency_dropped']} latencies dropped")
            # Every page received was installed with UFFDIO_COPY, and timed.
            if c["installed_pages"] != c["pages_in"] or not c["installs"]:
                fail(f"node {n}: {c['installed_pages']} pages installed in {c['installs']} "
                     f"calls, {c['pages_in']} pages in")
        # Every page or grant a node received was a transfer its home counted.
        got = sum(final[n]["counters"]["pages_in"] + final[n]["counters"]["upgrades"]
                  for n in (0, 1))
        moved = sum(final[n]["counters"]["transfers"] for n in (0, 1))
        if got != moved:
            fail(f"homes counted {moved} transfers, nodes received {got} pages and grants")
    return report()


def report():
    if errs:
        for e in errs:
            print("check-stats: FAIL:", e)
        return 1
    print("check-stats: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
