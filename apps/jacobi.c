/* SPDX-License-Identifier: MIT */
/*
 * jacobi - 2-D Jacobi relaxation (5-point stencil) on an N x N grid of doubles in the region.
 *
 *   udsm-run -n NODES jacobi [--n N] [--iters I]        (defaults 2048, 100)
 *
 * Two grids, old and new, swapped after every sweep. The rows are split in contiguous blocks,
 * one per node; a node writes only its rows, so after the first sweep its pages stay
 * Modified on it, and the only pages that move are the rows bordering a neighbour's block:
 * each sweep reads one row above and one below its block (the halo) that the neighbour wrote
 * in the previous sweep. A barrier separates the sweeps. The boundary (row 0 = 1.0, column 0
 * = 0.5, the rest 0) is fixed.
 *
 * Check: node 0 recomputes every sweep serially on private memory, with the same arithmetic
 * in the same order for every point, so the parallel grid must be bit-for-bit identical.
 */
#include <getopt.h>
#include <math.h>
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

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "n", required_argument, NULL, 'n' },
		{ "iters", required_argument, NULL, 'i' },
		{ NULL, 0, NULL, 0 },
	};
	size_t n = 2048, iters = 100;
	struct app a = { 0 };
	int c;

	while ((c = getopt_long(argc, argv, "n:i:", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			n = app_arg("--n", optarg);
			break;
		case 'i':
			iters = app_arg("--iters", optarg);
			break;
		default:
			fprintf(stderr, "usage: jacobi [--n N] [--iters I]\n");
			return 2;
		}
	}
	if (n < 3) {
		fprintf(stderr, "jacobi: --n must be at least 3\n");
		return 2;
	}
	size_t bytes = n * n * sizeof(double);

	app_open(&a, "jacobi", 2 * bytes);
	snprintf(a.args, sizeof(a.args), "n=%zu,iters=%zu", n, iters);

	double *g[2] = { app_coalloc(&a, bytes), app_coalloc(&a, bytes) };
	size_t lo, hi;

	app_block(n, a.nodes, a.self, &lo, &hi);
	/* Each node writes its own rows of both grids first: they start Modified here. */
	init_rows(g[0], n, lo, hi);
	init_rows(g[1], n, lo, hi);

	app_begin(&a);
	for (size_t it = 0; it < iters; it++) {
		sweep(g[(it + 1) % 2], g[it % 2], n, lo, hi);
		app_barrier(&a);
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
