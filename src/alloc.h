/* SPDX-License-Identifier: MIT */
/*
 * alloc.h - the region's allocator (docs/ALLOC.md): collective allocation (udsm_coalloc) and
 * per-node arenas for udsm_malloc/udsm_free, with all metadata in the region itself.
 *
 * The allocator works on any memory range that every "node" maps at the same address and that
 * is sequentially consistent for atomic read-modify-write instructions: the DSM region on a
 * real cluster, or plain memory shared by threads that play the nodes (tests/unit/test_alloc).
 * It never sends a message; it only needs a barrier for the collective calls.
 */
#ifndef UDSM_ALLOC_H
#define UDSM_ALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Where the allocator lives and how its node enters a barrier. */
struct alloc_env {
	uint8_t *base;    /* the region, the same address on every node */
	uint64_t npages;  /* its size in pages */
	size_t ps;        /* page size (a power of two) */
	unsigned self;    /* this node's id, < nodes */
	unsigned nodes;   /* cluster size (fixed: the layout depends on it) */
	/* A barrier among all nodes: 0 or a negative error. */
	int (*barrier)(void *arg);
	void *barrier_arg;
	/* Placement (NULL: homes are page % nodes and never change, e.g. plain memory in the
	 * tests). @rehome runs one step (ALLOC_RH_*) of re-homing a range of pages (node.h,
	 * node_rehome): 0 or a negative error. @home: the node that homes @page now. */
	int (*rehome)(void *arg, int step, uint64_t first, uint64_t count, int policy);
	unsigned (*home)(void *arg, uint64_t page);
	/* Whether node @node died (was lost, not left): the heap lock it holds is never
	 * released. Thread-safe. NULL: nodes never die (the tests' plain memory). */
	bool (*died)(void *arg, unsigned node);
	void *place_arg;
	/* The default home layout's chunk in pages (0: 1): runs of up to this many pages (spans,
	 * large blocks) are taken on pages homed at the allocating node. */
	uint32_t home_chunk;
};

/* Steps of @rehome (the values of node.h's NODE_RH_*); policies are UDSM_PLACE_* or a node
 * id, and ALLOC_PLACE_DEFAULT: back to the region's default layout. */
enum { ALLOC_RH_FREEZE = 1, ALLOC_RH_REHOME = 2, ALLOC_RH_THAW = 3 };
#define ALLOC_PLACE_DEFAULT (-3)

struct alloc;

/** alloc_create() - this node's allocator state (process memory only; the region is not
 *  touched: an all-zero heap is the empty heap). 0 or -ENOMEM / -EINVAL. */
int alloc_create(const struct alloc_env *env, struct alloc **out);
/** alloc_destroy() - free the process-local state (the region is left as it is). */
void alloc_destroy(struct alloc *a);

/** alloc_malloc() - see udsm_malloc(). Thread-safe. NULL and errno. */
void *alloc_malloc(struct alloc *a, size_t size);
/** alloc_free() - see udsm_free(). Thread-safe. Bad pointers are logged and ignored. */
void alloc_free(struct alloc *a, void *p);
/** alloc_coalloc() - see udsm_coalloc_placed(). One thread per node at a time. NULL and
 *  errno. */
void *alloc_coalloc(struct alloc *a, size_t size, int placement);
/** alloc_cofree() - see udsm_cofree(). 0 or a negative error. */
int alloc_cofree(struct alloc *a, void *p);

/** alloc_meta_pages() - pages the allocator's metadata takes at the top of a region of
 *  @npages pages of @ps bytes shared by @nodes nodes. */
uint64_t alloc_meta_pages(uint64_t npages, size_t ps, unsigned nodes);
/** alloc_heap_pages() - pages left for blocks (0 if the region is too small). */
uint64_t alloc_heap_pages(uint64_t npages, size_t ps, unsigned nodes);
/** alloc_usable() - bytes usable in the block at @p (a pointer udsm_malloc or udsm_coalloc
 *  returned), or 0 if @p is not one. For tests. */
size_t alloc_usable(struct alloc *a, const void *p);

#endif /* UDSM_ALLOC_H */
