/* SPDX-License-Identifier: MIT */
/*
 * test_alloc.c - unit tests of the allocator (src/alloc.c) without a cluster: the region is
 * plain memory, and the "nodes" are allocator instances on it (threads, for the collective
 * calls and the concurrent runs). Atomic instructions on plain memory are what the DSM makes
 * them cluster-wide, so the cross-node paths (remote frees, the heap lock, the collective
 * records) run here exactly as on a cluster.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "alloc.h"
#include "udsm.h"

#define PS 4096u
#define MAXN 8

static uint8_t *region;
static uint64_t npages;
static struct alloc *nodes[MAXN];
static unsigned nnodes;
static pthread_barrier_t bar;
static int log_errors;
static char last_err[512];
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

static void log_sink(void *arg, int level, const char *msg)
{
	(void)arg;
	if (level > UDSM_LOG_ERR)
		return;
	pthread_mutex_lock(&log_mu);
	log_errors++;
	snprintf(last_err, sizeof(last_err), "%s", msg);
	pthread_mutex_unlock(&log_mu);
}

static int errors(void)
{
	int n;

	pthread_mutex_lock(&log_mu);
	n = log_errors;
	pthread_mutex_unlock(&log_mu);
	return n;
}

static int test_barrier(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&bar);
	return 0;
}

/* With test_chunk set, the nodes see a chunk-cyclic home layout of test_chunk pages (as the
 * engine's default layout) instead of page % nodes. */
static unsigned test_chunk;

static unsigned chunk_home(void *arg, uint64_t page)
{
	(void)arg;
	return (unsigned)(page / test_chunk % nnodes);
}

/* Nodes that died, as env.died reports them (test_heap_holder_died). */
static uint64_t died_mask;

static bool test_died(void *arg, unsigned n)
{
	(void)arg;
	return (__atomic_load_n(&died_mask, __ATOMIC_RELAXED) >> n) & 1;
}

/* A fresh zeroed region of @pages pages shared by @n nodes. */
static void setup_cluster(uint64_t pages, unsigned n)
{
	region = aligned_alloc(PS, pages * PS);
	assert_non_null(region);
	memset(region, 0, pages * PS);
	npages = pages;
	nnodes = n;
	pthread_barrier_init(&bar, NULL, n);
	for (unsigned i = 0; i < n; i++) {
		struct alloc_env env = { .base = region, .npages = pages, .ps = PS, .self = i,
					 .nodes = n, .barrier = test_barrier, .died = test_died };

		if (test_chunk) {
			env.home = chunk_home;
			env.home_chunk = test_chunk;
		}

		assert_int_equal(alloc_create(&env, &nodes[i]), 0);
	}
	log_errors = 0;
}

static void teardown_cluster(void)
{
	for (unsigned i = 0; i < nnodes; i++)
		alloc_destroy(nodes[i]);
	pthread_barrier_destroy(&bar);
	free(region);
}

static int in_heap(const void *p, size_t len)
{
	uint64_t heap = alloc_heap_pages(npages, PS, nnodes);

	return (const uint8_t *)p >= region && (const uint8_t *)p + len <= region + heap * PS;
}

static void test_layout(void **state)
{
	(void)state;
	/* 1 header page, one page per node, 8 bytes of page map per page of the region */
	assert_int_equal(alloc_meta_pages(256, PS, 4), 1 + 4 + 1);
	assert_int_equal(alloc_meta_pages(513, PS, 2), 1 + 2 + 2);
	assert_int_equal(alloc_meta_pages(1ull << 24, PS, 64), 1 + 64 + 32768);
	assert_int_equal(alloc_heap_pages(256, PS, 4), 250);
	assert_int_equal(alloc_heap_pages(5, PS, 4), 0);
	/* a region with no room for a heap: ENOMEM, no crash */
	setup_cluster(5, 4);
	errno = 0;
	assert_null(alloc_malloc(nodes[0], 16));
	assert_int_equal(errno, ENOMEM);
	teardown_cluster();
}

static size_t size_at(size_t i)
{
	return i <= 2048 ? i : 2048 + (i - 2048) * 331;
}

/* Every small size once and large ones up to 40 KB: aligned, the usable size covers it,
 * blocks never overlap. */
static void test_sizes(void **state)
{
	enum { N = 2048 + 120 };
	static uint8_t *blk[N + 1];

	(void)state;
	setup_cluster(8192, 2);
	for (size_t i = 1; i <= N; i++) {
		size_t sz = size_at(i);

		blk[i] = alloc_malloc(nodes[0], sz);
		assert_non_null(blk[i]);
		assert_true(in_heap(blk[i], sz));
		assert_int_equal((uintptr_t)blk[i] % 16, 0);
		if (sz > 2048)
			assert_int_equal((uintptr_t)blk[i] % PS, 0);
		assert_true(alloc_usable(nodes[0], blk[i]) >= sz);
		assert_true(alloc_usable(nodes[0], blk[i]) < 2 * sz + 16 || sz > 2048);
		memset(blk[i], (int)(i & 0xff), sz);
	}
	for (size_t i = 1; i <= N; i++) {
		for (size_t j = 0; j < size_at(i); j++)
			assert_int_equal(blk[i][j], i & 0xff);
		alloc_free(nodes[0], blk[i]);
	}
	assert_int_equal(errors(), 0);
	teardown_cluster();
}

/* A freed block is reused by its class (LIFO), a freed large run by the next large block. */
static void test_reuse(void **state)
{
	void *a, *b, *l1, *l2;

	(void)state;
	setup_cluster(256, 2);
	a = alloc_malloc(nodes[0], 100);
	alloc_free(nodes[0], a);
	b = alloc_malloc(nodes[0], 97);
	assert_ptr_equal(a, b);
	l1 = alloc_malloc(nodes[0], 3 * PS);
	alloc_free(nodes[0], l1);
	l2 = alloc_malloc(nodes[0], 2 * PS + 1);
	assert_ptr_equal(l1, l2);
	assert_int_equal(alloc_usable(nodes[0], l2), 3 * PS);
	/* runs coalesce: two freed neighbours make room for a bigger one */
	alloc_free(nodes[0], l2);
	l1 = alloc_malloc(nodes[0], PS * 2);
	l2 = alloc_malloc(nodes[0], PS * 2);
	assert_int_equal((uint8_t *)l1 - (uint8_t *)l2 == 2 * PS ||
			 (uint8_t *)l2 - (uint8_t *)l1 == 2 * PS, 1);
	alloc_free(nodes[0], l1);
	alloc_free(nodes[0], l2);
	a = alloc_malloc(nodes[0], 4 * PS);
	assert_ptr_equal(a, l1 < l2 ? l1 : l2);
	assert_int_equal(errors(), 0);
	teardown_cluster();
}

static void test_bad_frees(void **state)
{
	uint8_t *a, *l, stack;
	int e;

	(void)state;
	setup_cluster(256, 2);
	a = alloc_malloc(nodes[0], 64);
	l = alloc_malloc(nodes[0], 5000);
	alloc_free(nodes[0], NULL); /* no-op */
	assert_int_equal(errors(), 0);
	alloc_free(nodes[0], &stack);
	assert_int_equal(errors(), 1);
	alloc_free(nodes[0], a + 16); /* inside a block of 64 */
	assert_int_equal(errors(), 2);
	alloc_free(nodes[0], l + 8); /* inside a large block */
	assert_int_equal(errors(), 3);
	alloc_free(nodes[0], region); /* a page never handed out */
	assert_int_equal(errors(), 4);
	alloc_free(nodes[0], a);
	alloc_free(nodes[0], a); /* double free, same node */
	assert_int_equal(errors(), 5);
	assert_non_null(strstr(last_err, "double free"));
	alloc_free(nodes[1], a); /* double free from another node */
	assert_int_equal(errors(), 6);
	alloc_free(nodes[0], l);
	alloc_free(nodes[1], l);
	assert_int_equal(errors(), 7);
	/* the lists are intact: the block comes back once, then fresh ones */
	assert_ptr_equal(alloc_malloc(nodes[0], 64), a);
	assert_ptr_not_equal(alloc_malloc(nodes[0], 64), a);
	e = errors();
	alloc_free(nodes[0], region + alloc_heap_pages(npages, PS, 2) * PS); /* metadata */
	assert_int_equal(errors(), e + 1);
	teardown_cluster();
}

/* Node 1 frees node 0's blocks: node 0 gets exactly them back on its next allocations. */
static void test_remote_free(void **state)
{
	enum { N = 300 };
	void *mine[N], *again[N];

	(void)state;
	setup_cluster(512, 2);
	for (int i = 0; i < N; i++)
		mine[i] = alloc_malloc(nodes[0], 48);
	for (int i = 0; i < N; i++)
		alloc_free(nodes[1], mine[i]);
	for (int i = 0; i < N; i++)
		again[i] = alloc_malloc(nodes[0], 48);
	for (int i = 0; i < N; i++) {
		int found = 0;

		for (int j = 0; j < N && !found; j++)
			found = again[j] == mine[i];
		assert_true(found);
	}
	/* node 1 allocating never gets node 0's blocks */
	for (int i = 0; i < N; i++) {
		void *p = alloc_malloc(nodes[1], 48);

		for (int j = 0; j < N; j++)
			assert_ptr_not_equal(p, mine[j]);
	}
	assert_int_equal(errors(), 0);
	teardown_cluster();
}

/*
 * A node that died holding the heap lock (the first word of the header page, the region's
 * last: its id + 1) never releases it. Whatever needs the shared heap fails with EIO instead
 * of waiting forever, logged once; blocks already in this node's lists still serve.
 */
static void test_heap_holder_died(void **state)
{
	uint64_t *lock, *entry;
	void *small, *p, *run;
	uint64_t e;

	(void)state;
	setup_cluster(512, 2);
	lock = (uint64_t *)(region + (npages - 1) * PS);
	small = alloc_malloc(nodes[0], 48); /* takes a span (and the lock, released) */
	assert_non_null(small);
	run = alloc_malloc(nodes[0], 2 * PS);
	assert_non_null(run);
	assert_int_equal(*lock, 0);
	*lock = 2; /* node 1 holds it... */
	died_mask = 2; /* ...and died */
	errno = 0;
	assert_null(alloc_malloc(nodes[0], 3 * PS)); /* a run of pages */
	assert_int_equal(errno, EIO);
	assert_int_equal(errors(), 1);
	errno = 0;
	assert_null(alloc_malloc(nodes[0], 1000)); /* a class with no span yet */
	assert_int_equal(errno, EIO);
	assert_int_equal(errors(), 1); /* logged once */
	p = alloc_malloc(nodes[0], 48); /* from the span taken before */
	assert_non_null(p);
	alloc_free(nodes[0], p);
	alloc_free(nodes[0], small);
	/* A run cannot go back to the heap: it stays allocated (leaked), not "freed twice". */
	entry = (uint64_t *)(region + (npages - 1 - 2 - (npages * 8 + PS - 1) / PS) * PS) +
		((uint8_t *)run - region) / PS; /* the run's head in the page map (alloc.c) */
	e = *entry;
	assert_int_not_equal(e, 0);
	alloc_free(nodes[0], run);
	assert_int_equal(*entry, e);
	assert_int_equal(errors(), 1);
	/* A holder that is alive is waited for (not tested here: it would wait); once the
	 * word is free again, runs are allocated as before. */
	*lock = 0;
	died_mask = 0;
	p = alloc_malloc(nodes[0], 3 * PS);
	assert_non_null(p);
	alloc_free(nodes[0], p);
	alloc_free(nodes[0], run); /* the run leaked above is still a run: freed now */
	assert_int_equal(*entry, 0);
	assert_int_equal(errors(), 1);
	teardown_cluster();
}

/* Blocks up to 512 bytes come from one-page spans homed (page % nodes) at their node. */
static void test_home(void **state)
{
	enum { N = 4 };
	static uint8_t used[1024];
	uint64_t pages = 0;

	(void)state;
	setup_cluster(1024, N);
	for (int round = 0; round < 200; round++) {
		for (unsigned k = 0; k < N; k++) {
			size_t sz = 16 + (size_t)(round * 37 + k * 11) % 497;
			uint8_t *p = alloc_malloc(nodes[k], sz);

			assert_non_null(p);
			assert_int_equal((size_t)(p - region) / PS % N, k);
			pages += !used[(p - region) / PS];
			used[(p - region) / PS] = 1;
		}
	}
	/* the pages the bump mark skipped are not lost: one-page blocks fill them all, and the
	 * spans the nodes took ahead are there for their classes */
	while (alloc_malloc(nodes[1], PS))
		pages++;
	assert_int_equal(errno, ENOMEM);
	for (unsigned k = 0; k < N; k++) {
		for (size_t sz = 16; sz <= 512; sz += 16) {
			uint8_t *p;

			while ((p = alloc_malloc(nodes[k], sz))) {
				assert_int_equal((size_t)(p - region) / PS % N, k);
				pages += !used[(p - region) / PS];
				used[(p - region) / PS] = 1;
			}
		}
	}
	assert_int_equal(pages, alloc_heap_pages(1024, PS, N));
	assert_int_equal(errors(), 0);
	teardown_cluster();
}

/* With a chunked layout, spans and large blocks of up to a chunk are homed at their node on
 * every page; larger blocks are spread over the layout; the pages skipped stay usable. */
static void test_home_chunk(void **state)
{
	enum { N = 3, C = 4 };
	static uint8_t used[2048];
	uint64_t pages = 0, heap;
	uint8_t *p;

	(void)state;
	test_chunk = C;
	setup_cluster(2048, N);
	heap = alloc_heap_pages(2048, PS, N);
	for (int round = 0; round < 60; round++) {
		for (unsigned k = 0; k < N; k++) {
			static const size_t sizes[] = { 40, 500, 2000, 3 * PS, 4 * PS, 7 * PS };
			size_t sz = sizes[(round + k) % 6], len = (sz + PS - 1) / PS;
			size_t pg;

			p = alloc_malloc(nodes[k], sz);
			assert_non_null(p);
			pg = (size_t)(p - region) / PS;
			for (size_t i = 0; i < len && len <= C; i++)
				assert_int_equal(chunk_home(NULL, pg + i), k);
			for (size_t i = 0; i < len; i++) {
				pages += !used[pg + i];
				used[pg + i] = 1;
			}
		}
	}
	/* What the bump mark skipped is there for anyone's first fit: one-page blocks of every
	 * node fill the heap completely. */
	for (unsigned k = 0; k < N; k++)
		while ((p = alloc_malloc(nodes[k], PS))) {
			assert_int_equal(chunk_home(NULL, (size_t)(p - region) / PS), k);
			pages += !used[(p - region) / PS];
			used[(p - region) / PS] = 1;
		}
	assert_int_equal(errno, ENOMEM);
	for (unsigned k = 0; k < N; k++)
		for (size_t sz = 16; sz <= 2048; sz += 16)
			while ((p = alloc_malloc(nodes[k], sz))) {
				pages += !used[(p - region) / PS];
				used[(p - region) / PS] = 1;
			}
	assert_int_equal(pages, heap);
	assert_int_equal(errors(), 0);
	teardown_cluster();
	test_chunk = 0;
}

static void test_enomem(void **state)
{
	void *p, *held[64];
	int n = 0;

	(void)state;
	setup_cluster(64, 2); /* heap of 64 - 4 pages */
	while ((p = alloc_malloc(nodes[0], 4 * PS)))
		held[n++] = p;
	assert_int_equal(errno, ENOMEM);
	assert_int_equal(n, 15);
	for (int i = 0; i < n; i++)
		alloc_free(nodes[1], held[i]);
	assert_non_null(alloc_malloc(nodes[0], 60 * PS));
	assert_null(alloc_malloc(nodes[1], 16)); /* not one page left for a span */
	assert_int_equal(errno, ENOMEM);
	assert_int_equal(errors(), 0);
	teardown_cluster();
}

/* ---- concurrent nodes ------------------------------------------------------------------- */

struct worker {
	unsigned node;
	unsigned seed;
	int fails;
};

#define SLOTS 512
static uint8_t *volatile shared_slot[SLOTS]; /* blocks any node may free */
static size_t slot_size[SLOTS];
static pthread_mutex_t slot_mu = PTHREAD_MUTEX_INITIALIZER;

static unsigned rnd(unsigned *s)
{
	*s = *s * 1103515245u + 12345u;
	return *s >> 8;
}

/* Random malloc/free on every node and thread; blocks are left in shared slots so that any
 * node frees them. Each block is filled with a byte pattern of its own and checked before it is
 * freed: two live blocks that overlap would break a pattern. */
static void *churn(void *arg)
{
	struct worker *w = arg;

	for (int it = 0; it < 20000; it++) {
		unsigned s = rnd(&w->seed) % SLOTS, r = rnd(&w->seed);
		size_t sz = r % 8 ? 1 + r % 700 : 2049 + r % (3 * PS);
		uint8_t *old, *p;
		size_t oldsz;

		pthread_mutex_lock(&slot_mu);
		old = shared_slot[s];
		oldsz = slot_size[s];
		shared_slot[s] = NULL;
		pthread_mutex_unlock(&slot_mu);
		if (old) {
			uint8_t pat = (uint8_t)((uintptr_t)old >> 4);

			for (size_t i = 0; i < oldsz; i++)
				w->fails += old[i] != pat;
			alloc_free(nodes[w->node], old);
			continue;
		}
		p = alloc_malloc(nodes[w->node], sz);
		if (!p) {
			w->fails++;
			continue;
		}
		memset(p, (uint8_t)((uintptr_t)p >> 4), sz);
		pthread_mutex_lock(&slot_mu);
		if (shared_slot[s]) { /* taken meanwhile: give ours back */
			pthread_mutex_unlock(&slot_mu);
			alloc_free(nodes[w->node], p);
			continue;
		}
		shared_slot[s] = p;
		slot_size[s] = sz;
		pthread_mutex_unlock(&slot_mu);
	}
	return NULL;
}

static void test_concurrent(void **state)
{
	enum { NODES = 4, THREADS = 3 };
	pthread_t t[NODES * THREADS];
	struct worker w[NODES * THREADS];

	(void)state;
	setup_cluster(8192, NODES);
	for (unsigned i = 0; i < NODES * THREADS; i++) {
		w[i] = (struct worker){ .node = i % NODES, .seed = 7 + i };
		pthread_create(&t[i], NULL, churn, &w[i]);
	}
	for (unsigned i = 0; i < NODES * THREADS; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].fails, 0);
	}
	for (unsigned s = 0; s < SLOTS; s++) {
		alloc_free(nodes[s % NODES], shared_slot[s]);
		shared_slot[s] = NULL;
	}
	assert_int_equal(errors(), 0);
	teardown_cluster();
}

/* ---- collective calls ------------------------------------------------------------------- */

struct coll_case {
	unsigned node;
	size_t sizes[4]; /* this node's coalloc sizes; a 0 ends the list */
	void *got[4];
	int err[4];
	void *again;
	int again_err, cofree_err;
};

static void *coll_node(void *arg)
{
	struct coll_case *c = arg;
	struct alloc *a = nodes[c->node];

	for (int i = 0; i < 4 && c->sizes[i]; i++) {
		errno = 0;
		c->got[i] = alloc_coalloc(a, c->sizes[i], UDSM_PLACE_BLOCK);
		c->err[i] = errno;
	}
	return NULL;
}

static void run_coll(struct coll_case *cc, unsigned n)
{
	pthread_t t[MAXN];

	for (unsigned i = 0; i < n; i++)
		pthread_create(&t[i], NULL, coll_node, &cc[i]);
	for (unsigned i = 0; i < n; i++)
		pthread_join(t[i], NULL);
}

struct reuse_case {
	unsigned node;
	uint8_t *first, *second;
	int free_err, ok_zero;
};

static void *reuse_node(void *arg)
{
	struct reuse_case *c = arg;
	struct alloc *a = nodes[c->node];

	c->first = alloc_coalloc(a, 3 * PS, UDSM_PLACE_BLOCK);
	if (c->node == 1)
		memset(c->first, 0xab, 3 * PS); /* one node writes all of it */
	test_barrier(NULL);
	c->ok_zero = c->first[PS + 17] == 0xab; /* every node reads it */
	c->free_err = alloc_cofree(a, c->first);
	c->second = alloc_coalloc(a, 3 * PS - 100, UDSM_PLACE_BLOCK);
	for (size_t i = 0; i < 3 * PS - 100; i++)
		c->ok_zero &= c->second[i] == 0;
	return NULL;
}

static void test_coalloc(void **state)
{
	enum { N = 4 };
	struct coll_case cc[N];
	struct reuse_case rc[N];
	pthread_t t[N];

	(void)state;
	setup_cluster(512, N);
	for (unsigned i = 0; i < N; i++)
		cc[i] = (struct coll_case){ .node = i, .sizes = { 1, 10000, 2 * PS } };
	run_coll(cc, N);
	for (unsigned i = 0; i < N; i++) {
		for (int k = 0; k < 3; k++) {
			assert_non_null(cc[i].got[k]);
			assert_ptr_equal(cc[i].got[k], cc[0].got[k]);
			assert_int_equal((uintptr_t)cc[i].got[k] % PS, 0);
		}
	}
	for (size_t j = 0; j < 10000; j++)
		assert_int_equal(((uint8_t *)cc[0].got[1])[j], 0);
	/* a coalloc block is not udsm_free's */
	alloc_free(nodes[2], cc[0].got[1]);
	assert_int_equal(errors(), 1);

	for (unsigned i = 0; i < N; i++)
		rc[i] = (struct reuse_case){ .node = i };
	for (unsigned i = 0; i < N; i++)
		pthread_create(&t[i], NULL, reuse_node, &rc[i]);
	for (unsigned i = 0; i < N; i++)
		pthread_join(t[i], NULL);
	for (unsigned i = 0; i < N; i++) {
		assert_int_equal(rc[i].free_err, 0);
		assert_ptr_equal(rc[i].first, rc[0].first);
		assert_ptr_equal(rc[i].second, rc[0].first); /* the space is reused ... */
		assert_true(rc[i].ok_zero);                  /* ... zeroed */
	}
	teardown_cluster();
}

/* A node calling another size: every node gets EINVAL, nothing leaks, and the broken
 * collective sequence is reported from then on. */
static void test_coalloc_mismatch(void **state)
{
	enum { N = 3 };
	struct coll_case cc[N];
	uint64_t before;

	(void)state;
	setup_cluster(256, N);
	for (unsigned i = 0; i < N; i++)
		cc[i] = (struct coll_case){ .node = i, .sizes = { PS, i == 2 ? 2 * PS : PS, PS } };
	run_coll(cc, N);
	for (unsigned i = 0; i < N; i++) {
		assert_non_null(cc[i].got[0]);
		assert_null(cc[i].got[1]);
		assert_int_equal(cc[i].err[1], EINVAL);
		assert_null(cc[i].got[2]); /* the sequences differ from then on */
		assert_int_equal(cc[i].err[2], EINVAL);
	}
	assert_true(errors() >= 2);
	/* the refused blocks were given back: the next large block lands right below the first */
	before = (uint64_t)(uintptr_t)cc[0].got[0];
	assert_int_equal((uint64_t)(uintptr_t)alloc_malloc(nodes[0], 3000), before - PS);
	teardown_cluster();
}

/* A size too large for any heap goes through the collective like any other: ENOMEM on every
 * node when they agree, and the sequence goes on; EINVAL on every node when only one asks for
 * it (that node used to return before the barriers, and the others waited for it). */
static void test_coalloc_huge(void **state)
{
	enum { N = 3 };
	struct coll_case cc[N];

	(void)state;
	setup_cluster(256, N);
	for (unsigned i = 0; i < N; i++)
		cc[i] = (struct coll_case){ .node = i, .sizes = { SIZE_MAX, SIZE_MAX - PS / 2, PS } };
	run_coll(cc, N);
	for (unsigned i = 0; i < N; i++) {
		assert_null(cc[i].got[0]);
		assert_int_equal(cc[i].err[0], ENOMEM);
		assert_null(cc[i].got[1]);
		assert_int_equal(cc[i].err[1], ENOMEM);
		assert_non_null(cc[i].got[2]);
		assert_ptr_equal(cc[i].got[2], cc[0].got[2]);
	}
	teardown_cluster();

	setup_cluster(256, N);
	for (unsigned i = 0; i < N; i++)
		cc[i] = (struct coll_case){ .node = i, .sizes = { i == 1 ? SIZE_MAX : PS } };
	run_coll(cc, N);
	for (unsigned i = 0; i < N; i++) {
		assert_null(cc[i].got[0]);
		assert_int_equal(cc[i].err[0], EINVAL);
	}
	teardown_cluster();
}

/* Re-homing (env.rehome) that fails once, at step rh_fail_step on node rh_fail_node. */
static unsigned rh_fail_node;
static int rh_fail_step, rh_fail_left;
static unsigned rh_calls[MAXN][4];

static int test_rehome(void *arg, int step, uint64_t first, uint64_t count, int policy)
{
	unsigned self = (unsigned)(uintptr_t)arg;

	(void)first, (void)count, (void)policy;
	if (step >= 1 && step <= 3)
		__atomic_fetch_add(&rh_calls[self][step], 1, __ATOMIC_RELAXED);
	if (self == rh_fail_node && step == rh_fail_step &&
	    __atomic_fetch_sub(&rh_fail_left, 1, __ATOMIC_RELAXED) > 0)
		return -EIO;
	return 0;
}

/*
 * A node whose freeze or re-homing of a collective block fails: every node returns EIO (it
 * used to be only logged on the failing node, and every node returned the block), each node
 * thaws what it froze, and the next collective calls work on every node (both record slots
 * reused). A failed freeze stops every node's re-homing; a failed re-homing leaks the block.
 */
static void test_coalloc_rehome_fails(void **state)
{
	enum { N = 3 };
	struct coll_case cc[N];

	(void)state;
	for (int step = ALLOC_RH_FREEZE; step <= ALLOC_RH_REHOME; step++) {
		setup_cluster(256, N);
		for (unsigned i = 0; i < N; i++) {
			struct alloc_env env = { .base = region, .npages = npages, .ps = PS,
						 .self = i, .nodes = N, .barrier = test_barrier,
						 .rehome = test_rehome,
						 .place_arg = (void *)(uintptr_t)i };

			alloc_destroy(nodes[i]);
			assert_int_equal(alloc_create(&env, &nodes[i]), 0);
		}
		memset(rh_calls, 0, sizeof(rh_calls));
		rh_fail_node = 1;
		rh_fail_step = step;
		rh_fail_left = 1;
		for (unsigned i = 0; i < N; i++)
			cc[i] = (struct coll_case){ .node = i, .sizes = { 2 * PS, PS, PS } };
		run_coll(cc, N);
		for (unsigned i = 0; i < N; i++) {
			assert_null(cc[i].got[0]);
			assert_int_equal(cc[i].err[0], EIO);
			for (int k = 1; k < 3; k++) {
				assert_non_null(cc[i].got[k]);
				assert_ptr_equal(cc[i].got[k], cc[0].got[k]);
			}
			assert_int_equal(rh_calls[i][ALLOC_RH_FREEZE], 3);
			assert_int_equal(rh_calls[i][ALLOC_RH_REHOME],
					 step == ALLOC_RH_FREEZE ? 2 : 3);
			assert_int_equal(rh_calls[i][ALLOC_RH_THAW], 3);
		}
		assert_true(errors() >= 2); /* the failing node's line and node 0's */
		teardown_cluster();
	}
	rh_fail_left = 0;
}

/* Another operation in the same place of the sequence: node 1 allocates while the others free.
 * Every node gets EINVAL, the block is not freed and nothing is allocated. */
struct order_case {
	unsigned node;
	void *blk;
	int free_err, alloc_err;
	void *got;
};

static void *order_node(void *arg)
{
	struct order_case *c = arg;

	c->blk = alloc_coalloc(nodes[c->node], PS, UDSM_PLACE_BLOCK);
	if (c->node == 1) {
		errno = 0;
		c->got = alloc_coalloc(nodes[c->node], PS, UDSM_PLACE_BLOCK);
		c->alloc_err = errno;
	} else {
		c->free_err = alloc_cofree(nodes[c->node], c->blk);
	}
	return NULL;
}

static void test_coll_order(void **state)
{
	enum { N = 3 };
	struct order_case oc[N];
	pthread_t t[N];

	(void)state;
	setup_cluster(256, N);
	for (unsigned i = 0; i < N; i++)
		oc[i] = (struct order_case){ .node = i };
	for (unsigned i = 0; i < N; i++)
		pthread_create(&t[i], NULL, order_node, &oc[i]);
	for (unsigned i = 0; i < N; i++)
		pthread_join(t[i], NULL);
	assert_non_null(oc[0].blk);
	assert_int_equal(oc[0].free_err, -EINVAL);
	assert_int_equal(oc[2].free_err, -EINVAL);
	assert_null(oc[1].got);
	assert_int_equal(oc[1].alloc_err, EINVAL);
	assert_int_equal(alloc_usable(nodes[0], oc[0].blk), PS); /* still allocated */
	assert_non_null(strstr(last_err, "udsm_co")); /* both calls named */
	/* nothing else was taken: node 2's next one-page block comes from the first page below
	 * the block that node 2 homes (page % N: these nodes have no engine) */
	uint64_t q = (uint64_t)((uint8_t *)oc[0].blk - region) / PS - 1;

	while (q % N != 2)
		q--;
	assert_ptr_equal(alloc_malloc(nodes[2], 3000), region + q * PS);
	teardown_cluster();
}

/* cofree of something that is not a coalloc block: EINVAL everywhere, nothing freed. */
struct badfree_case {
	unsigned node;
	void *p;
	int err;
};

static void *badfree_node(void *arg)
{
	struct badfree_case *c = arg;

	c->err = alloc_cofree(nodes[c->node], c->p);
	return NULL;
}

static void test_cofree_bad(void **state)
{
	enum { N = 2 };
	struct badfree_case bc[N];
	pthread_t t[N];
	void *m;

	(void)state;
	setup_cluster(256, N);
	m = alloc_malloc(nodes[0], 5000);
	for (unsigned i = 0; i < N; i++)
		bc[i] = (struct badfree_case){ .node = i, .p = m };
	for (unsigned i = 0; i < N; i++)
		pthread_create(&t[i], NULL, badfree_node, &bc[i]);
	for (unsigned i = 0; i < N; i++)
		pthread_join(t[i], NULL);
	for (unsigned i = 0; i < N; i++)
		assert_int_equal(bc[i].err, -EINVAL);
	assert_int_equal(alloc_usable(nodes[0], m), 2 * PS); /* still allocated */
	teardown_cluster();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_reuse),
		cmocka_unit_test(test_bad_frees),
		cmocka_unit_test(test_remote_free),
		cmocka_unit_test(test_heap_holder_died),
		cmocka_unit_test(test_home),
		cmocka_unit_test(test_home_chunk),
		cmocka_unit_test(test_enomem),
		cmocka_unit_test(test_concurrent),
		cmocka_unit_test(test_coalloc),
		cmocka_unit_test(test_coalloc_mismatch),
		cmocka_unit_test(test_coalloc_huge),
		cmocka_unit_test(test_coalloc_rehome_fails),
		cmocka_unit_test(test_coll_order),
		cmocka_unit_test(test_cofree_bad),
	};

	udsm_set_log_func(log_sink, NULL, UDSM_LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
