/* SPDX-License-Identifier: MIT */
/*
 * alloc.c - the region's allocator. docs/ALLOC.md has the design; in short:
 *
 * Layout, from the top of the region down (P = page size, N = pages, K = nodes):
 *   page N-1                 global header: heap lock, bump mark, free page count, the two
 *                            records of collective calls
 *   pages N-2 .. N-1-K       one page per node: the head of its remote-free list (a page each,
 *                            so that one node's frees never move another node's page)
 *   M = ceil(8N/P) pages     the page map: one 64-bit entry per page of the heap
 *   pages 0 .. top-1         the heap (top = N-1-K-M), handed out from the top downwards
 *
 * The page map says, for every heap page, whether it is free, or part of a span of small blocks
 * (owner node, size class), a large block (owner) or a collective block, and where its run
 * starts. Runs of pages are handed out under one cluster-wide spin lock (a CAS on a word of
 * the header page) by first fit over the freed runs, else by moving the bump mark down:
 * pages below the mark were never handed out, so they are still zero.
 *
 * Small blocks (up to ALLOC_MAX_SMALL bytes) come from per-node, per-class free lists kept in
 * process memory and linked through the free blocks themselves; a node refills a class with a
 * span it owns, so malloc and a local free touch only this node's pages. A free block carries
 * a tag (a word derived from its address) in its second word: a free sets it with a CAS, so a
 * second free of the same block is seen and refused (logged). A node freeing another node's
 * block pushes it on the owner's remote-free list (CAS on the owner's list head); the owner
 * takes the whole list (one exchange: no ABA) on its next malloc.
 */
#define LOG_PREFIX "alloc: "
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "os/log.h"

/* Size classes: 16-byte granules up to 128, then four steps per power of two. */
static const uint32_t class_size[] = {
	16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256,
	320, 384, 448, 512, 640, 768, 896, 1024, 1280, 1536, 1792, 2048,
};
#define NCLASS (sizeof(class_size) / sizeof(class_size[0]))
#define ALLOC_MAX_SMALL 2048u
#define SPAN_BLOCKS_MIN 8 /* a span holds at least this many blocks of its class */
#define SPAN_BATCH_MAX 16 /* spans one refill takes at most */

/* Page map entry: 0 = free page. */
#define ME_LEN_MASK 0xffffffffull /* run length (head) or distance to the head (continuation) */
#define ME_KIND_SHIFT 32
#define ME_CONT (1ull << 40)
#define ME_OWNER_SHIFT 48
#define ME_CLASS_SHIFT 56
enum run_kind { RUN_FREE = 0, RUN_SPAN = 1, RUN_LARGE = 2, RUN_COLL = 3 };

#define ME_KIND(e) ((unsigned)(((e) >> ME_KIND_SHIFT) & 0xff))
#define ME_OWNER(e) ((unsigned)(((e) >> ME_OWNER_SHIFT) & 0xff))
#define ME_CLASS(e) ((unsigned)(((e) >> ME_CLASS_SHIFT) & 0xff))
#define ME_LEN(e) ((uint64_t)((e) & ME_LEN_MASK))

/* Collective operations, as recorded. */
enum coll_op { COLL_ALLOC = 1, COLL_FREE = 2 };

/* What node 0 records about one collective call; every other node compares it with its own
 * call after the first barrier. Two slots (by sequence parity): node 0 cannot write the record
 * of call s+2 before every node has passed the first barrier of call s+1, so a slow node still
 * reading the record of call s never sees it overwritten. */
struct coll_rec {
	uint64_t seq;    /* 1, 2, ... on every node */
	uint64_t hash;   /* running hash of every earlier collective call (op and argument) */
	uint64_t op;
	uint64_t arg;    /* size (alloc) or address (free) */
	uint64_t result; /* address (alloc), pages of the block (free) */
	uint64_t err;    /* positive errno from node 0, 0 = ok */
	uint64_t bad;    /* bit per node that saw a mismatch */
	uint64_t place;  /* placement (alloc), as a two's complement int */
	uint64_t fz_bad; /* bit per node whose freeze of the block failed (before barrier 2) */
	uint64_t rh_bad; /* bit per node whose re-homing of the block failed (before barrier 3) */
};

struct gheader {
	uint64_t lock;       /* 0 or holder node + 1 */
	uint64_t brk;        /* pages handed out below the top, ever (the bump mark) */
	uint64_t free_pages; /* pages freed above the bump mark */
	uint64_t free_depth; /* no page below top - free_depth is free above the bump mark */
	uint64_t pad[4];
	struct coll_rec slot[2];
};

struct cls {
	pthread_mutex_t mu;
	uint64_t head; /* first free block (address), 0 = empty; links are in the blocks */
	uint64_t nfree;
	unsigned batch; /* spans the next refill takes (cls_refill) */
};

struct alloc {
	struct alloc_env env;
	uint64_t top;       /* first page above the heap (0: no heap) */
	uint64_t chunk;     /* runs up to this many pages are homed at their node */
	uint64_t *map;      /* the page map, in the region */
	struct gheader *gh; /* in the region */
	uint64_t *remote;   /* remote-free list heads, one per node, each on its own page */
	pthread_mutex_t heap_mu; /* one thread of this node at a time on the heap lock */
	bool heap_dead;          /* heap_lock() found its holder dead (logged once) */
	pthread_mutex_t coll_mu; /* one collective at a time */
	uint64_t coll_seq, coll_hash;
	struct cls cls[NCLASS];
};

/* ---- layout ---------------------------------------------------------------------------- */

uint64_t alloc_meta_pages(uint64_t npages, size_t ps, unsigned nodes)
{
	return 1 + (uint64_t)nodes + (npages * 8 + ps - 1) / ps;
}

uint64_t alloc_heap_pages(uint64_t npages, size_t ps, unsigned nodes)
{
	uint64_t meta = alloc_meta_pages(npages, ps, nodes);

	return npages > meta ? npages - meta : 0;
}

static uint64_t *remote_head(struct alloc *a, unsigned node)
{
	return (uint64_t *)(a->env.base + (a->env.npages - 2 - node) * a->env.ps);
}

int alloc_create(const struct alloc_env *env, struct alloc **out)
{
	struct alloc *a;
	uint64_t map_pages;

	*out = NULL;
	if (!env->base || !env->ps || (env->ps & (env->ps - 1)) || !env->nodes ||
	    env->nodes > 255 || env->self >= env->nodes || !env->barrier)
		return -EINVAL;
	if (!(a = calloc(1, sizeof(*a))))
		return -ENOMEM;
	a->env = *env;
	a->chunk = env->home_chunk ? env->home_chunk : 1;
	map_pages = (env->npages * 8 + env->ps - 1) / env->ps;
	a->top = alloc_heap_pages(env->npages, env->ps, env->nodes);
	if (a->top) {
		a->gh = (struct gheader *)(env->base + (env->npages - 1) * env->ps);
		a->map = (uint64_t *)(env->base +
				      (env->npages - 1 - env->nodes - map_pages) * env->ps);
	}
	pthread_mutex_init(&a->heap_mu, NULL);
	pthread_mutex_init(&a->coll_mu, NULL);
	for (unsigned c = 0; c < NCLASS; c++)
		pthread_mutex_init(&a->cls[c].mu, NULL);
	*out = a;
	return 0;
}

void alloc_destroy(struct alloc *a)
{
	if (!a)
		return;
	pthread_mutex_destroy(&a->heap_mu);
	pthread_mutex_destroy(&a->coll_mu);
	for (unsigned c = 0; c < NCLASS; c++)
		pthread_mutex_destroy(&a->cls[c].mu);
	free(a);
}

static uint64_t ld(const uint64_t *w)
{
	return __atomic_load_n(w, __ATOMIC_SEQ_CST);
}

static void st(uint64_t *w, uint64_t v)
{
	__atomic_store_n(w, v, __ATOMIC_SEQ_CST);
}

/* ---- runs of pages, under the heap lock --------------------------------------------------- */

static void pause_ns(long ns)
{
	struct timespec ts = { 0, ns };

	nanosleep(&ts, NULL);
}

/* The heap lock is a word of the header page: while another node holds it, every attempt
 * moves that page, so wait by reading (a Shared copy) with a growing pause, and try the CAS
 * only when it reads free. Threads of this node queue on heap_mu first. A holder that died
 * never releases it, and what it was changing under it may be half done: -EIO then, for
 * good (the shared heap cannot change any more; blocks already in this node's lists still
 * serve small allocations). */
static int heap_lock(struct alloc *a)
{
	uint64_t zero, v;
	long wait = 1000;

	pthread_mutex_lock(&a->heap_mu);
	for (;;) {
		zero = 0;
		v = ld(&a->gh->lock);
		if (!v && __atomic_compare_exchange_n(&a->gh->lock, &zero, a->env.self + 1, false,
						      __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
			return 0;
		/* Re-read after the verdict: a holder that released the lock and died since
		 * the first read is not holding it. */
		if (v && v <= a->env.nodes && a->env.died &&
		    a->env.died(a->env.place_arg, (unsigned)(v - 1)) && ld(&a->gh->lock) == v) {
			pthread_mutex_unlock(&a->heap_mu);
			if (!__atomic_exchange_n(&a->heap_dead, true, __ATOMIC_RELAXED))
				log_err("node %llu died holding the allocator's heap lock: no run of "
					"pages can be allocated or freed any more (EIO)",
					(unsigned long long)(v - 1));
			return -EIO;
		}
		pause_ns(wait);
		if (wait < 256000)
			wait *= 2;
	}
}

static void heap_unlock(struct alloc *a)
{
	st(&a->gh->lock, 0);
	pthread_mutex_unlock(&a->heap_mu);
}

/* Page @p is free now: the scans of run_find() must start at or below it. */
static void depth_lower(struct alloc *a, uint64_t p)
{
	if (a->top - p > ld(&a->gh->free_depth))
		st(&a->gh->free_depth, a->top - p);
}

/* The node that homes page @p now (env.home; without it, page % nodes). */
static unsigned home_of(const struct alloc *a, uint64_t p)
{
	return a->env.home ? a->env.home(a->env.place_arg, p) : (unsigned)(p % a->env.nodes);
}

/* Find @len free pages: first fit among the freed runs above the bump mark, else below it.
 * With @want < nodes (runs of at most a chunk of the default layout: spans, small large
 * blocks), every page must be homed at node @want (home_of(): the engine's home map): the
 * bump mark then skips the pages down to the next such run (up to nodes - 1 chunks), which
 * stay free for anyone's first fit. Returns the first page, or UINT64_MAX. *reused tells
 * whether the pages were used before. */
static uint64_t run_find(struct alloc *a, uint64_t len, unsigned want, bool *reused)
{
	uint64_t brk = ld(&a->gh->brk), lo = a->top - brk, n = 0, nodes = a->env.nodes, q;
	uint64_t from = a->top - ld(&a->gh->free_depth), seen = a->top;

	if (from < lo)
		from = lo;
	if (ld(&a->gh->free_pages) >= len) {
		/* The scan starts at the lowest page that may be free and leaves that bound at the
		 * first free page it saw, so used pages below the free ones are passed over once. */
		for (uint64_t p = from; p < a->top; p++) {
			bool free = !ld(&a->map[p]);

			if (free && seen == a->top)
				seen = p;
			n = !free || (want < nodes && home_of(a, p) != want) ? 0 : n + 1;
			if (n == len) {
				st(&a->gh->free_pages, ld(&a->gh->free_pages) - len);
				st(&a->gh->free_depth, a->top - seen);
				*reused = true;
				return p + 1 - len;
			}
		}
		st(&a->gh->free_depth, a->top - seen);
	}
	if (lo < len)
		return UINT64_MAX;
	q = lo - len;
	if (want < nodes) {
		uint64_t s = q, skip, k;

		/* Check the candidate from its top page down; below a page homed elsewhere the
		 * next candidate ends right under that page. */
		while ((k = len) > 0) {
			while (k && home_of(a, s + k - 1) == want)
				k--;
			if (!k)
				break;
			if (s + k - 1 < len)
				return UINT64_MAX;
			s = s + k - 1 - len;
		}
		skip = q - s;
		q = s;
		st(&a->gh->free_pages, ld(&a->gh->free_pages) + skip);
		if (skip)
			depth_lower(a, q + len);
	}
	st(&a->gh->brk, a->top - q);
	*reused = false;
	return q;
}

static void run_mark(struct alloc *a, uint64_t first, uint64_t len, enum run_kind kind,
		     unsigned cls)
{
	uint64_t e = ((uint64_t)kind << ME_KIND_SHIFT) | ((uint64_t)a->env.self << ME_OWNER_SHIFT) |
		     ((uint64_t)cls << ME_CLASS_SHIFT);

	st(&a->map[first], e | len);
	for (uint64_t i = 1; i < len; i++)
		st(&a->map[first + i], e | ME_CONT | i);
}

/* Allocate a run of @len pages: its address, or NULL (ENOMEM). */
static void *run_alloc(struct alloc *a, uint64_t len, enum run_kind kind, unsigned cls,
		       unsigned want, bool *reused)
{
	uint64_t first;

	if (!a->top || !len || len > ME_LEN_MASK) {
		errno = ENOMEM;
		return NULL;
	}
	if (heap_lock(a)) {
		errno = EIO;
		return NULL;
	}
	first = run_find(a, len, want, reused);
	if (first != UINT64_MAX)
		run_mark(a, first, len, kind, cls);
	heap_unlock(a);
	if (first == UINT64_MAX) {
		errno = ENOMEM;
		return NULL;
	}
	return a->env.base + first * a->env.ps;
}

/* Free the run that starts at page @first if its head entry still is @e. */
static bool run_free(struct alloc *a, uint64_t first, uint64_t e)
{
	uint64_t len = ME_LEN(e);
	bool ok;

	if (heap_lock(a))
		return true; /* the run stays allocated (leaked): logged once by heap_lock() */
	ok = ld(&a->map[first]) == e;
	if (ok) {
		for (uint64_t i = 0; i < len; i++)
			st(&a->map[first + i], 0);
		st(&a->gh->free_pages, ld(&a->gh->free_pages) + len);
		depth_lower(a, first);
	}
	heap_unlock(a);
	return ok;
}

/* ---- small blocks ----------------------------------------------------------------------- */

static unsigned class_of(size_t size)
{
	unsigned c = 0;

	while (class_size[c] < size)
		c++;
	return c;
}

/* Pages that hold @bytes (no overflow for any size). */
static uint64_t pages_for(const struct alloc *a, uint64_t bytes)
{
	return bytes / a->env.ps + (bytes % a->env.ps != 0);
}

static uint64_t span_pages(struct alloc *a, unsigned c)
{
	uint64_t bytes = (uint64_t)class_size[c] * SPAN_BLOCKS_MIN;

	return bytes <= a->env.ps ? 1 : (bytes + a->env.ps - 1) / a->env.ps;
}

static uint64_t span_blocks(struct alloc *a, unsigned c)
{
	return span_pages(a, c) * a->env.ps / class_size[c];
}

/* A free block: word 0 links the free list, word 1 holds its tag. The tag depends on the
 * address so that a block's data is unlikely to look free by chance (a free then reports a
 * double free and keeps the block: a leak, never a corruption). */
static uint64_t free_tag(uint64_t blk)
{
	return (blk * 0x9e3779b97f4a7c15ull) ^ 0x7564736d66726565ull; /* "udsmfree" */
}

static uint64_t *blk_next(uint64_t blk)
{
	return (uint64_t *)(uintptr_t)blk;
}

static uint64_t *blk_tag(uint64_t blk)
{
	return (uint64_t *)(uintptr_t)blk + 1;
}

/* Push a freed block on a class list of this node. */
static void cls_push(struct alloc *a, unsigned c, uint64_t blk)
{
	struct cls *k = &a->cls[c];

	pthread_mutex_lock(&k->mu);
	st(blk_next(blk), k->head);
	k->head = blk;
	k->nfree++;
	pthread_mutex_unlock(&k->mu);
}

/* Take every block other nodes freed for us (one exchange: the list is only ever taken
 * whole, so a concurrent push cannot be confused by a reused address). */
static void drain_remote(struct alloc *a)
{
	uint64_t *head = remote_head(a, a->env.self);
	uint64_t blk, next, e, pg;

	if (!ld(head))
		return;
	blk = __atomic_exchange_n(head, 0, __ATOMIC_SEQ_CST);
	for (; blk; blk = next) {
		next = ld(blk_next(blk));
		pg = (blk - (uint64_t)(uintptr_t)a->env.base) / a->env.ps;
		e = ld(&a->map[pg]);
		cls_push(a, ME_CLASS(e), blk);
	}
}

/* Carve spans for class @c into its list; the class lock is held. Every refill of a class
 * takes twice as many spans as the previous one, up to SPAN_BATCH_MAX and at most a 64th of a
 * node's share of the heap, under one hold of the heap lock: a node that allocates much takes
 * the cluster-wide lock (and moves the header page) once per many spans. */
static int cls_refill(struct alloc *a, unsigned c)
{
	struct cls *k = &a->cls[c];
	uint64_t pages = span_pages(a, c), nb = span_blocks(a, c), sz = class_size[c];
	uint64_t cap = a->top / (64 * (uint64_t)a->env.nodes * pages);
	/* Spans homed here: the first touch of their blocks sends no message. */
	unsigned want = pages <= a->chunk ? a->env.self : UINT_MAX, n = 0, batch;
	bool reused;

	batch = k->batch ? k->batch : 1;
	if (batch > cap)
		batch = cap ? (unsigned)cap : 1;
	if (heap_lock(a))
		return -EIO;
	while (n < batch) {
		uint64_t f = run_find(a, pages, want, &reused), start;

		if (f == UINT64_MAX)
			break;
		start = (uint64_t)(uintptr_t)a->env.base + f * a->env.ps;
		/*
		 * Every block is tagged free and linked before the page map shows the span:
		 * until then udsm_free() refuses its blocks (the map says free), after it finds
		 * them free. Tagged after the heap lock, a udsm_free() of a block nobody was given
		 * could slip in between, take the untagged block and push it on the remote list,
		 * whose drain would then walk the refill's whole chain twice.
		 */
		for (uint64_t i = nb; i-- > 0;) {
			uint64_t blk = start + i * sz;

			st(blk_next(blk), k->head);
			st(blk_tag(blk), free_tag(blk));
			k->head = blk;
		}
		k->nfree += nb;
		run_mark(a, f, pages, RUN_SPAN, c);
		n++;
	}
	heap_unlock(a);
	if (!n)
		return -ENOMEM;
	if (batch < SPAN_BATCH_MAX)
		k->batch = batch * 2;
	return 0;
}

static void *small_alloc(struct alloc *a, size_t size)
{
	unsigned c = class_of(size);
	struct cls *k = &a->cls[c];
	uint64_t blk;
	int err;

	drain_remote(a);
	pthread_mutex_lock(&k->mu);
	if (!k->head && (err = cls_refill(a, c))) {
		pthread_mutex_unlock(&k->mu);
		errno = -err;
		return NULL;
	}
	blk = k->head;
	k->head = ld(blk_next(blk));
	k->nfree--;
	st(blk_tag(blk), 0);
	pthread_mutex_unlock(&k->mu);
	return (void *)(uintptr_t)blk;
}

void *alloc_malloc(struct alloc *a, size_t size)
{
	uint64_t len;
	bool reused;

	if (!a->top) {
		errno = ENOMEM;
		return NULL;
	}
	if (size <= ALLOC_MAX_SMALL)
		return small_alloc(a, size ? size : 1);
	len = pages_for(a, size); /* too many for any heap: ENOMEM from run_alloc() */
	/* Up to a chunk of the default layout, homed here; larger blocks lie on the layout. */
	return run_alloc(a, len, RUN_LARGE, 0, len <= a->chunk ? a->env.self : UINT_MAX,
			 &reused);
}

/* Resolve @p to the head of its run: the head entry, the run's first page; false if @p is
 * not in the heap or not in a used run. */
static bool resolve(struct alloc *a, const void *p, uint64_t *e, uint64_t *first)
{
	uintptr_t base = (uintptr_t)a->env.base, q = (uintptr_t)p;
	uint64_t pg;

	if (q < base || q >= base + a->top * a->env.ps)
		return false;
	pg = (q - base) / a->env.ps;
	*e = ld(&a->map[pg]);
	if (!*e)
		return false;
	if (*e & ME_CONT) {
		if (ME_LEN(*e) > pg)
			return false; /* a corrupt entry: the region was written behind our back */
		pg -= ME_LEN(*e);
		*e = ld(&a->map[pg]);
	}
	*first = pg;
	return *e && !(*e & ME_CONT) && pg + ME_LEN(*e) <= a->top;
}

void alloc_free(struct alloc *a, void *p)
{
	uint64_t e, first, blk = (uint64_t)(uintptr_t)p, start, off, sz, tag, cur;
	unsigned c, owner;

	if (!p)
		return;
	if (!a->top || !resolve(a, p, &e, &first)) {
		log_err("udsm_free(%p): not a block udsm_malloc returned (ignored)", p);
		return;
	}
	start = (uint64_t)(uintptr_t)a->env.base + first * a->env.ps;
	switch (ME_KIND(e)) {
	case RUN_LARGE:
		if (blk != start || !run_free(a, first, e))
			log_err("udsm_free(%p): not a block udsm_malloc returned, or freed twice "
				"(ignored)", p);
		return;
	case RUN_COLL:
		log_err("udsm_free(%p): a udsm_coalloc block; free it with udsm_cofree (ignored)",
			p);
		return;
	case RUN_SPAN:
		break;
	default:
		log_err("udsm_free(%p): corrupt page map entry %#llx (ignored)", p,
			(unsigned long long)e);
		return;
	}
	c = ME_CLASS(e);
	owner = ME_OWNER(e);
	if (c >= NCLASS || owner >= a->env.nodes) {
		log_err("udsm_free(%p): corrupt page map entry %#llx (ignored)", p,
			(unsigned long long)e);
		return;
	}
	sz = class_size[c];
	off = blk - start;
	if (off % sz || off / sz >= span_blocks(a, c)) {
		log_err("udsm_free(%p): not the start of a block udsm_malloc returned (ignored)",
			p);
		return;
	}
	/* Claim the block: only one free of it can turn its tag into the free tag. */
	tag = free_tag(blk);
	cur = 0; /* an allocated block's tag, unless its data changed it: try the CAS at once, so
		  * that a block of another node's page is fetched once, writable */
	do {
		if (cur == tag) {
			log_err("udsm_free(%p): double free (ignored)", p);
			return;
		}
	} while (!__atomic_compare_exchange_n(blk_tag(blk), &cur, tag, false, __ATOMIC_SEQ_CST,
					      __ATOMIC_SEQ_CST));
	if (owner == a->env.self) {
		cls_push(a, c, blk);
	} else {
		uint64_t *head = remote_head(a, owner), old = ld(head);

		do
			st(blk_next(blk), old);
		while (!__atomic_compare_exchange_n(head, &old, blk, false, __ATOMIC_SEQ_CST,
						    __ATOMIC_SEQ_CST));
	}
}

size_t alloc_usable(struct alloc *a, const void *p)
{
	uint64_t e, first, start;

	if (!a->top || !resolve(a, p, &e, &first))
		return 0;
	start = (uint64_t)(uintptr_t)a->env.base + first * a->env.ps;
	if (ME_KIND(e) == RUN_SPAN) {
		uint64_t sz = class_size[ME_CLASS(e)], off = (uint64_t)(uintptr_t)p - start;

		return off % sz ? 0 : sz;
	}
	return (uint64_t)(uintptr_t)p == start ? ME_LEN(e) * a->env.ps : 0;
}

/* ---- collective calls ------------------------------------------------------------------- */

static uint64_t mix(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
	return h * 0xff51afd7ed558ccdull;
}

static const char *op_name(uint64_t op)
{
	return op == COLL_ALLOC ? "udsm_coalloc" : op == COLL_FREE ? "udsm_cofree" : "nothing";
}

/* A failed barrier as an errno value: udsm's own codes (a lost peer, a closing node: all at
 * or below UDSM_EPROTO) are EIO, as udsm.h promises. */
static int barrier_err(int err)
{
	return err > UDSM_EPROTO ? -err : EIO;
}

/* Where the placement policies of udsm.h are valid. */
static bool place_ok(const struct alloc *a, int place)
{
	return place == -1 || place == -2 || (place >= 0 && (unsigned)place < a->env.nodes);
}

/*
 * Re-home the block the record describes (env.rehome): freeze its pages and wait until this
 * node is quiet for them (before the second barrier), then, if every node agreed, re-home them
 * (node.h, node_rehome; the third barrier follows, then the thaw). The range comes from the
 * record, which every node reads alike, so every node freezes the same range or none.
 * Returns whether this node froze a range; *first and *count get it.
 */
static bool rh_freeze(struct alloc *a, struct coll_rec *r, uint64_t *first,
		      uint64_t *count)
{
	uint64_t res = ld(&r->result), op = ld(&r->op);
	int err;

	if (!a->env.rehome || ld(&r->err) || !res)
		return false;
	if (op == COLL_ALLOC) {
		uint64_t len = pages_for(a, ld(&r->arg));

		*first = (res - (uint64_t)(uintptr_t)a->env.base) / a->env.ps;
		*count = len ? len : 1;
	} else if (op == COLL_FREE) {
		*first = (ld(&r->arg) - (uint64_t)(uintptr_t)a->env.base) / a->env.ps;
		*count = res;
	} else {
		return false;
	}
	if (*first >= a->top || *count > a->top - *first)
		return false; /* a record no node 0 of ours wrote: every node sees it alike */
	err = a->env.rehome(a->env.place_arg, ALLOC_RH_FREEZE, *first, *count, 0);
	if (err) {
		log_err("re-homing pages %llu+%llu: freeze failed (%d)", (unsigned long long)*first,
			(unsigned long long)*count, err);
		__atomic_fetch_or(&r->fz_bad, 1ull << (a->env.self % 64), __ATOMIC_SEQ_CST);
	}
	return true;
}

/*
 * The body of both collective calls. Node 0 acts (allocates, or checks the block to free) and
 * records what it did and which call it thinks this is; barrier; every other node compares the
 * record with its own call and flags a difference (and freezes the block's pages, see
 * rh_freeze); barrier; every node reads the flags, so that all of them return the same thing,
 * and re-homes the block if they agree; barrier (only with placement: no node asks a page's
 * new home before it switched). A block node 0 allocated for a call that turns out mismatched
 * is freed again; a cofree takes effect only once all agreed. A reused block is zero-filled
 * by its re-homing, or, without placement (tests), by node 0.
 * Returns 0 or a positive errno; *result gets the block's address.
 */
static int collective(struct alloc *a, enum coll_op op, uint64_t arg, int place,
		      uint64_t *result)
{
	struct coll_rec *r;
	uint64_t seq, hash, bad, fz_bad, e = 0, first = 0, rfirst = 0, rcount = 0;
	int err = 0, berr;
	bool froze = false;

	pthread_mutex_lock(&a->coll_mu);
	seq = ++a->coll_seq;
	hash = a->coll_hash; /* what came before this call */
	a->coll_hash = mix(mix(mix(hash, op), arg), (uint64_t)(int64_t)place);
	r = &a->gh->slot[seq & 1];
	if (a->env.self == 0) {
		uint64_t res = 0;

		if (op == COLL_ALLOC && !place_ok(a, place)) {
			err = EINVAL;
		} else if (op == COLL_ALLOC) {
			uint64_t len = pages_for(a, arg);
			bool reused = false;
			void *blk = run_alloc(a, len ? len : 1, RUN_COLL, 0, UINT_MAX, &reused);

			if (!blk)
				err = errno; /* ENOMEM, or EIO: the heap lock's holder died */
			else if (reused && !a->env.rehome) /* never handed out: still zero */
				memset(blk, 0, (len ? len : 1) * a->env.ps);
			res = (uint64_t)(uintptr_t)blk;
		} else if (!resolve(a, (void *)(uintptr_t)arg, &e, &first) ||
			   ME_KIND(e) != RUN_COLL ||
			   arg != (uint64_t)(uintptr_t)a->env.base + first * a->env.ps) {
			err = EINVAL;
		} else {
			res = ME_LEN(e);
		}
		st(&r->seq, seq);
		st(&r->hash, hash);
		st(&r->op, op);
		st(&r->arg, arg);
		st(&r->place, (uint64_t)(int64_t)place);
		st(&r->result, res);
		st(&r->err, (uint64_t)err);
		st(&r->bad, 0);
		st(&r->fz_bad, 0);
		st(&r->rh_bad, 0);
	}
	if ((berr = a->env.barrier(a->env.barrier_arg)))
		goto barrier_failed;
	if (a->env.self != 0 &&
	    (ld(&r->seq) != seq || ld(&r->hash) != hash || ld(&r->op) != op ||
	     ld(&r->arg) != arg || ld(&r->place) != (uint64_t)(int64_t)place)) {
		log_err("collective call %llu: this node called %s(%#llx, placement %d) but node 0 "
			"%s(%#llx, placement %d)%s", (unsigned long long)seq, op_name(op),
			(unsigned long long)arg, place, op_name(ld(&r->op)),
			(unsigned long long)ld(&r->arg), (int)(int64_t)ld(&r->place),
			ld(&r->seq) == seq && ld(&r->hash) != hash
				? " after a different sequence of collective calls" : "");
		__atomic_fetch_or(&r->bad, 1ull << (a->env.self % 64), __ATOMIC_SEQ_CST);
	}
	froze = rh_freeze(a, r, &rfirst, &rcount);
	if ((berr = a->env.barrier(a->env.barrier_arg)))
		goto barrier_failed;
	bad = ld(&r->bad);
	fz_bad = ld(&r->fz_bad); /* every freeze is done: all nodes read the same */
	if (froze && !bad && !fz_bad) {
		int pol = ld(&r->op) == COLL_ALLOC ? (int)(int64_t)ld(&r->place)
						   : ALLOC_PLACE_DEFAULT;
		int rerr = a->env.rehome(a->env.place_arg, ALLOC_RH_REHOME, rfirst, rcount, pol);

		if (rerr) {
			log_err("re-homing pages %llu+%llu failed (%d)", (unsigned long long)rfirst,
				(unsigned long long)rcount, rerr);
			__atomic_fetch_or(&r->rh_bad, 1ull << (a->env.self % 64),
					  __ATOMIC_SEQ_CST);
		}
	}
	if (a->env.rehome && (berr = a->env.barrier(a->env.barrier_arg)))
		goto barrier_failed;
	if (froze)
		a->env.rehome(a->env.place_arg, ALLOC_RH_THAW, 0, 0, 0);
	if (bad || fz_bad) {
		/* The nodes disagree, or some node could not freeze the pages (so no node
		 * re-homed them): the call fails on every node with nothing changed, and a block
		 * node 0 allocated for it goes back to the heap. */
		if (a->env.self == 0 && bad)
			log_err("collective call %llu (%s): nodes disagree (mask %#llx); every "
				"node returns EINVAL", (unsigned long long)seq, op_name(op),
				(unsigned long long)bad);
		else if (a->env.self == 0)
			log_err("collective call %llu (%s): freezing the block failed on nodes %#llx; "
				"every node returns EIO", (unsigned long long)seq, op_name(op),
				(unsigned long long)fz_bad);
		if (a->env.self == 0 && op == COLL_ALLOC && !err) {
			resolve(a, (void *)(uintptr_t)ld(&r->result), &e, &first);
			run_free(a, first, e);
		}
		err = bad ? EINVAL : EIO;
	} else if (ld(&r->rh_bad)) {
		/*
		 * Some node could not re-home the block: the nodes may now disagree about its
		 * pages' homes, so nobody may use it, and it cannot be given back to the heap
		 * either (its pages' placement is unknown). Every node returns EIO; the block
		 * (or, for a cofree, the block still allocated) is leaked.
		 */
		if (a->env.self == 0)
			log_err("collective call %llu (%s): re-homing failed on nodes %#llx; every "
				"node returns EIO and the block is leaked", (unsigned long long)seq,
				op_name(op), (unsigned long long)ld(&r->rh_bad));
		err = EIO;
	} else {
		err = (int)ld(&r->err);
		*result = ld(&r->result);
		/* Checked before the first barrier, and only node 0 frees collective runs (under
		 * coll_mu; udsm_free refuses them): it is still there. */
		if (a->env.self == 0 && op == COLL_FREE && !err && !run_free(a, first, e))
			log_err("udsm_cofree(%#llx): the block vanished", (unsigned long long)arg);
	}
	if (err == EINVAL && !bad && op == COLL_FREE && a->env.self == 0)
		log_err("udsm_cofree(%#llx): not a block udsm_coalloc returned",
			(unsigned long long)arg);
	pthread_mutex_unlock(&a->coll_mu);
	return err;

barrier_failed:
	log_err("%s: barrier failed (%d): the collective state is unknown now", op_name(op), berr);
	if (froze)
		a->env.rehome(a->env.place_arg, ALLOC_RH_THAW, 0, 0, 0);
	pthread_mutex_unlock(&a->coll_mu);
	return barrier_err(berr);
}

void *alloc_coalloc(struct alloc *a, size_t size, int placement)
{
	uint64_t res = 0;
	int err;

	if (!a->top) {
		/* Every node has the same layout, so every node returns here. */
		errno = ENOMEM;
		return NULL;
	}
	/* Any size goes through the collective, however large: a node whose size differs from
	 * the others' must meet them in its barriers and get EINVAL with them (too large for
	 * the heap: ENOMEM on every node, from node 0's run_alloc). */
	err = collective(a, COLL_ALLOC, size, placement, &res);
	if (err) {
		errno = err;
		return NULL;
	}
	return (void *)(uintptr_t)res;
}

int alloc_cofree(struct alloc *a, void *p)
{
	uint64_t res;

	if (!a->top)
		return -EINVAL; /* no heap: nothing was ever allocated */
	return -collective(a, COLL_FREE, (uint64_t)(uintptr_t)p, 0, &res);
}
