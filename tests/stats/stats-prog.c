/* SPDX-License-Identifier: MIT */
/*
 * stats-prog.c - a 2-node cluster in one command, for the statistics tests (check-stats.py).
 *
 *   udsm-stats-prog MODE
 *
 * It forks both nodes; every node writes its report where UDSM_STATS says (inherited).
 * MODE:
 *   false   nodes 0 and 1 take turns (barriers in between) writing their own 8-byte word of
 *           page 4: node 0 bytes [0, 8), node 1 bytes [8, 16). Node 0 opted in to SIGUSR2 and
 *           raises it once before it closes; it also checks udsm_hot_pages() itself.
 *   padded  the same, with node 1's word in page 6 instead: no page is shared.
 *   counts  read-ahead and migratory sharing off; node 0 writes pages 8..27 (20 write
 *           misses), node 1 reads them (20 read misses), writes them (20 upgrades), then
 *           writes pages 40..49 (10 write misses); 5 barriers on each node in all.
 * Prints one line per node on stdout ("node N ok"). Exit status 0 if both nodes passed.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "udsm.h"

#define ROUNDS 30
#define FS_PAGE 4
#define PAD_PAGE 6

static unsigned self;

static void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "stats-prog node %u: FAIL: ", self);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void barrier(struct udsm *d)
{
	int err = udsm_barrier(d);

	if (err)
		fail("barrier: %s", udsm_strerror(err));
}

static void on_listen(void *arg, const char *hostport)
{
	int fd = *(int *)arg;
	char line[128];
	int n = snprintf(line, sizeof(line), "%s\n", hostport);

	if (write(fd, line, (size_t)n) != n)
		fail("reporting the port");
}

static void check_api(struct udsm *d)
{
	struct udsm_hot_page hp[4];
	struct udsm_stats2 s2;
	uint8_t small[24];
	int n = udsm_hot_pages(d, hp, 4);

	if (n < 1 || hp[0].page != FS_PAGE || !hp[0].false_sharing || hp[0].nodes != 3)
		fail("udsm_hot_pages: %d entries, first page %llu, false_sharing %d, nodes %#llx",
		     n, n > 0 ? (unsigned long long)hp[0].page : 0ull,
		     n > 0 ? hp[0].false_sharing : -1, n > 0 ? (unsigned long long)hp[0].nodes : 0ull);
	/* A program built against an older, smaller struct gets exactly its size filled. */
	memset(small, 0xee, sizeof(small));
	if (udsm_stats2(d, (struct udsm_stats2 *)(void *)small, 16) != 16 || small[16] != 0xee)
		fail("udsm_stats2 with a 16-byte struct wrote past it");
	if (udsm_stats2(d, &s2, sizeof(s2)) != (int)sizeof(s2) || !s2.c.faults ||
	    s2.lat[UDSM_LAT_BARRIER].count < 2 * ROUNDS)
		fail("udsm_stats2: faults %llu barriers %llu", (unsigned long long)s2.c.faults,
		     (unsigned long long)s2.lat[UDSM_LAT_BARRIER].count);
	if (!s2.installs || s2.installs > s2.installed_pages || s2.installed_pages > s2.c.pages_in ||
	    !s2.install_ns)
		fail("udsm_stats2: %llu installs of %llu pages in %llu ns, %llu pages in",
		     (unsigned long long)s2.installs, (unsigned long long)s2.installed_pages,
		     (unsigned long long)s2.install_ns, (unsigned long long)s2.c.pages_in);
}

/* Wait until the report file of this node has @lines lines (the SIGUSR2 report). */
static void wait_report(unsigned lines)
{
	const char *t = getenv("UDSM_STATS");
	char path[4096];

	if (!t || !strcmp(t, "stderr") || !strcmp(t, "off"))
		return;
	snprintf(path, sizeof(path), "%s.%u", t, self);
	for (int i = 0; i < 500; i++) {
		FILE *f = fopen(path, "r");
		unsigned n = 0;
		int c;

		if (f) {
			while ((c = fgetc(f)) != EOF)
				n += c == '\n';
			fclose(f);
		}
		if (n >= lines)
			return;
		usleep(10000);
	}
	fail("no SIGUSR2 report in %s after 5 s", path);
}

static int node(const char *mode, const char *join, int port_fd)
{
	struct udsm_config cfg = {
		.join = join,
		.listen = join ? NULL : "127.0.0.1:0",
		.nodes = 2,
		.size = 64 * (size_t)sysconf(_SC_PAGESIZE),
		.timeout_ms = 30000,
		.on_listen = join ? NULL : on_listen,
		.on_listen_arg = &port_fd,
	};
	bool counts = !strcmp(mode, "counts"), padded = !strcmp(mode, "padded");
	struct udsm *d;
	uint8_t *base;
	size_t ps;
	int err;

	alarm(60);
	if (counts)
		cfg.readahead = cfg.migratory = -1;
	if (!join)
		cfg.stats_sigusr2 = 1;
	err = udsm_open(&cfg, &d);
	if (err)
		fail("udsm_open: %s", udsm_strerror(err));
	if (port_fd >= 0)
		close(port_fd);
	self = udsm_node_id(d);
	base = udsm_base(d);
	ps = udsm_page_size(d);

	if (counts) {
		if (self == 0)
			for (size_t p = 8; p < 28; p++)
				*(volatile uint64_t *)(base + p * ps) = p;
		barrier(d);
		if (self == 1)
			for (size_t p = 8; p < 28; p++)
				if (*(volatile uint64_t *)(base + p * ps) != p)
					fail("page %zu: wrong contents", p);
		barrier(d);
		if (self == 1)
			for (size_t p = 8; p < 28; p++)
				*(volatile uint64_t *)(base + p * ps + 8) = p;
		barrier(d);
		if (self == 1)
			for (size_t p = 40; p < 50; p++)
				*(volatile uint64_t *)(base + p * ps) = p;
		barrier(d);
	} else {
		volatile uint64_t *w0 = (volatile uint64_t *)(base + FS_PAGE * ps);
		volatile uint64_t *w1 = padded ? (volatile uint64_t *)(base + PAD_PAGE * ps) + 1
					       : w0 + 1;

		for (uint64_t r = 1; r <= ROUNDS; r++) {
			if (self == 0)
				*w0 = r;
			barrier(d);
			if (self == 1)
				*w1 = r;
			barrier(d);
		}
		if (*w0 != ROUNDS || *w1 != ROUNDS)
			fail("words are %llu and %llu", (unsigned long long)*w0,
			     (unsigned long long)*w1);
		if (self == 0 && !padded)
			check_api(d);
		if (self == 0) {
			raise(SIGUSR2); /* opted in: the service thread writes a report */
			wait_report(1);
		}
	}
	barrier(d);
	err = udsm_close(d);
	if (err)
		fail("udsm_close: %s", udsm_strerror(err));
	printf("node %u ok\n", self);
	return 0;
}

static int wait_child(pid_t pid, const char *who)
{
	int st;

	if (waitpid(pid, &st, 0) != pid)
		return 1;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	fprintf(stderr, "stats-prog: %s failed (status %#x)\n", who, st);
	return 1;
}

int main(int argc, char **argv)
{
	int pfd[2];
	char addr[128];
	size_t alen = 0;
	pid_t p0, p1;
	int rc;

	if (argc != 2 || (strcmp(argv[1], "false") && strcmp(argv[1], "padded") &&
			  strcmp(argv[1], "counts"))) {
		fprintf(stderr, "usage: udsm-stats-prog false|padded|counts\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (pipe(pfd))
		return 2;
	p0 = fork();
	if (p0 == 0) {
		close(pfd[0]);
		_exit(node(argv[1], NULL, pfd[1]));
	}
	close(pfd[1]);
	while (!memchr(addr, '\n', alen)) {
		struct pollfd pf = { .fd = pfd[0], .events = POLLIN };
		ssize_t r;

		if (poll(&pf, 1, 30000) <= 0)
			break;
		r = read(pfd[0], addr + alen, sizeof(addr) - 1 - alen);
		if (r <= 0)
			break;
		alen += (size_t)r;
	}
	close(pfd[0]);
	if (!memchr(addr, '\n', alen)) {
		kill(p0, SIGKILL);
		wait_child(p0, "node 0");
		fprintf(stderr, "stats-prog: node 0 did not start\n");
		return 1;
	}
	*(char *)memchr(addr, '\n', alen) = '\0';
	p1 = fork();
	if (p1 == 0)
		_exit(node(argv[1], addr, -1));
	rc = wait_child(p0, "node 0");
	rc |= wait_child(p1, "node 1");
	return rc;
}
