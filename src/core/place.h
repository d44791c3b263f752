/* SPDX-License-Identifier: MIT */
/*
 * place.h - the home map: which node is the *origin* of each page, i.e. which node keeps its
 * directory entry (docs/PROTOCOL.md, "Home map"). Every node holds the same map; the engine
 * resolves an origin through the successors of nodes that left (fwd) to get the home.
 *
 * The map is a default layout plus an ordered set of non-overlapping range overrides:
 *  - default: chunk-cyclic, chunks of @chunk pages dealt round robin, page p has origin
 *    (p / chunk) % nodes (chunk 1 is plain page % nodes);
 *  - PLACE_BLOCK over [first, first + count): contiguous equal shares, node i homes the pages
 *    at offsets [floor(i * count / nodes), floor((i + 1) * count / nodes));
 *  - PLACE_CYCLIC: page by page round robin from the range's first page (offset % nodes);
 *  - a node id: every page of the range.
 * Pure code: no system calls, no locking (the engine serialises its use).
 */
#ifndef UDSM_PLACE_H
#define UDSM_PLACE_H

#include <stdbool.h>
#include <stdint.h>

/* Policies of a range (the values of UDSM_PLACE_* in udsm.h); a value >= 0 is a node id. */
#define PLACE_BLOCK (-1)
#define PLACE_CYCLIC (-2)
#define PLACE_DEFAULT (-3) /* place_set(): the range follows the default layout again */

/* The default chunk of the default layout, and the most chunks a node should have at least
 * (smaller regions get smaller chunks: place_default_chunk()). */
#define PLACE_CHUNK_DEFAULT 64u
#define PLACE_CHUNK_MAX (1u << 30)

/* A range [first, first + count) placed by @policy as part of [base, base + span): the
 * range as it was set, of which later place_set() calls may have cut pieces away. */
struct place_range {
	uint64_t first, count, base, span;
	int policy; /* PLACE_BLOCK, PLACE_CYCLIC or a node id */
};

/* Invariant: r[0..n) sorted by first, non-overlapping, inside [0, npages), count > 0. */
struct place {
	unsigned nodes;
	uint64_t npages;
	uint32_t chunk;
	struct place_range *r;
	uint32_t n, cap;
};

/** place_default_chunk() - the default layout's chunk for a region of @npages pages over
 *  @nodes nodes: PLACE_CHUNK_DEFAULT, halved while the region holds fewer than 4 chunks per
 *  node (a small region stays spread over every node), at least 1. */
uint32_t place_default_chunk(uint64_t npages, unsigned nodes);

/** place_init() - the default layout only. @chunk 0: place_default_chunk(). 0 or -EINVAL. */
int place_init(struct place *m, unsigned nodes, uint64_t npages, uint32_t chunk);
/** place_fini() - free the overrides. */
void place_fini(struct place *m);

/** place_check() - is @policy valid for a range of this map? 0 or -EINVAL. */
int place_check(const struct place *m, int policy);

/**
 * place_set() - pages [first, first + count) follow @policy from now on (PLACE_DEFAULT: the
 * default layout). Overrides it overlaps are cut (the pages they keep keep their homes).
 * 0, -EINVAL (bad range or policy) or -ENOMEM (the map is unchanged then).
 */
int place_set(struct place *m, uint64_t first, uint64_t count, int policy);

/** place_origin() - the origin of @page (< npages); O(log ranges). */
unsigned place_origin(const struct place *m, uint64_t page);

/**
 * place_run_end() - the end of the segment of @page: every page of [page, end) has the
 * origin of @page (a chunk, a share of a block, a single page of a cyclic range). Sequential
 * code can step from segment to segment instead of asking page by page.
 */
uint64_t place_run_end(const struct place *m, uint64_t page);

#endif /* UDSM_PLACE_H */
