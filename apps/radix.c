/* SPDX-License-Identifier: MIT */
/*
 * radix - parallel histogram and LSD radix sort of 32-bit keys in the region.
 *
 *   udsm-run -n NODES radix [--keys N] [--passes P] [--reduce lock|node]
 *                           [--scatter direct|staged]  (defaults 4194304, 4, lock, direct)
 *
 * The keys are split in contiguous blocks; each node generates its own block. A pass sorts
 * stably by one 8-bit digit (pass p: bits 8p..8p+7), from one shared array into the other:
 *   1. histogram: every node counts the digits of its block privately and publishes its
 *      counts in its own row of a shared nodes x 256 table; the global histogram (256 shared
 *      counters) is built either
 *        lock: under one udsm_lock() named by it, each node adds its counts in - the classic
 *              shared histogram, every node writing every counter;
 *        node: node 0 adds up the rows after the barrier;
 *   2. barrier; every node computes where its keys of each digit go (the global prefix of
 *      the smaller digits plus the counts of the lower nodes for the same digit);
 *   3. scatter: every node writes its keys to those places in the other array. The 256 x
 *      nodes runs interleave the nodes' writes through the whole array, so the pages at run
 *      boundaries are written by two nodes (heavy write sharing, false sharing included),
 *      and the next pass reads, in its block, keys every node wrote. Two ways:
 *        direct: key by key, as a pthreads program does: while both nodes write near a run
 *                boundary, its page goes back and forth for every few keys;
 *        staged: the node first sorts its block by the digit in private memory, then copies
 *                each digit's run in one go (memcpy): a boundary page moves a few times;
 *   4. barrier.
 * Check: node 0 sorts the same keys serially with the same passes; the sorted array and the
 * last pass's global histogram must be equal (integers: exact). Sortedness is checked too.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"

#define BUCKETS 256

static uint32_t gen_key(size_t i)
{
	return (uint32_t)app_mix(0x4ad1 ^ (uint64_t)i);
}

static unsigned digit(uint32_t key, unsigned pass)
{
	return (key >> (8 * pass)) & (BUCKETS - 1);
}

static void count(const uint32_t *keys, size_t lo, size_t hi, unsigned pass, uint64_t *cnt)
{
	memset(cnt, 0, BUCKETS * sizeof(*cnt));
	for (size_t i = lo; i < hi; i++)
		cnt[digit(keys[i], pass)]++;
}

/* Write keys [lo, hi) of @src to @dst; @pos[b] is where the next key of digit b goes. */
static void scatter(uint32_t *restrict dst, const uint32_t *restrict src, size_t lo, size_t hi,
		    unsigned pass, uint64_t *pos)
{
	for (size_t i = lo; i < hi; i++)
		dst[pos[digit(src[i], pass)]++] = src[i];
}

/* The staged scatter: keys [lo, hi) of @src sorted by the digit into @tmp (private), then
 * each digit's run copied to its place; @cnt are the block's counts. */
static void scatter_staged(uint32_t *restrict dst, const uint32_t *restrict src, size_t lo,
			   size_t hi, unsigned pass, const uint64_t *pos, const uint64_t *cnt,
			   uint32_t *restrict tmp)
{
	uint64_t at[BUCKETS], o = 0;

	for (unsigned b = 0; b < BUCKETS; b++) {
		at[b] = o;
		o += cnt[b];
	}
	for (size_t i = lo; i < hi; i++)
		tmp[at[digit(src[i], pass)]++] = src[i];
	for (unsigned b = 0; b < BUCKETS; b++)
		if (cnt[b])
			memcpy(dst + pos[b], tmp + at[b] - cnt[b], cnt[b] * sizeof(*dst));
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "keys", required_argument, NULL, 'k' },
		{ "passes", required_argument, NULL, 'p' },
		{ "reduce", required_argument, NULL, 'r' },
		{ "scatter", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	size_t n = 1 << 22, passes = 4;
	bool by_lock = true, staged = false;
	struct app a = { 0 };
	int c;

	while ((c = getopt_long(argc, argv, "k:p:r:s:", opts, NULL)) != -1) {
		switch (c) {
		case 'k':
			n = app_arg("--keys", optarg);
			break;
		case 'p':
			passes = app_arg("--passes", optarg);
			break;
		case 'r':
			if (strcmp(optarg, "lock") && strcmp(optarg, "node")) {
				fprintf(stderr, "radix: --reduce lock or node\n");
				return 2;
			}
			by_lock = !strcmp(optarg, "lock");
			break;
		case 's':
			if (strcmp(optarg, "direct") && strcmp(optarg, "staged")) {
				fprintf(stderr, "radix: --scatter direct or staged\n");
				return 2;
			}
			staged = !strcmp(optarg, "staged");
			break;
		default:
			fprintf(stderr, "usage: radix [--keys N] [--passes P] [--reduce lock|node] "
					"[--scatter direct|staged]\n");
			return 2;
		}
	}
	if (passes > 4) {
		fprintf(stderr, "radix: at most 4 passes of 8 bits for 32-bit keys\n");
		return 2;
	}
	size_t keys_b = n * sizeof(uint32_t), row_b = BUCKETS * sizeof(uint64_t);

	app_open(&a, "radix", 2 * keys_b + (UDSM_MAX_NODES + 2) * row_b);
	snprintf(a.args, sizeof(a.args), "keys=%zu,passes=%zu,reduce=%s,scatter=%s", n, passes,
		 by_lock ? "lock" : "node", staged ? "staged" : "direct");

	uint32_t *arr[2] = { app_coalloc(&a, keys_b, UDSM_PLACE_BLOCK),
			     app_coalloc(&a, keys_b, UDSM_PLACE_BLOCK) };
	uint64_t *rows = app_coalloc(&a, a.nodes * row_b, UDSM_PLACE_BLOCK); /* per-node counts */
	/* The global histogram, two of them: pass p adds into hist[p % 2] while node 0 zeroes
	 * the other one, which everybody finished reading in pass p - 1. */
	uint64_t *hist = app_coalloc(&a, 2 * row_b, 0);
	uint64_t cnt[BUCKETS], pos[BUCKETS], last[BUCKETS];
	size_t lo, hi;

	app_block(n, a.nodes, a.self, &lo, &hi);
	uint32_t *tmp = staged ? app_xmalloc((hi - lo) * sizeof(uint32_t)) : NULL;

	for (size_t i = lo; i < hi; i++)
		arr[0][i] = gen_key(i);

	app_begin(&a);
	for (unsigned p = 0; p < passes; p++) {
		const uint32_t *src = arr[p % 2];
		uint64_t *h = hist + (p % 2) * BUCKETS;

		if (by_lock && a.self == 0)
			memset(hist + ((p + 1) % 2) * BUCKETS, 0, row_b);
		count(src, lo, hi, p, cnt);
		memcpy(rows + a.self * BUCKETS, cnt, row_b);
		if (by_lock) {
			app_lock(&a, h);
			for (unsigned b = 0; b < BUCKETS; b++)
				h[b] += cnt[b];
			app_unlock(&a, h);
		}
		app_barrier(&a);
		if (!by_lock) {
			/* Every node adds the rows up itself (reads only; no third barrier for
			 * node 0 to publish the totals). */
			for (unsigned b = 0; b < BUCKETS; b++) {
				uint64_t t = 0;

				for (unsigned k = 0; k < a.nodes; k++)
					t += rows[k * BUCKETS + b];
				last[b] = t;
			}
		} else {
			memcpy(last, h, row_b);
		}
		/* Where this node's keys of digit b start: all keys of smaller digits, then
		 * the keys of digit b of the nodes below. */
		uint64_t before = 0;

		for (unsigned b = 0; b < BUCKETS; b++) {
			pos[b] = before;
			for (unsigned k = 0; k < a.self; k++)
				pos[b] += rows[k * BUCKETS + b];
			before += last[b];
		}
		if (before != n) {
			fprintf(stderr, "radix node %u: pass %u: histogram counts %llu keys, not %zu\n",
				a.self, p, (unsigned long long)before, n);
			exit(1);
		}
		if (staged)
			scatter_staged(arr[(p + 1) % 2], src, lo, hi, p, pos, cnt, tmp);
		else
			scatter(arr[(p + 1) % 2], src, lo, hi, p, pos);
		app_barrier(&a);
	}
	app_end(&a);

	if (a.self == 0) {
		uint32_t *s[2] = { app_xmalloc(keys_b), app_xmalloc(keys_b) };
		uint64_t scnt[BUCKETS];
		const uint32_t *par = arr[passes % 2];
		size_t bad = 0, first = 0;

		for (size_t i = 0; i < n; i++)
			s[0][i] = gen_key(i);
		double t = app_now();

		for (unsigned p = 0; p < passes; p++) {
			uint64_t at = 0;

			count(s[p % 2], 0, n, p, scnt);
			for (unsigned b = 0; b < BUCKETS; b++) {
				pos[b] = at;
				at += scnt[b];
			}
			scatter(s[(p + 1) % 2], s[p % 2], 0, n, p, pos);
		}
		t = app_now() - t;
		if (a.inject && n > 1) { /* two keys swapped */
			uint32_t x = arr[passes % 2][0];

			arr[passes % 2][0] = arr[passes % 2][n - 1];
			arr[passes % 2][n - 1] = x;
		}
		for (size_t i = 0; i < n; i++)
			if (par[i] != s[passes % 2][i] && !bad++)
				first = i;
		if (bad)
			fprintf(stderr, "radix: %zu keys differ, first at %zu: %#x, serial %#x\n", bad,
				first, par[first], s[passes % 2][first]);
		if (passes && memcmp(scnt, last, sizeof(scnt))) {
			fprintf(stderr, "radix: the last pass's histogram differs from the serial one\n");
			bad++;
		}
		if (passes == 4)
			for (size_t i = 1; i < n; i++)
				if (par[i - 1] > par[i]) {
					fprintf(stderr, "radix: not sorted at %zu\n", i);
					bad++;
					break;
				}
		app_verdict(&a, t, bad == 0);
		free(s[0]);
		free(s[1]);
	}
	free(tmp);
	return app_finish(&a);
}
