/* SPDX-License-Identifier: MIT */
/*
 * misuse.c - a two-node cluster whose application does what udsm cannot see coming: locks
 * memory, drops pages of the region, unmaps part of it.
 *
 *   udsm-misuse SCENARIO
 *
 *   mlock-future   mlockall(MCL_CURRENT | MCL_FUTURE) before udsm_open() on both nodes: pages
 *                  written on one node must be read on the other (never a silent 0)
 *   mlock-onfault  mlockall(... | MCL_ONFAULT) after udsm_open(): pages move both ways
 *   mlock-current  mlockall(MCL_CURRENT) after udsm_open(), then munlockall(): locking
 *                  populates every mapping of the process, udsm's own included (the scratch
 *                  slots of UFFDIO_MOVE, which fault as missing): it returns, and pages move
 *                  both ways afterwards
 *   madvise        node 0 drops a page it holds Shared (MADV_DONTNEED) and reads it again:
 *                  node 0 is fenced (SIGBUS), node 1 sees it lost, nobody spins or hangs
 *   madvise-serve  node 0 drops a page it holds Modified; node 1 then reads it, so node 0's
 *                  service thread must read the dropped page: no self-deadlock, node 0 is
 *                  fenced, node 1 gets SIGBUS on that page and goes on with its own
 *   madvise-hold   node 0 takes a page written on node 1, stores the bytes it had (so the
 *                  hold watching it lasts its longest, 4 x hold_us: 40 ms here) and drops it;
 *                  after a barrier, node 1 reads it, normally while the hold is on: node 0's
 *                  service thread must not load the dropped page to see whether it was
 *                  written (it would fault on its own userfaultfd): node 0 is fenced, node 1
 *                  gets SIGBUS on that page, never a zero page (a read that comes after the
 *                  hold, on a slow machine, passes without the hold's path)
 *   munmap         node 0 unmaps one page of the region: fenced, no abort; udsm_close works
 *
 * The harness forks both nodes and bounds the whole run (alarm): a hang is a failure.
 * Exit: 0 pass, 1 fail, 77 skip.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "udsm.h"

#define PAGES 16
#define BOUND_S 40

static const char *scenario;
static unsigned self;
static struct udsm *dsm;
static volatile uint8_t *base;
static size_t ps;
static sigjmp_buf jb;
static volatile sig_atomic_t in_probe;

static void fail(const char *what)
{
	fprintf(stderr, "misuse %s node %u: FAIL: %s\n", scenario, self, what);
	exit(1);
}

static void on_sigbus(int sig)
{
	(void)sig;
	if (in_probe)
		siglongjmp(jb, 1);
	_exit(3);
}

/* Read a byte of page @p: 0..255, or -1 if the access raised SIGBUS. */
static int probe(unsigned p)
{
	int v;

	if (sigsetjmp(jb, 1)) {
		in_probe = 0;
		return -1;
	}
	in_probe = 1;
	v = base[(size_t)p * ps];
	in_probe = 0;
	return v;
}

static void expect_barrier(int want)
{
	int err = udsm_barrier(dsm);

	if (err != want) {
		fprintf(stderr, "misuse %s node %u: barrier returned %s, wanted %s\n", scenario,
			self, udsm_strerror(err), udsm_strerror(want));
		exit(1);
	}
}

static void on_listen(void *arg, const char *hostport)
{
	int fd = *(int *)arg;

	if (write(fd, hostport, strlen(hostport) + 1) < 0)
		_exit(2);
}

static void writes_reads_both_ways(void)
{
	if (self == 1)
		for (unsigned p = 0; p < PAGES; p++)
			base[(size_t)p * ps] = (uint8_t)(41 + p);
	expect_barrier(0);
	if (self == 0)
		for (unsigned p = 0; p < PAGES; p++) {
			if (base[(size_t)p * ps] != (uint8_t)(41 + p))
				fail("read a stale value of a page node 1 wrote");
			base[(size_t)p * ps] = (uint8_t)(100 + p);
		}
	expect_barrier(0);
	if (self == 1)
		for (unsigned p = 0; p < PAGES; p++)
			if (base[(size_t)p * ps] != (uint8_t)(100 + p))
				fail("read a stale value of a page node 0 wrote");
	expect_barrier(0);
}

static int run_node(int pipefd[2])
{
	struct udsm_config cfg = { .nodes = 2, .size = PAGES * 4096, .timeout_ms = 20000 };
	char join[64];
	int err;

	if (!strcmp(scenario, "madvise-hold"))
		cfg.hold_us = 10000;

	signal(SIGBUS, on_sigbus);
	if (!strcmp(scenario, "mlock-future") && mlockall(MCL_CURRENT | MCL_FUTURE)) {
		fprintf(stderr, "mlockall: %s\n", strerror(errno));
		return 77;
	}
	if (self == 0) {
		close(pipefd[0]);
		cfg.on_listen = on_listen;
		cfg.on_listen_arg = &pipefd[1];
	} else {
		size_t n = 0;

		close(pipefd[1]);
		while (n < sizeof(join)) {
			ssize_t r = read(pipefd[0], join + n, sizeof(join) - n);

			if (r <= 0)
				return 2;
			n += (size_t)r;
			if (memchr(join, 0, n))
				break;
		}
		cfg.join = join;
	}
	if ((err = udsm_open(&cfg, &dsm))) {
		fprintf(stderr, "udsm_open: %s\n", udsm_strerror(err));
		return 2;
	}
	base = udsm_base(dsm);
	ps = udsm_page_size(dsm);

	if (!strcmp(scenario, "mlock-future")) {
		writes_reads_both_ways();
	} else if (!strcmp(scenario, "mlock-onfault")) {
		if (mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)) {
			fprintf(stderr, "mlockall: %s\n", strerror(errno));
			return 77;
		}
		writes_reads_both_ways();
		writes_reads_both_ways();
	} else if (!strcmp(scenario, "mlock-current")) {
		writes_reads_both_ways(); /* some pages given up: used scratch slots */
		if (mlockall(MCL_CURRENT)) {
			fprintf(stderr, "mlockall: %s\n", strerror(errno));
			return 77;
		}
		munlockall();
		expect_barrier(0);
		writes_reads_both_ways();
		writes_reads_both_ways();
	} else if (!strcmp(scenario, "madvise")) {
		if (self == 1)
			base[1 * ps] = 7; /* page 1 is homed on node 1 */
		expect_barrier(0);
		if (self == 0) {
			if (probe(1) != 7)
				fail("page 1 does not read 7");
			if (udsm_page_state(dsm, 1) != UDSM_SHARED)
				fail("page 1 is not Shared after a read");
			madvise((void *)(base + ps), ps, MADV_DONTNEED);
			if (probe(1) != -1)
				fail("a page dropped behind udsm's back did not raise SIGBUS");
			if (probe(0) != -1 || probe(3) != -1)
				fail("the fenced node still reads the region");
			expect_barrier(UDSM_EPEER);
		} else {
			expect_barrier(UDSM_EPEER); /* node 0 is lost */
			if (probe(1) != 7)
				fail("node 1 lost its own page");
			base[1 * ps] = 8;
		}
	} else if (!strcmp(scenario, "madvise-serve")) {
		if (self == 0)
			base[2 * ps] = 9; /* page 2 is homed on node 0, Modified there */
		expect_barrier(0);
		if (self == 0) {
			madvise((void *)(base + 2 * ps), ps, MADV_DONTNEED);
			expect_barrier(0);
			expect_barrier(UDSM_EPEER); /* node 1's read fences this node */
		} else {
			expect_barrier(0);
			if (probe(2) != -1) /* node 0 cannot serve it: it is fenced instead */
				fail("read a page its holder dropped");
			expect_barrier(UDSM_EPEER);
			base[1 * ps] = 5; /* its own page: still fine */
			if (probe(1) != 5)
				fail("node 1 lost its own page");
		}
	} else if (!strcmp(scenario, "madvise-hold")) {
		if (self == 1)
			base[1 * ps] = 7; /* page 1 is homed on node 1, Modified there */
		expect_barrier(0);
		if (self == 0) {
			base[1 * ps] = 7; /* handed over writable; the same bytes: held the longest */
			if (udsm_page_state(dsm, 1) != UDSM_MODIFIED)
				fail("page 1 is not Modified after a store");
			madvise((void *)(base + ps), ps, MADV_DONTNEED);
			expect_barrier(0);
			expect_barrier(UDSM_EPEER); /* node 1's read fences this node */
		} else {
			expect_barrier(0); /* node 0 holds page 1 (dropped) */
			if (probe(1) != -1)
				fail("read a page its holder dropped");
			expect_barrier(UDSM_EPEER);
		}
	} else if (!strcmp(scenario, "munmap")) {
		if (self == 1)
			base[1 * ps] = 7;
		expect_barrier(0);
		if (self == 0) {
			if (probe(1) != 7)
				fail("page 1 does not read 7");
			munmap((void *)(base + 3 * ps), ps);
			/* munmap() returns once the service thread has read the event; the fence
			 * follows in its loop: give it a bounded moment. */
			for (int i = 0; i < 1000 && udsm_page_state(dsm, 1) != UDSM_LOST; i++)
				usleep(10000);
			if (probe(1) != -1)
				fail("the node went on after part of its region was unmapped");
			expect_barrier(UDSM_EPEER);
		} else {
			expect_barrier(UDSM_EPEER);
		}
	} else {
		return 2;
	}
	udsm_close(dsm);
	return 0;
}

int main(int argc, char **argv)
{
	int pipefd[2], rc = 0;
	pid_t pids[2];

	if (argc != 2)
		return 2;
	scenario = argv[1];
	if (pipe(pipefd))
		return 2;
	for (unsigned i = 0; i < 2; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			self = i;
			alarm(BOUND_S);
			_exit(run_node(pipefd));
		}
	}
	close(pipefd[0]);
	close(pipefd[1]);
	for (unsigned i = 0; i < 2; i++) {
		int st;

		if (waitpid(pids[i], &st, 0) < 0)
			return 1;
		if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
			rc = rc ? rc : 77;
		} else if (!WIFEXITED(st) || WEXITSTATUS(st)) {
			fprintf(stderr, "misuse %s: node %u %s %d\n", scenario, i,
				WIFEXITED(st) ? "exited with" : "died of signal",
				WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
			rc = 1;
		}
	}
	if (!rc)
		printf("misuse %s: pass\n", scenario);
	return rc;
}
