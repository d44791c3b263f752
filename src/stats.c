/* SPDX-License-Identifier: MIT */
/*
 * stats.c - a node's performance statistics and its report (see stats.h, docs/STATS.md).
 *
 * Cost on the fault path, when tracking is on (the default; UDSM_STATS=off turns it off):
 * one vDSO clock read and a 4-way probe of a small table per fault that waits for the
 * protocol, one clock read and a probe per install or upgrade that has a waiter; a 4-way probe
 * and a mutex that only the service thread takes (plus a reader now and then) per transfer a
 * home serves; a page copy per install and a page compare per FETCH only for pages this node
 * acquired before (written.h). No system call anywhere on these paths.
 */
#define LOG_PREFIX "stats: "
#include "stats.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/engine.h"
#include "core/hist.h"
#include "core/hot.h"
#include "core/written.h"
#include "node.h"
#include "os/log.h"
#include "os/net.h"

#define PEND_SETS 64u
#define PEND_WAYS 4u
#define TOP_DEFAULT 10u
#define TOP_MAX 256u

/* A fault waiting for the protocol. page == UINT64_MAX: free. */
struct pend {
	uint64_t page, t0;
	unsigned kind;
};

struct stats {
	bool on;
	/* Latency: written by the service thread (barrier: by the one thread in a barrier). */
	struct udsm_latency lat[UDSM_LAT_KINDS];
	uint64_t dropped;
	/* Service thread only. */
	struct pend pend[PEND_SETS * PEND_WAYS];
	unsigned npend;
	struct wtrack *wt;
	/* The hot-page table: written by the service thread, read by any. */
	pthread_mutex_t mu;
	struct hot *hot;
	/* Report. */
	char *target; /* NULL: none; "stderr"; or a path prefix */
	unsigned top;
	bool sig;          /* SIGUSR2 opt-in: registered with sig_fd */
	const int *sig_fd;
	uint64_t sig_seen; /* sig_gen when we last reported for it */
	uint64_t t_open_ns;
};

/* ------------------------------------------------------------------------------------------
 * Latency of faults: a small set-associative table of pending faults, page -> start.
 * At most one entry per page: a second thread faulting on a page that is already waited on
 * is served by the same request, and the first fault's start is the earlier one.
 */

static struct pend *pend_set(struct stats *st, uint64_t page)
{
	uint64_t x = page * 0x9e3779b97f4a7c15ull;

	return &st->pend[((x ^ (x >> 32)) % PEND_SETS) * PEND_WAYS];
}

void stats_fault(struct stats *st, uint64_t page, int state, bool write)
{
	struct pend *set, *free_ = NULL, *oldest = NULL;
	unsigned kind;

	if (!st || !st->on)
		return;
	switch (state) {
	case ENG_I:
		kind = write ? UDSM_LAT_WRITE_MISS : UDSM_LAT_READ_MISS;
		break;
	case ENG_S:
		if (!write)
			return; /* stale: the page is here */
		kind = UDSM_LAT_UPGRADE;
		break;
	case ENG_IS_D:
		kind = UDSM_LAT_READ_MISS; /* joins a read-ahead or another thread's read */
		break;
	case ENG_IM_D:
		kind = UDSM_LAT_WRITE_MISS;
		break;
	case ENG_SM_A:
		kind = UDSM_LAT_UPGRADE;
		break;
	default:
		return; /* M (stale) or LOST (poisoned) */
	}
	set = pend_set(st, page);
	for (unsigned i = 0; i < PEND_WAYS; i++) {
		if (set[i].page == page)
			return; /* already timed from an earlier fault */
		if (set[i].page == UINT64_MAX) {
			if (!free_)
				free_ = &set[i];
		} else if (!oldest || set[i].t0 < oldest->t0) {
			oldest = &set[i];
		}
	}
	if (!free_) {
		/* More faults pending in this set than ways (many threads, or an entry whose
		 * wake-up never came, e.g. after a fence): the oldest goes unmeasured. */
		__atomic_store_n(&st->dropped, st->dropped + 1, __ATOMIC_RELAXED);
		free_ = oldest;
		st->npend--;
	}
	*free_ = (struct pend){ .page = page, .t0 = net_now_ns(), .kind = kind };
	st->npend++;
}

/* The waiters of @page were woken at @now: record its sample, if it had one. */
static void pend_done(struct stats *st, uint64_t page, uint64_t *now)
{
	struct pend *set = pend_set(st, page);

	for (unsigned i = 0; i < PEND_WAYS; i++) {
		if (set[i].page != page)
			continue;
		if (!*now)
			*now = net_now_ns();
		hist_add(&st->lat[set[i].kind], *now > set[i].t0 ? *now - set[i].t0 : 0);
		set[i].page = UINT64_MAX;
		st->npend--;
		return;
	}
}

void stats_installed(struct stats *st, uint64_t page, const void *data, uint64_t n)
{
	uint64_t now = 0;

	if (!st || !st->on)
		return;
	for (uint64_t i = 0; i < n; i++) {
		if (st->npend)
			pend_done(st, page + i, &now);
		wtrack_installed(st->wt, page + i,
				 data ? (const uint8_t *)data + i * (uint64_t)st->hot->ps : NULL);
	}
}

void stats_woken(struct stats *st, uint64_t page)
{
	uint64_t now = 0;

	if (st && st->on && st->npend)
		pend_done(st, page, &now);
}

void stats_forget(struct stats *st, uint64_t page)
{
	struct pend *set;

	if (!st || !st->on || !st->npend)
		return;
	set = pend_set(st, page);
	for (unsigned i = 0; i < PEND_WAYS; i++) {
		if (set[i].page == page) {
			set[i].page = UINT64_MAX;
			st->npend--;
		}
	}
}

void stats_barrier(struct stats *st, uint64_t ns)
{
	if (st && st->on)
		hist_add(&st->lat[UDSM_LAT_BARRIER], ns);
}

void stats_lock(struct stats *st, uint64_t ns)
{
	if (st && st->on) /* any application thread, without a lock held (locks.c) */
		hist_add_shared(&st->lat[UDSM_LAT_LOCK], ns);
}

/* ------------------------------------------------------------------------------------------
 * Transfers and written ranges (engine ops).
 */

void stats_op_moved(void *ctx, uint64_t page, unsigned from, unsigned to, uint64_t warg)
{
	struct stats *st = ((struct udsm *)ctx)->stats;

	if (!st || !st->on)
		return;
	pthread_mutex_lock(&st->mu);
	hot_moved(st->hot, page, from, to, warg);
	pthread_mutex_unlock(&st->mu);
}

uint64_t stats_op_written(void *ctx, uint64_t page, const void *data)
{
	struct stats *st = ((struct udsm *)ctx)->stats;

	if (!st || !st->on)
		return WARG_UNKNOWN;
	return wtrack_written(st->wt, page, data);
}

/* ------------------------------------------------------------------------------------------
 * SIGUSR2: the handler only bumps a generation counter and writes to the eventfd of every
 * node that opted in; the service thread notices (stats_poll) and writes the report. The
 * handler reads each node's eventfd through a pointer registered here; a node unregisters in
 * udsm_close() long before its eventfd is closed.
 */

#define SIG_NODES 64
static const int *sig_evfd[SIG_NODES];
static unsigned sig_users;
static uint64_t sig_gen;
static struct sigaction sig_old;
static pthread_mutex_t sig_mu = PTHREAD_MUTEX_INITIALIZER;

static void on_sigusr2(int signo)
{
	int saved = errno;
	uint64_t one = 1;

	(void)signo;
	__atomic_fetch_add(&sig_gen, 1, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < SIG_NODES; i++) {
		const int *p = __atomic_load_n(&sig_evfd[i], __ATOMIC_ACQUIRE);
		int fd = p ? __atomic_load_n(p, __ATOMIC_RELAXED) : -1;

		if (fd >= 0 && write(fd, &one, sizeof(one)) < 0) {
			/* EAGAIN: already signalled; nothing else to do in a handler */
		}
	}
	errno = saved;
}

static int sig_register(const int *evfd)
{
	int err = 0;
	unsigned i;

	pthread_mutex_lock(&sig_mu);
	for (i = 0; i < SIG_NODES && sig_evfd[i]; i++)
		;
	if (i == SIG_NODES) {
		err = -ENOSPC;
	} else {
		if (!sig_users) {
			struct sigaction sa = { .sa_handler = on_sigusr2, .sa_flags = SA_RESTART };

			sigemptyset(&sa.sa_mask);
			if (sigaction(SIGUSR2, &sa, &sig_old))
				err = -errno;
		}
		if (!err) {
			__atomic_store_n(&sig_evfd[i], evfd, __ATOMIC_RELEASE);
			sig_users++;
		}
	}
	pthread_mutex_unlock(&sig_mu);
	return err;
}

static void sig_unregister(const int *evfd)
{
	pthread_mutex_lock(&sig_mu);
	for (unsigned i = 0; i < SIG_NODES; i++) {
		if (sig_evfd[i] == evfd) {
			__atomic_store_n(&sig_evfd[i], NULL, __ATOMIC_RELEASE);
			if (!--sig_users)
				sigaction(SIGUSR2, &sig_old, NULL);
			break;
		}
	}
	pthread_mutex_unlock(&sig_mu);
}

/* ------------------------------------------------------------------------------------------
 * Life cycle.
 */

int stats_open(struct udsm *d, const struct udsm_config *cfg)
{
	const char *env = getenv("UDSM_STATS"), *top = getenv("UDSM_STATS_TOP");
	struct stats *st = calloc(1, sizeof(*st));
	int err;

	if (!st)
		return -ENOMEM;
	st->on = !(env && !strcmp(env, "off"));
	st->t_open_ns = net_now_ns();
	st->top = TOP_DEFAULT;
	if (top && *top) {
		long v = strtol(top, NULL, 10);

		st->top = v < 0 ? 0 : v > (long)TOP_MAX ? TOP_MAX : (unsigned)v;
	}
	for (unsigned i = 0; i < PEND_SETS * PEND_WAYS; i++)
		st->pend[i].page = UINT64_MAX;
	pthread_mutex_init(&st->mu, NULL);
	st->hot = malloc(sizeof(*st->hot));
	if (!st->hot || (err = wtrack_create((uint32_t)d->ps, &st->wt))) {
		err = st->hot ? err : -ENOMEM;
		stats_destroy(st);
		return err;
	}
	hot_init(st->hot, (uint32_t)d->ps);
	if (env && *env && strcmp(env, "off") && !(st->target = strdup(env))) {
		stats_destroy(st);
		return -ENOMEM;
	}
	if (cfg->stats_sigusr2 > 0) {
		if ((err = sig_register(&d->evfd))) {
			stats_destroy(st);
			return err;
		}
		st->sig = true;
		st->sig_fd = &d->evfd;
		st->sig_seen = __atomic_load_n(&sig_gen, __ATOMIC_RELAXED);
	}
	d->stats = st;
	return 0;
}

static int report_to_target(struct udsm *d, const char *reason);

void stats_close(struct udsm *d)
{
	struct stats *st = d->stats;

	if (!st)
		return;
	if (st->sig) {
		sig_unregister(st->sig_fd);
		st->sig = false;
	}
	if (st->target)
		report_to_target(d, "close");
}

void stats_destroy(struct stats *st)
{
	if (!st)
		return;
	if (st->sig) /* udsm_open() failed after stats_open() */
		sig_unregister(st->sig_fd);
	wtrack_destroy(st->wt);
	free(st->hot);
	free(st->target);
	pthread_mutex_destroy(&st->mu);
	free(st);
}

void stats_poll(struct udsm *d)
{
	struct stats *st = d->stats;
	uint64_t g;

	if (!st || !st->sig)
		return;
	g = __atomic_load_n(&sig_gen, __ATOMIC_RELAXED);
	if (g == st->sig_seen)
		return;
	st->sig_seen = g;
	if (st->target)
		report_to_target(d, "SIGUSR2");
	else
		log_warn("node %u: SIGUSR2, but UDSM_STATS names no target for the report",
			 d->self);
}

/* ------------------------------------------------------------------------------------------
 * Reading.
 */

void stats_latency(const struct stats *st, struct udsm_latency out[UDSM_LAT_KINDS],
		   uint64_t *dropped)
{
	for (unsigned k = 0; k < UDSM_LAT_KINDS; k++)
		hist_read(&st->lat[k], &out[k]);
	*dropped = __atomic_load_n(&st->dropped, __ATOMIC_RELAXED);
}

static void read_all(const struct udsm *d, struct udsm_stats2 *s)
{
	struct stats *st = d->stats;

	memset(s, 0, sizeof(*s));
	udsm_stats(d, &s->c);
	s->installs = __atomic_load_n(&d->installs, __ATOMIC_RELAXED);
	s->installed_pages = __atomic_load_n(&d->installed_pages, __ATOMIC_RELAXED);
	s->install_ns = __atomic_load_n(&d->install_ns, __ATOMIC_RELAXED);
	if (!st)
		return;
	stats_latency(st, s->lat, &s->lat_dropped);
	pthread_mutex_lock(&st->mu);
	s->transfers = st->hot->transfers;
	s->written_known = st->hot->known;
	s->hot_replaced = st->hot->replaced;
	s->false_shared = hot_false_shared(st->hot);
	pthread_mutex_unlock(&st->mu);
}

UDSM_EXPORT int udsm_stats2(const struct udsm *d, struct udsm_stats2 *out, size_t size)
{
	struct udsm_stats2 s;
	size_t n = size < sizeof(s) ? size : sizeof(s);

	if (!d || !out)
		return -EINVAL;
	read_all(d, &s);
	memcpy(out, &s, n);
	if (size > n)
		memset((uint8_t *)out + n, 0, size - n);
	return (int)n;
}

UDSM_EXPORT int udsm_hot_pages(const struct udsm *d, struct udsm_hot_page *out, size_t max)
{
	struct stats *st;
	size_t n;

	if (!d || (!out && max))
		return -EINVAL;
	st = d->stats;
	if (!st || !max)
		return 0;
	pthread_mutex_lock(&st->mu);
	n = hot_top(st->hot, out, max);
	pthread_mutex_unlock(&st->mu);
	return (int)n;
}

UDSM_EXPORT int udsm_hot_page(const struct udsm *d, size_t page, struct udsm_hot_page *out)
{
	const struct hot_slot *s;
	struct stats *st;
	int err = 0;

	if (!d || !out || page >= d->npages)
		return -EINVAL;
	if (eng_home(d->eng, page) != d->self)
		return -EREMOTE;
	st = d->stats;
	if (!st)
		return -ENOENT;
	pthread_mutex_lock(&st->mu);
	s = hot_find(st->hot, page);
	if (s)
		hot_fill(st->hot, s, out);
	else
		err = -ENOENT;
	pthread_mutex_unlock(&st->mu);
	return err;
}

/* ------------------------------------------------------------------------------------------
 * The report: one JSON line, preceded by a human summary when it goes to a terminal.
 */

struct buf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->oom)
		return;
	if (!b->p) {
		b->cap = 4096;
		if (!(b->p = malloc(b->cap))) {
			b->oom = true;
			return;
		}
	}
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		size_t ncap = b->cap * 2 + (size_t)n;
		char *np = realloc(b->p, ncap);

		if (!np) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
}

static const char *const kind_names[UDSM_LAT_KINDS] = {
	"read_miss", "write_miss", "upgrade", "barrier", "lock",
};

static void put_nodes(struct buf *b, uint64_t mask)
{
	bool first = true;

	put(b, "[");
	for (unsigned n = 0; n < 64; n++) {
		if (mask & ((uint64_t)1 << n)) {
			put(b, "%s%u", first ? "" : ",", n);
			first = false;
		}
	}
	put(b, "]");
}

/* The service thread's waiting (wait.h): policy, and per kind (0 requests, 1 barriers) the
 * learnt medians of each mode, from node.h's wait_view. */
static const char *policy_name(const struct udsm *d)
{
	return d->spin_us == 0 ? "auto" : d->spin_us > 0 ? "poll" : "sleep";
}

/* A forced policy is published as its mode (wait_learnt()). */
static const char *learnt_mode(const struct udsm *d, int kind)
{
	return __atomic_load_n(&d->wait_view.best[kind], __ATOMIC_RELAXED) == WAIT_SPIN ? "poll"
											 : "sleep";
}

static double learnt_us(const struct udsm *d, int kind, int mode)
{
	return (double)__atomic_load_n(&d->wait_view.med_ns[kind][mode], __ATOMIC_RELAXED) / 1e3;
}

static unsigned learnt_n(const struct udsm *d, int kind, int mode)
{
	return __atomic_load_n(&d->wait_view.n[kind][mode], __ATOMIC_RELAXED);
}

static void json_waiting(struct buf *b, const struct udsm *d)
{
	static const char *const kinds[2] = { "requests", "barriers" };

	put(b, "\"waiting\":{\"policy\":\"%s\",\"spin_us\":%d", policy_name(d), d->spin_us);
	for (int k = 0; k < 2; k++)
		put(b, ",\"%s\":{\"mode\":\"%s\",\"poll_median_us\":%.1f,\"poll_samples\":%u,"
		    "\"sleep_median_us\":%.1f,\"sleep_samples\":%u}", kinds[k], learnt_mode(d, k),
		    learnt_us(d, k, WAIT_SPIN), learnt_n(d, k, WAIT_SPIN),
		    learnt_us(d, k, WAIT_BLOCK), learnt_n(d, k, WAIT_BLOCK));
	put(b, "},");
}

static void summary_waiting(struct buf *b, const struct udsm *d)
{
	static const char *const kinds[2] = { "answers", "barriers" };

	if (d->spin_us > 0) {
		put(b, "  waiting: polls %d us after every event (spin_us)\n", d->spin_us);
		return;
	}
	if (d->spin_us < 0) {
		put(b, "  waiting: always sleeps (spin_us < 0)\n");
		return;
	}
	for (int k = 0; k < 2; k++)
		put(b, "  waiting for %s: %s (learnt median: polling %.1f us over %u, sleeping %.1f us "
		    "over %u)\n", kinds[k], learnt_mode(d, k), learnt_us(d, k, WAIT_SPIN),
		    learnt_n(d, k, WAIT_SPIN), learnt_us(d, k, WAIT_BLOCK), learnt_n(d, k, WAIT_BLOCK));
}

static void json(struct buf *b, const struct udsm *d, const struct udsm_stats2 *s,
		 const struct udsm_hot_page *hp, size_t nhot, const char *reason)
{
	struct timespec rt;

	clock_gettime(CLOCK_REALTIME, &rt);
	put(b, "{\"udsm_stats\":1,\"node\":%u,\"nodes\":%u,\"reason\":\"%s\","
	    "\"time_unix_ms\":%llu,\"uptime_ms\":%llu,\"page_size\":%zu,\"region_bytes\":%zu,"
	    "\"base\":\"%p\",\"tracking\":%s,", d->self, d->nodes, reason,
	    (unsigned long long)rt.tv_sec * 1000ull + (unsigned long long)rt.tv_nsec / 1000000u,
	    (unsigned long long)((net_now_ns() - d->stats->t_open_ns) / 1000000u), d->ps, d->size,
	    (void *)d->base, d->stats->on ? "true" : "false");
#define C(f) put(b, "\"" #f "\":%llu,", (unsigned long long)s->c.f)
	put(b, "\"counters\":{");
	C(faults); C(read_faults); C(write_faults); C(requests); C(pages_in); C(zero_pages_in);
	C(invalidations); C(downgrades); C(readahead); C(msgs_sent); C(msgs_recv); C(bytes_sent);
	C(bytes_recv); C(wakeups); C(poisoned);
#undef C
	put(b, "\"read_misses\":%llu,\"write_misses\":%llu,\"upgrades\":%llu,\"barriers\":%llu,"
	    "\"lock_acquisitions\":%llu,\"latency_dropped\":%llu,\"transfers\":%llu,"
	    "\"written_known\":%llu,\"hot_replaced\":%llu,\"false_shared_pages\":%llu,"
	    "\"installs\":%llu,\"installed_pages\":%llu,\"install_us\":%.3f},",
	    (unsigned long long)s->lat[UDSM_LAT_READ_MISS].count,
	    (unsigned long long)s->lat[UDSM_LAT_WRITE_MISS].count,
	    (unsigned long long)s->lat[UDSM_LAT_UPGRADE].count,
	    (unsigned long long)s->lat[UDSM_LAT_BARRIER].count,
	    (unsigned long long)s->lat[UDSM_LAT_LOCK].count, (unsigned long long)s->lat_dropped,
	    (unsigned long long)s->transfers, (unsigned long long)s->written_known,
	    (unsigned long long)s->hot_replaced, (unsigned long long)s->false_shared,
	    (unsigned long long)s->installs, (unsigned long long)s->installed_pages,
	    (double)s->install_ns / 1e3);
	json_waiting(b, d);
	put(b, "\"latency_us\":{");
	for (unsigned k = 0; k < UDSM_LAT_KINDS; k++) {
		const struct udsm_latency *h = &s->lat[k];
		bool first = true;

		put(b, "%s\"%s\":{\"count\":%llu,\"sum_us\":%.3f,\"mean_us\":%.3f,\"p50_us\":%.1f,"
		    "\"p90_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.3f,\"buckets_us\":[",
		    k ? "," : "", kind_names[k], (unsigned long long)h->count, (double)h->sum_ns / 1e3,
		    h->count ? (double)h->sum_ns / 1e3 / (double)h->count : 0.0,
		    hist_quantile_us(h, 0.5), hist_quantile_us(h, 0.9), hist_quantile_us(h, 0.99),
		    (double)h->max_ns / 1e3);
		for (unsigned i = 0; i < UDSM_LAT_BUCKETS; i++) {
			if (!h->buckets[i])
				continue;
			if (i == UDSM_LAT_BUCKETS - 1)
				put(b, "%s[%llu,null,%llu]", first ? "" : ",",
				    (unsigned long long)hist_bucket_lo_us(i),
				    (unsigned long long)h->buckets[i]);
			else
				put(b, "%s[%llu,%llu,%llu]", first ? "" : ",",
				    (unsigned long long)hist_bucket_lo_us(i),
				    (unsigned long long)hist_bucket_hi_us(i),
				    (unsigned long long)h->buckets[i]);
			first = false;
		}
		put(b, "]}");
	}
	put(b, "},\"hot_pages\":[");
	for (size_t i = 0; i < nhot; i++) {
		const struct udsm_hot_page *h = &hp[i];

		put(b, "%s{\"page\":%llu,\"addr\":\"%p\",\"home\":%u,\"transfers\":%llu,"
		    "\"transfers_err\":%llu,\"nodes\":", i ? "," : "", (unsigned long long)h->page,
		    (void *)(d->base + h->page * d->ps), d->self,
		    (unsigned long long)h->transfers, (unsigned long long)h->transfers_err);
		put_nodes(b, h->nodes);
		put(b, ",\"writers\":");
		put_nodes(b, h->writers);
		put(b, ",\"false_sharing\":%s,\"disjoint\":%u,\"overlap\":%u,\"ranges\":[",
		    h->false_sharing ? "true" : "false", h->disjoint, h->overlap);
		for (uint32_t r = 0; r < h->nranges; r++)
			put(b, "%s{\"node\":%u,\"start\":%u,\"end\":%u}", r ? "," : "",
			    h->ranges[r].node, h->ranges[r].start, h->ranges[r].end);
		put(b, "]}");
	}
	put(b, "]}\n");
}

static void summary(struct buf *b, const struct udsm *d, const struct udsm_stats2 *s,
		    const struct udsm_hot_page *hp, size_t nhot, const char *reason)
{
	put(b, "udsm stats: node %u of %u (%s), up %.2f s: %llu faults (%llu read, %llu write), "
	    "%llu pages in, %.1f MB sent, %.1f MB received\n", d->self, d->nodes, reason,
	    (double)(net_now_ns() - d->stats->t_open_ns) / 1e9, (unsigned long long)s->c.faults,
	    (unsigned long long)s->c.read_faults, (unsigned long long)s->c.write_faults,
	    (unsigned long long)s->c.pages_in, (double)s->c.bytes_sent / 1e6,
	    (double)s->c.bytes_recv / 1e6);
	summary_waiting(b, d);
	put(b, "  %-11s %9s %9s %9s %9s %9s %9s   (us)\n", "latency", "count", "mean", "p50",
	    "p90", "p99", "max");
	for (unsigned k = 0; k < UDSM_LAT_KINDS; k++) {
		const struct udsm_latency *h = &s->lat[k];

		if (!h->count)
			continue;
		put(b, "  %-11s %9llu %9.1f %9.1f %9.1f %9.1f %9.1f\n", kind_names[k],
		    (unsigned long long)h->count, (double)h->sum_ns / 1e3 / (double)h->count,
		    hist_quantile_us(h, 0.5), hist_quantile_us(h, 0.9), hist_quantile_us(h, 0.99),
		    (double)h->max_ns / 1e3);
		for (unsigned i = 0; i < UDSM_LAT_BUCKETS; i++) {
			char lo[24], hi[24], bar[41];
			unsigned w;

			if (!h->buckets[i])
				continue;
			w = (unsigned)((h->buckets[i] * 40 + h->count - 1) / h->count);
			memset(bar, '#', w);
			bar[w] = '\0';
			snprintf(lo, sizeof(lo), "%llu", (unsigned long long)hist_bucket_lo_us(i));
			if (i == UDSM_LAT_BUCKETS - 1)
				snprintf(hi, sizeof(hi), "...");
			else
				snprintf(hi, sizeof(hi), "%llu",
					 (unsigned long long)hist_bucket_hi_us(i));
			put(b, "    [%6s, %6s) us %9llu %s\n", lo, hi,
			    (unsigned long long)h->buckets[i], bar);
		}
	}
	if (!nhot) {
		put(b, "  no page homed on node %u moved\n", d->self);
		return;
	}
	put(b, "  hot pages homed on node %u (of %llu transfers served):\n", d->self,
	    (unsigned long long)s->transfers);
	for (size_t i = 0; i < nhot; i++) {
		const struct udsm_hot_page *h = &hp[i];

		put(b, "    page %llu (%p): %llu transfers, nodes", (unsigned long long)h->page,
		    (void *)(d->base + h->page * d->ps), (unsigned long long)h->transfers);
		for (unsigned n = 0; n < 64; n++)
			if (h->nodes & ((uint64_t)1 << n))
				put(b, " %u", n);
		if (h->false_sharing)
			put(b, "; FALSE SHARING (%u disjoint / %u overlapping hand-overs):",
			    h->disjoint, h->overlap);
		else if (h->disjoint || h->overlap)
			put(b, "; shared writes (%u disjoint / %u overlapping hand-overs):",
			    h->disjoint, h->overlap);
		for (uint32_t r = 0; r < h->nranges && (h->false_sharing || h->overlap); r++)
			put(b, " node %u wrote [%u, %u)", h->ranges[r].node, h->ranges[r].start,
			    h->ranges[r].end);
		put(b, "\n");
	}
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int report_fd(const struct udsm *d, int fd, const char *reason)
{
	struct udsm_stats2 s;
	struct udsm_hot_page *hp = NULL;
	struct buf b = { 0 };
	int n = 0, err;
	unsigned top = d->stats ? d->stats->top : 0;

	if (!d->stats)
		return -EINVAL;
	read_all(d, &s);
	if (top && !(hp = calloc(top, sizeof(*hp))))
		return -ENOMEM;
	if (top)
		n = udsm_hot_pages(d, hp, top);
	if (n < 0)
		n = 0;
	if (isatty(fd))
		summary(&b, d, &s, hp, (size_t)n, reason);
	json(&b, d, &s, hp, (size_t)n, reason);
	free(hp);
	if (b.oom) {
		free(b.p);
		return -ENOMEM;
	}
	err = write_all(fd, b.p, b.len); /* one write for the line: nodes sharing a file */
	free(b.p);
	return err;
}

static int report_to_target(struct udsm *d, const char *reason)
{
	struct stats *st = d->stats;
	char path[4096];
	int fd, err;

	if (!strcmp(st->target, "stderr"))
		return report_fd(d, 2, reason);
	if ((size_t)snprintf(path, sizeof(path), "%s.%u", st->target, d->self) >= sizeof(path)) {
		log_warn("UDSM_STATS path too long");
		return -ENAMETOOLONG;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0) {
		err = -errno;
		log_warn("node %u: cannot write the statistics report to %s: %s", d->self, path,
			 strerror(-err));
		return err;
	}
	err = report_fd(d, fd, reason);
	if (err)
		log_warn("node %u: writing the statistics report to %s: %s", d->self, path,
			 strerror(-err));
	close(fd);
	return err;
}

UDSM_EXPORT int udsm_stats_report(const struct udsm *d, int fd)
{
	if (!d || fd < 0)
		return -EINVAL;
	return report_fd(d, fd, "call");
}
