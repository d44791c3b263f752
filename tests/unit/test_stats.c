/* SPDX-License-Identifier: MIT */
/*
 * test_stats.c - unit tests of the statistics core: latency histograms (core/hist.c), the
 * written-range encoding and the writer's copies (core/written.c), and the hot-page sketch
 * with its false-sharing verdicts (core/hot.c).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/hist.h"
#include "core/hot.h"
#include "core/written.h"

#define PS 4096u

/* ------------------------------------------------------------------------------------------
 * Histograms.
 */

static void test_hist_buckets(void **state)
{
	(void)state;
	assert_int_equal(hist_bucket(0), 0);
	assert_int_equal(hist_bucket(999), 0);      /* < 1 us */
	assert_int_equal(hist_bucket(1000), 1);     /* [1, 2) */
	assert_int_equal(hist_bucket(1999), 1);
	assert_int_equal(hist_bucket(2000), 2);     /* [2, 4) */
	assert_int_equal(hist_bucket(3999), 2);
	assert_int_equal(hist_bucket(4000), 3);
	assert_int_equal(hist_bucket(1000000), 10); /* 1 ms = 1000 us in [512, 1024) */
	assert_int_equal(hist_bucket(UINT64_MAX), UDSM_LAT_BUCKETS - 1);
	for (unsigned b = 1; b < UDSM_LAT_BUCKETS - 1; b++) {
		/* Each bucket's bounds map back to it; buckets tile the line. */
		assert_int_equal(hist_bucket(hist_bucket_lo_us(b) * 1000), b);
		assert_int_equal(hist_bucket(hist_bucket_hi_us(b) * 1000 - 1), b);
		assert_int_equal(hist_bucket_hi_us(b), hist_bucket_lo_us(b + 1));
	}
	assert_true(hist_bucket_hi_us(UDSM_LAT_BUCKETS - 1) == UINT64_MAX);
}

static void test_hist_add_sum(void **state)
{
	struct udsm_latency h, r, a, d;
	uint64_t sum = 0, total = 0, max = 0;

	(void)state;
	memset(&h, 0, sizeof(h));
	for (uint64_t i = 0; i < 5000; i++) {
		uint64_t ns = (i * 7919u) % 3000000u; /* 0 .. 3 ms */

		hist_add(&h, ns);
		sum += ns;
		if (ns > max)
			max = ns;
	}
	hist_read(&h, &r);
	for (unsigned b = 0; b < UDSM_LAT_BUCKETS; b++)
		total += r.buckets[b];
	assert_int_equal(total, 5000);
	assert_int_equal(r.count, 5000);
	assert_int_equal(r.sum_ns, sum);
	assert_int_equal(r.max_ns, max);

	/* A window: the difference of two snapshots. */
	a = r;
	hist_add(&h, 5000);
	hist_add(&h, 5500);
	hist_read(&h, &r);
	hist_sub(&d, &r, &a);
	assert_int_equal(d.count, 2);
	assert_int_equal(d.buckets[hist_bucket(5000)], 2);
	assert_int_equal(d.sum_ns, 10500);
}

static void test_hist_quantiles(void **state)
{
	struct udsm_latency h;

	(void)state;
	memset(&h, 0, sizeof(h));
	assert_true(hist_quantile_us(&h, 0.5) == 0);
	/* 90 samples of 10 us, 10 of 100 us. */
	for (int i = 0; i < 90; i++)
		hist_add(&h, 10000);
	for (int i = 0; i < 10; i++)
		hist_add(&h, 100000);
	double p50 = hist_quantile_us(&h, 0.5), p99 = hist_quantile_us(&h, 0.99);

	assert_true(p50 >= 8 && p50 < 16);     /* in 10's bucket [8, 16) */
	assert_true(p99 >= 64 && p99 <= 100);  /* in [64, 128), capped by the max */
	assert_true(hist_quantile_us(&h, 1.0) <= 100.0);
	assert_true(hist_quantile_us(&h, 0.0) >= 0);
}

/* ------------------------------------------------------------------------------------------
 * Written ranges.
 */

static void test_warg_fine(void **state)
{
	static uint8_t a[PS], b[PS];
	struct wr_range r[8];
	uint64_t w;

	(void)state;
	memset(a, 0x11, PS);
	memcpy(b, a, PS);
	w = warg_diff(a, b, PS);
	assert_true(warg_known(w));
	assert_false(warg_changed(w));
	assert_int_equal(warg_ranges(w, PS, r, 8), 0);

	b[8] = 0; /* word 1 */
	b[3000] ^= 1; /* word 375: too far for one fine window with word 1 */
	w = warg_diff(a, b, PS);
	assert_int_equal(WARG_MODE(w), WARG_COARSE);
	assert_int_equal(warg_ranges(w, PS, r, 8), 2);
	assert_int_equal(r[0].start, 0);
	assert_int_equal(r[0].end, 128);
	assert_int_equal(r[1].start, 2944); /* chunk 23 of 128 bytes */
	assert_int_equal(r[1].end, 3072);

	memcpy(b, a, PS);
	b[1000] ^= 0xff;                    /* word 125 */
	b[1016] ^= 0xff;                    /* word 127 */
	b[1017] ^= 0xff;
	w = warg_diff(a, b, PS);
	assert_int_equal(WARG_MODE(w), WARG_FINE);
	assert_true(warg_changed(w));
	assert_int_equal(warg_ranges(w, PS, r, 8), 2);
	assert_int_equal(r[0].start, 1000);
	assert_int_equal(r[0].end, 1008);
	assert_int_equal(r[1].start, 1016);
	assert_int_equal(r[1].end, 1024);

	/* Adjacent words merge into one range; NULL reads as zeros. */
	memset(b, 0, PS);
	b[0] = b[8] = b[16] = 1;
	w = warg_diff(NULL, b, PS);
	assert_int_equal(warg_ranges(w, PS, r, 8), 1);
	assert_int_equal(r[0].start, 0);
	assert_int_equal(r[0].end, 24);
	assert_false(warg_known(0));
	assert_false(warg_known((uint64_t)3 << 62));
}

static void test_warg_overlap(void **state)
{
	static uint8_t z[PS], b[PS];
	uint64_t w0, w1, w2, big;

	(void)state;
	memset(b, 0, PS);
	b[0] = 1; /* bytes [0, 8) */
	w0 = warg_diff(z, b, PS);
	memset(b, 0, PS);
	b[8] = 1; /* [8, 16): same cache line, other word */
	w1 = warg_diff(z, b, PS);
	memset(b, 0, PS);
	b[4] = 1; /* [0, 8) again */
	w2 = warg_diff(z, b, PS);
	memset(b, 0xff, PS); /* everything: coarse */
	big = warg_diff(z, b, PS);
	assert_false(warg_overlap(w0, w1, PS));
	assert_true(warg_overlap(w0, w2, PS));
	assert_true(warg_overlap(w1, big, PS));
	assert_false(warg_overlap(w0, 0, PS)); /* unknown never overlaps */
}

static void test_wtrack(void **state)
{
	struct wtrack *w;
	static uint8_t page[PS], now[PS];
	struct wr_range r[4];
	uint64_t a;

	(void)state;
	assert_int_equal(wtrack_create(PS, &w), 0);
	memset(page, 7, PS);
	/* First acquisition: not tracked yet. */
	wtrack_installed(w, 5, page);
	memcpy(now, page, PS);
	now[100] = 0;
	assert_true(wtrack_written(w, 5, now) == WARG_UNKNOWN);
	/* Second: tracked; what changed since the install comes back. */
	wtrack_installed(w, 5, page);
	a = wtrack_written(w, 5, now);
	assert_int_equal(warg_ranges(a, PS, r, 4), 1);
	assert_int_equal(r[0].start, 96);
	assert_int_equal(r[0].end, 104);
	/* Kept Shared, then upgraded: the base is what it sent, so nothing new changed. */
	a = wtrack_written(w, 5, now);
	assert_true(warg_known(a));
	assert_false(warg_changed(a));
	/* A zero install (NULL) is a base of zeros. */
	wtrack_installed(w, 5, NULL);
	memset(now, 0, PS);
	now[PS - 1] = 1;
	a = wtrack_written(w, 5, now);
	assert_int_equal(warg_ranges(a, PS, r, 4), 1);
	assert_int_equal(r[0].start, PS - 8);
	/* Another page never installed here is unknown. */
	assert_true(wtrack_written(w, 6, now) == WARG_UNKNOWN);
	wtrack_destroy(w);
	assert_int_equal(wtrack_create(100, &w), -EINVAL);
}

/* ------------------------------------------------------------------------------------------
 * Hot pages.
 */

static uint64_t arg_word(unsigned word)
{
	static uint8_t z[PS], b[PS];

	memset(b, 0, PS);
	b[word * 8] = 1;
	return warg_diff(z, b, PS);
}

static void test_hot_false_sharing(void **state)
{
	static struct hot h;
	struct udsm_hot_page top[4];
	uint64_t a0 = arg_word(0), a1 = arg_word(1);

	(void)state;
	hot_init(&h, PS);
	/* Page 9: nodes 0 and 2 take turns writing words 0 and 1. */
	hot_moved(&h, 9, HOT_NONE, 0, 0); /* first write miss: from the home copy */
	for (int i = 0; i < 10; i++) {
		hot_moved(&h, 9, 0, 2, a0);
		hot_moved(&h, 9, 2, 0, a1);
	}
	/* Page 3: nodes 1 and 2 increment one counter (true sharing). */
	for (int i = 0; i < 5; i++) {
		hot_moved(&h, 3, 1, 2, a0);
		hot_moved(&h, 3, 2, 1, a0);
	}
	/* Page 4: read by three nodes, written by none. */
	for (unsigned n = 0; n < 3; n++)
		hot_moved(&h, 4, HOT_NONE, n, 0);

	assert_int_equal(hot_top(&h, top, 4), 3);
	assert_int_equal(top[0].page, 9);
	assert_int_equal(top[0].transfers, 21);
	assert_int_equal(top[0].transfers_err, 0);
	assert_int_equal(top[0].nodes, 0x5);
	assert_int_equal(top[0].writers, 0x5);
	assert_int_equal(top[0].false_sharing, 1);
	assert_int_equal(top[0].disjoint, 19);
	assert_int_equal(top[0].overlap, 0);
	assert_int_equal(top[0].nranges, 2);
	assert_int_equal(top[0].ranges[0].node, 0);
	assert_int_equal(top[0].ranges[0].start, 0);
	assert_int_equal(top[0].ranges[0].end, 8);
	assert_int_equal(top[0].ranges[1].node, 2);
	assert_int_equal(top[0].ranges[1].start, 8);
	assert_int_equal(top[0].ranges[1].end, 16);

	assert_int_equal(top[1].page, 3);
	assert_int_equal(top[1].false_sharing, 0);
	assert_int_equal(top[1].overlap, 9);
	assert_int_equal(top[2].page, 4);
	assert_int_equal(top[2].writers, 0);
	assert_int_equal(top[2].nodes, 0x7);
	assert_int_equal(top[2].false_sharing, 0);
	assert_int_equal(hot_false_shared(&h), 1);
	assert_int_equal(h.transfers, 21 + 10 + 3);

	/* Unknown (old peer) and "known, unchanged" reports do not make a writer. */
	hot_moved(&h, 4, 1, 2, 0);
	hot_moved(&h, 4, 2, 1, (uint64_t)WARG_COARSE << 62);
	assert_int_equal(hot_top(&h, top, 4), 3);
	assert_int_equal(top[2].page, 4);
	assert_int_equal(top[2].writers, 0);
	assert_int_equal(top[2].disjoint + top[2].overlap, 0);
}

/* A scan that moves a million distinct pages once each must not push out the page that moved
 * most: the sketch keeps heavy hitters in bounded memory. */
static void test_hot_bounded(void **state)
{
	static struct hot h;
	struct udsm_hot_page top[3];

	(void)state;
	hot_init(&h, PS);
	for (uint64_t p = 0; p < 1000000; p++) {
		hot_moved(&h, p + 100, HOT_NONE, 1, 0);
		if (p % 100 == 0)
			hot_moved(&h, 7, 0, 1, arg_word(2));
	}
	assert_int_equal(hot_top(&h, top, 3), 3);
	assert_int_equal(top[0].page, 7);
	assert_true(top[0].transfers >= 10000);
	assert_true(top[0].transfers - top[0].transfers_err <= 10000);
	assert_true(h.replaced > 0);
	assert_true(sizeof(h) < 128 * 1024); /* independent of the region's size */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hist_buckets),
		cmocka_unit_test(test_hist_add_sum),
		cmocka_unit_test(test_hist_quantiles),
		cmocka_unit_test(test_warg_fine),
		cmocka_unit_test(test_warg_overlap),
		cmocka_unit_test(test_wtrack),
		cmocka_unit_test(test_hot_false_sharing),
		cmocka_unit_test(test_hot_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
