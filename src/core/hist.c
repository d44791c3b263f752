/* SPDX-License-Identifier: MIT */
/*
 * hist.c - latency histograms (see hist.h).
 */
#include "core/hist.h"

#include <string.h>

#define LD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define ST(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

unsigned hist_bucket(uint64_t ns)
{
	uint64_t us = ns / 1000u;
	unsigned b;

	if (!us)
		return 0;
	b = 64u - (unsigned)__builtin_clzll(us); /* us in [2^(b-1), 2^b) */
	return b < UDSM_LAT_BUCKETS - 1 ? b : UDSM_LAT_BUCKETS - 1;
}

uint64_t hist_bucket_lo_us(unsigned b)
{
	return b ? (uint64_t)1 << (b - 1) : 0;
}

uint64_t hist_bucket_hi_us(unsigned b)
{
	return b < UDSM_LAT_BUCKETS - 1 ? (uint64_t)1 << b : UINT64_MAX;
}

/* Single writer: plain load + store of each field (no locked read-modify-write). */
void hist_add(struct udsm_latency *h, uint64_t ns)
{
	unsigned b = hist_bucket(ns);

	ST(h->buckets[b], LD(h->buckets[b]) + 1);
	ST(h->sum_ns, LD(h->sum_ns) + ns);
	if (ns > LD(h->max_ns))
		ST(h->max_ns, ns);
	ST(h->count, LD(h->count) + 1);
}

/* Several writers: locked read-modify-writes, and the maximum by compare-and-swap. */
void hist_add_shared(struct udsm_latency *h, uint64_t ns)
{
	uint64_t max = LD(h->max_ns);

	__atomic_fetch_add(&h->buckets[hist_bucket(ns)], 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&h->sum_ns, ns, __ATOMIC_RELAXED);
	while (ns > max && !__atomic_compare_exchange_n(&h->max_ns, &max, ns, 1,
							 __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	__atomic_fetch_add(&h->count, 1, __ATOMIC_RELAXED);
}

void hist_read(const struct udsm_latency *h, struct udsm_latency *out)
{
	out->count = LD(h->count);
	out->sum_ns = LD(h->sum_ns);
	out->max_ns = LD(h->max_ns);
	for (unsigned b = 0; b < UDSM_LAT_BUCKETS; b++)
		out->buckets[b] = LD(h->buckets[b]);
}

void hist_sub(struct udsm_latency *r, const struct udsm_latency *a, const struct udsm_latency *b)
{
	r->count = a->count - b->count;
	r->sum_ns = a->sum_ns - b->sum_ns;
	r->max_ns = a->max_ns;
	for (unsigned i = 0; i < UDSM_LAT_BUCKETS; i++)
		r->buckets[i] = a->buckets[i] - b->buckets[i];
}

double hist_quantile_us(const struct udsm_latency *h, double q)
{
	uint64_t total = 0, seen = 0;
	double max_us = (double)h->max_ns / 1000.0;

	for (unsigned b = 0; b < UDSM_LAT_BUCKETS; b++)
		total += h->buckets[b];
	if (!total)
		return 0;
	if (q < 0)
		q = 0;
	if (q > 1)
		q = 1;
	double rank = q * (double)total; /* samples at or below the quantile */

	for (unsigned b = 0; b < UDSM_LAT_BUCKETS; b++) {
		uint64_t n = h->buckets[b];

		if (!n)
			continue;
		if ((double)(seen + n) >= rank) {
			double lo = (double)hist_bucket_lo_us(b);
			double hi = b == UDSM_LAT_BUCKETS - 1 ? max_us
							       : (double)hist_bucket_hi_us(b);
			double v = lo + (hi - lo) * ((rank - (double)seen) / (double)n);

			if (max_us > 0 && v > max_us)
				v = max_us;
			return v;
		}
		seen += n;
	}
	return max_us;
}
