/* SPDX-License-Identifier: MIT */
/*
 * test_wait.c - the service thread's waiting strategy (src/wait.c): the three policies, what
 * counts as a request in flight, and that the automatic mode keeps the mode that answered
 * faster, keeps checking the other one, and changes its mind when the machine does.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "wait.h"

#define US 1000ull

/* @n barriers one after the other, each completing after @spin_ns if w chose polling for it,
 * after @block_ns if sleeping. */
static void barriers_by_mode(struct wait *w, uint64_t *now, int n, uint64_t spin_ns,
			     uint64_t block_ns)
{
	for (int i = 0; i < n; i++) {
		wait_barrier(w, *now, false, -1);
		*now += w->bar_mode == WAIT_SPIN ? spin_ns : block_ns;
		wait_barrier(w, *now, true, -1);
		*now += 100 * US;
	}
}

/* One request alone, answered over the network after @spin_ns if w chose polling for it,
 * after @block_ns if sleeping; the mode it chose. */
static int request_by_mode(struct wait *w, uint64_t *now, uint64_t *msgs, uint64_t spin_ns,
			   uint64_t block_ns)
{
	int mode;

	wait_fault(w, *now, *msgs);
	mode = w->mode;
	wait_event(w, *now);
	(*msgs)++;
	*now += mode == WAIT_SPIN ? spin_ns : block_ns;
	wait_woken(w, *now, *msgs, 1);
	wait_event(w, *now);
	*now += 100 * US;
	return mode;
}

/* One request alone, answered after @lat_ns over the network, in whatever mode w chose. */
static int request(struct wait *w, uint64_t *now, uint64_t *msgs, uint64_t lat_ns)
{
	return request_by_mode(w, now, msgs, lat_ns, lat_ns);
}

static void test_never(void **state)
{
	struct wait w;
	uint64_t now = 1000 * US, msgs = 0;

	(void)state;
	wait_init(&w, -1);
	wait_fault(&w, now, msgs);
	wait_event(&w, now);
	assert_false(wait_poll(&w, now));
	assert_false(wait_poll(&w, now + 1));
	assert_string_equal(wait_mode_name(&w, 0), "sleep");
}

static void test_fixed(void **state)
{
	struct wait w;
	uint64_t now = 1000 * US;

	(void)state;
	wait_init(&w, 50);
	wait_event(&w, now);
	/* After any event, requests or not, for exactly spin_us. */
	assert_true(wait_poll(&w, now + 10 * US));
	assert_true(wait_poll(&w, now + 50 * US));
	assert_false(wait_poll(&w, now + 51 * US));
}

static void test_auto_polls_only_while_waiting(void **state)
{
	struct wait w;
	uint64_t now = 1000 * US, msgs = 0;

	(void)state;
	wait_init(&w, 0);
	wait_event(&w, now);
	assert_false(wait_poll(&w, now)); /* nothing in flight: sleep at once */
	wait_fault(&w, now, msgs);
	assert_int_equal(w.mode, WAIT_SPIN); /* nothing measured yet: try polling first */
	assert_true(wait_poll(&w, now + 10 * US));
	/* Bounded: long after the last event the answer is not coming soon. */
	assert_false(wait_poll(&w, now + 5000 * US));
	wait_woken(&w, now + 20 * US, msgs + 1, 1);
	assert_false(wait_poll(&w, now + 21 * US));
	/* A page nobody waited for (read-ahead) does not make the count negative. */
	wait_woken(&w, now + 30 * US, msgs + 1, 8);
	assert_int_equal(w.out, 0);
	assert_false(wait_poll(&w, now + 31 * US));
	/* A barrier of the application. */
	wait_barrier(&w, now + 40 * US, false, -1);
	assert_true(wait_poll(&w, now + 41 * US));
	wait_barrier(&w, now + 60 * US, true, -1);
	assert_false(wait_poll(&w, now + 61 * US));
	/* Polled past the bound: no poll at the next event, but the late answer is a sample of
	 * polling (what made it late is what the medians must see). */
	uint32_t nspin = w.fault.n[WAIT_SPIN];

	wait_fault(&w, now + 70 * US, msgs);
	assert_int_equal(w.mode, WAIT_SPIN);
	wait_event(&w, now + 70 * US);
	wait_sleeping(&w, now + 80 * US);
	assert_true(wait_poll(&w, now + 81 * US)); /* within the bound: still polling */
	wait_sleeping(&w, now + 5000 * US);
	wait_event(&w, now + 5001 * US);
	assert_false(wait_poll(&w, now + 5002 * US));
	wait_woken(&w, now + 6000 * US, msgs + 1, 1);
	assert_int_equal(w.fault.n[WAIT_SPIN], nspin + 1);
	assert_true(w.fault.med[WAIT_SPIN] >= 20 * US);
	/* A stale count (a thread joined another's request) does not block a new wait. */
	wait_fault(&w, now + 7000 * US, msgs);
	wait_fault(&w, now + 7000 * US, msgs);
	wait_woken(&w, now + 7050 * US, msgs + 2, 1);
	assert_int_equal(w.out, 1);
	wait_sleeping(&w, now + 9000 * US);
	wait_fault(&w, now + 9001 * US, msgs + 2);
	assert_int_equal(w.out, 1);
	assert_false(w.expired);
	/* A forgotten count is dropped after a whole sleep with nothing to do. */
	wait_fault(&w, now + 9100 * US, msgs);
	wait_fault(&w, now + 9100 * US, msgs);
	assert_int_equal(w.out, 3);
	wait_idle(&w);
	assert_int_equal(w.out, 0);
}

/* A stream of events (requests this node serves) keeps a pending barrier's poll alive: the
 * node's threads wait, and each request is then served without a wake-up; a quiet spell
 * ends it. A lone request's poll is bounded since the request began, stream or not. */
static void test_auto_bound_since_start(void **state)
{
	struct wait w;
	uint64_t now = 1000 * US, msgs = 0;
	bool polled_late = false, slept = false;

	(void)state;
	wait_init(&w, 0);
	wait_barrier(&w, now, false, -1);
	assert_int_equal(w.bar_mode, WAIT_SPIN);
	for (uint64_t t = 0; t < 5000 * US; t += 10 * US) {
		wait_event(&w, now + t);
		slept |= !wait_poll(&w, now + t + 1 * US);
	}
	assert_false(slept); /* 5 ms of requests 10 us apart: polled all along */
	assert_false(wait_poll(&w, now + 5000 * US + 1000 * US)); /* then 1 ms of nothing */
	wait_barrier(&w, now + 7000 * US, true, -1);
	/* A lone request whose answer is late, amid a stream of other events. */
	now += 8000 * US;
	wait_fault(&w, now, msgs);
	assert_int_equal(w.mode, WAIT_SPIN);
	for (uint64_t t = 0; t < 5000 * US; t += 10 * US) {
		wait_event(&w, now + t);
		if (t > 3 * 1000 * US)
			polled_late |= wait_poll(&w, now + t + 1 * US);
	}
	assert_false(polled_late); /* the default bound, 200 us, is long over */
}

/* A yield that gave the CPU away for a while ends the poll of the request or barrier it
 * happened in (another thread needs the CPU: the home of a 3-node miss on the requester's
 * CPU, the node's own woken thread); a short one does not; the next request polls again. A
 * forced policy ignores it. */
static void test_auto_contended(void **state)
{
	struct wait w;
	uint64_t now = 1000 * US, msgs = 0;

	(void)state;
	wait_init(&w, 0);
	wait_fault(&w, now, msgs);
	wait_event(&w, now);
	assert_true(wait_poll(&w, now + 1 * US));
	wait_yielded(&w, now + 4 * US, 2 * US, true); /* a bare yield: nobody else wanted it */
	assert_true(wait_poll(&w, now + 5 * US));
	wait_yielded(&w, now + 6 * US, 3000 * US, false); /* long, but nobody ran: stolen */
	assert_true(wait_poll(&w, now + 6 * US));
	wait_yielded(&w, now + 49 * US, 40 * US, true);
	assert_false(wait_poll(&w, now + 50 * US));
	wait_event(&w, now + 60 * US); /* later events do not restart the poll ... */
	assert_false(wait_poll(&w, now + 61 * US));
	wait_woken(&w, now + 100 * US, msgs + 1, 1);
	wait_fault(&w, now + 200 * US, msgs + 1); /* ... a new request does */
	wait_event(&w, now + 200 * US);
	assert_int_equal(w.mode, WAIT_SPIN);
	assert_true(wait_poll(&w, now + 201 * US));
	wait_woken(&w, now + 250 * US, msgs + 2, 1);
	/* The same for a barrier in which the node serves others: a yield to another thread
	 * ends its poll once it has served something. */
	wait_barrier(&w, now + 300 * US, false, -1);
	wait_event(&w, now + 300 * US);
	assert_true(wait_poll(&w, now + 301 * US));
	wait_yielded(&w, now + 329 * US, 20 * US, true); /* nothing served yet: polls on */
	assert_true(wait_poll(&w, now + 330 * US));
	wait_served(&w);
	wait_event(&w, now + 330 * US);
	wait_yielded(&w, now + 349 * US, 40 * US, true);
	assert_false(wait_poll(&w, now + 350 * US));
	wait_barrier(&w, now + 400 * US, true, -1);
	wait_barrier(&w, now + 500 * US, false, -1);
	wait_event(&w, now + 500 * US);
	assert_true(wait_poll(&w, now + 501 * US));
	/* Once polling is measured to save more than that (sleeping 1000 us, polling 100), a
	 * switch away shorter than the difference does not end the poll; one as long as the
	 * poll's own bound (3 x 100 us) does (test_auto_yield_limit_capped()). */
	for (int i = 0; i < 4; i++) {
		w.fault.n[WAIT_SPIN]++, w.fault.n[WAIT_BLOCK]++;
	}
	w.fault.med[WAIT_SPIN] = 100 * US;
	w.fault.med[WAIT_BLOCK] = 1000 * US;
	now += 1000 * US;
	wait_fault(&w, now, msgs + 2);
	wait_event(&w, now);
	assert_int_equal(w.mode, WAIT_SPIN);
	wait_yielded(&w, now + 201 * US, 200 * US, true);
	assert_false(w.contended);
	assert_true(wait_poll(&w, now + 201 * US));
	wait_yielded(&w, now + 501 * US, 300 * US, true); /* the limit: 900 capped at 300 */
	assert_true(w.contended);
	assert_false(wait_poll(&w, now + 501 * US));
	/* Forced polling polls whatever the yields say. */
	wait_init(&w, 50);
	wait_event(&w, now);
	wait_yielded(&w, now + 9 * US, 1000 * US, true);
	assert_true(wait_poll(&w, now + 10 * US));
}

/* Several requests out at once (many threads, s2dsm's read of every page): never poll, even
 * when polling is the mode a lone request would use; poll again once one is left. */
static void test_auto_no_poll_for_several(void **state)
{
	struct wait w;
	uint64_t now = 1000 * US;

	(void)state;
	wait_init(&w, 0);
	wait_event(&w, now);
	wait_fault(&w, now, 0);
	assert_int_equal(w.mode, WAIT_SPIN);
	assert_true(wait_poll(&w, now + 1 * US));
	wait_fault(&w, now + 2 * US, 0); /* a second thread's request */
	wait_event(&w, now + 2 * US);
	assert_int_equal(w.out, 2);
	assert_false(wait_poll(&w, now + 3 * US));
	wait_woken(&w, now + 40 * US, 1, 1);
	wait_event(&w, now + 40 * US);
	assert_int_equal(w.out, 1);
	assert_true(wait_poll(&w, now + 41 * US));
}

static void test_auto_learns(void **state)
{
	struct wait w;
	uint64_t now = 1000 * US, msgs = 0;
	unsigned sleeps = 0, polls = 0, changes = 0, tries = 0, tries_early = 0, tries_late = 0;
	int prev = WAIT_BLOCK; /* what a node starts from, for the first change */

	(void)state;
	wait_init(&w, 0);
	/* Here sleeping answers in 40 us and polling in 90 (a PVM guest, docs/PERFORMANCE.md). */
	for (int i = 0; i < 4000; i++) {
		wait_fault(&w, now, msgs);
		int mode = w.mode;

		if (mode != prev) {
			assert_int_equal(i % WAIT_STREAK, 0);
			changes++;
			if (mode == WAIT_SPIN && i >= 8) { /* a try of polling, after the warm-up */
				i < 400 ? tries_early++ : i >= 2000 ? tries_late++ : 0;
				tries += i >= 200;
			}
		}
		prev = mode;

		msgs++;
		now += mode == WAIT_SPIN ? 90 * US : 40 * US;
		wait_woken(&w, now, msgs, 1);
		now += 100 * US;
		if (i >= 200)
			mode == WAIT_SPIN ? polls++ : sleeps++;
	}
	assert_string_equal(wait_mode_name(&w, 0), "sleep");
	/* Mostly sleeping, but polling is still tried now and then: often at first (one streak
	 * in 16), then, as every try confirms sleeping, ever less often, down to one streak of
	 * 4 requests in 128. */
	assert_true(sleeps > 3700);
	assert_true(tries_early >= 2);
	assert_true(tries_late >= 3 && tries_late <= 4);
	/* Each try is one streak: a try that confirms sleeping is not followed by another. */
	assert_int_equal(polls, WAIT_STREAK * tries);
	/* Modes come in streaks of 4, the first of a change not learnt. */
	assert_int_equal(w.fault.n[WAIT_SPIN] + w.fault.n[WAIT_BLOCK], 4000 - changes);
	/* The machine changes: polling becomes faster. The next try finds it, is followed by
	 * more at once, and polling wins within one try's interval (512 requests) and a few. */
	int i;

	for (i = 0; i < 2000 && strcmp(wait_mode_name(&w, 0), "poll") != 0; i++) {
		wait_fault(&w, now, msgs);
		msgs++;
		now += w.mode == WAIT_SPIN ? 15 * US : 40 * US;
		wait_woken(&w, now, msgs, 1);
		now += 100 * US;
	}
	assert_string_equal(wait_mode_name(&w, 0), "poll");
	assert_true(i <= 128 * WAIT_STREAK + 4 * WAIT_STREAK);
	/* From then on, sleeping is tried often again (one streak in 16), then less often. */
	polls = sleeps = 0;
	for (i = 0; i < 256; i++) {
		wait_fault(&w, now, msgs);
		w.mode == WAIT_SPIN ? polls++ : sleeps++;
		msgs++;
		now += w.mode == WAIT_SPIN ? 15 * US : 40 * US;
		wait_woken(&w, now, msgs, 1);
		now += 100 * US;
	}
	assert_string_equal(wait_mode_name(&w, 0), "poll");
	assert_true(sleeps >= WAIT_STREAK && sleeps <= 4 * WAIT_STREAK);
}

/* Requests in sleeping mode answered in @block_ns, in polling mode in @spin_ns; how many
 * streaks of polling (tries) began among them. */
static unsigned tries_of_polling(struct wait *w, uint64_t *now, uint64_t *msgs, int requests,
				 uint64_t spin_ns, uint64_t block_ns)
{
	unsigned tries = 0;

	for (int i = 0; i < requests; i++) {
		int prev = w->fault.cur;

		if (request_by_mode(w, now, msgs, spin_ns, block_ns) == WAIT_SPIN && prev != WAIT_SPIN)
			tries++;
	}
	return tries;
}

/* The better mode's median moves by more than a quarter (the program changed what it does):
 * the other mode is tried often again, as its samples are of the old conditions. */
static void test_auto_drift_explores(void **state)
{
	struct wait w;
	uint64_t now = 1000 * US, msgs = 0;

	(void)state;
	wait_init(&w, 0);
	tries_of_polling(&w, &now, &msgs, 4000, 90 * US, 40 * US);
	assert_string_equal(wait_mode_name(&w, 0), "sleep");
	/* Settled: one try in 128 streaks of 4. */
	assert_int_equal(tries_of_polling(&w, &now, &msgs, 1024, 90 * US, 40 * US), 2);
	/* Sleeping now takes 60 us: still the better mode, but conditions changed. */
	assert_true(tries_of_polling(&w, &now, &msgs, 512, 90 * US, 60 * US) >= 3);
	assert_string_equal(wait_mode_name(&w, 0), "sleep");
}

/* Lone requests answered as request_by_mode() does, until the current streak ends. */
static void end_streak(struct wait *w, uint64_t *now, uint64_t *msgs, uint64_t spin_ns,
		       uint64_t block_ns)
{
	while (w->fault.left)
		request_by_mode(w, now, msgs, spin_ns, block_ns);
}

/* The same, until the first request of a streak that tries polling has been made. */
static void to_try_of_polling(struct wait *w, uint64_t *now, uint64_t *msgs, uint64_t spin_ns,
			      uint64_t block_ns)
{
	while (!(w->fault.trying && w->fault.cur == WAIT_SPIN))
		request_by_mode(w, now, msgs, spin_ns, block_ns);
}

/* A try that makes the tried mode the better one is not followed by a streak of the mode it
 * replaced: the next try of that comes as after any change, one streak in 16 at the earliest. */
static void test_auto_flip_keeps_new_mode(void **state)
{
	struct wait w;
	uint64_t now = 1000 * US, msgs = 0;
	int i;

	(void)state;
	wait_init(&w, 0);
	tries_of_polling(&w, &now, &msgs, 1000, 90 * US, 40 * US);
	assert_string_equal(wait_mode_name(&w, 0), "sleep");
	for (i = 0; i < 2000 && strcmp(wait_mode_name(&w, 0), "poll") != 0; i++)
		request_by_mode(&w, &now, &msgs, 15 * US, 40 * US);
	assert_string_equal(wait_mode_name(&w, 0), "poll");
	end_streak(&w, &now, &msgs, 15 * US, 40 * US); /* the one that made the change */
	for (i = 0; i < 15 * WAIT_STREAK; i++)
		assert_int_equal(request_by_mode(&w, &now, &msgs, 15 * US, 40 * US), WAIT_SPIN);
}

/* A try that took no sample (its requests served locally) neither confirms nor contradicts:
 * the interval to the next one stays as it was. */
static void test_auto_empty_try(void **state)
{
	struct wait w;
	uint64_t now = 1000 * US, msgs = 0;
	uint32_t every;

	(void)state;
	wait_init(&w, 0);
	to_try_of_polling(&w, &now, &msgs, 90 * US, 40 * US);
	every = w.fault.every;
	while (w.fault.left) { /* the try's requests, all served locally */
		wait_fault(&w, now, msgs);
		wait_woken(&w, now + 5 * US, msgs, 1);
		now += 100 * US;
	}
	assert_int_equal(request_by_mode(&w, &now, &msgs, 90 * US, 40 * US), WAIT_BLOCK);
	assert_int_equal(w.fault.every, every);
	/* A try with samples that confirm sleeping doubles it. */
	to_try_of_polling(&w, &now, &msgs, 90 * US, 40 * US);
	end_streak(&w, &now, &msgs, 90 * US, 40 * US);
	assert_int_equal(request_by_mode(&w, &now, &msgs, 90 * US, 40 * US), WAIT_BLOCK);
	assert_int_equal(w.fault.every, 2 * every);
}

/* Polling wins a request or a barrier only by 1/8 of its median. */
static void test_auto_poll_margin(void **state)
{
	struct wait w;
	uint64_t now = 1000 * US, msgs = 0;

	(void)state;
	wait_init(&w, 0);
	/* Polling 100 us, sleeping 105: within the margin, sleeping is kept. */
	for (int i = 0; i < 400; i++)
		request_by_mode(&w, &now, &msgs, 100 * US, 105 * US);
	assert_int_equal(w.fault.med[WAIT_SPIN], 100 * US);
	assert_int_equal(w.fault.med[WAIT_BLOCK], 105 * US);
	assert_string_equal(wait_mode_name(&w, 0), "sleep");
	/* Polling 90 us: 90 + 90/8 <= 105, it pays. */
	for (int i = 0; i < 400; i++)
		request_by_mode(&w, &now, &msgs, 90 * US, 105 * US);
	assert_string_equal(wait_mode_name(&w, 0), "poll");
	/* Barriers back to back (100 us of the application's own between them): the sample is
	 * the period, and polling must win by the same margin. 200 against 205 is not enough,
	 * 170 against 205 is. */
	barriers_by_mode(&w, &now, 400, 100 * US, 105 * US);
	assert_int_equal(w.barrier.med[WAIT_SPIN], 200 * US);
	assert_int_equal(w.barrier.med[WAIT_BLOCK], 205 * US);
	assert_string_equal(wait_mode_name(&w, 1), "sleep");
	barriers_by_mode(&w, &now, 400, 70 * US, 105 * US);
	assert_string_equal(wait_mode_name(&w, 1), "poll");
}

/* Back from a try of polling, the barriers' learner leaves the next BAR_SETTLE (32) samples
 * out: on shared CPUs the barriers right after polling ones are slow for a while, and they
 * must not make sleeping look slower than it is. */
static void test_auto_barrier_settle(void **state)
{
	struct wait w;
	uint64_t now = 1000 * US;
	int polls = 0;

	(void)state;
	wait_init(&w, 0);
	/* Sleeping 100 us a barrier, polling 300; after each polled streak, 24 barriers take
	 * 250 us (the slow return). Stopped 24 barriers after a try late in the run: counted
	 * with the settle, the sleeping median is still 200 (the period: 100 of the
	 * application's own); without, the slow ones would fill the ring. */
	int after = 0, i, last = -1000;

	for (i = 0; i < 3000; i++) {
		wait_barrier(&w, now, false, -1);
		if (w.bar_mode == WAIT_SPIN) {
			now += 300 * US;
			after = 24;
			polls++;
			last = i;
		} else {
			now += after ? 250 * US : 100 * US;
			after -= after > 0;
		}
		wait_barrier(&w, now, true, -1);
		now += 100 * US;
		if (i > 500 && i - last == 24 + 1)
			break; /* the slow return of a late try just ended */
	}
	assert_true(i < 3000); /* a try was made and returned from */
	assert_string_equal(wait_mode_name(&w, 1), "sleep");
	assert_int_equal(w.barrier.med[WAIT_BLOCK], 200 * US);
	assert_true(polls > 0 && polls < 3000 / 10);
}

/* @n barriers 3 ms apart (not back to back): each sample is the wait alone. */
static void test_auto_barrier_far_apart(void **state)
{
	struct wait w;
	uint64_t now = 1000 * US;

	(void)state;
	wait_init(&w, 0);
	for (int i = 0; i < 200; i++) {
		wait_barrier(&w, now, false, -1);
		now += w.bar_mode == WAIT_SPIN ? 60 * US : 50 * US;
		wait_barrier(&w, now, true, -1);
		now += 3000 * US;
	}
	assert_int_equal(w.barrier.med[WAIT_SPIN], 60 * US);
	assert_int_equal(w.barrier.med[WAIT_BLOCK], 50 * US);
	assert_string_equal(wait_mode_name(&w, 1), "sleep");
}

/*
 * The coordinator's word: a node waits in the mode the last release told (whatever its own
 * samples say), chooses by itself without one, and the coordinator's choice for the next
 * barrier comes from its own learner; outside the automatic policy the word is ignored and
 * the coordinator says nothing.
 */
static void test_barrier_told(void **state)
{
	struct wait w, fixed;
	uint64_t now = 1000 * US;

	(void)state;
	wait_init(&w, 0);
	/* Its own samples: sleeping much faster. */
	barriers_by_mode(&w, &now, 100, 300 * US, 50 * US);
	assert_int_equal(wait_learnt(&w, 1), WAIT_BLOCK);
	for (int i = 0; i < 20; i++) {
		wait_barrier(&w, now, false, WAIT_SPIN);
		assert_int_equal(w.bar_mode, WAIT_SPIN);
		now += 300 * US;
		wait_barrier(&w, now, true, -1);
		wait_barrier(&w, now, false, WAIT_BLOCK);
		assert_int_equal(w.bar_mode, WAIT_BLOCK);
		now += 50 * US;
		wait_barrier(&w, now, true, -1);
	}
	/* As the coordinator: the next barrier's mode is its learner's, sleeping here, but for
	 * the tries of the other one; what it was told itself it waits in. */
	int spin = 0;

	for (int i = 0; i < 512; i++) {
		int next = wait_barrier_next(&w);

		assert_true(next == WAIT_SPIN || next == WAIT_BLOCK);
		spin += next == WAIT_SPIN;
		wait_barrier(&w, now, false, next);
		assert_int_equal(w.bar_mode, next);
		now += next == WAIT_SPIN ? 300 * US : 50 * US;
		wait_barrier(&w, now, true, -1);
	}
	assert_true(spin > 0 && spin < 512 / 8);
	assert_int_equal(wait_learnt(&w, 1), WAIT_BLOCK);
	/* Without a word, its own choice. */
	wait_barrier(&w, now, false, -1);
	assert_true(w.bar_mode == WAIT_SPIN || w.bar_mode == WAIT_BLOCK);
	wait_barrier(&w, now + 10 * US, true, -1);
	/* Polling forced: polls in every barrier, ignores the word, and says none. */
	wait_init(&fixed, 50);
	wait_barrier(&fixed, now, false, WAIT_BLOCK);
	assert_int_equal(fixed.bar_mode, WAIT_SPIN);
	assert_int_equal(wait_barrier_next(&fixed), -1);
}

static void test_auto_ignores_local_and_overlapping(void **state)
{
	struct wait w;
	uint64_t now = 1000 * US, msgs = 0;

	(void)state;
	wait_init(&w, 0);
	/* Served locally (no message sent): not a sample. */
	wait_fault(&w, now, msgs);
	wait_woken(&w, now + 5 * US, msgs, 1);
	assert_int_equal(w.fault.n[WAIT_SPIN] + w.fault.n[WAIT_BLOCK], 0);
	/* Two requests overlapping: not a sample either (the second waits behind the first). */
	wait_fault(&w, now, msgs);
	wait_fault(&w, now + 1 * US, msgs);
	msgs++;
	wait_woken(&w, now + 50 * US, msgs, 1);
	wait_woken(&w, now + 60 * US, msgs, 1);
	assert_int_equal(w.fault.n[WAIT_SPIN] + w.fault.n[WAIT_BLOCK], 0);
	/* One alone over the network is, but for the first after a change of mode (it meets
	 * the peers in the old one): that is this one, the node's first. */
	assert_int_equal(request(&w, &now, &msgs, 30 * US), WAIT_SPIN);
	assert_int_equal(w.fault.n[WAIT_SPIN], 0);
	assert_int_equal(request(&w, &now, &msgs, 30 * US), WAIT_SPIN);
	assert_int_equal(w.fault.n[WAIT_SPIN], 1);
	assert_int_equal(w.fault.med[WAIT_SPIN], 30 * US);
}

/* One batch holding a hinted message, handled at @now. */
static void hinted(struct wait *w, uint64_t now)
{
	wait_hint(w, now);
	wait_event(w, now);
}

/* A node that polls for its answer says so, and only then (wait_polling()): a lone request in
 * the polling mode or a barrier polled for; not several requests, not a request older than
 * its poll's bound, not a poll that lost its CPU, not a forced policy. */
static void test_auto_hints_while_polling(void **state)
{
	struct wait w;
	uint64_t now = 1000 * US, msgs = 0;

	(void)state;
	wait_init(&w, 0);
	assert_false(wait_polling(&w, now));
	wait_fault(&w, now, msgs);
	assert_int_equal(w.mode, WAIT_SPIN);
	assert_true(wait_polling(&w, now));
	wait_fault(&w, now, msgs); /* a second one out */
	assert_false(wait_polling(&w, now));
	wait_woken(&w, now + 10 * US, msgs + 1, 2);
	assert_false(wait_polling(&w, now + 10 * US));
	wait_fault(&w, now + 20 * US, msgs + 1);
	assert_true(wait_polling(&w, now + 20 * US));
	wait_yielded(&w, now + 70 * US, 40 * US, true);
	assert_false(wait_polling(&w, now + 70 * US));
	wait_woken(&w, now + 80 * US, msgs + 2, 1);
	wait_barrier(&w, now + 90 * US, false, -1);
	assert_true(wait_polling(&w, now + 90 * US));
	wait_barrier(&w, now + 100 * US, true, -1);
	assert_false(wait_polling(&w, now + 100 * US));
	/* A request unanswered for longer than its poll's bound (200 us before anything is
	 * measured): the node sleeps, and what it sends (an answer to a peer) says so, even
	 * while events keep coming. */
	wait_init(&w, 0);
	now += 1000 * US;
	wait_fault(&w, now, msgs + 2);
	wait_event(&w, now);
	assert_true(wait_polling(&w, now + 200 * US));
	wait_event(&w, now + 200 * US);
	assert_false(wait_polling(&w, now + 201 * US));
	assert_false(wait_poll(&w, now + 201 * US));
	/* Asleep in a barrier, it polls after each event: it says so. */
	wait_barrier(&w, now + 700 * US, false, -1);
	wait_event(&w, now + 700 * US);
	wait_sleeping(&w, now + 2000 * US);
	assert_false(wait_poll(&w, now + 2000 * US));
	assert_true(wait_polling(&w, now + 5000 * US));
	wait_event(&w, now + 5000 * US);
	assert_true(wait_poll(&w, now + 5001 * US));
	wait_init(&w, 50);
	wait_fault(&w, now, msgs);
	assert_false(wait_polling(&w, now));
}

/* After a hinted message, poll for the next one: 200 us until gaps were seen, then a few of
 * the gaps (at least 20 us, at most 500); a message without the hint starts nothing. */
static void test_auto_lingers(void **state)
{
	struct wait w;
	uint64_t now = 1000 * US;

	(void)state;
	wait_init(&w, 0);
	wait_event(&w, now);
	assert_false(wait_poll(&w, now + 1 * US));
	hinted(&w, now);
	assert_true(wait_poll(&w, now + 1 * US));
	assert_true(wait_poll(&w, now + 200 * US));
	assert_false(wait_poll(&w, now + 201 * US));
	/* Gaps of 10 us: linger 40 us. */
	for (int i = 0; i < 8; i++) {
		now += 10 * US;
		hinted(&w, now);
	}
	assert_int_equal(w.gap_med, 10 * US);
	assert_true(wait_poll(&w, now + 40 * US));
	assert_false(wait_poll(&w, now + 41 * US));
	/* A later unhinted event does not move the start. */
	wait_event(&w, now + 30 * US);
	assert_false(wait_poll(&w, now + 41 * US));
	/* Gaps of 2 us: the floor, 20 us. */
	for (int i = 0; i < WAIT_RING; i++) {
		now += 2 * US;
		hinted(&w, now);
	}
	assert_true(wait_poll(&w, now + 20 * US));
	assert_false(wait_poll(&w, now + 21 * US));
	/* Gaps of 1 ms (or a sleeping node's): the ceiling, 500 us. */
	for (int i = 0; i < WAIT_RING; i++) {
		now += 1000 * US;
		hinted(&w, now);
	}
	assert_true(wait_poll(&w, now + 500 * US));
	assert_false(wait_poll(&w, now + 501 * US));
	/* Two hinted messages in one batch are one sample. */
	uint32_t n = w.ngap;

	now += 1000 * US;
	wait_hint(&w, now);
	wait_hint(&w, now);
	wait_event(&w, now);
	assert_int_equal(w.ngap, n + 1);
	/* Forced policies do their own thing. */
	wait_init(&w, -1);
	hinted(&w, now);
	assert_false(wait_poll(&w, now + 1 * US));
}

/* A yield to another thread that outlasts the linger itself shows the CPU is wanted: it ends
 * the linger, and the next WAIT_LINGER_SKIP hinted batches do not linger; the one after does
 * again. A bare yield, a long one with no switch (stolen time) or a shorter switch change
 * nothing. */
static void test_auto_linger_contended(void **state)
{
	struct wait w;
	uint64_t now = 1000 * US;

	(void)state;
	wait_init(&w, 0);
	hinted(&w, now);
	wait_yielded(&w, now + 4 * US, 2 * US, true);
	assert_true(wait_poll(&w, now + 5 * US));
	wait_yielded(&w, now + 6 * US, 400 * US, false);
	assert_true(wait_poll(&w, now + 6 * US));
	wait_yielded(&w, now + 49 * US, 40 * US, true); /* shorter than the linger (200 us) */
	assert_true(wait_poll(&w, now + 50 * US));
	wait_yielded(&w, now + 250 * US, 200 * US, true); /* began at + 50 us */
	assert_int_equal(w.linger_skip, WAIT_LINGER_SKIP);
	assert_false(wait_poll(&w, now + 250 * US));
	for (int i = 0; i < WAIT_LINGER_SKIP; i++) {
		now += 300 * US;
		hinted(&w, now);
		assert_false(wait_poll(&w, now + 1 * US));
	}
	now += 300 * US;
	hinted(&w, now);
	assert_true(wait_poll(&w, now + 1 * US));
}

/* A request's poll runs out from its start even while other events keep coming; the next
 * request then starts a wait of its own (it polls, and it is a sample) instead of joining. */
static void test_auto_expires_from_start(void **state)
{
	struct wait w;
	uint64_t now = 1000 * US, msgs = 0;

	(void)state;
	wait_init(&w, 0);
	wait_fault(&w, now, msgs);
	wait_event(&w, now);
	for (uint64_t t = 10 * US; t <= 250 * US; t += 10 * US)
		wait_event(&w, now + t); /* a peer's requests, say */
	assert_false(wait_poll(&w, now + 251 * US)); /* 200 us since it began */
	wait_sleeping(&w, now + 251 * US);
	assert_true(w.expired);
	wait_fault(&w, now + 300 * US, msgs);
	assert_int_equal(w.out, 1);
	assert_true(w.single);
	wait_event(&w, now + 300 * US);
	assert_true(wait_poll(&w, now + 301 * US));
}

/* A linger that is over is over: a long switch later, in a poll for this node's own request,
 * ends that poll but does not make the next hinted batches sit out. */
static void test_auto_linger_over(void **state)
{
	struct wait w;
	uint64_t now = 1000 * US, msgs = 0;

	(void)state;
	wait_init(&w, 0);
	hinted(&w, now);
	assert_false(wait_poll(&w, now + 201 * US));
	wait_sleeping(&w, now + 201 * US);
	now += 1000 * US;
	wait_fault(&w, now, msgs);
	wait_event(&w, now);
	assert_true(wait_poll(&w, now + 1 * US));
	wait_yielded(&w, now + 301 * US, 300 * US, true);
	assert_false(wait_poll(&w, now + 302 * US));
	assert_int_equal(w.linger_skip, 0);
	hinted(&w, now + 400 * US);
	assert_true(wait_poll(&w, now + 401 * US));
	/* Even when the caller never slept in between: the time says it is over. */
	wait_init(&w, 0);
	hinted(&w, now);
	wait_yielded(&w, now + 600 * US, 300 * US, true); /* began 100 us after it ended */
	assert_int_equal(w.linger_skip, 0);
}

/* The yield a poll tolerates is capped by the poll's own bound: barriers whose sleeping
 * median is milliseconds above the polling one (a slow peer) still stop polling on a switch
 * that lasted the whole bound (2 x the polling median). */
static void test_auto_yield_limit_capped(void **state)
{
	struct wait w;
	uint64_t now = 1000 * US;

	(void)state;
	wait_init(&w, 0);
	for (int i = 0; i < 4; i++) {
		w.barrier.n[WAIT_SPIN]++, w.barrier.n[WAIT_BLOCK]++;
	}
	w.barrier.med[WAIT_SPIN] = 100 * US;
	w.barrier.med[WAIT_BLOCK] = 5000 * US;
	wait_barrier(&w, now, false, -1);
	wait_served(&w);
	wait_event(&w, now);
	assert_int_equal(w.bar_mode, WAIT_SPIN);
	wait_yielded(&w, now + 150 * US, 150 * US, true);
	assert_false(w.bar_contended);
	assert_true(wait_poll(&w, now + 151 * US));
	wait_yielded(&w, now + 360 * US, 200 * US, true);
	assert_true(w.bar_contended);
	/* Each event restarts a barrier's poll: only the contention stops it now. */
	wait_event(&w, now + 370 * US);
	assert_false(wait_poll(&w, now + 371 * US));
}

/* A node that only waits for its barrier to complete keeps polling through yields to other
 * threads (other nodes' threads, which need the CPU to arrive); what it served in an earlier
 * barrier does not count in the next one, and a fault's poll still ends on contention. */
static void test_auto_barrier_only_waits(void **state)
{
	struct wait w;
	uint64_t now = 1000 * US;

	(void)state;
	wait_init(&w, 0);
	wait_barrier(&w, now, false, -1);
	wait_event(&w, now);
	assert_int_equal(w.bar_mode, WAIT_SPIN);
	for (int i = 1; i <= 5; i++) {
		wait_yielded(&w, now + i * 30 * US, 25 * US, true);
		assert_true(wait_poll(&w, now + i * 30 * US + 1));
	}
	assert_false(w.bar_contended);
	wait_served(&w);
	wait_yielded(&w, now + 180 * US, 25 * US, true);
	assert_true(w.bar_contended);
	wait_barrier(&w, now + 500 * US, true, -1);
	/* The next barrier starts with nothing served, whatever the last one served. */
	wait_barrier(&w, now + 600 * US, false, -1);
	wait_event(&w, now + 600 * US);
	assert_false(w.bar_served);
	assert_false(w.bar_contended);
	wait_yielded(&w, now + 630 * US, 25 * US, true);
	assert_true(wait_poll(&w, now + 631 * US));
	/* A fault inside it: the fault's poll ends on a long yield, the barrier's does not. */
	wait_fault(&w, now + 640 * US, 0);
	wait_event(&w, now + 640 * US);
	assert_int_equal(w.mode, WAIT_SPIN);
	wait_yielded(&w, now + 681 * US, 40 * US, true);
	assert_true(w.contended);
	assert_false(w.bar_contended);
	assert_true(wait_poll(&w, now + 682 * US));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_never),
		cmocka_unit_test(test_fixed),
		cmocka_unit_test(test_auto_polls_only_while_waiting),
		cmocka_unit_test(test_auto_bound_since_start),
		cmocka_unit_test(test_auto_contended),
		cmocka_unit_test(test_auto_no_poll_for_several),
		cmocka_unit_test(test_auto_learns),
		cmocka_unit_test(test_auto_poll_margin),
		cmocka_unit_test(test_auto_drift_explores),
		cmocka_unit_test(test_auto_flip_keeps_new_mode),
		cmocka_unit_test(test_auto_empty_try),
		cmocka_unit_test(test_auto_ignores_local_and_overlapping),
		cmocka_unit_test(test_auto_hints_while_polling),
		cmocka_unit_test(test_auto_lingers),
		cmocka_unit_test(test_auto_linger_contended),
		cmocka_unit_test(test_auto_linger_over),
		cmocka_unit_test(test_auto_expires_from_start),
		cmocka_unit_test(test_auto_yield_limit_capped),
		cmocka_unit_test(test_auto_barrier_only_waits),
		cmocka_unit_test(test_auto_barrier_far_apart),
		cmocka_unit_test(test_auto_barrier_settle),
		cmocka_unit_test(test_barrier_told),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
