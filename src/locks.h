/* SPDX-License-Identifier: MIT */
/*
 * locks.h - address-named locks of one node (udsm_lock(), udsm_trylock(), udsm_unlock()):
 * the requester side (this node's threads, their waits and the locks they hold), the home
 * side (src/core/lock.c, for the locks whose address lies in a page homed here) and the
 * messages between them (docs/PROTOCOL.md, "Locks").
 *
 * Threads: application threads take a lock homed here without the service thread; for a
 * lock homed elsewhere they queue a message for the service thread and sleep until it
 * delivers the answer. The service thread feeds in the lock messages and the peers' fates
 * and sends what is queued (lockd_pump()). One mutex guards everything here; it is a leaf
 * (nothing else is locked while it is held).
 */
#ifndef UDSM_LOCKS_H
#define UDSM_LOCKS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/wire.h"

struct udsm;
struct lockd;

/** lockd_create() - the lock service of node @d (engine created); 0 or -ENOMEM. */
int lockd_create(struct udsm *d, struct lockd **out);
/** lockd_destroy() - free (NULL is fine). No thread may be inside a lock call. */
void lockd_destroy(struct lockd *lk);

/** lockd_type() - whether messages of @type belong here rather than to the engine. */
static inline bool lockd_type(unsigned type)
{
	return type >= WIRE_LOCK_REQ && type <= WIRE_LOCK_ADOPT;
}

/* Service thread. */
/** lockd_recv() - a lock message from peer @src: 0, or UDSM_EPROTO (lockd_why() says why). */
int lockd_recv(struct udsm *d, unsigned src, const struct wire_msg *m);
const char *lockd_why(const struct udsm *d);
/** lockd_pump() - send queued lock messages whose destination is settled, handle kept-back
 *  ones whose home's hand-over ended, fail waits on dead homes. After every event batch.
 *  -ENOMEM: a lock message could not be queued for want of memory, so a thread here or
 *  elsewhere would wait for it forever; the caller must fence this node (its peers then
 *  treat its locks as those of a dead node). 0 otherwise. */
int lockd_pump(struct udsm *d);
/** lockd_peer_gone() - peer @n is gone: crashed or lost (@died) or left with a BYE. */
void lockd_peer_gone(struct udsm *d, unsigned n, bool died);
/** lockd_handover() - engine op: this node leaves; its lock table goes to @succ (LOCK_ADOPT,
 *  sent now, ahead of the engine's ADOPT_DONE and BYE). */
void lockd_handover(void *ctx, unsigned succ);
/** lockd_rehomed() - pages [first, first + count) changed homes (udsm_coalloc/udsm_cofree;
 *  their contents were reset): locks there were not to be in use; any that were are forgotten
 *  (waits fail and unlocks report UDSM_EPEER). */
void lockd_rehomed(struct udsm *d, uint64_t first, uint64_t count);
/** lockd_died() - whether node @n died (was lost, not left) as far as this node knows.
 *  Thread-safe (the allocator asks it about the holder of its heap lock). */
bool lockd_died(struct udsm *d, unsigned n);
/** lockd_fence() - this node is fenced: every lock state here is void; waits fail. */
void lockd_fence(struct udsm *d);
/** lockd_stopped() - the service thread ends: every wait fails with UDSM_ECLOSED. */
void lockd_stopped(struct udsm *d);

/* Application thread. */
/** lockd_close() - udsm_close() begins (before the service thread stops): waits fail with
 *  UDSM_ECLOSED, locks still held are given up (their next holders get UDSM_EPEER), and it
 *  returns once no thread is inside udsm_lock()/udsm_trylock(). */
void lockd_close(struct udsm *d);

#endif /* UDSM_LOCKS_H */
