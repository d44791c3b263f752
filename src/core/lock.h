/* SPDX-License-Identifier: MIT */
/*
 * lock.h - the home side of address-named locks: a table of the locks this node homes, keyed
 * by the lock's byte offset in the region, with each lock's holder and FIFO queue of waiters.
 *
 * A waiter or holder is a (node, tag) pair: the tag names one request of one thread on that
 * node (the node picks tags; they are unique per node). The table serves requests strictly in
 * the order it is given them: a lock goes to the head of its queue when released, so the
 * order of grants is the order of arrival at the home (docs/PROTOCOL.md, "Locks").
 *
 * Output is one callback, ops->grant(): the lock @off now belongs to @who (the caller sends a
 * LOCK_GRANT, or wakes a local thread). Everything else is returned.
 *
 * Invariants (lk_check() verifies them): an entry exists only while its lock is held, or free
 * with the "previous holder died" mark; a lock with waiters is held; a (node, tag) appears at
 * most once in one lock's holder and queue.
 *
 * Locking: a table belongs to one thread at a time (the node runtime guards it with a mutex).
 * This file is part of the pure core: no system calls.
 */
#ifndef UDSM_LOCK_H
#define UDSM_LOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LK_TAG_MAX ((1ull << 56) - 1) /* tags fit in 56 bits (LOCK_ADOPT packs the node) */

struct lk_who {
	unsigned node;
	uint64_t tag;
};

struct lk_ops {
	/* The lock at @off is granted to @who; @odead: its previous holder died holding it. */
	void (*grant)(void *ctx, uint64_t off, struct lk_who who, bool odead);
};

/* Results of lk_request(). */
enum lk_res {
	LK_GRANTED = 0, /* @who holds the lock now (ops->grant is not called) */
	LK_QUEUED = 1,  /* @who waits; ops->grant tells when it gets the lock */
	LK_BUSY = 2,    /* a try request on a held lock: nothing changed */
};

struct lk_table;

/** lk_create() - an empty table; 0, -EINVAL or -ENOMEM. */
int lk_create(const struct lk_ops *ops, void *ctx, struct lk_table **out);
/** lk_destroy() - free the table (NULL is fine). */
void lk_destroy(struct lk_table *t);

/**
 * lk_request() - @who asks for the lock at @off (@try: answer LK_BUSY rather than queue).
 * Returns an enum lk_res (on LK_GRANTED, *@odead says whether the previous holder died), or
 * -EALREADY if @who already holds or waits for this lock, or -ENOMEM (nothing changed).
 */
int lk_request(struct lk_table *t, uint64_t off, struct lk_who who, bool try, bool *odead);
/**
 * lk_release() - @who gives the lock at @off up; the head of its queue gets it (ops->grant).
 * @odead: @who gives up without finishing (it is closing): the next holder is told, as if
 * it had died. Returns 0, or -EPERM if @who does not hold the lock (nothing changed).
 */
int lk_release(struct lk_table *t, uint64_t off, struct lk_who who, bool odead);
/** lk_cancel() - take @who out of the queue of the lock at @off; 0, or -ENOENT if it does not
 *  wait there (it may hold it). */
int lk_cancel(struct lk_table *t, uint64_t off, struct lk_who who);
/**
 * lk_node_gone() - node @node is gone: its waiters leave every queue; every lock it holds
 * goes to the next waiter (ops->grant), marked "previous holder died" if @died (a crash; a
 * node that left on purpose had nothing left to protect). Returns the locks it held.
 */
size_t lk_node_gone(struct lk_table *t, unsigned node, bool died);
/**
 * lk_adopt() - take over one entry of a leaving home, entries in the order lk_export() gives
 * them. @holder: @who held the lock (first entry of a lock); otherwise @who waits, after the
 * waiters adopted before it. @odead: the lock carries the "previous holder died" mark (then
 * @who may be none: node == LK_NODE_NONE, a free lock with the mark). A waiter adopted onto a
 * lock with no holder (its holder was gone before the hand-over reached us) is granted at
 * once (ops->grant). Returns 0, -EEXIST (a holder for a lock that has one, or @who is already
 * in it), -EINVAL (a waiter with no entry or the node none), or -ENOMEM.
 */
#define LK_NODE_NONE 0xffu
int lk_adopt(struct lk_table *t, uint64_t off, struct lk_who who, bool holder, bool odead);
/**
 * lk_export() - every entry, for a hand-over: @emit(@arg, off, who, holder, odead) for the
 * holder (or, for a free lock with the mark, node LK_NODE_NONE) then each waiter in order.
 * Returns the number of locks.
 */
size_t lk_export(const struct lk_table *t,
		 void (*emit)(void *arg, uint64_t off, struct lk_who who, bool holder, bool odead),
		 void *arg);
/** lk_prune() - forget every lock for which @keep(@arg, off) is false, without granting
 *  anything (their home is gone: nobody can ask for them any more). Returns how many. */
size_t lk_prune(struct lk_table *t, bool (*keep)(void *arg, uint64_t off), void *arg);
/** lk_clear() - forget every lock (a fence, or after a hand-over). */
void lk_clear(struct lk_table *t);

/* Introspection, for tests and the simulator. */
struct lk_view {
	bool held, odead;
	struct lk_who holder;
	size_t queued;
};
/** lk_get() - the state of the lock at @off (a lock not in the table is free, unmarked). */
void lk_get(const struct lk_table *t, uint64_t off, struct lk_view *v);
/** lk_waiter() - the @i-th waiter of the lock at @off; false if there is none. */
bool lk_waiter(const struct lk_table *t, uint64_t off, size_t i, struct lk_who *who);
/** lk_count() - locks in the table. */
size_t lk_count(const struct lk_table *t);
/** lk_check() - verify the invariants; NULL, or what is wrong. */
const char *lk_check(const struct lk_table *t);

#endif /* UDSM_LOCK_H */
