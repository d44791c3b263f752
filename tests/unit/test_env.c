/* SPDX-License-Identifier: MIT */
/*
 * test_env.c - the launch environment (src/os/env.c): size suffixes, Slurm node lists, the
 * Slurm port, the precedence of udsm-run's, Open MPI's, MPICH's and Slurm's variables, and the
 * errors for an incomplete or inconsistent environment. The variables come from a table, not
 * from the process environment.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "os/env.h"
#include "udsm.h"

static const char *const *vars; /* NULL-terminated "NAME=value" list */

static const char *table_get(const char *name)
{
	size_t n = strlen(name);

	for (const char *const *v = vars; v && *v; v++)
		if (!strncmp(*v, name, n) && (*v)[n] == '=')
			return *v + n + 1;
	return NULL;
}

static int read_env(struct env_launch *e, const char *const *table)
{
	vars = table;
	return env_launch_read(e, table_get);
}

static void quiet(void *arg, int level, const char *msg)
{
	(void)arg;
	(void)level;
	(void)msg;
}

static void test_sizes(void **state)
{
	size_t s;

	(void)state;
	assert_int_equal(env_parse_size("4096", &s), 0);
	assert_int_equal(s, 4096);
	assert_int_equal(env_parse_size("64K", &s), 0);
	assert_int_equal(s, 64 << 10);
	assert_int_equal(env_parse_size("64k", &s), 0);
	assert_int_equal(s, 64 << 10);
	assert_int_equal(env_parse_size("16M", &s), 0);
	assert_int_equal(s, 16 << 20);
	assert_int_equal(env_parse_size("16MB", &s), 0);
	assert_int_equal(s, 16 << 20);
	assert_int_equal(env_parse_size("2GiB", &s), 0);
	assert_int_equal(s, (size_t)2 << 30);
	assert_int_equal(env_parse_size("1T", &s), 0);
	assert_int_equal(s, (size_t)1 << 40);
	static const char *bad[] = { "", "0", "0K", "K", "-1", "1.5M", "12Q", "1 M", "1MiBx",
				     "1Mi", " 1", "99999999999999999999", "17179869184G" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		s = 77;
		assert_int_equal(env_parse_size(bad[i], &s), -EINVAL);
		assert_int_equal(s, 77);
	}
	assert_int_equal(env_parse_size(NULL, &s), -EINVAL);
}

static void test_nodelists(void **state)
{
	char h[64];

	(void)state;
	assert_int_equal(env_nodelist_first("node7", h, sizeof(h)), 0);
	assert_string_equal(h, "node7");
	assert_int_equal(env_nodelist_first("alpha,beta", h, sizeof(h)), 0);
	assert_string_equal(h, "alpha");
	assert_int_equal(env_nodelist_first("cn[1-3,5]", h, sizeof(h)), 0);
	assert_string_equal(h, "cn1");
	assert_int_equal(env_nodelist_first("cn[5]", h, sizeof(h)), 0);
	assert_string_equal(h, "cn5");
	assert_int_equal(env_nodelist_first("cn[12,14-15]", h, sizeof(h)), 0);
	assert_string_equal(h, "cn12");
	assert_int_equal(env_nodelist_first("n[007-009]-ib", h, sizeof(h)), 0);
	assert_string_equal(h, "n007-ib");
	assert_int_equal(env_nodelist_first("a[1-2],b[4]", h, sizeof(h)), 0);
	assert_string_equal(h, "a1");
	assert_int_equal(env_nodelist_first("login,cn[1-4]", h, sizeof(h)), 0);
	assert_string_equal(h, "login");
	static const char *bad[] = { "", ",a", "[1-2]", "cn[", "cn[]", "cn[x-2]", "cn[1-2",
				     "r[1-2]n[1-4]", "cn[1;2]" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(env_nodelist_first(bad[i], h, sizeof(h)), -EINVAL);
	assert_int_equal(env_nodelist_first("averyveryverylonghostname", h, 8), -ENAMETOOLONG);
	assert_int_equal(env_nodelist_first("cn[1000000-2]", h, 6), -ENAMETOOLONG);
}

static void test_slurm_port(void **state)
{
	(void)state;
	assert_int_equal(env_slurm_port(0, 0), 20000);
	assert_int_equal(env_slurm_port(1234, 2), 20000 + (1234 * 16 + 2) % 12000);
	/* Steps of one job differ; the range holds for any ids (the batch step is 2^32 - 2). */
	assert_int_not_equal(env_slurm_port(99, 0), env_slurm_port(99, 1));
	for (uint64_t j = 0; j < 100000; j += 997) {
		unsigned p = env_slurm_port(j * 7919, 4294967294u);

		assert_true(p >= 20000 && p < 32000); /* below the ephemeral ports */
	}
}

static void test_nothing(void **state)
{
	static const char *const none[] = { "HOME=/root", NULL };
	struct env_launch e;

	(void)state;
	assert_int_equal(read_env(&e, none), 0);
	assert_false(e.has_rank);
	assert_int_equal(e.nodes, 0);
	assert_int_equal(e.size, 0);
	assert_string_equal(e.join, "");
}

static void test_udsm_vars(void **state)
{
	static const char *const t[] = { "UDSM_RANK=3", "UDSM_NODES=4", "UDSM_JOIN=10.0.0.1:7000",
					 "UDSM_SIZE=8M", NULL };
	static const char *const nodes_only[] = { "UDSM_NODES=5", NULL };
	static const char *const empty[] = { "UDSM_RANK=", "UDSM_NODES=", NULL };
	struct env_launch e;

	(void)state;
	assert_int_equal(read_env(&e, t), 0);
	assert_true(e.has_rank);
	assert_int_equal(e.rank, 3);
	assert_int_equal(e.nodes, 4);
	assert_string_equal(e.rank_var, "UDSM_RANK");
	assert_string_equal(e.join, "10.0.0.1:7000");
	assert_int_equal(e.size, 8 << 20);
	assert_int_equal(read_env(&e, nodes_only), 0);
	assert_false(e.has_rank);
	assert_int_equal(e.nodes, 5);
	assert_int_equal(read_env(&e, empty), 0); /* empty is unset */
	assert_false(e.has_rank);
}

static void test_precedence(void **state)
{
	static const char *const all[] = {
		"SLURM_PROCID=3", "SLURM_NTASKS=8", "PMI_RANK=2", "PMI_SIZE=6",
		"OMPI_COMM_WORLD_RANK=1", "OMPI_COMM_WORLD_SIZE=4", "UDSM_JOIN=h:1", NULL
	};
	static const char *const udsm_wins[] = {
		"UDSM_RANK=0", "UDSM_NODES=2", "OMPI_COMM_WORLD_RANK=1", "OMPI_COMM_WORLD_SIZE=4",
		NULL
	};
	static const char *const pmi[] = { "SLURM_PROCID=3", "SLURM_NTASKS=8", "PMI_RANK=2",
					   "PMI_SIZE=6", "UDSM_JOIN=h:1", NULL };
	static const char *const ompi_udsm_nodes[] = { "UDSM_NODES=4", "OMPI_COMM_WORLD_RANK=1",
						       "OMPI_COMM_WORLD_SIZE=4", "UDSM_JOIN=h:1",
						       NULL };
	struct env_launch e;

	(void)state;
	assert_int_equal(read_env(&e, all), 0);
	assert_int_equal(e.rank, 1);
	assert_int_equal(e.nodes, 4);
	assert_string_equal(e.rank_var, "OMPI_COMM_WORLD_RANK");
	assert_int_equal(read_env(&e, udsm_wins), 0);
	assert_int_equal(e.rank, 0);
	assert_int_equal(e.nodes, 2);
	assert_string_equal(e.rank_var, "UDSM_RANK");
	assert_int_equal(read_env(&e, pmi), 0);
	assert_int_equal(e.rank, 2);
	assert_int_equal(e.nodes, 6);
	assert_string_equal(e.rank_var, "PMI_RANK");
	assert_int_equal(read_env(&e, ompi_udsm_nodes), 0); /* agreeing sizes are fine */
	assert_int_equal(e.rank, 1);
}

static void test_slurm_join(void **state)
{
	static const char *const t[] = { "SLURM_PROCID=2", "SLURM_NTASKS=4",
					 "SLURM_STEP_NODELIST=cn[04-07]", "SLURM_JOB_ID=1234",
					 "SLURM_STEP_ID=2", NULL };
	static const char *const job_list[] = { "SLURM_PROCID=1", "SLURM_NTASKS=2",
						"SLURM_JOB_NODELIST=gpu1,gpu2", "SLURM_JOB_ID=5",
						"SLURM_STEP_ID=0", NULL };
	static const char *const explicit_join[] = { "SLURM_PROCID=2", "SLURM_NTASKS=4",
						     "SLURM_STEP_NODELIST=cn[04-07]",
						     "SLURM_JOB_ID=1234", "SLURM_STEP_ID=2",
						     "UDSM_JOIN=cn09:5000", NULL };
	static const char *const bad_list[] = { "SLURM_PROCID=1", "SLURM_NTASKS=2",
						"SLURM_STEP_NODELIST=r[1-2]n[1-4]",
						"SLURM_JOB_ID=5", "SLURM_STEP_ID=0", NULL };
	/* An MPI rank under Slurm does not guess rank 0's host from Slurm's node list. */
	static const char *const mpi_in_slurm[] = { "OMPI_COMM_WORLD_RANK=1",
						    "OMPI_COMM_WORLD_SIZE=2",
						    "SLURM_STEP_NODELIST=cn1", "SLURM_JOB_ID=5",
						    "SLURM_STEP_ID=0", NULL };
	struct env_launch e;
	char want[64];

	(void)state;
	assert_int_equal(read_env(&e, t), 0);
	snprintf(want, sizeof(want), "cn04:%u", 20000 + (1234 * 16 + 2) % 12000);
	assert_string_equal(e.join, want);
	assert_int_equal(e.rank, 2);
	assert_int_equal(read_env(&e, job_list), 0);
	snprintf(want, sizeof(want), "gpu1:%u", 20000 + 5 * 16);
	assert_string_equal(e.join, want);
	assert_int_equal(read_env(&e, explicit_join), 0);
	assert_string_equal(e.join, "cn09:5000");
	assert_int_equal(read_env(&e, bad_list), -EINVAL);
	assert_int_equal(read_env(&e, mpi_in_slurm), -EINVAL);
}

static void test_errors(void **state)
{
	const char *const *const bad[] = {
		(const char *const[]){ "UDSM_RANK=1", NULL },                 /* no size */
		(const char *const[]){ "UDSM_RANK=4", "UDSM_NODES=4", "UDSM_JOIN=h:1", NULL },
		(const char *const[]){ "UDSM_RANK=1", "UDSM_NODES=2", NULL }, /* no join */
		(const char *const[]){ "UDSM_RANK=-1", "UDSM_NODES=2", NULL },
		(const char *const[]){ "UDSM_RANK=1x", "UDSM_NODES=2", "UDSM_JOIN=h:1", NULL },
		(const char *const[]){ "UDSM_NODES=0", NULL },
		(const char *const[]){ "UDSM_NODES=65", NULL },
		(const char *const[]){ "UDSM_NODES=two", NULL },
		(const char *const[]){ "UDSM_NODES=3", "OMPI_COMM_WORLD_RANK=0",
				       "OMPI_COMM_WORLD_SIZE=4", NULL },
		(const char *const[]){ "OMPI_COMM_WORLD_RANK=0", NULL },
		(const char *const[]){ "PMI_RANK=0", "PMI_SIZE=0", NULL },
		(const char *const[]){ "SLURM_PROCID=9", "SLURM_NTASKS=9", "UDSM_JOIN=h:1", NULL },
		(const char *const[]){ "SLURM_PROCID=1", "SLURM_NTASKS=2", NULL }, /* no list */
		(const char *const[]){ "UDSM_SIZE=12Q", NULL },
		(const char *const[]){ "UDSM_SIZE=0", NULL },
		(const char *const[]){ "UDSM_JOIN=nocolon", NULL },
	};
	struct env_launch e;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int err = read_env(&e, bad[i]);

		if (err != -EINVAL)
			fail_msg("case %zu (%s ...): %d, not -EINVAL", i, bad[i][0], err);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),      cmocka_unit_test(test_nodelists),
		cmocka_unit_test(test_slurm_port), cmocka_unit_test(test_nothing),
		cmocka_unit_test(test_udsm_vars),  cmocka_unit_test(test_precedence),
		cmocka_unit_test(test_slurm_join), cmocka_unit_test(test_errors),
	};

	udsm_set_log_func(quiet, NULL, 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
