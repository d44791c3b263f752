/* SPDX-License-Identifier: MIT */
/*
 * matmul - dense matrix multiply C = A * B of N x N doubles in the region.
 *
 *   udsm-run -n NODES matmul [--n N]                     (default 1024)
 *
 * Node 0 writes A and B (the classic "input produced by one node, read by all"); every node
 * then computes a contiguous block of rows of C. A node reads its rows of A and all of B: B
 * is replicated Shared on every node (N * N * 8 bytes to each of the others), which read
 * miss read-ahead turns into large sequential batches. C's rows are written only by the node
 * that computes them.
 *
 * The product is computed row by row in i-k-j order, which keeps B's rows streaming; every
 * element C[i][j] is the same sum in the same order in the parallel and serial code, so
 * node 0's serial reference (on private copies of A and B) must match bit for bit.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"

static void fill(double *m, size_t n, uint64_t seed)
{
	for (size_t k = 0; k < n * n; k++)
		m[k] = app_unit(app_mix(seed ^ k)) * 2.0 - 1.0;
}

/* Rows [lo, hi) of c = a * b. */
static void multiply(double *restrict c, const double *restrict a, const double *restrict b,
		     size_t n, size_t lo, size_t hi)
{
	for (size_t i = lo; i < hi; i++) {
		double *ci = c + i * n;

		memset(ci, 0, n * sizeof(double));
		for (size_t k = 0; k < n; k++) {
			const double aik = a[i * n + k], *bk = b + k * n;

			for (size_t j = 0; j < n; j++)
				ci[j] += aik * bk[j];
		}
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "n", required_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 },
	};
	size_t n = 1024;
	struct app a = { 0 };
	int c;

	while ((c = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			n = app_arg("--n", optarg);
			break;
		default:
			fprintf(stderr, "usage: matmul [--n N]\n");
			return 2;
		}
	}
	size_t bytes = n * n * sizeof(double);

	app_open(&a, "matmul", 3 * bytes);
	snprintf(a.args, sizeof(a.args), "n=%zu", n);

	/* A and B homed on node 0, which writes them; C's rows with the node computing them. */
	double *ma = app_coalloc(&a, bytes, 0), *mb = app_coalloc(&a, bytes, 0);
	double *mc = app_coalloc(&a, bytes, UDSM_PLACE_BLOCK);
	double *pa = NULL, *pb = NULL;
	size_t lo, hi;

	if (a.self == 0) {
		/* Private copies for the serial reference; then the shared inputs. */
		pa = app_xmalloc(bytes);
		pb = app_xmalloc(bytes);
		fill(pa, n, 0xa11ce);
		fill(pb, n, 0xb0b);
		memcpy(ma, pa, bytes);
		memcpy(mb, pb, bytes);
	}
	app_block(n, a.nodes, a.self, &lo, &hi);

	app_begin(&a);
	multiply(mc, ma, mb, n, lo, hi);
	app_end(&a);

	if (a.self == 0) {
		double *pc = app_xmalloc(bytes);
		size_t bad = 0, first = 0;
		double t = app_now();

		multiply(pc, pa, pb, n, 0, n);
		t = app_now() - t;
		if (a.inject) /* one ulp off in one element */
			mc[n * n / 2] = nextafter(mc[n * n / 2], 1e300);
		for (size_t k = 0; k < n * n; k++)
			if (memcmp(&mc[k], &pc[k], sizeof(double)) && !bad++)
				first = k;
		if (bad)
			fprintf(stderr, "matmul: %zu elements differ, first C[%zu][%zu] = %.17g, "
				"serial %.17g\n", bad, first / n, first % n, mc[first], pc[first]);
		app_verdict(&a, t, bad == 0);
		free(pa);
		free(pb);
		free(pc);
	}
	return app_finish(&a);
}
