/* SPDX-License-Identifier: MIT */
/*
 * stats-cost - what always-on statistics (src/stats.c, docs/STATS.md) cost the service thread,
 * per event, measured by calling the very hooks node.c calls, in a loop, with tracking on and
 * off (UDSM_STATS=off). End-to-end latency figures on a shared 2-CPU machine vary by more than
 * these costs from run to run, so this is the number to quote; udsm-bench gives the other.
 *
 *   udsm-stats-cost [ITERATIONS]
 *
 * Prints ns per event (the best of ROUNDS rounds, to leave out preemption) and checks that the
 * histograms counted every sample. Built from the library's sources (not libudsm.so) to reach
 * its internal hooks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/engine.h"
#include "core/hot.h"
#include "node.h"
#include "stats.h"

#define PS 4096u
#define NPAGES 65536u
#define ROUNDS 20

static uint64_t now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct udsm *node(bool on)
{
	struct udsm_config cfg = { 0 };
	struct udsm *d = calloc(1, sizeof(*d));

	if (!d)
		exit(2);
	d->ps = PS;
	d->npages = NPAGES;
	d->evfd = -1;
	if (on)
		unsetenv("UDSM_STATS");
	else
		setenv("UDSM_STATS", "off", 1);
	if (stats_open(d, &cfg))
		exit(2);
	return d;
}

/* Best of ROUNDS rounds of @n calls of @fn, in ns per call. */
static double best(void (*fn)(struct udsm *, uint64_t), struct udsm *d, uint64_t n)
{
	double b = 1e30;

	for (int r = 0; r < ROUNDS; r++) {
		uint64_t t0 = now();

		for (uint64_t i = 0; i < n; i++)
			fn(d, i);
		double v = (double)(now() - t0) / (double)n;

		if (v < b)
			b = v;
	}
	return b;
}

static uint8_t page_buf[PS];

/* A read miss: the fault arrives (state I), the page is installed and its waiter woken. */
static void miss(struct udsm *d, uint64_t i)
{
	uint64_t p = (i * 7) % NPAGES;

	stats_fault(d->stats, p, ENG_I, false);
	stats_installed(d->stats, p, page_buf, 1);
}

/* An upgrade: write fault on a Shared page, made writable. */
static void upgrade(struct udsm *d, uint64_t i)
{
	uint64_t p = (i * 7) % NPAGES;

	stats_fault(d->stats, p, ENG_S, true);
	stats_woken(d->stats, p);
}

/* A home hands a page from its owner to a requester, with a written range. */
static void moved(struct udsm *d, uint64_t i)
{
	stats_op_moved(d, (i * 13) % NPAGES, (unsigned)(i & 1), (unsigned)(~i & 1),
		       (uint64_t)2 << 62 | (uint64_t)(i & 1) << 48 | 1);
}

/* One write epoch of a page this node keeps taking back (false sharing): the install takes
 * a copy, the FETCH compares against it. */
static void epoch(struct udsm *d, uint64_t i)
{
	uint64_t p = i % 16;

	stats_installed(d->stats, p, page_buf, 1);
	page_buf[(i * 8) % PS]++;
	stats_op_written(d, p, page_buf);
}

/* A scan: pages installed once each by read-ahead, no waiter. */
static void scan(struct udsm *d, uint64_t i)
{
	stats_installed(d->stats, i % NPAGES + NPAGES * (i / NPAGES), page_buf, 1);
}

int main(int argc, char **argv)
{
	uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 20000;
	struct udsm *on = node(true), *off = node(false);
	struct udsm_stats2 s;
	static const struct {
		const char *name;
		void (*fn)(struct udsm *, uint64_t);
	} ev[] = {
		{ "read miss (fault + install)", miss },
		{ "upgrade (fault + unprotect)", upgrade },
		{ "transfer at the home", moved },
		{ "write epoch of a hot page", epoch },
		{ "read-ahead install", scan },
	};
	int fail = 0;

	if (!n)
		n = 1;
	printf("udsm-stats-cost: ns per event on the service thread, best of %d rounds of %llu\n",
	       ROUNDS, (unsigned long long)n);
	printf("%-30s %10s %10s %10s\n", "event", "on", "off", "cost");
	for (size_t k = 0; k < sizeof(ev) / sizeof(ev[0]); k++) {
		double a = best(ev[k].fn, on, n), b = best(ev[k].fn, off, n);

		printf("%-30s %10.1f %10.1f %10.1f\n", ev[k].name, a, b, a - b);
	}
	/* Every miss and upgrade was timed (ROUNDS rounds each), nothing dropped; none when off. */
	stats_latency(on->stats, s.lat, &s.lat_dropped);
	if (s.lat[UDSM_LAT_READ_MISS].count != ROUNDS * n ||
	    s.lat[UDSM_LAT_UPGRADE].count != ROUNDS * n ||
	    s.lat_dropped) {
		fprintf(stderr, "udsm-stats-cost: FAIL: %llu read misses, %llu upgrades, %llu "
			"dropped; want %llu, %llu, 0\n",
			(unsigned long long)s.lat[UDSM_LAT_READ_MISS].count,
			(unsigned long long)s.lat[UDSM_LAT_UPGRADE].count,
			(unsigned long long)s.lat_dropped, (unsigned long long)ROUNDS * n,
			(unsigned long long)ROUNDS * n);
		fail = 1;
	}
	stats_latency(off->stats, s.lat, &s.lat_dropped);
	if (s.lat[UDSM_LAT_READ_MISS].count) {
		fprintf(stderr, "udsm-stats-cost: FAIL: UDSM_STATS=off still measures\n");
		fail = 1;
	}
	printf("memory per node: hot-page table %zu B, writer copies %u x %u B + filter\n",
	       sizeof(struct hot), 32u, PS);
	stats_destroy(on->stats);
	stats_destroy(off->stats);
	free(on);
	free(off);
	return fail;
}
