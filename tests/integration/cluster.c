/* SPDX-License-Identifier: MIT */
/*
 * cluster.c - run a udsm-worker workload on N local processes and judge the outcome.
 *
 *   udsm-cluster-test --worker PATH --nodes N [--timeout SEC] [--victim | --victim0]
 *                     [-- worker args]
 *
 * Node 0 listens on 127.0.0.1 port 0 and reports its address through a pipe (--port-fd);
 * the others join it. Every node runs under one deadline: on expiry all are killed and the
 * test fails, so a hung node can never hang the suite. With --victim a node other than node 0
 * (--victim0: node 0, the worker given --victim-node 0) must die by SIGKILL (it kills itself
 * mid-run) and the survivors are released together once all of
 * them have printed "survivor-done" (see worker.c). Exit: 0 pass, 1 fail.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/spawn.h"

#define MAXN 64

struct child {
	pid_t pid;
	int in, out; /* our ends of its stdin and stdout */
	int status;
	bool done;
	char line[256];
	size_t llen;
};

static struct child kids[MAXN];
static unsigned nkids;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void kill_all(void)
{
	for (unsigned i = 0; i < nkids; i++)
		if (!kids[i].done)
			kill(kids[i].pid, SIGKILL);
}

static pid_t spawn(struct child *c, char **argv, int port_fd)
{
	c->pid = spawn_piped(argv, &c->in, &c->out, port_fd);
	return c->pid;
}

static int read_line(int fd, char *buf, size_t len, double deadline)
{
	size_t n = 0;

	while (n + 1 < len) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int left = (int)((deadline - now()) * 1000);

		if (left <= 0 || poll(&p, 1, left) <= 0)
			return -ETIMEDOUT;
		if (read(fd, buf + n, 1) != 1)
			return -EIO;
		if (buf[n] == '\n')
			break;
		n++;
	}
	buf[n] = '\0';
	return 0;
}

int main(int argc, char **argv)
{
	const char *worker = NULL;
	unsigned nodes = 2, survivors_done = 0;
	double timeout = 60, deadline;
	bool victim = false, victim0 = false, released = false, ok = true;
	char *args[64], addr[128], nodes_s[16];
	int i, na = 0, pfd[2];

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--worker") && i + 1 < argc)
			worker = argv[++i];
		else if (!strcmp(argv[i], "--nodes") && i + 1 < argc)
			nodes = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--timeout") && i + 1 < argc)
			timeout = atof(argv[++i]);
		else if (!strcmp(argv[i], "--victim"))
			victim = true;
		else if (!strcmp(argv[i], "--victim0"))
			victim = victim0 = true;
		else if (!strcmp(argv[i], "--")) {
			i++;
			break;
		} else {
			fprintf(stderr, "usage: %s --worker PATH --nodes N [--timeout S] [--victim | "
				"--victim0] -- ARGS\n", argv[0]);
			return 2;
		}
	}
	if (!worker || nodes < 2 || nodes > MAXN || argc - i > 40)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	deadline = now() + timeout;
	snprintf(nodes_s, sizeof(nodes_s), "%u", nodes);

	/* node 0 */
	if (pipe(pfd))
		return 2;
	args[na++] = (char *)worker;
	args[na++] = "--listen";
	args[na++] = "127.0.0.1:0";
	args[na++] = "--nodes";
	args[na++] = nodes_s;
	args[na++] = "--port-fd";
	args[na++] = "3";
	for (int k = i; k < argc; k++)
		args[na++] = argv[k];
	args[na] = NULL;
	if (spawn(&kids[0], args, pfd[1]) < 0)
		return 2;
	nkids = 1;
	close(pfd[1]);
	if (read_line(pfd[0], addr, sizeof(addr), deadline)) {
		fprintf(stderr, "cluster: node 0 did not report its address\n");
		kill_all();
		return 1;
	}
	close(pfd[0]);

	/* joiners */
	na = 0;
	args[na++] = (char *)worker;
	args[na++] = "--join";
	args[na++] = addr;
	for (int k = i; k < argc; k++)
		args[na++] = argv[k];
	args[na] = NULL;
	for (unsigned n = 1; n < nodes; n++) {
		if (spawn(&kids[n], args, -1) < 0) {
			kill_all();
			return 2;
		}
		nkids++;
	}
	if (!victim)
		for (unsigned n = 0; n < nodes; n++)
			close(kids[n].in);

	/* Relay output, release survivors, reap, all under the deadline. */
	for (unsigned left = nodes; left;) {
		struct pollfd p[MAXN];
		unsigned np = 0, idx[MAXN];

		for (unsigned n = 0; n < nodes; n++)
			if (kids[n].out >= 0) {
				p[np] = (struct pollfd){ .fd = kids[n].out, .events = POLLIN };
				idx[np++] = n;
			}
		if (now() > deadline) {
			fprintf(stderr, "cluster: TIMEOUT after %.0f s; killing every node\n", timeout);
			kill_all();
			ok = false;
			break;
		}
		if (np)
			poll(p, np, 100);
		else
			usleep(10000);
		for (unsigned k = 0; k < np; k++) {
			struct child *c = &kids[idx[k]];
			char ch;

			if (!(p[k].revents & (POLLIN | POLLHUP)))
				continue;
			if (read(c->out, &ch, 1) != 1) {
				close(c->out);
				c->out = -1;
				continue;
			}
			if (ch != '\n' && c->llen + 1 < sizeof(c->line)) {
				c->line[c->llen++] = ch;
				continue;
			}
			c->line[c->llen] = '\0';
			c->llen = 0;
			fprintf(stderr, "proc %u: %s\n", idx[k], c->line);
			if (!strcmp(c->line, "survivor-done"))
				survivors_done++;
		}
		if (victim && !released && survivors_done == nodes - 1) {
			for (unsigned n = 0; n < nodes; n++)
				close(kids[n].in);
			released = true;
		}
		for (unsigned n = 0; n < nodes; n++) {
			if (kids[n].done)
				continue;
			if (waitpid(kids[n].pid, &kids[n].status, WNOHANG) == kids[n].pid) {
				kids[n].done = true;
				left--;
			}
		}
	}
	/* Node ids follow the order joiners reach node 0, not our spawn order: with --victim
	 * exactly one process must have died by SIGKILL, and it is node 0's only with --victim0
	 * (the first process spawned is node 0). */
	unsigned killed = 0;
	for (unsigned n = 0; n < nodes; n++) {
		int st = kids[n].status;
		bool want_kill = victim && (victim0 ? n == 0 : n > 0) && kids[n].done && WIFSIGNALED(st) &&
				 WTERMSIG(st) == SIGKILL && !killed++;

		if (!kids[n].done) {
			waitpid(kids[n].pid, &st, 0);
			ok = false;
			continue;
		}
		if (want_kill) {
			continue;
		} else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			if (WIFSIGNALED(st))
				fprintf(stderr, "cluster: proc %u died by signal %d\n", n, WTERMSIG(st));
			else
				fprintf(stderr, "cluster: proc %u exited with %d\n", n, WEXITSTATUS(st));
			ok = false;
		}
	}
	if (victim && killed != 1) {
		fprintf(stderr, "cluster: %u processes died by SIGKILL, want exactly 1\n", killed);
		ok = false;
	}
	fprintf(stderr, "cluster: %s (%u nodes, %.2f s)\n", ok ? "PASS" : "FAIL", nodes,
		timeout - (deadline - now()));
	return ok ? 0 : 1;
}
