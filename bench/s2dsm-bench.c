/* SPDX-License-Identifier: MIT */
/*
 * s2dsm-bench.c - the assignment's workload, timed: s2dsm's remote read-all against its floor.
 *
 * One s2dsm run: two s2dsm processes driven through pipes, as a person would drive them at
 * two terminals. The first allocates PAGES pages and writes a message into all of them
 * (`w`, `-1`); the second reads them all (`r`, `-1`), which fetches every page from the first
 * one. The figure is the second command, from the moment "-1" is written to the moment the
 * next command prompt is read back, divided by PAGES. The driver reads the output in large
 * chunks and only counts lines (every page must print " [x] PAGEFAULT" and the message), so
 * the prompt I/O costs the driver a few system calls per 64 KiB of output, not per page.
 *
 * One floor run: bench/s2dsm-floor.c, the same workload written as plainly as possible (one
 * blocking handler thread, userfaultfd + TCP, no spinning), timed the same way: from "go" to
 * "done".
 *
 * Runs alternate (floor, s2dsm in each regime; next run the other way round) so that a change
 * in the machine's load hits both; the medians and their ratio come from the same run. The
 * regimes (--regimes) are s2dsm option sets: the library's default waiting strategy ("lib")
 * and its never-spin setting ("spin=-1", s2dsm --spin -1), so the figure shows whether the
 * result depends on the service threads spinning; each also with "serial" (s2dsm --serial:
 * one access after the other, like the floor, instead of several in flight), which shows
 * what one fetch costs.
 *
 *   s2dsm-bench [--pages N] [--runs R] [--quick] [--json] [--strace|--perf|--perf-trace]
 *               [--regimes LIST] [--s2dsm PATH] [--floor PATH] [-v]
 *
 * --strace attaches `strace -f -c` to both processes of every timed phase and prints system
 * calls per page instead of times (ptrace makes the times meaningless); --perf attaches
 * `perf stat` and prints CPU time, context switches and CPU migrations per page; --perf-trace
 * attaches `perf trace -s`: system calls per page and the mean time of each. Exit status: 0, or 1
 * if a run failed (wrong output, a process died, a timeout).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MSG "s2dsm-bench wrote this page"
#define CMD_PROMPT "> Which command should I run? (r:read, w:write): "
#define MSG_PROMPT "> Type your new message: "
#define COUNT_PROMPT "> How many pages would you like to allocate (greater than 0)? "
#define LISTEN_LINE " [*] First process of 2: listening on "
#define FAULT_LINE " [x] PAGEFAULT"
#define PAGE_LINE " [*] Page "
#define TIMEOUT_MS 300000 /* one command over every page on a very busy machine */
#define START_MS 30000
#define MAX_REGIMES 4
#define MAX_RUNS 101

struct opts {
	size_t pages;
	int runs;
	bool json, verbose, quick;
	int trace;                 /* T_*: --strace, --perf, --perf-trace; 0: none */
	const char *s2dsm, *floor;
	int nregimes;
	struct regime {
		char name[32];     /* as given: "lib", "spin=-1", "serial+spin=-1" */
		bool spin_set;     /* false: the library's default (no --spin) */
		int spin;          /* s2dsm --spin value */
		bool serial;       /* s2dsm --serial */
	} regime[MAX_REGIMES];
};

/* A child process driven through its stdin and stdout. */
struct child {
	const char *name;
	pid_t pid;
	int in, out;         /* our ends: its stdin, its stdout */
	char buf[1 << 16];   /* output read but not consumed; buf[len] = '\0' */
	size_t len;
	bool eof;
};

/* What the lines consumed by one expectation said. */
struct counts {
	size_t faults, pages, msgs;
	char listen[64];     /* the first process's address, if it printed it */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "s2dsm-bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Start @argv with pipes on its stdin and stdout; stderr is ours with -v, else /dev/null. */
static int spawn(struct child *c, const char *name, char *const argv[], bool verbose)
{
	int in[2], out[2];

	memset(c, 0, sizeof(*c));
	c->name = name;
	if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC)) {
		fail("pipe: %s", strerror(errno));
		return -1;
	}
	c->pid = fork();
	if (c->pid < 0) {
		fail("fork: %s", strerror(errno));
		return -1;
	}
	if (c->pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		dup2(in[0], 0);
		dup2(out[1], 1);
		if (!verbose && null >= 0)
			dup2(null, 2);
		execv(argv[0], argv);
		fprintf(stderr, "s2dsm-bench: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	c->in = in[1];
	c->out = out[0];
	return 0;
}

static int say(struct child *c, const char *text)
{
	size_t len = strlen(text);

	while (len) {
		ssize_t n = write(c->in, text, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fail("%s: write: %s", c->name, strerror(errno));
			return -1;
		}
		text += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read what @c has printed, waiting until @deadline. Returns 0, or -1 (timeout, end). */
static int fill(struct child *c, uint64_t deadline)
{
	for (;;) {
		struct pollfd pf = { .fd = c->out, .events = POLLIN };
		uint64_t now = now_ns();
		ssize_t n;

		if (c->eof || now >= deadline)
			return -1;
		if (poll(&pf, 1, (int)((deadline - now) / 1000000u) + 1) <= 0)
			continue;
		n = read(c->out, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			c->eof = true;
			return -1;
		}
		c->len += (size_t)n;
		c->buf[c->len] = '\0';
		return 0;
	}
}

/* Count one line of output (without its '\n'). */
static void count_line(struct counts *k, const char *s, size_t len)
{
	if (len == sizeof(FAULT_LINE) - 1 && !memcmp(s, FAULT_LINE, len))
		k->faults++;
	else if (len > sizeof(PAGE_LINE) - 1 && !memcmp(s, PAGE_LINE, sizeof(PAGE_LINE) - 1))
		k->pages++;
	else if (len == sizeof(MSG) - 1 && !memcmp(s, MSG, len))
		k->msgs++;
	else if (len > sizeof(LISTEN_LINE) - 1 && len - (sizeof(LISTEN_LINE) - 1) < sizeof(k->listen) &&
		 !memcmp(s, LISTEN_LINE, sizeof(LISTEN_LINE) - 1)) {
		memcpy(k->listen, s + sizeof(LISTEN_LINE) - 1, len - (sizeof(LISTEN_LINE) - 1));
		k->listen[len - (sizeof(LISTEN_LINE) - 1)] = '\0';
	}
}

/*
 * Wait for @prompt: consume and count every complete line before it. A prompt is the only
 * output that does not end a line, and s2dsm prints nothing after it until it reads input
 * (a library notice prints the prompt again: still the end of what was printed).
 */
static int expect(struct child *c, const char *prompt, struct counts *k, int ms)
{
	uint64_t deadline = now_ns() + (uint64_t)ms * 1000000u;
	size_t plen = strlen(prompt);

	memset(k, 0, sizeof(*k));
	for (;;) {
		char *s = c->buf, *nl;

		while ((nl = memchr(s, '\n', c->len - (size_t)(s - c->buf)))) {
			count_line(k, s, (size_t)(nl - s));
			s = nl + 1;
		}
		c->len -= (size_t)(s - c->buf);
		memmove(c->buf, s, c->len + 1);
		if (c->len >= plen && !memcmp(c->buf + c->len - plen, prompt, plen)) {
			c->len = 0;
			c->buf[0] = '\0';
			return 0;
		}
		if (c->len >= sizeof(c->buf) - 1) {
			fail("%s: a line longer than %zu bytes", c->name, sizeof(c->buf));
			return -1;
		}
		if (fill(c, deadline)) {
			fail("%s: %s while waiting for %s; last output: '%.200s'", c->name,
			     c->eof ? "end of output" : "timeout", prompt, c->buf);
			return -1;
		}
	}
}

/* Read one line into @line (without its '\n'). */
static int read_line(struct child *c, char *line, size_t cap, int ms)
{
	uint64_t deadline = now_ns() + (uint64_t)ms * 1000000u;
	char *nl;

	while (!(nl = memchr(c->buf, '\n', c->len))) {
		if (fill(c, deadline)) {
			fail("%s: %s while waiting for a line; output: '%.200s'", c->name,
			     c->eof ? "end of output" : "timeout", c->buf);
			return -1;
		}
	}
	*nl = '\0';
	if ((size_t)(nl - c->buf) >= cap) {
		fail("%s: a line longer than %zu bytes: '%.80s'", c->name, cap - 1, c->buf);
		return -1;
	}
	memcpy(line, c->buf, (size_t)(nl - c->buf) + 1);
	c->len -= (size_t)(nl + 1 - c->buf);
	memmove(c->buf, nl + 1, c->len + 1);
	return 0;
}

/* Close its stdin, drain its output, reap it (SIGKILL after @ms). Returns its exit status. */
static int finish(struct child *c, int ms)
{
	uint64_t deadline = now_ns() + (uint64_t)ms * 1000000u;
	int status = 0;

	if (c->pid <= 0)
		return -1;
	if (c->in >= 0)
		close(c->in);
	c->in = -1;
	while (!c->eof) {
		c->len = 0;
		if (fill(c, deadline) && !c->eof) {
			kill(c->pid, SIGKILL);
			break;
		}
	}
	close(c->out);
	waitpid(c->pid, &status, 0);
	c->pid = 0;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void kill_child(struct child *c)
{
	if (c->pid > 0) {
		kill(c->pid, SIGKILL);
		finish(c, 1000);
	}
}

/* CPU time (user + system) of process @pid so far, in microseconds; 0 if unknown. */
static double cpu_us(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	if (!p || !(p = strrchr(buf, ')')))
		return 0;
	/* After the command name: state, then fields 4..; utime and stime are 14 and 15. */
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return 0;
	return (double)(ut + st) * 1e6 / (double)sysconf(_SC_CLK_TCK);
}

/* ------------------------------------------------------------------------------------------
 * strace or perf stat: system calls, or CPU time and context switches, of a timed phase.
 */

enum { T_STRACE = 1, T_PERF, T_PERF_TRACE };

struct tracer {
	pid_t pid;
	int kind;
	char file[64];
};

static int trace_start(struct tracer *t, pid_t target, const char *tag, int kind)
{
	char pid[16];

	snprintf(t->file, sizeof(t->file), "/tmp/s2dsm-bench-%d-%s.txt", (int)getpid(), tag);
	snprintf(pid, sizeof(pid), "%d", (int)target);
	t->pid = fork();
	if (t->pid < 0)
		return -1;
	if (t->pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		if (null >= 0)
			dup2(null, 2);
		if (kind == T_PERF)
			execlp("perf", "perf", "stat", "-x", ",", "-e",
			       "task-clock,context-switches,cpu-migrations", "-o", t->file, "-p", pid,
			       (char *)NULL);
		else if (kind == T_PERF_TRACE)
			execlp("perf", "perf", "trace", "-s", "-o", t->file, "-p", pid, (char *)NULL);
		else
			execlp("strace", "strace", "-f", "-c", "-o", t->file, "-p", pid,
			       (char *)NULL);
		_exit(127);
	}
	t->kind = kind;
	return 0;
}

/* perf trace -s: per thread, "syscall calls errors total min avg max stddev" (ms); summed. */
static void print_perf_trace(FILE *f, size_t pages)
{
	struct { char name[32]; double calls, ms; } sum[64];
	char line[256];
	int n = 0;

	while (fgets(line, sizeof(line), f)) {
		char name[32];
		double calls, errs, total;
		int i;

		if (sscanf(line, " %31s %lf %lf %lf", name, &calls, &errs, &total) != 4)
			continue;
		for (i = 0; i < n && strcmp(sum[i].name, name); i++)
			;
		if (i == n) {
			if (n == 64)
				continue;
			snprintf(sum[n].name, sizeof(sum[n].name), "%s", name);
			sum[n].calls = sum[n].ms = 0;
			n++;
		}
		sum[i].calls += calls;
		sum[i].ms += total;
	}
	for (int i = 0; i < n; i++)
		if (sum[i].calls / (double)pages >= 0.01)
			printf(" %s %.2fx%.1fus", sum[i].name, sum[i].calls / (double)pages,
			       sum[i].ms * 1e3 / sum[i].calls);
}

/* Stop tracing and print the calls per page. */
static void trace_stop(struct tracer *t, const char *what, size_t pages)
{
	char line[256];
	int status;
	FILE *f;

	kill(t->pid, SIGINT);
	waitpid(t->pid, &status, 0);
	f = fopen(t->file, "r");
	if (!f) {
		printf("  %s: no %s output (is it installed?)\n", what,
		       t->kind == T_STRACE ? "strace" : "perf");
		return;
	}
	printf("  %s, %s per page:", what, t->kind == T_PERF ? "perf stat" :
	       t->kind == T_STRACE ? "system calls" : "system calls x their mean time");
	if (t->kind == T_PERF_TRACE)
		print_perf_trace(f, pages);
	while (t->kind == T_PERF && fgets(line, sizeof(line), f)) {
		char ev[64];
		double v;

		/* "value,unit,event,..." */
		if (sscanf(line, "%lf,%*[^,],%63[^,]", &v, ev) == 2 ||
		    sscanf(line, "%lf,,%63[^,]", &v, ev) == 2)
			printf(" %s %.2f%s", ev, !strcmp(ev, "task-clock") ? v * 1e3 / (double)pages :
			       v / (double)pages, !strcmp(ev, "task-clock") ? " us" : "");
	}
	while (t->kind == T_STRACE && fgets(line, sizeof(line), f)) {
		char name[64];
		unsigned long calls, errs;
		double a, b;
		unsigned long c;

		/* "% time seconds usecs/call calls [errors] syscall", last "... total" */
		if ((sscanf(line, "%lf %lf %lu %lu %lu %63s", &a, &b, &c, &calls, &errs, name) == 6 ||
		     sscanf(line, "%lf %lf %lu %lu %63s", &a, &b, &c, &calls, name) == 5) &&
		    (double)calls / (double)pages >= 0.01)
			printf(" %s%s %.2f", strcmp(name, "total") ? "" : "| ", name,
			       (double)calls / (double)pages);
	}
	printf("\n");
	fclose(f);
	unlink(t->file);
}

/* ------------------------------------------------------------------------------------------
 * One run of each program.
 */

struct sample {
	double read_ns, write_ns; /* the timed phases (write: s2dsm's first process only) */
	double cpu_us;            /* CPU of both processes during the read phase */
};

static int run_s2dsm(const struct opts *o, int regime, struct sample *out)
{
	const struct regime *rg = &o->regime[regime];
	char spin[16], join[80], count[32], page_prompt[96];
	char *argv_a[8] = { (char *)o->s2dsm, "--listen", "127.0.0.1:0" };
	char *argv_b[8] = { (char *)o->s2dsm, "--join", join };
	int argc = 3;
	struct child *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	struct tracer ta, tb;
	struct counts k;
	uint64_t t0;
	double c0;
	int ret = -1;

	if (!a || !b)
		goto out;
	a->pid = b->pid = 0;
	if (rg->spin_set) {
		snprintf(spin, sizeof(spin), "%d", rg->spin);
		argv_a[argc] = argv_b[argc] = "--spin";
		argc++;
		argv_a[argc] = argv_b[argc] = spin;
		argc++;
	}
	if (rg->serial)
		argv_a[argc] = argv_b[argc] = "--serial";
	snprintf(count, sizeof(count), "%zu\n", o->pages);
	snprintf(page_prompt, sizeof(page_prompt), "> For which page? (0-%zu, or -1 for all): ",
		 o->pages - 1);

	if (spawn(a, "s2dsm (first)", argv_a, o->verbose) ||
	    expect(a, COUNT_PROMPT, &k, START_MS))
		goto out;
	if (!k.listen[0]) {
		fail("the first s2dsm did not say where it listens");
		goto out;
	}
	snprintf(join, sizeof(join), "%s", k.listen);
	if (say(a, count) || spawn(b, "s2dsm (second)", argv_b, o->verbose) ||
	    expect(a, CMD_PROMPT, &k, START_MS) || expect(b, CMD_PROMPT, &k, START_MS))
		goto out;

	/* The first process writes every page. */
	if (say(a, "w\n") || expect(a, page_prompt, &k, START_MS) || say(a, "-1\n") ||
	    expect(a, MSG_PROMPT, &k, START_MS))
		goto out;
	t0 = now_ns();
	if (say(a, MSG "\n") || expect(a, CMD_PROMPT, &k, TIMEOUT_MS))
		goto out;
	out->write_ns = (double)(now_ns() - t0);
	if (k.faults != o->pages || k.msgs != o->pages || k.pages != o->pages) {
		fail("first s2dsm, w -1: %zu fault lines, %zu pages, %zu messages for %zu pages",
		     k.faults, k.pages, k.msgs, o->pages);
		goto out;
	}

	/* The second reads them all: the figure. */
	if (say(b, "r\n") || expect(b, page_prompt, &k, START_MS))
		goto out;
	if (o->trace) {
		if (trace_start(&ta, a->pid, "a", o->trace) || trace_start(&tb, b->pid, "b", o->trace))
			goto out;
		usleep(1000000); /* strace attaches to every thread */
	}
	c0 = cpu_us(a->pid) + cpu_us(b->pid);
	t0 = now_ns();
	if (say(b, "-1\n") || expect(b, CMD_PROMPT, &k, TIMEOUT_MS))
		goto out;
	out->read_ns = (double)(now_ns() - t0);
	out->cpu_us = cpu_us(a->pid) + cpu_us(b->pid) - c0;
	if (o->trace) {
		trace_stop(&tb, "s2dsm reading process", o->pages);
		trace_stop(&ta, "s2dsm first (writing) process", o->pages);
	}
	if (k.faults != o->pages || k.msgs != o->pages || k.pages != o->pages) {
		fail("second s2dsm, r -1: %zu fault lines, %zu pages, %zu messages for %zu pages",
		     k.faults, k.pages, k.msgs, o->pages);
		goto out;
	}

	if (say(b, "q\n") || finish(b, START_MS) || say(a, "q\n") || finish(a, START_MS)) {
		fail("s2dsm did not quit cleanly");
		goto out;
	}
	ret = 0;
out:
	if (b)
		kill_child(b);
	if (a)
		kill_child(a);
	free(a);
	free(b);
	return ret;
}

static int run_floor(const struct opts *o, struct sample *out)
{
	char pages[32], line[128];
	char *argv[] = { (char *)o->floor, pages, MSG, NULL };
	struct child *c = calloc(1, sizeof(*c));
	struct tracer tr, tw;
	unsigned long long faults, matched;
	uint64_t t0;
	double c0;
	int writer, ret = -1;

	if (!c)
		return -1;
	snprintf(pages, sizeof(pages), "%zu", o->pages);
	if (spawn(c, "s2dsm-floor", argv, o->verbose) || read_line(c, line, sizeof(line), START_MS))
		goto out;
	if (sscanf(line, "ready %d", &writer) != 1) {
		fail("s2dsm-floor said '%s'", line);
		goto out;
	}
	if (o->trace) {
		if (trace_start(&tr, c->pid, "r", o->trace) || trace_start(&tw, writer, "w", o->trace))
			goto out;
		usleep(1000000);
	}
	c0 = cpu_us(c->pid) + cpu_us(writer);
	t0 = now_ns();
	if (say(c, "go\n") || read_line(c, line, sizeof(line), TIMEOUT_MS))
		goto out;
	out->read_ns = (double)(now_ns() - t0);
	out->cpu_us = cpu_us(c->pid) + cpu_us(writer) - c0;
	out->write_ns = 0;
	if (o->trace) {
		trace_stop(&tr, "floor reading process", o->pages);
		trace_stop(&tw, "floor writing process", o->pages);
	}
	if (sscanf(line, "done %llu %llu", &faults, &matched) != 2 || faults != o->pages ||
	    matched != o->pages) {
		fail("s2dsm-floor: '%s' for %zu pages", line, o->pages);
		goto out;
	}
	if (finish(c, START_MS)) {
		fail("s2dsm-floor did not exit cleanly");
		goto out;
	}
	ret = 0;
out:
	kill_child(c);
	free(c);
	return ret;
}

/* ------------------------------------------------------------------------------------------
 * Options, the runs, the report.
 */

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return (a > b) - (a < b);
}

static double median(const double *v, int n)
{
	double s[MAX_RUNS];

	memcpy(s, v, sizeof(*v) * (size_t)n);
	qsort(s, (size_t)n, sizeof(*s), cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* The directory of this executable, for the default paths of s2dsm and the floor. */
static const char *find_next_to_me(const char *const *rel, char *buf, size_t cap)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *slash;

	if (n <= 0)
		return NULL;
	self[n] = '\0';
	slash = strrchr(self, '/');
	if (!slash)
		return NULL;
	*slash = '\0';
	for (; *rel; rel++) {
		if (snprintf(buf, cap, "%s/%s", self, *rel) >= (int)cap)
			continue;
		if (!access(buf, X_OK))
			return buf;
	}
	return NULL;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: s2dsm-bench [--pages N] [--runs R] [--quick] [--json]\n"
		"                   [--strace | --perf | --perf-trace] [--regimes LIST]\n"
		"                   [--s2dsm PATH] [--floor PATH] [-v]\n"
		"  --pages N     pages written by the first s2dsm and read by the second (10000)\n"
		"  --runs R      runs of each program, alternating; medians are printed (3)\n"
		"  --quick       200 pages, 1 run: checks that everything runs (the test suite)\n"
		"  --json        also one JSON line per figure\n"
		"  --strace      count system calls per page with strace -f -c (times are void)\n"
		"  --perf        CPU time, context switches and migrations per page (perf stat)\n"
		"  --perf-trace  system calls per page and their mean time (perf trace -s)\n"
		"  --regimes LIST  s2dsm option sets, comma-separated; each 'lib' (the library's\n"
		"                default) or words joined by '+': 'spin=US' (s2dsm --spin US),\n"
		"                'serial' (s2dsm --serial); default lib,spin=-1,serial,serial+spin=-1\n"
		"  --s2dsm PATH, --floor PATH   the programs (default: found next to this one)\n"
		"  -v            let the programs' stderr through\n");
}

static int parse_regimes(struct opts *o, const char *list)
{
	char copy[256], *item, *save;

	snprintf(copy, sizeof(copy), "%s", list);
	o->nregimes = 0;
	for (item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		struct regime *rg = &o->regime[o->nregimes];
		char words[32], *w, *save2;

		if (o->nregimes == MAX_REGIMES || strlen(item) >= sizeof(rg->name))
			return -1;
		memset(rg, 0, sizeof(*rg));
		snprintf(rg->name, sizeof(rg->name), "%s", item);
		snprintf(words, sizeof(words), "%s", item);
		for (w = strtok_r(words, "+", &save2); w; w = strtok_r(NULL, "+", &save2)) {
			char *end;

			if (!strcmp(w, "serial")) {
				rg->serial = true;
			} else if (!strncmp(w, "spin=", 5)) {
				rg->spin = (int)strtol(w + 5, &end, 10);
				if (*end || end == w + 5 || !rg->spin)
					return -1;
				rg->spin_set = true;
			} else if (strcmp(w, "lib")) {
				return -1;
			}
		}
		o->nregimes++;
	}
	return o->nregimes ? 0 : -1;
}

static void print_load(const char *when)
{
	double l[3] = { -1, -1, -1 };

	getloadavg(l, 3);
	printf("load average %s: %.2f %.2f %.2f\n", when, l[0], l[1], l[2]);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "pages", required_argument, NULL, 'p' }, { "runs", required_argument, NULL, 'r' },
		{ "quick", no_argument, NULL, 'q' },       { "json", no_argument, NULL, 'j' },
		{ "strace", no_argument, NULL, 't' },      { "regimes", required_argument, NULL, 's' },
		{ "s2dsm", required_argument, NULL, 'S' }, { "floor", required_argument, NULL, 'F' },
		{ "perf", no_argument, NULL, 'P' },        { "perf-trace", no_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const char *const s2dsm_rel[] = { "../tools/s2dsm", "s2dsm", NULL };
	static const char *const floor_rel[] = { "s2dsm-floor", NULL };
	struct opts o = { .pages = 10000, .runs = 3 };
	char s2dsm_path[PATH_MAX], floor_path[PATH_MAX];
	double floor_ns[MAX_RUNS], floor_cpu[MAX_RUNS], floor_med, l[3] = { -1, -1, -1 };
	double s_ns[MAX_REGIMES][MAX_RUNS], s_cpu[MAX_REGIMES][MAX_RUNS];
	double s_wr[MAX_REGIMES][MAX_RUNS];
	bool pages_set = false, runs_set = false;
	int c;

	parse_regimes(&o, "lib,spin=-1,serial,serial+spin=-1");
	while ((c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'p':
			o.pages = strtoul(optarg, NULL, 10);
			pages_set = true;
			break;
		case 'r':
			o.runs = atoi(optarg);
			runs_set = true;
			break;
		case 'q':
			o.quick = true;
			break;
		case 'j':
			o.json = true;
			break;
		case 't':
			o.trace = T_STRACE;
			break;
		case 'P':
			o.trace = T_PERF;
			break;
		case 'T':
			o.trace = T_PERF_TRACE;
			break;
		case 's':
			if (parse_regimes(&o, optarg)) {
				fprintf(stderr, "s2dsm-bench: --regimes wants a list like "
					"lib,spin=-1,serial+spin=50\n");
				return 2;
			}
			break;
		case 'S':
			o.s2dsm = optarg;
			break;
		case 'F':
			o.floor = optarg;
			break;
		case 'v':
			o.verbose = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (o.quick) {
		o.pages = pages_set ? o.pages : 200;
		o.runs = runs_set ? o.runs : 1;
	}
	if (o.pages < 1 || o.runs < 1 || o.runs > MAX_RUNS || optind != argc) {
		usage(stderr);
		return 2;
	}
	if (!o.s2dsm && !(o.s2dsm = find_next_to_me(s2dsm_rel, s2dsm_path, sizeof(s2dsm_path))))
		o.s2dsm = "s2dsm";
	if (!o.floor && !(o.floor = find_next_to_me(floor_rel, floor_path, sizeof(floor_path)))) {
		fprintf(stderr, "s2dsm-bench: s2dsm-floor not found next to this program: "
			"give --floor\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);

	printf("s2dsm remote read-all: %zu pages written by one s2dsm, read by the other; "
	       "%d run%s of each, alternating\n", o.pages, o.runs, o.runs == 1 ? "" : "s");
	print_load("before");
	for (int run = 0; run < o.runs; run++) {
		/* floor first in even runs, last in odd ones */
		for (int step = 0; step <= o.nregimes; step++) {
			int r = run % 2 ? step : step - 1; /* -1: the floor */
			struct sample sm = { 0 };

			if (run % 2 && step == o.nregimes)
				r = -1;
			if (r < 0) {
				if (run_floor(&o, &sm))
					return 1;
				floor_ns[run] = sm.read_ns;
				floor_cpu[run] = sm.cpu_us;
				printf("run %d: floor %.1f us/page\n", run + 1,
				       sm.read_ns / 1e3 / (double)o.pages);
			} else {
				if (run_s2dsm(&o, r, &sm))
					return 1;
				s_ns[r][run] = sm.read_ns;
				s_cpu[r][run] = sm.cpu_us;
				s_wr[r][run] = sm.write_ns;
				printf("run %d: s2dsm (%s) %.1f us/page\n", run + 1, o.regime[r].name,
				       sm.read_ns / 1e3 / (double)o.pages);
			}
		}
	}
	print_load("after");
	getloadavg(l, 3);
	if (o.trace == T_STRACE || o.trace == T_PERF_TRACE) {
		printf("(tracing system calls: the times above are distorted)\n");
		return 0;
	}

	floor_med = median(floor_ns, o.runs);
	printf("\n%-40s %12s %14s %10s\n", "medians, per page read", "wall us", "CPU us (both)",
	       "vs floor");
	printf("%-40s %12.1f %14.1f %10s\n", "floor (blocking, bench/s2dsm-floor.c)",
	       floor_med / 1e3 / (double)o.pages, median(floor_cpu, o.runs) / (double)o.pages,
	       "1.00");
	if (o.json)
		printf("{\"bench\":\"s2dsm_floor_read_all\",\"pages\":%zu,\"runs\":%d,"
		       "\"us_per_page\":%.3f,\"cpu_us_per_page\":%.3f,\"load1\":%.2f}\n",
		       o.pages, o.runs, floor_med / 1e3 / (double)o.pages,
		       median(floor_cpu, o.runs) / (double)o.pages, l[0]);
	for (int r = 0; r < o.nregimes; r++) {
		double med = median(s_ns[r], o.runs), cpu = median(s_cpu[r], o.runs);
		char label[64];

		snprintf(label, sizeof(label), "s2dsm r -1 (%s)", o.regime[r].name);
		printf("%-40s %12.1f %14.1f %10.2f\n", label, med / 1e3 / (double)o.pages,
		       cpu / (double)o.pages, med / floor_med);
		if (o.json)
			printf("{\"bench\":\"s2dsm_read_all\",\"regime\":\"%s\","
			       "\"pages\":%zu,\"runs\":%d,\"us_per_page\":%.3f,"
			       "\"cpu_us_per_page\":%.3f,\"write_us_per_page\":%.3f,"
			       "\"ratio_to_floor\":%.3f,\"load1\":%.2f}\n",
			       o.regime[r].name,
			       o.pages, o.runs, med / 1e3 / (double)o.pages, cpu / (double)o.pages,
			       median(s_wr[r], o.runs) / 1e3 / (double)o.pages, med / floor_med,
			       l[0]);
	}
	/* The target is s2dsm as a user runs it; --serial is a diagnostic (one fetch at a time,
	 * as the floor does it: what a fetch costs). */
	for (int r = 0; r < o.nregimes; r++)
		printf("%s (s2dsm faster than the floor), %s: %s\n",
		       o.regime[r].serial ? "diagnostic" : "target", o.regime[r].name,
		       median(s_ns[r], o.runs) < floor_med ? "yes" : o.regime[r].serial ? "no" :
		       "MISSED");
	return 0;
}
