/* SPDX-License-Identifier: MIT */
/*
 * chaos.c - a soak run of a udsm cluster under injected failures (make chaos).
 *
 *   udsm-chaos --node PATH [--nodes N] [--seconds S] [--seed S] [--pages P]
 *              [--peer-timeout MS]
 *
 * Starts N nodes (udsm-chaos-node) on loopback. They work (see chaos-node.c: every node
 * writes its own word of every page in turn and checks on every read that no word ever goes
 * back), while this driver, at random intervals, picks a working node and
 *   - stops it (SIGSTOP) for a while, shorter or longer than the peer timeout, then continues
 *     it: a short stop must cost nothing, a long one gets it expelled (it then finds itself
 *     fenced and exits 3);
 *   - kills it (SIGKILL);
 *   - makes it leave (udsm_close(): a graceful leave must lose nothing).
 * At least two nodes keep working. At the end every surviving node stops and reports the
 * last value it wrote to each page; every survivor then checks every page it can read
 * against the values of all survivors and leavers. Pages may only be lost (SIGBUS) if a node
 * crashed or was expelled. Prints what it injected and what it verified; exit 0 if all held.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/spawn.h"

#define MAXN 16

enum kstate { K_WORKING, K_STOPPED, K_KILLED, K_LEFT, K_FENCED, K_DONE };

struct kid {
	pid_t pid;
	int in, out;
	enum kstate st;
	double cont_at; /* K_STOPPED: when to SIGCONT */
	bool was_long_stopped;
	char state[16384]; /* its "state ..." line, once it stopped or left */
	bool has_state;
};

static struct kid kids[MAXN];
static unsigned nk, pages = 64;
static int peer_timeout = 2000;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void kill_all(void)
{
	for (unsigned i = 0; i < nk; i++)
		if (kids[i].pid > 0) {
			kill(kids[i].pid, SIGCONT);
			kill(kids[i].pid, SIGKILL);
		}
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "chaos: FAIL: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	kill_all();
	exit(1);
}

static pid_t spawn(struct kid *k, char **argv)
{
	k->pid = spawn_piped(argv, &k->in, &k->out, -1);
	k->st = K_WORKING;
	return k->pid;
}

/* One line from @k within @secs; NULL on timeout or EOF. */
static char *get_line(struct kid *k, char *buf, size_t len, double secs)
{
	double deadline = now() + secs;
	size_t n = 0;

	while (n + 1 < len) {
		struct pollfd p = { .fd = k->out, .events = POLLIN };
		int left = (int)((deadline - now()) * 1000);

		if (left <= 0 || poll(&p, 1, left) <= 0 || read(k->out, buf + n, 1) != 1)
			return NULL;
		if (buf[n] == '\n')
			break;
		n++;
	}
	buf[n] = '\0';
	return buf;
}

static void say(struct kid *k, const char *s)
{
	if (write(k->in, s, strlen(s)) < 0) {
		/* it died: reaped below */
	}
}

/* Reap a node that exited on its own: fenced (3), or a failed check (anything else). */
static void reap(unsigned i, bool block)
{
	struct kid *k = &kids[i];
	int st;

	if (k->pid <= 0 || waitpid(k->pid, &st, block ? 0 : WNOHANG) != k->pid)
		return;
	k->pid = 0;
	if (k->st == K_KILLED || k->st == K_LEFT || k->st == K_DONE)
		return;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 3) {
		printf("chaos: node %u found itself fenced and exited%s\n", i,
		       k->was_long_stopped ? " (it was stopped past the peer timeout)" : "");
		k->st = K_FENCED;
		return;
	}
	/* A check failed, or it died: drain what it printed for the log. */
	char line[512];
	while (get_line(k, line, sizeof(line), 0.2))
		fprintf(stderr, "node %u: %s\n", i, line);
	fprintf(stderr, "chaos: FAIL: node %u %s %d\n", i,
		WIFEXITED(st) ? "exited with" : "died of signal",
		WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
	kill_all();
	exit(1);
}

int main(int argc, char **argv)
{
	const char *node = NULL;
	unsigned nodes = 5, seed = (unsigned)time(NULL), working;
	unsigned n_stop = 0, n_long = 0, n_kill = 0, n_leave = 0, n_fenced = 0;
	double seconds = 30, end, next;
	char line[16384], addr[128], nodes_s[16], pages_s[16], seed_s[16], pt[32];

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--node") && i + 1 < argc)
			node = argv[++i];
		else if (!strcmp(argv[i], "--nodes") && i + 1 < argc)
			nodes = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = atof(argv[++i]);
		else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
			seed = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--pages") && i + 1 < argc)
			pages = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--peer-timeout") && i + 1 < argc)
			peer_timeout = atoi(argv[++i]);
		else {
			fprintf(stderr, "usage: %s --node PATH [--nodes N] [--seconds S] [--seed S] "
				"[--pages P] [--peer-timeout MS]\n", argv[0]);
			return 2;
		}
	}
	if (!node || nodes < 3 || nodes > MAXN || pages < 1 || pages > 1024)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	srand(seed);
	printf("chaos: %u nodes, %u pages, %.0f s, peer timeout %d ms, seed %u (replay with "
	       "--seed %u)\n", nodes, pages, seconds, peer_timeout, seed, seed);
	snprintf(pt, sizeof(pt), "%d", peer_timeout);
	setenv("UDSM_PEER_TIMEOUT_MS", pt, 1);
	snprintf(nodes_s, sizeof(nodes_s), "%u", nodes);
	snprintf(pages_s, sizeof(pages_s), "%u", pages);

	/* Node 0, then the joiners; node ids follow arrival order, so map them. */
	for (unsigned i = 0; i < nodes; i++) {
		char *args[16];
		unsigned na = 0;
		struct kid k = { 0 };

		snprintf(seed_s, sizeof(seed_s), "%u", seed + i);
		args[na++] = (char *)node;
		if (i == 0) {
			args[na++] = "--listen";
			args[na++] = "127.0.0.1:0";
			args[na++] = "--nodes";
			args[na++] = nodes_s;
		} else {
			args[na++] = "--join";
			args[na++] = addr;
		}
		args[na++] = "--pages";
		args[na++] = pages_s;
		args[na++] = "--seed";
		args[na++] = seed_s;
		args[na] = NULL;
		if (spawn(&k, args) < 0)
			die("cannot start %s", node);
		if (i == 0) {
			if (!get_line(&k, line, sizeof(line), 30) || strncmp(line, "listening ", 10))
				die("node 0 did not listen: %s", line);
			snprintf(addr, sizeof(addr), "%.100s", line + 10);
			kids[0] = k;
			nk = 1;
		} else {
			kids[nk++] = k; /* placeholder slot until its id is known */
		}
	}
	/* Every process says "id I": reorder the slots by node id. */
	{
		struct kid byid[MAXN];
		bool got[MAXN] = { false };

		for (unsigned i = 0; i < nk; i++) {
			unsigned id;

			if (!get_line(&kids[i], line, sizeof(line), 40) || sscanf(line, "id %u", &id) != 1 ||
			    id >= nodes || got[id])
				die("a node did not join: %s", line);
			got[id] = true;
			byid[id] = kids[i];
		}
		memcpy(kids, byid, sizeof(kids[0]) * nodes);
	}
	printf("chaos: cluster formed\n");

	end = now() + seconds;
	next = now() + 1.0;
	working = nodes;
	while (now() < end) {
		double t = now();

		for (unsigned i = 0; i < nk; i++) {
			reap(i, false);
			if (kids[i].st == K_FENCED) {
				kids[i].st = K_DONE;
				n_fenced++;
				working--;
			}
			if (kids[i].st == K_STOPPED && t >= kids[i].cont_at) {
				kill(kids[i].pid, SIGCONT);
				kids[i].st = K_WORKING;
				working++;
				printf("chaos: t=%5.1f continue node %u\n", seconds - (end - t), i);
			}
		}
		if (t >= next && working > 2) {
			unsigned cand[MAXN], nc = 0, v, what = (unsigned)rand() % 10;

			for (unsigned i = 0; i < nk; i++)
				if (kids[i].st == K_WORKING)
					cand[nc++] = i;
			v = cand[(unsigned)rand() % nc];
			if (what < 5) {
				/* Half the stops stay well under the timeout, half go well past it. */
				bool lng = rand() % 2;
				double d = lng ? peer_timeout / 1000.0 * 2.5 : peer_timeout / 1000.0 * 0.4;

				kill(kids[v].pid, SIGSTOP);
				kids[v].st = K_STOPPED;
				kids[v].cont_at = t + d;
				kids[v].was_long_stopped |= lng;
				working--;
				n_stop++;
				n_long += lng;
				printf("chaos: t=%5.1f stop node %u for %.1f s (%s the peer timeout)\n",
				       seconds - (end - t), v, d, lng ? "past" : "within");
			} else if (what < 7) {
				kill(kids[v].pid, SIGKILL);
				kids[v].st = K_KILLED;
				working--;
				n_kill++;
				printf("chaos: t=%5.1f kill node %u\n", seconds - (end - t), v);
			} else {
				say(&kids[v], "leave\n");
				if (!get_line(&kids[v], kids[v].state, sizeof(kids[v].state), 30))
					die("node %u did not answer 'leave'", v);
				if (!strcmp(kids[v].state, "fenced")) {
					/* Continued after a long stop, it found itself expelled first. */
					printf("chaos: t=%5.1f node %u, asked to leave, was fenced\n",
					       seconds - (end - t), v);
					reap(v, true); /* K_FENCED: counted by the loop */
					next = t + 0.5;
					continue;
				}
				if (strncmp(kids[v].state, "state ", 6))
					die("node %u did not report its state: %s", v, kids[v].state);
				if (!get_line(&kids[v], line, sizeof(line), 60) || strcmp(line, "left ok"))
					die("a node did not leave cleanly: %s", line);
				kids[v].has_state = true;
				kids[v].st = K_LEFT;
				working--;
				n_leave++;
				printf("chaos: t=%5.1f node %u left\n", seconds - (end - t), v);
			}
			next = t + 0.5 + (rand() % 1500) / 1000.0;
		}
		usleep(20000);
	}

	/* Let stopped nodes go on, give expelled ones time to notice, then stop everyone. */
	for (unsigned i = 0; i < nk; i++)
		if (kids[i].st == K_STOPPED) {
			kill(kids[i].pid, SIGCONT);
			kids[i].st = K_WORKING;
		}
	usleep((useconds_t)(peer_timeout * 1000 * 2));
	for (unsigned i = 0; i < nk; i++) {
		reap(i, false);
		if (kids[i].st == K_FENCED) {
			kids[i].st = K_DONE;
			n_fenced++;
		}
	}
	unsigned survivors = 0, known = 0;
	for (unsigned i = 0; i < nk; i++) {
		if (kids[i].st != K_WORKING)
			continue;
		say(&kids[i], "stop\n");
		if (!get_line(&kids[i], kids[i].state, sizeof(kids[i].state), 60) ||
		    strncmp(kids[i].state, "state ", 6)) {
			reap(i, true);
			if (kids[i].st == K_FENCED) {
				kids[i].st = K_DONE;
				n_fenced++;
				continue;
			}
			die("a survivor did not stop: %s", kids[i].state);
		}
		kids[i].has_state = true;
		survivors++;
	}
	for (unsigned i = 0; i < nk; i++)
		known += kids[i].has_state;
	if (survivors == 0)
		die("%s", "no survivor left to verify");

	unsigned checked = 0, lost_total = 0;
	for (unsigned i = 0; i < nk; i++) {
		unsigned ok, nlost;
		char hdr[32];

		if (kids[i].st != K_WORKING)
			continue;
		snprintf(hdr, sizeof(hdr), "verify\n%u\n", known);
		say(&kids[i], hdr);
		for (unsigned j = 0; j < nk; j++) {
			if (!kids[j].has_state)
				continue;
			/* "state STEPS v..." -> "J v..." */
			char *vals = strchr(kids[j].state + 6, ' ');
			char head[16];

			snprintf(head, sizeof(head), "%u", j);
			say(&kids[i], head);
			say(&kids[i], vals ? vals : "");
			say(&kids[i], "\n");
		}
		if (!get_line(&kids[i], line, sizeof(line), 60) ||
		    sscanf(line, "verified %u %u", &ok, &nlost) != 2)
			die("verification failed: %s", line);
		if (nlost && !n_kill && !n_fenced)
			die("%s", "pages were lost although no node crashed or was expelled");
		checked += ok;
		lost_total += nlost;
		printf("chaos: node %u verified %u pages (%u lost with crashed nodes)\n", i, ok,
		       nlost);
		say(&kids[i], "exit\n");
	}
	for (unsigned i = 0; i < nk; i++) {
		if (kids[i].pid > 0 && (kids[i].st == K_WORKING))
			kids[i].st = K_DONE;
		reap(i, true);
	}
	printf("chaos: injected %u stops (%u past the timeout), %u kills, %u leaves; %u nodes "
	       "fenced themselves; %u survivors verified %u page copies against %u nodes' "
	       "writes (%u unreadable: lost with crashed nodes)\nchaos: PASS\n",
	       n_stop, n_long, n_kill, n_leave, n_fenced, survivors, checked, known, lost_total);
	return 0;
}
