/* SPDX-License-Identifier: MIT */
/*
 * bench.h - shared definitions of udsm-bench (see udsm-bench.c for the overview and
 * docs/PERFORMANCE.md for the methodology).
 *
 *   udsm-bench.c  options, starting the node processes, the table, JSON lines and ratios
 *   work.c        what every node of a cluster runs: the workloads, timed on node 0
 *   floor.c       the floors: raw loopback TCP and raw userfaultfd round trips
 *   util.c        clocks, percentiles, CPU placement, result records
 */
#ifndef UDSM_BENCH_H
#define UDSM_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "udsm.h"

#define BENCH_VERSION 1u

/* Workloads, as bits of struct params.work (and names for --only). */
enum {
	W_FLOOR = 1u << 0,
	W_READ = 1u << 1,
	W_WRITE = 1u << 2,
	W_UPGRADE1 = 1u << 3,
	W_ZERO = 1u << 4,
	W_PINGPONG = 1u << 5,
	W_FALSE = 1u << 6,
	W_SCAN = 1u << 7,
	W_BARRIER = 1u << 8,
	W_UPGRADE3 = 1u << 9,
	W_ALL_ = (1u << 10) - 1,
	/* Not a workload of --only: the round-trip floors alone (TCP 4 KiB and 16 B, uffd; both
	 * regimes), for the extra rounds of the 2-node latency targets (--rounds). */
	W_FLOOR_RT = 1u << 10,
};

/* One figure. Fields that do not apply are NaN and come out as JSON null. */
struct result {
	char bench[40];
	char placement[200];
	char note[120];
	uint32_t nodes;
	int32_t spin_us;
	uint64_t n;		/* samples (latency figures) or operations */
	double p50, p90, p99, max, mean; /* microseconds */
	double msgs_per_op, bytes_per_op, wakeups_per_op;
	double mb_s;		/* bandwidth figures: 10^6 bytes per second */
	double ops_s;		/* throughput figures */
	double zero_frac;	/* zero-page figures: zero_pages_in / samples */
	double xfers_per_op;	/* false sharing: ownership transfers per operation */
	double svc_cpu_us_per_op; /* CPU of all nodes' service threads (spinning included) */
	double app_cpu_us_per_op; /* CPU of node 0's application thread */
	double install_us_per_op; /* node 0's service thread in UFFDIO_COPY (udsm_stats2) */
	double svc0_cpu_us_per_op, svc1_cpu_us_per_op; /* the scan: each node's service thread */
	/* The library's own view of the window on node 0 (udsm_stats2 deltas): the latency of
	 * the miss kind the figure exercises, from the service thread's read of the fault to
	 * the waiter's wake-up. lib_kind "": none. */
	char lib_kind[16];
	uint64_t lib_n;
	double lib_p50, lib_p99, lib_mean; /* microseconds */
	uint64_t lib_buckets[UDSM_LAT_BUCKETS];
	/* bench "hot_page": one of node 0's hottest pages (udsm_hot_pages()); n = transfers. */
	uint64_t hot_page, hot_nodes, hot_writers;
	int32_t hot_fs;
	uint32_t hot_disjoint, hot_overlap;
	char hot_ranges[160];
};

/* Where node 0 sends its figures: a pipe to the parent (fork mode) or an array (manual). */
struct sink {
	int fd;
	struct result *r;
	size_t n, cap;
};

/* Run parameters; node 0 publishes them in the region for the other nodes. */
struct params {
	uint64_t magic;
	uint32_t version;
	uint32_t work;		/* W_* bits to run in this cluster */
	uint32_t iters;		/* samples per latency figure (per home variant) */
	uint32_t floor_iters;
	uint32_t bar_iters;
	uint32_t pp_iters;	/* ping-pong round trips */
	uint32_t fs_ops;	/* false sharing: stores per node */
	uint32_t progress;	/* node 0 prints progress to stderr */
	uint64_t scan_pages;
	int32_t spin_us;
	int32_t readahead;
	uint32_t loopback;	/* fork mode: every node is on this host */
	uint32_t pad;
};
/* How long the floors poll before they sleep, in the polling regime (unless --spin says). */
#define FLOOR_POLL_US 50

#define PARAMS_MAGIC 0x48434e4542534455ull /* "UDSBENCH" */

/* CPU placement of one node: the application thread and the service thread; -1 = any. */
struct pin {
	int app, svc;
};

/* util.c */
uint64_t now_ns(void);
void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
void warnx_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void *xcalloc(size_t n, size_t size);
int cmp_u64(const void *a, const void *b);
/* Fill @r's percentiles from @ns (sorted in place; nanoseconds in, microseconds out). */
void summarize(struct result *r, uint64_t *ns, size_t n);
void result_init(struct result *r, const char *bench, unsigned nodes, int spin_us);
void sink_emit(struct sink *s, const struct result *r);
/* Fill @r's lib_* fields from the histogram of @kind between snapshots @a and @b (a later). */
void lib_latency(struct result *r, const char *kind, const struct udsm_latency *a,
		 const struct udsm_latency *b);
/* CPUs this process may run on; returns how many (at most @max). */
int allowed_cpus(int *cpus, int max);
int pin_self(int cpu);
/* Pin every thread of this process but the caller (udsm's service thread) to @cpu. */
int pin_others(int cpu);
bool is_tty(int fd);

/* floor.c: the raw round trips udsm's costs are compared with. */
struct floor_srv;
/* Start a one-connection-at-a-time TCP responder on @host (port 0) pinned to @cpu. It serves
 * until a client sends STOP. @addr receives "host:port". */
int floor_srv_start(struct floor_srv **out, const char *host, int spin_us, int cpu, char *addr,
		    size_t alen);
int floor_srv_join(struct floor_srv *s);
/* TCP client from a thread pinned to @cpu: @n round trips of 16 B -> @reply bytes into @ns.
 * @sleeps receives how many waits ended in epoll_wait() sleep rather than the spin, @same_cpu
 * in how many round trips the responder ran on the client's CPU. */
int floor_tcp(const char *addr, int spin_us, int cpu, uint32_t reply, size_t n, uint64_t *ns,
	      uint64_t *sleeps, uint64_t *same_cpu);
/* Bulk TCP throughput from the responder at @addr: @bytes streamed, best of @reps, in 10^6
 * B/s (what a scan's pages could move at, at most). The calling thread is pinned to @cpu. */
int floor_tcp_stream(const char *addr, int cpu, uint64_t bytes, int reps, double *mb_s,
		     double *cpu_ns);
/* Per page, in runs of 256 pages on a private region, from a thread pinned to @cpu: us[0]
 * UFFDIO_COPY, us[1] UFFDIO_WRITEPROTECT, us[2] a /proc/self/mem read, us[3] MADV_DONTNEED. */
int floor_page_ops(int cpu, double us[4]);
/* New memory, @len bytes, in the calling thread: us[0] UFFDIO_COPY per page into a mapping never
 * used, us[1] the same once dropped, us[2] a first store per page into another new mapping,
 * us[3] the first load per page of pages installed read-only into memory at hand, us[4] a load
 * and check of every word of those pages afterwards. */
int floor_new_memory(size_t len, double us[5]);
/* An owner giving up a page it wrote (floor.c): protect, read and drop, or one UFFDIO_MOVE. */
int floor_giveup(bool move, size_t warmup, size_t n, uint64_t *ns);
/* The local address this host uses to reach @toward ("host:port"), as text. */
int floor_local_ip(const char *toward, char *out, size_t len);
/* Tell the responder at @addr to stop. */
int floor_srv_stop(const char *addr);
/* userfaultfd MISSING fault round trips: the calling thread faults, a handler thread pinned to
 * @svc_cpu resolves with UFFDIO_COPY. With @tcp_addr the handler first fetches the page from
 * the responder there (a minimal remote fault); @kind FLOOR_UF_OWNER_WP: the responder flips
 * the write protection of a page of its own before it answers (an owner's downgrade);
 * FLOOR_UF_UPGRADE: the calling thread stores to present write-protected pages, and the
 * handler asks 16 bytes of the responder, then clears the protection (a minimal upgrade,
 * without the sharer's drop). */
enum { FLOOR_UF_FETCH = 0, FLOOR_UF_OWNER_WP = 1, FLOOR_UF_UPGRADE = 2 };
int floor_uffd(int spin_us, int svc_cpu, const char *tcp_addr, int kind, size_t n,
	       uint64_t *ns, uint64_t *sleeps);

/* The smallest remote fault resolved in the faulting thread (UFFD_FEATURE_SIGBUS: the
 * calling thread's SIGBUS handler fetches the page from the responder at @tcp_addr and copies
 * it in): @n faults into @ns, @sleeps of its waits slept. -ENOTSUP without the feature. */
int floor_fault_sigbus(int spin_us, const char *tcp_addr, size_t n, uint64_t *ns,
		       uint64_t *sleeps);

/* floor.c's transfer primitives, which group.c shares. floor_recv_full(): exactly @len
 * bytes, polling for @spin_ns before every read, then sleeping (at most 20 s: -ETIMEDOUT),
 * @sleeps counting the sleeps. floor_ep(): an epoll set of @fd alone. floor_tune():
 * TCP_NODELAY, non-blocking. */
int floor_ep(int fd);
int floor_recv_full(int fd, int ep, void *buf, size_t len, int64_t spin_ns, uint64_t *sleeps);
int floor_send_full(int fd, const void *buf, size_t len);
void floor_tune(int fd);

/* group.c: floors of groups of processes, no DSM (fork mode; run by the parent process before
 * any cluster): the cost of revoking a mapping with the other CPUs idle and busy, a 3-process
 * TCP relay next to the 2-process one, and 8-process barriers (central and dissemination), in
 * both waiting regimes (@poll_us, then sleeping: "_sleep"). Process i runs on CPU @cpu[i % ncpu]
 * (the cluster's placement; ncpu 0: unpinned). Returns 0 or -errno; figures go to @s. */
int group_floors(const int *cpu, unsigned ncpu, int poll_us, size_t iters, struct sink *s);

/* work.c: everything one node of a cluster runs. */
struct node_opts {
	const struct params *p;	/* node 0: the parameters; the others learn them from node 0 */
	const struct pin *pins;	/* placement by node id (cycled); NULL: unpinned */
	unsigned npins;
	unsigned nodes;		/* node 0: cluster size */
	int spin_us;		/* udsm_config.spin_us of this node */
	int readahead;		/* udsm_config.readahead of this node */
	int svc_nice;		/* nice value for the service thread; 0: leave it */
	int hold_us;		/* udsm_config.hold_us of this node */
	const char *listen;	/* node 0: udsm_config.listen (NULL: loopback, any port) */
	const char *join;	/* the other nodes: node 0's address */
	int port_fd;		/* fork mode, node 0: gets "host:port\n" once it listens; else -1 */
	int timeout_ms;		/* the whole node: SIGALRM ends it after this */
	struct sink *sink;	/* node 0: where the figures go */
};
int node_run(const struct node_opts *o);

#endif /* UDSM_BENCH_H */
