/* SPDX-License-Identifier: MIT */
/*
 * kmeans - Lloyd's k-means on integer points in the region.
 *
 *   udsm-run -n NODES kmeans [--points P] [--k K] [--iters I] [--reduce lock|node]
 *                                                   (defaults 1048576, 16, 10, lock)
 *
 * P points of DIM integer coordinates, drawn around K hidden centres, are split in contiguous
 * blocks: each node generates its own block (so it starts Modified there) and assigns its
 * points. The K centroids are shared: node 0 writes them, everybody reads them every
 * iteration. An iteration is
 *   1. every node assigns each of its points to the nearest centroid (ties to the lower
 *      index) and sums its points' coordinates per cluster, privately;
 *   2. the partial sums are reduced into shared sums, either
 *        lock: under one udsm_lock() named by the shared sums, each node adds its partial
 *              sums in (a lock hand-over per node per iteration; the sums' page migrates);
 *        node: each node writes its partial sums to its own slot (its own pages) and node 0
 *              adds the slots up (a page from every node to node 0);
 *   3. barrier; node 0 computes the new centroids (and zeroes the shared sums); barrier.
 * The sums are integers, so their order does not matter: the parallel centroids and
 * assignments must equal node 0's serial reference exactly.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"

#define DIM 4
#define COORD_MAX 1000000

struct sums {
	int64_t sum[DIM];
	int64_t count;
};

static void gen_point(int32_t *p, size_t i, size_t k)
{
	uint64_t c = i % k; /* the hidden centre */

	for (unsigned d = 0; d < DIM; d++) {
		int64_t centre = (int64_t)(app_mix(0xce0 ^ (c * DIM + d)) % (COORD_MAX / 2)) +
				 COORD_MAX / 4;
		int64_t noise = (int64_t)(app_mix(0x7e5 ^ (i * DIM + d)) % (COORD_MAX / 4)) -
				COORD_MAX / 8;

		p[d] = (int32_t)(centre + noise);
	}
}

/* Assign points [lo, hi) to the nearest of @k centroids and add them to @part. */
static void assign(const int32_t *pts, int32_t *label, const double *cent, size_t k, size_t lo,
		   size_t hi, struct sums *part)
{
	memset(part, 0, k * sizeof(*part));
	for (size_t i = lo; i < hi; i++) {
		const int32_t *p = pts + i * DIM;
		size_t best = 0;
		double bestd = 0;

		for (size_t c = 0; c < k; c++) {
			double dist = 0;

			for (unsigned d = 0; d < DIM; d++) {
				double x = (double)p[d] - cent[c * DIM + d];

				dist += x * x;
			}
			if (c == 0 || dist < bestd) {
				bestd = dist;
				best = c;
			}
		}
		label[i] = (int32_t)best;
		for (unsigned d = 0; d < DIM; d++)
			part[best].sum[d] += p[d];
		part[best].count++;
	}
}

static void add_sums(struct sums *to, const struct sums *from, size_t k)
{
	for (size_t c = 0; c < k; c++) {
		for (unsigned d = 0; d < DIM; d++)
			to[c].sum[d] += from[c].sum[d];
		to[c].count += from[c].count;
	}
}

/* New centroids from the sums; an empty cluster keeps its centroid. */
static void update(double *cent, const struct sums *s, size_t k)
{
	for (size_t c = 0; c < k; c++)
		if (s[c].count)
			for (unsigned d = 0; d < DIM; d++)
				cent[c * DIM + d] = (double)s[c].sum[d] / (double)s[c].count;
}

/* The first k points are the initial centroids. */
static void init_centroids(double *cent, size_t k)
{
	int32_t p[DIM];

	for (size_t c = 0; c < k; c++) {
		gen_point(p, c * 7919 + 1, k);
		for (unsigned d = 0; d < DIM; d++)
			cent[c * DIM + d] = p[d];
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "points", required_argument, NULL, 'p' },
		{ "k", required_argument, NULL, 'k' },
		{ "iters", required_argument, NULL, 'i' },
		{ "reduce", required_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 },
	};
	size_t np = 1 << 20, k = 16, iters = 10;
	bool by_lock = true;
	struct app a = { 0 };
	int c;

	while ((c = getopt_long(argc, argv, "p:k:i:r:", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			np = app_arg("--points", optarg);
			break;
		case 'k':
			k = app_arg("--k", optarg);
			break;
		case 'i':
			iters = app_arg("--iters", optarg);
			break;
		case 'r':
			if (strcmp(optarg, "lock") && strcmp(optarg, "node")) {
				fprintf(stderr, "kmeans: --reduce lock or node\n");
				return 2;
			}
			by_lock = !strcmp(optarg, "lock");
			break;
		default:
			fprintf(stderr, "usage: kmeans [--points P] [--k K] [--iters I] "
					"[--reduce lock|node]\n");
			return 2;
		}
	}
	if (k > np) {
		fprintf(stderr, "kmeans: --k must not exceed --points\n");
		return 2;
	}
	size_t pts_b = np * DIM * sizeof(int32_t), lab_b = np * sizeof(int32_t);
	size_t cent_b = k * DIM * sizeof(double), sums_b = k * sizeof(struct sums);

	app_open(&a, "kmeans", pts_b + lab_b + cent_b + (UDSM_MAX_NODES + 1) * (sums_b + 4096));
	snprintf(a.args, sizeof(a.args), "points=%zu,k=%zu,iters=%zu,reduce=%s", np, k, iters,
		 by_lock ? "lock" : "node");

	/* Points and labels homed with the node that owns them; what node 0 writes on node 0. */
	int32_t *pts = app_coalloc(&a, pts_b, UDSM_PLACE_BLOCK);
	int32_t *label = app_coalloc(&a, lab_b, UDSM_PLACE_BLOCK);
	double *cent = app_coalloc(&a, cent_b, 0);
	struct sums *total = app_coalloc(&a, sums_b, 0);
	/* One slot per node, each on its own pages, for the reduction by node. */
	size_t slot_b = (sums_b + 4095) / 4096 * 4096;
	char *slots = by_lock ? NULL : app_coalloc(&a, a.nodes * slot_b, UDSM_PLACE_BLOCK);
	struct sums *part = app_xmalloc(sums_b);
	size_t lo, hi;

	app_block(np, a.nodes, a.self, &lo, &hi);
	for (size_t i = lo; i < hi; i++)
		gen_point(pts + i * DIM, i, k);
	if (a.self == 0)
		init_centroids(cent, k);

	app_begin(&a);
	for (size_t it = 0; it < iters; it++) {
		assign(pts, label, cent, k, lo, hi, part);
		if (by_lock) {
			app_lock(&a, total);
			add_sums(total, part, k);
			app_unlock(&a, total);
		} else {
			memcpy(slots + a.self * slot_b, part, sums_b);
		}
		app_barrier(&a);
		if (a.self == 0) {
			if (!by_lock) {
				memset(total, 0, sums_b);
				for (unsigned n = 0; n < a.nodes; n++)
					add_sums(total, (struct sums *)(slots + n * slot_b), k);
			}
			update(cent, total, k);
			memset(total, 0, sums_b);
		}
		app_barrier(&a);
	}
	app_end(&a);

	if (a.self == 0) {
		int32_t *sp = app_xmalloc(pts_b), *sl = app_xmalloc(lab_b);
		double *sc = app_xmalloc(cent_b);
		size_t bad = 0;

		for (size_t i = 0; i < np; i++)
			gen_point(sp + i * DIM, i, k);
		init_centroids(sc, k);
		double t = app_now();

		for (size_t it = 0; it < iters; it++) {
			assign(sp, sl, sc, k, 0, np, part);
			update(sc, part, k);
		}
		t = app_now() - t;
		if (a.inject) /* one point in another cluster */
			label[np / 2] = (int32_t)((label[np / 2] + 1) % k);
		/* Integer sums: exact, whatever the order of the reduction. */
		if (memcmp(sc, cent, cent_b)) {
			fprintf(stderr, "kmeans: centroids differ from the serial ones\n");
			bad++;
		}
		for (size_t i = 0; i < np; i++)
			if (sl[i] != label[i] && !bad++)
				fprintf(stderr, "kmeans: point %zu in cluster %d, serial %d\n", i,
					label[i], sl[i]);
		app_verdict(&a, t, bad == 0);
		free(sp);
		free(sl);
		free(sc);
	}
	free(part);
	return app_finish(&a);
}
