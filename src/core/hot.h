/* SPDX-License-Identifier: MIT */
/*
 * hot.h - the hot-page table of a home node: which of its pages move most, between which
 * nodes, and whether their writers falsely share them.
 *
 * Every transfer of a page is decided by its home, so the home sees them all. Keeping a record
 * per page would cost 16 M records for a 64 GiB region; instead the table is a set-associative
 * space-saving sketch of HOT_SETS x HOT_WAYS slots: a page that is not in its set takes the
 * slot with the fewest transfers and inherits that count as its error bound. Any page that
 * accounts for more than 1/HOT_WAYS of the transfers hashed to its set is guaranteed to be in
 * the table, and its count is exact up to @err. Memory: sizeof(struct hot) (about 80 KiB),
 * whatever the region's size. Each update is a hash and a probe of HOT_WAYS slots.
 *
 * Per slot the table also keeps the written ranges (core/written.h) the last few writers
 * reported when they gave the page up, and counts hand-overs between different writers whose
 * ranges were disjoint (false sharing) or overlapping (true sharing).
 *
 * Locking: none; the caller serialises (src/stats.c).
 * This file is part of the pure core: no system calls.
 */
#ifndef UDSM_HOT_H
#define UDSM_HOT_H

#include <stddef.h>
#include <stdint.h>

#include "udsm.h"

#define HOT_SETS 128u
#define HOT_WAYS 4u
#define HOT_WRITERS 4u /* recent writers whose ranges a slot keeps */
#define HOT_NONE 0xffu /* "no node": a transfer from the home's copy */

struct hot_writer {
	uint64_t arg; /* the writer's last warg that said something changed */
	uint8_t node; /* HOT_NONE: unused */
};

struct hot_slot {
	uint64_t page; /* UINT64_MAX: empty */
	uint64_t transfers, err;
	uint64_t nodes, writers;
	uint64_t last_arg; /* the last writer's warg */
	uint32_t disjoint, overlap;
	uint8_t last_writer; /* HOT_NONE: none yet */
	struct hot_writer w[HOT_WRITERS]; /* most recent first */
};

struct hot {
	uint32_t ps;
	uint64_t transfers, known, replaced;
	struct hot_slot slot[HOT_SETS * HOT_WAYS];
};

/** hot_init() - an empty table for pages of @ps bytes. */
void hot_init(struct hot *h, uint32_t ps);
/**
 * hot_moved() - @page (or the right to write it) went to node @to, from the owner @from
 * (HOT_NONE: from the home's copy, or a grant), which reported @warg about what it changed
 * (WARG_UNKNOWN if it said nothing).
 */
void hot_moved(struct hot *h, uint64_t page, unsigned from, unsigned to, uint64_t warg);
/** hot_find() - @page's slot, or NULL if it has none. */
const struct hot_slot *hot_find(const struct hot *h, uint64_t page);
/** hot_top() - the @max pages with most transfers, most first; returns how many. */
size_t hot_top(const struct hot *h, struct udsm_hot_page *out, size_t max);
/** hot_false_shared() - slots flagged as false sharing. */
uint64_t hot_false_shared(const struct hot *h);
/** hot_fill() - the public view of one slot. */
void hot_fill(const struct hot *h, const struct hot_slot *s, struct udsm_hot_page *out);

#endif /* UDSM_HOT_H */
