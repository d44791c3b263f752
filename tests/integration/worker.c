/* SPDX-License-Identifier: MIT */
/*
 * worker.c - one udsm node running a named workload that checks what it reads.
 *
 *   udsm-worker [--listen H:P] [--join H:P] [--nodes N] [--pages P] [--port-fd FD]
 *               [--iters N] [--open-timeout MS] [--secret S]
 *               [--leaver N] [--peer-buffer-max B] [--readahead N] [--spin US] WORKLOAD
 *   (--spin: udsm_config.spin_us; -1 keeps the service thread from ever polling)
 *
 * Workloads (every node runs the same one; node ids decide the roles):
 *   crc        node 0 writes CRC-patterned pages, all others verify them; then every node
 *              rewrites its share and everybody verifies everything again
 *   counters   every node increments its own counter in every page (disjoint words of the
 *              same pages) across barrier phases; every node checks every value each phase
 *   pingpong   nodes 0 and 1 alternately write one page --iters times (turn kept in the page)
 *   publish    node 0's pages, published at a barrier: its stores fault without a message,
 *              pages it rewrote before anyone read them are not published again, and every
 *              node reads the latest data (src/node.c, "Publishing")
 *   threads    8 threads on node 1 fault on the same page at once, for reading, then writing
 *   loanread   2 nodes: node 1 reads every page node 0 wrote while its main thread passes
 *              barriers that node 0 enters 1 ms apart (a stream on a lent socket, node.c)
 *   victim     node nodes-1 (or --victim-node) kills itself with SIGKILL mid-run; the others
 *              must get SIGBUS on pages it held and UDSM_EPEER from the barrier, quickly, and
 *              exit 0
 *   forkvictim as victim, but the victim first forks a child that outlives it by seconds:
 *              the survivors must still notice within 3 s (the child holds no connection,
 *              and has no region); every node checks its descriptors are close-on-exec
 *   exchange   every node writes a share of the pages, then every node reads and checks
 *              every page the others wrote; twice, with other writers (traffic both ways
 *              on every link, for flow-control tests with tiny TCP buffers)
 *   stall      2 nodes: node 1 owns its pages, then stops itself (SIGSTOP; the harness
 *              continues it after ~2 s) while node 0 reads them: everything completes, no
 *              node is lost (run with a peer timeout well above the stop)
 *   stallfull  2 nodes: node 1 asks node 0 for many pages from 4 threads and stops itself
 *              (continued after ~3 s) with node 0's answers filling the socket: node 0
 *              must not spin meanwhile, and everything completes
 *   stalldead  2 nodes: as stall, but node 1 stays stopped: node 0 must get SIGBUS on its
 *              pages and UDSM_EPEER within the peer timeout (--expect-ms); continued
 *              afterwards, node 1 must find itself fenced (every page LOST, reads SIGBUS)
 *   leave      every node writes the pages it homes, node --leaver (default nodes-1) rewrites
 *              every third page (holds them Modified), the others share the rest; the leaver
 *              calls udsm_close(); the others then read every page (also those it homed or
 *              held Modified, and never-written ones) right away, check that no page is homed
 *              at the leaver any more, write every page, check, and pass barriers
 *   racy       2 threads on node 1 store to one region word unordered: TSan must see it
 *   alloc      the allocator (docs/ALLOC.md): udsm_coalloc gives the same zero-filled block
 *              everywhere, data one node writes there is read by all, udsm_cofree + udsm_coalloc
 *              reuses the space zeroed; 4 threads per node udsm_malloc at once and every node
 *              checks every block (contents, no overlap); each node frees the next node's
 *              blocks, which gets exactly them back; bad and double frees are logged, not
 *              fatal; a mismatched collective call gives EINVAL on every node
 *   lock       address-named locks (udsm_lock): --threads threads per node (default 4) each
 *              take one of N locks (one homed at each node, the counter on another page)
 *              --iters times and increment a plain counter under it, with an owner word
 *              that must not change inside the critical section; the sums must be exact.
 *              Also: trylock gives -EBUSY while another node holds the lock, EINVAL
 *              outside the region, EDEADLK on a relock, EPERM on a foreign unlock, and
 *              udsm_barrier_threads() with every thread, back to back, and a mismatched
 *              count gets EINVAL
 *   lockvictim the victim (node nodes-1) takes a lock homed at node 0 and dies by SIGKILL
 *              holding it; node 0, waiting for it, must get UDSM_EPEER with the lock held,
 *              then unlock it and take it again with 0; a lock homed at the victim gives
 *              UDSM_EPEER
 *   lockoom    2 nodes, allocations failed on purpose (below, "Allocation failures"): node
 *              0's own allocations for a request fail, for a lock homed at node 1 and for
 *              one homed here: -ENOMEM, nothing left behind, the next request works; node
 *              1's service thread cannot add the lock to its table: node 0 gets -ENOMEM
 *              (LOCK_NACK with NOMEM), and the lock works right after; then node 1 cannot
 *              even queue that refusal, a message it owes: it fences itself (logged "out of
 *              memory keeping a LOCK_NACK"), its barrier fails, node 0's request gets
 *              UDSM_EPEER and its own lock still works. Not under the sanitizers (their
 *              runtimes own malloc): there the workload says so and passes
 *   lockoomleave 2 nodes: node 1 homes a lock node 0 holds and closes; node 0, taking over
 *              the lock's table, cannot add the entry (its service thread's allocation
 *              fails): it loses the lock's state, says so ("out of memory keeping a
 *              LOCK_ADOPT") and fences itself, and both nodes' calls return: node 1's close,
 *              node 0's barrier (an error) and its unlock
 *   lockleave  3+ nodes; the last one (the leaver) homes lock X, which node 0 holds and node
 *              1 waits for, and holds lock Z homed at node 0, which node 0 waits for; the
 *              leaver calls udsm_close(): node 0's waiter gets UDSM_EPEER holding Z (given
 *              up unfinished), and X's table moves to the successor: node 0's unlock
 *              grants it to node 1's waiter, and X works at its new home afterwards; a
 *              thread of the leaver waiting for lock W (homed at node 0, held by node 1,
 *              released as the leaver closes) gets UDSM_ECLOSED, and W stays usable
 * Exit status: 0 pass, 1 a check failed, 2 usage or setup error, 3 udsm_open refused with
 * UDSM_EAUTH (the cluster secret did not match).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "udsm.h"
#include "os/tsan.h" /* the region hint of TSan builds, for --squat */

static struct udsm *dsm;
static unsigned self, nodes;
static size_t ps, npages;
static uint8_t *base;

/* ------------------------------------------------------------------------------------------
 * Allocation failures (workload lockoom). This program's malloc() and calloc() take the
 * place of glibc's for libudsm too (a definition in the executable interposes on the shared
 * library's calls) and fail on demand:
 *  - on the calling thread: let oom_skip allocations through, then fail oom_fail of them;
 *  - on this node's service thread (named "udsm/<id>"): fail its next calloc(1, n <= 256),
 *    which in steady state only the lock table makes (an entry for a lock asked for), and
 *    with OOM_SVC_CASCADE every allocation of that thread after it, until disarmed.
 * The sanitizers' runtimes own malloc: there nothing is replaced and lockoom says so.
 */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define OOM_INJECT 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
	__has_feature(memory_sanitizer)
#define OOM_INJECT 0
#endif
#endif
#ifndef OOM_INJECT
#define OOM_INJECT 1
#endif

enum { OOM_SVC_OFF, OOM_SVC_ONE, OOM_SVC_CASCADE, OOM_SVC_ALL };

static __thread int oom_skip, oom_fail;
static int oom_svc;                /* OOM_SVC_*, atomic */
static unsigned oom_svc_hits;      /* service-thread allocations failed, atomic */
static char oom_svc_name[16];

#if OOM_INJECT
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t k, size_t n);

static bool oom_now(bool table_entry)
{
	char name[16] = "";
	int mode;

	if (oom_fail > 0) {
		if (oom_skip > 0) {
			oom_skip--;
			return false;
		}
		oom_fail--;
		return true;
	}
	mode = __atomic_load_n(&oom_svc, __ATOMIC_ACQUIRE);
	if (mode == OOM_SVC_OFF || prctl(PR_GET_NAME, name) || strcmp(name, oom_svc_name))
		return false;
	if (mode == OOM_SVC_ALL || table_entry) {
		if (mode == OOM_SVC_ONE)
			__atomic_store_n(&oom_svc, OOM_SVC_OFF, __ATOMIC_RELEASE);
		else if (mode == OOM_SVC_CASCADE)
			__atomic_store_n(&oom_svc, OOM_SVC_ALL, __ATOMIC_RELEASE);
		__atomic_add_fetch(&oom_svc_hits, 1, __ATOMIC_RELAXED);
		return true;
	}
	return false;
}

void *malloc(size_t n)
{
	if (oom_now(false)) {
		errno = ENOMEM;
		return NULL;
	}
	return __libc_malloc(n);
}

void *calloc(size_t k, size_t n)
{
	if (oom_now(k == 1 && n <= 256)) {
		errno = ENOMEM;
		return NULL;
	}
	return __libc_calloc(k, n);
}
#endif

/* The calling thread's next allocations: @skip go through, then @fail fail. */
static void oom_self(int skip, int fail)
{
	oom_skip = skip;
	oom_fail = fail;
}

static void oom_service(int mode)
{
	snprintf(oom_svc_name, sizeof(oom_svc_name), "udsm/%u", self);
	__atomic_store_n(&oom_svc, mode, __ATOMIC_RELEASE);
}

static void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "worker %u: FAIL: ", self);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void barrier(const char *where)
{
	int err = udsm_barrier(dsm);

	if (err)
		fail("barrier %s: %s", where, udsm_strerror(err));
}

/* A CRC-32 (reflected, 0xEDB88320) of the page contents decides whether a page is intact. */
static uint32_t crc32(const uint8_t *p, size_t n)
{
	uint32_t c = 0xffffffffu;

	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = c >> 1 ^ (0xedb88320u & -(c & 1));
	}
	return ~c;
}

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Fill page @p with a pattern of @seed; the last 4 bytes hold the CRC of the rest. */
static void datagen(size_t p, uint64_t seed)
{
	uint8_t buf[65536];
	uint64_t s = mix(seed ^ (p << 20));

	for (size_t i = 0; i + 8 <= ps - 4; i += 8) {
		s = mix(s);
		memcpy(buf + i, &s, 8);
	}
	uint32_t c = crc32(buf, ps - 4);
	memcpy(buf + ps - 4, &c, 4);
	memcpy(base + p * ps, buf, ps); /* one pass of stores into the shared page */
}

static void datachk(size_t p, uint64_t seed)
{
	uint8_t buf[65536];
	uint64_t s = mix(seed ^ (p << 20));
	uint32_t c;

	memcpy(buf, base + p * ps, ps);
	memcpy(&c, buf + ps - 4, 4);
	if (crc32(buf, ps - 4) != c)
		fail("page %zu: CRC mismatch (torn or stale page)", p);
	for (size_t i = 0; i + 8 <= ps - 4; i += 8) {
		uint64_t v;

		s = mix(s);
		memcpy(&v, buf + i, 8);
		if (v != s)
			fail("page %zu: word %zu has the wrong generation (seed %llu)", p, i / 8,
			     (unsigned long long)seed);
	}
}

static void run_crc(void)
{
	if (self == 0)
		for (size_t p = 0; p < npages; p++)
			datagen(p, 1);
	barrier("after node 0 wrote");
	for (size_t p = 0; p < npages; p++)
		datachk(p, 1);
	barrier("after verify 1");
	for (size_t p = self; p < npages; p += nodes)
		datagen(p, 2 + p % nodes);
	barrier("after every node wrote");
	for (size_t p = 0; p < npages; p++)
		datachk(p, 2 + p % nodes);
	barrier("after verify 2");
}

static void run_counters(unsigned phases)
{
	for (unsigned ph = 1; ph <= phases; ph++) {
		for (size_t p = 0; p < npages; p++)
			((volatile uint64_t *)(base + p * ps))[self]++;
		barrier("after increments");
		for (size_t p = 0; p < npages; p++)
			for (unsigned n = 0; n < nodes; n++) {
				uint64_t v = ((volatile uint64_t *)(base + p * ps))[n];

				if (v != ph)
					fail("phase %u: page %zu counter of node %u is %llu", ph, p, n,
					     (unsigned long long)v);
			}
		barrier("after checks");
	}
}

/*
 * Publishing at barriers (src/node.c): pages a node made writable since its last barrier are
 * write-protected when it enters the next one, so a reader's miss finds the owner's revocation
 * done. What a program can observe of it, checked here: after the barrier, the writer's first
 * store to a run of its pages is a fault that sends no message (the pages are made writable
 * again locally); pages it wrote again before anyone read them are not published at the next
 * barrier (stores to them do not fault); and every reader gets the latest data through all of
 * it.
 */
static void run_publish(void)
{
	struct udsm_stats a, b;
	size_t half = npages / 2;

	if (half < 2)
		fail("publish needs at least 4 pages");
	if (self == 0)
		for (size_t p = 0; p < npages; p++)
			datagen(p, 1);
	barrier("after node 0 wrote"); /* node 0 publishes every page: all Modified there */
	if (self == 0) {
		udsm_stats(dsm, &a);
		for (size_t p = 0; p < half; p++)
			datagen(p, 2);
		udsm_stats(dsm, &b);
		uint64_t wf = b.write_faults - a.write_faults, msgs = b.msgs_sent - a.msgs_sent;

		/* One fault per run of at most 256 published pages; heartbeats may go out. */
		if (wf < (half + 255) / 256 || wf > half)
			fail("stores to %zu published pages took %llu write faults", half,
			     (unsigned long long)wf);
		if (msgs > 4)
			fail("stores to published pages sent %llu messages",
			     (unsigned long long)msgs);
	}
	barrier("after node 0 rewrote"); /* rewritten, nobody read them: not published */
	if (self == 0) {
		udsm_stats(dsm, &a);
		for (size_t p = 0; p < half; p++)
			datagen(p, 3);
		udsm_stats(dsm, &b);
		if (b.write_faults != a.write_faults)
			fail("pages written again before anyone read them were published: %llu "
			     "write faults", (unsigned long long)(b.write_faults - a.write_faults));
	}
	barrier("after node 0 wrote again");
	for (size_t p = 0; p < npages; p++)
		datachk(p, p < half ? 3 : 1);
	barrier("after every node read");
	/* Taken by the readers, the pages are worth publishing again: a new round of writes
	 * by another node, read by every node, through the same path. */
	if (self == nodes - 1)
		for (size_t p = 0; p < npages; p++)
			datagen(p, 4);
	barrier("after the last node wrote");
	for (size_t p = 0; p < npages; p++)
		datachk(p, 4);
	barrier("after verify 4");
}

struct pp {
	volatile uint64_t turn;
	volatile uint64_t count;
	volatile uint64_t log[2];
};

static void run_pingpong(unsigned iters)
{
	struct pp *pg = (struct pp *)base;
	time_t start = time(NULL);

	barrier("before ping-pong");
	if (self < 2) {
		for (unsigned i = 0; i < iters; i++) {
			/* Yield while waiting: with two nodes' service threads on two CPUs, a
			 * waiter that never yields starves the node it waits for. */
			while (pg->turn % 2 != self) {
				if (time(NULL) - start > 90)
					fail("ping-pong too slow or stuck at turn %llu",
					     (unsigned long long)pg->turn);
				sched_yield();
			}
			if (pg->count != pg->turn)
				fail("count %llu != turn %llu", (unsigned long long)pg->count,
				     (unsigned long long)pg->turn);
			pg->log[self]++;
			pg->count++;
			pg->turn++;
		}
	}
	barrier("after ping-pong");
	if (pg->turn != 2ull * iters || pg->count != 2ull * iters || pg->log[0] != iters ||
	    pg->log[1] != iters)
		fail("ping-pong ended with turn %llu count %llu log %llu/%llu",
		     (unsigned long long)pg->turn, (unsigned long long)pg->count,
		     (unsigned long long)pg->log[0], (unsigned long long)pg->log[1]);
}

#define NTHREADS 8
static pthread_barrier_t tbar;
static size_t tpage;
static int twrite;

static void *thread_main(void *arg)
{
	uintptr_t id = (uintptr_t)arg;
	volatile uint64_t *w = (volatile uint64_t *)(base + tpage * ps);

	pthread_barrier_wait(&tbar);
	if (twrite) {
		w[16 + id] = 1000 + id;
	} else if (w[0] != 0xfeedf00dull || w[1] != 7) {
		fprintf(stderr, "worker %u: thread %lu read %llx %llu\n", self, (unsigned long)id,
			(unsigned long long)w[0], (unsigned long long)w[1]);
		return (void *)1;
	}
	return NULL;
}

static void thread_round(int write)
{
	pthread_t t[NTHREADS];
	void *ret;
	int bad = 0;

	twrite = write;
	pthread_barrier_init(&tbar, NULL, NTHREADS);
	for (uintptr_t i = 0; i < NTHREADS; i++)
		pthread_create(&t[i], NULL, thread_main, (void *)i);
	for (int i = 0; i < NTHREADS; i++) {
		pthread_join(t[i], &ret);
		bad |= ret != NULL;
	}
	pthread_barrier_destroy(&tbar);
	if (bad)
		fail("a thread read a wrong value");
}

/* loanread: node 1's reader thread, every page in order (read-ahead bursts from node 0). */
static void *loan_reader(void *arg)
{
	(void)arg;
	for (size_t p = 0; p < npages; p++)
		datachk(p, 21);
	return NULL;
}

/*
 * A barrier's waiter that serves a stream on the socket lent to it (node.c, barrier_borrow()):
 * node 0 writes every page, then, while node 1's reader thread pulls them in read-ahead
 * bursts, node 1's main thread waits in barriers that node 0 enters 1 ms apart, so that their
 * answers land in the middle of the stream and a loan may end with bytes still in the socket
 * (loan_return()). Every page must read right and nothing may stall.
 */
static void run_loanread(void)
{
	pthread_t th;

	if (nodes != 2)
		fail("loanread needs 2 nodes");
	if (self == 0)
		for (size_t p = 0; p < npages; p++)
			datagen(p, 21);
	barrier("after node 0 wrote");
	if (self == 1 && pthread_create(&th, NULL, loan_reader, NULL))
		fail("pthread_create");
	for (int i = 0; i < 50; i++) {
		if (self == 0)
			usleep(1000);
		barrier("while node 1 reads");
	}
	if (self == 1)
		pthread_join(th, NULL);
	barrier("after node 1 read");
}

static void run_threads(void)
{
	struct udsm_stats a, b;

	tpage = 0; /* homed at node 0 */
	if (self == 0) {
		volatile uint64_t *w = (volatile uint64_t *)base;

		w[0] = 0xfeedf00dull;
		w[1] = 7;
	}
	barrier("after setup");
	if (self == 1) {
		udsm_stats(dsm, &a);
		thread_round(0);
		udsm_stats(dsm, &b);
		/* Eight faults, one request: the others join it (read-ahead may add its own). */
		if (b.requests - b.readahead - (a.requests - a.readahead) != 1)
			fail("8 concurrent read faults sent %llu requests",
			     (unsigned long long)(b.requests - b.readahead -
						  (a.requests - a.readahead)));
		thread_round(1);
		for (int i = 0; i < NTHREADS; i++)
			if (((volatile uint64_t *)base)[16 + i] != 1000u + (unsigned)i)
				fail("store of thread %d lost", i);
	}
	barrier("after threads");
	for (int i = 0; i < NTHREADS; i++)
		if (((volatile uint64_t *)base)[16 + i] != 1000u + (unsigned)i)
			fail("node %u does not see the store of thread %d", self, i);
	barrier("after check");
}

/*
 * racy (TSan builds only, tests/integration/tsan-canary.sh): two threads of node 1 store to
 * one word of a page homed at node 0 with nothing ordering them. TSan must report it: the
 * annotations for the DSM's own data flow (src/os/tsan.h) must not hide the application's
 * races in the region.
 */
static void *racy_main(void *arg)
{
	*(volatile uint64_t *)base = (uintptr_t)arg;
	return NULL;
}

static void run_racy(void)
{
	if (self == 1) {
		pthread_t t[2];

		for (uintptr_t i = 0; i < 2; i++)
			if (pthread_create(&t[i], NULL, racy_main, (void *)(i + 1)))
				fail("pthread_create");
		for (int i = 0; i < 2; i++)
			pthread_join(t[i], NULL);
	}
}

static unsigned leaver = UINT32_MAX;

/* The page holds @seed's pattern, or only zeros for seed 0. */
static void datachk0(size_t p, uint64_t seed)
{
	if (seed) {
		datachk(p, seed);
		return;
	}
	for (size_t i = 0; i < ps; i++)
		if (base[p * ps + i])
			fail("page %zu: byte %zu is %u, the page was never written", p, i,
			     base[p * ps + i]);
}

static void run_leave(void)
{
	size_t written = npages - npages / 4; /* the last quarter stays zero */
	unsigned rank = self - (self > leaver), nsurv = nodes - 1;
	struct timespec t0, t1;
	int err;

	if (leaver >= nodes)
		leaver = nodes - 1, rank = self - (self > leaver);
	for (size_t p = self; p < written; p += nodes)
		datagen(p, 1);
	barrier("after the homes wrote");
	/* The leaver holds every third page Modified (homed all over), the others share the
	 * pages after those: both kinds must survive the leave. */
	for (size_t p = self == leaver ? 0 : 1; p < written; p += 3) {
		if (self == leaver)
			datagen(p, 2);
		else
			datachk(p, 1);
	}
	barrier("before the leave");
	if (self == leaver) {
		clock_gettime(CLOCK_MONOTONIC, &t0);
		err = udsm_close(dsm);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (err)
			fail("udsm_close: %s", udsm_strerror(err));
		fprintf(stderr, "worker %u: left (hand-over and close in %.1f ms)\n", self,
			(double)(t1.tv_sec - t0.tv_sec) * 1e3 +
				(double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
		fprintf(stderr, "worker %u: leave passed\n", self);
		exit(0);
	}
	/* Right away: some of these requests wait for the hand-over to finish. */
	for (size_t p = 0; p < npages; p++)
		datachk0(p, p >= written ? 0 : p % 3 == 0 ? 2 : 1);
	barrier("after the leave");
	for (size_t p = 0; p < npages; p++)
		if (udsm_page_home(dsm, p) == (int)leaver)
			fail("page %zu is still homed at node %u, which left", p, leaver);
	for (size_t p = rank; p < npages; p += nsurv)
		datagen(p, 100 + p);
	barrier("after the survivors wrote");
	for (size_t p = 0; p < npages; p++)
		datachk(p, 100 + p);
	barrier("after the survivors checked");
	fprintf(stderr, "worker %u: read and wrote all %zu pages after node %u left\n", self,
		npages, leaver);
}

static sigjmp_buf bus_jmp;
static volatile sig_atomic_t bus_seen;

static void on_sigbus(int sig)
{
	(void)sig;
	bus_seen = 1;
	siglongjmp(bus_jmp, 1);
}

/* Every descriptor the library opened is close-on-exec (nothing else is open here but stdio
 * and the harness's pipes, which are checked by name: pipes are the harness's). */
static void check_cloexec(void)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *de;
	unsigned n = 0;

	if (!dir)
		fail("opendir /proc/self/fd: %s", strerror(errno));
	while ((de = readdir(dir))) {
		int fd = atoi(de->d_name), fl;
		char link[64] = "", path[64];
		ssize_t len;

		if (de->d_name[0] == '.' || fd <= 2 || fd == dirfd(dir))
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		len = readlink(path, link, sizeof(link) - 1);
		if (len > 0)
			link[len] = '\0';
		if (!strncmp(link, "pipe:", 5))
			continue;
		fl = fcntl(fd, F_GETFD);
		if (fl < 0 || !(fl & FD_CLOEXEC))
			fail("descriptor %d (%s) is not close-on-exec", fd, link);
		n++;
	}
	closedir(dir);
	if (n < 3)
		fail("only %u library descriptors found", n);
}

static unsigned victim_node = UINT32_MAX; /* --victim-node; default the last node */

static void run_victim(int fork_first)
{
	unsigned victim = victim_node < nodes ? victim_node : nodes - 1;
	struct sigaction sa = { .sa_handler = on_sigbus };
	struct timespec t0, t1;
	volatile size_t lost = 0, p;
	int err;

	/*
	 * The victim owns (M) every page homed at it and every page homed at node 0, with data
	 * nobody else has: the first set dies with its home, the second with its only copy.
	 */
	for (size_t q = 0; q < npages; q++)
		if (self == victim && (q % nodes == victim || q % nodes == 0))
			datagen(q, 9);
	barrier("before the kill");
	if (fork_first)
		check_cloexec();
	if (self == victim && fork_first) {
		/* The child has no region (MADV_DONTFORK) and, thanks to the library's atfork
		 * handler, none of the connections: its life must not hide the parent's death. */
		int pfd[2];
		char verdict = '?';
		pid_t child;

		if (pipe(pfd))
			fail("pipe: %s", strerror(errno));
		child = fork();
		if (child == 0) {
			/* The region must not exist in the child. Report, then outlive the
			 * parent without holding the harness's pipes. */
			verdict = msync(base, ps, MS_ASYNC) < 0 && errno == ENOMEM ? 'u' : 'm';
			close(pfd[0]);
			if (write(pfd[1], &verdict, 1) != 1)
				_exit(3);
			for (int fd = 0; fd < 1024; fd++) { /* pipes, not sockets */
				struct stat sb;

				if (!fstat(fd, &sb) && !S_ISSOCK(sb.st_mode))
					close(fd);
			}
			sleep(6);
			_exit(0);
		}
		if (child < 0)
			fail("fork: %s", strerror(errno));
		close(pfd[1]);
		if (read(pfd[0], &verdict, 1) != 1 || verdict != 'u')
			fail("the child of fork() has the region mapped (verdict %c)", verdict);
	}
	if (self == victim) {
		/* Chosen by --victim-node, it dies once the others wait in the barrier: with
		 * --spin -1, the nodes other than node 0 with node 0's socket lent to their
		 * waiting threads (node.c, loans). */
		if (victim_node < nodes)
			usleep(300 * 1000);
		raise(SIGKILL);
	}

	/*
	 * The barrier cannot complete without the victim, so it ends only when this node has
	 * noticed the death: UDSM_EPEER, and quickly. Only then is every page the victim held
	 * certainly gone (before that, the victim may still have served some).
	 */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	err = udsm_barrier(dsm);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	sigaction(SIGBUS, &sa, NULL);
	for (p = 0; p < npages; p++) {
		if (p % nodes != victim && p % nodes != 0)
			continue;
		if (sigsetjmp(bus_jmp, 1) == 0) {
			volatile uint8_t x = base[p * ps];
			(void)x;
			fail("page %zu of the dead node was readable", (size_t)p);
		} else {
			lost++;
		}
	}
	if (!lost)
		fail("no access to the dead node's pages raised SIGBUS");
	if (err != UDSM_EPEER)
		fail("barrier after the kill returned %d (%s), want UDSM_EPEER", err,
		     udsm_strerror(err));
	if (fork_first && (t1.tv_sec - t0.tv_sec) >= 3)
		fail("the death of a node that forked took %ld s to notice: its child kept its "
		     "connections", (long)(t1.tv_sec - t0.tv_sec));
	/* Pages of live homes keep working. */
	for (size_t q = 0; q < npages; q++)
		if (q % nodes != victim && q % nodes != 0)
			base[q * ps + 1 + self] = (uint8_t)(self + 1);
	fprintf(stderr, "worker %u: %zu page(s) lost as expected, barrier: %s, %.1f ms\n", self,
		(size_t)lost, udsm_strerror(err),
		(double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
	/*
	 * Barriers fail for good after a loss, so the survivors cannot agree through udsm when
	 * all of them are done with each other's pages: the harness tells us, by closing our
	 * stdin once every survivor has said so.
	 */
	printf("survivor-done\n");
	fflush(stdout);
	alarm(30);
	while (getchar() != EOF)
		;
}

/* Writer of page @p in round @r of the exchange: its home in round 0 (readers then get
 * read-ahead bursts of DATA from every home at once), the next node after it in round 1 (the
 * homes then fetch their own pages back from the writers). */
static unsigned xwriter(size_t p, unsigned r)
{
	return (unsigned)((p % nodes + r) % nodes);
}

#define XTHREADS 4
static unsigned xround;

/* Reader thread @arg checks every page of its quarter that another node wrote: four
 * sequential readers per node keep four read-ahead windows in flight at once. */
static void *xcheck(void *arg)
{
	size_t t = (uintptr_t)arg, per = (npages + XTHREADS - 1) / XTHREADS;

	for (size_t p = t * per; p < npages && p < (t + 1) * per; p++)
		if (xwriter(p, xround) != self)
			datachk(p, 100 * (xround + 1) + xwriter(p, xround));
	return NULL;
}

static void run_exchange(void)
{
	pthread_t t[XTHREADS];

	for (xround = 0; xround < 2; xround++) {
		for (size_t p = 0; p < npages; p++)
			if (xwriter(p, xround) == self)
				datagen(p, 100 * (xround + 1) + xwriter(p, xround));
		barrier("after exchange writes");
		for (uintptr_t i = 0; i < XTHREADS; i++)
			pthread_create(&t[i], NULL, xcheck, (void *)i);
		for (int i = 0; i < XTHREADS; i++)
			pthread_join(t[i], NULL);
		barrier("after exchange checks");
	}
}

static double ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void wait_stopped_peer(void)
{
	/* Node 1 stops itself right after the barrier returns there; give it the moment. */
	struct timespec ts = { 0, 200 * 1000 * 1000 };

	nanosleep(&ts, NULL);
}

static void run_stall(void)
{
	struct timespec t0;

	if (nodes != 2)
		fail("stall needs 2 nodes");
	if (self == 1)
		for (size_t p = 1; p < npages; p += 2)
			datagen(p, 31);
	barrier("before the stall");
	if (self == 1) {
		raise(SIGSTOP); /* the harness continues us */
	} else {
		wait_stopped_peer();
		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (size_t p = 1; p < npages; p += 2)
			datachk(p, 31);
		fprintf(stderr, "worker 0: read the stopped node's pages in %.0f ms\n",
			ms_since(&t0));
	}
	barrier("after the stall"); /* fails if anybody was lost or fenced */
}

/* stallfull: node 1 asks node 0 for many pages from four threads, then stops (the harness
 * continues it after ~3 s): node 0's answers fill the socket toward it. */
static void *sf_reader(void *arg)
{
	size_t t = (uintptr_t)arg;

	for (size_t p = 2 * t; p < npages; p += 8)
		datachk(p, 51);
	return NULL;
}

static void run_stallfull(void)
{
	pthread_t t[4];

	if (nodes != 2)
		fail("stallfull needs 2 nodes");
	if (self == 0)
		for (size_t p = 0; p < npages; p += 2)
			datagen(p, 51);
	barrier("before the stall");
	if (self == 1) {
		struct timespec ts = { 0, 30 * 1000 * 1000 };

		for (uintptr_t i = 0; i < 4; i++)
			pthread_create(&t[i], NULL, sf_reader, (void *)i);
		nanosleep(&ts, NULL);
		raise(SIGSTOP); /* every thread stops; the harness continues us */
		for (int i = 0; i < 4; i++)
			pthread_join(t[i], NULL);
	} else {
		struct timespec ts = { 2, 0 };
		struct udsm_stats a, b;
		double cpu0;

		wait_stopped_peer();
		udsm_stats(dsm, &a);
		cpu0 = cpu_s();
		nanosleep(&ts, NULL); /* only our service thread runs now */
		udsm_stats(dsm, &b);
		fprintf(stderr, "worker 0: %.3f s CPU in 2 s with the peer stopped; %llu bytes "
			"sent before, %llu during\n", cpu_s() - cpu0,
			(unsigned long long)a.bytes_sent,
			(unsigned long long)(b.bytes_sent - a.bytes_sent));
		if (cpu_s() - cpu0 > 0.25) /* the old flush loop took 0.6 s even on a loaded host */
			fail("%.2f s of CPU in 2 s while the peer's socket is full: busy loop",
			     cpu_s() - cpu0);
	}
	barrier("after the stall"); /* nobody lost */
}

static void run_stalldead(unsigned expect_ms)
{
	struct sigaction sa = { .sa_handler = on_sigbus };
	struct timespec t0;
	volatile size_t lost = 0, p;
	double took, cpu0;
	int err;

	if (nodes != 2)
		fail("stalldead needs 2 nodes");
	if (self == 1)
		for (size_t q = 1; q < npages; q += 2)
			datagen(q, 41);
	barrier("before the stall");
	sigaction(SIGBUS, &sa, NULL);
	if (self == 0) {
		wait_stopped_peer();
		clock_gettime(CLOCK_MONOTONIC, &t0);
		cpu0 = cpu_s();
		for (p = 1; p < npages; p += 2) {
			if (sigsetjmp(bus_jmp, 1) == 0) {
				volatile uint8_t x = base[p * ps];
				(void)x;
				fail("page %zu of the stopped node was readable", (size_t)p);
			} else {
				lost++;
			}
		}
		took = ms_since(&t0);
		/* Waiting on a stopped peer costs no CPU: nothing spins (the bound is loose for
		 * sanitizer builds on a loaded machine). */
		if (cpu_s() - cpu0 > took / 1e3 / 4)
			fail("%.2f s of CPU while waiting %.2f s for a stopped peer", cpu_s() - cpu0,
			     took / 1e3);
		err = udsm_barrier(dsm);
		if (err != UDSM_EPEER)
			fail("barrier after the loss returned %s, want UDSM_EPEER",
			     udsm_strerror(err));
		if (took > expect_ms)
			fail("the stopped node was declared lost after %.0f ms, bound %u ms", took,
			     expect_ms);
		fprintf(stderr, "worker 0: stopped node lost after %.0f ms (bound %u), %zu pages "
			"SIGBUS, %.3f s CPU\n", took, expect_ms, (size_t)lost, cpu_s() - cpu0);
		return;
	}
	raise(SIGSTOP); /* stays stopped until node 0 is done; then we are continued */
	/* Expelled: once the service loop ran, every page must be LOST and fault with SIGBUS. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (udsm_page_state(dsm, npages - 1) != UDSM_LOST) {
		if (ms_since(&t0) > 5000)
			fail("not fenced 5 s after being continued");
		sched_yield();
	}
	for (p = 0; p < npages; p++) {
		if (udsm_page_state(dsm, p) != UDSM_LOST)
			fail("page %zu is %d after the fence, not LOST", (size_t)p,
			     udsm_page_state(dsm, p));
		if (sigsetjmp(bus_jmp, 1) == 0) {
			volatile uint8_t x = base[p * ps];
			(void)x;
			fail("page %zu readable after the fence", (size_t)p);
		}
	}
	err = udsm_barrier(dsm);
	if (err != UDSM_EPEER)
		fail("barrier of a fenced node returned %s, want UDSM_EPEER", udsm_strerror(err));
	fprintf(stderr, "worker 1: fenced as expected after %.0f ms\n", ms_since(&t0));
}

/* ---- alloc ------------------------------------------------------------------------------ */

#define AT 4   /* threads per node */
#define AB 100 /* blocks per thread */
struct ablk {
	uint64_t addr, size;
};
static struct ablk *atab; /* [nodes][AT][AB], a udsm_coalloc block */
static int free_errors;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

static void alloc_log(void *arg, int level, const char *msg)
{
	(void)arg;
	pthread_mutex_lock(&log_mu);
	if (level <= UDSM_LOG_ERR && strstr(msg, "udsm_free("))
		free_errors++;
	pthread_mutex_unlock(&log_mu);
	fprintf(stderr, "worker %u: log %d: %s\n", self, level, msg);
}

static uint8_t apat(uint64_t addr)
{
	return (uint8_t)(mix(addr) | 1);
}

static size_t asize(unsigned t, unsigned i)
{
	uint64_t r = mix(((uint64_t)self << 32) | (t << 16) | i);

	return r % 10 ? 1 + r % 1000 : 2049 + r % 6000;
}

static void *alloc_thread(void *arg)
{
	unsigned t = (unsigned)(uintptr_t)arg;

	for (unsigned i = 0; i < AB; i++) {
		size_t sz = asize(t, i);
		uint8_t *p = udsm_malloc(dsm, sz);

		if (!p)
			fail("udsm_malloc(%zu): %s", sz, strerror(errno));
		memset(p, apat((uint64_t)(uintptr_t)p), sz);
		/* Spans and large blocks of up to a chunk of the default layout (64 pages in
		 * these regions) are on pages homed at the allocating node. */
		for (size_t pg = (size_t)(p - base) / ps; pg <= (size_t)(p + sz - 1 - base) / ps;
		     pg++)
			if (udsm_page_home(dsm, pg) != (int)self)
				fail("udsm_malloc(%zu) on node %u: page %zu homed at node %d", sz,
				     self, pg, udsm_page_home(dsm, pg));
		atab[((size_t)self * AT + t) * AB + i] = (struct ablk){ (uintptr_t)p, sz };
	}
	return NULL;
}

static int ablk_cmp(const void *a, const void *b)
{
	const struct ablk *x = a, *y = b;

	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static void *coalloc_or_fail(size_t size)
{
	void *p = udsm_coalloc(dsm, size);

	if (!p)
		fail("udsm_coalloc(%zu): %s", size, strerror(errno));
	return p;
}

/* Every page of the @k-page block at @p is homed where @placement puts it, on this node. */
static void check_homes(const uint8_t *p, size_t k, int placement, const char *what)
{
	size_t first = (size_t)(p - base) / ps;

	for (size_t o = 0; o < k; o++) {
		int want = placement == UDSM_PLACE_BLOCK ? (int)(((o + 1) * nodes - 1) / k)
			 : placement == UDSM_PLACE_CYCLIC ? (int)(o % nodes) : placement;
		int got = udsm_page_home(dsm, first + o);

		if (got != want)
			fail("%s: page %zu of %zu homed at node %d, want %d", what, o, k, got,
			     want);
	}
}

/* Placement of collective blocks (docs/ALLOC.md, Placement). */
static void run_placement(void)
{
	size_t k = 37;
	uint8_t *blk, *again;
	void *p;

	blk = coalloc_or_fail(k * ps);
	check_homes(blk, k, UDSM_PLACE_BLOCK, "udsm_coalloc");
	/* Each node writes its own share (local: it is the home), everybody reads all. */
	for (size_t o = 0; o < k; o++)
		if (udsm_page_home(dsm, (size_t)(blk - base) / ps + o) == (int)self)
			memset(blk + o * ps, (int)(o + 1), ps);
	barrier("shares written");
	for (size_t o = 0; o < k; o++)
		if (blk[o * ps] != (uint8_t)(o + 1) || blk[o * ps + ps - 1] != (uint8_t)(o + 1))
			fail("placed block page %zu reads %u", o, blk[o * ps]);
	barrier("shares read");
	/* Freed with copies everywhere, allocated again on one node: zeros, homed there. */
	if (udsm_cofree(dsm, blk))
		fail("udsm_cofree of the placed block");
	again = udsm_coalloc_placed(dsm, k * ps, 1);
	if (!again)
		fail("udsm_coalloc_placed(node 1): %s", strerror(errno));
	if (again != blk)
		fail("udsm_coalloc_placed after cofree: %p, not the freed %p", (void *)again,
		     (void *)blk);
	check_homes(again, k, 1, "udsm_coalloc_placed(node 1)");
	for (size_t i = 0; i < k * ps; i++)
		if (again[i])
			fail("reused placed block not zero at %zu: %u", i, again[i]);
	barrier("node placement checked");
	if (self == 0)
		memset(again, 0x5a, k * ps);
	barrier("written by node 0");
	if (udsm_cofree(dsm, again))
		fail("udsm_cofree of the node-placed block");
	again = udsm_coalloc_placed(dsm, k * ps, UDSM_PLACE_CYCLIC);
	if (!again)
		fail("udsm_coalloc_placed(cyclic): %s", strerror(errno));
	check_homes(again, k, UDSM_PLACE_CYCLIC, "udsm_coalloc_placed(cyclic)");
	for (size_t i = 0; i < k * ps; i++)
		if (again[i])
			fail("reused cyclic block not zero at %zu: %u", i, again[i]);
	if (udsm_cofree(dsm, again))
		fail("udsm_cofree of the cyclic block");
	/* A placement nobody can honour: EINVAL on every node. */
	errno = 0;
	p = udsm_coalloc_placed(dsm, ps, (int)nodes);
	if (p || errno != EINVAL)
		fail("udsm_coalloc_placed(node %u) gave %p, errno %d", nodes, p, errno);
	barrier("placement done");
}

static void run_alloc(void)
{
	size_t asz = 3 * ps + 100, n = (size_t)nodes * AT * AB, mine = 0;
	uint8_t *a, *b, *tmp, stackvar = 0;
	uint64_t *addrs, *old;
	struct ablk *all;
	pthread_t th[AT];
	void *p;

	/* Same address everywhere, zero-filled; written by node 0, read by all. */
	a = coalloc_or_fail(asz);
	addrs = coalloc_or_fail(nodes * sizeof(uint64_t));
	for (size_t i = 0; i < asz; i++)
		if (a[i])
			fail("coalloc block not zero at %zu", i);
	addrs[self] = (uintptr_t)a;
	barrier("coalloc addresses");
	for (unsigned i = 0; i < nodes; i++)
		if (addrs[i] != (uintptr_t)a)
			fail("node %u got %#llx from udsm_coalloc, node %u %p", i,
			     (unsigned long long)addrs[i], self, (void *)a);
	if (self == 0)
		for (size_t i = 0; i < asz; i++)
			a[i] = (uint8_t)(i * 7 + 1);
	barrier("coalloc written");
	for (size_t i = 0; i < asz; i++)
		if (a[i] != (uint8_t)(i * 7 + 1))
			fail("coalloc block byte %zu: %u", i, a[i]);
	/* Freed and allocated again: the same space, zeroed. */
	if (udsm_cofree(dsm, a))
		fail("udsm_cofree");
	b = coalloc_or_fail(asz - 50);
	if (b != a)
		fail("coalloc after cofree: %p, not the freed %p", (void *)b, (void *)a);
	for (size_t i = 0; i < asz - 50; i++)
		if (b[i])
			fail("reused coalloc block not zero at %zu: %u", i, b[i]);
	barrier("reuse checked");

	run_placement();

	/* Every thread of every node allocates at once; every node checks every block. */
	atab = coalloc_or_fail(n * sizeof(*atab));
	for (unsigned t = 0; t < AT; t++)
		pthread_create(&th[t], NULL, alloc_thread, (void *)(uintptr_t)t);
	for (unsigned t = 0; t < AT; t++)
		pthread_join(th[t], NULL);
	barrier("malloc done");
	all = malloc(n * sizeof(*all));
	old = malloc(AT * AB * sizeof(*old));
	if (!all || !old)
		fail("malloc");
	memcpy(all, atab, n * sizeof(*all));
	qsort(all, n, sizeof(*all), ablk_cmp);
	for (size_t i = 0; i < n; i++) {
		const uint8_t *q = (const uint8_t *)(uintptr_t)all[i].addr;

		if (i && all[i - 1].addr + all[i - 1].size > all[i].addr)
			fail("blocks %#llx+%llu and %#llx overlap",
			     (unsigned long long)all[i - 1].addr, (unsigned long long)all[i - 1].size,
			     (unsigned long long)all[i].addr);
		for (size_t j = 0; j < all[i].size; j++)
			if (q[j] != apat(all[i].addr))
				fail("block %#llx byte %zu", (unsigned long long)all[i].addr, j);
	}
	barrier("blocks checked");

	/* Node i frees node i+1's blocks; node i+1 gets its small ones back. */
	for (size_t i = 0; i < AT * AB; i++) {
		struct ablk *x = &atab[((self + 1) % nodes) * AT * AB + i];

		udsm_free(dsm, (void *)(uintptr_t)x->addr);
	}
	barrier("cross frees");
	for (size_t i = 0; i < AT * AB; i++) {
		struct ablk *x = &atab[(size_t)self * AT * AB + i];

		if (x->size <= 2048)
			old[mine++] = x->addr;
	}
	for (size_t i = 0; i < AT * AB; i++) {
		struct ablk *x = &atab[(size_t)self * AT * AB + i];
		int found = 0;

		if (x->size > 2048)
			continue;
		p = udsm_malloc(dsm, x->size);
		for (size_t k = 0; k < mine && !found; k++)
			found = old[k] == (uintptr_t)p;
		if (!found)
			fail("after remote frees, udsm_malloc(%llu) gave %p, not one of ours",
			     (unsigned long long)x->size, p);
		udsm_free(dsm, p);
	}

	/* Bad frees are logged and ignored. */
	tmp = udsm_malloc(dsm, 200);
	udsm_free(dsm, NULL);
	udsm_free(dsm, &stackvar);
	udsm_free(dsm, tmp + 8);
	udsm_free(dsm, tmp);
	udsm_free(dsm, tmp);
	udsm_free(dsm, b); /* a coalloc block */
	if (free_errors != 4)
		fail("%d bad frees logged, want 4", free_errors);
	if (udsm_malloc(dsm, 200) != tmp)
		fail("the free list is damaged");
	barrier("bad frees");

	/* A mismatched collective: every node gets EINVAL. */
	errno = 0;
	p = udsm_coalloc(dsm, self == nodes - 1 ? 2 * ps : ps);
	if (p || errno != EINVAL)
		fail("mismatched udsm_coalloc gave %p, errno %d", p, errno);
	free(all);
	free(old);
}

/* ------------------------------------------------------------------------------------------
 * Locks.
 */

static unsigned lk_threads = 4, lk_iters = 200;

/* The first page homed at node @n (the home map decides; every node sees the same). */
static size_t page_homed_at(unsigned n)
{
	for (size_t p = 0; p < npages; p++)
		if (udsm_page_home(dsm, p) == (int)n)
			return p;
	fail("no page of the region is homed at node %u", n);
}

/* Lock i sits in the first page homed at node i (its home), its counter and owner word in
 * page npages - 1 - i: the data moves with the page, the lock with messages. */
static void *lk_addr(unsigned i)
{
	return base + page_homed_at(i) * ps + 64;
}

static volatile uint64_t *lk_counter(unsigned i)
{
	return (volatile uint64_t *)(base + (npages - 1 - i) * ps);
}

static void *lock_thread(void *arg)
{
	unsigned t = (unsigned)(uintptr_t)arg, me = self * 64 + t + 1;
	int err;

	for (unsigned i = 0; i < lk_iters; i++) {
		unsigned l = (i + t + self) % nodes;
		volatile uint64_t *c = lk_counter(l);

		if ((err = udsm_lock(dsm, lk_addr(l))))
			fail("thread %u: udsm_lock: %s", t, udsm_strerror(err));
		if (c[1])
			fail("thread %u: lock %u entered while %llu is inside", t, l,
			     (unsigned long long)c[1]);
		c[1] = me;
		uint64_t v = c[0];
		if (i % 16 == 0)
			sched_yield(); /* let another thread try to get in */
		c[0] = v + 1;
		if (c[1] != me)
			fail("thread %u: owner word changed inside lock %u", t, l);
		c[1] = 0;
		if ((err = udsm_unlock(dsm, lk_addr(l))))
			fail("thread %u: udsm_unlock: %s", t, udsm_strerror(err));
	}
	/* Back-to-back thread barriers: every thread of every node, three times. */
	for (unsigned r = 0; r < 3; r++)
		if ((err = udsm_barrier_threads(dsm, lk_threads)))
			fail("thread %u: udsm_barrier_threads round %u: %s", t, r, udsm_strerror(err));
	return NULL;
}

static void *lock_mismatch(void *arg)
{
	int err;

	(void)arg;
	usleep(300000); /* the main thread's call (count 2) is in first */
	err = udsm_barrier_threads(dsm, 3);
	if (err != -EINVAL)
		fail("udsm_barrier_threads with a mismatched count: %d, want -EINVAL", err);
	if ((err = udsm_barrier_threads(dsm, 2)))
		fail("udsm_barrier_threads(2): %s", udsm_strerror(err));
	return NULL;
}

static void run_lock(void)
{
	pthread_t th[64];
	uint8_t *x = lk_addr(0), *outside = base + npages * ps;
	uint64_t want;
	int err;

	if (npages < 2 * nodes + 1)
		fail("need at least %u pages", 2 * nodes + 1);
	if (lk_threads > 64)
		lk_threads = 64;
	/* Bad addresses and misuse. */
	if ((err = udsm_lock(dsm, outside)) != -EINVAL || (err = udsm_lock(dsm, base - 1)) != -EINVAL ||
	    (err = udsm_trylock(dsm, outside)) != -EINVAL || (err = udsm_unlock(dsm, outside)) != -EINVAL)
		fail("a lock address outside the region gave %d, want -EINVAL", err);
	if ((err = udsm_unlock(dsm, x)) != -EPERM)
		fail("unlock of a lock not held: %d, want -EPERM", err);

	/* trylock against a holder on another node: node 0 holds lock 0 (homed at node 0). */
	if (self == 0) {
		if ((err = udsm_lock(dsm, x)))
			fail("udsm_lock: %s", udsm_strerror(err));
		if ((err = udsm_lock(dsm, x)) != -EDEADLK)
			fail("relock: %d, want -EDEADLK", err);
	}
	barrier("lock 0 held by node 0");
	if (self != 0 && (err = udsm_trylock(dsm, x)) != -EBUSY)
		fail("trylock while node 0 holds the lock: %d (%s), want -EBUSY", err,
		     udsm_strerror(err));
	barrier("trylock refused");
	if (self == 0 && (err = udsm_unlock(dsm, x)))
		fail("udsm_unlock: %s", udsm_strerror(err));
	barrier("lock 0 released");
	if (self == nodes - 1) {
		if ((err = udsm_trylock(dsm, x)))
			fail("trylock of a free lock: %s", udsm_strerror(err));
		if ((err = udsm_unlock(dsm, x)))
			fail("udsm_unlock: %s", udsm_strerror(err));
	}
	barrier("trylock granted");

	/* Mutual exclusion and FIFO hand-over under load: threads x nodes on N locks. */
	for (unsigned t = 0; t < lk_threads; t++)
		if (pthread_create(&th[t], NULL, lock_thread, (void *)(uintptr_t)t))
			fail("pthread_create");
	for (unsigned t = 0; t < lk_threads; t++)
		pthread_join(th[t], NULL);
	barrier("all increments done");
	want = (uint64_t)nodes * lk_threads * lk_iters;
	uint64_t sum = 0;
	for (unsigned l = 0; l < nodes; l++)
		sum += lk_counter(l)[0];
	if (sum != want)
		fail("counters sum to %llu, want %llu: increments lost under the locks",
		     (unsigned long long)sum, (unsigned long long)want);

	/* A mismatched thread count gets EINVAL instead of a hang. */
	pthread_t mm;
	if (pthread_create(&mm, NULL, lock_mismatch, NULL))
		fail("pthread_create");
	if ((err = udsm_barrier_threads(dsm, 2)))
		fail("udsm_barrier_threads(2): %s", udsm_strerror(err));
	pthread_join(mm, NULL);

	struct udsm_stats2 st;
	if (udsm_stats2(dsm, &st, sizeof(st)) > 0)
		fprintf(stderr, "worker %u: %llu lock acquisitions measured, mean %.1f us\n", self,
			(unsigned long long)st.lat[UDSM_LAT_LOCK].count,
			st.lat[UDSM_LAT_LOCK].count ? (double)st.lat[UDSM_LAT_LOCK].sum_ns / 1e3 /
			(double)st.lat[UDSM_LAT_LOCK].count : 0.0);
}

static void run_lockvictim(void)
{
	unsigned victim = nodes - 1;
	void *x = lk_addr(0);          /* homed at node 0 */
	void *y = lk_addr(victim);     /* homed at the victim */
	int err;

	if (self == victim) {
		if ((err = udsm_lock(dsm, x)))
			fail("udsm_lock: %s", udsm_strerror(err));
		lk_counter(0)[0] = 42; /* "half-updated" data */
	}
	barrier("the victim holds the lock");
	if (self == victim)
		raise(SIGKILL);
	if (self == 0) {
		/* Waits for the dead holder: robust-mutex semantics. */
		err = udsm_lock(dsm, x);
		if (err != UDSM_EPEER)
			fail("lock held by a dead node: %d (%s), want UDSM_EPEER", err,
			     udsm_strerror(err));
		if ((err = udsm_lock(dsm, x)) != -EDEADLK)
			fail("after UDSM_EPEER the lock must be held here: relock gave %d", err);
		if ((err = udsm_unlock(dsm, x)))
			fail("udsm_unlock after UDSM_EPEER: %s", udsm_strerror(err));
		if ((err = udsm_lock(dsm, x)))
			fail("udsm_lock of the recovered lock: %s", udsm_strerror(err));
		if ((err = udsm_unlock(dsm, x)))
			fail("udsm_unlock: %s", udsm_strerror(err));
	}
	/* The victim's death shows in the barrier; then its locks are gone for good. */
	err = udsm_barrier(dsm);
	if (err != UDSM_EPEER)
		fail("barrier after the kill: %d, want UDSM_EPEER", err);
	if ((err = udsm_lock(dsm, y)) != UDSM_EPEER)
		fail("a lock homed at the dead node: %d (%s), want UDSM_EPEER", err,
		     udsm_strerror(err));
	fprintf(stderr, "worker %u: locks after the holder's death behave\n", self);
	printf("survivor-done\n");
	fflush(stdout);
	alarm(30);
	while (getchar() != EOF)
		;
}

struct lkwait {
	void *addr;
	int want, got;
	bool unlock;
};

static void *lock_waiter(void *arg)
{
	struct lkwait *w = arg;

	w->got = udsm_lock(dsm, w->addr);
	if (w->got == w->want && w->unlock && (w->got == 0 || w->got == UDSM_EPEER))
		w->got = udsm_unlock(dsm, w->addr) ? -9999 : w->got;
	return NULL;
}

static void run_lockleave(void)
{
	unsigned lv = nodes - 1;
	void *x = lk_addr(lv), *y = (uint8_t *)lk_addr(lv) + 8, *z = lk_addr(0);
	struct lkwait wa = { .addr = x, .want = 0, .unlock = true };
	struct lkwait wb = { .addr = z, .want = UDSM_EPEER, .unlock = true };
	void *wl = (uint8_t *)lk_addr(0) + 192; /* homed at node 0 */
	struct lkwait wc = { .addr = wl, .want = UDSM_ECLOSED };
	pthread_t th;
	int err;

	if (nodes < 3)
		fail("lockleave needs 3 nodes or more");
	if ((self == 0 && (err = udsm_lock(dsm, x))) || (self == lv && (err = udsm_lock(dsm, z))) ||
	    (self == 1 && (err = udsm_lock(dsm, wl))))
		fail("udsm_lock: %s", udsm_strerror(err));
	barrier("X held by node 0, Z by the leaver");
	if (self == 1 && pthread_create(&th, NULL, lock_waiter, &wa))
		fail("pthread_create");
	if (self == 0 && pthread_create(&th, NULL, lock_waiter, &wb))
		fail("pthread_create");
	if (self == lv && pthread_create(&th, NULL, lock_waiter, &wc))
		fail("pthread_create");
	usleep(300000); /* the requests reach the homes (the test passes either way) */
	barrier("waiters queued");
	if (self == 1 && (err = udsm_unlock(dsm, wl))) /* races with the leaver's close */
		fail("udsm_unlock: %s", udsm_strerror(err));
	if (self == lv) {
		err = udsm_close(dsm); /* holding Z: given up, logged */
		if (err)
			fail("udsm_close: %s", udsm_strerror(err));
		pthread_join(th, NULL);
		if (wc.got != UDSM_ECLOSED && wc.got != 0)
			fail("a waiter of a closing node: %d (%s), want UDSM_ECLOSED", wc.got,
			     udsm_strerror(wc.got));
		/* 0 only if the grant won the race with the close: then the lock was given
		 * up at the close (as a held one) */
		fprintf(stderr, "worker %u: lockleave passed\n", self);
		exit(0);
	}
	size_t xpage = (size_t)((uint8_t *)x - base) / ps;
	for (int i = 0; udsm_page_home(dsm, xpage) == (int)lv; i++) {
		if (i > 1000)
			fail("page %zu is still homed at the leaver after 10 s", xpage);
		usleep(10000);
	}
	if (self == 0) {
		pthread_join(th, NULL);
		if (wb.got != UDSM_EPEER)
			fail("waiter for the lock the leaver held: %d (%s), want UDSM_EPEER", wb.got,
			     udsm_strerror(wb.got));
		if ((err = udsm_unlock(dsm, x)))
			fail("unlock of X after the hand-over: %s", udsm_strerror(err));
	}
	if (self == 1) {
		pthread_join(th, NULL);
		if (wa.got != 0)
			fail("waiter for X across the hand-over: %d (%s)", wa.got,
			     udsm_strerror(wa.got));
	}
	barrier("X handed over");
	if (self == 0) { /* W: whatever crossed the leaver's close, it is free again */
		if ((err = udsm_lock(dsm, wl)) && err != UDSM_EPEER)
			fail("lock W after the leaver's cancelled wait: %s", udsm_strerror(err));
		if ((err = udsm_unlock(dsm, wl)))
			fail("udsm_unlock W: %s", udsm_strerror(err));
	}
	for (int i = 0; i < 20; i++) {
		if ((err = udsm_lock(dsm, i % 2 ? x : y)) || (err = udsm_unlock(dsm, i % 2 ? x : y)))
			fail("a lock homed at the successor: %s", udsm_strerror(err));
	}
	fprintf(stderr, "worker %u: locks survived the leave\n", self);
}

/* lockoom: the log, on stderr as usual, and whether this node said it lost the lock message
 * oom_lost_type names. */
static int oom_lost_logged;
static const char *oom_lost_type = "LOCK_NACK";

static void oom_log(void *arg, int level, const char *msg)
{
	const char *at = strstr(msg, "out of memory keeping a ");

	(void)arg;
	if (at && !strcmp(at + strlen("out of memory keeping a "), oom_lost_type))
		__atomic_store_n(&oom_lost_logged, 1, __ATOMIC_RELEASE);
	fprintf(stderr, "udsm: %s\n", msg);
}

static void expect_lock(void *addr, int want, const char *what)
{
	int err = udsm_lock(dsm, addr);

	if (err != want)
		fail("%s: udsm_lock gave %d (%s), want %d (%s)", what, err, udsm_strerror(err),
		     want, udsm_strerror(want));
	if (!err && (err = udsm_unlock(dsm, addr)))
		fail("%s: udsm_unlock: %s", what, udsm_strerror(err));
}

/* Whether workload @w (2 nodes, allocation failures) can run here: false, said, under a
 * sanitizer. */
static bool oom_usable(const char *w)
{
	if (nodes != 2)
		fail("%s runs on 2 nodes", w);
	if (!OOM_INJECT)
		fprintf(stderr, "worker %u: %s needs its own malloc, not a sanitizer's: nothing "
			"checked\n", self, w);
	return OOM_INJECT;
}

static void run_lockoom(void)
{
	void *x = lk_addr(1), *z = lk_addr(0); /* homed at node 1, at node 0 */
	int err;

	if (!oom_usable("lockoom"))
		return;
	/* 1. This node's own allocations for a request fail. */
	if (self == 0) {
		oom_self(0, 1); /* the record of the waiting thread */
		expect_lock(x, -ENOMEM, "no memory for the request");
		oom_self(1, 1); /* the LOCK_REQ in the outbox */
		expect_lock(x, -ENOMEM, "no memory to queue the request");
		oom_self(1, 1); /* homed here: the lock table's entry */
		expect_lock(z, -ENOMEM, "no memory in this node's lock table");
		oom_self(0, 0);
		expect_lock(x, 0, "a remote lock after the failures");
		expect_lock(z, 0, "a local lock after the failures");
	}
	barrier("after this node's own failures");

	/* 2. The home's table cannot take the request: it refuses, and stays up. */
	if (self == 1)
		oom_service(OOM_SVC_ONE);
	barrier("the home's table armed");
	if (self == 0) {
		expect_lock(x, -ENOMEM, "the home had no memory for the request");
		expect_lock(x, 0, "the lock right after the home's refusal");
	}
	barrier("after the home's refusal");
	if (self == 1 && __atomic_load_n(&oom_svc_hits, __ATOMIC_RELAXED) != 1)
		fail("the service thread failed %u allocations, want 1", oom_svc_hits);

	/* 3. The home cannot even queue its refusal: it fences itself. */
	if (self == 1)
		oom_service(OOM_SVC_CASCADE);
	barrier("the home's refusal armed");
	if (self == 0) {
		expect_lock(x, UDSM_EPEER, "a lock whose home fenced itself");
		expect_lock(z, 0, "a local lock after the home's loss");
		err = udsm_barrier(dsm);
		if (err != UDSM_EPEER)
			fail("barrier after node 1's fence: %d (%s), want UDSM_EPEER", err,
			     udsm_strerror(err));
	} else {
		err = udsm_barrier(dsm); /* node 0 comes only after its request failed */
		oom_service(OOM_SVC_OFF);
		if (!err)
			fail("the barrier of a node that lost a lock message passed");
		if (!__atomic_load_n(&oom_lost_logged, __ATOMIC_ACQUIRE))
			fail("the lost LOCK_NACK was not logged (the barrier gave %s)",
			     udsm_strerror(err));
		fprintf(stderr, "worker 1: fenced as it should (%s)\n", udsm_strerror(err));
	}
}

static void run_lockoomleave(void)
{
	void *x = lk_addr(1); /* homed at the leaver */
	int err;

	if (!oom_usable("lockoomleave"))
		return;
	oom_lost_type = "LOCK_ADOPT";
	if (self == 0 && (err = udsm_lock(dsm, x)))
		fail("udsm_lock: %s", udsm_strerror(err));
	if (self == 0)
		oom_service(OOM_SVC_ONE); /* the entry the hand-over brings */
	barrier("X held by node 0, its successor's table armed");
	if (self == 1) {
		err = udsm_close(dsm);
		fprintf(stderr, "worker 1: closed (%s) while its successor lost the lock table\n",
			udsm_strerror(err));
		exit(0);
	}
	/* Alone once node 1 is gone, node 0 passes barriers until the adoption fails. */
	for (int i = 0; !(err = udsm_barrier(dsm)); i++) {
		if (i > 1000)
			fail("barriers still pass 10 s after the leave: the adoption did not fail");
		usleep(10000);
	}
	oom_service(OOM_SVC_OFF);
	if (!__atomic_load_n(&oom_lost_logged, __ATOMIC_ACQUIRE))
		fail("the lost LOCK_ADOPT was not logged (the barrier gave %s)", udsm_strerror(err));
	if (__atomic_load_n(&oom_svc_hits, __ATOMIC_RELAXED) != 1)
		fail("the service thread failed %u allocations, want 1", oom_svc_hits);
	err = udsm_unlock(dsm, x); /* returns, whatever it says of a fenced node's lock */
	fprintf(stderr, "worker 0: fenced as it should (unlock: %s)\n", udsm_strerror(err));
}

static void on_listen(void *arg, const char *hostport)
{
	int fd = *(int *)arg;

	if (fd >= 0) {
		dprintf(fd, "%s\n", hostport);
		close(fd);
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' }, { "join", required_argument, NULL, 'j' },
		{ "nodes", required_argument, NULL, 'n' },  { "pages", required_argument, NULL, 'p' },
		{ "port-fd", required_argument, NULL, 'f' }, { "iters", required_argument, NULL, 'i' },
		{ "open-timeout", required_argument, NULL, 't' }, { "squat", no_argument, NULL, 's' },
		{ "secret", required_argument, NULL, 'S' },
		{ "expect-ms", required_argument, NULL, 'e' },
		{ "peer-buffer-max", required_argument, NULL, 'b' },
		{ "leaver", required_argument, NULL, 'L' },
		{ "threads", required_argument, NULL, 'T' },
		{ "readahead", required_argument, NULL, 'r' },
		{ "spin", required_argument, NULL, 'P' },
		{ "victim-node", required_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct udsm_config cfg = { .timeout_ms = 20000 };
	unsigned pages = 64, iters = 10000, expect_ms = 10000;
	int port_fd = -1, c, err, squat = 0;
	const char *w;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'l': cfg.listen = optarg; break;
		case 'j': cfg.join = optarg; break;
		case 'n': cfg.nodes = (unsigned)atoi(optarg); break;
		case 'p': pages = (unsigned)atoi(optarg); break;
		case 'f': port_fd = atoi(optarg); break;
		case 'i': iters = (unsigned)atoi(optarg); break;
		case 't': cfg.timeout_ms = atoi(optarg); break;
		case 's': squat = 1; break;
		case 'S': cfg.secret = optarg; break;
		case 'e': expect_ms = (unsigned)atoi(optarg); break;
		case 'b': cfg.peer_buffer_max = (size_t)strtoull(optarg, NULL, 0); break;
		case 'L': leaver = (unsigned)atoi(optarg); break;
		case 'T': lk_threads = (unsigned)atoi(optarg); break;
		case 'r': cfg.readahead = atoi(optarg); break;
		case 'P': cfg.spin_us = atoi(optarg); break; /* -1: the service thread never polls */
		case 'V': victim_node = (unsigned)atoi(optarg); break;
		default: return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: udsm-worker [options] crc|counters|pingpong|publish|threads|victim|"
				"forkvictim|exchange|stall|stallfull|stalldead|racy|leave|alloc|lock|lockvictim|lockleave|"
				"lockoom|lockoomleave|loanread\n");
		return 2;
	}
	w = argv[optind];
	ps = (size_t)sysconf(_SC_PAGESIZE);
	cfg.size = (size_t)pages * ps;
	cfg.on_listen = on_listen;
	cfg.on_listen_arg = &port_fd;
	if (squat) {
		/* Take the address range the first node will offer: joining must fail cleanly. */
#ifdef TSAN_REGION_HINT
		void *at = (void *)(uintptr_t)TSAN_REGION_HINT;
#else
		void *at = (void *)(uintptr_t)0x300000000000ull;
#endif

		if (mmap(at, ps, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1,
			 0) != at) {
			fprintf(stderr, "worker: cannot squat %p\n", at);
			return 2;
		}
		err = udsm_open(&cfg, &dsm);
		if (err != UDSM_EADDR) {
			fprintf(stderr, "worker: joining with the range taken gave %d (%s), want "
				"UDSM_EADDR\n", err, udsm_strerror(err));
			return 1;
		}
		fprintf(stderr, "worker: joining failed as it should: %s\n", udsm_strerror(err));
		return 0;
	}
	if (!strcmp(w, "alloc"))
		udsm_set_log_func(alloc_log, NULL, UDSM_LOG_WARN);
	if (!strcmp(w, "lockoom") || !strcmp(w, "lockoomleave"))
		udsm_set_log_func(oom_log, NULL, UDSM_LOG_WARN);
	err = udsm_open(&cfg, &dsm);
	if (err) {
		fprintf(stderr, "worker: udsm_open: %s\n", udsm_strerror(err));
		return err == UDSM_EAUTH ? 3 : 2;
	}
	self = udsm_node_id(dsm);
	nodes = udsm_nodes(dsm);
	base = udsm_base(dsm);
	npages = udsm_size(dsm) / ps;

	if (!strcmp(w, "crc"))
		run_crc();
	else if (!strcmp(w, "counters"))
		run_counters(8);
	else if (!strcmp(w, "pingpong"))
		run_pingpong(iters);
	else if (!strcmp(w, "publish"))
		run_publish();
	else if (!strcmp(w, "threads"))
		run_threads();
	else if (!strcmp(w, "loanread"))
		run_loanread();
	else if (!strcmp(w, "victim"))
		run_victim(0);
	else if (!strcmp(w, "forkvictim"))
		run_victim(1);
	else if (!strcmp(w, "exchange"))
		run_exchange();
	else if (!strcmp(w, "stall"))
		run_stall();
	else if (!strcmp(w, "stallfull"))
		run_stallfull();
	else if (!strcmp(w, "stalldead"))
		run_stalldead(expect_ms);
	else if (!strcmp(w, "racy"))
		run_racy();
	else if (!strcmp(w, "leave"))
		run_leave();
	else if (!strcmp(w, "alloc"))
		run_alloc();
	else if (!strcmp(w, "lock")) {
		lk_iters = iters;
		run_lock();
	} else if (!strcmp(w, "lockvictim"))
		run_lockvictim();
	else if (!strcmp(w, "lockleave"))
		run_lockleave();
	else if (!strcmp(w, "lockoom"))
		run_lockoom();
	else if (!strcmp(w, "lockoomleave"))
		run_lockoomleave();
	else
		fail("unknown workload %s", w);
	if (strcmp(w, "victim") && strcmp(w, "forkvictim") && strcmp(w, "stalldead") &&
	    strcmp(w, "lockvictim") &&
	    ((strcmp(w, "lockoom") && strcmp(w, "lockoomleave")) || !OOM_INJECT))
		barrier("at the end");
	udsm_close(dsm);
	fprintf(stderr, "worker %u: %s passed\n", self, w);
	return 0;
}
