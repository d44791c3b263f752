/* SPDX-License-Identifier: MIT */
/*
 * app.h - what the five applications of apps/ share: opening the cluster from the launcher's
 * environment with a region sized for the run, timing the parallel part between two barriers
 * with this node's counters around it, splitting work into blocks, a deterministic random
 * number generator, and the verdict and result line every node prints.
 *
 * A run goes:
 *   app_open()                      udsm_open(NULL-like config), the shared page for results
 *   ... collective allocation, inputs written ...
 *   app_begin()                     barrier, clock and counters start
 *   ... the parallel computation ...
 *   app_end()                       barrier, clock and counters stop
 *   node 0: serial reference on private memory, compare, app_verdict()
 *   app_finish()                    barrier, every node prints its line, closes; exit status
 *
 * The result line (one per node, on stdout, machine-readable: space-separated key=value):
 *   RESULT app=NAME nodes=N node=I par_s=S ser_s=S faults=K pages_in=K zero_in=K
 *          bytes_in=B bytes_out=B msgs=M misses=K miss_us=U barriers=K barrier_us=U
 *          locks=K lock_us=U result=OK|WRONG args=...
 * The counters are this node's (udsm_stats2()) during the parallel part only: faults, pages
 * received (of which moved as zero), bytes received and sent, messages sent, misses (read
 * misses, write misses and upgrades measured by the service thread) with their mean latency,
 * barriers with theirs, udsm_lock() acquisitions with theirs (timed by the app). ser_s is node 0's time for the serial reference, the same on every
 * line.
 */
#ifndef APPS_APP_H
#define APPS_APP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <udsm.h>

struct app_shared; /* the results page, in the region */

struct app {
	const char *name;
	struct udsm *d;
	unsigned self, nodes;
	struct app_shared *sh;
	double t0, par_s;
	struct udsm_stats2 s0, s1;
	char args[256]; /* the run's parameters, for the result line */
	/* APPS_INJECT_ERROR set: node 0 changes the parallel result a little before the check
	 * (the test that the check catches a wrong result). */
	bool inject;
	int placement; /* APPS_PLACEMENT, or 1 (none: each block's own) */
	/* udsm_lock() calls through app_lock() and the time they waited */
	uint64_t locks;
	double lock_s;
};

/* Open the cluster from the launch environment (udsm-run, mpirun, srun) with a region of at
 * least @bytes of collective data (unless UDSM_SIZE says otherwise). Exits 1 on failure. */
void app_open(struct app *a, const char *name, size_t bytes);
/* udsm_coalloc_placed() with @placement (UDSM_PLACE_BLOCK for data split in contiguous
 * blocks, a node id for data one node writes); exits 1 on failure (every node fails alike).
 * The environment variable APPS_PLACEMENT=block|cyclic|node0 overrides @placement for every
 * block (to compare placements; every node must see the same value). */
void *app_coalloc(struct app *a, size_t bytes, int placement);
/* udsm_lock() / udsm_unlock() on @addr, or exit 1 with a message. app_lock() counts the
 * acquisitions and the time they took for the result line (locks=, lock_us=). */
void app_lock(struct app *a, void *addr);
void app_unlock(struct app *a, void *addr);
/* Barrier or exit 1 with a message. */
void app_barrier(struct app *a);
/* Start and stop the parallel part (each a barrier). */
void app_begin(struct app *a);
void app_end(struct app *a);
/* Node 0: record the serial time and the verdict for every node. */
void app_verdict(struct app *a, double ser_s, bool ok);
/* Everybody: wait for node 0's verdict, print the result line, close. Returns the exit
 * status: 0 when the result was right, 1 otherwise. */
int app_finish(struct app *a);

/* Items [*lo, *hi) of @n split into @parts contiguous blocks, block @i. */
void app_block(size_t n, unsigned parts, unsigned i, size_t *lo, size_t *hi);
double app_now(void);
/* Parse a positive integer option value or exit 2. */
size_t app_arg(const char *opt, const char *val);
void *app_xmalloc(size_t bytes);

/* splitmix64: deterministic, so that every node and the serial reference agree on inputs. */
static inline uint64_t app_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* A double in [0, 1) from a 64-bit hash. */
static inline double app_unit(uint64_t h)
{
	return (double)(h >> 11) * (1.0 / 9007199254740992.0);
}

#endif /* APPS_APP_H */
