/* SPDX-License-Identifier: MIT */
/*
 * rank-check - a udsm program started by a launcher (udsm-run, mpirun): it opens the cluster
 * from the environment alone, checks that its node id is its launcher's rank, writes its rank
 * all over its own page, and after a barrier checks every other rank's page.
 *
 *   rank-check [--timeout MS] [check | fail R CODE | sleep]
 *     check      the above (default); exit 0 when every page is right
 *     fail R C   rank R exits with status C right after udsm_open(); the others enter a
 *                barrier and, whatever it returns (UDSM_EPEER once rank R is gone), wait
 *                for the launcher to stop them. They touch no page: one homed on the dead
 *                rank would raise SIGBUS, a failure of their own that could race the
 *                launcher's SIGTERM and change the status it reports
 *     sleep      open, then sleep until a signal ends the process
 * The expected rank comes from UDSM_RANK, else OMPI_COMM_WORLD_RANK, else PMI_RANK, else
 * SLURM_PROCID; with none (a joiner given only UDSM_JOIN) any id is right.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <udsm.h>

static long launcher_rank(void)
{
	static const char *vars[] = { "UDSM_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK",
				      "SLURM_PROCID" };

	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		if (getenv(vars[i]))
			return atol(getenv(vars[i]));
	return -1;
}

static uint64_t word(unsigned rank, size_t i)
{
	return ((uint64_t)0x5eed0000 + rank) << 32 | i;
}

int main(int argc, char **argv)
{
	struct udsm_config cfg = { 0 };
	long want = launcher_rank();
	const char *mode = "check";
	long fail_rank = -1, fail_code = 0;
	struct udsm *d;
	int argi = 1, err;

	if (argi + 1 < argc && !strcmp(argv[argi], "--timeout")) {
		cfg.timeout_ms = atoi(argv[argi + 1]);
		argi += 2;
	}
	if (argi < argc)
		mode = argv[argi];
	if (!strcmp(mode, "fail")) {
		if (argi + 2 >= argc)
			return 2;
		fail_rank = atol(argv[argi + 1]);
		fail_code = atol(argv[argi + 2]);
	}
	/* Every field zero but the timeout: the environment says the rest. */
	if ((err = udsm_open(&cfg, &d))) {
		fprintf(stderr, "rank %ld: udsm_open: %s\n", want, udsm_strerror(err));
		return 1;
	}
	unsigned self = udsm_node_id(d), n = udsm_nodes(d);
	size_t ps = udsm_page_size(d), words = ps / sizeof(uint64_t);

	if (want >= 0 && (long)self != want) {
		fprintf(stderr, "rank %ld: node id %u is not the launcher's rank\n", want, self);
		return 1;
	}
	if (udsm_size(d) < n * ps) {
		fprintf(stderr, "rank %u: region of %zu bytes too small\n", self, udsm_size(d));
		return 1;
	}
	if (!strcmp(mode, "sleep")) {
		printf("rank %u sleeping\n", self);
		fflush(stdout);
		for (;;)
			pause();
	}
	if ((long)self == fail_rank) {
		printf("rank %u failing with %ld\n", self, fail_code);
		fflush(stdout);
		_exit((int)fail_code);
	}
	if (fail_rank >= 0) {
		err = udsm_barrier(d);
		printf("rank %u: barrier: %s; waiting to be stopped\n", self, udsm_strerror(err));
		fflush(stdout);
		for (;;)
			pause();
	}
	uint64_t *mine = (uint64_t *)((char *)udsm_base(d) + self * ps);

	for (size_t i = 0; i < words; i++)
		mine[i] = word(self, i);
	if ((err = udsm_barrier(d))) {
		fprintf(stderr, "rank %u: barrier: %s\n", self, udsm_strerror(err));
		return 1;
	}
	for (unsigned r = 0; r < n; r++) {
		const uint64_t *pg = (const uint64_t *)((char *)udsm_base(d) + r * ps);

		for (size_t i = 0; i < words; i++)
			if (pg[i] != word(r, i)) {
				fprintf(stderr, "rank %u: page of rank %u word %zu is %#llx\n",
					self, r, i, (unsigned long long)pg[i]);
				return 1;
			}
	}
	if ((err = udsm_barrier(d))) {
		fprintf(stderr, "rank %u: barrier: %s\n", self, udsm_strerror(err));
		return 1;
	}
	printf("rank %u of %u ok: %s, %u pages verified\n", self, n,
	       want >= 0 ? "node id is the rank" : "id given in order of arrival", n);
	udsm_close(d);
	return 0;
}
