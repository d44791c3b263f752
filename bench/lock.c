/* SPDX-License-Identifier: MIT */
/*
 * lock.c - udsm-lock-bench: what an address-named lock costs, next to the raw TCP round trip
 * measured in the same run between the same two processes.
 *
 *   udsm-lock-bench [--iters N] [--cs-us US] [--spin-us US]
 *
 * Forks two node processes (node 0 listens on 127.0.0.1, node 1 joins). Node 0 times:
 *  - lock+unlock, home here: a lock whose page node 0 homes (no message at all);
 *  - lock+unlock, home remote: a lock homed at node 1 (LOCK_REQ/LOCK_GRANT, one round trip;
 *    the LOCK_REL of the unlock goes out without a wait);
 *  - contended hand-over: nodes 0 and 1 take the same lock (homed at node 0) in a loop,
 *    holding it --cs-us (default 300) each time so that the other's request is always
 *    queued: FIFO then alternates them. Node 0's wait is two hand-overs (node 1's LOCK_REL
 *    reaching the home, node 0's LOCK_GRANT reaching node 1 - one message each) plus node
 *    1's turn; reported as (wait - cs) / 2 per hand-over, with how many acquisitions did
 *    wait (all but the first few when the nodes alternate);
 *  - TCP 16 B round trip: 16 bytes each way between the two node processes, the floor of
 *    any remote operation (bench/floor.c, polling like the service thread).
 * Prints p50/p99/mean in microseconds and the machine's load (this is a small shared machine;
 * figures are honest for the moment they were taken, not tuned).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

static unsigned iters = 2000;
static int spin_us = 0; /* 0: udsm's default */
static unsigned cs_us = 300;

static void loadavg(const char *when)
{
	char buf[128] = "?";
	FILE *f = fopen("/proc/loadavg", "r");

	if (f) {
		if (!fgets(buf, sizeof(buf), f))
			strcpy(buf, "?\n");
		fclose(f);
	}
	printf("load average %s: %s", when, buf);
}

static void report(const char *what, uint64_t *ns, size_t n)
{
	struct result r;

	result_init(&r, what, 2, spin_us);
	summarize(&r, ns, n);
	printf("  %-34s n=%-6zu p50 %8.1f us  p99 %8.1f us  mean %8.1f us\n", what, n, r.p50,
	       r.p99, r.mean);
}

static void on_listen(void *arg, const char *hostport)
{
	int fd = *(int *)arg;

	dprintf(fd, "%s\n", hostport);
	close(fd);
}

static void check(int err, const char *what)
{
	if (err)
		die("%s: %s", what, udsm_strerror(err));
}

/* Time @n uncontended lock+unlock pairs of the lock at @addr into @ns. */
static void lock_unlock(struct udsm *d, void *addr, uint64_t *ns, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint64_t t0 = now_ns();

		check(udsm_lock(d, addr), "lock");
		check(udsm_unlock(d, addr), "unlock");
		ns[i] = now_ns() - t0;
	}
}

static int node(unsigned id, int port_fd, const char *join)
{
	struct udsm_config cfg = {
		.nodes = 2, .size = 16 * 4096, .spin_us = spin_us, .timeout_ms = 20000,
	};
	struct udsm *d;
	uint64_t *ns = xcalloc(iters, sizeof(*ns));
	uint8_t *base;
	size_t ps;
	char *addr_slot;

	if (id == 0) {
		cfg.on_listen = on_listen;
		cfg.on_listen_arg = &port_fd;
	} else {
		cfg.join = join;
	}
	check(udsm_open(&cfg, &d), "udsm_open");
	base = udsm_base(d);
	ps = udsm_page_size(d);
	/* The home layout decides where each lock lives: find a page of each node's. */
	size_t lp = SIZE_MAX, rp = SIZE_MAX, np = udsm_size(d) / ps;
	for (size_t p = 0; p < np && (lp == SIZE_MAX || rp == SIZE_MAX); p++) {
		int h = udsm_page_home(d, p);
		if (h == 0 && lp == SIZE_MAX)
			lp = p;
		else if (h == 1 && rp == SIZE_MAX)
			rp = p;
	}
	if (lp == SIZE_MAX || rp == SIZE_MAX || (lp > rp ? lp : rp) + 1 >= np)
		die("no page homed at node 0 and at node 1 with a page above them: region too small");
	void *local = base + lp * ps + 64, *remote = base + rp * ps + 64;
	void *shared = base + lp * ps + 128;
	addr_slot = (char *)base + ((lp > rp ? lp : rp) + 1) * ps;

	if (id == 0) {
		for (unsigned i = 0; i < 64; i++) { /* warm-up */
			check(udsm_lock(d, local), "lock");
			check(udsm_unlock(d, local), "unlock");
			check(udsm_lock(d, remote), "lock");
			check(udsm_unlock(d, remote), "unlock");
		}
		lock_unlock(d, local, ns, iters);
		report("lock+unlock, home here", ns, iters);
		lock_unlock(d, remote, ns, iters);
		report("lock+unlock, home remote", ns, iters);
	}
	check(udsm_barrier(d), "barrier");

	/*
	 * Contended: both nodes take the same lock back to back, holding it cs_us each time
	 * (a busy wait, no region access), long enough for the other node's request to be
	 * queued before the release: FIFO then alternates the nodes, and node 0's wait is
	 * hand-over + node 1's turn + hand-over.
	 */
	uint64_t t0 = now_ns(), waited = 0;
	for (unsigned i = 0; i < iters; i++) {
		uint64_t t1 = now_ns();

		check(udsm_lock(d, shared), "lock");
		ns[i] = now_ns() - t1;
		waited += ns[i] > cs_us * 500u; /* it waited for the other node's turn */
		/* (On a loaded machine a node may not get the CPU in time to queue its next
		 * request while the other holds the lock; then the other takes it again.) */
		while (now_ns() - t1 - ns[i] < cs_us * 1000u)
			;
		check(udsm_unlock(d, shared), "unlock");
	}
	uint64_t wall = now_ns() - t0;
	check(udsm_barrier(d), "barrier");
	if (id == 0) {
		printf("  contended (critical section %u us, %llu of %u acquisitions waited for "
		       "node 1's turn):\n", cs_us, (unsigned long long)waited, iters);
		/* Only the acquisitions that followed a turn of node 1 measure hand-overs. */
		size_t k = 0;
		for (unsigned i = 0; i < iters; i++)
			if (ns[i] > cs_us * 500u)
				ns[k++] = ns[i] > cs_us * 1000u ? (ns[i] - cs_us * 1000u) / 2 : 0;
		if (k)
			report("hand-over ((wait - cs) / 2)", ns, k);
		printf("  %-34s %8.1f us per acquisition over both nodes, of which %u us held\n",
		       "wall time", (double)wall / 1e3 / (2.0 * iters), cs_us);
	}

	/* The floor: node 1 answers, node 0 asks. */
	struct floor_srv *srv = NULL;
	if (id == 1) {
		char a[64];

		if (floor_srv_start(&srv, "127.0.0.1", spin_us ? spin_us : 50, -1, a, sizeof(a)))
			die("floor server");
		snprintf(addr_slot, 64, "%s", a);
	}
	check(udsm_barrier(d), "barrier");
	if (id == 0) {
		char a[64];
		uint64_t sleeps, same;

		snprintf(a, sizeof(a), "%s", addr_slot);
		if (floor_tcp(a, spin_us ? spin_us : 50, -1, 16, iters, ns, &sleeps, &same))
			die("floor_tcp");
		report("raw TCP round trip, 16 B", ns, iters);
		floor_srv_stop(a);
	}
	if (id == 1 && floor_srv_join(srv))
		warnx_("floor server ended with an error");
	check(udsm_barrier(d), "barrier");

	struct udsm_stats2 st;
	if (id == 0 && udsm_stats2(d, &st, sizeof(st)) > 0 && st.lat[UDSM_LAT_LOCK].count)
		printf("  (udsm_stats2: %llu lock acquisitions on node 0, mean %.1f us)\n",
		       (unsigned long long)st.lat[UDSM_LAT_LOCK].count,
		       (double)st.lat[UDSM_LAT_LOCK].sum_ns / 1e3 /
			       (double)st.lat[UDSM_LAT_LOCK].count);
	udsm_close(d);
	free(ns);
	fflush(stdout); /* the child ends with _exit() */
	return 0;
}

int main(int argc, char **argv)
{
	int pfd[2], st0 = 0, st1 = 0;
	char join[64];
	pid_t p0, p1;
	ssize_t n;

	for (int i = 1; i < argc; i++) {
		if (i + 1 < argc && !strcmp(argv[i], "--iters"))
			iters = (unsigned)atoi(argv[++i]);
		else if (i + 1 < argc && !strcmp(argv[i], "--cs-us"))
			cs_us = (unsigned)atoi(argv[++i]);
		else if (i + 1 < argc && !strcmp(argv[i], "--spin-us"))
			spin_us = atoi(argv[++i]);
		else {
			fprintf(stderr, "usage: udsm-lock-bench [--iters N] [--cs-us US] [--spin-us US]\n");
			return 2;
		}
	}
	if (!iters)
		iters = 1;
	printf("udsm-lock-bench: 2 nodes on this host, %u iterations, spin_us %d%s, %ld CPUs\n",
	       iters, spin_us, spin_us ? "" : " (default)", sysconf(_SC_NPROCESSORS_ONLN));
	loadavg("before");
	fflush(stdout);
	if (pipe(pfd))
		die("pipe");
	p0 = fork();
	if (p0 == 0) {
		close(pfd[0]);
		_exit(node(0, pfd[1], NULL));
	}
	close(pfd[1]);
	n = read(pfd[0], join, sizeof(join) - 1);
	close(pfd[0]);
	if (n <= 0)
		die("node 0 did not report its address");
	join[n] = '\0';
	join[strcspn(join, "\n")] = '\0';
	p1 = fork();
	if (p1 == 0)
		_exit(node(1, -1, join));
	waitpid(p0, &st0, 0);
	waitpid(p1, &st1, 0);
	loadavg("after");
	if (!WIFEXITED(st0) || WEXITSTATUS(st0) || !WIFEXITED(st1) || WEXITSTATUS(st1)) {
		fprintf(stderr, "udsm-lock-bench: a node failed\n");
		return 1;
	}
	return 0;
}
