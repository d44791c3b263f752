/* SPDX-License-Identifier: MIT */
/*
 * engine.h - the MSI protocol engine of one node: a pure, single-threaded state machine.
 *
 * Events go in (a local fault, a message from a peer, a peer lost, a barrier); actions come out
 * through struct eng_ops (send a message, install a page read-only or writable, write-protect,
 * drop, wake, poison). The engine makes no system calls: the node runtime (src/node.c) drives
 * it with userfaultfd and TCP, the simulator (tests/unit/test_sim.c) with arrays and queues.
 *
 * Each node plays two roles for every page:
 *  - requester: it keeps the page's local MSI state (I, S, M and the transient IS_D, IM_D,
 *    SM_A) and asks the page's home for access when a fault needs it;
 *  - home (for the pages the home map (core/place.h) gives this node, and the pages of nodes
 *    that left and named this node as successor): it keeps the directory entry (owner,
 *    sharers, a copy of the latest contents while nobody owns the page) and serialises
 *    every request for the page, queueing those that meet a busy entry.
 * docs/PROTOCOL.md has the tables; keep them in sync with engine.c.
 *
 * Locking: an engine belongs to one thread. Only eng_state(), eng_stats(), eng_home() and
 * eng_home_run() may be called from other threads (they read with relaxed atomics, the home
 * map under a spin lock the engine takes only while it changes the map).
 */
#ifndef UDSM_ENGINE_H
#define UDSM_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/wire.h"
#include "udsm.h"

/* Local (requester-side) state of a page. */
enum eng_state {
	ENG_I = 0,    /* Invalid: no copy here */
	ENG_S = 1,    /* Shared: read-only copy */
	ENG_M = 2,    /* Modified: the only copy, writable */
	ENG_IS_D = 3, /* was I, GET_S sent, waiting for DATA */
	ENG_IM_D = 4, /* was I, GET_M sent, waiting for DATA */
	ENG_SM_A = 5, /* was S (copy kept), GET_M sent, waiting for GRANT (or INV then DATA) */
	ENG_LOST = 6, /* the page cannot be served any more (its home or owner died): poisoned */
	ENG_NSTATES_
};

/* Actions out. Every callback gets eng_config.ctx. Page numbers are < npages. */
struct eng_ops {
	/* Queue @m (and, if m->len, m->len bytes at @data) to node @dst != self. Must copy
	 * @data before returning: the engine may change the page right after. */
	void (*send)(void *ctx, unsigned dst, const struct wire_msg *m, const void *data);
	/* Make @page present with @data (NULL: zeros), writable or write-protected, and wake
	 * the threads waiting on it. */
	int (*install)(void *ctx, uint64_t page, const void *data, bool writable);
	/* Write-protect the present, writable @page. */
	int (*protect)(void *ctx, uint64_t page);
	/* Optional (NULL: none). A batch: the engine is about to give up (write-protect, then
	 * read) each page @page + i with bit i set in the WIRE_SET_BYTES bitmap @bm, all present
	 * and writable here. Write-protect and read them now, a run of pages per system call;
	 * until stage_end(), protect() of a staged page only marks it and page_data() of a
	 * marked one returns what was read. stage_end() makes the staged pages the engine did
	 * not protect writable again (the engine's state says they still are). */
	void (*stage)(void *ctx, uint64_t page, const uint8_t *bm);
	void (*stage_end)(void *ctx);
	/* Make the present, write-protected @page writable and wake its waiters. */
	int (*unprotect)(void *ctx, uint64_t page);
	/* Drop @page's copy: the next access faults as missing. */
	int (*drop)(void *ctx, uint64_t page);
	/* The contents of the present @page (readable without faulting). */
	const void *(*page_data)(void *ctx, uint64_t page);
	/* This node gives up @page, present and Modified here (its next access must fault as
	 * missing): drop it and return its contents as they were when it went, valid until the
	 * next call of an op, in one step where the runtime can; NULL where it cannot, and then
	 * nothing was done (the engine write-protects, reads, then drops). May be NULL. */
	const void *(*take)(void *ctx, uint64_t page);
	/* Wake threads waiting on @page (a stale fault). */
	int (*wake)(void *ctx, uint64_t page);
	/* Make every access to the absent @page raise SIGBUS, and wake its waiters. */
	int (*poison)(void *ctx, uint64_t page);
	/* The barrier this node entered completed: 0, or UDSM_EPEER. */
	void (*barrier_done)(void *ctx, int err);
	/* A log line (no newline); @level is an enum udsm_log_level. May be NULL. */
	void (*log)(void *ctx, int level, const char *msg);
	/* Statistics (docs/STATS.md); both may be NULL. @moved: at the home, @page (or the right
	 * to write it) goes to node @to, from owner @from (0xff: from the home's copy or a
	 * grant), which said in @warg what it changed (core/written.h; 0: unknown). @written:
	 * at an owner giving @page up with contents @data (NULL: zeros), the warg to send. */
	void (*moved)(void *ctx, uint64_t page, unsigned from, unsigned to, uint64_t warg);
	uint64_t (*written)(void *ctx, uint64_t page, const void *data);
	/* This node leaves and hands over to @succ: send what else it homes (the lock table,
	 * src/locks.c) now, ahead of the engine's ADOPT_DONE and BYE. May be NULL. */
	void (*handover)(void *ctx, unsigned succ);
	/* Flow control of this node's leave, which may hand over far more than a link may hold
	 * at once: how many more bytes may be queued toward @dst now. When it says 0 the leave
	 * stops (eng_paced() names @dst) until eng_resume() or any other event; it may overshoot
	 * by one message. May be NULL: no bound. */
	size_t (*room)(void *ctx, unsigned dst);
};

struct eng_config {
	unsigned self;      /* this node's id, < nodes */
	unsigned nodes;     /* cluster size, 1..UDSM_MAX_NODES */
	uint64_t npages;    /* pages in the region */
	uint32_t page_size; /* bytes per page */
	int readahead;      /* max pages fetched ahead of a sequential read miss; <0: none */
	bool no_migratory;  /* never hand a page over writable on a read (textbook MSI) */
	/* The default home layout (core/place.h): chunks of this many pages dealt round robin,
	 * page p has origin (p / home_chunk) % nodes. 0 or 1: page % nodes. Every node of a
	 * cluster must use the same value. */
	uint32_t home_chunk;
	bool no_forward;    /* as a home, fetch a third party's page through us (4 hops)
			       instead of having its owner forward it (tests, measurement) */
	/* The most page contents a home puts in one DATA_SET, whatever the requester asked
	 * (the runtime's bound on what it queues toward a peer); the set's pages beyond are
	 * declined. 0: WIRE_SET_PAGES. */
	uint32_t set_pages;
	const struct eng_ops *ops;
	void *ctx;
};

struct eng;

/** eng_create() - a node engine; 0, -EINVAL or -ENOMEM. */
int eng_create(const struct eng_config *cfg, struct eng **out);
/** eng_destroy() - free the engine (NULL is fine). */
void eng_destroy(struct eng *e);

/**
 * eng_fault() - an application thread faulted on @page (for writing if @write).
 * Starts a request, joins one in flight (the thread is woken when it completes), wakes the
 * thread if the fault is stale, or poisons if the page is lost. 0 or -EINVAL.
 */
int eng_fault(struct eng *e, uint64_t page, bool write);

/**
 * eng_recv() - a message from peer @src.
 * Returns 0, or UDSM_EPROTO if the message is malformed or impossible in the current state
 * (eng_why() says why): the caller must then drop the connection and call eng_peer_lost().
 */
int eng_recv(struct eng *e, unsigned src, const struct wire_msg *m);

/**
 * eng_peer_lost() - node @node is gone (crashed, disconnected or left). Requests it can no
 * longer answer are poisoned, directory entries it owned are marked lost, barriers fail.
 */
void eng_peer_lost(struct eng *e, unsigned node);

/**
 * eng_peer_left() - node @node left on purpose without a hand-over (no BYE reached us; the
 * node runtime routes BYE through eng_recv()). As eng_peer_lost() for its pages, but barriers
 * go on among the remaining nodes unless it collected them.
 */
void eng_peer_left(struct eng *e, unsigned node);

/**
 * eng_leave() - leave the cluster without losing anything (docs/PROTOCOL.md, "Leaving"):
 * pages held Modified go back to their homes, the pages this node homes go to a successor,
 * then BYE goes to every peer. The application must not touch the region any more (a fault
 * from now on only wakes its thread). The hand-over needs messages to flow: keep feeding
 * events until eng_left(). It waits for our own requests in flight and for another node's
 * leave that we acknowledged. The hand-over goes out in steps as ops->room allows: the node
 * calls eng_resume() when the link eng_paced() names has drained. A pending barrier fails
 * with UDSM_ECLOSED.
 * Returns 0, or -EALREADY if called before.
 */
int eng_leave(struct eng *e);
/** eng_left() - the hand-over is complete and BYE was sent: the node may close its links. */
bool eng_left(const struct eng *e);
/** eng_paced() - the node toward which our leave waits for room (ops->room said 0), or -1. */
int eng_paced(const struct eng *e);
/** eng_resume() - output toward the node eng_paced() named drained: go on with the leave. */
void eng_resume(struct eng *e);
/** eng_leave_moved() - grows while our leave makes progress (a PUTM or ADOPT out, a
 *  LEAVE_ACK in): a bound on a leave should be on the time without progress. */
uint64_t eng_leave_moved(const struct eng *e);

/** eng_barrier() - enter the next barrier; ops->barrier_done reports its end.
 *  0, -EBUSY if one is pending, or UDSM_EPEER once a node was lost. */
int eng_barrier(struct eng *e);
/** eng_barrier_mode() - as the barriers' coordinator, what its releases tell every node about
 *  waiting in the next barrier: 1 poll, 0 sleep, -1 nothing (the default). A waiting
 *  strategy only: nothing in the protocol depends on it.
 *  eng_barrier_told() - what the last release this node got said (-1: nothing, or none yet).
 *  eng_barrier_coord() - whether this node collects the barriers now. */
void eng_barrier_mode(struct eng *e, int mode);
int eng_barrier_told(const struct eng *e);
bool eng_barrier_coord(const struct eng *e);
/** eng_barrier_from() - the peer whose BARRIER_DONE ends the barrier this node entered
 *  (its arrival sent), or -1: none pending, this node collects it, or it waits for a
 *  leaver's successor. */
int eng_barrier_from(const struct eng *e);

/** eng_state() - local state of @page (enum eng_state); thread-safe. */
int eng_state(const struct eng *e, uint64_t page);
/** eng_home() - the home node of @page (following the successors of nodes that left);
 *  thread-safe. */
unsigned eng_home(const struct eng *e, uint64_t page);
/** eng_in_transition() - @node (not this one) announced its leave and has not said BYE yet:
 *  what it homes is being handed over; hold messages for it back until it ends. */
bool eng_in_transition(const struct eng *e, unsigned node);
/** eng_home_run() - the end of @page's segment of the home map: every page of [page, end)
 *  has the home of @page (a chunk of the default layout, a node's share of a placed block);
 *  thread-safe. A run of pages cut at these ends goes to one home per piece. */
uint64_t eng_home_run(const struct eng *e, uint64_t page);
/** eng_alive() - whether node @node is still part of the cluster as far as we know. */
bool eng_alive(const struct eng *e, unsigned node);
/** eng_stats() - the engine's counters (protocol fields of struct udsm_stats). */
void eng_stats(const struct eng *e, struct udsm_stats *st);
/** eng_why() - the reason of the last UDSM_EPROTO. */
const char *eng_why(const struct eng *e);
/** eng_state_name() - "I", "S", "M", "IS_D", ... */
const char *eng_state_name(int state);

/* Introspection for tests and the simulator. */
struct eng_dir_view {
	uint64_t sharers;
	int owner; /* -1: none */
	int busy;  /* 0, WIRE_GET_S or WIRE_GET_M */
	int queued;
	bool zero, lost, has_copy;
	const void *copy;
	int fwd_req; /* a forward to this requester is in progress; -1: none */
};
/** eng_dir() - the directory entry of @page, which must be homed here; 0 or -EINVAL. */
int eng_dir(const struct eng *e, uint64_t page, struct eng_dir_view *v);
/** eng_quiescent() - no request in flight or kept back, no busy directory entry, no queued
 *  or stashed message, no leave in progress. */
bool eng_quiescent(const struct eng *e);
/** eng_page_buffers() - page buffers in use (home copies, queued local messages) in *@used,
 *  and in all the slabs kept, cut or not, in *@kept (engine.c, "Page buffers"). */
void eng_page_buffers(const struct eng *e, uint64_t *used, uint64_t *kept);

/* ---- Re-homing a range (the allocator's collective calls; see engine.c) ------------------ */

/**
 * eng_freeze() - stop starting requests for pages [first, first + count): a fault that needs
 * one is kept until eng_thaw(), read-ahead passes over them. One range at a time.
 * 0, -EINVAL (bad range) or -EBUSY (a range is frozen already).
 */
int eng_freeze(struct eng *e, uint64_t first, uint64_t count);
/** eng_frozen_quiet() - no request of ours for the frozen range is in flight and no leave
 *  is in progress: this node may enter the barrier before eng_rehome(). */
bool eng_frozen_quiet(const struct eng *e);
/**
 * eng_rehome() - home the frozen range by @policy from now on (PLACE_* of core/place.h: a
 * node id, PLACE_BLOCK, PLACE_CYCLIC, PLACE_DEFAULT): this node's copies of its pages are
 * dropped without being written back and the entries it holds for them are reset, so the
 * range reads as zeros. Only once every node froze the range and was quiet (a barrier).
 * 0, -EINVAL (no frozen range, bad policy), -EAGAIN (not quiet yet: call again after more
 * events), -ENOMEM (nothing changed).
 */
int eng_rehome(struct eng *e, int policy);
/** eng_thaw() - end the freeze; the faults it kept are served now. */
void eng_thaw(struct eng *e);

/* ---- Fencing (connection/liveness layer; implemented at the end of engine.c) ---------- */

/**
 * eng_fence() - this node cannot be trusted with the region any more: its peers declared it
 * dead (expelled), or the application dropped or unmapped pages behind its back. Every page
 * becomes LOST: present copies are dropped; the caller then poisons the whole region with one
 * range operation (accesses raise SIGBUS, waiting threads wake); every other
 * node counts as gone; the directory, home queues and local queue are discarded; a pending
 * barrier fails with UDSM_EPEER and later ones fail too. Sends nothing: the caller has closed
 * every connection.
 */
void eng_fence(struct eng *e);

#endif /* UDSM_ENGINE_H */
