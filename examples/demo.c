/* SPDX-License-Identifier: MIT */
/*
 * demo.c - `make demo`: a 3-node udsm cluster on this machine (three processes), moving one
 * page between nodes and printing every node's MSI state of it after each step.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "udsm.h"

#define NODES 3

static struct udsm *d;

static const char *state(int s)
{
	return s == UDSM_MODIFIED ? "MODIFIED" : s == UDSM_SHARED ? "SHARED" : "INVALID";
}

/* Every node prints its state of page 0, in node order, one barrier apart. */
static void show(void)
{
	unsigned self = udsm_node_id(d);

	for (unsigned k = 0; k < NODES; k++) {
		udsm_barrier(d);
		if (k == self) {
			struct udsm_stats st;

			udsm_stats(d, &st);
			printf("   node %u: page 0 %-8s  (faults %llu, pages in %llu, msgs out %llu)\n",
			       self, state(udsm_page_state(d, 0)), (unsigned long long)st.faults,
			       (unsigned long long)st.pages_in, (unsigned long long)st.msgs_sent);
			fflush(stdout);
		}
	}
	udsm_barrier(d);
}

static void step(unsigned who, const char *what, void (*fn)(char *, unsigned))
{
	char *page = udsm_base(d);

	if (udsm_node_id(d) == 0) {
		printf("\n== %s\n", what);
		fflush(stdout);
	}
	udsm_barrier(d);
	if (fn && udsm_node_id(d) == who)
		fn(page, who);
	show();
}

static void do_write(char *page, unsigned who)
{
	snprintf(page, 64, "hello from node %u", who);
}

static void do_read(char *page, unsigned who)
{
	printf("   node %u reads: \"%s\"\n", who, page);
	fflush(stdout);
}

static void on_listen(void *arg, const char *hostport)
{
	int fd = *(int *)arg;

	dprintf(fd, "%s\n", hostport);
	close(fd);
}

static int node(const char *join, int port_fd)
{
	struct udsm_config c = { .join = join, .nodes = NODES, .size = 4 * 4096, .migratory = -1,
				 .on_listen = on_listen, .on_listen_arg = &port_fd };
	int err = udsm_open(&c, &d);

	if (err) {
		fprintf(stderr, "demo: udsm_open: %s\n", udsm_strerror(err));
		return 1;
	}
	if (udsm_node_id(d) == 0)
		printf("3 nodes, region of %zu bytes at %p on every node; page 0 is homed at node %d\n",
		       udsm_size(d), udsm_base(d), udsm_page_home(d, 0));
	step(0, "start: nobody has page 0", NULL);
	step(0, "node 0 writes page 0 (I->M at node 0)", do_write);
	step(1, "node 1 reads page 0 (node 0 M->S, node 1 I->S)", do_read);
	step(2, "node 2 reads page 0 (I->S, served from the home's copy)", do_read);
	step(2, "node 2 writes page 0 (S->M at node 2, nodes 0 and 1 invalidated)", do_write);
	step(1, "node 1 writes page 0 (node 2 M->I, node 1 I->M)", do_write);
	step(0, "node 0 reads page 0 (node 1 M->S, node 0 I->S)", do_read);
	udsm_barrier(d);
	udsm_close(d);
	return 0;
}

int main(void)
{
	int pfd[2], status, rc = 0;
	char addr[128] = "";
	pid_t pids[NODES];
	FILE *f;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (pipe(pfd))
		return 1;
	pids[0] = fork();
	if (pids[0] == 0) {
		close(pfd[0]);
		_exit(node(NULL, pfd[1]));
	}
	close(pfd[1]);
	f = fdopen(pfd[0], "r");
	if (!f || !fgets(addr, sizeof(addr), f)) {
		fprintf(stderr, "demo: node 0 did not start\n");
		return 1;
	}
	fclose(f);
	addr[strcspn(addr, "\n")] = '\0';
	for (int i = 1; i < NODES; i++) {
		pids[i] = fork();
		if (pids[i] == 0)
			_exit(node(addr, -1));
	}
	for (int i = 0; i < NODES; i++) {
		waitpid(pids[i], &status, 0);
		if (!WIFEXITED(status) || WEXITSTATUS(status))
			rc = 1;
	}
	printf("\n%s\n", rc ? "demo FAILED" : "demo done: every step above moved page 0 with MSI");
	return rc;
}
