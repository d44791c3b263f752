/* SPDX-License-Identifier: MIT */
/*
 * stats.h - a node's performance statistics: fault and barrier latency histograms, the
 * hot-page table of the pages homed here, the copies that let a writer say what it changed,
 * and the report UDSM_STATS asks for (docs/STATS.md).
 *
 * The hooks below are called from node.c, api.c and the engine's ops; each takes the node's
 * struct stats, which may be NULL (then it does nothing). Unless noted, a hook runs on the
 * service thread.
 */
#ifndef UDSM_STATS_H
#define UDSM_STATS_H

#include <stdbool.h>
#include <stdint.h>

#include "udsm.h"

struct udsm;
struct stats;

/** stats_open() - create d->stats from the environment (UDSM_STATS) and @cfg; 0 or -errno.
 *  Application thread, in udsm_open() before the service thread starts. */
int stats_open(struct udsm *d, const struct udsm_config *cfg);
/** stats_close() - write the final report if one was asked for; stop taking SIGUSR2.
 *  Application thread, in udsm_close() after the service thread stopped. */
void stats_close(struct udsm *d);
/** stats_destroy() - free (NULL is fine). */
void stats_destroy(struct stats *st);

/** stats_fault() - a fault on @page, whose engine state is @state (enum eng_state), arrived:
 *  start its latency clock if it waits for the protocol. */
void stats_fault(struct stats *st, uint64_t page, int state, bool write);
/** stats_installed() - @n pages from @page were installed (@data: their contents, NULL for
 *  zeros) and their waiters woken. */
void stats_installed(struct stats *st, uint64_t page, const void *data, uint64_t n);
/** stats_woken() - @page was made writable (an upgrade) and its waiters woken. */
void stats_woken(struct stats *st, uint64_t page);
/** stats_forget() - @page's waiters got SIGBUS: no latency sample. */
void stats_forget(struct stats *st, uint64_t page);
/** stats_barrier() - a barrier took @ns. Application thread (one at a time). */
void stats_barrier(struct stats *st, uint64_t ns);
/** stats_lock() - a lock acquisition took @ns. Application thread, under the lock service's
 *  mutex (so one at a time). */
void stats_lock(struct stats *st, uint64_t ns);
/** stats_latency() - copies of the histograms and the count of unmeasured faults. Any thread. */
void stats_latency(const struct stats *st, struct udsm_latency out[UDSM_LAT_KINDS],
		   uint64_t *dropped);
/** stats_poll() - after the eventfd fired: write the report if SIGUSR2 asked for one. */
void stats_poll(struct udsm *d);

/* Engine ops (struct eng_ops .moved and .written); @ctx is the struct udsm. */
void stats_op_moved(void *ctx, uint64_t page, unsigned from, unsigned to, uint64_t warg);
uint64_t stats_op_written(void *ctx, uint64_t page, const void *data);

#endif /* UDSM_STATS_H */
