/* SPDX-License-Identifier: MIT */
/*
 * env.h - what a launcher (udsm-run, mpirun, srun, or a person) tells a node through the
 * environment: its rank (which becomes its node id), the cluster size, where rank 0 listens
 * and the region size. udsm_open() consults it for every configuration field left zero.
 *
 * Precedence of the rank and size: UDSM_RANK/UDSM_NODES, else Open MPI's
 * OMPI_COMM_WORLD_RANK/OMPI_COMM_WORLD_SIZE, else MPICH's PMI_RANK/PMI_SIZE, else Slurm's
 * SLURM_PROCID/SLURM_NTASKS. Rank 0's address: UDSM_JOIN, else (rank from Slurm only) the
 * first host of SLURM_STEP_NODELIST (else SLURM_JOB_NODELIST) on port env_slurm_port().
 */
#ifndef UDSM_ENV_H
#define UDSM_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ENV_ADDR_MAX 280 /* "host:port" with a DNS name of up to 255 characters */

/* Looks a variable up; getenv() in the library, a table in the unit tests. */
typedef const char *env_get_fn(const char *name);

struct env_launch {
	bool has_rank;        /* a rank was given (then nodes is set too) */
	unsigned rank;        /* this process's rank: its node id */
	unsigned nodes;       /* cluster size; 0 = not given */
	const char *rank_var; /* the variable the rank came from, for messages */
	const char *nodes_var;
	char join[ENV_ADDR_MAX]; /* rank 0's "host:port"; "" = not given */
	const char *join_var;
	size_t size; /* UDSM_SIZE in bytes; 0 = not given */
};

/**
 * env_parse_size() - "4096", "64K", "16M", "2G", "1T" (binary multiples; "k", "KB", "KiB" too).
 * Returns 0, or -EINVAL for anything else, zero, or a value that overflows size_t.
 */
int env_parse_size(const char *s, size_t *out);

/**
 * env_nodelist_first() - the first host of a Slurm node list: "host", "h1,h2",
 * "prefix[1-3,5]" (-> "prefix1"), "n[007-009]x" (-> "n007x", leading zeros kept),
 * "a[1-2],b[4]". Returns 0, -EINVAL for a form it does not understand, -ENAMETOOLONG.
 */
int env_nodelist_first(const char *list, char *host, size_t len);

/* The ports udsm picks by itself for rank 0 (Slurm's, udsm-run's): ENV_PORT_BASE and the
 * ENV_PORT_SPAN above it, 20000..31999, all below Linux's default ephemeral range (32768..):
 * the kernel gives none of them to a bind to port 0 or to a connect() (mpirun's own
 * connections, say), so a collision takes another program that names the port. */
#define ENV_PORT_BASE 20000u
#define ENV_PORT_SPAN 12000u

/**
 * env_slurm_port() - the port rank 0 listens on in Slurm step @stepid of job @jobid when
 * UDSM_JOIN is not set: ENV_PORT_BASE + (jobid * 16 + stepid) mod ENV_PORT_SPAN, so that
 * concurrent steps of one job and concurrent jobs on one node rarely collide (a collision is
 * a clear bind error).
 */
unsigned env_slurm_port(uint64_t jobid, uint64_t stepid);

/**
 * env_launch_read() - read the launch environment through @get (NULL: getenv()).
 * Returns 0 (fields not given are zero / ""), or -EINVAL with the reason logged: a malformed
 * number or size, a rank without a size (or the reverse for UDSM_RANK), rank >= size, a size
 * over UDSM_MAX_NODES or under 2, UDSM_NODES contradicting the launcher's size, a rank > 0
 * with no way to find rank 0, or a Slurm node list it cannot parse.
 */
int env_launch_read(struct env_launch *out, env_get_fn *get);

#endif /* UDSM_ENV_H */
