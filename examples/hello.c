/* SPDX-License-Identifier: MIT */
/* hello.c - the README's example: two processes share a counter. Run ./hello, then ./hello join. */
#include <stdio.h>
#include <udsm.h>

int main(int argc, char **argv)
{
	struct udsm_config cfg = { .listen = "127.0.0.1:7000", .nodes = 2, .size = 1 << 20 };
	struct udsm *d;

	if (argc > 1)                  /* a second process: ./hello join */
		cfg.join = "127.0.0.1:7000", cfg.listen = NULL;
	int err = udsm_open(&cfg, &d); /* returns when both nodes are connected */
	if (err)
		return fprintf(stderr, "udsm_open: %s\n", udsm_strerror(err)), 1;
	long *counter = udsm_base(d);  /* same address in both processes */
	if (udsm_node_id(d) == 0)
		*counter = 41;         /* a plain store: page 0 becomes Modified here */
	udsm_barrier(d);
	if (udsm_node_id(d) == 1)
		printf("node 1 reads %ld\n", ++*counter); /* faults, fetches, upgrades */
	udsm_barrier(d);
	return udsm_close(d);
}
