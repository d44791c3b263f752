/* SPDX-License-Identifier: MIT */
/*
 * node.h - one node of a cluster: the region, the userfaultfd, the peer connections, the
 * protocol engine and the service thread that drives it (node.c), and the cluster formation
 * that connects everything (cluster.c).
 */
#ifndef UDSM_NODE_H
#define UDSM_NODE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "conn.h"
#include "core/engine.h"
#include "core/fresh.h"
#include "core/wire.h"
#include "os/uffd.h"
#include "os/uring.h"
#include "stats.h"
#include "udsm.h"
#include "wait.h"

/*
 * A connection to one peer.
 * Invariant: fd < 0  <=>  the peer is gone (never connected, lost or left).
 * Locking: owned by the thread running udsm_open() until the service thread starts, then by
 * the service thread.
 */
struct peer {
	int fd;
	struct wire_dec dec;
	struct conn io;  /* output buffer, parked requests (conn.h) */
	uint32_t events; /* epoll events registered for fd (EPOLLIN, EPOLLOUT) */
	bool excl;       /* registered EPOLLEXCLUSIVE: it was lent once (node.c, lend_add()) */
	/* Liveness (node.c): when bytes last came in, when a message last went out, when the
	 * output backlog last moved; in ns, refreshed at the service loop's ticks. */
	uint64_t last_rx, last_tx, tx_moved;
	uint64_t out_mark; /* io.bytes_out at the last tick */
	/* A FETCH or INV for a page this node got moments ago, held back (with everything
	 * after it from this peer: links stay FIFO) until held_until. */
	bool has_held;
	struct wire_msg held;
	uint64_t held_until;
	uint8_t held_set[WIRE_SET_BYTES]; /* a held FETCH_SET's bitmap (held.payload) */
	char addr[WIRE_ADDR_MAX + 1];
};

enum bar_state { BAR_IDLE, BAR_REQUESTED, BAR_WAITING, BAR_DONE };

struct udsm {
	/* Fixed after udsm_open(); readable from any thread. */
	uint8_t *base;
	size_t size, ps;
	uint64_t npages;
	unsigned self, nodes;
	/* The id this node asks node 0 for (its launcher's rank, src/os/env.h), or
	 * WIRE_NODE_ANY for the next free one in order of arrival. Used by cluster_form(). */
	unsigned want_id;
	int spin_us, readahead; /* spin_us: udsm_config.spin_us as given (wait.h) */
	uint32_t home_chunk;    /* the default home layout's chunk (core/place.h) */
	bool migratory;
	uint64_t hold_ns;
	struct fresh fresh; /* pages recently handed to a waiting thread: the hold */
	uint8_t *look_buf;  /* a page read to see whether it was written (fresh_done()) */
	unsigned nheld; /* peers with a held message */
	/* A run of installs staged for one UFFDIO_COPY (node.c): pages run_first.. */
	uint8_t *run_buf;
	uint64_t run_first;
	size_t run_n;
	bool run_wp;

	/* A set's pages write-protected and read at once (eng_ops.stage, node.c): bit i of each
	 * bitmap is page stage_base + i: staged, protected by the engine since, read intact. */
	bool staging;
	uint64_t stage_base;
	uint8_t stage_on[WIRE_SET_BYTES], stage_claim[WIRE_SET_BYTES], stage_ok[WIRE_SET_BYTES];
	uint8_t *stage_buf; /* WIRE_SET_PAGES pages, allocated on first use */
	/* Pages this node holds Modified and write-protected at its last barrier (node.c,
	 * "publishing"): a bit per page; NULL: not done. [dirty_lo, dirty_hi) covers every page
	 * made writable since. */
	uint8_t *clean;
	uint8_t *rewrote; /* published, then written here again before any other node read it:
			     not published again until another node takes it (node.c) */
	uint64_t dirty_lo, dirty_hi;

	struct uffd uffd;
	struct eng *eng;
	/* The service thread reads the region through /proc/self/mem (memfd >= 0) into
	 * safe_buf, so that a page the application dropped behind our back (madvise) reads as an
	 * error instead of a fault the service thread would wait on forever (fence(), node.c). */
	int memfd;
	uint8_t *safe_buf;
	/* A page this node gives up leaves the region in one step (op_take(), UFFDIO_MOVE) into
	 * one of these NODE_SCRATCH_PAGES slots, registered with the userfaultfd as the kernel
	 * requires; the used slots are dropped together, after the messages that carry them are
	 * queued. NULL: the kernel cannot (before Linux 6.8); scratch_off: it failed once (the
	 * mapping stays until udsm_close(): unmapping a registered range waits for the service
	 * thread to read the unmap event, and would fence it as the region's). */
	uint8_t *scratch;
	unsigned scratch_used;
	bool scratch_off;
	bool fence_pending;
	char fence_why[160];
	struct peer peers[UDSM_MAX_NODES];
	int listen_fd, epfd, evfd;
	uint64_t dirty; /* peers with queued output */
	struct wait wait; /* poll or sleep (wait.h); service thread */
	/* What @wait learnt, for the statistics report (stats.c), which any thread may write:
	 * copied by the service thread with relaxed atomic stores after each sample, read field
	 * by field (a report may mix two samples' values). [0] requests, [1] barriers. */
	struct {
		uint64_t med_ns[2][WAIT_MODES];
		uint32_t n[2][WAIT_MODES];
		uint8_t best[2]; /* WAIT_SPIN or WAIT_BLOCK */
	} wait_view;
	/* cpu_switched_out()'s count, reset (0) when a poll, a request or a barrier wait
	 * starts, and read again before the next yield: a switch before it says nothing about
	 * the poll. One getrusage() per poll that yields; service thread */
	uint64_t switches;
	bool ticking; /* the timers run (tick()): what they send is not hinted */
	/* Flow control and liveness (node.c). Bit per peer. */
	uint64_t doomed;  /* a message to it could not be queued: lose it at the next step */
	uint64_t parking; /* has parked messages or a paused socket: retry when it drains */
	uint64_t rx_seen, tx_seen; /* bytes received from / messages queued to it since the tick */
	size_t peer_buffer_max;    /* bound on bytes queued to one peer */
	uint64_t peer_timeout_ns;  /* a peer silent this long is lost */
	uint64_t tick_ns;          /* heartbeat and liveness check period */
	uint64_t next_tick, last_tick;
	uint64_t last_tick_boot;   /* net_boot_ns() at the last tick: stalls, suspend included */
	bool fenced;               /* expelled: every page is lost, every peer closed */
	struct udsm *next_open;    /* process-wide list of open nodes (api.c, for fork) */

	pthread_t thread;
	bool thread_started;
	/*
	 * The right to run the node: the engine, the sockets, the waiting strategy, everything
	 * above that says "service thread only". The service thread holds it except while it
	 * sleeps in epoll_wait(), and says so in @asleep (atomic). Meanwhile an application
	 * thread that enters a barrier may take it (a trylock) and send its arrival itself: one
	 * eventfd write and one switch to the service thread less (node_barrier); waiting for
	 * the answer on a lent socket (below), it takes it (a wait) to serve what comes there.
	 * Lock order: turn, then mu.
	 */
	pthread_mutex_t turn;
	bool asleep;
	bool poked; /* atomic: a barrier was requested, or lock messages queued (node_kick) */
	/*
	 * A socket lent to the application thread that waits in a barrier (node.c, before
	 * loan_over()): while @lent is a peer, that thread waits for its socket in lend_epfd,
	 * where the answer wakes it and not the service thread, and serves what comes on it.
	 * Whoever ends the loan early writes @lend_evfd (also in lend_epfd). @lend_peer: the
	 * peer whose socket lend_epfd holds (-1: none). Under turn, but the descriptors.
	 */
	int lent, lend_peer;
	int lend_evfd, lend_epfd;
	bool app_holds_turn; /* the thread in turn is the barrier's waiter (barrier_send()) */
	bool lend_written; /* lend_evfd written since a loan_start() last read it */
	bool bar_wake; /* the barrier's waiter is woken once the service thread lets go of turn */
	/* Output for several peers goes out in one system call (flush_all(), os/uring.h); fd -1:
	 * one send() per peer. Under turn. */
	struct uring ring;

	/* Shared between application threads and the service thread. Locking: mu. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	enum bar_state bar;
	int bar_result;
	/* Bumped (atomically, under mu) each time bar becomes BAR_DONE; node_barrier() sleeps on
	 * it with futex_wait() rather than on cv (os/futex.h). */
	uint32_t bar_seq;
	/* Service thread only: commands() is between eng_barrier() and the end of publish();
	 * a barrier that completes meanwhile (this node arrived last) releases its threads
	 * only after publishing, with bar_later_err. */
	bool bar_publishing, bar_later;
	int bar_later_err;
	/* A re-homing step (node_rehome) for the service thread: rh_op != 0 until it is done,
	 * then rh_result; rh_started belongs to the service thread. */
	int rh_op, rh_policy, rh_result;
	uint64_t rh_first, rh_count;
	bool rh_started, rh_done;
	bool quit, stopped;

	/* Runtime counters (the engine keeps the protocol ones); relaxed atomics. */
	struct udsm_stats st;
	uint64_t installs, installed_pages, install_ns; /* udsm_stats2's, from install_one() */
	struct stats *stats; /* latency, hot pages, report (stats.h); NULL: none */
	struct alloc *alloc; /* the region's allocator (alloc.h); process-local state */
	struct lockd *lockd; /* address-named locks (locks.h) */
	struct tbar *tbar;   /* udsm_barrier_threads() (tbarrier.h) */
};

#define UDSM_REGION_MAX ((uint64_t)64 << 30) /* 64 GiB: 16 M pages of engine state */
#define RUN_MAX 256 /* pages per batched UFFDIO_COPY (a read-ahead set) */
#define NODE_SCRATCH_PAGES 64 /* slots for the pages given up by UFFDIO_MOVE (scratch) */

/* Bytes of the scratch mapping. */
static inline size_t scratch_len(const struct udsm *d)
{
	return (size_t)NODE_SCRATCH_PAGES * d->ps;
}

/* Pages of read-ahead answers that one message may carry toward a peer (a node's window, a
 * home's DATA_SET): two windows in flight stay within a quarter of peer_buffer_max. */
static inline size_t node_burst_pages(const struct udsm *d)
{
	return d->peer_buffer_max / (8 * d->ps);
}

#define NODE_STAT_ADD(d, f, n) __atomic_fetch_add(&(d)->st.f, (n), __ATOMIC_RELAXED)

/** node_engine_init() - create the engine once self/nodes/npages are known. */
int node_engine_init(struct udsm *d);
/** node_start() - start the service thread (the cluster is formed). */
int node_start(struct udsm *d);
/** node_stop() - tell peers we leave, stop and join the service thread. */
void node_stop(struct udsm *d);
/** node_barrier() - see udsm_barrier(). */
int node_barrier(struct udsm *d);
/** node_kick() - wake the service thread (it sends what the lock service queued). Any thread. */
void node_kick(struct udsm *d);
/** node_send() - queue @m (no payload) to peer @dst; service thread only. */
void node_send(struct udsm *d, unsigned dst, const struct wire_msg *m);

/* Steps of re-homing a range of pages (engine.h, eng_freeze): */
enum { NODE_RH_FREEZE = 1, NODE_RH_REHOME = 2, NODE_RH_THAW = 3 };
/**
 * node_rehome() - run one step on the service thread and wait for it: NODE_RH_FREEZE
 * freezes [first, first + count) and returns once this node is quiet for it;
 * NODE_RH_REHOME re-homes it by @policy (once every node is frozen and quiet: the caller's
 * barrier); NODE_RH_THAW ends the freeze. 0 or a negative error (UDSM_ECLOSED on close).
 */
int node_rehome(struct udsm *d, int step, uint64_t first, uint64_t count, int policy);
/** node_peer_close() - close a peer's connection and free its buffers (no engine call). */
void node_peer_close(struct peer *p);

/** node_after_fork_child() - in a child of fork(): close the node's descriptors, forget its
 *  thread. Only close() calls: safe in a pthread_atfork child handler. */
void node_after_fork_child(struct udsm *d);

/** cluster_form() - map the region and connect the cluster (the body of udsm_open()). */
int cluster_form(struct udsm *d, const struct udsm_config *cfg);

#endif /* UDSM_NODE_H */
