/* SPDX-License-Identifier: MIT */
/*
 * env.c - the launch environment (env.h): rank, cluster size, rank 0's address, region size,
 * from udsm-run's variables or from the MPI and Slurm launchers'.
 */
#define LOG_PREFIX "env: "
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "os/env.h"
#include "os/log.h"

/* A launcher's pair of variables: its rank and its size. */
struct env_pair {
	const char *rank, *size;
};

/* In order of precedence: a launcher sets its own and may leave another's in the
 * environment (mpirun started by srun), so the most specific one wins. */
static const struct env_pair pairs[] = {
	{ "UDSM_RANK", "UDSM_NODES" },
	{ "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE" },
	{ "PMI_RANK", "PMI_SIZE" },
	{ "SLURM_PROCID", "SLURM_NTASKS" },
};

static const char *sys_getenv(const char *name)
{
	return getenv(name);
}

static const char *value(env_get_fn *get, const char *name)
{
	const char *v = get(name);

	return v && *v ? v : NULL;
}

/* A decimal number without sign, spaces or junk, at most @max. */
static int parse_uint(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t x = 0;

	if (!s || !*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		if (x > (max - (uint64_t)(*s - '0')) / 10)
			return -EINVAL;
		x = x * 10 + (uint64_t)(*s - '0');
	}
	*out = x;
	return 0;
}

int env_parse_size(const char *s, size_t *out)
{
	static const char units[] = "KMGT";
	uint64_t x = 0, mult = 1;
	const char *p = s;
	char num[24];
	size_t n;

	if (!s)
		return -EINVAL;
	while (*p >= '0' && *p <= '9')
		p++;
	n = (size_t)(p - s);
	if (!n || n >= sizeof(num))
		return -EINVAL;
	memcpy(num, s, n);
	num[n] = '\0';
	if (parse_uint(num, UINT64_MAX, &x))
		return -EINVAL;
	if (*p) {
		const char *u = strchr(units, toupper((unsigned char)*p));

		if (!u)
			return -EINVAL;
		mult = (uint64_t)1 << (10 * (u - units + 1));
		p++;
		/* "K", "KB" and "KiB" all mean 1024: sizes of memory are binary. */
		if (*p == 'i' && p[1] == 'B')
			p += 2;
		else if (*p == 'B' || *p == 'b')
			p++;
		if (*p)
			return -EINVAL;
	}
	if (!x || x > SIZE_MAX / mult)
		return -EINVAL;
	*out = (size_t)(x * mult);
	return 0;
}

int env_nodelist_first(const char *list, char *host, size_t len)
{
	const char *p = list, *br, *end;
	size_t n = 0;

	if (!list || !*list || *list == ',' || *list == '[')
		return -EINVAL;
	/* The first element ends at a comma outside brackets. */
	while (*p && *p != ',' && *p != '[')
		p++;
	if (*p != '[') { /* a plain name */
		n = (size_t)(p - list);
		if (n >= len)
			return -ENAMETOOLONG;
		memcpy(host, list, n);
		host[n] = '\0';
		return 0;
	}
	br = p;
	if (!(end = strchr(br, ']')))
		return -EINVAL;
	/* The first number of the range list: "[007-009,12]" -> "007", leading zeros kept. */
	p = br + 1;
	while (*p >= '0' && *p <= '9')
		p++;
	if (p == br + 1 || (*p != '-' && *p != ',' && *p != ']'))
		return -EINVAL;
	/* What follows "]" up to the next comma is a suffix; a second bracket is a form
	 * ("r[1-2]n[1-4]") Slurm only writes for multi-dimensional names: not supported. */
	const char *suf = end + 1, *suf_end = suf;

	while (*suf_end && *suf_end != ',') {
		if (*suf_end == '[' || *suf_end == ']')
			return -EINVAL;
		suf_end++;
	}
	n = (size_t)(br - list) + (size_t)(p - br - 1) + (size_t)(suf_end - suf);
	if (n >= len)
		return -ENAMETOOLONG;
	snprintf(host, len, "%.*s%.*s%.*s", (int)(br - list), list, (int)(p - br - 1), br + 1,
		 (int)(suf_end - suf), suf);
	return 0;
}

unsigned env_slurm_port(uint64_t jobid, uint64_t stepid)
{
	/* Unsigned arithmetic wraps, which only moves the result inside the range. */
	return ENV_PORT_BASE + (unsigned)((jobid * 16u + stepid) % ENV_PORT_SPAN);
}

/* Rank 0's address for a Slurm step without UDSM_JOIN. */
static int slurm_join(struct env_launch *e, env_get_fn *get)
{
	const char *list = value(get, "SLURM_STEP_NODELIST");
	const char *job = value(get, "SLURM_JOB_ID"), *step = value(get, "SLURM_STEP_ID");
	uint64_t jobid, stepid;
	char host[256];
	int err;

	if (!list)
		list = value(get, "SLURM_JOB_NODELIST");
	if (!list || !job || !step)
		return -ENOENT;
	if ((err = env_nodelist_first(list, host, sizeof(host)))) {
		log_err("cannot read the first host of the Slurm node list '%s' (understood: "
			"host, host1,host2, prefix[1-3,5]); set UDSM_JOIN=host:port", list);
		return -EINVAL;
	}
	if (parse_uint(job, UINT64_MAX, &jobid) || parse_uint(step, UINT64_MAX, &stepid)) {
		log_err("SLURM_JOB_ID=%s / SLURM_STEP_ID=%s are not numbers; set UDSM_JOIN", job,
			step);
		return -EINVAL;
	}
	snprintf(e->join, sizeof(e->join), "%s:%u", host, env_slurm_port(jobid, stepid));
	e->join_var = "SLURM_STEP_NODELIST";
	return 0;
}

int env_launch_read(struct env_launch *e, env_get_fn *get)
{
	const char *v, *unodes;
	uint64_t x;
	int err;

	if (!get)
		get = sys_getenv;
	memset(e, 0, sizeof(*e));

	if ((v = value(get, "UDSM_SIZE")) && env_parse_size(v, &e->size)) {
		log_err("UDSM_SIZE=%s is not a size (bytes, or with a K, M, G or T suffix)", v);
		return -EINVAL;
	}
	unodes = value(get, "UDSM_NODES");
	if (unodes) {
		if (parse_uint(unodes, UDSM_MAX_NODES, &x) || x < 1) {
			log_err("UDSM_NODES=%s: a cluster has 1 to %d nodes", unodes,
				UDSM_MAX_NODES);
			return -EINVAL;
		}
		e->nodes = (unsigned)x;
		e->nodes_var = "UDSM_NODES";
	}
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		const char *r = value(get, pairs[i].rank), *s = value(get, pairs[i].size);
		uint64_t rank, size;

		if (!r)
			continue; /* UDSM_NODES alone just sizes the cluster */
		if (parse_uint(r, UINT32_MAX, &rank)) {
			log_err("%s=%s is not a rank (a number from 0)", pairs[i].rank, r);
			return -EINVAL;
		}
		if (!s) {
			log_err("%s=%s is set but %s is not: a rank needs the cluster size",
				pairs[i].rank, r, pairs[i].size);
			return -EINVAL;
		}
		if (parse_uint(s, UINT32_MAX, &size) || size < 1 || size > UDSM_MAX_NODES) {
			log_err("%s=%s: a cluster has 1 to %d nodes", pairs[i].size, s,
				UDSM_MAX_NODES);
			return -EINVAL;
		}
		if (rank >= size) {
			log_err("%s=%s is not below %s=%s", pairs[i].rank, r, pairs[i].size, s);
			return -EINVAL;
		}
		if (e->nodes && e->nodes != size) {
			log_err("UDSM_NODES=%s contradicts %s=%s", unodes, pairs[i].size, s);
			return -EINVAL;
		}
		e->has_rank = true;
		e->rank = (unsigned)rank;
		e->nodes = (unsigned)size;
		e->rank_var = pairs[i].rank;
		e->nodes_var = pairs[i].size;
		break;
	}

	if ((v = value(get, "UDSM_JOIN"))) {
		if (strlen(v) >= sizeof(e->join) || !strchr(v, ':')) {
			log_err("UDSM_JOIN=%s is not host:port", v);
			return -EINVAL;
		}
		snprintf(e->join, sizeof(e->join), "%s", v);
		e->join_var = "UDSM_JOIN";
	} else if (e->has_rank && !strcmp(e->rank_var, "SLURM_PROCID")) {
		if ((err = slurm_join(e, get)) && err != -ENOENT)
			return err;
	}
	if (e->has_rank && e->rank > 0 && !e->join[0]) {
		log_err("%s=%u but nothing says where rank 0 is: set UDSM_JOIN=host:port (the "
			"address rank 0 listens on)", e->rank_var, e->rank);
		return -EINVAL;
	}
	return 0;
}
