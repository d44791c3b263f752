/* SPDX-License-Identifier: MIT */
/*
 * test_lock.c - the home side of address-named locks (src/core/lock.c): grants, FIFO order,
 * try requests, release checks, cancel, node loss (robust "owner died" mark), hand-over by
 * export/adopt, and the table's growth with many locks.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/lock.h"

/* Grants the table made, in order. */
#define GMAX 256
struct grants {
	size_t n;
	struct {
		uint64_t off;
		struct lk_who who;
		bool odead;
	} g[GMAX];
};

static void on_grant(void *ctx, uint64_t off, struct lk_who who, bool odead)
{
	struct grants *gs = ctx;

	assert_true(gs->n < GMAX);
	gs->g[gs->n].off = off;
	gs->g[gs->n].who = who;
	gs->g[gs->n].odead = odead;
	gs->n++;
}

static const struct lk_ops ops = { .grant = on_grant };

static struct lk_who W(unsigned node, uint64_t tag)
{
	return (struct lk_who){ .node = node, .tag = tag };
}

static struct lk_table *mk(struct grants *gs)
{
	struct lk_table *t;

	memset(gs, 0, sizeof(*gs));
	assert_int_equal(lk_create(&ops, gs, &t), 0);
	return t;
}

static void ok(const struct lk_table *t)
{
	const char *why = lk_check(t);

	if (why)
		fail_msg("invariant: %s", why);
}

static void test_uncontended(void **state)
{
	struct grants gs;
	struct lk_table *t = mk(&gs);
	bool odead = true;
	struct lk_view v;

	(void)state;
	assert_int_equal(lk_create(NULL, NULL, &t), -EINVAL);
	assert_int_equal(lk_request(t, 100, W(1, 1), false, &odead), LK_GRANTED);
	assert_false(odead);
	lk_get(t, 100, &v);
	assert_true(v.held);
	assert_int_equal(v.holder.node, 1);
	assert_int_equal(lk_count(t), 1);
	/* A second request of the same (node, tag) is a peer's bug. */
	assert_int_equal(lk_request(t, 100, W(1, 1), false, &odead), -EALREADY);
	/* Only the holder releases. */
	assert_int_equal(lk_release(t, 100, W(1, 2), false), -EPERM);
	assert_int_equal(lk_release(t, 100, W(2, 1), false), -EPERM);
	assert_int_equal(lk_release(t, 101, W(1, 1), false), -EPERM);
	assert_int_equal(lk_release(t, 100, W(1, 1), false), 0);
	assert_int_equal(lk_count(t), 0); /* a free lock costs nothing */
	assert_int_equal(gs.n, 0);
	assert_int_equal(lk_release(t, 100, W(1, 1), false), -EPERM);
	ok(t);
	lk_destroy(t);
}

static void test_fifo(void **state)
{
	struct grants gs;
	struct lk_table *t = mk(&gs);
	bool odead;
	struct lk_who who;

	(void)state;
	assert_int_equal(lk_request(t, 8, W(0, 1), false, &odead), LK_GRANTED);
	/* Waiters of several nodes and several tags of one node, interleaved. */
	struct lk_who order[] = { W(2, 7), W(1, 3), W(2, 8), W(0, 2), W(3, 1) };
	for (size_t i = 0; i < 5; i++)
		assert_int_equal(lk_request(t, 8, order[i], false, &odead), LK_QUEUED);
	assert_int_equal(lk_request(t, 8, W(1, 3), false, &odead), -EALREADY);
	assert_true(lk_waiter(t, 8, 4, &who));
	assert_int_equal(who.node, 3);
	assert_false(lk_waiter(t, 8, 5, &who));
	/* Try requests never queue. */
	assert_int_equal(lk_request(t, 8, W(3, 9), true, &odead), LK_BUSY);
	ok(t);
	struct lk_who cur = W(0, 1);
	for (size_t i = 0; i < 5; i++) {
		assert_int_equal(lk_release(t, 8, cur, false), 0);
		assert_int_equal(gs.n, i + 1);
		assert_true(gs.g[i].off == 8);
		assert_int_equal(gs.g[i].who.node, order[i].node);
		assert_true(gs.g[i].who.tag == order[i].tag);
		assert_false(gs.g[i].odead);
		cur = order[i];
		ok(t);
	}
	assert_int_equal(lk_release(t, 8, cur, false), 0);
	assert_int_equal(lk_count(t), 0);
	/* A free lock: a try request gets it. */
	assert_int_equal(lk_request(t, 8, W(3, 9), true, &odead), LK_GRANTED);
	lk_destroy(t);
}

static void test_cancel(void **state)
{
	struct grants gs;
	struct lk_table *t = mk(&gs);
	bool odead;
	struct lk_view v;

	(void)state;
	assert_int_equal(lk_cancel(t, 5, W(1, 1)), -ENOENT);
	assert_int_equal(lk_request(t, 5, W(0, 1), false, &odead), LK_GRANTED);
	assert_int_equal(lk_request(t, 5, W(1, 1), false, &odead), LK_QUEUED);
	assert_int_equal(lk_request(t, 5, W(1, 2), false, &odead), LK_QUEUED);
	assert_int_equal(lk_request(t, 5, W(2, 1), false, &odead), LK_QUEUED);
	assert_int_equal(lk_cancel(t, 5, W(0, 1)), -ENOENT); /* the holder does not wait */
	assert_int_equal(lk_cancel(t, 5, W(2, 1)), 0);       /* the tail */
	ok(t);
	assert_int_equal(lk_cancel(t, 5, W(1, 1)), 0);       /* the head */
	ok(t);
	lk_get(t, 5, &v);
	assert_int_equal(v.queued, 1);
	assert_int_equal(lk_request(t, 5, W(2, 2), false, &odead), LK_QUEUED); /* tail fixed */
	assert_int_equal(lk_release(t, 5, W(0, 1), false), 0);
	assert_int_equal(gs.n, 1);
	assert_true(gs.g[0].who.tag == 2 && gs.g[0].who.node == 1);
	assert_int_equal(lk_release(t, 5, W(1, 2), false), 0);
	assert_true(gs.g[1].who.tag == 2 && gs.g[1].who.node == 2);
	ok(t);
	lk_destroy(t);
}

static void test_node_gone(void **state)
{
	struct grants gs;
	struct lk_table *t = mk(&gs);
	bool odead;
	struct lk_view v;

	(void)state;
	/* Lock 1: node 1 holds, nodes 1 (another thread), 2 and 1 wait. */
	assert_int_equal(lk_request(t, 1, W(1, 1), false, &odead), LK_GRANTED);
	assert_int_equal(lk_request(t, 1, W(1, 2), false, &odead), LK_QUEUED);
	assert_int_equal(lk_request(t, 1, W(2, 1), false, &odead), LK_QUEUED);
	assert_int_equal(lk_request(t, 1, W(1, 3), false, &odead), LK_QUEUED);
	/* Lock 2: node 1 holds, nobody waits. Lock 3: node 2 holds, node 1 waits. */
	assert_int_equal(lk_request(t, 2, W(1, 4), false, &odead), LK_GRANTED);
	assert_int_equal(lk_request(t, 3, W(2, 2), false, &odead), LK_GRANTED);
	assert_int_equal(lk_request(t, 3, W(1, 5), false, &odead), LK_QUEUED);

	assert_int_equal(lk_node_gone(t, 1, true), 2);
	ok(t);
	/* Lock 1 goes to node 2 (never to node 1's other waiters), marked. */
	assert_int_equal(gs.n, 1);
	assert_true(gs.g[0].off == 1 && gs.g[0].who.node == 2 && gs.g[0].odead);
	lk_get(t, 1, &v);
	assert_true(v.held && v.queued == 0 && !v.odead);
	/* Lock 2 is free but remembers the death: its next holder is told. */
	lk_get(t, 2, &v);
	assert_true(!v.held && v.odead);
	assert_int_equal(lk_request(t, 2, W(3, 1), false, &odead), LK_GRANTED);
	assert_true(odead);
	assert_int_equal(lk_release(t, 2, W(3, 1), false), 0);
	assert_int_equal(lk_request(t, 2, W(3, 2), false, &odead), LK_GRANTED);
	assert_false(odead); /* told once */
	/* Lock 3: node 1's waiter is gone. */
	lk_get(t, 3, &v);
	assert_true(v.held && v.holder.node == 2 && v.queued == 0);
	/* A node that left (not died): its lock goes on unmarked. */
	assert_int_equal(lk_request(t, 3, W(3, 3), false, &odead), LK_QUEUED);
	assert_int_equal(lk_node_gone(t, 2, false), 2);
	assert_true(gs.g[gs.n - 1].off == 3 && gs.g[gs.n - 1].who.node == 3 &&
		    !gs.g[gs.n - 1].odead);
	ok(t);
	/* A holder that gives up unfinished (closing) marks the lock too. */
	assert_int_equal(lk_release(t, 3, W(3, 3), true), 0);
	lk_get(t, 3, &v);
	assert_true(!v.held && v.odead);
	ok(t);
	lk_destroy(t);
}

struct xfer {
	struct lk_table *dst;
	int errs;
};

static void emit(void *arg, uint64_t off, struct lk_who who, bool holder, bool odead)
{
	struct xfer *x = arg;

	if (lk_adopt(x->dst, off, who, holder, odead))
		x->errs++;
}

/* lk_prune(): keep the locks at offsets that are multiples of 16. */
static bool keep_even(void *arg, uint64_t off)
{
	(void)arg;
	return off % 16 == 0;
}

static void test_handover(void **state)
{
	struct grants ga, gb;
	struct lk_table *a = mk(&ga), *b = mk(&gb);
	struct xfer x = { .dst = b };
	bool odead;
	struct lk_view v;
	struct lk_who who;

	(void)state;
	for (uint64_t off = 0; off < 300; off++) {
		assert_int_equal(lk_request(a, off * 8, W(off % 4, off + 1), false, &odead),
				 LK_GRANTED);
		for (unsigned k = 0; k < off % 3; k++)
			assert_int_equal(lk_request(a, off * 8, W((off + k + 1) % 4, 1000 + k),
						    false, &odead), LK_QUEUED);
	}
	/* A free lock with the mark: node 3 died holding lock 4000. */
	assert_int_equal(lk_request(a, 4000, W(3, 9), false, &odead), LK_GRANTED);
	lk_node_gone(a, 3, true);
	assert_int_equal(lk_count(a), 301); /* 300 held, 1 free with the mark */
	ok(a);

	struct grants before = ga;
	assert_int_equal(lk_export(a, emit, &x), lk_count(a));
	assert_int_equal(x.errs, 0);
	ok(b);
	assert_int_equal(lk_count(b), lk_count(a));
	for (uint64_t off = 0; off < 300; off++) {
		struct lk_view va;

		lk_get(a, off * 8, &va);
		lk_get(b, off * 8, &v);
		assert_int_equal(v.held, va.held);
		assert_int_equal(v.queued, va.queued);
		assert_int_equal(v.odead, va.odead);
		if (v.held)
			assert_true(v.holder.node == va.holder.node && v.holder.tag == va.holder.tag);
		for (size_t i = 0; i < v.queued; i++) {
			struct lk_who wa;

			assert_true(lk_waiter(a, off * 8, i, &wa));
			assert_true(lk_waiter(b, off * 8, i, &who));
			assert_true(wa.node == who.node && wa.tag == who.tag);
		}
	}
	lk_get(b, 4000, &v);
	assert_true(!v.held && v.odead);
	assert_int_equal(gb.n, 0);
	assert_int_equal(ga.n, before.n);
	size_t before_prune = lk_count(a);
	assert_int_equal(lk_prune(a, keep_even, NULL), before_prune / 2 + (before_prune & 1) - 1);
	ok(a);
	lk_clear(a);
	assert_int_equal(lk_count(a), 0);
	ok(a);

	/* Adopt rules: a second holder, a waiter without an entry, a duplicate. */
	assert_int_equal(lk_adopt(b, 0, W(1, 1), true, false), -EEXIST);
	assert_int_equal(lk_adopt(b, 12345, W(1, 1), false, false), -EINVAL);
	assert_int_equal(lk_adopt(b, 4000, W(LK_NODE_NONE, 0), false, false), -EINVAL);
	lk_get(b, 8, &v);
	assert_int_equal(lk_adopt(b, 8, v.holder, false, false), -EEXIST);
	/* A waiter adopted onto a lock whose holder was gone is granted at once, marked. */
	assert_int_equal(lk_adopt(b, 4000, W(2, 77), false, false), 0);
	assert_int_equal(gb.n, 1);
	assert_true(gb.g[0].off == 4000 && gb.g[0].who.node == 2 && gb.g[0].odead);
	ok(b);
	lk_destroy(a);
	lk_destroy(b);
}

/* Random operations against a model of one lock's holder and queue. */
static void test_random(void **state)
{
	struct grants gs;
	struct lk_table *t = mk(&gs);
	struct {
		bool held;
		struct lk_who holder;
		struct lk_who q[64];
		size_t nq;
	} m[8];
	uint64_t x = 12345, tag = 1;

	(void)state;
	memset(m, 0, sizeof(m));
	for (int step = 0; step < 200000; step++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		unsigned l = x % 8, op = (x >> 8) % 10, node = (x >> 16) % 5;
		bool odead;

		gs.n = 0;
		if (op < 5) { /* request */
			bool try = op == 4;
			struct lk_who w = W(node, tag++);
			int r = lk_request(t, l, w, try, &odead);

			if (!m[l].held) {
				assert_int_equal(r, LK_GRANTED);
				m[l].held = true;
				m[l].holder = w;
			} else if (try) {
				assert_int_equal(r, LK_BUSY);
			} else if (m[l].nq < 64) {
				assert_int_equal(r, LK_QUEUED);
				m[l].q[m[l].nq++] = w;
			} else {
				assert_int_equal(r, LK_QUEUED);
				assert_int_equal(lk_cancel(t, l, w), 0);
			}
		} else if (op < 9) { /* release by the holder (or a stranger) */
			if (!m[l].held) {
				assert_int_equal(lk_release(t, l, W(node, 1), false), -EPERM);
				continue;
			}
			assert_int_equal(lk_release(t, l, m[l].holder, false), 0);
			if (m[l].nq) {
				assert_int_equal(gs.n, 1);
				assert_true(gs.g[0].who.node == m[l].q[0].node &&
					    gs.g[0].who.tag == m[l].q[0].tag);
				m[l].holder = m[l].q[0];
				memmove(m[l].q, m[l].q + 1, --m[l].nq * sizeof(m[l].q[0]));
			} else {
				assert_int_equal(gs.n, 0);
				m[l].held = false;
			}
		} else if (m[l].nq) { /* cancel a random waiter */
			size_t i = (x >> 24) % m[l].nq;

			assert_int_equal(lk_cancel(t, l, m[l].q[i]), 0);
			memmove(m[l].q + i, m[l].q + i + 1, (--m[l].nq - i) * sizeof(m[l].q[0]));
		}
		if (step % 1000 == 0)
			ok(t);
	}
	ok(t);
	lk_destroy(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uncontended),
		cmocka_unit_test(test_fifo),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_node_gone),
		cmocka_unit_test(test_handover),
		cmocka_unit_test(test_random),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
