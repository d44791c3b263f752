/* SPDX-License-Identifier: MIT */
/*
 * app.c - the frame every application of apps/ runs in (app.h).
 */
#include "app.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Node 0 writes it once the serial reference is checked; the others read it after the
 * barrier of app_finish(). */
struct app_shared {
	double ser_s;
	int verdict; /* 0 none yet, 1 OK, 2 WRONG */
};

double app_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void *app_xmalloc(size_t bytes)
{
	void *p = malloc(bytes ? bytes : 1);

	if (!p) {
		fprintf(stderr, "out of memory (%zu bytes)\n", bytes);
		exit(1);
	}
	return p;
}

size_t app_arg(const char *opt, const char *val)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(val ? val : "", &end, 10);
	if (!val || !*val || *end || errno || v == 0 || *val == '-') {
		fprintf(stderr, "%s: want a positive number, not '%s'\n", opt, val ? val : "");
		exit(2);
	}
	return (size_t)v;
}

void app_block(size_t n, unsigned parts, unsigned i, size_t *lo, size_t *hi)
{
	size_t q = n / parts, r = n % parts;

	/* The first r blocks get one more item. */
	*lo = i * q + (i < r ? i : r);
	*hi = *lo + q + (i < r);
}

void app_barrier(struct app *a)
{
	int err = udsm_barrier(a->d);

	if (err) {
		fprintf(stderr, "%s node %u: udsm_barrier: %s\n", a->name, a->self,
			udsm_strerror(err));
		exit(1);
	}
}

void app_lock(struct app *a, void *addr)
{
	double t = app_now();
	int err = udsm_lock(a->d, addr);

	if (err) {
		fprintf(stderr, "%s node %u: udsm_lock: %s\n", a->name, a->self, udsm_strerror(err));
		exit(1);
	}
	a->lock_s += app_now() - t;
	a->locks++;
}

void app_unlock(struct app *a, void *addr)
{
	int err = udsm_unlock(a->d, addr);

	if (err) {
		fprintf(stderr, "%s node %u: udsm_unlock: %s\n", a->name, a->self,
			udsm_strerror(err));
		exit(1);
	}
}

void *app_coalloc(struct app *a, size_t bytes, int placement)
{
	void *p;

	if (a->placement <= 0)
		placement = a->placement;
	if (!(p = udsm_coalloc_placed(a->d, bytes, placement))) {
		fprintf(stderr, "%s node %u: udsm_coalloc_placed(%zu, %d): %s\n", a->name, a->self,
			bytes, placement, strerror(errno));
		exit(1);
	}
	return p;
}

void app_open(struct app *a, const char *name, size_t bytes)
{
	struct udsm_config cfg = { 0 };
	const char *v;
	int err;

	a->name = name;
	a->inject = getenv("APPS_INJECT_ERROR") != NULL;
	a->placement = 1;
	if ((v = getenv("APPS_PLACEMENT"))) {
		if (!strcmp(v, "block"))
			a->placement = UDSM_PLACE_BLOCK;
		else if (!strcmp(v, "cyclic"))
			a->placement = UDSM_PLACE_CYCLIC;
		else if (!strcmp(v, "node0"))
			a->placement = 0;
		else {
			fprintf(stderr, "%s: APPS_PLACEMENT=%s: block, cyclic or node0\n", name, v);
			exit(2);
		}
	}
	/* Room for the data, the allocator's metadata (a few pages plus 8 bytes per page at
	 * the top of the region), page rounding of each block and the results page. The
	 * launcher's UDSM_SIZE, when given, wins (a zero field means "from the environment"). */
	if (!getenv("UDSM_SIZE"))
		cfg.size = bytes + bytes / 64 + ((size_t)4 << 20);
	/* Input generation by one node and serial references can keep a node away from its
	 * barrier for a while on a loaded machine: wait for the cluster generously. */
	cfg.timeout_ms = 120000;
	if ((err = udsm_open(&cfg, &a->d))) {
		fprintf(stderr, "%s: udsm_open: %s\n", name, udsm_strerror(err));
		exit(1);
	}
	a->self = udsm_node_id(a->d);
	a->nodes = udsm_nodes(a->d);
	a->sh = app_coalloc(a, sizeof(*a->sh), 0);
}

void app_begin(struct app *a)
{
	app_barrier(a);
	udsm_stats2(a->d, &a->s0, sizeof(a->s0));
	a->locks = 0;
	a->lock_s = 0;
	a->t0 = app_now();
}

void app_end(struct app *a)
{
	app_barrier(a);
	a->par_s = app_now() - a->t0;
	udsm_stats2(a->d, &a->s1, sizeof(a->s1));
}

void app_verdict(struct app *a, double ser_s, bool ok)
{
	a->sh->ser_s = ser_s;
	a->sh->verdict = ok ? 1 : 2;
}

/* Samples and mean latency in microseconds of the kinds [k0, k1] during the parallel part. */
static void lat(const struct app *a, int k0, int k1, unsigned long long *n, double *us)
{
	uint64_t cnt = 0, ns = 0;

	for (int k = k0; k <= k1; k++) {
		cnt += a->s1.lat[k].count - a->s0.lat[k].count;
		ns += a->s1.lat[k].sum_ns - a->s0.lat[k].sum_ns;
	}
	*n = cnt;
	*us = cnt ? (double)ns / (double)cnt / 1000.0 : 0;
}

int app_finish(struct app *a)
{
	const struct udsm_stats *x = &a->s0.c, *y = &a->s1.c;
	unsigned long long misses, barriers;
	double miss_us, bar_us;
	int verdict;

	lat(a, UDSM_LAT_READ_MISS, UDSM_LAT_UPGRADE, &misses, &miss_us);
	lat(a, UDSM_LAT_BARRIER, UDSM_LAT_BARRIER, &barriers, &bar_us);

	app_barrier(a);
	verdict = a->sh->verdict;
	printf("RESULT app=%s nodes=%u node=%u par_s=%.6f ser_s=%.6f faults=%llu pages_in=%llu "
	       "zero_in=%llu bytes_in=%llu bytes_out=%llu msgs=%llu misses=%llu miss_us=%.1f "
	       "barriers=%llu barrier_us=%.1f locks=%llu lock_us=%.1f result=%s args=%s\n",
	       a->name, a->nodes, a->self, a->par_s, a->sh->ser_s,
	       (unsigned long long)(y->faults - x->faults),
	       (unsigned long long)(y->pages_in - x->pages_in),
	       (unsigned long long)(y->zero_pages_in - x->zero_pages_in),
	       (unsigned long long)(y->bytes_recv - x->bytes_recv),
	       (unsigned long long)(y->bytes_sent - x->bytes_sent),
	       (unsigned long long)(y->msgs_sent - x->msgs_sent), misses, miss_us, barriers, bar_us,
	       (unsigned long long)a->locks, a->locks ? a->lock_s * 1e6 / (double)a->locks : 0.0,
	       verdict == 1 ? "OK" : verdict == 2 ? "WRONG" : "NONE", a->args);
	fflush(stdout);
	/* Nobody may still read the results page when a node leaves. */
	app_barrier(a);
	udsm_close(a->d);
	return verdict == 1 ? 0 : 1;
}
