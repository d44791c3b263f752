/* SPDX-License-Identifier: MIT */
/*
 * pagerank - pull-style PageRank on a generated power-law graph in the region.
 *
 *   udsm-run -n NODES pagerank [--vertices V] [--degree D] [--iters I] [--stream]
 *                                                   (defaults 1048576, 8, 20, no)
 *
 * The graph: every vertex v gets an in-degree drawn from a Pareto law (exponent 2.5, minimum
 * D / 3, capped at 4096) and that many sources drawn with a density falling as id^(-2/3), so
 * that low ids are hubs read by everybody; plus the edge v-1 -> v, so that no vertex is
 * dangling (every rank flows on; no global dangling-mass sum is needed). Node 0 generates it
 * in private memory and copies it into the region as CSR of in-edges (offsets, sources) with
 * the out-degrees: one writer, everybody reads.
 *
 * The ranks are double-buffered: sweep t reads rank[t % 2] and writes rank[(t + 1) % 2] for
 * the node's contiguous block of vertices,
 *     rank'[v] = (1 - d) / V + d * sum over in-edges u -> v of rank[u] / outdeg[u],
 * with a barrier after every sweep. A node reads the edges of its block (its share of the CSR,
 * fetched once and kept Shared) and the ranks of every source of its edges, which another
 * node wrote in the previous sweep: those pages move every sweep, hubs' pages to every node.
 * In random order, one miss at a time: the sweep is bound by the miss latency. With --stream,
 * a node first reads one word of every page of the other nodes' ranks in address order, so
 * that the misses are sequential and read-ahead brings the pages in batches (what a user of
 * a page-based DSM does for an all-to-all read; costs the pages the node would not need).
 *
 * Check: node 0's serial reference on the private graph sums every vertex's in-edges in the
 * same order with the same operations, so the ranks must be identical bit for bit.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"

#define DAMPING 0.85
#define MAX_IN 4096

struct graph {
	size_t v, e;
	uint64_t *off;    /* v + 1: in-edges of w are src[off[w]] .. src[off[w + 1] - 1] */
	uint32_t *src;    /* e */
	uint32_t *outdeg; /* v */
};

static size_t in_degree(size_t w, size_t degree)
{
	double u = app_unit(app_mix(0x9a6e ^ (uint64_t)w)) + 1e-12;
	double kmin = degree / 3.0 > 1 ? degree / 3.0 : 1;
	double k = floor(kmin * pow(u, -1.0 / 1.5));

	return k > MAX_IN ? MAX_IN : (size_t)k;
}

static void generate(struct graph *g, size_t v, size_t degree)
{
	g->v = v;
	g->off = app_xmalloc((v + 1) * sizeof(*g->off));
	g->outdeg = calloc(v, sizeof(*g->outdeg));
	if (!g->outdeg) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	g->off[0] = 0;
	for (size_t w = 0; w < v; w++)
		g->off[w + 1] = g->off[w] + 1 + in_degree(w, degree);
	g->e = g->off[v];
	g->src = app_xmalloc(g->e * sizeof(*g->src));
	for (size_t w = 0; w < v; w++) {
		uint64_t k = g->off[w];

		g->src[k++] = (uint32_t)((w + v - 1) % v); /* the ring edge */
		for (; k < g->off[w + 1]; k++) {
			double x = app_unit(app_mix(0x50c ^ (k * 0x100000001b3ull)));
			size_t s = (size_t)((double)v * x * x * x);

			g->src[k] = (uint32_t)(s < v ? s : v - 1);
		}
	}
	for (size_t k = 0; k < g->e; k++)
		g->outdeg[g->src[k]]++;
}

/* One pull sweep over vertices [lo, hi). */
static void sweep(double *restrict out, const double *restrict in, const uint64_t *off,
		  const uint32_t *src, const uint32_t *outdeg, size_t v, size_t lo, size_t hi)
{
	const double base = (1.0 - DAMPING) / (double)v;

	for (size_t w = lo; w < hi; w++) {
		double s = 0;

		for (uint64_t k = off[w]; k < off[w + 1]; k++)
			s += in[src[k]] / outdeg[src[k]];
		out[w] = base + DAMPING * s;
	}
}

/* Read one word of every page of @r outside [lo, hi), in address order. */
static void touch_others(const double *r, size_t v, size_t lo, size_t hi, size_t ps)
{
	const volatile char *p = (const volatile char *)r, *end = p + v * sizeof(double);
	const volatile char *mlo = p + lo * sizeof(double), *mhi = p + hi * sizeof(double);

	for (; p < end; p += ps)
		if (p < mlo || p >= mhi)
			(void)*p;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "vertices", required_argument, NULL, 'v' },
		{ "degree", required_argument, NULL, 'd' },
		{ "iters", required_argument, NULL, 'i' },
		{ "stream", no_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	size_t v = 1 << 20, degree = 8, iters = 20;
	struct app a = { 0 };
	struct graph g = { 0 };
	bool stream = false;
	int c;

	while ((c = getopt_long(argc, argv, "v:d:i:s", opts, NULL)) != -1) {
		switch (c) {
		case 'v':
			v = app_arg("--vertices", optarg);
			break;
		case 'd':
			degree = app_arg("--degree", optarg);
			break;
		case 'i':
			iters = app_arg("--iters", optarg);
			break;
		case 's':
			stream = true;
			break;
		default:
			fprintf(stderr, "usage: pagerank [--vertices V] [--degree D] [--iters I] "
					"[--stream]\n");
			return 2;
		}
	}
	if (v < 2 || v > UINT32_MAX) {
		fprintf(stderr, "pagerank: --vertices must be 2..%u\n", UINT32_MAX);
		return 2;
	}
	/* Every node must know the edge count to allocate the same blocks; the in-degrees are a
	 * pure function of the vertex, so each computes it (cheap next to the sweeps). */
	size_t e = 0;

	for (size_t w = 0; w < v; w++)
		e += 1 + in_degree(w, degree);
	size_t off_b = (v + 1) * sizeof(uint64_t), src_b = e * sizeof(uint32_t);
	size_t deg_b = v * sizeof(uint32_t), rank_b = v * sizeof(double);

	app_open(&a, "pagerank", off_b + src_b + deg_b + 2 * rank_b);
	snprintf(a.args, sizeof(a.args), "vertices=%zu,edges=%zu,iters=%zu%s", v, e, iters,
		 stream ? ",stream" : "");

	/* The graph homed on node 0, which writes it; the ranks with the nodes that own them. */
	uint64_t *off = app_coalloc(&a, off_b, 0);
	uint32_t *src = app_coalloc(&a, src_b, 0), *outdeg = app_coalloc(&a, deg_b, 0);
	double *rank[2] = { app_coalloc(&a, rank_b, UDSM_PLACE_BLOCK),
			    app_coalloc(&a, rank_b, UDSM_PLACE_BLOCK) };
	size_t lo, hi;

	if (a.self == 0) {
		generate(&g, v, degree);
		if (g.e != e) {
			fprintf(stderr, "pagerank: generated %zu edges, counted %zu\n", g.e, e);
			return 1;
		}
		memcpy(off, g.off, off_b);
		memcpy(src, g.src, src_b);
		memcpy(outdeg, g.outdeg, deg_b);
	}
	app_block(v, a.nodes, a.self, &lo, &hi);
	for (size_t w = lo; w < hi; w++)
		rank[0][w] = 1.0 / (double)v;

	app_begin(&a);
	for (size_t it = 0; it < iters; it++) {
		if (stream)
			touch_others(rank[it % 2], v, lo, hi, udsm_page_size(a.d));
		sweep(rank[(it + 1) % 2], rank[it % 2], off, src, outdeg, v, lo, hi);
		app_barrier(&a);
	}
	app_end(&a);

	if (a.self == 0) {
		double *s[2] = { app_xmalloc(rank_b), app_xmalloc(rank_b) };
		const double *par = rank[iters % 2];
		size_t bad = 0, first = 0;
		double sum = 0;

		for (size_t w = 0; w < v; w++)
			s[0][w] = 1.0 / (double)v;
		double t = app_now();

		for (size_t it = 0; it < iters; it++)
			sweep(s[(it + 1) % 2], s[it % 2], g.off, g.src, g.outdeg, v, 0, v);
		t = app_now() - t;
		if (a.inject) /* one ulp off in one rank */
			rank[iters % 2][v / 2] = nextafter(par[v / 2], 1.0);
		for (size_t w = 0; w < v; w++) {
			if (memcmp(&par[w], &s[iters % 2][w], sizeof(double)) && !bad++)
				first = w;
			sum += par[w];
		}
		if (bad)
			fprintf(stderr, "pagerank: %zu ranks differ, first %zu: %.17g, serial %.17g\n",
				bad, first, par[first], s[iters % 2][first]);
		/* No dangling vertex: the ranks must still sum to 1 (to rounding). */
		if (fabs(sum - 1.0) > 1e-6) {
			fprintf(stderr, "pagerank: ranks sum to %.17g, not 1\n", sum);
			bad++;
		}
		app_verdict(&a, t, bad == 0);
		free(s[0]);
		free(s[1]);
		free(g.off);
		free(g.src);
		free(g.outdeg);
	}
	return app_finish(&a);
}
