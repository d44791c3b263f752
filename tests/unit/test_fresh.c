/* SPDX-License-Identifier: MIT */
/*
 * test_fresh.c - the hold on pages just handed to a waiting thread (src/core/fresh.c): how
 * long it lasts, when a watched page's store ends it early and when it does not, and that the
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
 * a page handed over writable is held longer while it stays Modified, and only then. */
static void test_until(void **state)
{
	(void)state;
	assert_int_equal(fresh_until(&f, 7, false), 0);
	assert_int_equal(fresh_until(&f, 7, true), 0);
	assert_false(fresh_watched(&f, 7));
	fresh_mark(&f, 7, 1000 * US, 20 * US, false, 0);
	assert_int_equal(fresh_until(&f, 7, false), 1020 * US);
	assert_int_equal(fresh_until(&f, 7, true), 1020 * US); /* read-only: never longer */
	assert_int_equal(fresh_until(&f, 7 + FRESH_SLOTS, false), 0);
	fresh_mark(&f, 7 + FRESH_SLOTS, 1005 * US, 20 * US, false, 0);
	assert_int_equal(fresh_until(&f, 7, false), 0);
	assert_int_equal(fresh_until(&f, 7 + FRESH_SLOTS, false), 1025 * US);
	/* Page 0 is a page like any other (an empty slot is UINT64_MAX, not 0). */
	assert_int_equal(fresh_until(&f, 0, false), 0);
	fresh_mark(&f, 0, 5 * US, 20 * US, false, 0);
	assert_int_equal(fresh_until(&f, 0, false), 25 * US);
	fresh_mark(&f, 0, 5 * US, 20 * US, true, 42);
	assert_int_equal(fresh_until(&f, 0, true), 5 * US + FRESH_WATCH_MAX * 20 * US);
	assert_int_equal(fresh_until(&f, 0, false), 25 * US); /* no longer Modified */
}

/* A page handed over to be read is never released by looks, whatever its bytes do. */
static void test_read_only_held(void **state)
{
	(void)state;
	fresh_mark(&f, 3, 0, 20 * US, false, 1);
	assert_false(fresh_watched(&f, 3));
	for (uint64_t s = 0; s < 10; s++)
		assert_false(fresh_look(&f, 3, s));
}

/* Handed over writable with digest 100: released by the first look that finds it changed. */
static void test_store_ends_hold(void **state)
{
	(void)state;
	fresh_mark(&f, 5, 0, 20 * US, true, 100);
	assert_true(fresh_watched(&f, 5));
	assert_false(fresh_look(&f, 5, 100)); /* not written yet */
	assert_false(fresh_look(&f, 5, 100));
	assert_true(fresh_look(&f, 5, 101)); /* written */
	assert_true(fresh_look(&f, 5, 0));   /* to any digest, 0 included */
	assert_false(fresh_look(&f, 5, 100)); /* written back to the bytes it was handed over with */
	/* A new hand-over starts from its own bytes. */
	fresh_mark(&f, 5, 0, 20 * US, true, 101);
	assert_false(fresh_look(&f, 5, 101));
	assert_true(fresh_look(&f, 5, 100));
	/* Handed over read-only afterwards: no longer watched. */
	fresh_mark(&f, 5, 0, 20 * US, false, 0);
	assert_false(fresh_watched(&f, 5));
	assert_false(fresh_look(&f, 5, 7));
}

/* A watched page is due for a look at once, then at most once every FRESH_LOOK_NS; an
 * unwatched page, or one whose slot another page took, never. */
static void test_look_due(void **state)
{
	(void)state;
	fresh_mark(&f, 9, 1000 * US, 20 * US, true, 1);
	assert_true(fresh_look_due(&f, 9, 1001 * US));
	assert_false(fresh_look_due(&f, 9, 1001 * US));
	assert_false(fresh_look_due(&f, 9, 1001 * US + FRESH_LOOK_NS - 1));
	assert_true(fresh_look_due(&f, 9, 1001 * US + FRESH_LOOK_NS));
	assert_false(fresh_look_due(&f, 9, 1001 * US + FRESH_LOOK_NS));
	/* A new hand-over may be looked at at once. */
	fresh_mark(&f, 9, 1002 * US, 20 * US, true, 1);
	assert_true(fresh_look_due(&f, 9, 1002 * US));
	fresh_mark(&f, 9, 1003 * US, 20 * US, false, 0);
	assert_false(fresh_look_due(&f, 9, 1010 * US));
	fresh_mark(&f, 9 + FRESH_SLOTS, 1004 * US, 20 * US, true, 1);
	assert_false(fresh_look_due(&f, 9, 1020 * US));
}

/* Looks at a page whose slot another page took say nothing, even if that one is watched. */
static void test_other_page(void **state)
{
	(void)state;
	fresh_mark(&f, 11, 0, 20 * US, true, 1);
	fresh_mark(&f, 11 + FRESH_SLOTS, 0, 20 * US, true, 1);
	assert_false(fresh_watched(&f, 11));
	assert_true(fresh_watched(&f, 11 + FRESH_SLOTS));
	assert_false(fresh_look(&f, 11, 2));
	assert_true(fresh_look(&f, 11 + FRESH_SLOTS, 2));
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
	/* Changes a plain sum of words would miss: +1 and -1 in two words of one lane, and the
	 * reverse in another; and ones an exclusive or alone would miss: a bit pair moved. */
	memcpy(b, a, PS);
	for (unsigned w = 0; w < 8; w++) {
		uint64_t x, y;

		memcpy(b, a, PS);
		memcpy(&x, b + 8 * w, 8);
		memcpy(&y, b + 8 * (w + 8), 8);
		x++, y--;
		memcpy(b + 8 * w, &x, 8);
		memcpy(b + 8 * (w + 8), &y, 8);
		assert_int_not_equal(fresh_digest(b, PS), base);
	}
	memcpy(b, a, PS);
	{
		uint64_t x, y;

		memcpy(&x, b, 8);
		memcpy(&y, b + 64, 8);
		x ^= 1, y ^= 1; /* the same bit flipped in two words of one lane: xor unchanged */
		memcpy(b, &x, 8);
		memcpy(b + 64, &y, 8);
		if ((x ^ 1) + (y ^ 1) != x + y) /* unless the sum happens to stay the same */
			assert_int_not_equal(fresh_digest(b, PS), base);
	}
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
		cmocka_unit_test_setup(test_look_due, setup),
		cmocka_unit_test_setup(test_other_page, setup),
		cmocka_unit_test_setup(test_digest, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
