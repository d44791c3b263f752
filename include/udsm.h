/* SPDX-License-Identifier: MIT */
/**
 * udsm.h - the public interface of libudsm, an N-node distributed shared memory.
 *
 * Every node of a cluster maps one region at the same virtual address. Plain loads and stores
 * on it are kept sequentially consistent across nodes by the MSI protocol: at any moment a page
 * is writable on exactly one node (Modified) or readable on any number (Shared). Faults are
 * caught with userfaultfd and pages travel over TCP.
 *
 * Conventions:
 *  - Every function that can fail returns 0 (or a non-negative value) on success and a negative
 *    error code on failure: a negated errno value or one of the UDSM_E* codes below. Use
 *    udsm_strerror() to turn one into text.
 *  - The library never prints to stdout and never exits. Diagnostics go through the log
 *    callback (udsm_set_log_func()), which writes to stderr by default.
 *  - Once udsm_open() has returned, any number of application threads may access the region.
 *    The protocol runs on one service thread per node; an application thread runs it only
 *    inside udsm_barrier(), while that thread sleeps (see udsm_barrier()).
 */
#ifndef UDSM_H
#define UDSM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define UDSM_EXPORT __attribute__((visibility("default")))
#else
#define UDSM_EXPORT
#endif

/** Maximum number of nodes in one cluster. */
#define UDSM_MAX_NODES 64

/**
 * Library-specific error codes. They are negative and lie outside the errno range, so a
 * return value is either -errno or one of these.
 */
enum udsm_error {
	UDSM_EPROTO = -1001,   /**< a peer sent a malformed or unexpected message */
	UDSM_EVERSION = -1002, /**< a peer speaks another protocol version or page size */
	UDSM_EPEER = -1003,    /**< a peer this operation needs is gone */
	UDSM_EKERNEL = -1004,  /**< the kernel lacks a userfaultfd feature udsm needs */
	UDSM_ECLOSED = -1005,  /**< the node is closing */
	UDSM_EADDR = -1006,    /**< the region's address is already taken in this process */
	UDSM_EAUTH = -1007,    /**< authentication failed: the secrets differ, or one side has
				    none, or a peer without the secret tried to join */
};

/**
 * Configuration of udsm_open(). A zeroed field means "default" for every field. When @join,
 * @listen and @listen_fd are all unset, the defaults of @join, @listen, @size and @nodes come
 * from the launch environment where it gives them (see udsm_open(): udsm-run, mpirun, srun).
 */
struct udsm_config {
	/** "host:port" this node accepts peers on; port 0 picks any free port. Default
	 *  "127.0.0.1:0" for the first node (rank 0 of a launch: rank 0's address, e.g.
	 *  UDSM_JOIN); for a joiner, the local address of its connection to the first node,
	 *  port 0. */
	const char *listen;
	/** "host:port" of the first node. NULL on the first node. Default (with @listen and
	 *  @listen_fd unset too): the launch environment's rank 0 address for a rank > 0, or
	 *  UDSM_JOIN when no rank is given. */
	const char *join;
	/** Region size in bytes, rounded up to the page size. First node only: joiners learn
	 *  it. Default UDSM_SIZE (when no address is configured), else 1 MiB. */
	size_t size;
	/** Cluster size (including the first node) the first node waits for. First node only.
	 *  Default: the launch environment's size (UDSM_NODES, ...; when no address is
	 *  configured), else 2. At most
	 *  UDSM_MAX_NODES. 1 is a cluster of one: udsm_open() waits for nobody, every page is
	 *  homed here and nothing moves (a program run on one node, to compare with more). */
	unsigned nodes;
	/** Bound on how long udsm_open() waits for the cluster to form, in ms. Default 30000.
	 *  Negative means wait without a bound for the other nodes (for interactive programs);
	 *  a joiner still gives up after 30 s if nothing listens at @join, and any wait ends
	 *  when a connection it waits on closes. */
	int timeout_ms;
	/** Optional: an already bound and listening TCP socket (> 0) to accept peers on, used
	 *  instead of @listen. The library takes ownership of it: it is closed before
	 *  udsm_open() returns, whether it succeeds or fails. */
	int listen_fd;
	/** Optional: called from udsm_open() once the node listens, with the address peers can
	 *  reach it at ("host:port"), before udsm_open() waits for the cluster. */
	void (*on_listen)(void *arg, const char *hostport);
	/** Argument of @on_listen. */
	void *on_listen_arg;
	/** Whether the service thread busy-polls for its next event or sleeps. 0 = automatic
	 *  (the default): it polls only while a thread of this node waits for an answer, and
	 *  only if it measured that polling answers faster than sleeping on this machine;
	 *  positive = poll for that many microseconds after every event; negative = never. */
	int spin_us;
	/** Pages fetched ahead of a sequential read miss, as one batch. 0 = default (adaptive,
	 *  up to 256); negative = no read-ahead. At most peer_buffer_max / (8 x page size):
	 *  two windows of answers in flight stay within a quarter of that bound. */
	int readahead;
	/** How long a node that just received a page for a waiting thread keeps it before it
	 *  answers a request to give it up, in microseconds, so that the woken thread gets to
	 *  make its access (without it, a reader spinning on a page another node writes can
	 *  take the page back before every write, again and again). A page received writable
	 *  (a write miss, a migratory read) is kept, while it is Modified, until its bytes show
	 *  the thread's store, at most 4 times this long. 0 = default (20); negative = none; at
	 *  most 10000 (40 ms for a page received writable). */
	int hold_us;
	/** Migratory sharing: once a page is seen to be read and then written by one node
	 *  after another (a lock, a counter, a turn variable), a read miss on it fetches it
	 *  writable (Modified) in one round trip instead of a read miss plus an upgrade, until a
	 *  reader gives it back unwritten. 0 = default (on); negative = off (plain MSI: a read
	 *  always ends Shared, as s2dsm shows it). */
	int migratory;
	/** The cluster secret every node must hold: @secret_len bytes at @secret, or, with
	 *  @secret_len 0, the NUL-terminated string at @secret. Every connection (to node 0 and
	 *  between joiners) runs a mutual challenge-response keyed from it before anything about
	 *  the cluster is said; a peer that fails it is refused (UDSM_EAUTH on a joiner). The
	 *  library copies what it needs during udsm_open() and keeps no pointer.
	 *  NULL: the environment variable UDSM_SECRET, else the contents of the file named by
	 *  UDSM_SECRET_FILE (refused unless only its owner can read it; one trailing newline
	 *  is dropped). With no secret at all, a node accepts and contacts peers on loopback
	 *  addresses (127.0.0.0/8) only, and warns if asked to listen elsewhere. */
	const void *secret;
	/** Length of @secret in bytes; 0 = @secret is a NUL-terminated string. */
	size_t secret_len;
	/** Bound on the bytes of messages queued toward one peer that its socket has not taken
	 *  yet. Past a sixteenth of it this node stops serving that peer's requests (it keeps
	 *  answering its responses) until the backlog halves; a peer that still lets the queue
	 *  reach the bound (it stopped reading), or a queue that cannot grow for lack of memory,
	 *  costs the connection: the peer is lost exactly as if it had crashed, and no message
	 *  is ever silently dropped. Besides, requests received from a congested peer are
	 *  parked, at most (pages + 128) of them (about 48 bytes each) before its socket is no
	 *  longer read. 0 = default (64 MiB); at least 256 KiB. */
	size_t peer_buffer_max;
	/** Liveness bound in milliseconds: a peer that sends nothing for this long (idle links
	 *  carry a heartbeat every eighth of it) is lost exactly like a crashed one - its
	 *  connection is closed, this node's threads get SIGBUS on pages only it had, barriers
	 *  fail - and is told so (it fences itself if it runs again). A node whose own service
	 *  loop did not run for three quarters of it fences itself (every page LOST) since its
	 *  peers may have declared it dead. A stopped peer is lost between 7/8 of the bound and
	 *  5/4 of it after it stopped; a stall of less than half the bound never costs a node.
	 *  0 = the environment variable UDSM_PEER_TIMEOUT_MS if set, else 10000; at least 1000.
	 *  The default makes a 2 s stall of a loaded or swapping machine, which must never be
	 *  taken for a death, a fifth of the bound (under half, with room for scheduling delays),
	 *  and bounds how long a stopped node keeps the others' threads waiting to 12.5 s. */
	int peer_timeout_ms;
	/** Opt-in: a SIGUSR2 sent to the process makes this node write its statistics report
	 *  (to the target of the environment variable UDSM_STATS; docs/STATS.md). udsm then
	 *  installs a SIGUSR2 handler while such a node is open, and restores the previous
	 *  disposition when the last one closes. 0 = default (off); positive = on. */
	int stats_sigusr2;
	/** The default home layout: which node keeps the directory entry of each page outside
	 *  the blocks of udsm_coalloc() (docs/PROTOCOL.md, "Home map"). Chunks of this many
	 *  pages are dealt round robin: page p is homed at node (p / home_chunk) % nodes, so a
	 *  sequential run of pages shares a home (a scan fetches it in runs, one home at a
	 *  time) while the region still spreads over every node. 1 = page by page (page %
	 *  nodes). First node only: joiners learn it. 0 = the environment variable
	 *  UDSM_HOME_CHUNK if set, else 64 pages (256 KiB with 4 KiB pages: one batched install
	 *  of the node runtime), halved while the region holds fewer than 4 chunks per node. */
	unsigned home_chunk;
};

/** Opaque handle of one node of a cluster. */
struct udsm;

/**
 * udsm_open() - create or join a cluster and map its region.
 * @cfg: configuration; NULL means all defaults (a first node of a 2-node cluster).
 * @out: receives the node handle on success.
 *
 * On the first node (cfg->join == NULL) this maps the region, listens and waits until
 * cfg->nodes - 1 joiners have connected. A joiner connects to cfg->join, learns the region's
 * size and address, and maps it at the same address. Returns once every node has joined and
 * every pair of nodes is connected, or fails after cfg->timeout_ms.
 *
 * Every connection first proves that both ends hold the cluster secret (udsm_config.secret);
 * node 0 reveals nothing about the cluster to a peer that has not.
 *
 * Launch environment. With @cfg NULL, or a @cfg that names no address (@join, @listen and
 * @listen_fd all unset), udsm_open() reads what a launcher set (README, "Launching") for
 * @nodes and @size when zero, and for the role and node id, so that udsm_open(NULL, &d) is
 * all a program started by udsm-run, mpirun or srun needs. A program that names an address
 * forms its cluster its own way and the launch environment is not consulted:
 *  - rank and cluster size, the first pair present: UDSM_RANK and UDSM_NODES (udsm-run);
 *    OMPI_COMM_WORLD_RANK and OMPI_COMM_WORLD_SIZE (Open MPI); PMI_RANK and PMI_SIZE (MPICH);
 *    SLURM_PROCID and SLURM_NTASKS (Slurm). UDSM_NODES alone is just the default of @nodes.
 *  - rank 0's "host:port": UDSM_JOIN; else, for a Slurm rank, the first host of
 *    SLURM_STEP_NODELIST (else SLURM_JOB_NODELIST; forms "host", "h1,h2", "prefix[1-3,5]")
 *    and port 20000 + (SLURM_JOB_ID * 16 + SLURM_STEP_ID) mod 12000.
 *  - UDSM_SIZE: the default of @size, in bytes or with a K, M, G or T suffix (binary).
 *  - UDSM_SECRET / UDSM_SECRET_FILE: see @secret.
 * **The node id is the rank**: rank 0 is the first node and listens on rank 0's address
 * (when one is given); a rank r > 0 joins it and asks node 0 for id r, which node 0 grants, or refuses (both log why; this node gets UDSM_EPROTO) when
 * another node has it or r is not below node 0's @nodes. Without a rank, ids follow the order
 * in which joiners are admitted. Errors, each logged with the variables' names, before any
 * network use (-EINVAL): a malformed number or size; a rank without its size; rank >= size;
 * a size outside 1..UDSM_MAX_NODES; UDSM_NODES or @nodes contradicting the launcher's size;
 * a rank > 0 with no address for rank 0. A rank launched into a cluster of another size
 * than node 0's gets -EINVAL once node 0 answers.
 *
 * Blocks. Returns 0, or a negative error (UDSM_EADDR if the region's address range is taken
 * in this process, UDSM_EAUTH if a peer refused this node's secret or could not prove its
 * own, or without a secret @join is not a loopback address, -ETIMEDOUT, -ECONNREFUSED,
 * UDSM_EKERNEL, -EACCES for a secret file others can read, ...).
 *
 * Every descriptor the library creates is close-on-exec. fork(): the region is mapped
 * MADV_DONTFORK, so a child of fork() does not have it at all - the address range is unmapped
 * in the child, an access there raises SIGSEGV, and the child may map something else there.
 * A pthread_atfork() handler closes, in the child, the peer sockets, listening socket, epoll,
 * event, userfaultfd and /proc/self/mem descriptors of every open node: a child that
 * outlives its parent never keeps the parent's connections alive, so the peers notice the
 * parent's death at once. The child must not use the handle (no udsm_* call with it, not even udsm_close());
 * its copy of the handle's memory is simply abandoned.
 */
UDSM_EXPORT int udsm_open(const struct udsm_config *cfg, struct udsm **out);

/**
 * udsm_close() - leave the cluster and unmap the region, without losing anything.
 * The node hands everything over before it goes (docs/PROTOCOL.md, "Leaving"): the pages it
 * holds Modified go back to their homes, and the pages it is home for (with their contents
 * and who holds them) move to a successor among the remaining nodes, which from then on is
 * their home; if node 0 leaves, its successor collects barriers. The others go on reading,
 * writing and entering barriers as before. This takes a few round trips, and as long as what it
 * hands over takes to go out (paced by the links); it waits for another node's leave in
 * progress, and gives up after 10 s without progress (then what this node homed or held
 * Modified is lost to the others, as in a crash, and their barriers fail from then on).
 * Call it after a barrier (or otherwise once no other node depends on this one's progress).
 * No thread may access the region or be inside udsm_barrier() during or after it (one that
 * is gets UDSM_ECLOSED). If every other node is leaving too, there is nobody to hand over to.
 * A node that was fenced (expelled by its peers, see peer_timeout_ms) has nothing to hand
 * over: it closes at once; its region was all LOST already.
 * Returns 0 or a negative error; the handle is freed in every case.
 */
UDSM_EXPORT int udsm_close(struct udsm *d);

/** udsm_base() - the region's address, the same on every node. Thread-safe. */
UDSM_EXPORT void *udsm_base(const struct udsm *d);
/** udsm_size() - the region's size in bytes (a multiple of the page size). Thread-safe. */
UDSM_EXPORT size_t udsm_size(const struct udsm *d);
/** udsm_page_size() - the coherence unit in bytes (the system page size). Thread-safe. */
UDSM_EXPORT size_t udsm_page_size(const struct udsm *d);
/** udsm_node_id() - this node's id; 0 is the first node. Thread-safe. */
UDSM_EXPORT unsigned udsm_node_id(const struct udsm *d);
/** udsm_nodes() - the number of nodes in the cluster. Thread-safe. */
UDSM_EXPORT unsigned udsm_nodes(const struct udsm *d);

/**
 * udsm_barrier() - wait until every node has called udsm_barrier().
 * Collective: every node calls it the same number of times; at most one thread per node may
 * be inside it at once (another gets -EBUSY). Blocks until all nodes arrive, a node is lost
 * (UDSM_EPEER) or the node closes (UDSM_ECLOSED). Not async-signal-safe; and a signal
 * handler that interrupts it must not touch the region: while the service thread sleeps,
 * the calling thread sends the arrival and serves what comes from the node that answers
 * (the answer included) on the service thread's behalf, which then cannot serve that fault.
 * Do not cancel a thread inside it (pthread_cancel()): a barrier cut short
 * leaves the node's barrier busy, and later calls return -EBUSY.
 */
UDSM_EXPORT int udsm_barrier(struct udsm *d);

/** udsm_strerror() - text of an error code returned by this library. Thread-safe. */
UDSM_EXPORT const char *udsm_strerror(int err);

/** MSI state of a page on this node, as udsm_page_state() reports it. */
enum udsm_page_state {
	UDSM_INVALID = 0,  /**< not present here: an access faults */
	UDSM_SHARED = 1,   /**< readable here; a write faults */
	UDSM_MODIFIED = 2, /**< readable and writable here, and nowhere else */
	UDSM_LOST = 3,     /**< lost with a dead node: an access raises SIGBUS */
};

/**
 * udsm_page_state() - the MSI state of page @page on this node at this instant.
 * A page with a request in flight reports the state it has now. Thread-safe.
 * Returns an enum udsm_page_state, or -EINVAL if @page is out of range.
 */
UDSM_EXPORT int udsm_page_state(const struct udsm *d, size_t page);

/**
 * udsm_page_home() - the node that keeps the directory entry of @page: as the home map says
 * (udsm_config.home_chunk for the default layout; a udsm_coalloc() block's placement), or,
 * once that node left, the node that took its pages over (udsm_close). Thread-safe.
 * Returns the node id, or -EINVAL if @page is out of range.
 */
UDSM_EXPORT int udsm_page_home(const struct udsm *d, size_t page);

/** Counters of one node, all since udsm_open(). Read with udsm_stats(). */
struct udsm_stats {
	uint64_t faults;         /**< page faults taken by application threads */
	uint64_t read_faults;    /**< of which on an Invalid page for reading */
	uint64_t write_faults;   /**< of which for writing (Invalid or Shared page) */
	uint64_t requests;       /**< coherence requests this node sent (after coalescing) */
	uint64_t pages_in;       /**< pages installed from a peer or from the home copy */
	uint64_t zero_pages_in;  /**< of which moved as "zero", with no payload */
	uint64_t invalidations;  /**< pages dropped because another node wanted them */
	uint64_t downgrades;     /**< Modified pages made Shared because another node read them */
	uint64_t readahead;      /**< pages fetched ahead of a fault */
	uint64_t msgs_sent;      /**< protocol messages sent to peers */
	uint64_t msgs_recv;      /**< protocol messages received from peers */
	uint64_t bytes_sent;     /**< bytes written to peer sockets */
	uint64_t bytes_recv;     /**< bytes read from peer sockets */
	uint64_t wakeups;        /**< times the service thread slept and was woken */
	uint64_t poisoned;       /**< faults answered with SIGBUS because a node was lost */
};

/**
 * udsm_stats() - copy this node's counters into @st. Thread-safe; the counters are read one by
 * one, so they may be mutually inconsistent by in-flight events.
 */
UDSM_EXPORT void udsm_stats(const struct udsm *d, struct udsm_stats *st);

/** Levels of log messages, as in syslog. */
enum udsm_log_level {
	UDSM_LOG_ERR = 3,
	UDSM_LOG_WARN = 4,
	UDSM_LOG_INFO = 6,
	UDSM_LOG_DEBUG = 7,
};

/**
 * Log callback: @level is an enum udsm_log_level, @msg one line without a trailing newline.
 * It is called from any thread, including the service thread; it must be thread-safe and must
 * not call into libudsm or touch the region.
 */
typedef void (*udsm_log_func)(void *arg, int level, const char *msg);

/**
 * udsm_set_log_func() - replace the log sink for the whole process.
 * @fn: the new sink; NULL restores the default (stderr, "udsm: " prefix).
 * @max_level: messages above this level are dropped (default UDSM_LOG_WARN, or the value of
 *             the environment variable UDSM_LOG_LEVEL read at the first message).
 * Call it before udsm_open(); it is not synchronised with running nodes.
 */
UDSM_EXPORT void udsm_set_log_func(udsm_log_func fn, void *arg, int max_level);

/* ------------------------------------------------------------------------------------------
 * Performance statistics: latency histograms, hot pages, false sharing (docs/STATS.md).
 */

/** Kinds of latency udsm_stats2() reports, each as a histogram. */
enum udsm_lat_kind {
	UDSM_LAT_READ_MISS = 0,  /**< read fault on an Invalid page until the page is in */
	UDSM_LAT_WRITE_MISS = 1, /**< write fault on an Invalid page until it is in, writable */
	UDSM_LAT_UPGRADE = 2,    /**< write fault on a Shared page until it is writable */
	UDSM_LAT_BARRIER = 3,    /**< udsm_barrier(), from the call to its return */
	UDSM_LAT_LOCK = 4,       /**< udsm_lock()/udsm_trylock() from the call to the return with
				  *   the lock held (the wait behind other holders included) */
	UDSM_LAT_KINDS = 5,
};

/**
 * Buckets of a latency histogram, powers of two of microseconds: bucket 0 counts samples
 * under 1 us, bucket i (1 <= i < UDSM_LAT_BUCKETS - 1) samples in [2^(i-1), 2^i) us, and the
 * last bucket everything from 2^(UDSM_LAT_BUCKETS - 2) us (about 18 minutes) on.
 */
#define UDSM_LAT_BUCKETS 32

/** One latency histogram. @count is the sum of @buckets. */
struct udsm_latency {
	uint64_t count;  /**< samples */
	uint64_t sum_ns; /**< their total, in nanoseconds */
	uint64_t max_ns; /**< the largest, in nanoseconds */
	uint64_t buckets[UDSM_LAT_BUCKETS];
};

/**
 * Everything udsm_stats() has, and more. Versioned by size: a program passes the size of the
 * struct it was built with, the library fills that many bytes (at most its own size) and
 * returns how many it filled. Fields are only ever added at the end, so a program built
 * against an older udsm.h keeps working with a newer library and vice versa (fields the
 * library does not know stay zero).
 *
 * Fault latencies are measured on the service thread, from the moment it reads the fault
 * from the userfaultfd to the moment it wakes the faulting thread (the page installed or
 * made writable). The kernel's delivery of the fault and the scheduling of the woken thread
 * are not included: the application sees a few microseconds more (udsm-bench shows both).
 * A fault that joins a request already in flight (read-ahead, another thread's) counts from
 * its own arrival. Stale faults (the page is already there) and faults on lost pages are not
 * misses and are not counted here.
 */
struct udsm_stats2 {
	struct udsm_stats c;                       /**< the counters of udsm_stats() */
	struct udsm_latency lat[UDSM_LAT_KINDS];   /**< indexed by enum udsm_lat_kind */
	uint64_t lat_dropped;     /**< fault latencies not measured (too many faults at once) */
	uint64_t transfers;       /**< transfers of pages homed here (see udsm_hot_page) */
	uint64_t written_known;   /**< of which from a writer that said what it changed */
	uint64_t hot_replaced;    /**< hot-page slots given to another page (sketch churn) */
	uint64_t false_shared;    /**< pages in the hot-page table flagged false_sharing */
	uint64_t installs;        /**< UFFDIO_COPY calls that installed pages (a run is one) */
	uint64_t installed_pages; /**< pages they installed */
	/** Service-thread time spent in those calls, in nanoseconds. The kernel allocates every
	 *  page it installs, so this is what new memory costs this node: about 1 us a page when
	 *  the kernel has free pages at hand, several on a guest whose host took its free memory
	 *  back (docs/STATS.md). Kept whatever UDSM_STATS says. */
	uint64_t install_ns;
};

/**
 * udsm_stats2() - copy this node's statistics into @st, @size bytes at most (pass
 * sizeof(*st)). Thread-safe; fields are read one by one, so they may be mutually inconsistent
 * by in-flight events. Returns the number of bytes filled (the rest of @size is zeroed), or
 * -EINVAL.
 */
UDSM_EXPORT int udsm_stats2(const struct udsm *d, struct udsm_stats2 *st, size_t size);

/** Written ranges a udsm_hot_page reports at most. */
#define UDSM_HOT_RANGES 16

/** A byte range of a page that a node changed while it held the page writable. */
struct udsm_written_range {
	uint32_t node;  /**< the writer */
	uint32_t start; /**< first byte changed, as an offset in the page */
	uint32_t end;   /**< one past the last byte changed */
};

/**
 * A page that moves often, as its home node saw it. The layout is part of the ABI and does
 * not change; anything more would come with a new function.
 */
struct udsm_hot_page {
	uint64_t page;          /**< page number (address: udsm_base() + page * page size) */
	uint64_t transfers;     /**< times the page, or the right to write it, went to a node */
	uint64_t transfers_err; /**< @transfers may be too high by at most this (sketch) */
	uint64_t nodes;         /**< bit n set: node n received or gave up the page */
	uint64_t writers;       /**< bit n set: node n gave the page back changed */
	uint32_t disjoint;      /**< hand-overs between different writers that changed
				 *   disjoint byte ranges */
	uint32_t overlap;       /**< ... that changed overlapping ranges (true sharing) */
	int32_t false_sharing;  /**< 1: most hand-overs between writers were disjoint */
	uint32_t nranges;       /**< entries used in @ranges */
	/** What each recent writer changed last (byte ranges, sorted by node then start). */
	struct udsm_written_range ranges[UDSM_HOT_RANGES];
};

/**
 * udsm_hot_pages() - the pages homed on this node that moved most, most transfers first.
 * @out: receives at most @max entries.
 * Every transfer of a page is seen by its home, so the cluster-wide list is the union of
 * every node's. The table behind it is a bounded sketch (docs/STATS.md): a page that moves
 * much more than the others is always in it; counts of pages that entered late may be high
 * by transfers_err. Thread-safe. Returns the number of entries filled, or -EINVAL.
 */
UDSM_EXPORT int udsm_hot_pages(const struct udsm *d, struct udsm_hot_page *out, size_t max);

/**
 * udsm_hot_page() - what this node, as the home of @page, counted about it (one entry of the
 * table udsm_hot_pages() lists), into @out. Thread-safe.
 * Returns 0; -ENOENT if the page is homed here but not in the table (it never moved, or moved
 * too rarely to keep its place); -EREMOTE if another node is its home (udsm_page_home() says
 * which: ask that node); -EINVAL if @page is out of range.
 */
UDSM_EXPORT int udsm_hot_page(const struct udsm *d, size_t page, struct udsm_hot_page *out);

/**
 * udsm_stats_report() - write this node's statistics report now, as UDSM_STATS would at
 * udsm_close() (one JSON line; see docs/STATS.md for the schema) to the file descriptor
 * @fd. Thread-safe. Returns 0 or -errno.
 */
UDSM_EXPORT int udsm_stats_report(const struct udsm *d, int fd);

/* ------------------------------------------------------------------------------------------
 * Memory allocation in the region (docs/ALLOC.md).
 *
 * The allocator keeps its metadata at the top of the region (1 + nodes + ceil(8 * pages /
 * page size) pages) and hands memory out from below it, downwards. It writes nothing in the
 * region until it is first called: a program that never calls it (s2dsm, udsm-bench) has the
 * whole region from udsm_base(). A program that calls it must take all its shared memory from
 * it (udsm_coalloc() gives raw memory at the same address on every node). Placement
 * (docs/ALLOC.md): a udsm_coalloc() block is homed in contiguous equal shares (node i homes
 * the i-th share), udsm_coalloc_placed() chooses; udsm_cofree() gives the pages back to the
 * default layout (udsm_config.home_chunk). udsm_malloc() blocks (and the spans small blocks
 * come from) of up to a chunk of that layout are on pages homed at the allocating node;
 * larger blocks lie on the default layout. udsm_page_home() says the truth.
 */

/**
 * udsm_coalloc() - collective allocation: every node calls it with the same @size, in the same
 * order relative to the other collective calls (udsm_coalloc, udsm_cofree). Returns the same
 * address on every node, page-aligned, @size bytes (at least one page), zero-filled, once every
 * node has called it (it enters udsm_barrier() three times, so the rule of one thread per node
 * inside udsm_barrier() applies). Homed as UDSM_PLACE_BLOCK: node i homes the i-th of nodes
 * contiguous equal shares of its pages (udsm_coalloc_placed() chooses). NULL and errno:
 * ENOMEM (no room; on every node), EIO (a node died holding the heap lock: nothing is
 * allocated; or some node could not freeze or re-home the block: on every node, and after a
 * failed re-homing the block is leaked), EINVAL (the nodes called different collectives or
 * sizes: logged, and every node gets EINVAL; the collective sequence stays broken from then
 * on), or the error of a failed barrier (EBUSY; EIO for UDSM_EPEER or UDSM_ECLOSED).
 */
UDSM_EXPORT void *udsm_coalloc(struct udsm *d, size_t size);
/**
 * udsm_cofree() - collective free of a block udsm_coalloc() returned, by every node with the
 * same @p in the same order. Returns 0, -EINVAL (@p is not such a block, or the nodes
 * disagree: logged, nothing freed), -EIO (some node could not freeze the pages or give them
 * back to the default layout: on every node, the block stays allocated), or the error of a
 * failed barrier. With the heap lock's holder dead (udsm_malloc) it returns 0 but the pages
 * stay allocated (leaked).
 */
UDSM_EXPORT int udsm_cofree(struct udsm *d, void *p);
/**
 * udsm_malloc() - allocate @size bytes, 16-byte aligned (blocks over 2048 bytes are whole
 * pages, page-aligned), from this node's arena: any node, any thread, any time, without
 * coordination with other nodes. The contents are undefined. NULL and errno: ENOMEM, or EIO
 * (a node died holding the allocator's heap lock: the shared heap cannot change any more;
 * blocks already taken by this node still serve small allocations).
 */
UDSM_EXPORT void *udsm_malloc(struct udsm *d, size_t size);
/**
 * udsm_free() - free a block udsm_malloc() returned on any node. NULL is a no-op. A pointer
 * udsm_malloc() did not return, or a block freed twice, is logged (UDSM_LOG_ERR) and ignored:
 * the library never aborts.
 */
UDSM_EXPORT void udsm_free(struct udsm *d, void *p);

/*
 * Placement of collective blocks: which node homes each page (keeps its directory entry and
 * serves it while nobody owns it). udsm_page_home() reports the result.
 */
#define UDSM_PLACE_BLOCK (-1)  /**< contiguous equal shares: node i homes the i-th share */
#define UDSM_PLACE_CYCLIC (-2) /**< page by page, round robin over the nodes */
/* A value >= 0: every page of the block is homed on that node. */

/**
 * udsm_coalloc_placed() - udsm_coalloc() with the placement of the block chosen: a node id,
 * UDSM_PLACE_BLOCK (what udsm_coalloc() does) or UDSM_PLACE_CYCLIC. Every node passes the
 * same @placement. NULL and errno as udsm_coalloc(); EINVAL also for a bad @placement.
 */
UDSM_EXPORT void *udsm_coalloc_placed(struct udsm *d, size_t size, int placement);

/* ------------------------------------------------------------------------------------------
 * Locks named by an address inside the region, like futexes: no initialisation, any number
 * (docs/PROTOCOL.md, "Locks"). Each byte address is its own lock. The lock's state lives at
 * the home of the page holding the address (udsm_page_home()) and moves by messages, never
 * through that page, which the lock does not touch: an uncontended lock costs one round trip
 * to its home (none when the home is this node), a contended hand-over one message or two and
 * no page. The data a lock protects needs nothing more: every access to the region is
 * sequentially consistent, so whatever the previous holder wrote before udsm_unlock() is what
 * the next holder reads after udsm_lock(); the data's pages move as they are touched. Put the
 * data of different locks on different pages. A lock in a block that udsm_coalloc() or
 * udsm_cofree() is allocating or freeing must not be in use during that call.
 */

/**
 * udsm_lock() - take the lock named by @addr: mutual exclusion across every thread of every
 * node, handed over first come, first served (in the order requests reach the lock's home;
 * each thread's request is its own place in line). Any thread, any time.
 * Returns 0 with the lock held; -EINVAL for an address outside the region; -EDEADLK if this
 * thread holds it already; UDSM_EPEER if the lock's home died (not held; every later call on
 * it fails the same way), or if the node that held it died holding it (or closed holding it):
 * then the caller holds it, as with a robust mutex's EOWNERDEAD, and the data it protects may
 * be half-updated; UDSM_ECLOSED if the node closes meanwhile; -ENOMEM if this node or the
 * lock's home had no memory for the request (not held, nothing queued; the lock is intact).
 */
UDSM_EXPORT int udsm_lock(struct udsm *d, void *addr);
/** udsm_trylock() - udsm_lock() without waiting: -EBUSY if another thread holds the lock
 *  (answered without a message when that thread is on this node); -EDEADLK if the caller
 *  does; otherwise as udsm_lock(), in one round trip to the home at most. */
UDSM_EXPORT int udsm_trylock(struct udsm *d, void *addr);
/** udsm_unlock() - release a lock this thread holds, without waiting for the home; the
 *  next waiter gets it. -EPERM if this thread does not hold it (a lock is held by a thread,
 *  not by a node); UDSM_EPEER if the lock's home died meanwhile (then it is released here,
 *  and gone). A node must not close while its threads hold or wait for locks: udsm_close()
 *  makes waiting calls return UDSM_ECLOSED and gives up held locks (logged; their next
 *  holders get UDSM_EPEER, as after a crash of the holder). */
UDSM_EXPORT int udsm_unlock(struct udsm *d, void *addr);

/**
 * udsm_barrier_threads() - a barrier over every thread of every node: each of the @nthreads
 * threads of this node that take part calls it (every node may pass its own count); it returns
 * once all of them, on all nodes, have arrived. The last of this node's threads to arrive
 * enters udsm_barrier() for the node (so no other thread of this node may be inside
 * udsm_barrier() meanwhile); reusable back to back. 0, or the error of the underlying
 * udsm_barrier() (returned to every thread of this node); -EINVAL for @nthreads 0, or for a
 * call whose @nthreads differs from the count the round in progress on this node started
 * with (that call does not count: the others still wait for their own count).
 */
UDSM_EXPORT int udsm_barrier_threads(struct udsm *d, unsigned nthreads);

#ifdef __cplusplus
}
#endif
#endif /* UDSM_H */
