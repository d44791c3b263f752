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

#include "core/engine.h"
#include "core/wire.h"
#include "os/uffd.h"
#include "stats.h"
#include "udsm.h"

/*
 * A connection to one peer.
 * Invariant: fd < 0  <=>  the peer is gone (never connected, lost or left).
 * Locking: owned by the thread running udsm_open() until the service thread starts, then by
 * the service thread.
 */
struct peer {
	int fd;
	struct wire_dec dec;
	uint8_t *out; /* bytes queued for the socket: [out_off, out_len) */
	size_t out_len, out_off, out_cap;
	bool pollout; /* EPOLLOUT registered */
	/* A FETCH or INV for a page this node got moments ago, held back (with everything
	 * after it from this peer: links stay FIFO) until held_until. */
	bool has_held;
	struct wire_msg held;
	uint64_t held_until;
	char addr[WIRE_ADDR_MAX + 1];
};

enum bar_state { BAR_IDLE, BAR_REQUESTED, BAR_WAITING, BAR_DONE };

struct udsm {
	/* Fixed after udsm_open(); readable from any thread. */
	uint8_t *base;
	size_t size, ps;
	uint64_t npages;
	unsigned self, nodes;
	int spin_us, readahead;
	bool migratory;
	uint64_t hold_ns;
	/* Pages recently handed to a waiting thread: direct-mapped, page -> until (ns). */
	struct fresh {
		uint64_t page, until;
	} fresh[256];
	unsigned nheld; /* peers with a held message */
	/* A run of installs staged for one UFFDIO_COPY (node.c): pages run_first.. */
	uint8_t *run_buf;
	uint64_t run_first;
	size_t run_n;
	bool run_wp;

	struct uffd uffd;
	struct eng *eng;
	/* The service thread reads the region through /proc/self/mem (memfd >= 0) into
	 * safe_buf, so that a page the application dropped behind our back (madvise) reads as an
	 * error instead of a fault the service thread would wait on forever (node_fence()). */
	int memfd;
	uint8_t *safe_buf;
	bool fence_pending, fenced;
	char fence_why[160];
	struct peer peers[UDSM_MAX_NODES];
	int listen_fd, epfd, evfd;
	uint64_t dirty; /* peers with queued output */

	pthread_t thread;
	bool thread_started;

	/* Shared between application threads and the service thread. Locking: mu. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	enum bar_state bar;
	int bar_result;
	bool quit, stopped;

	/* Runtime counters (the engine keeps the protocol ones); relaxed atomics. */
	struct udsm_stats st;
	struct stats *stats; /* latency, hot pages, report (stats.h); NULL: none */
};

#define UDSM_REGION_MAX ((uint64_t)64 << 30) /* 64 GiB: 16 M pages of engine state */
#define RUN_MAX 64 /* pages per batched UFFDIO_COPY */
#define NODE_STAT_ADD(d, f, n) __atomic_fetch_add(&(d)->st.f, (n), __ATOMIC_RELAXED)

/** node_engine_init() - create the engine once self/nodes/npages are known. */
int node_engine_init(struct udsm *d);
/** node_start() - start the service thread (the cluster is formed). */
int node_start(struct udsm *d);
/** node_stop() - tell peers we leave, stop and join the service thread. */
void node_stop(struct udsm *d);
/** node_barrier() - see udsm_barrier(). */
int node_barrier(struct udsm *d);
/** node_fence() - cut this node off the cluster as if it had crashed (see node.c). Service
 *  thread only. */
void node_fence(struct udsm *d);
/** node_peer_close() - close a peer's connection and free its buffers (no engine call). */
void node_peer_close(struct peer *p);

/** cluster_form() - map the region and connect the cluster (the body of udsm_open()). */
int cluster_form(struct udsm *d, const struct udsm_config *cfg);

#endif /* UDSM_NODE_H */
