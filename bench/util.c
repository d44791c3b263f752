/* SPDX-License-Identifier: MIT */
/*
 * util.c - clocks, percentiles, CPU placement and result records for udsm-bench.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "udsm-bench[%d]: ", (int)getpid());
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

void warnx_(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "udsm-bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		die("out of memory (%zu x %zu bytes)", n, size);
	return p;
}

int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted @v. */
static double pct(const uint64_t *v, size_t n, double q)
{
	size_t i = (size_t)ceil(q * (double)n);

	if (i > 0)
		i--;
	if (i >= n)
		i = n - 1;
	return (double)v[i] / 1000.0;
}

void summarize(struct result *r, uint64_t *ns, size_t n)
{
	double sum = 0;

	r->n = n;
	if (!n)
		return;
	qsort(ns, n, sizeof(*ns), cmp_u64);
	for (size_t i = 0; i < n; i++)
		sum += (double)ns[i];
	r->p50 = pct(ns, n, 0.50);
	r->p90 = pct(ns, n, 0.90);
	r->p99 = pct(ns, n, 0.99);
	r->max = (double)ns[n - 1] / 1000.0;
	r->mean = sum / (double)n / 1000.0;
}

void result_init(struct result *r, const char *bench, unsigned nodes, int spin_us)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->bench, sizeof(r->bench), "%s", bench);
	r->nodes = nodes;
	r->spin_us = spin_us;
	r->p50 = r->p90 = r->p99 = r->max = r->mean = NAN;
	r->msgs_per_op = r->bytes_per_op = r->wakeups_per_op = NAN;
	r->mb_s = r->ops_s = r->zero_frac = r->xfers_per_op = r->install_us_per_op = NAN;
	r->svc_cpu_us_per_op = r->app_cpu_us_per_op = NAN;
	r->svc0_cpu_us_per_op = r->svc1_cpu_us_per_op = NAN;
}

void sink_emit(struct sink *s, const struct result *r)
{
	if (s->fd >= 0) {
		/* One record per write: smaller than PIPE_BUF is not needed (one writer), but
		 * a short write would tear the stream, so loop. */
		const char *p = (const char *)r;
		size_t left = sizeof(*r);

		while (left) {
			ssize_t w = write(s->fd, p, left);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				die("writing a result to the parent: %s", strerror(errno));
			p += w;
			left -= (size_t)w;
		}
		return;
	}
	if (s->n == s->cap) {
		size_t ncap = s->cap ? 2 * s->cap : 32;
		struct result *n = realloc(s->r, ncap * sizeof(*n));

		if (!n)
			die("out of memory");
		s->r = n;
		s->cap = ncap;
	}
	s->r[s->n++] = *r;
}

int allowed_cpus(int *cpus, int max)
{
	cpu_set_t set;
	int n = 0;

	if (sched_getaffinity(0, sizeof(set), &set))
		return 0;
	for (int c = 0; c < CPU_SETSIZE && n < max; c++)
		if (CPU_ISSET(c, &set))
			cpus[n++] = c;
	return n;
}

static int pin_tid(pid_t tid, int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return 0;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(tid, sizeof(set), &set) ? -errno : 0;
}

int pin_self(int cpu)
{
	return pin_tid(0, cpu);
}

int pin_others(int cpu)
{
	pid_t me = (pid_t)syscall(SYS_gettid);
	struct dirent *de;
	DIR *dir;
	int err = 0;

	if (cpu < 0)
		return 0;
	dir = opendir("/proc/self/task");
	if (!dir)
		return -errno;
	while ((de = readdir(dir))) {
		pid_t tid = (pid_t)atoi(de->d_name);

		if (tid > 0 && tid != me && !err)
			err = pin_tid(tid, cpu);
	}
	closedir(dir);
	return err;
}

bool is_tty(int fd)
{
	return isatty(fd) == 1;
}

/* Quantile @q of a log2-microsecond histogram, interpolated inside its bucket (docs/STATS.md):
 * within a factor of two of the truth. */
static double hist_q(const uint64_t *bk, uint64_t total, double max_us, double q)
{
	double rank = q * (double)total, seen = 0;

	for (unsigned b = 0; b < UDSM_LAT_BUCKETS; b++) {
		double lo = b ? (double)(1ull << (b - 1)) : 0;
		double hi = b < UDSM_LAT_BUCKETS - 1 ? (double)(1ull << b) : max_us;

		if (!bk[b])
			continue;
		if (seen + (double)bk[b] >= rank) {
			double v = lo + (hi - lo) * (rank - seen) / (double)bk[b];

			return v < max_us ? v : max_us;
		}
		seen += (double)bk[b];
	}
	return max_us;
}

void lib_latency(struct result *r, const char *kind, const struct udsm_latency *a,
		 const struct udsm_latency *b)
{
	uint64_t n = b->count - a->count;

	snprintf(r->lib_kind, sizeof(r->lib_kind), "%s", kind);
	r->lib_n = n;
	for (unsigned i = 0; i < UDSM_LAT_BUCKETS; i++)
		r->lib_buckets[i] = b->buckets[i] - a->buckets[i];
	r->lib_mean = n ? (double)(b->sum_ns - a->sum_ns) / (double)n / 1000.0 : NAN;
	/* The window's max is not known (the snapshot's max is since udsm_open): cap by it. */
	r->lib_p50 = n ? hist_q(r->lib_buckets, n, (double)b->max_ns / 1000.0, 0.5) : NAN;
	r->lib_p99 = n ? hist_q(r->lib_buckets, n, (double)b->max_ns / 1000.0, 0.99) : NAN;
}
