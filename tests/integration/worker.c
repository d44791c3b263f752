/* SPDX-License-Identifier: MIT */
/*
 * worker.c - one udsm node running a named workload that checks what it reads.
 *
 *   udsm-worker [--listen H:P] [--join H:P] [--nodes N] [--pages P] [--port-fd FD]
 *               [--iters N] [--leaver N] WORKLOAD
 *
 * Workloads (every node runs the same one; node ids decide the roles):
 *   crc        node 0 writes CRC-patterned pages, all others verify them; then every node
 *              rewrites its share and everybody verifies everything again
 *   counters   every node increments its own counter in every page (disjoint words of the
 *              same pages) across barrier phases; every node checks every value each phase
 *   pingpong   nodes 0 and 1 alternately write one page --iters times (turn kept in the page)
 *   threads    8 threads on node 1 fault on the same page at once, for reading, then writing
 *   victim     node nodes-1 kills itself with SIGKILL mid-run; the others must get SIGBUS on
 *              pages it held and UDSM_EPEER from the barrier, quickly, and exit 0
 *   leave      every node writes the pages it homes, node --leaver (default nodes-1) rewrites
 *              every third page (holds them Modified), the others share the rest; the leaver
 *              calls udsm_close(); the others then read every page (also those it homed or
 *              held Modified, and never-written ones) right away, check that no page is homed
 *              at the leaver any more, write every page, check, and pass barriers
 * Exit status: 0 pass, 1 a check failed, 2 usage or setup error.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "udsm.h"

static struct udsm *dsm;
static unsigned self, nodes;
static size_t ps, npages;
static uint8_t *base;

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

static void run_victim(void)
{
	unsigned victim = nodes - 1;
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
	if (self == victim)
		raise(SIGKILL);

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
		{ "leaver", required_argument, NULL, 'L' },
		{ NULL, 0, NULL, 0 },
	};
	struct udsm_config cfg = { .timeout_ms = 20000 };
	unsigned pages = 64, iters = 10000;
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
		case 'L': leaver = (unsigned)atoi(optarg); break;
		default: return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: udsm-worker [options] crc|counters|pingpong|threads|victim|"
			"leave\n");
		return 2;
	}
	w = argv[optind];
	ps = (size_t)sysconf(_SC_PAGESIZE);
	cfg.size = (size_t)pages * ps;
	cfg.on_listen = on_listen;
	cfg.on_listen_arg = &port_fd;
	if (squat) {
		/* Take the address range the first node will offer: joining must fail cleanly. */
		void *at = (void *)(uintptr_t)0x300000000000ull;

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
	err = udsm_open(&cfg, &dsm);
	if (err) {
		fprintf(stderr, "worker: udsm_open: %s\n", udsm_strerror(err));
		return 2;
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
	else if (!strcmp(w, "threads"))
		run_threads();
	else if (!strcmp(w, "victim"))
		run_victim();
	else if (!strcmp(w, "leave"))
		run_leave();
	else
		fail("unknown workload %s", w);
	if (strcmp(w, "victim"))
		barrier("at the end");
	udsm_close(dsm);
	fprintf(stderr, "worker %u: %s passed\n", self, w);
	return 0;
}
