/* SPDX-License-Identifier: MIT */
/*
 * jacobi - 2-D Jacobi relaxation (5-point stencil) on an N x N grid of doubles in the region.
 *
 *   udsm-run -n NODES jacobi [--n N] [--iters I] [--threads T]   (defaults 2048, 100, 1)
 *
 * Two grids, old and new, swapped after every sweep. The rows are split in contiguous blocks,
 * one per node; a node writes only its rows, so after the first sweep its pages stay
 * Modified on it, and the only pages that move are the rows bordering a neighbour's block:
 * each sweep reads one row above and one below its block (the halo) that the neighbour wrote
 * in the previous sweep. A barrier separates the sweeps. The boundary (row 0 = 1.0, column 0
 * = 0.5, the rest 0) is fixed. With --threads T, T threads per node split the node's rows
 * again and meet, with the other nodes' threads, in udsm_barrier_threads() after each sweep
 * (the pthreads program moved onto several machines).
 *
 * Check: node 0 recomputes every sweep serially on private memory, with the same arithmetic
 * in the same order for every point, so the parallel grid must be bit-for-bit identical.
 */
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"

static void init_rows(double *g, size_t n, size_t lo, size_t hi)
{
	for (size_t i = lo; i < hi; i++)
		for (size_t j = 0; j < n; j++)
			g[i * n + j] = i == 0 ? 1.0 : j == 0 ? 0.5 : 0.0;
}

/* One sweep over rows [lo, hi) of the interior: @dst from @src. */
static void sweep(double *restrict dst, const double *restrict src, size_t n, size_t lo,
		  size_t hi)
{
	if (lo < 1)
		lo = 1;
	if (hi > n - 1)
		hi = n - 1;
	for (size_t i = lo; i < hi; i++) {
		const double *up = src + (i - 1) * n, *row = src + i * n, *down = src + (i + 1) * n;
		double *out = dst + i * n;

		for (size_t j = 1; j < n - 1; j++)
			out[j] = 0.25 * ((up[j] + down[j]) + (row[j - 1] + row[j + 1]));
	}
}

struct worker {
	struct app *a;
	double *g[2];
	size_t n, iters, lo, hi; /* this thread's rows */
	unsigned nthreads;
	pthread_t tid;
	int err;
};

static void *work(void *arg)
{
	struct worker *w = arg;

	for (size_t it = 0; it < w->iters; it++) {
		sweep(w->g[(it + 1) % 2], w->g[it % 2], w->n, w->lo, w->hi);
		if ((w->err = udsm_barrier_threads(w->a->d, w->nthreads)))
			break;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "n", required_argument, NULL, 'n' },
		{ "iters", required_argument, NULL, 'i' },
		{ "threads", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	size_t n = 2048, iters = 100, nthreads = 1;
	struct app a = { 0 };
	int c;

	while ((c = getopt_long(argc, argv, "n:i:t:", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			n = app_arg("--n", optarg);
			break;
		case 'i':
			iters = app_arg("--iters", optarg);
			break;
		case 't':
			nthreads = app_arg("--threads", optarg);
			break;
		default:
			fprintf(stderr, "usage: jacobi [--n N] [--iters I] [--threads T]\n");
			return 2;
		}
	}
	if (nthreads > 64) {
		fprintf(stderr, "jacobi: at most 64 threads per node\n");
		return 2;
	}
	if (n < 3) {
		fprintf(stderr, "jacobi: --n must be at least 3\n");
		return 2;
	}
	size_t bytes = n * n * sizeof(double);

	app_open(&a, "jacobi", 2 * bytes);
	snprintf(a.args, sizeof(a.args), "n=%zu,iters=%zu,threads=%zu", n, iters, nthreads);

	/* Homes follow the rows: node i homes the i-th share of each grid. */
	double *g[2] = { app_coalloc(&a, bytes, UDSM_PLACE_BLOCK),
			 app_coalloc(&a, bytes, UDSM_PLACE_BLOCK) };
	size_t lo, hi;

	app_block(n, a.nodes, a.self, &lo, &hi);
	/* Each node writes its own rows of both grids first: they start Modified here. */
	init_rows(g[0], n, lo, hi);
	init_rows(g[1], n, lo, hi);

	app_begin(&a);
	if (nthreads == 1) {
		for (size_t it = 0; it < iters; it++) {
			sweep(g[(it + 1) % 2], g[it % 2], n, lo, hi);
			app_barrier(&a);
		}
	} else {
		struct worker w[64];

		for (unsigned t = 0; t < nthreads; t++) {
			size_t tlo, thi;

			app_block(hi - lo, (unsigned)nthreads, t, &tlo, &thi);
			w[t] = (struct worker){ .a = &a, .g = { g[0], g[1] }, .n = n, .iters = iters,
						.lo = lo + tlo, .hi = lo + thi,
						.nthreads = (unsigned)nthreads };
			if (pthread_create(&w[t].tid, NULL, work, &w[t])) {
				fprintf(stderr, "jacobi: pthread_create failed\n");
				return 1;
			}
		}
		for (unsigned t = 0; t < nthreads; t++) {
			pthread_join(w[t].tid, NULL);
			if (w[t].err) {
				fprintf(stderr, "jacobi node %u: udsm_barrier_threads: %s\n", a.self,
					udsm_strerror(w[t].err));
				return 1;
			}
		}
	}
	app_end(&a);

	if (a.self == 0) {
		double *s[2] = { app_xmalloc(bytes), app_xmalloc(bytes) };
		const double *par = g[iters % 2];
		size_t bad = 0, first = 0;

		init_rows(s[0], n, 0, n);
		init_rows(s[1], n, 0, n);
		double t = app_now();

		for (size_t it = 0; it < iters; it++)
			sweep(s[(it + 1) % 2], s[it % 2], n, 0, n);
		t = app_now() - t;
		if (a.inject) /* the least change a point can have: one ulp */
			g[iters % 2][n * (n / 2) + n / 2] = nextafter(par[n * (n / 2) + n / 2], 2.0);
		/* Bit-for-bit: the same operations in the same order on every point. */
		for (size_t k = 0; k < n * n; k++)
			if (memcmp(&par[k], &s[iters % 2][k], sizeof(double)) && !bad++)
				first = k;
		if (bad)
			fprintf(stderr, "jacobi: %zu points differ, first (%zu, %zu): %.17g, serial "
				"%.17g\n", bad, first / n, first % n, par[first],
				s[iters % 2][first]);
		app_verdict(&a, t, bad == 0);
		free(s[0]);
		free(s[1]);
	}
	return app_finish(&a);
}
