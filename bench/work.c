/* SPDX-License-Identifier: MIT */
/*
 * work.c - what every node of a benchmark cluster runs.
 *
 * All nodes run the same script and meet at barriers; node 0 times and reports. Roles:
 * A = node 0 (faults and times), B = node 1 (owns the pages before A touches them), C, D =
 * nodes 2, 3 (extra sharers for the 3-sharer upgrade). Nothing but the region and barriers
 * connects the nodes: node 0 publishes the parameters in the region's first page, every node
 * publishes its counters in a page of its own ("slot") and node 0 collects them. That costs
 * protocol messages, so it only happens outside the measured windows.
 *
 * Messages and bytes per operation are udsm_stats deltas summed over all nodes, taken around
 * a measured window. A window is bracketed by two barriers; their cost (measured once per
 * cluster at start-up) is subtracted.
 *
 * Region layout (in pages; every area starts at a multiple of the node count and is followed
 * by a guard gap longer than the read-ahead window, so read-ahead in one area never
 * prefetches the next; pages are classified by the home udsm_page_home() reports, which
 * follows the default home layout, chunks of udsm_config.home_chunk pages):
 *   ctl (2 pages: parameters, floor address) | slots (one per node) | per-page areas |
 *   ping-pong page | false-sharing page | scan area
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define GUARD 64 /* pages after each area: more than the default read-ahead window (32) */
#define SPIN_TIMEOUT_NS (20ull * 1000000000ull)

static const char *const cls_name[3] = { "home_local", "home_remote", "home_third" };

struct layout {
	uint64_t ctl, slots, area;
	uint64_t read, write, up1, zero, up3; /* per-page areas, L.area pages each */
	uint64_t pp, fs, scan;
	uint64_t pages;
};

/* What every node publishes after a measured window. */
struct slot {
	struct udsm_stats st; /* delta over the window */
	int32_t app_cpu, svc_cpu, spin_us, pad;
	uint64_t svc_ns, app_ns; /* CPU time of the service thread and of this thread */
	double v[4];
};

struct node {
	const struct node_opts *o;
	struct udsm *d;
	uint8_t *base;
	size_t ps;
	unsigned self, nodes;
	struct params p;
	struct layout L;
	struct pin pin;
	struct udsm_stats s0;
	struct udsm_stats2 x0, x1; /* node 0: the library's histograms around a window */
	uint64_t svc0, app0;
	pid_t svc_tid;
	struct slot mine, *all; /* all: node 0 only */
	double bar_msgs, bar_bytes; /* cost of one barrier, all nodes together */
	char placement[200];
	uint64_t *ns; /* sample buffer */
	size_t ns_cap;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#else
	__asm__ __volatile__("" ::: "memory");
#endif
}

static inline volatile uint64_t *page_word(const struct node *n, uint64_t page)
{
	return (volatile uint64_t *)(n->base + page * n->ps);
}

static inline uint64_t pattern(uint64_t page)
{
	return page * 0x9e3779b97f4a7c15ull | 1;
}

static uint64_t align_up(uint64_t x, unsigned a)
{
	return (x + a - 1) / a * a;
}

static void layout(struct layout *L, const struct params *p, unsigned nodes)
{
	uint64_t pos, guard = GUARD;

	if (p->readahead > 0 && (uint64_t)p->readahead + 32 > guard)
		guard = (uint64_t)p->readahead + 32;
	memset(L, 0, sizeof(*L));
	L->ctl = 0;
	L->slots = align_up(2 + guard, nodes);
	pos = L->slots + nodes + guard;
	L->area = align_up(2ull * p->iters, nodes);
#define AREA(field, bit)                                                                       \
	do {                                                                                   \
		if (p->work & (bit)) {                                                         \
			L->field = align_up(pos, nodes);                                       \
			pos = L->field + L->area + guard;                                      \
		}                                                                              \
	} while (0)
	AREA(read, W_READ);
	AREA(write, W_WRITE);
	AREA(up1, W_UPGRADE1);
	AREA(zero, W_ZERO);
	AREA(up3, W_UPGRADE3);
#undef AREA
	L->pp = align_up(pos, nodes);
	pos = L->pp + 1 + guard;
	L->fs = align_up(pos, nodes); /* the shared page, then one page per node */
	pos = L->fs + 1 + nodes + guard;
	L->scan = align_up(pos, nodes);
	pos = L->scan + ((p->work & W_SCAN) ? p->scan_pages : 0) + guard;
	L->pages = pos;
}

static void progress(const struct node *n, const char *what)
{
	if (n->self == 0 && n->p.progress)
		fprintf(stderr, "udsm-bench: [%u nodes] %s\n", n->nodes, what);
}

static void bar(struct node *n)
{
	int err = udsm_barrier(n->d);

	if (err)
		die("node %u: barrier: %s", n->self, udsm_strerror(err));
}

static void stats_sub(struct udsm_stats *r, const struct udsm_stats *a,
		      const struct udsm_stats *b)
{
	const uint64_t *pa = (const uint64_t *)a, *pb = (const uint64_t *)b;
	uint64_t *pr = (uint64_t *)r;

	for (size_t i = 0; i < sizeof(*r) / sizeof(uint64_t); i++)
		pr[i] = pa[i] - pb[i];
}

/* CPU time consumed so far by thread @tid of this process (0: the calling thread). */
static uint64_t thread_cpu_ns(pid_t tid)
{
	/* The kernel's encoding of a per-thread CPU clock (MAKE_THREAD_CPUCLOCK(tid, SCHED)). */
	clockid_t id = tid ? (clockid_t)((~(unsigned)tid << 3) | 2u | 4u) : CLOCK_THREAD_CPUTIME_ID;
	struct timespec ts;

	if (clock_gettime(id, &ts))
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The service thread: the one thread of this process that is not the caller. */
static pid_t find_svc_tid(void)
{
	pid_t me = (pid_t)syscall(SYS_gettid), tid = 0;
	struct dirent *de;
	DIR *dir = opendir("/proc/self/task");

	if (!dir)
		return 0;
	while ((de = readdir(dir))) {
		pid_t t = (pid_t)atoi(de->d_name);

		if (t > 0 && t != me)
			tid = t;
	}
	closedir(dir);
	return tid;
}

/* Publish n->mine; node 0 collects every node's slot into n->all. */
static void gather(struct node *n)
{
	n->mine.app_cpu = n->pin.app;
	n->mine.svc_cpu = n->pin.svc;
	n->mine.spin_us = n->o->spin_us;
	memcpy((void *)page_word(n, n->L.slots + n->self), &n->mine, sizeof(n->mine));
	bar(n);
	if (n->self == 0)
		for (unsigned i = 0; i < n->nodes; i++)
			memcpy(&n->all[i], (const void *)page_word(n, n->L.slots + i),
			       sizeof(n->all[i]));
	bar(n);
}

/* A measured window: every node snapshots its counters, then a barrier starts the work. */
static void window_begin(struct node *n)
{
	memset(&n->mine, 0, sizeof(n->mine));
	udsm_stats(n->d, &n->s0);
	udsm_stats2(n->d, &n->x0, sizeof(n->x0));
	n->svc0 = n->svc_tid ? thread_cpu_ns(n->svc_tid) : 0;
	n->app0 = thread_cpu_ns(0);
	bar(n);
}

/* ...and a barrier ends it; the counters' deltas go to node 0. */
static void window_end(struct node *n)
{
	struct udsm_stats s1;

	bar(n);
	udsm_stats(n->d, &s1);
	udsm_stats2(n->d, &n->x1, sizeof(n->x1));
	stats_sub(&n->mine.st, &s1, &n->s0);
	n->mine.svc_ns = n->svc_tid ? thread_cpu_ns(n->svc_tid) - n->svc0 : 0;
	n->mine.app_ns = thread_cpu_ns(0) - n->app0;
	gather(n);
}

/* Node 0, after window_end(): wire traffic of the window per op, less @nbar barriers. */
static void per_op(const struct node *n, struct result *r, double ops, int nbar)
{
	double msgs = 0, bytes = 0, wake = 0, svc = 0;

	for (unsigned i = 0; i < n->nodes; i++) {
		svc += (double)n->all[i].svc_ns;
		msgs += (double)n->all[i].st.msgs_sent;
		bytes += (double)n->all[i].st.bytes_sent;
		wake += (double)n->all[i].st.wakeups;
	}
	msgs -= nbar * n->bar_msgs;
	bytes -= nbar * n->bar_bytes;
	r->msgs_per_op = fmax(msgs, 0) / ops;
	r->bytes_per_op = fmax(bytes, 0) / ops;
	r->wakeups_per_op = wake / ops;
	r->svc_cpu_us_per_op = svc / ops / 1000.0;
	r->app_cpu_us_per_op = (double)n->all[0].app_ns / ops / 1000.0;
}

static void emit(struct node *n, struct result *r)
{
	snprintf(r->placement, sizeof(r->placement), "%s", n->placement);
	sink_emit(n->o->sink, r);
}

/*
 * Node 0, after window_end(): the library's latency histogram of the window for @kind, or, for
 * -1, for whichever miss kind the window had most of (ping-pong and false sharing mix them).
 */
static void lib_window(const struct node *n, struct result *r, int kind)
{
	static const char *const names[UDSM_LAT_KINDS] = {
		"read_miss", "write_miss", "upgrade", "barrier", "lock",
	};

	if (kind < 0) {
		uint64_t best = 0;

		kind = UDSM_LAT_READ_MISS;
		for (int k = UDSM_LAT_READ_MISS; k <= UDSM_LAT_UPGRADE; k++) {
			uint64_t c = n->x1.lat[k].count - n->x0.lat[k].count;

			if (c > best) {
				best = c;
				kind = k;
			}
		}
	}
	lib_latency(r, names[kind], &n->x0.lat[kind], &n->x1.lat[kind]);
}

static uint64_t *samples(struct node *n, size_t cnt)
{
	if (cnt > n->ns_cap) {
		free(n->ns);
		n->ns = xcalloc(cnt, sizeof(*n->ns));
		n->ns_cap = cnt;
	}
	return n->ns;
}

/* Spin until *@a == @want: pause a little, then yield so that a service thread sharing this
 * CPU can run (the machine may have fewer CPUs than busy threads). */
static void wait_for(const struct node *n, volatile uint64_t *a, uint64_t want)
{
	uint64_t t0 = 0;

	for (unsigned spins = 0; __atomic_load_n(a, __ATOMIC_ACQUIRE) != want; spins++) {
		if (spins < 100) {
			cpu_relax();
			continue;
		}
		sched_yield();
		if ((spins & 1023) == 0) {
			if (!t0)
				t0 = now_ns();
			else if (now_ns() - t0 > SPIN_TIMEOUT_NS)
				die("node %u: waited 20 s for value %llu, have %llu", n->self,
				    (unsigned long long)want, (unsigned long long)*a);
		}
	}
}

/* ------------------------------------------------------------------------------------------
 * Start-up: parameters, layout, placement, cost of a barrier.
 */

static void calibrate(struct node *n)
{
	const int k = 4;
	struct udsm_stats s1;

	memset(&n->mine, 0, sizeof(n->mine));
	udsm_stats(n->d, &n->s0);
	for (int i = 0; i < k; i++)
		bar(n);
	udsm_stats(n->d, &s1);
	stats_sub(&n->mine.st, &s1, &n->s0);
	gather(n);
	if (n->self)
		return;

	double msgs = 0, bytes = 0;
	bool pinned = false;
	size_t off = 0;

	for (unsigned i = 0; i < n->nodes; i++) {
		msgs += (double)n->all[i].st.msgs_sent;
		bytes += (double)n->all[i].st.bytes_sent;
		if (n->all[i].app_cpu >= 0 || n->all[i].svc_cpu >= 0)
			pinned = true;
		if (n->all[i].spin_us != n->o->spin_us)
			warnx_("node %u runs with spin_us %d, node 0 with %d", i,
			       n->all[i].spin_us, n->o->spin_us);
	}
	n->bar_msgs = msgs / k;
	n->bar_bytes = bytes / k;
	if (!pinned) {
		snprintf(n->placement, sizeof(n->placement), "unpinned");
		return;
	}
	/* "n<id>:<app cpu>/<service cpu>", '-' for a thread left unpinned. */
	for (unsigned i = 0; i < n->nodes && off + 16 < sizeof(n->placement); i++) {
		char a[12] = "-", s[12] = "-";

		if (n->all[i].app_cpu >= 0)
			snprintf(a, sizeof(a), "%d", n->all[i].app_cpu);
		if (n->all[i].svc_cpu >= 0)
			snprintf(s, sizeof(s), "%d", n->all[i].svc_cpu);
		off += (size_t)snprintf(n->placement + off, sizeof(n->placement) - off,
					"%sn%u:%s/%s", i ? " " : "", i, a, s);
	}
}

/* ------------------------------------------------------------------------------------------
 * Floors, between the node 0 and node 1 processes.
 */

static void floor_result(struct node *n, const char *name, int spin_us, uint64_t *ns,
			 size_t cnt, double msgs, double bytes, uint64_t sleeps, int64_t same_cpu)
{
	struct result r;

	result_init(&r, name, 2, spin_us);
	summarize(&r, ns, cnt);
	r.msgs_per_op = msgs;
	r.bytes_per_op = bytes;
	r.wakeups_per_op = (double)sleeps / (double)cnt;
	if (same_cpu >= 0)
		snprintf(r.note, sizeof(r.note), "both ends on one CPU in %.0f%% of round trips",
			 100.0 * (double)same_cpu / (double)cnt);
	emit(n, &r);
}

/* The other floors of the full floor workload (W_FLOOR), on node 0, responder at @a. */
static void floors_more(struct node *n, const char *a, int spin, int cpu, bool sleep,
			uint64_t *ns, size_t cnt)
{
	const char *sfx = sleep ? "_sleep" : "";
	uint64_t sl;
	char nm[40];
	int err;

	if ((err = floor_uffd(spin, cpu, a, FLOOR_UF_FETCH, cnt, ns, &sl)))
		die("floor userfaultfd + TCP: %s", strerror(-err));
	snprintf(nm, sizeof(nm), "floor_fault_tcp%s", sfx);
	floor_result(n, nm, spin, ns, cnt, 2, 16 + 4096, sl, -1);
	if ((err = floor_uffd(spin, cpu, a, FLOOR_UF_OWNER_WP, cnt, ns, &sl)))
		die("floor userfaultfd + TCP + write-protect: %s", strerror(-err));
	snprintf(nm, sizeof(nm), "floor_fault_tcp_wp%s", sfx);
	floor_result(n, nm, spin, ns, cnt, 2, 16 + 4096, sl, -1);
	if ((err = floor_uffd(spin, cpu, a, FLOOR_UF_UPGRADE, cnt, ns, &sl)))
		die("floor userfaultfd write-protect fault + TCP: %s", strerror(-err));
	snprintf(nm, sizeof(nm), "floor_fault_tcp_up%s", sfx);
	floor_result(n, nm, spin, ns, cnt, 2, 16 + 16, sl, -1);
	err = floor_fault_sigbus(spin, a, cnt, ns, &sl);
	if (err && err != -ENOTSUP)
		die("floor userfaultfd (SIGBUS) + TCP: %s", strerror(-err));
	snprintf(nm, sizeof(nm), "floor_fault_tcp_sigbus%s", sfx);
	if (!err)
		floor_result(n, nm, spin, ns, cnt, 2, 16 + 4096, sl, -1);
	if (!sleep && (n->p.work & W_SCAN)) {
		/* What a scan could move at, at most: one TCP stream, no DSM. */
		uint64_t bytes = (n->p.scan_pages * n->ps) / 4;
		double mb_s, cpu_ns;
		struct result r;

		if ((err = floor_tcp_stream(a, cpu, bytes, 3, &mb_s, &cpu_ns)))
			die("floor TCP stream at %s: %s", a, strerror(-err));
		result_init(&r, "floor_tcp_stream", 2, spin);
		r.mb_s = mb_s;
		r.mean = cpu_ns * (double)n->ps / 1e3; /* the receiver's CPU per page */
		r.n = 3; /* runs */
		snprintf(r.note, sizeof(r.note), "one TCP stream, %llu MiB, best of 3, "
			 "256 KiB per send(); mean: receiver's CPU us per page",
			 (unsigned long long)(bytes >> 20));
		emit(n, &r);
		/* ... and the page-table work each of its pages needs. */
		double us[4];

		if ((err = floor_page_ops(cpu, us)))
			die("floor page operations: %s", strerror(-err));
		result_init(&r, "floor_page_ops", 1, spin);
		r.n = 256 * 32;
		r.mean = us[0] + us[1] + us[2];
		snprintf(r.note, sizeof(r.note), "per page in 256-page runs: UFFDIO_COPY "
			 "%.2f, write-protect %.2f, /proc/self/mem read %.2f, drop %.2f us",
			 us[0], us[1], us[2], us[3]);
		emit(n, &r);
	}
}

/*
 * The floors in both waiting regimes, one after the other, each with a responder of its own:
 * polling (every waiting side polls for FLOOR_POLL_US, or --spin's value, before it sleeps)
 * and sleeping (every wait sleeps at once, "_sleep" figures). A udsm figure is divided by the
 * floor of the regime it ran in; the library's automatic mode by the better of the two.
 */

static void floors(struct node *n)
{
	char *addr = (char *)page_word(n, n->L.ctl + 1);
	size_t cnt = n->p.floor_iters;
	uint64_t sl, same;
	int err;

	for (int sleep = 0; sleep < 2; sleep++) {
		int spin = sleep ? 0 : n->o->spin_us > 0 ? n->o->spin_us : FLOOR_POLL_US;
		const char *sfx = sleep ? "_sleep" : "";
		struct floor_srv *srv = NULL;
		char nm[40];

		progress(n, sleep ? "floors, sleeping: raw TCP and userfaultfd round trips"
				  : "floors, polling: raw TCP and userfaultfd round trips");
		if (n->self == 1) {
			char host[64] = "127.0.0.1", a[96];

			if (!n->p.loopback && n->o->join &&
			    floor_local_ip(n->o->join, host, sizeof(host)))
				snprintf(host, sizeof(host), "127.0.0.1");
			if ((err = floor_srv_start(&srv, host, spin, n->pin.svc, a, sizeof(a))))
				die("floor responder: %s", strerror(-err));
			memcpy(addr, a, sizeof(a));
		}
		bar(n);
		if (n->self == 0) {
			char a[96];
			uint64_t *ns = samples(n, cnt);
			int cpu = n->pin.svc;

			memcpy(a, addr, sizeof(a));
			a[sizeof(a) - 1] = '\0';
			if ((err = floor_tcp(a, spin, cpu, 4096, cnt, ns, &sl, &same)))
				die("floor TCP 16 B / 4 KiB at %s: %s", a, strerror(-err));
			snprintf(nm, sizeof(nm), "floor_tcp_4k%s", sfx);
			floor_result(n, nm, spin, ns, cnt, 2, 16 + 4096, sl, (int64_t)same);
			if ((err = floor_tcp(a, spin, cpu, 16, cnt, ns, &sl, &same)))
				die("floor TCP 16 B / 16 B at %s: %s", a, strerror(-err));
			snprintf(nm, sizeof(nm), "floor_tcp_16%s", sfx);
			floor_result(n, nm, spin, ns, cnt, 2, 32, sl, (int64_t)same);
			if ((err = floor_uffd(spin, cpu, NULL, FLOOR_UF_FETCH, cnt, ns, &sl)))
				die("floor userfaultfd: %s", strerror(-err));
			snprintf(nm, sizeof(nm), "floor_uffd%s", sfx);
			floor_result(n, nm, spin, ns, cnt, 0, 0, sl, -1);
			if (n->p.work & W_FLOOR)
				floors_more(n, a, spin, cpu, sleep, ns, cnt);
			if ((err = floor_srv_stop(a)))
				die("stopping the floor responder: %s", strerror(-err));
		}
		if (srv && (err = floor_srv_join(srv)))
			die("floor responder: %s", strerror(-err));
		bar(n);
	}
}

/* ------------------------------------------------------------------------------------------
 * One access per fresh page, timed on node 0.
 */

/* 0: home is node 0 (the faulting node); 1: home is a node that owns or shares the page;
 * 2: home is an uninvolved node. */
static int page_class(const struct node *n, unsigned w, uint64_t page)
{
	int h = udsm_page_home(n->d, page); /* the home map's truth (udsm_config.home_chunk) */

	if (h == 0)
		return 0;
	if (w == W_ZERO || h == 1 || (w == W_UPGRADE3 && h <= 3))
		return 1;
	return 2;
}

static void per_page(struct node *n, unsigned w)
{
	const char *name;
	uint64_t start, cnt = n->L.area;
	bool write = w != W_READ && w != W_ZERO;
	bool share = false;

	switch (w) {
	case W_READ:
		name = "read_miss", start = n->L.read;
		progress(n, "read miss (I->S, page Modified on node 1)");
		break;
	case W_WRITE:
		name = "write_miss", start = n->L.write;
		progress(n, "write miss (I->M, page Modified on node 1)");
		break;
	case W_UPGRADE1:
		name = "upgrade1", start = n->L.up1;
		share = n->self == 0;
		progress(n, "upgrade (S->M, 1 other sharer)");
		break;
	case W_UPGRADE3:
		name = "upgrade3", start = n->L.up3;
		share = n->self == 0 || n->self == 2 || n->self == 3;
		progress(n, "upgrade (S->M, 3 other sharers)");
		break;
	default:
		name = "zero_read", start = n->L.zero;
		progress(n, "cold zero-page read (never written anywhere)");
		break;
	}

	/* Set-up, all in descending page order: a descending sequence never looks sequential,
	 * so read-ahead stays out of it. B writes every page (it becomes Modified there). */
	if (w != W_ZERO && n->self == 1)
		for (uint64_t i = cnt; i-- > 0;)
			*page_word(n, start + i) = pattern(start + i);
	bar(n);
	if (share)
		for (uint64_t i = cnt; i-- > 0;)
			if (*page_word(n, start + i) != pattern(start + i))
				die("node %u: page %llu has wrong contents", n->self,
				    (unsigned long long)(start + i));
	bar(n);

	for (int c = 0; c < 3; c++) {
		uint64_t k = 0;
		uint64_t *ns = n->self == 0 ? samples(n, cnt) : NULL;
		bool any = false;

		for (uint64_t i = 0; i < cnt && !any; i++)
			any = page_class(n, w, start + i) == c;
		if (!any)
			continue;
		window_begin(n);
		if (n->self == 0) {
			for (uint64_t i = cnt; i-- > 0;) {
				uint64_t p = start + i, v = 0, t0, t1;
				volatile uint64_t *a = page_word(n, p);

				if (page_class(n, w, p) != c)
					continue;
				t0 = now_ns();
				if (write)
					*a = ~pattern(p);
				else
					v = *a;
				t1 = now_ns();
				ns[k++] = t1 - t0;
				if (!write && v != (w == W_ZERO ? 0 : pattern(p)))
					die("page %llu: read %#llx", (unsigned long long)p,
					    (unsigned long long)v);
			}
		}
		window_end(n);
		if (n->self == 0) {
			struct result r;
			char nm[40];

			snprintf(nm, sizeof(nm), "%s_%s", name, cls_name[c]);
			result_init(&r, nm, n->nodes, n->o->spin_us);
			summarize(&r, ns, k);
			per_op(n, &r, (double)k, 2);
			/* From the window's delta: the service thread counts a page after it
			 * has installed it (and woken us), so only the barrier makes it exact. */
			if (w == W_ZERO)
				r.zero_frac = (double)n->all[0].st.zero_pages_in / (double)k;
			lib_window(n, &r, w == W_READ || w == W_ZERO ? UDSM_LAT_READ_MISS
				   : w == W_WRITE ? UDSM_LAT_WRITE_MISS : UDSM_LAT_UPGRADE);
			if (c == 2)
				snprintf(r.note, sizeof(r.note),
					 "home is neither requester nor owner");
			emit(n, &r);
		}
	}
}

/* ------------------------------------------------------------------------------------------
 * Ping-pong: nodes 0 and 1 take turns writing one page. The turn is a counter in the page
 * itself: node 0 waits for an even value, node 1 for an odd one, each writes value + 1.
 */
static void pingpong(struct node *n)
{
	volatile uint64_t *turn = page_word(n, n->L.pp);
	uint64_t m = n->p.pp_iters, t_hand = 0, t_start;
	uint64_t *ns = n->self == 0 ? samples(n, m) : NULL;

	progress(n, "ping-pong (two writers of one page, turn counter in the page)");
	window_begin(n);
	t_start = now_ns();
	if (n->self <= 1) {
		for (uint64_t i = 0; i < m; i++) {
			uint64_t want = 2 * i + n->self;

			wait_for(n, turn, want);
			if (n->self == 0 && i > 0)
				ns[i - 1] = (now_ns() - t_hand) / 2;
			__atomic_store_n(turn, want + 1, __ATOMIC_RELEASE);
			if (n->self == 0)
				t_hand = now_ns();
		}
		if (n->self == 0) {
			wait_for(n, turn, 2 * m);
			ns[m - 1] = (now_ns() - t_hand) / 2;
		}
	}
	n->mine.v[0] = (double)(now_ns() - t_start);
	window_end(n);
	if (n->self == 0) {
		struct result r;

		result_init(&r, "pingpong", n->nodes, n->o->spin_us);
		summarize(&r, ns, m);
		r.n = 2 * m;
		r.mean = n->all[0].v[0] / (double)(2 * m) / 1000.0;
		r.ops_s = (double)(2 * m) / (n->all[0].v[0] / 1e9);
		per_op(n, &r, (double)(2 * m), 2);
		lib_window(n, &r, -1);
		snprintf(r.note, sizeof(r.note), "per ownership transfer (half a round trip)");
		emit(n, &r);
	}
}

/* ------------------------------------------------------------------------------------------
 * False sharing: nodes 0 and 1 each do fs_ops operations; an operation is a store to the
 * node's own word followed by FS_WORK_NS of local work (so that the rate means something: a
 * bare store loop would do thousands of stores per ownership transfer). Once with both words
 * in one page, once with each word in a page of its own (the baseline).
 */
#define FS_WORK_NS 1000

static void paced_stores(volatile uint64_t *w, uint64_t k, uint64_t *ns)
{
	for (uint64_t i = 0; i < k; i++) {
		uint64_t t0 = now_ns(), t1;

		*w = i + 1;
		t1 = now_ns();
		if (ns)
			ns[i] = t1 - t0;
		while (now_ns() - t1 < FS_WORK_NS)
			cpu_relax();
	}
}

/* Node 0: its hottest pages so far (the pages it is home of), as "hot_page" records. */
static void hot_pages(struct node *n)
{
	struct udsm_hot_page hp[3];
	int k = udsm_hot_pages(n->d, hp, 3);

	for (int i = 0; i < k; i++) {
		struct result r;
		size_t off = 0;

		result_init(&r, "hot_page", n->nodes, n->o->spin_us);
		r.n = hp[i].transfers;
		r.hot_page = hp[i].page;
		r.hot_nodes = hp[i].nodes;
		r.hot_writers = hp[i].writers;
		r.hot_fs = hp[i].false_sharing;
		r.hot_disjoint = hp[i].disjoint;
		r.hot_overlap = hp[i].overlap;
		for (uint32_t j = 0; j < hp[i].nranges && off < sizeof(r.hot_ranges); j++)
			off += (size_t)snprintf(r.hot_ranges + off, sizeof(r.hot_ranges) - off,
						"%s%u:%u-%u", j ? " " : "", hp[i].ranges[j].node,
						hp[i].ranges[j].start, hp[i].ranges[j].end);
		if (hp[i].page == n->L.fs)
			snprintf(r.note, sizeof(r.note), "the false-sharing workload's page");
		else if (hp[i].page == n->L.pp)
			snprintf(r.note, sizeof(r.note), "the ping-pong page");
		emit(n, &r);
	}
}

static void false_sharing(struct node *n)
{
	uint64_t k = n->p.fs_ops;
	uint64_t *ns = n->self == 0 ? samples(n, k) : NULL;
	double base_ops_s = 0;

	progress(n, "false sharing (two nodes store to disjoint words of one page)");
	if (n->self <= 1) /* own pages: Modified here before the baseline starts */
		*page_word(n, n->L.fs + 1 + n->self) = 0;
	for (int shared = 0; shared < 2; shared++) {
		volatile uint64_t *w = shared ? page_word(n, n->L.fs) + (n->self & 1)
					      : page_word(n, n->L.fs + 1 + n->self);

		window_begin(n);
		if (n->self <= 1) {
			uint64_t t_start = now_ns();

			paced_stores(w, k, ns);
			n->mine.v[0] = (double)(now_ns() - t_start);
		}
		window_end(n);
		if (n->self != 0)
			continue;

		volatile uint64_t *w0 = page_word(n, n->L.fs);
		struct result r;
		double wall = fmax(n->all[0].v[0], n->all[1].v[0]), ops = 2.0 * (double)k;
		double xfers = (double)(n->all[0].st.write_faults + n->all[1].st.write_faults);

		result_init(&r, shared ? "false_sharing" : "false_sharing_private", n->nodes,
			    n->o->spin_us);
		summarize(&r, ns, k);
		r.n = (uint64_t)ops;
		r.mean = wall / ops / 1000.0;
		r.ops_s = ops / (wall / 1e9);
		r.xfers_per_op = xfers / ops;
		per_op(n, &r, ops, 2);
		lib_window(n, &r, -1);
		if (!shared) {
			base_ops_s = r.ops_s;
			snprintf(r.note, sizeof(r.note),
				 "baseline: each node's word in its own page; op = store + %d ns work",
				 FS_WORK_NS);
		} else {
			if (w0[0] != k || w0[1] != k)
				die("false sharing: words are %llu and %llu, expected %llu",
				    (unsigned long long)w0[0], (unsigned long long)w0[1],
				    (unsigned long long)k);
			snprintf(r.note, sizeof(r.note),
				 "%.1fx slower than own pages; percentiles: one store on node 0",
				 base_ops_s / r.ops_s);
		}
		emit(n, &r);
	}
	if (n->self == 0)
		hot_pages(n);
}

/* ------------------------------------------------------------------------------------------
 * Sequential scan: node 1 writes the scan area, node 0 reads all of it in order.
 */
static inline uint64_t scan_val(uint64_t page, uint64_t w)
{
	return (page << 9 | w) + 1;
}

/* A floor of the scan measured per page: @us microseconds a page over @pages pages. */
static void per_page_floor(struct node *n, const char *name, uint64_t pages, double us,
			   const char *what)
{
	struct result r;

	result_init(&r, name, 1, n->o->spin_us);
	r.n = pages;
	r.mean = us;
	snprintf(r.note, sizeof(r.note), "us per page: %s", what);
	emit(n, &r);
}

static void scan(struct node *n)
{
	uint64_t pages = n->p.scan_pages, words = n->ps / 8;
	uint64_t *ns = n->self == 0 ? samples(n, pages) : NULL;
	uint64_t t0 = 0, t1 = 0;
	char what[96];

	snprintf(what, sizeof(what), "sequential scan of %llu MiB (node 1 writes, node 0 reads)",
		 (unsigned long long)(pages * n->ps >> 20));
	progress(n, what);
	/* The write phase is a figure too: node 1's first stores, in order, to pages homed on
	 * both nodes (each of node 0's is a write miss: a round trip per page). */
	window_begin(n);
	if (n->self == 1) {
		uint64_t w0 = now_ns();

		for (uint64_t p = 0; p < pages; p++) {
			uint64_t *a = (uint64_t *)page_word(n, n->L.scan + p);

			for (uint64_t i = 0; i < words; i++)
				a[i] = scan_val(p, i);
		}
		n->mine.v[0] = (double)(now_ns() - w0);
	}
	window_end(n);
	if (n->self == 0 && n->all[1].v[0] > 0) {
		struct result r;

		result_init(&r, "scan_write", n->nodes, n->o->spin_us);
		r.n = pages;
		r.mb_s = (double)(pages * n->ps) / (n->all[1].v[0] / 1e9) / 1e6;
		r.mean = n->all[1].v[0] / 1e3 / (double)pages;
		per_op(n, &r, (double)pages, 2);
		snprintf(r.note, sizeof(r.note), "node 1's first stores to %llu MiB, half of it "
			 "homed on node 0; mean: us per page", (unsigned long long)(pages * n->ps >> 20));
		emit(n, &r);
	}
	bar(n);
	window_begin(n);
	if (n->self == 0) {
		uint64_t bad = 0;

		t0 = now_ns();
		for (uint64_t p = 0; p < pages; p++) {
			const volatile uint64_t *a = page_word(n, n->L.scan + p);
			uint64_t tp = now_ns(), v = a[0];

			ns[p] = now_ns() - tp;
			bad |= v ^ scan_val(p, 0);
			for (uint64_t i = 1; i < words; i++)
				bad |= a[i] ^ scan_val(p, i);
		}
		t1 = now_ns();
		if (bad)
			die("scan: wrong contents");
	}
	window_end(n);
	if (n->self == 0) {
		struct result r;

		result_init(&r, "scan", n->nodes, n->o->spin_us);
		summarize(&r, ns, pages);
		r.mb_s = (double)(pages * n->ps) / ((double)(t1 - t0) / 1e9) / 1e6;
		per_op(n, &r, (double)pages, 2);
		r.install_us_per_op = (double)(n->x1.install_ns - n->x0.install_ns) / 1e3 /
				      (double)pages;
		r.svc0_cpu_us_per_op = (double)n->all[0].svc_ns / 1e3 / (double)pages;
		r.svc1_cpu_us_per_op = (double)n->all[1].svc_ns / 1e3 / (double)pages;
		snprintf(r.note, sizeof(r.note),
			 "%llu MiB; per page: first-touch stall; %.0f%% of pages read ahead",
			 (unsigned long long)(pages * n->ps >> 20),
			 100.0 * (double)n->all[0].st.readahead / (double)pages);
		emit(n, &r);
		/* The reader filled memory it never used: what new memory costs on this machine
		 * right now, as much of it, taken after the scan (so as not to leave it freed and
		 * at hand for the scan). */
		double us[5];
		int err = floor_new_memory(pages * n->ps, us);

		if (err)
			die("floor new memory: %s", strerror(-err));
		result_init(&r, "floor_new_memory", 1, n->o->spin_us);
		r.n = pages;
		r.mean = us[0];
		r.mb_s = (double)n->ps / us[0];
		snprintf(r.note, sizeof(r.note), "%llu MiB; us per page: UFFDIO_COPY into new "
			 "memory %.2f, again %.2f; 1st store %.2f",
			 (unsigned long long)(pages * n->ps >> 20), us[0], us[1], us[2]);
		emit(n, &r);
		per_page_floor(n, "floor_first_read", pages, us[3], "the first load from a page "
			       "installed read-only (UFFDIO_COPY_MODE_WP) into memory at hand");
		per_page_floor(n, "floor_page_read", pages, us[4], "loading and checking its every "
			       "word once mapped, as the scan reads it");
	}
}

/* ------------------------------------------------------------------------------------------
 * Barriers, back to back, timed on node 0.
 */
static void barriers(struct node *n)
{
	uint64_t k = n->p.bar_iters, *ns = samples(n, k);
	struct udsm_stats s1;
	char what[64];

	snprintf(what, sizeof(what), "barrier latency, %u nodes", n->nodes);
	progress(n, what);
	memset(&n->mine, 0, sizeof(n->mine));
	udsm_stats(n->d, &n->s0);
	udsm_stats2(n->d, &n->x0, sizeof(n->x0));
	n->svc0 = n->svc_tid ? thread_cpu_ns(n->svc_tid) : 0;
	n->app0 = thread_cpu_ns(0);
	for (uint64_t i = 0; i < k; i++) {
		uint64_t t0 = now_ns();

		bar(n);
		ns[i] = now_ns() - t0;
	}
	udsm_stats(n->d, &s1);
	udsm_stats2(n->d, &n->x1, sizeof(n->x1));
	stats_sub(&n->mine.st, &s1, &n->s0);
	n->mine.svc_ns = n->svc_tid ? thread_cpu_ns(n->svc_tid) - n->svc0 : 0;
	n->mine.app_ns = thread_cpu_ns(0) - n->app0;
	gather(n);
	if (n->self == 0) {
		struct result r;

		result_init(&r, "barrier", n->nodes, n->o->spin_us);
		summarize(&r, ns, k);
		per_op(n, &r, (double)k, 0);
		lib_window(n, &r, UDSM_LAT_BARRIER);
		snprintf(r.note, sizeof(r.note), "back-to-back, timed on node 0 (the collector)");
		emit(n, &r);
	}
}

/* ------------------------------------------------------------------------------------------
 * The node.
 */

/*
 * udsm's messages go to stderr as usual, except warnings once the benchmark is over: nodes
 * that leave while holding pages Modified make the others warn that those pages are lost,
 * which is expected at the end of a run. UDSM_LOG_LEVEL sets the level (debug: each node
 * says at the end which waiting mode it learnt, wait.h, but every message is logged too,
 * which slows everything down; UDSM_STATS=stderr has the learnt modes without that).
 */
static volatile int closing;

static void bench_log(void *arg, int level, const char *msg)
{
	if (closing && level == UDSM_LOG_WARN)
		return;
	fprintf(stderr, "udsm: %s\n", msg);
}

static void on_listen(void *arg, const char *hostport)
{
	int fd = *(int *)arg;
	char line[128];
	int len = snprintf(line, sizeof(line), "%s\n", hostport);

	if (fd >= 0 && write(fd, line, (size_t)len) != len)
		die("reporting the listen address: %s", strerror(errno));
}

int node_run(const struct node_opts *o)
{
	struct udsm_config cfg = {
		.listen = o->listen,
		.join = o->join,
		.nodes = o->nodes,
		.timeout_ms = o->timeout_ms,
		.spin_us = o->spin_us,
		.readahead = o->readahead,
		.hold_us = o->hold_us,
	};
	struct node n = { .o = o };
	int port_fd = o->port_fd, err;

	if (o->timeout_ms > 0)
		alarm((unsigned)(o->timeout_ms / 1000 + 5));
	n.ps = (size_t)sysconf(_SC_PAGESIZE);
	udsm_set_log_func(bench_log, NULL, 0); /* the level: UDSM_LOG_LEVEL, or warnings */
	if (!o->join) {
		n.p = *o->p;
		layout(&n.L, &n.p, o->nodes);
		cfg.size = n.L.pages * n.ps;
		cfg.on_listen = on_listen;
		cfg.on_listen_arg = &port_fd;
	}
	err = udsm_open(&cfg, &n.d);
	if (err)
		die("udsm_open: %s", udsm_strerror(err));
	if (port_fd >= 0)
		close(port_fd);
	n.base = udsm_base(n.d);
	n.self = udsm_node_id(n.d);
	n.nodes = udsm_nodes(n.d);
	n.svc_tid = find_svc_tid();
	n.pin = (struct pin){ -1, -1 };
	if (o->pins && o->npins)
		n.pin = o->pins[n.self % o->npins];
	if ((err = pin_self(n.pin.app)) || (err = pin_others(n.pin.svc)))
		die("node %u: pinning to CPU %d/%d: %s", n.self, n.pin.app, n.pin.svc,
		    strerror(-err));
	if (o->svc_nice && n.svc_tid && setpriority(PRIO_PROCESS, (id_t)n.svc_tid, o->svc_nice))
		die("node %u: nice %d for the service thread: %s", n.self, o->svc_nice,
		    strerror(errno));

	/* Node 0 publishes the parameters; the others check they fit the region. */
	if (n.self == 0)
		memcpy((void *)page_word(&n, 0), &n.p, sizeof(n.p));
	bar(&n);
	if (n.self != 0) {
		memcpy(&n.p, (const void *)page_word(&n, 0), sizeof(n.p));
		if (n.p.magic != PARAMS_MAGIC || n.p.version != BENCH_VERSION)
			die("node 0 is not a udsm-bench of this version");
		layout(&n.L, &n.p, n.nodes);
		if (n.L.pages * n.ps > udsm_size(n.d))
			die("the region is smaller than the benchmark needs");
	}
	if (n.self == 0)
		n.all = xcalloc(n.nodes, sizeof(*n.all));
	bar(&n); /* the joiners' reads of the parameter page are over on every node */
	calibrate(&n);

	if ((n.p.work & (W_FLOOR | W_FLOOR_RT)) && n.nodes >= 2)
		floors(&n);
	if (n.p.work & W_READ)
		per_page(&n, W_READ);
	if (n.p.work & W_WRITE)
		per_page(&n, W_WRITE);
	if (n.p.work & W_UPGRADE1)
		per_page(&n, W_UPGRADE1);
	if ((n.p.work & W_UPGRADE3) && n.nodes >= 4)
		per_page(&n, W_UPGRADE3);
	if (n.p.work & W_ZERO)
		per_page(&n, W_ZERO);
	if (n.p.work & W_PINGPONG)
		pingpong(&n);
	if (n.p.work & W_FALSE)
		false_sharing(&n);
	if (n.p.work & W_SCAN)
		scan(&n);
	if (n.p.work & W_BARRIER)
		barriers(&n);

	/* The last barrier: a node that passed it may close before a slower node has seen the
	 * barrier complete, and udsm then fails that node's barrier with UDSM_EPEER. */
	closing = 1;
	err = udsm_barrier(n.d);
	if (err && err != UDSM_EPEER && err != UDSM_ECLOSED)
		die("node %u: last barrier: %s", n.self, udsm_strerror(err));
	err = udsm_close(n.d);
	free(n.ns);
	free(n.all);
	alarm(0);
	return err;
}
