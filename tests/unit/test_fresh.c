/* SPDX-License-Identifier: MIT */
/*
 * test_fresh.c - the hold on pages just handed to a waiting thread (src/core/fresh.c): how
 * long it lasts, when a watched page's stores end it early and when they do not, and that the
 * digest tells changed bytes from unchanged ones.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/fresh.h"

#define US 1000ull
#define PS 4096u

static struct fresh f;

static int setup(void **state)
{
	(void)state;
	fresh_init(&f);
	return 0;
}

/* No hand-over, no hold; a hand-over holds until its end; a page in the same slot takes it;
 * a page handed over writable may be held longer. */
static void test_until(void **state)
{
	(void)state;
	assert_int_equal(fresh_until(&f, 7), 0);
	assert_false(fresh_watched(&f, 7));
	fresh_mark(&f, 7, 1000 * US, 20 * US, false, 0);
	assert_int_equal(fresh_until(&f, 7), 1020 * US);
	assert_int_equal(fresh_until(&f, 7 + FRESH_SLOTS), 0);
	fresh_mark(&f, 7 + FRESH_SLOTS, 1005 * US, 20 * US, false, 0);
	assert_int_equal(fresh_until(&f, 7), 0);
	assert_int_equal(fresh_until(&f, 7 + FRESH_SLOTS), 1025 * US);
	/* Page 0 is a page like any other (an empty slot is UINT64_MAX, not 0). */
	assert_int_equal(fresh_until(&f, 0), 0);
	fresh_mark(&f, 0, 5 * US, 20 * US, false, 0);
	assert_int_equal(fresh_until(&f, 0), 25 * US);
	/* Handed over writable: held until its stores are seen, within FRESH_WATCH_MAX holds. */
	fresh_mark(&f, 0, 5 * US, 20 * US, true, 42);
	assert_int_equal(fresh_until(&f, 0), 5 * US + FRESH_WATCH_MAX * 20 * US);
}

/* A page handed over to be read is never released by looks, whatever its bytes do. */
static void test_read_only_held(void **state)
{
	(void)state;
	fresh_mark(&f, 3, 0, 20 * US, false, 1);
	assert_false(fresh_watched(&f, 3));
	for (uint64_t s = 1; s < 10; s++) {
		assert_false(fresh_look(&f, 3, s));
		assert_false(fresh_look(&f, 3, s));
	}
}

/* Handed over writable with its digest: a change, then the same digest at the next look. */
static void test_store_ends_hold(void **state)
{
	(void)state;
	fresh_mark(&f, 5, 0, 20 * US, true, 100);
	assert_true(fresh_watched(&f, 5));
	assert_false(fresh_look(&f, 5, 100)); /* not written yet */
	assert_false(fresh_look(&f, 5, 100));
	assert_false(fresh_look(&f, 5, 101)); /* written: is it still being written? */
	assert_false(fresh_look(&f, 5, 102)); /* yes */
	assert_true(fresh_look(&f, 5, 102));  /* no: the hold may end */
	/* Written back to the bytes it was handed over with: nothing to tell, held. */
	fresh_mark(&f, 5, 0, 20 * US, true, 100);
	assert_false(fresh_look(&f, 5, 101));
	assert_false(fresh_look(&f, 5, 100));
	assert_false(fresh_look(&f, 5, 100));
	/* Written before the first look: the first look sees the change, the second ends it. */
	fresh_mark(&f, 5, 0, 20 * US, true, 100);
	assert_false(fresh_look(&f, 5, 200));
	assert_true(fresh_look(&f, 5, 200));
}

/* Looks at a page whose slot another page took say nothing. */
static void test_other_page(void **state)
{
	(void)state;
	fresh_mark(&f, 11, 0, 20 * US, true, 1);
	fresh_mark(&f, 11 + FRESH_SLOTS, 0, 20 * US, false, 0);
	assert_false(fresh_watched(&f, 11));
	assert_false(fresh_look(&f, 11, 2));
	assert_false(fresh_look(&f, 11, 2));
}

/* Equal bytes, equal digests (zeros as NULL too); any single changed byte, at any offset and
 * to any other value tried, changes the digest; so does swapping two different words. */
static void test_digest(void **state)
{
	static uint8_t a[PS], b[PS];
	uint64_t base;

	(void)state;
	assert_int_equal(fresh_digest(a, PS), fresh_digest(NULL, PS));
	for (unsigned i = 0; i < PS; i++)
		a[i] = (uint8_t)(i * 131u + 7u);
	memcpy(b, a, PS);
	base = fresh_digest(a, PS);
	assert_int_equal(fresh_digest(b, PS), base);
	assert_int_not_equal(base, fresh_digest(NULL, PS));
	for (unsigned i = 0; i < PS; i++) {
		for (unsigned v = 1; v < 256; v += 37) {
			b[i] = (uint8_t)(a[i] + v);
			assert_int_not_equal(fresh_digest(b, PS), base);
		}
		b[i] = a[i];
	}
	memcpy(b, a + 8, 8); /* words 0 and 1 swapped: they differ */
	memcpy(b + 8, a, 8);
	assert_int_not_equal(fresh_digest(b, PS), base);
	/* An 8-byte counter incremented, as a turn word is. */
	memcpy(b, a, PS);
	for (uint64_t k = 0; k < 1000; k++) {
		uint64_t w;

		memcpy(&w, b + 64, 8);
		w++;
		memcpy(b + 64, &w, 8);
		assert_int_not_equal(fresh_digest(b, PS), base);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_until, setup),
		cmocka_unit_test_setup(test_read_only_held, setup),
		cmocka_unit_test_setup(test_store_ends_hold, setup),
		cmocka_unit_test_setup(test_other_page, setup),
		cmocka_unit_test_setup(test_digest, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
