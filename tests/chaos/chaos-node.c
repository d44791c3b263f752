/* SPDX-License-Identifier: MIT */
/*
 * chaos-node.c - one node of the chaos run (chaos.c drives it through stdin/stdout).
 *
 *   udsm-chaos-node (--listen H:P --nodes N | --join H:P) [--pages P] [--seed S]
 *
 * Page p holds one 64-bit word per node. Step k of node i writes the word i of page k % P
 * with k / P + 1: a node's words only grow, so every node checks, on every read, that no
 * word it sees ever goes backwards (a read never returns an older value than one already
 * seen: coherence), and that its own word reads back what it wrote.
 *
 * Commands on stdin, answers on stdout (one line each):
 *   stop      stop working; answer "state STEPS v0 v1 ... vP-1": the last value this node
 *             wrote to each page (-1 where the write raised SIGBUS: the page was lost)
 *   leave     stop working, print the state line, udsm_close() (a graceful leave), "left"
 *   verify    followed by N lines "NODE v0 ... vP-1" (the state lines of the nodes whose
 *             words are known; others are not checked): every page this node can read must
 *             hold exactly those values; answers "verified PAGES LOST" or "FAIL ..."
 *   exit      udsm_close() and exit 0
 * Other output: "listening H:P" (node 0), "id I" once joined, "fenced" (this node found
 * itself cut off: SIGBUS, and every page LOST) then exit 3, "FAIL ..." then exit 1.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "udsm.h"

#define MAXP 1024

static struct udsm *dsm;
static unsigned self, nodes, npages = 64;
static size_t ps;
static volatile uint64_t *base;
static sigjmp_buf jb;
static volatile sig_atomic_t guarded;
static int64_t last_written[MAXP];
static uint64_t seen[MAXP][UDSM_MAX_NODES];
static uint64_t steps;

static void on_sigbus(int sig)
{
	(void)sig;
	if (guarded)
		siglongjmp(jb, 1);
	_exit(4);
}

static volatile uint64_t *word(unsigned p, unsigned n)
{
	return (volatile uint64_t *)((volatile uint8_t *)base + (size_t)p * ps) + n;
}

static void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	va_list ap;

	printf("FAIL node %u: ", self);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	exit(1);
}

/* A page access raised SIGBUS: lost with a node (its home, or its only holder), or this
 * node is fenced - then every page is LOST here. */
static void lost(unsigned p)
{
	unsigned n = 0;

	for (unsigned q = 0; q < npages; q++)
		n += udsm_page_state(dsm, q) == UDSM_LOST;
	if (n == npages) {
		printf("fenced\n");
		fflush(stdout);
		exit(3);
	}
	last_written[p] = -1;
}

static bool write_step(void)
{
	unsigned p = (unsigned)(steps % npages);
	uint64_t v = steps / npages + 1;

	steps++;
	if (last_written[p] < 0)
		return true; /* lost earlier: stays lost */
	if (sigsetjmp(jb, 1)) {
		guarded = 0;
		lost(p);
		return true;
	}
	guarded = 1;
	*word(p, self) = v;
	if (*word(p, self) != v)
		fail("page %u: own word reads %llu right after writing %llu", p,
		     (unsigned long long)*word(p, self), (unsigned long long)v);
	guarded = 0;
	last_written[p] = (int64_t)v;
	return true;
}

/* Read every word of a page; none may be older than what this node saw before. */
static void read_check(unsigned p)
{
	uint64_t vals[UDSM_MAX_NODES];

	if (sigsetjmp(jb, 1)) {
		guarded = 0;
		lost(p);
		return;
	}
	guarded = 1;
	for (unsigned n = 0; n < nodes; n++)
		vals[n] = *word(p, n);
	guarded = 0;
	for (unsigned n = 0; n < nodes; n++) {
		if (vals[n] < seen[p][n])
			fail("page %u word %u went back from %llu to %llu", p, n,
			     (unsigned long long)seen[p][n], (unsigned long long)vals[n]);
		seen[p][n] = vals[n];
	}
	if (last_written[p] > 0 && vals[self] != (uint64_t)last_written[p])
		fail("page %u: own word is %llu, last written %lld", p,
		     (unsigned long long)vals[self], (long long)last_written[p]);
}

static void print_state(void)
{
	printf("state %llu", (unsigned long long)steps);
	for (unsigned p = 0; p < npages; p++)
		printf(" %lld", (long long)last_written[p]);
	printf("\n");
	fflush(stdout);
}

static char *read_line(char *buf, size_t len)
{
	if (!fgets(buf, (int)len, stdin))
		return NULL;
	buf[strcspn(buf, "\n")] = '\0';
	return buf;
}

static void verify(void)
{
	static int64_t want[UDSM_MAX_NODES][MAXP];
	static bool known[UDSM_MAX_NODES];
	static char line[MAXP * 24];
	volatile unsigned n, ok = 0, nlost = 0; /* live across siglongjmp */

	if (!read_line(line, sizeof(line)))
		fail("verify: no count");
	n = (unsigned)atoi(line);
	for (unsigned i = 0; i < n; i++) {
		char *s = read_line(line, sizeof(line)), *end;
		unsigned id;

		if (!s)
			fail("verify: short input");
		id = (unsigned)strtoul(s, &end, 10);
		if (id >= nodes)
			fail("verify: bad node %u", id);
		known[id] = true;
		for (unsigned p = 0; p < npages; p++)
			want[id][p] = strtoll(end, &end, 10);
	}
	for (unsigned p = 0; p < npages; p++) {
		uint64_t vals[UDSM_MAX_NODES];

		if (sigsetjmp(jb, 1)) {
			guarded = 0;
			nlost++;
			continue;
		}
		guarded = 1;
		for (unsigned k = 0; k < nodes; k++)
			vals[k] = *word(p, k);
		guarded = 0;
		for (unsigned k = 0; k < nodes; k++) {
			if (!known[k] || want[k][p] < 0)
				continue;
			if (vals[k] != (uint64_t)want[k][p])
				fail("verify: page %u word %u is %llu, node %u last wrote %lld", p, k,
				     (unsigned long long)vals[k], k, (long long)want[k][p]);
		}
		ok++;
	}
	printf("verified %u %u\n", ok, nlost);
	fflush(stdout);
}

static void on_listen(void *arg, const char *hostport)
{
	(void)arg;
	printf("listening %s\n", hostport);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct udsm_config cfg = { .timeout_ms = 30000 };
	unsigned seed = 1;
	char line[64];
	int err;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--listen") && i + 1 < argc)
			cfg.listen = argv[++i];
		else if (!strcmp(argv[i], "--join") && i + 1 < argc)
			cfg.join = argv[++i];
		else if (!strcmp(argv[i], "--nodes") && i + 1 < argc)
			cfg.nodes = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--pages") && i + 1 < argc)
			npages = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
			seed = (unsigned)atoi(argv[++i]);
		else
			return 2;
	}
	if (!npages || npages > MAXP)
		return 2;
	signal(SIGBUS, on_sigbus);
	setvbuf(stdin, NULL, _IONBF, 0); /* poll() on fd 0 must see every unread line */
	cfg.size = (size_t)npages * (size_t)sysconf(_SC_PAGESIZE);
	cfg.on_listen = on_listen;
	if ((err = udsm_open(&cfg, &dsm))) {
		printf("FAIL open: %s\n", udsm_strerror(err));
		return 2;
	}
	self = udsm_node_id(dsm);
	nodes = udsm_nodes(dsm);
	ps = udsm_page_size(dsm);
	base = udsm_base(dsm);
	srand(seed * 7919u + self);
	printf("id %u\n", self);
	fflush(stdout);

	for (bool working = true;;) {
		struct pollfd pf = { .fd = 0, .events = POLLIN };

		if (working) {
			write_step();
			read_check((unsigned)rand() % npages);
		}
		if (poll(&pf, 1, working ? 0 : -1) <= 0)
			continue;
		if (!read_line(line, sizeof(line)))
			break; /* the driver is gone */
		if (!strcmp(line, "stop")) {
			working = false;
			print_state();
		} else if (!strcmp(line, "leave")) {
			print_state();
			err = udsm_close(dsm);
			printf("left %s\n", err ? udsm_strerror(err) : "ok");
			fflush(stdout);
			return err ? 1 : 0;
		} else if (!strcmp(line, "verify")) {
			verify();
		} else if (!strcmp(line, "exit")) {
			break;
		}
	}
	udsm_close(dsm);
	return 0;
}
