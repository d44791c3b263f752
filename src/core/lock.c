/* SPDX-License-Identifier: MIT */
/*
 * lock.c - the home side of address-named locks (see lock.h, docs/PROTOCOL.md "Locks").
 *
 * A hash table of entries chained per bucket; an entry holds the lock's holder and a singly
 * linked FIFO of waiters. Entries come and go with the locks' use, so a program may name as
 * many locks as it likes: only the held (or marked) ones cost memory, 48 bytes plus 24 per
 * waiter.
 */
#include "core/lock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct lk_waiter {
	struct lk_waiter *next;
	struct lk_who who;
};

struct lk_ent {
	struct lk_ent *hnext;
	uint64_t off;
	struct lk_who holder; /* valid if held */
	bool held;
	bool odead; /* the previous holder died: the next grant says so */
	struct lk_waiter *qhead, *qtail;
	size_t nq;
};

struct lk_table {
	const struct lk_ops *ops;
	void *ctx;
	struct lk_ent **bucket;
	size_t nbucket; /* a power of two */
	size_t n;       /* entries */
};

#define NBUCKET_MIN 64u

static size_t slot(const struct lk_table *t, uint64_t off)
{
	uint64_t h = off * 0x9e3779b97f4a7c15ull;

	return (size_t)(h >> 32) & (t->nbucket - 1);
}

static bool same(struct lk_who a, struct lk_who b)
{
	return a.node == b.node && a.tag == b.tag;
}

int lk_create(const struct lk_ops *ops, void *ctx, struct lk_table **out)
{
	struct lk_table *t;

	if (!ops || !ops->grant || !out)
		return -EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->bucket = calloc(NBUCKET_MIN, sizeof(*t->bucket));
	if (!t->bucket) {
		free(t);
		return -ENOMEM;
	}
	t->nbucket = NBUCKET_MIN;
	t->ops = ops;
	t->ctx = ctx;
	*out = t;
	return 0;
}

static void ent_free(struct lk_ent *e)
{
	while (e->qhead) {
		struct lk_waiter *w = e->qhead;

		e->qhead = w->next;
		free(w);
	}
	free(e);
}

void lk_clear(struct lk_table *t)
{
	for (size_t b = 0; b < t->nbucket; b++) {
		while (t->bucket[b]) {
			struct lk_ent *e = t->bucket[b];

			t->bucket[b] = e->hnext;
			ent_free(e);
		}
	}
	t->n = 0;
}

void lk_destroy(struct lk_table *t)
{
	if (!t)
		return;
	lk_clear(t);
	free(t->bucket);
	free(t);
}

static struct lk_ent *find(const struct lk_table *t, uint64_t off)
{
	for (struct lk_ent *e = t->bucket[slot(t, off)]; e; e = e->hnext)
		if (e->off == off)
			return e;
	return NULL;
}

/* Double the buckets when the chains grow past one entry on average; failing to is harmless. */
static void grow(struct lk_table *t)
{
	size_t nb = t->nbucket * 2, ob = t->nbucket;
	struct lk_ent **old = t->bucket, **nbk = calloc(nb, sizeof(*nbk));

	if (!nbk)
		return;
	t->bucket = nbk;
	t->nbucket = nb;
	for (size_t b = 0; b < ob; b++) {
		while (old[b]) {
			struct lk_ent *e = old[b];
			size_t s = slot(t, e->off);

			old[b] = e->hnext;
			e->hnext = nbk[s];
			nbk[s] = e;
		}
	}
	free(old);
}

static struct lk_ent *insert(struct lk_table *t, uint64_t off)
{
	struct lk_ent *e = calloc(1, sizeof(*e));
	size_t s;

	if (!e)
		return NULL;
	if (t->n >= t->nbucket)
		grow(t);
	s = slot(t, off);
	e->off = off;
	e->hnext = t->bucket[s];
	t->bucket[s] = e;
	t->n++;
	return e;
}

static void remove_ent(struct lk_table *t, struct lk_ent *e)
{
	struct lk_ent **pp = &t->bucket[slot(t, e->off)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	t->n--;
	ent_free(e);
}

static bool queued(const struct lk_ent *e, struct lk_who who)
{
	for (const struct lk_waiter *w = e->qhead; w; w = w->next)
		if (same(w->who, who))
			return true;
	return false;
}

static int enqueue(struct lk_ent *e, struct lk_who who)
{
	struct lk_waiter *w = malloc(sizeof(*w));

	if (!w)
		return -ENOMEM;
	w->next = NULL;
	w->who = who;
	if (e->qtail)
		e->qtail->next = w;
	else
		e->qhead = w;
	e->qtail = w;
	e->nq++;
	return 0;
}

/*
 * The lock at @e is free: give it to the head of its queue (telling it whether the previous
 * holder died), or drop the entry if nobody waits and there is no mark to keep.
 */
static void hand_on(struct lk_table *t, struct lk_ent *e)
{
	struct lk_waiter *w = e->qhead;
	bool odead = e->odead;

	e->held = false;
	e->holder = (struct lk_who){ .node = LK_NODE_NONE };
	if (!w) {
		if (!e->odead)
			remove_ent(t, e);
		return;
	}
	e->qhead = w->next;
	if (!e->qhead)
		e->qtail = NULL;
	e->nq--;
	e->holder = w->who;
	e->held = true;
	e->odead = false;
	free(w);
	t->ops->grant(t->ctx, e->off, e->holder, odead);
}

size_t lk_prune(struct lk_table *t, bool (*keep)(void *arg, uint64_t off), void *arg)
{
	size_t n = 0;

	for (size_t b = 0; b < t->nbucket; b++) {
		struct lk_ent *e = t->bucket[b], *next;

		for (; e; e = next) {
			next = e->hnext;
			if (!keep(arg, e->off)) {
				remove_ent(t, e);
				n++;
			}
		}
	}
	return n;
}

int lk_request(struct lk_table *t, uint64_t off, struct lk_who who, bool try, bool *odead)
{
	struct lk_ent *e = find(t, off);

	*odead = false;
	if (e && ((e->held && same(e->holder, who)) || queued(e, who)))
		return -EALREADY;
	if (e && e->held) {
		if (try)
			return LK_BUSY;
		return enqueue(e, who) ? -ENOMEM : LK_QUEUED;
	}
	if (!e && !(e = insert(t, off)))
		return -ENOMEM;
	e->held = true;
	e->holder = who;
	*odead = e->odead;
	e->odead = false;
	return LK_GRANTED;
}

int lk_release(struct lk_table *t, uint64_t off, struct lk_who who, bool odead)
{
	struct lk_ent *e = find(t, off);

	if (!e || !e->held || !same(e->holder, who))
		return -EPERM;
	if (odead)
		e->odead = true;
	hand_on(t, e);
	return 0;
}

int lk_cancel(struct lk_table *t, uint64_t off, struct lk_who who)
{
	struct lk_ent *e = find(t, off);
	struct lk_waiter **pp, *prev = NULL;

	if (!e)
		return -ENOENT;
	for (pp = &e->qhead; *pp; prev = *pp, pp = &(*pp)->next) {
		struct lk_waiter *w = *pp;

		if (!same(w->who, who))
			continue;
		*pp = w->next;
		if (e->qtail == w)
			e->qtail = prev;
		e->nq--;
		free(w);
		return 0;
	}
	return -ENOENT;
}

size_t lk_node_gone(struct lk_table *t, unsigned node, bool died)
{
	size_t held = 0;

	/*
	 * Two passes: queues first, so that a lock the node held never goes to another of its
	 * waiters; then its locks. hand_on() may free an entry (and grant() may not touch the
	 * table), so the walk takes the next entry first.
	 */
	for (size_t b = 0; b < t->nbucket; b++) {
		for (struct lk_ent *e = t->bucket[b]; e; e = e->hnext) {
			struct lk_waiter **pp = &e->qhead, *prev = NULL;

			while (*pp) {
				struct lk_waiter *w = *pp;

				if (w->who.node != node) {
					prev = w;
					pp = &w->next;
					continue;
				}
				*pp = w->next;
				e->nq--;
				free(w);
			}
			e->qtail = prev;
		}
	}
	for (size_t b = 0; b < t->nbucket; b++) {
		struct lk_ent *e = t->bucket[b], *next;

		for (; e; e = next) {
			next = e->hnext;
			if (!e->held || e->holder.node != node)
				continue;
			held++;
			if (died)
				e->odead = true;
			hand_on(t, e);
		}
	}
	return held;
}

int lk_adopt(struct lk_table *t, uint64_t off, struct lk_who who, bool holder, bool odead)
{
	struct lk_ent *e = find(t, off);

	if (holder) {
		if (e)
			return -EEXIST;
		if (!(e = insert(t, off)))
			return -ENOMEM;
		e->odead = odead;
		if (who.node != LK_NODE_NONE) {
			e->held = true;
			e->holder = who;
		}
		return 0;
	}
	if (!e || who.node == LK_NODE_NONE)
		return -EINVAL;
	if ((e->held && same(e->holder, who)) || queued(e, who))
		return -EEXIST;
	if (enqueue(e, who))
		return -ENOMEM;
	if (!e->held)
		hand_on(t, e); /* its holder was gone before the hand-over reached us */
	return 0;
}

size_t lk_export(const struct lk_table *t,
		 void (*emit)(void *arg, uint64_t off, struct lk_who who, bool holder, bool odead),
		 void *arg)
{
	for (size_t b = 0; b < t->nbucket; b++) {
		for (const struct lk_ent *e = t->bucket[b]; e; e = e->hnext) {
			struct lk_who none = { .node = LK_NODE_NONE };

			emit(arg, e->off, e->held ? e->holder : none, true, e->odead);
			for (const struct lk_waiter *w = e->qhead; w; w = w->next)
				emit(arg, e->off, w->who, false, false);
		}
	}
	return t->n;
}

void lk_get(const struct lk_table *t, uint64_t off, struct lk_view *v)
{
	const struct lk_ent *e = find(t, off);

	memset(v, 0, sizeof(*v));
	if (!e)
		return;
	v->held = e->held;
	v->odead = e->odead;
	v->holder = e->holder;
	v->queued = e->nq;
}

bool lk_waiter(const struct lk_table *t, uint64_t off, size_t i, struct lk_who *who)
{
	const struct lk_ent *e = find(t, off);
	const struct lk_waiter *w = e ? e->qhead : NULL;

	while (w && i--)
		w = w->next;
	if (!w)
		return false;
	*who = w->who;
	return true;
}

size_t lk_count(const struct lk_table *t)
{
	return t->n;
}

const char *lk_check(const struct lk_table *t)
{
	size_t n = 0;

	for (size_t b = 0; b < t->nbucket; b++) {
		for (const struct lk_ent *e = t->bucket[b]; e; e = e->hnext) {
			size_t nq = 0;
			const struct lk_waiter *last = NULL;

			n++;
			if (slot(t, e->off) != b)
				return "an entry in the wrong bucket";
			if (!e->held && !e->odead)
				return "an entry for a free, unmarked lock";
			if (e->qhead && !e->held)
				return "waiters on a free lock";
			for (const struct lk_waiter *w = e->qhead; w; w = w->next) {
				nq++;
				last = w;
				if (e->held && same(w->who, e->holder))
					return "the holder also waits";
				for (const struct lk_waiter *x = w->next; x; x = x->next)
					if (same(x->who, w->who))
						return "a waiter queued twice";
			}
			if (nq != e->nq || last != e->qtail)
				return "queue length or tail wrong";
		}
	}
	return n == t->n ? NULL : "entry count wrong";
}
