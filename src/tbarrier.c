/* SPDX-License-Identifier: MIT */
/*
 * tbarrier.c - udsm_barrier_threads() (see tbarrier.h).
 *
 * The threads of one node meet first: a generation counts the local rounds; the first
 * arrival of a round fixes its thread count, the last one enters udsm_barrier() for the whole
 * node (so udsm_barrier()'s rule of one thread per node holds) and then releases the others
 * with its result. A round's result is kept by the parity of its generation: a thread still
 * waking from round g reads it while round g + 1 fills, which cannot complete without it.
 */
#include "tbarrier.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "node.h"

struct tbar {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t gen;     /* rounds completed */
	unsigned want;    /* threads of the round in progress (0: none arrived yet) */
	unsigned arrived; /* of which arrived */
	bool closing;     /* the round's last thread is in udsm_barrier() */
	int result[2];    /* by generation parity */
};

int tbar_create(struct tbar **out)
{
	struct tbar *tb = calloc(1, sizeof(*tb));

	if (!tb)
		return -ENOMEM;
	pthread_mutex_init(&tb->mu, NULL);
	pthread_cond_init(&tb->cv, NULL);
	*out = tb;
	return 0;
}

void tbar_destroy(struct tbar *tb)
{
	if (!tb)
		return;
	pthread_mutex_destroy(&tb->mu);
	pthread_cond_destroy(&tb->cv);
	free(tb);
}

UDSM_EXPORT int udsm_barrier_threads(struct udsm *d, unsigned nthreads)
{
	struct tbar *tb;
	uint64_t gen;
	int err;

	if (!d || !nthreads)
		return -EINVAL;
	tb = d->tbar;
	pthread_mutex_lock(&tb->mu);
	while (tb->closing) /* a thread that did not take part in the round ending now */
		pthread_cond_wait(&tb->cv, &tb->mu);
	if (tb->want && tb->want != nthreads) {
		/* Another count is in force for this round: the caller made a mistake; the
		 * threads that agree are not held up by it (they wait for their own count). */
		pthread_mutex_unlock(&tb->mu);
		return -EINVAL;
	}
	tb->want = nthreads;
	gen = tb->gen;
	if (++tb->arrived < nthreads) {
		while (tb->gen == gen)
			pthread_cond_wait(&tb->cv, &tb->mu);
		err = tb->result[gen & 1];
		pthread_mutex_unlock(&tb->mu);
		return err;
	}
	/* The last of this node's threads: the cluster-wide barrier, without our mutex (the
	 * next round may not start before it ends anyway: nobody else is released yet). */
	tb->closing = true;
	pthread_mutex_unlock(&tb->mu);
	err = node_barrier(d);
	pthread_mutex_lock(&tb->mu);
	tb->result[gen & 1] = err;
	tb->want = 0;
	tb->arrived = 0;
	tb->closing = false;
	tb->gen++;
	pthread_cond_broadcast(&tb->cv);
	pthread_mutex_unlock(&tb->mu);
	return err;
}
