/* SPDX-License-Identifier: MIT */
/*
 * engine.c - the MSI protocol engine (see engine.h and docs/PROTOCOL.md).
 *
 * The protocol is home-based and fully serialised per page at the home node:
 *  - a requester sends GET_S or GET_M to the page's home and waits;
 *  - the home serves one request per page at a time; a request that meets a busy entry waits
 *    in that entry's FIFO queue, it is never dropped or retried;
 *  - an owner answers FETCH with the page and the home passes it on; when both the owner and
 *    the requester are other nodes, the home has the owner forward the page straight to the
 *    requester instead (FWD, see "Forwarding"). While no node owns the page the home keeps the
 *    latest contents (or just the fact that they are all zero), so a read of a Shared page
 *    costs one round trip.
 * Links are FIFO (TCP) and no node ever drops a copy on its own, so everything the home sends
 * to one node about one page arrives in the order the home decided it. That is what makes the
 * requester side simple: an INV can only reach a node that the home counts as a sharer, i.e. a
 * node in S or SM_A, and a GRANT can only reach a node that is still a sharer.
 *
 * Messages a node sends to itself (it is the home of a page it faults on) go through a local
 * FIFO drained after every event, so the home logic never runs re-entrantly.
 */
#include "core/engine.h"
#include "core/place.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NODE_NONE 0xffu

/* struct dir.flags */
#define DIR_ZERO 0x01u       /* the home copy is all zeros (no buffer kept) */
#define DIR_LOST 0x02u       /* the only copy died with its owner: requests get NACK */
#define DIR_FETCH 0x04u      /* busy transaction waits for FETCH_REPLY from the owner */
#define DIR_REQ_SHARER 0x08u /* busy GET_M: the requester was a sharer when served */
#define DIR_MIGR 0x10u       /* migratory: each reader writes next, so readers get it writable */
#define DIR_MXFER 0x20u      /* busy GET_S is served as a migratory (exclusive) transfer */
#define DIR_WSHARED 0x40u    /* a write took the page from another node: others write it too */

/* eng.fw[page]: a forward in progress at the home (see "Forwarding") */
#define FW_ON 0x01u     /* a forward is in progress (the entry is busy) */
#define FW_TO_I 0x02u   /* the owner lets the page go (GET_M, or a migratory GET_S) */
#define FW_REPLY 0x04u  /* the owner's FWD_REPLY arrived */
#define FW_OGONE 0x08u  /* the owner died before its FWD_REPLY */
#define FW_ACK 0x10u    /* the requester installed the page (FWD_ACK) */
#define FW_NONE 0x20u   /* the requester got nothing from the (dead) owner (FWD_NONE) */
#define FW_RGONE 0x40u  /* the requester died */
#define FW_RECALL 0x80u /* waiting for the requester's copy (RECALL) */

#define RA_AHEAD 4u    /* read-ahead asks for at most this many windows past the last fault */
#define RA_TRIG_MAX 2u /* read-ahead bursts on their way at most (each arrival asks for one) */

/*
 * Directory entry of a page homed here.
 * Invariant: owner == NODE_NONE  =>  copy or DIR_ZERO holds the latest contents (unless LOST).
 * Invariant: owner != NODE_NONE  =>  sharers == 0 and no copy is kept.
 * Invariant: busy == GET_M && !DIR_FETCH  =>  the INV_ACKs still awaited are exactly
 *            sharers & ~bit(req).
 * Locking: owned by the engine thread.
 */
struct dir {
	uint64_t sharers;
	uint8_t *copy;
	uint32_t qhead, qtail; /* pending requests: 1-based indices into eng.q, 0 = none */
	uint8_t owner;
	uint8_t busy; /* 0, WIRE_GET_S or WIRE_GET_M */
	uint8_t req;  /* requester of the busy transaction */
	uint8_t flags;
	uint8_t last_rd; /* the last node that read the page from an exclusive owner */
	uint64_t mhash;  /* migratory: hash of the contents at the last exclusive hand-over */
};

struct qent {
	uint32_t next;
	uint8_t src, type;
};

struct lmsg {
	struct wire_msg m;
	uint8_t *data;
};

/* A message kept back until a hand-over it depends on ends (see stash()). */
struct smsg {
	unsigned src;
	struct wire_msg m;
	uint8_t *data;
};

/* Graceful leave of this node (eng_leave). LV_HAND: the entries are going to the successor,
 * paced by eng_ops.room (comparisons like lv >= LV_ACKS rely on this order). */
enum { LV_NONE, LV_WANT, LV_ACKS, LV_HAND, LV_DONE };

struct eng {
	const struct eng_ops *ops;
	void *ctx;
	unsigned self, nodes;
	uint64_t npages;
	uint32_t ps;
	int ra_max;
	bool migratory;
	bool forward; /* 3-hop forwarding (!eng_config.no_forward) */

	uint8_t *st;     /* local state per page (enum eng_state); atomics for readers */
	uint64_t ntrans; /* pages in IS_D, IM_D or SM_A: requests of ours in flight */
	uint64_t nbusy;  /* busy directory entries */
	/*
	 * The home map (core/place.h): the origin of every page, the same on every node. The
	 * home of a page is its origin resolved through fwd. Written by the engine thread only,
	 * under map_lock; eng_home() on other threads reads under map_lock.
	 */
	struct place map;
	int map_lock;
	/*
	 * Directory entries of the pages homed here, indexed by page in leaves of DIR_LEAF
	 * entries allocated on first use (memory follows the pages actually served). An entry
	 * of a page homed elsewhere is in its initial state (zeros, nobody), or absent.
	 */
	struct dir **leaf;
	uint64_t nleaf;
	uint8_t fwd[UDSM_MAX_NODES]; /* successor of a node that left, NODE_NONE */
	uint64_t leaving;            /* nodes that sent LEAVE and no BYE yet */
	/* Nodes that said BYE: they own nothing any more, but a PUTM of theirs may still wait
	 * in the stash for the entry's hand-over to end (it crossed the BYE of another). */
	uint64_t byed;
	uint64_t died_leaving; /* nodes lost in the middle of their leave */

	/* requester side: requests kept back while their home hands over (1 per page) */
	uint8_t *defer;
	uint64_t ndefer;
	bool bar_defer; /* our barrier arrival waits for the coordinator's hand-over */

	/* home side: messages for a home in transition, replayed when it ends */
	struct smsg *stash;
	size_t nstash, stash_cap;

	/* leaving */
	int lv;            /* LV_* */
	uint64_t lv_acked; /* LEAVE_ACKs received */
	/* The hand-over goes in steps as the links drain (eng_ops.room): the next page to give
	 * back (PUTM), LEAVE_ACKs owed until the last PUTM is out, the successor and the next
	 * entry to send it, the node whose link has no room now (-1: none), a page buffer. */
	uint64_t lv_pb, lv_ackdue, lv_ho, lv_nadopt;
	uint64_t lv_moved; /* PUTMs and ADOPTs sent, LEAVE_ACKs received: eng_leave_moved() */
	unsigned lv_succ;
	int lv_wait;
	uint8_t *lv_buf;

	struct qent *q; /* pool of queue entries; q[0] unused */
	uint32_t qcap, qfree;

	struct lmsg *lq; /* messages to self, a ring */
	size_t lq_head, lq_len, lq_cap;

	uint64_t alive; /* bit per node */
	bool degraded;  /* a node was lost: barriers fail from now on */

	/* barrier: this node */
	bool bar_waiting;
	uint64_t bar_epoch; /* barriers entered so far */
	/* barrier: the coordinator (node 0 or its successor) collects arrivals */
	uint64_t bar_cur, bar_arrived;
	bool bar_state; /* we hold the coordinator's state: node 0, or got it with ADOPT_DONE */
	/* How every node waits in the next barrier (eng_barrier_mode()): what this node's
	 * releases announce as coordinator, what the last release it got announced; -1: no word */
	int8_t bar_mode_out, bar_mode_in;

	/* page buffers (home copies, local messages): the slabs they are cut from; the latest
	 * slab's size in pages, its next uncut buffer, how many are left and how many of those
	 * have been written; the released buffers, a list threaded through them */
	struct eng_slab *slab;
	size_t nslab, slab_cap;
	unsigned slab_pages, slab_left, slab_touched;
	uint8_t *slab_next, *slab_cur; /* slab_cur: the slab being cut, never trimmed */
	void *pool;
	uint64_t nbuf;     /* buffers cut or taken from the free list, not released */
	uint64_t slab_all; /* buffers in all slabs, cut or not */
	uint64_t trim_at;  /* free buffers at which slab_trim() runs next */

	/* 3-hop forwarding, home side (see "Forwarding" below): per page, FW_* bits of a
	 * forward in progress and the owner forwarding; per requester, the nodes it told us
	 * are dead to it (FWD_NONE), whose pages it gets through us instead. */
	uint8_t *fw, *fwo;
	uint64_t fw_dead[UDSM_MAX_NODES];
	bool fw_putm, fw_replay; /* a PUTM waits in the stash for a forward to end */

	/* read-ahead: per page, 1 while our GET_S for it is speculative (no thread waits) */
	uint8_t *spec;
	/* read-ahead bursts: the set of pages asked of each home (GET_S_SET) */
	struct ra_set {
		uint64_t base;
		uint32_t n;
		uint8_t bm[WIRE_SET_BYTES];
	} ra_set[UDSM_MAX_NODES];
	/* home: during a read-ahead burst, the FETCHes (TO_S) for each owner, sent as one
	 * FETCH_SET per owner at its end */
	struct ra_set fset[UDSM_MAX_NODES];
	bool fset_on;
	/* home: answering a GET_S_SET, the DATA and RA_SKIP for its pages are collected into
	 * one DATA_SET (set_take) */
	bool set_on;
	unsigned set_dst, set_k, set_cap;
	uint64_t set_base;
	uint8_t *set_buf; /* bitmaps want, then DATA_SET's served, zero, skip; then pages */

	/* read-ahead */
	/* A range being re-homed (eng_freeze .. eng_thaw): no new request of ours for it. */
	uint64_t frz_first, frz_len; /* frz_len 0: none */
	uint64_t frz_trans;          /* its pages in a transient state here */
	struct frz_fault {
		uint64_t page;
		bool write;
	} *frz_faults; /* faults that met the frozen range, replayed at eng_thaw */
	size_t nfrz_faults, frz_cap;

	uint64_t seq_last, ra_next; /* ra_next: first page not requested ahead yet */
	/* when one of these pages arrives (or is declined), request one more window;
	 * UINT64_MAX: a free slot */
	uint64_t ra_trig[RA_TRIG_MAX];
	bool ra_kick;
	unsigned ra_win;

	struct udsm_stats stats;
	char why[192];
};

#define BIT(n) ((uint64_t)1 << (n))
#define STAT_INC(e, f, n) __atomic_fetch_add(&(e)->stats.f, (n), __ATOMIC_RELAXED)

static const char *const state_names[ENG_NSTATES_] = {
	"I", "S", "M", "IS_D", "IM_D", "SM_A", "LOST",
};

const char *eng_state_name(int s)
{
	return s >= 0 && s < ENG_NSTATES_ ? state_names[s] : "?";
}

static void elog(struct eng *e, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void elog(struct eng *e, int level, const char *fmt, ...)
{
	char buf[256];
	va_list ap;

	if (!e->ops->log)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	e->ops->log(e->ctx, level, buf);
}

/*
 * eng_verify(): an invariant of the engine itself is broken. This is a bug in udsm, not a
 * misbehaving peer (those get UDSM_EPROTO): log what we know and abort.
 */
#define eng_verify(e, cond, ...)                                                               \
	do {                                                                                   \
		if (__builtin_expect(!(cond), 0))                                              \
			verify_fail((e), __FILE__, __LINE__, #cond, __VA_ARGS__);             \
	} while (0)

static void verify_fail(struct eng *e, const char *file, int line, const char *cond,
			const char *fmt, ...) __attribute__((noreturn, format(printf, 5, 6)));
static void verify_fail(struct eng *e, const char *file, int line, const char *cond,
			const char *fmt, ...)
{
	char buf[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	elog(e, UDSM_LOG_ERR, "engine invariant broken at %s:%d: %s: %s (node %u)", file, line,
	     cond, buf, e->self);
	if (!e->ops->log)
		fprintf(stderr, "udsm: engine invariant broken at %s:%d: %s: %s\n", file, line,
			cond, buf);
	abort();
}

/* @arr, an array of @n elements of @size bytes with room for *@cap, with room for one more:
 * doubled (at least 16) when full. Out of memory is fatal, like any broken invariant. */
static void *grow(struct eng *e, void *arr, size_t n, size_t *cap, size_t size,
		  const char *what)
{
	size_t ncap;

	if (n < *cap)
		return arr;
	ncap = *cap ? *cap * 2 : 16;
	arr = realloc(arr, ncap * size);
	eng_verify(e, arr, "out of memory growing %s to %zu entries", what, ncap);
	*cap = ncap;
	return arr;
}

static int proto_err(struct eng *e, unsigned src, const struct wire_msg *m, const char *fmt,
		     ...) __attribute__((format(printf, 4, 5)));
static int proto_err(struct eng *e, unsigned src, const struct wire_msg *m, const char *fmt,
		     ...)
{
	char buf[128];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	snprintf(e->why, sizeof(e->why), "%s page %llu from node %u: %s", wire_type_name(m->type),
		 (unsigned long long)m->page, src, buf);
	return UDSM_EPROTO;
}

static inline int get_st(const struct eng *e, uint64_t p)
{
	return __atomic_load_n(&e->st[p], __ATOMIC_RELAXED);
}

static inline bool transient(int s)
{
	return s == ENG_IS_D || s == ENG_IM_D || s == ENG_SM_A;
}

static inline void set_st(struct eng *e, uint64_t p, int s)
{
	int old = get_st(e, p);

	e->ntrans += (uint64_t)transient(s) - (uint64_t)transient(old);
	if (p - e->frz_first < e->frz_len)
		e->frz_trans += (uint64_t)transient(s) - (uint64_t)transient(old);
	__atomic_store_n(&e->st[p], (uint8_t)s, __ATOMIC_RELAXED);
}

static bool frozen(const struct eng *e, uint64_t p)
{
	return p - e->frz_first < e->frz_len;
}

/* Follow the successors of nodes that left: the node that now homes what @n homed.
 * Relaxed atomics: eng_home() (udsm_page_home) may run on an application thread. */
static unsigned resolve(const struct eng *e, unsigned n)
{
	for (unsigned i = 0; i < e->nodes; i++) {
		unsigned f = __atomic_load_n(&e->fwd[n], __ATOMIC_RELAXED);

		if (f == NODE_NONE)
			break;
		n = f;
	}
	return n;
}

/* The home of @page, on the engine thread (the only writer of the map). */
static unsigned home_of(const struct eng *e, uint64_t page)
{
	return resolve(e, place_origin(&e->map, page));
}

static void map_lock(const struct eng *e)
{
	int *l = (int *)&e->map_lock; /* a lock word, not part of the engine's logical state */

	while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE))
		while (__atomic_load_n(l, __ATOMIC_RELAXED))
			;
}

static void map_unlock(const struct eng *e)
{
	__atomic_store_n((int *)&e->map_lock, 0, __ATOMIC_RELEASE);
}

unsigned eng_home(const struct eng *e, uint64_t page)
{
	unsigned o;

	map_lock(e);
	o = place_origin(&e->map, page);
	map_unlock(e);
	return resolve(e, o);
}

uint64_t eng_home_run(const struct eng *e, uint64_t page)
{
	uint64_t end;

	map_lock(e);
	end = place_run_end(&e->map, page);
	map_unlock(e);
	return end;
}

bool eng_alive(const struct eng *e, unsigned node)
{
	return node < e->nodes && (e->alive & BIT(node));
}

/* @n announced its leave and has not said BYE yet: what it homes is in transition. */
static bool in_transition(const struct eng *e, unsigned n)
{
	return n != e->self && (e->leaving & BIT(n)) && eng_alive(e, n);
}

bool eng_in_transition(const struct eng *e, unsigned node)
{
	return node < e->nodes && in_transition(e, node);
}

/* The node that collects barriers: node 0, or whoever took its place. */
static unsigned bar_coord(const struct eng *e)
{
	return resolve(e, 0);
}

#define DIR_LEAF_SHIFT 9
#define DIR_LEAF ((uint64_t)1 << DIR_LEAF_SHIFT)

/* An entry in its initial state: the page is all zeros and nobody has it. */
static void dir_init(struct dir *d)
{
	memset(d, 0, sizeof(*d));
	d->owner = NODE_NONE;
	d->last_rd = NODE_NONE;
	d->flags = DIR_ZERO;
}

/* The entry of @page if it was ever used, else NULL (initial state). */
static struct dir *dir_peek(const struct eng *e, uint64_t page)
{
	struct dir *l = e->leaf[page >> DIR_LEAF_SHIFT];

	return l ? &l[page & (DIR_LEAF - 1)] : NULL;
}

/* The entry of @page, homed here: its leaf is allocated on first use. */
static struct dir *dir_of(struct eng *e, uint64_t page)
{
	struct dir **l = &e->leaf[page >> DIR_LEAF_SHIFT];

	if (!*l) {
		*l = malloc(DIR_LEAF * sizeof(**l));
		eng_verify(e, *l, "out of memory for the directory of page %llu",
			   (unsigned long long)page);
		for (uint64_t i = 0; i < DIR_LEAF; i++)
			dir_init(&(*l)[i]);
	}
	return &(*l)[page & (DIR_LEAF - 1)];
}


/* ------------------------------------------------------------------------------------------
 * Page buffers: home copies and messages to ourselves. A miss whose home is a third node
 * leaves a new home copy behind, so while pages are being shared the home needs a page of
 * new memory per miss. Two things made that slow on the critical path of such a miss
 * (docs/PERFORMANCE.md 3.19): one malloc() per page grows the service thread's malloc arena
 * a page at a time, an mprotect() each; and the first write to a page of new memory, a page
 * fault, costs several times more in the middle of a miss than in a run of first writes (on a
 * PVM guest, 17-20 us a page in a run, some 50 us alone). So buffers are cut from slabs of
 * SLAB_MIN..SLAB_MAX pages, each slab twice the one before and aligned to a page, and the
 * next SLAB_TOUCH buffers get their first writes, one per 4 KiB, when the cut reaches them.
 * Released buffers go on a free list threaded through them. When that list has grown to
 * trim_at buffers (TRIM_MIN at first, then twice what the last trim kept), slab_trim() gives
 * the slabs whose every buffer is free back to the allocator, all but the one being cut and
 * down to TRIM_KEEP free buffers: a node that held many copies once (after a rehome or an
 * adoption, up to one per page of the region) does not keep their memory until it closes. The doubling bounds the scans: a trim
 * costs O(free log slabs), and the next one waits until the list has doubled. eng_destroy()
 * checks that every buffer in use is a copy or a queued message, and frees the rest. Under
 * AddressSanitizer a free buffer is poisoned past its link.
 */

#define SLAB_MIN 16u
#define SLAB_MAX 256u
#define SLAB_TOUCH 16u
#define TRIM_MIN (4u * SLAB_MAX) /* free buffers kept before a trim is worth its scan */
#define TRIM_KEEP (2u * SLAB_MAX) /* free buffers a trim leaves */

struct eng_slab {
	uint8_t *base;
	unsigned pages;
	unsigned nfree; /* slab_trim()'s count of its free buffers */
	bool drop;      /* slab_trim() gives it back */
};
#define TOUCH_STRIDE 4096u /* the smallest page of the machines we run on */

#if defined(__SANITIZE_ADDRESS__)
#define ENG_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ENG_ASAN 1
#endif
#endif
#ifdef ENG_ASAN
#include <sanitizer/asan_interface.h>
#define buf_poison(e, p) ASAN_POISON_MEMORY_REGION((uint8_t *)(p) + sizeof(void *), \
						   (e)->ps - sizeof(void *))
#define buf_unpoison(e, p) ASAN_UNPOISON_MEMORY_REGION((p), (e)->ps)
#define buf_unpoison_n(e, p, n) ASAN_UNPOISON_MEMORY_REGION((p), (size_t)(n) * (e)->ps)
#else
#define buf_poison(e, p) ((void)0)
#define buf_unpoison(e, p) ((void)0)
#define buf_unpoison_n(e, p, n) ((void)0)
#endif

static void *page_get(struct eng *e)
{
	void *p = e->pool;

	e->nbuf++;
	if (p) {
		buf_unpoison(e, p);
		memcpy(&e->pool, p, sizeof(void *));
		return p;
	}
	if (!e->slab_left) {
		unsigned n = e->nslab ? e->slab_pages * 2 : SLAB_MIN;
		size_t align = (e->ps & (e->ps - 1)) ? sizeof(void *) : e->ps;

		if (n > SLAB_MAX)
			n = SLAB_MAX;
		if (e->nslab == e->slab_cap) {
			size_t cap = e->slab_cap ? 2 * e->slab_cap : 8;
			struct eng_slab *v = realloc(e->slab, cap * sizeof(*v));

			eng_verify(e, v, "out of memory for the list of page slabs");
			e->slab = v;
			e->slab_cap = cap;
		}
		e->slab_next = aligned_alloc(align, (size_t)n * e->ps);
		eng_verify(e, e->slab_next, "out of memory for %u page buffers", n);
		e->slab[e->nslab++] = (struct eng_slab){ .base = e->slab_next, .pages = n };
		e->slab_cur = e->slab_next;
		e->slab_all += n;
		e->slab_pages = e->slab_left = n;
		e->slab_touched = 0;
	}
	if (!e->slab_touched) {
		unsigned k = e->slab_left < SLAB_TOUCH ? e->slab_left : SLAB_TOUCH;

		for (size_t off = 0; off < (size_t)k * e->ps; off += TOUCH_STRIDE)
			((volatile uint8_t *)e->slab_next)[off] = 0;
		e->slab_touched = k;
	}
	p = e->slab_next;
	e->slab_next += e->ps;
	e->slab_left--;
	e->slab_touched--;
	return p;
}

static int slab_cmp(const void *a, const void *b)
{
	const uint8_t *x = ((const struct eng_slab *)a)->base, *y = ((const struct eng_slab *)b)->base;

	return x < y ? -1 : x > y;
}

/* The slab (sorted by base) that holds buffer @p. */
static struct eng_slab *slab_of(struct eng *e, const uint8_t *p)
{
	size_t lo = 0, hi = e->nslab;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		struct eng_slab *sl = &e->slab[mid];

		if (p < sl->base)
			hi = mid;
		else if (p >= sl->base + (size_t)sl->pages * e->ps)
			lo = mid + 1;
		else
			return sl;
	}
	eng_verify(e, false, "a free page buffer %p in no slab", (const void *)p);
	return NULL;
}

static inline uint64_t buf_free(const struct eng *e)
{
	return e->slab_all - e->slab_left - e->nbuf;
}

/*
 * Give back the slabs whose every buffer is on the free list (see "Page buffers" above), all
 * but the one being cut, and as long as TRIM_KEEP free buffers remain: a node whose copies
 * come and go in waves keeps one wave's worth written and at hand.
 */
static void slab_trim(struct eng *e)
{
	void *keep = NULL, **tail = &keep;
	uint64_t left = buf_free(e);
	size_t n = 0;

	qsort(e->slab, e->nslab, sizeof(*e->slab), slab_cmp);
	for (size_t i = 0; i < e->nslab; i++)
		e->slab[i].nfree = 0;
	for (uint8_t *p = e->pool; p; memcpy(&p, p, sizeof(void *)))
		slab_of(e, p)->nfree++;
	for (size_t i = 0; i < e->nslab; i++) {
		struct eng_slab *sl = &e->slab[i];

		sl->drop = sl->nfree == sl->pages && sl->base != e->slab_cur &&
			   left >= TRIM_KEEP + sl->pages;
		if (sl->drop)
			left -= sl->pages;
	}
	for (uint8_t *p = e->pool, *next; p; p = next) {
		memcpy(&next, p, sizeof(void *));
		if (slab_of(e, p)->drop)
			continue;
		*tail = p;
		tail = (void **)p;
	}
	*tail = NULL;
	e->pool = keep;
	for (size_t i = 0; i < e->nslab; i++) {
		struct eng_slab *sl = &e->slab[i];

		if (sl->drop) {
			buf_unpoison_n(e, sl->base, sl->pages);
			free(sl->base);
			e->slab_all -= sl->pages;
		} else {
			e->slab[n++] = *sl;
		}
	}
	e->nslab = n;
	e->trim_at = 2 * buf_free(e) > TRIM_MIN ? 2 * buf_free(e) : TRIM_MIN;
}

void eng_page_buffers(const struct eng *e, uint64_t *used, uint64_t *kept)
{
	*used = e->nbuf;
	*kept = e->slab_all;
}

static void page_put(struct eng *e, void *p)
{
	if (!p)
		return;
	eng_verify(e, e->nbuf, "a page buffer released twice");
	e->nbuf--;
	memcpy(p, &e->pool, sizeof(void *));
	e->pool = p;
	buf_poison(e, p);
	if (buf_free(e) >= (e->trim_at ? e->trim_at : TRIM_MIN))
		slab_trim(e);
}

/* ------------------------------------------------------------------------------------------
 * Sending: to a peer through ops->send, to ourselves through the local FIFO.
 */

static bool set_take(struct eng *e, unsigned dst, uint8_t type, uint8_t flags, uint64_t page,
		     const void *data);
/*
 * Sets of pages asked of one node (a home's read-ahead GET_S, an owner's FETCH): the pages
 * gathered in @r go out as one set message, or as the plain message of a lone page.
 */
struct set_kind {
	uint8_t one, set; /* message types: a lone page, the set */
	uint64_t arg;     /* @arg of the lone page's message */
};
static const struct set_kind ra_kind = { WIRE_GET_S, WIRE_GET_S_SET, 1 },
			     fetch_kind = { WIRE_FETCH, WIRE_FETCH_SET, WIRE_FETCH_TO_S };

static void fset_add(struct eng *e, unsigned owner, uint64_t page);

static void send_msg(struct eng *e, unsigned dst, uint8_t type, uint8_t flags, uint64_t page,
		     uint64_t arg, const void *data)
{
	struct wire_msg m = {
		.type = type,
		.flags = flags,
		.src = (uint16_t)e->self,
		.len = data ? e->ps : 0,
		.page = page,
		.arg = arg,
	};

	if (e->set_on && set_take(e, dst, type, flags, page, data))
		return; /* goes out with the DATA_SET being built */
	if (e->fset_on && type == WIRE_FETCH && arg == WIRE_FETCH_TO_S && dst != e->self) {
		fset_add(e, dst, page); /* goes out with the FETCH_SET to that owner */
		return;
	}
	if (dst != e->self) {
		e->ops->send(e->ctx, dst, &m, data);
		return;
	}
	if (e->lq_len == e->lq_cap) {
		size_t ncap = e->lq_cap ? e->lq_cap * 2 : 64;
		struct lmsg *n = malloc(ncap * sizeof(*n));

		eng_verify(e, n, "out of memory growing the local queue to %zu", ncap);
		for (size_t i = 0; i < e->lq_len; i++)
			n[i] = e->lq[(e->lq_head + i) % e->lq_cap];
		free(e->lq);
		e->lq = n;
		e->lq_cap = ncap;
		e->lq_head = 0;
	}
	struct lmsg *l = &e->lq[(e->lq_head + e->lq_len++) % e->lq_cap];
	l->m = m;
	l->data = NULL;
	if (data) {
		l->data = page_get(e);
		eng_verify(e, l->data, "out of memory copying a local page");
		memcpy(l->data, data, e->ps);
		l->m.payload = l->data;
	}
}

/* Send page contents: NULL or all-zero data travels as a ZERO flag with no payload. */
static void send_page_arg(struct eng *e, unsigned dst, uint8_t type, uint8_t flags,
			  uint64_t page, const void *data, uint64_t arg)
{
	if (!data || wire_is_zero(data, e->ps)) {
		flags |= WIRE_F_ZERO;
		data = NULL;
	}
	send_msg(e, dst, type, flags, page, arg, data);
}

static void send_page(struct eng *e, unsigned dst, uint8_t type, uint8_t flags, uint64_t page,
		      const void *data)
{
	send_page_arg(e, dst, type, flags, page, data, 0);
}

/* Statistics hook (ops->moved may be NULL): see eng_ops. */
static void stat_moved(struct eng *e, uint64_t page, unsigned from, unsigned to, uint64_t warg)
{
	if (e->ops->moved)
		e->ops->moved(e->ctx, page, from, to, warg);
}

static void drain_local(struct eng *e);
static void settle(struct eng *e);
static int stash(struct eng *e, unsigned src, const struct wire_msg *m);
static void stash_replay(struct eng *e);

/*
 * op_must(): a page operation the protocol's safety rests on (install, drop, write-protect,
 * unprotect) failed. Going on would break single-writer/multiple-readers or leave a thread
 * waiting on a page we believe present, so this is treated like a broken invariant.
 */
#define op_must(e, err, what, page)                                                            \
	do {                                                                                   \
		int err_ = (err);                                                              \
		eng_verify((e), !err_, "%s of page %llu failed: %s", (what),                  \
			   (unsigned long long)(page), udsm_strerror(err_));                   \
	} while (0)

static void op_check(struct eng *e, int err, const char *what, uint64_t page)
{
	if (err)
		elog(e, UDSM_LOG_ERR, "%s of page %llu failed: %s", what,
		     (unsigned long long)page, udsm_strerror(err));
}

/* ------------------------------------------------------------------------------------------
 * Home side: the directory.
 */

static uint32_t q_alloc(struct eng *e)
{
	if (!e->qfree) {
		uint32_t ncap = e->qcap ? e->qcap * 2 : 256;
		struct qent *n = realloc(e->q, ((size_t)ncap + 1) * sizeof(*n));

		eng_verify(e, n, "out of memory growing the request queue to %u", ncap);
		e->q = n;
		for (uint32_t i = e->qcap + 1; i <= ncap; i++) {
			e->q[i].next = e->qfree;
			e->qfree = i;
		}
		e->qcap = ncap;
	}
	uint32_t i = e->qfree;
	e->qfree = e->q[i].next;
	return i;
}

static void q_push(struct eng *e, struct dir *d, unsigned src, unsigned type)
{
	uint32_t i = q_alloc(e);

	e->q[i] = (struct qent){ .next = 0, .src = (uint8_t)src, .type = (uint8_t)type };
	if (d->qtail)
		e->q[d->qtail].next = i;
	else
		d->qhead = i;
	d->qtail = i;
}

static bool q_pop(struct eng *e, struct dir *d, unsigned *src, unsigned *type)
{
	uint32_t i = d->qhead;

	if (!i)
		return false;
	*src = e->q[i].src;
	*type = e->q[i].type;
	d->qhead = e->q[i].next;
	if (!d->qhead)
		d->qtail = 0;
	e->q[i].next = e->qfree;
	e->qfree = i;
	return true;
}

static bool q_has(const struct eng *e, const struct dir *d, unsigned src)
{
	for (uint32_t i = d->qhead; i; i = e->q[i].next)
		if (e->q[i].src == src)
			return true;
	return false;
}

static int q_len(const struct eng *e, const struct dir *d)
{
	int n = 0;

	for (uint32_t i = d->qhead; i; i = e->q[i].next)
		n++;
	return n;
}

/* Keep @data (NULL: zeros) as the home copy of a page nobody owns. */
static void dir_keep(struct eng *e, struct dir *d, const void *data)
{
	if (!data || wire_is_zero(data, e->ps)) {
		page_put(e, d->copy);
		d->copy = NULL;
		d->flags |= DIR_ZERO;
		return;
	}
	if (!d->copy) {
		d->copy = page_get(e);
		eng_verify(e, d->copy, "out of memory for a home copy");
	}
	memcpy(d->copy, data, e->ps);
	d->flags &= ~DIR_ZERO;
}

/* A cheap 64-bit digest of a page (NULL: zeros), to tell whether it changed. */
static uint64_t page_hash(const void *data, uint32_t ps)
{
	const uint8_t *b = data;
	uint64_t h = 0x9e3779b97f4a7c15ull;

	if (!data)
		return 0;
	for (uint32_t i = 0; i + 8 <= ps; i += 8) {
		uint64_t w;

		memcpy(&w, b + i, 8);
		h = (h ^ w) * 0xff51afd7ed558ccdull;
		h ^= h >> 29;
	}
	return h;
}

/*
 * The latest contents of a page nobody owns: the home copy, zeros, or, when the home itself
 * shares the page, its own mapping. A home that is a sharer keeps no copy: its read-only page
 * is the copy, which saves a page buffer and a 4 KiB copy on every miss it serves. Before the
 * home gives its own page up through an INV to itself, it takes a copy (dir_serve); the one
 * exception is an upgrade whose only other sharer is the home, which drops the page and grants
 * in one step and never needs the data.
 */
static const void *home_data(struct eng *e, uint64_t page, const struct dir *d)
{
	if (d->copy || (d->flags & DIR_ZERO))
		return d->copy;
	eng_verify(e, d->sharers & BIT(e->self), "page %llu: no home copy and the home is no "
		   "sharer", (unsigned long long)page);
	return e->ops->page_data(e->ctx, page);
}

/* The home's own mapping holds the latest contents from now on: drop the copy. */
static void dir_use_own(struct eng *e, struct dir *d)
{
	page_put(e, d->copy);
	d->copy = NULL;
	d->flags &= ~DIR_ZERO;
}

/* Give up our copy of @page, held in state @s (S, or S with an upgrade in flight). */
static void inv_here(struct eng *e, uint64_t page, int s)
{
	op_must(e, e->ops->drop(e->ctx, page), "drop", page);
	/* An upgrade in flight now needs the data: the home will see we are no sharer. */
	set_st(e, page, s == ENG_SM_A ? ENG_IM_D : ENG_I);
	STAT_INC(e, invalidations, 1);
}

static void dir_next(struct eng *e, uint64_t page, struct dir *d);
static int req_data(struct eng *e, unsigned src, const struct wire_msg *m);
static bool fwd_start(struct eng *e, uint64_t page, struct dir *d, unsigned mode);
static int handle(struct eng *e, unsigned src, const struct wire_msg *m);
static void ra_set_add(struct eng *e, unsigned home, uint64_t page);
static void set_send(struct eng *e, struct ra_set *r, unsigned dst, const struct set_kind *k);
static bool stage_begin(struct eng *e, uint64_t base, const uint8_t *bm, bool home);

static void dir_done(struct eng *e, uint64_t page, struct dir *d)
{
	eng_verify(e, d->busy && e->nbusy, "page %llu: done while idle", (unsigned long long)page);
	e->nbusy--;
	d->busy = 0;
	d->flags &= ~(DIR_FETCH | DIR_REQ_SHARER | DIR_MXFER);
	dir_next(e, page, d);
}

/* GET_M with no owner: every other sharer has acknowledged its INV. */
static void dir_finish_m(struct eng *e, uint64_t page, struct dir *d)
{
	unsigned req = d->req;

	eng_verify(e, d->owner == NODE_NONE && !(d->sharers & ~BIT(req)),
		   "page %llu sharers %#llx req %u", (unsigned long long)page,
		   (unsigned long long)d->sharers, req);
	if (eng_alive(e, req)) {
		if (d->flags & DIR_REQ_SHARER) {
			eng_verify(e, d->sharers & BIT(req), "page %llu: upgrading non-sharer %u",
				   (unsigned long long)page, req);
			send_msg(e, req, WIRE_GRANT, 0, page, 0, NULL);
		} else {
			send_page(e, req, WIRE_DATA, WIRE_F_EXCL, page, home_data(e, page, d));
		}
		stat_moved(e, page, NODE_NONE, req, 0);
		d->owner = (uint8_t)req;
		d->sharers = 0;
		page_put(e, d->copy);
		d->copy = NULL;
		d->flags &= ~DIR_ZERO;
	} else {
		d->sharers &= ~BIT(req); /* the copy stays: nobody owns the page */
	}
	dir_done(e, page, d);
}

/* Serve one request on an idle entry. */
static void dir_serve(struct eng *e, uint64_t page, struct dir *d, unsigned src, unsigned type)
{
	eng_verify(e, !d->busy, "page %llu busy", (unsigned long long)page);
	if (d->flags & DIR_LOST) {
		send_msg(e, src, WIRE_NACK, 0, page, 0, NULL);
		return;
	}
	d->req = (uint8_t)src;
	if (d->owner != NODE_NONE) {
		eng_verify(e, d->owner != src, "page %llu: owner %u requests it",
			   (unsigned long long)page, src);
		unsigned mode;

		d->busy = (uint8_t)type;
		e->nbusy++;
		d->flags |= DIR_FETCH;
		if (type == WIRE_GET_M)
			d->flags |= DIR_WSHARED; /* from one writer to another */
		if (type == WIRE_GET_S && (d->flags & DIR_MIGR))
			d->flags |= DIR_MXFER; /* take it from the owner, hand it over writable */
		mode = type == WIRE_GET_S && !(d->flags & DIR_MXFER) ? WIRE_FETCH_TO_S
								     : WIRE_FETCH_TO_I;
		if (fwd_start(e, page, d, mode))
			return;
		send_msg(e, d->owner, WIRE_FETCH, 0, page, mode, NULL);
		return;
	}
	if (type == WIRE_GET_S) {
		d->flags &= ~DIR_MIGR; /* read from the home by several: not migratory */
		send_page(e, src, WIRE_DATA, 0, page, home_data(e, page, d));
		stat_moved(e, page, NODE_NONE, src, 0);
		d->sharers |= BIT(src);
		return;
	}
	d->busy = WIRE_GET_M;
	e->nbusy++;
	if (d->sharers & BIT(src)) {
		d->flags |= DIR_REQ_SHARER;
		/*
		 * Migratory sharing: the node read the page from the node that had written it and
		 * now writes it too (a lock, a counter, a turn variable). From now on a read of
		 * the page takes it writable, in one round trip instead of a read miss and an
		 * upgrade, until a reader turns out not to write it (home_fetch_reply).
		 */
		if (e->migratory && d->last_rd == src && __builtin_popcountll(d->sharers) == 2)
			d->flags |= DIR_MIGR;
	}
	uint64_t others = d->sharers & ~BIT(src);
	if (others)
		d->flags |= DIR_WSHARED; /* this write takes the page from readers */
	if (!others) {
		dir_finish_m(e, page, d);
		return;
	}
	if (others == BIT(e->self) && (d->flags & DIR_REQ_SHARER) && get_st(e, page) == ENG_S) {
		/*
		 * An upgrade whose only other sharer is the home: drop our page here, in this
		 * step, and grant. No copy of it is kept: the GRANT carries no data, and the
		 * requester (alive: dir_next and eng_recv serve only live nodes) cannot be
		 * learnt dead before dir_finish_m below. Through the local queue (INV to
		 * ourselves) the page would have to be read and copied first, for the case of a
		 * requester lost while the INV waits: a /proc/self/mem read and two 4 KiB copies
		 * on every upgrade of a page the home shares. Only in state S: any other state
		 * here has messages to ourselves still queued (a DATA to install, our own
		 * upgrade), which the INV must follow.
		 */
		eng_verify(e, eng_alive(e, src), "page %llu: upgrade of lost node %u",
			   (unsigned long long)page, src);
		inv_here(e, page, ENG_S);
		d->sharers &= ~BIT(e->self);
		dir_finish_m(e, page, d);
		return;
	}
	if ((others & BIT(e->self)) && !d->copy && !(d->flags & DIR_ZERO))
		dir_keep(e, d, e->ops->page_data(e->ctx, page)); /* before our copy goes */
	for (unsigned n = 0; n < e->nodes; n++)
		if (others & BIT(n))
			send_msg(e, n, WIRE_INV, 0, page, 0, NULL);
}

/* Serve queued requests until one leaves the entry busy. */
static void dir_next(struct eng *e, uint64_t page, struct dir *d)
{
	unsigned src, type;

	while (!d->busy && q_pop(e, d, &src, &type))
		if (eng_alive(e, src))
			dir_serve(e, page, d, src, type);
}

static int home_request(struct eng *e, unsigned src, const struct wire_msg *m)
{
	struct dir *d = dir_of(e, m->page);

	if (d->owner == src && !((e->fw[m->page] & FW_REPLY) && e->fwo[m->page] == src))
		return proto_err(e, src, m, "the requester owns the page");
	if (m->type == WIRE_GET_S && (d->sharers & BIT(src)))
		return proto_err(e, src, m, "the requester already shares the page");
	/* A forwarded requester may ask again once it has the page (FWD_ACK), while we still
	 * wait for the owner's FWD_REPLY: it queues like any other. But it holds the page: after
	 * a forward to I it can want nothing more, after one to S only to write it. Queued, any
	 * other request would be served after the forward as a request of the page's owner by
	 * itself (an engine invariant: found by fuzz_wire_engine). */
	if ((d->busy && d->req == src && !(e->fw[m->page] & FW_ACK)) || q_has(e, d, src))
		return proto_err(e, src, m, "the requester has a request for it in flight");
	if (d->busy && d->req == src && (e->fw[m->page] & FW_ACK) &&
	    ((e->fw[m->page] & FW_TO_I) || m->type == WIRE_GET_S))
		return proto_err(e, src, m, "the requester holds the page it was forwarded");
	if (m->arg > 1 || (m->arg && m->type != WIRE_GET_S))
		return proto_err(e, src, m, "unknown request mode %llu", (unsigned long long)m->arg);
	if (m->arg && !(d->flags & DIR_LOST) &&
	    (d->busy || (d->owner != NODE_NONE && (d->flags & (DIR_WSHARED | DIR_MIGR))))) {
		/* A read-ahead: never take a page from a writer that shares it with other nodes
		 * (or wait behind somebody's transaction) for a read nobody is waiting for. A page
		 * only its owner ever wrote (data a producer wrote once and others now scan) is
		 * fetched like any read: that is what makes a scan of it fast. */
		send_msg(e, src, WIRE_RA_SKIP, 0, m->page, 0, NULL);
		return 0;
	}
	if (d->busy) {
		q_push(e, d, src, m->type);
		return 0;
	}
	dir_serve(e, m->page, d, src, m->type);
	return 0;
}

static int home_inv_ack(struct eng *e, unsigned src, const struct wire_msg *m)
{
	struct dir *d = dir_of(e, m->page);

	if (d->busy != WIRE_GET_M || (d->flags & DIR_FETCH) || src == d->req ||
	    !(d->sharers & BIT(src)))
		return proto_err(e, src, m, "no invalidation of this node is pending");
	d->sharers &= ~BIT(src);
	if (!(d->sharers & ~BIT(d->req)))
		dir_finish_m(e, m->page, d);
	return 0;
}

/*
 * The owner's answer to our FETCH. @putm: it is a PUTM from a leaving owner that crossed our
 * FETCH: the same contents, but the owner dropped its copy (it ignores the FETCH).
 */
static int fetch_done(struct eng *e, unsigned src, const struct wire_msg *m, bool putm)
{
	struct dir *d = dir_of(e, m->page);
	const void *data = (m->flags & WIRE_F_ZERO) ? NULL : m->payload;
	unsigned req = d->req;

	if (!d->busy || !(d->flags & DIR_FETCH) || d->owner != src ||
	    (e->fw[m->page] & (FW_REPLY | FW_RECALL)))
		return proto_err(e, src, m, "no fetch from this node is pending");
	if (m->flags & WIRE_F_EXCL)
		return proto_err(e, src, m, "unexpected EXCL flag");
	/* A forward the owner could not make (the requester is gone in its view, or it is
	 * leaving and gave the page back): the home serves the request itself, as for FETCH. */
	e->fw[m->page] = 0;
	d->owner = NODE_NONE;
	stat_moved(e, m->page, src, eng_alive(e, req) ? req : NODE_NONE, m->arg);
	if (d->flags & DIR_MXFER) {
		/* Migratory: the old owner gave the page up, and the reader gets it writable as
		 * for a GET_M (below). If the page comes back unchanged since the last such
		 * hand-over, its holder did not write it: not migratory after all (after this). */
		uint64_t h = page_hash(data, e->ps);

		if (h == d->mhash)
			d->flags &= ~DIR_MIGR;
		d->mhash = h;
	}
	if (d->busy == WIRE_GET_S && !(d->flags & DIR_MXFER)) {
		/* The old owner downgraded to S and keeps its copy. */
		d->last_rd = (uint8_t)req;
		bool own = src == e->self; /* the home itself was the owner: its page is current */

		d->sharers = putm ? 0 : BIT(src);
		if (eng_alive(e, req)) {
			d->sharers |= BIT(req);
			if (req == e->self) {
				/*
				 * The home asked for itself: install right here rather than through
				 * the local queue, so that the home's page is current before any
				 * queued request is served from it. Nothing else about this page
				 * can be waiting for us in the local queue: the entry was busy.
				 */
				struct wire_msg dm = {
					.type = WIRE_DATA,
					.flags = data ? 0 : WIRE_F_ZERO,
					.src = (uint16_t)e->self,
					.len = data ? e->ps : 0,
					.page = m->page,
					.payload = data,
				};
				int err = req_data(e, e->self, &dm);

				eng_verify(e, !err, "local install rejected: %s", e->why);
				own = true;
			} else {
				send_page(e, req, WIRE_DATA, 0, m->page, data);
			}
		}
		if (own && data && !wire_is_zero(data, e->ps))
			dir_use_own(e, d);
		else
			dir_keep(e, d, data);
	} else if (eng_alive(e, req)) {
		d->owner = (uint8_t)req;
		send_page(e, req, WIRE_DATA, WIRE_F_EXCL, m->page, data);
	} else {
		dir_keep(e, d, data);
	}
	dir_done(e, m->page, d);
	return 0;
}

static int home_fetch_reply(struct eng *e, unsigned src, const struct wire_msg *m)
{
	return fetch_done(e, src, m, false);
}

/*
 * PUTM: a leaving node gives back a page it holds Modified. The entry is idle (the page is
 * home again, nobody owns it) or waits for the leaver's FETCH_REPLY, which the leaver will
 * never send: the PUTM is that reply.
 */
static int home_putm(struct eng *e, unsigned src, const struct wire_msg *m)
{
	struct dir *d = dir_of(e, m->page);

	if (!((e->leaving | e->byed) & BIT(src)))
		return proto_err(e, src, m, "the sender is not leaving");
	if ((e->fw[m->page] & FW_ACK) && d->req == src && (e->fw[m->page] & FW_TO_I)) {
		/* It got the page forwarded and gives it back before the old owner's
		 * FWD_REPLY came: keep it until the forward ends (fwd_end). */
		e->fw_putm = true;
		return stash(e, src, m);
	}
	if (d->owner != src)
		return proto_err(e, src, m, "the sender does not own the page");
	if (d->busy)
		return fetch_done(e, src, m, true);
	d->owner = NODE_NONE;
	dir_keep(e, d, (m->flags & WIRE_F_ZERO) ? NULL : m->payload);
	dir_next(e, m->page, d);
	return 0;
}

/* ------------------------------------------------------------------------------------------
 * Forwarding (docs/PROTOCOL.md, "Forwarding"): a miss on a page owned by a third node costs
 * three hops on its critical path (requester -> home -> owner -> requester) instead of four.
 *
 * The home stays the serialisation point: it sends FWD to the owner and keeps the entry busy
 * until both sides have reported, the owner with FWD_REPLY (TO_S: with the contents, which
 * the home must keep now that nobody owns the page; TO_I: only that it let the page go) and
 * the requester with FWD_ACK once it installed the page. The home says nothing else about
 * the page to the requester or the owner before that, so nothing it sends later (an INV, a
 * FETCH, another FWD) can overtake the forwarded data on the owner's link: the requester
 * needs no new state, and FIFO per link is still all the protocol relies on.
 *
 * Deaths: the owner reports in FWD_REPLY, the requester in FWD_ACK, or, when it learns the
 * owner died and had not forwarded the page, in FWD_NONE (links deliver what a node sent
 * before its end of stream, so once the requester knows the owner is gone, the data will not
 * come). With the owner's contents at the home a requester that got nothing is served from
 * them; a requester that has the only copy left (the owner died before the home got its
 * contents) is asked for it (RECALL); a page that went writable to a dead requester, or that
 * died with its owner before reaching anyone, is lost as for any other owner's death.
 */


/* Serve the busy request on @d by forwarding, if it can be: the owner is neither the home
 * nor the requester, and the requester did not tell us the owner is dead to it. */
static bool fwd_start(struct eng *e, uint64_t page, struct dir *d, unsigned mode)
{
	unsigned o = d->owner, r = d->req;

	if (!e->forward || o == e->self || r == e->self || (e->fw_dead[r] & BIT(o)))
		return false;
	e->fw[page] = (uint8_t)(FW_ON | (mode == WIRE_FETCH_TO_I ? FW_TO_I : 0));
	e->fwo[page] = (uint8_t)o;
	send_msg(e, o, WIRE_FWD, 0, page, (uint64_t)mode << 8 | r, NULL);
	return true;
}

static void fwd_end(struct eng *e, uint64_t page, struct dir *d)
{
	e->fw[page] = 0;
	if (e->fw_putm)
		e->fw_replay = true; /* a PUTM waiting for a forward's end: settle() replays */
	dir_done(e, page, d);
}

/* The page died during the forward: nobody alive holds it. */
static void fwd_lose(struct eng *e, uint64_t page, struct dir *d)
{
	uint8_t f = e->fw[page];

	elog(e, UDSM_LOG_WARN, "page %llu lost: its owner or requester died while it was "
	     "forwarded", (unsigned long long)page);
	d->owner = NODE_NONE;
	d->sharers = 0;
	d->flags |= DIR_LOST;
	d->flags &= ~DIR_ZERO;
	page_put(e, d->copy);
	d->copy = NULL;
	if (!(f & (FW_ACK | FW_RGONE)) && eng_alive(e, d->req))
		send_msg(e, d->req, WIRE_NACK, 0, page, 0, NULL);
	fwd_end(e, page, d);
}

/* Finish the forward on @page once both sides have reported (or died). */
static void fwd_settle(struct eng *e, uint64_t page, struct dir *d)
{
	uint8_t f = e->fw[page];
	unsigned r = d->req;

	if (!(f & FW_ON))
		return;
	if (f & FW_RECALL) {
		if (f & FW_RGONE)
			fwd_lose(e, page, d); /* the requester had the last copy */
		return;
	}
	if (!(f & (FW_REPLY | FW_OGONE)) || !(f & (FW_ACK | FW_NONE | FW_RGONE)))
		return;
	if (f & FW_TO_I) {
		/* The owner dropped its copy: it is at the requester, or nowhere. */
		if ((f & FW_ACK) && !(f & FW_RGONE)) {
			d->owner = (uint8_t)r;
			d->sharers = 0;
			page_put(e, d->copy);
			d->copy = NULL;
			d->flags &= ~DIR_ZERO;
			fwd_end(e, page, d);
		} else {
			fwd_lose(e, page, d);
		}
		return;
	}
	if (f & FW_REPLY) {
		/* The home has the contents; the owner (if alive) is a sharer. */
		if ((f & FW_NONE) && !(f & FW_RGONE)) {
			send_page(e, r, WIRE_DATA, 0, page, d->copy); /* it never got them */
			f |= FW_ACK;
		}
		if ((f & FW_ACK) && !(f & FW_RGONE))
			d->sharers |= BIT(r);
		d->sharers &= e->alive;
		fwd_end(e, page, d);
		return;
	}
	/* The owner died without a word to us. */
	if ((f & FW_ACK) && !(f & FW_RGONE)) {
		e->fw[page] |= FW_RECALL; /* the requester holds the only copy: ask for it */
		send_msg(e, r, WIRE_RECALL, 0, page, 0, NULL);
		return;
	}
	fwd_lose(e, page, d);
}

/* FWD_REPLY from the owner (or, for RECALL, the requester). */
static int home_fwd_reply(struct eng *e, unsigned src, const struct wire_msg *m)
{
	struct dir *d = dir_of(e, m->page);
	uint8_t f = e->fw[m->page];
	bool has = m->len || (m->flags & WIRE_F_ZERO);
	const void *data = (m->flags & WIRE_F_ZERO) ? NULL : m->payload;

	if (m->flags & ~WIRE_F_ZERO)
		return proto_err(e, src, m, "unexpected flags %#x", m->flags);
	if (f & FW_RECALL) {
		if (src != d->req || !has)
			return proto_err(e, src, m, "no recall of this node's copy is pending");
		dir_keep(e, d, data);
		d->sharers = BIT(src);
		fwd_end(e, m->page, d);
		return 0;
	}
	if (!(f & FW_ON) || (f & FW_REPLY) || e->fwo[m->page] != src || d->owner != src)
		return proto_err(e, src, m, "no forward by this node is pending");
	if (has != !(f & FW_TO_I))
		return proto_err(e, src, m, "contents %s for a forward to %s", has ? "sent" : "missing",
				 (f & FW_TO_I) ? "I" : "S");
	stat_moved(e, m->page, src, eng_alive(e, d->req) ? d->req : NODE_NONE, m->arg);
	if (!(f & FW_TO_I)) {
		/* The owner keeps a read-only copy; the home keeps the contents. (TO_I: the
		 * page is on its way to the requester, the old owner stays the owner on record
		 * until the requester confirms: if it dies meanwhile, so may the page.) */
		d->owner = NODE_NONE;
		d->sharers = BIT(src);
		d->last_rd = d->req;
		dir_keep(e, d, data);
	}
	e->fw[m->page] |= FW_REPLY;
	fwd_settle(e, m->page, d);
	return 0;
}

/* FWD_ACK: the requester installed the forwarded page. */
static int home_fwd_ack(struct eng *e, unsigned src, const struct wire_msg *m)
{
	struct dir *d = dir_of(e, m->page);
	uint8_t f = e->fw[m->page];

	if (!(f & FW_ON) || (f & (FW_ACK | FW_NONE | FW_RECALL)) || d->req != src)
		return proto_err(e, src, m, "no forward to this node is pending");
	if ((f & FW_TO_I) && (d->flags & DIR_MXFER)) {
		/* Migratory: as in fetch_done, a page back unchanged was not written. */
		if (m->arg == d->mhash)
			d->flags &= ~DIR_MIGR;
		d->mhash = m->arg;
	}
	e->fw[m->page] |= FW_ACK;
	fwd_settle(e, m->page, d);
	return 0;
}

/* FWD_NONE: node @arg died and forwarded nothing for this page to @src. */
static int home_fwd_none(struct eng *e, unsigned src, const struct wire_msg *m)
{
	struct dir *d;
	uint8_t f;

	if (m->arg >= e->nodes || m->arg == src)
		return proto_err(e, src, m, "invalid node %llu", (unsigned long long)m->arg);
	/* From now on pages owned by that node reach @src through us (FETCH), also when we
	 * learn of its death only later. */
	e->fw_dead[src] |= BIT(m->arg);
	if (home_of(e, m->page) != e->self)
		return 0; /* advisory: the request it was about is not ours to serve */
	d = dir_of(e, m->page);
	f = e->fw[m->page];
	if (!(f & FW_ON) || d->req != src || e->fwo[m->page] != m->arg ||
	    (f & (FW_ACK | FW_NONE | FW_RECALL)))
		return 0; /* not forwarded yet, or served otherwise */
	e->fw[m->page] |= FW_NONE;
	fwd_settle(e, m->page, d);
	return 0;
}

/* Home side of a death: node @node was the forwarding owner or the requester of @page. */
static bool fwd_peer_gone(struct eng *e, uint64_t page, struct dir *d, unsigned node)
{
	uint8_t f = page < e->npages ? e->fw[page] : 0; /* (a leaf may reach past the end) */

	if (!(f & FW_ON))
		return false;
	if (e->fwo[page] == node && !(f & FW_REPLY)) {
		e->fw[page] |= FW_OGONE;
		d->owner = NODE_NONE; /* not lost yet: the requester may have it */
		/* The requester may have learnt of the death before it asked: then no
		 * FWD_NONE is on its way. Ask; it answers once it knows too. */
		if (!(f & (FW_ACK | FW_NONE)) && d->req != node && eng_alive(e, d->req))
			send_msg(e, d->req, WIRE_FWD_ASK, 0, page, node, NULL);
	}
	/* A requester that said BYE after it had the page: as a sharer it just went; as the
	 * new owner it gave the page back with a PUTM, kept for the forward's end. */
	if (d->req == node &&
	    !((e->byed & BIT(node)) && (f & FW_ACK) && (f & FW_TO_I)))
		e->fw[page] |= FW_RGONE;
	fwd_settle(e, page, d);
	return true;
}

/* ------------------------------------------------------------------------------------------
 * Requester side.
 */

static void request(struct eng *e, uint64_t page, unsigned type, int next_state)
{
	unsigned home = home_of(e, page);

	set_st(e, page, next_state);
	STAT_INC(e, requests, 1);
	if (in_transition(e, home)) {
		/* Its home is handing its pages over: ask the new home after the BYE. */
		e->defer[page] = 1;
		e->ndefer++;
		return;
	}
	send_msg(e, home, (uint8_t)type, 0, page, type == WIRE_GET_S ? e->spec[page] : 0, NULL);
}

/* The request a transient state stands for. */
static unsigned req_type(int s)
{
	return s == ENG_IS_D ? WIRE_GET_S : WIRE_GET_M;
}

static void ra_arrived(struct eng *e, uint64_t page);

static void lose_page(struct eng *e, uint64_t page)
{
	ra_arrived(e, page); /* a burst that starts with it ends as if it had arrived */
	e->spec[page] = 0;
	set_st(e, page, ENG_LOST);
	STAT_INC(e, poisoned, 1);
	op_check(e, e->ops->poison(e->ctx, page), "poison", page);
}

/*
 * Read-ahead: a read miss at @page right after the previous one (or inside the window that
 * was fetched after it) is sequential; the window then doubles up to ra_max and the pages of
 * the window that are Invalid here are requested too, without a waiting thread. The window
 * is refilled in bursts, once less than half of it is left ahead of the faulting thread: a
 * burst travels as a batch (one send of many requests, one reply batch, one UFFDIO_COPY for a
 * run of pages), and the thread then reads the run without faulting again, instead of one
 * request, one reply and one fault per page.
 *
 * A sequential miss asks for two windows at once, and the arrival of each burst's first page
 * asks for one more, as long as the stream stays within RA_AHEAD windows of the last fault:
 * two bursts are then always on their way, so the nodes that serve them prepare one while
 * this node installs the other. With one at a time, each side sat idle while the other
 * worked (docs/PERFORMANCE.md, "The scan's pipeline").
 */
/* Request the Invalid pages of [ra_next, end) in page order; returns the first one still on
 * its way when the burst has left (UINT64_MAX if none: our own pages' requests are served as
 * they are issued, so that the burst leaves, and its replies come back, in page order: one
 * run of pages). */
static uint64_t ra_burst(struct eng *e, uint64_t end)
{
	uint64_t first = UINT64_MAX;

	if (end > e->npages)
		end = e->npages;
	if (e->lv != LV_NONE)
		return first;
	e->fset_on = true; /* our own pages' FETCHes: one FETCH_SET per owner */
	for (uint64_t p = e->ra_next; p < end; p++) {
		unsigned home = home_of(e, p);

		if (get_st(e, p) != ENG_I || frozen(e, p) || !eng_alive(e, home))
			continue;
		if (first == UINT64_MAX)
			first = p;
		STAT_INC(e, readahead, 1);
		if (home != e->self && !in_transition(e, home)) {
			ra_set_add(e, home, p); /* one GET_S_SET per home, sent below */
			continue;
		}
		e->spec[p] = 1; /* the home may decline it: RA_SKIP */
		request(e, p, WIRE_GET_S, ENG_IS_D);
		drain_local(e);
	}
	e->fset_on = false;
	for (unsigned n = 0; n < e->nodes; n++) {
		set_send(e, &e->ra_set[n], n, &ra_kind);
		set_send(e, &e->fset[n], n, &fetch_kind);
	}
	if (end > e->ra_next)
		e->ra_next = end;
	while (first < end && get_st(e, first) != ENG_IS_D)
		first++;
	return first < end ? first : UINT64_MAX;
}

static void ra_disarm(struct eng *e)
{
	for (unsigned k = 0; k < RA_TRIG_MAX; k++)
		e->ra_trig[k] = UINT64_MAX;
}

/* @page arrived, was declined or was lost: if a burst's first page still on its way was
 * that one, the burst is in (or as good as), and the stream may ask for more. */
static void ra_arrived(struct eng *e, uint64_t page)
{
	for (unsigned k = 0; k < RA_TRIG_MAX; k++) {
		if (e->ra_trig[k] == page) {
			e->ra_trig[k] = UINT64_MAX;
			e->ra_kick = true; /* served at the end of the event, in ra_settle() */
		}
	}
}

/*
 * Request [ra_next, @end) as one burst whose first page still on its way, when it arrives,
 * asks for the next: unless RA_TRIG_MAX bursts are on their way already (what their answers
 * hold stays within a quarter of peer_buffer_max: docs/PROTOCOL.md), or the burst would end
 * more than RA_AHEAD windows past the last fault (a reader that stopped costs at most that).
 */
static void ra_window(struct eng *e, uint64_t end)
{
	unsigned k;
	uint64_t first;

	for (k = 0; k < RA_TRIG_MAX && e->ra_trig[k] != UINT64_MAX; k++)
		;
	if (k == RA_TRIG_MAX || end > e->seq_last + 1 + (uint64_t)RA_AHEAD * e->ra_win)
		return;
	first = ra_burst(e, end);
	if (first != UINT64_MAX)
		e->ra_trig[k] = first;
}

static void readahead(struct eng *e, uint64_t page)
{
	/* Sequential: past the last fault, and not past what was asked for ahead of it (the
	 * stream runs up to RA_AHEAD windows ahead; the thread faults where it overtakes it). */
	bool seq = page > e->seq_last && (page <= e->seq_last + 1 + 2 * (uint64_t)e->ra_win ||
					  page <= e->ra_next);

	e->seq_last = page;
	if (e->ra_max <= 0)
		return;
	if (!seq) {
		e->ra_win = 0;
		e->ra_next = page + 1;
		ra_disarm(e);
		return;
	}
	e->ra_win = e->ra_win ? e->ra_win * 2 : 2;
	if (e->ra_win > (unsigned)e->ra_max)
		e->ra_win = (unsigned)e->ra_max;
	if (e->ra_next <= page)
		e->ra_next = page + 1;
	if (e->ra_next - page - 1 <= e->ra_win / 2) /* less than half a window on its way */
		ra_window(e, page + 1 + e->ra_win);
	/* Two windows on their way past the fault: one is served while the other is installed.
	 * Each arrival then asks for one more, so the two stay on their way. */
	if (e->ra_next < page + 1 + 2 * (uint64_t)e->ra_win)
		ra_window(e, e->ra_next + e->ra_win);
}

/* After an event: the second burst a read-ahead armed, if its trigger page arrived. */
static void ra_settle(struct eng *e)
{
	if (!e->ra_kick)
		return;
	e->ra_kick = false;
	ra_window(e, e->ra_next + e->ra_win);
	drain_local(e);
}

static int req_data(struct eng *e, unsigned src, const struct wire_msg *m)
{
	int s = get_st(e, m->page);
	bool excl = m->flags & WIRE_F_EXCL;
	const void *data = (m->flags & WIRE_F_ZERO) ? NULL : m->payload;

	if (e->defer[m->page])
		return proto_err(e, src, m, "our request for it was not sent yet");
	/* DATA+EXCL may also answer a GET_S: a migratory page is handed over writable. */
	if (excl ? (s != ENG_IM_D && s != ENG_IS_D) : s != ENG_IS_D)
		return proto_err(e, src, m, "page is %s here, no %s request pending",
				 eng_state_name(s), excl ? "request" : "GET_S");
	op_must(e, e->ops->install(e->ctx, m->page, data, excl), "install", m->page);
	set_st(e, m->page, excl ? ENG_M : ENG_S);
	e->spec[m->page] = 0;
	STAT_INC(e, pages_in, 1);
	if (!data)
		STAT_INC(e, zero_pages_in, 1);
	ra_arrived(e, m->page);
	return 0;
}

static int req_inv(struct eng *e, unsigned src, const struct wire_msg *m)
{
	int s = get_st(e, m->page);

	if (s == ENG_LOST && (e->died_leaving & ~e->alive)) {
		/* We dropped our copy when its home died during a leave, but its successor
		 * (which we learnt of late) still counted us: nothing to drop. */
		send_msg(e, src, WIRE_INV_ACK, 0, m->page, 0, NULL);
		return 0;
	}
	if (s != ENG_S && s != ENG_SM_A)
		return proto_err(e, src, m, "page is %s here, not shared", eng_state_name(s));
	inv_here(e, m->page, s);
	send_msg(e, src, WIRE_INV_ACK, 0, m->page, 0, NULL);
	return 0;
}

/*
 * The contents of @page, Modified here, that this owner gives away; if @leave, the page
 * leaves this node (*@gone says whether it is dropped already). Taken in one step where the
 * runtime can (ops->take: the page leaves the mapping with its contents); otherwise
 * write-protect first, then read: a store landing between a copy and a protect would be lost.
 * Stores after the protect (or the take) fault and wait; they are served after this node
 * asks for the page again.
 */
static const void *give_page(struct eng *e, uint64_t page, bool leave, bool *gone)
{
	const void *data = leave && e->ops->take ? e->ops->take(e->ctx, page) : NULL;

	*gone = data != NULL;
	if (data)
		return data;
	op_must(e, e->ops->protect(e->ctx, page), "write-protect", page);
	return e->ops->page_data(e->ctx, page);
}

/* FETCH at the owner: the page to the home, which keeps it or passes it on. */
static int req_fetch(struct eng *e, unsigned src, const struct wire_msg *m)
{
	int s = get_st(e, m->page);

	if (s == ENG_I && e->lv >= LV_ACKS)
		return 0; /* we are leaving and gave the page back: our PUTM answers this FETCH */
	if (s != ENG_M)
		return proto_err(e, src, m, "page is %s here, not modified", eng_state_name(s));
	if (m->arg != WIRE_FETCH_TO_S && m->arg != WIRE_FETCH_TO_I)
		return proto_err(e, src, m, "unknown fetch mode %llu", (unsigned long long)m->arg);
	bool gone;
	const void *data = give_page(e, m->page, m->arg == WIRE_FETCH_TO_I, &gone);
	uint64_t warg = e->ops->written ? e->ops->written(e->ctx, m->page, data) : 0; /* stats */

	send_page_arg(e, src, WIRE_FETCH_REPLY, 0, m->page, data, warg);
	if (m->arg == WIRE_FETCH_TO_I) {
		if (!gone)
			op_must(e, e->ops->drop(e->ctx, m->page), "drop", m->page);
		set_st(e, m->page, ENG_I);
		STAT_INC(e, invalidations, 1);
	} else {
		set_st(e, m->page, ENG_S);
		STAT_INC(e, downgrades, 1);
	}
	return 0;
}

/*
 * FWD at the owner: send the page straight to the requester, then tell the home. The page is
 * given up as for FETCH (give_page()). If the requester is gone in our view, the home serves
 * it (or learns it is gone) from a plain FETCH_REPLY.
 */
static int req_fwd(struct eng *e, unsigned src, const struct wire_msg *m)
{
	int s = get_st(e, m->page);
	unsigned r = (unsigned)(m->arg & 0xff), mode = (unsigned)(m->arg >> 8);

	if (s == ENG_I && e->lv >= LV_ACKS)
		return 0; /* we are leaving and gave the page back: our PUTM answers */
	if (s != ENG_M)
		return proto_err(e, src, m, "page is %s here, not modified", eng_state_name(s));
	if ((mode != WIRE_FETCH_TO_S && mode != WIRE_FETCH_TO_I) || r >= e->nodes ||
	    r == e->self || r == src)
		return proto_err(e, src, m, "invalid forward %#llx", (unsigned long long)m->arg);
	if (!eng_alive(e, r)) {
		struct wire_msg f = *m;

		f.type = WIRE_FETCH;
		f.arg = mode;
		return req_fetch(e, src, &f);
	}
	bool gone;
	const void *data = give_page(e, m->page, mode == WIRE_FETCH_TO_I, &gone);
	uint64_t warg = e->ops->written ? e->ops->written(e->ctx, m->page, data) : 0; /* stats */

	send_page(e, r, WIRE_FWD_DATA, mode == WIRE_FETCH_TO_I ? WIRE_F_EXCL : 0, m->page, data);
	if (mode == WIRE_FETCH_TO_I) {
		send_msg(e, src, WIRE_FWD_REPLY, 0, m->page, warg, NULL);
		if (!gone)
			op_must(e, e->ops->drop(e->ctx, m->page), "drop", m->page);
		set_st(e, m->page, ENG_I);
		STAT_INC(e, invalidations, 1);
	} else {
		send_page_arg(e, src, WIRE_FWD_REPLY, 0, m->page, data, warg);
		set_st(e, m->page, ENG_S);
		STAT_INC(e, downgrades, 1);
	}
	return 0;
}

/* FWD_DATA: the owner answers our request on the home's behalf; install it like DATA and
 * confirm to the home (which keeps the entry busy until then). */
static int req_fwd_data(struct eng *e, unsigned src, const struct wire_msg *m)
{
	unsigned home = home_of(e, m->page);
	struct wire_msg dm = *m;
	int err;

	if (get_st(e, m->page) == ENG_LOST && !eng_alive(e, home))
		return 0; /* its home died meanwhile: we poisoned the page already */
	if (home == src || home == e->self)
		return proto_err(e, src, m, "forwarded by the page's home");
	dm.type = WIRE_DATA;
	err = req_data(e, src, &dm);
	if (err)
		return err;
	send_msg(e, home, WIRE_FWD_ACK, 0, m->page,
		 (m->flags & WIRE_F_EXCL) ? page_hash(m->len ? m->payload : NULL, e->ps) : 0,
		 NULL);
	return 0;
}

/* FWD_ASK: did a forward from the dead node @arg reach us? We answered already if we have
 * the page (FWD_ACK, ahead on the link) or learnt of its death with our request in flight
 * (FWD_NONE from peer_gone); and if we have not learnt of it yet, we answer then. */
static int req_fwd_ask(struct eng *e, unsigned src, const struct wire_msg *m)
{
	int s = get_st(e, m->page);

	if (m->arg >= e->nodes || m->arg == e->self || m->arg == src)
		return proto_err(e, src, m, "invalid node %llu", (unsigned long long)m->arg);
	if ((s == ENG_IS_D || s == ENG_IM_D) && !e->defer[m->page] &&
	    !eng_alive(e, (unsigned)m->arg))
		send_msg(e, src, WIRE_FWD_NONE, 0, m->page, m->arg, NULL);
	return 0;
}

/* RECALL: the page's owner died after forwarding it to us, before the home got it. */
static int req_recall(struct eng *e, unsigned src, const struct wire_msg *m)
{
	int s = get_st(e, m->page);

	if (s != ENG_S && s != ENG_SM_A)
		return proto_err(e, src, m, "page is %s here, not shared", eng_state_name(s));
	send_page(e, src, WIRE_FWD_REPLY, 0, m->page, e->ops->page_data(e->ctx, m->page));
	return 0;
}

static int req_grant(struct eng *e, unsigned src, const struct wire_msg *m)
{
	int s = get_st(e, m->page);

	if (s != ENG_SM_A || e->defer[m->page])
		return proto_err(e, src, m, "page is %s here, no upgrade pending",
				 eng_state_name(s));
	op_must(e, e->ops->unprotect(e->ctx, m->page), "unprotect", m->page);
	set_st(e, m->page, ENG_M);
	return 0;
}

/* RA_SKIP: the home declined our read-ahead request (the page has an owner). */
static int req_skip(struct eng *e, unsigned src, const struct wire_msg *m)
{
	if (get_st(e, m->page) != ENG_IS_D || e->defer[m->page])
		return proto_err(e, src, m, "page is %s here, no GET_S pending",
				 eng_state_name(get_st(e, m->page)));
	ra_arrived(e, m->page); /* the stream goes on without this page */
	if (!e->spec[m->page]) {
		/* A thread faulted on it since: ask for real (after the BYE if the home is
		 * handing its pages over). */
		request(e, m->page, WIRE_GET_S, ENG_IS_D);
		return 0;
	}
	e->spec[m->page] = 0;
	set_st(e, m->page, ENG_I);
	return 0;
}

/* ------------------------------------------------------------------------------------------
 * Sets of read-ahead pages (docs/PROTOCOL.md, "Read-ahead"): a burst asks each home for all
 * its pages of the window in one GET_S_SET, and the home answers what it can at once in one
 * DATA_SET. Each page is still its own transaction: the home runs every page of the set
 * through the ordinary GET_S path (arg 1: read-ahead) and only the wire format is shared.
 */

static inline bool bm_get(const uint8_t *bm, unsigned i)
{
	return bm[i / 8] & (1u << (i % 8));
}

static inline void bm_set(uint8_t *bm, unsigned i)
{
	bm[i / 8] |= (uint8_t)(1u << (i % 8));
}

/* Pages per set: WIRE_SET_PAGES, or fewer for pages so large that the answer would not fit
 * a decoder (WIRE_BUFFER_MAX). */
static unsigned set_max(const struct eng *e)
{
	size_t n = (WIRE_BUFFER_MAX - WIRE_HDR_LEN - WIRE_DATA_SET_FIXED) / e->ps;

	return n < WIRE_SET_PAGES ? (unsigned)n : WIRE_SET_PAGES;
}

/* Building a DATA_SET: keep the answer for a page of the set instead of sending it. */
static bool set_take(struct eng *e, unsigned dst, uint8_t type, uint8_t flags, uint64_t page,
		     const void *data)
{
	uint8_t *want = e->set_buf, *served = want + WIRE_SET_BYTES, *zero = served + WIRE_SET_BYTES;
	uint8_t *skip = zero + WIRE_SET_BYTES;
	unsigned i;

	if (dst != e->set_dst || page < e->set_base || page - e->set_base >= WIRE_SET_PAGES)
		return false;
	i = (unsigned)(page - e->set_base);
	if (!bm_get(want, i) || bm_get(served, i) || bm_get(skip, i))
		return false;
	if (type == WIRE_RA_SKIP) {
		bm_set(skip, i);
		return true;
	}
	if (type != WIRE_DATA || (flags & WIRE_F_EXCL))
		return false;
	bm_set(served, i);
	if (!data) {
		bm_set(zero, i);
		return true;
	}
	memcpy(skip + WIRE_SET_BYTES + (size_t)e->set_k++ * e->ps, data, e->ps);
	return true;
}

/* GET_S_SET at the home: each page as a read-ahead GET_S, the answers in one DATA_SET. A
 * broken set is refused before anything happens; a page refused by the GET_S path (a
 * hostile peer: the connection is closed) may leave the pages before it served. */
/* The pages of a set request (GET_S_SET, FETCH_SET): 0 and their count in *@n, or the
 * protocol error of a malformed set, one reaching past the region, or an empty one. */
static int set_check(struct eng *e, unsigned src, const struct wire_msg *m, unsigned *n)
{
	*n = 0;
	if (!m->payload || m->len != WIRE_SET_BYTES)
		return proto_err(e, src, m, "malformed set");
	for (unsigned i = 0; i < WIRE_SET_PAGES; i++) {
		if (!bm_get(m->payload, i))
			continue;
		if (m->page + i >= e->npages || m->page + i < m->page)
			return proto_err(e, src, m, "page %llu out of range",
					 (unsigned long long)(m->page + i));
		(*n)++;
	}
	return *n ? 0 : proto_err(e, src, m, "an empty set");
}

static int home_get_set(struct eng *e, unsigned src, const struct wire_msg *m)
{
	unsigned n;
	bool staged;
	int err = set_check(e, src, m, &n);

	if (err)
		return err;
	if (n > set_max(e))
		return proto_err(e, src, m, "a set of %u pages", n);
	if (!e->set_buf) {
		e->set_buf = malloc(4 * WIRE_SET_BYTES + (size_t)set_max(e) * e->ps);
		eng_verify(e, e->set_buf, "out of memory for a page set");
	}
	memcpy(e->set_buf, m->payload, WIRE_SET_BYTES);
	memset(e->set_buf + WIRE_SET_BYTES, 0, WIRE_DATA_SET_FIXED);
	e->set_on = true;
	e->set_dst = src;
	e->set_base = m->page;
	e->set_k = 0;
	staged = stage_begin(e, m->page, m->payload, true);
	for (unsigned i = 0; i < WIRE_SET_PAGES && !err; i++) {
		struct wire_msg g = {
			.type = WIRE_GET_S, .src = m->src, .page = m->page + i, .arg = 1,
		};

		if (!bm_get(m->payload, i))
			continue;
		if (e->set_k >= e->set_cap) {
			/* As much as we queue toward one peer at once: decline the rest. */
			bm_set(e->set_buf + 3 * WIRE_SET_BYTES, i);
			continue;
		}
		err = handle(e, src, &g);
		drain_local(e); /* a page we own: our FETCH to ourselves, its DATA into the set */
	}
	if (staged)
		e->ops->stage_end(e->ctx);
	e->set_on = false;
	if (err)
		return err;
	const uint8_t *ans = e->set_buf + WIRE_SET_BYTES;
	bool any = false;

	for (unsigned i = 0; i < WIRE_SET_BYTES && !any; i++)
		any = ans[i] || ans[2 * WIRE_SET_BYTES + i]; /* served or declined */
	if (any) {
		struct wire_msg d = {
			.type = WIRE_DATA_SET,
			.src = (uint16_t)e->self,
			.len = WIRE_DATA_SET_FIXED + e->set_k * e->ps,
			.page = m->page,
			.payload = ans,
		};

		e->ops->send(e->ctx, src, &d, ans);
	}
	return 0;
}

/*
 * Staging (eng_ops.stage): the pages of a set that this node will give up from its own
 * mapping, Modified here, are write-protected and read by the node all at once, a system call
 * per run of pages instead of two per page; each page's own path then only marks it. @home:
 * the set is a GET_S_SET at its home, which gives up only pages it owns itself, idle, and not
 * declined as read-ahead (home_request). A page staged but not given up after all is made
 * writable again by stage_end(): the prediction decides the cost, never the outcome.
 */
static bool stage_begin(struct eng *e, uint64_t base, const uint8_t *bm, bool home)
{
	uint8_t st[WIRE_SET_BYTES] = { 0 };
	unsigned n = 0;

	if (!e->ops->stage)
		return false;
	for (unsigned i = 0; i < WIRE_SET_PAGES; i++) {
		uint64_t p = base + i;

		if (!bm_get(bm, i) || get_st(e, p) != ENG_M)
			continue;
		if (home) {
			const struct dir *d = dir_of(e, p);

			if (d->busy || d->owner != e->self ||
			    (d->flags & (DIR_WSHARED | DIR_MIGR | DIR_LOST)))
				continue;
		}
		bm_set(st, i);
		n++;
	}
	if (n < 2)
		return false; /* one page: its own path costs the same */
	e->ops->stage(e->ctx, base, st);
	return true;
}

/* FETCH_SET at the owner: each page as a FETCH (TO_S) of its own, answered by its own
 * FETCH_REPLY; a broken set is refused before anything happens. */
static int req_fetch_set(struct eng *e, unsigned src, const struct wire_msg *m)
{
	unsigned n;
	bool staged;
	int err = set_check(e, src, m, &n);

	if (err)
		return err;
	staged = stage_begin(e, m->page, m->payload, false);
	for (unsigned i = 0; i < WIRE_SET_PAGES && !err; i++) {
		struct wire_msg f = {
			.type = WIRE_FETCH, .src = m->src, .page = m->page + i,
			.arg = WIRE_FETCH_TO_S,
		};

		if (bm_get(m->payload, i))
			err = handle(e, src, &f);
	}
	if (staged)
		e->ops->stage_end(e->ctx);
	return err;
}

/* DATA_SET at the requester: each answer as the DATA or RA_SKIP it stands for. */
static int req_data_set(struct eng *e, unsigned src, const struct wire_msg *m)
{
	const uint8_t *served = m->payload, *zero = served + WIRE_SET_BYTES;
	const uint8_t *skip = zero + WIRE_SET_BYTES, *pg = skip + WIRE_SET_BYTES;
	unsigned k = 0;
	int err = 0;

	if (!m->payload || m->len < WIRE_DATA_SET_FIXED || m->flags)
		return proto_err(e, src, m, "malformed set");
	for (unsigned i = 0; i < WIRE_SET_PAGES; i++) {
		bool sv = bm_get(served, i), z = bm_get(zero, i), sk = bm_get(skip, i);

		if ((z && !sv) || (sv && sk))
			return proto_err(e, src, m, "inconsistent bitmaps at page %u", i);
		if ((sv || sk) && (m->page + i >= e->npages || m->page + i < m->page))
			return proto_err(e, src, m, "page out of range");
		k += sv && !z;
	}
	if (m->len != WIRE_DATA_SET_FIXED + (size_t)k * e->ps)
		return proto_err(e, src, m, "%u pages and %u bytes", k, m->len);
	k = 0;
	for (unsigned i = 0; i < WIRE_SET_PAGES && !err; i++) {
		struct wire_msg a = { .src = m->src, .page = m->page + i };

		if (bm_get(served, i)) {
			a.type = WIRE_DATA;
			if (bm_get(zero, i)) {
				a.flags = WIRE_F_ZERO;
			} else {
				a.len = e->ps;
				a.payload = pg + (size_t)k++ * e->ps;
			}
		} else if (bm_get(skip, i)) {
			a.type = WIRE_RA_SKIP;
		} else {
			continue;
		}
		err = handle(e, src, &a);
	}
	return err;
}

/* Sets of pages asked of one node (struct set_kind). */
static void set_send(struct eng *e, struct ra_set *r, unsigned dst, const struct set_kind *k)
{
	struct wire_msg m = { .src = (uint16_t)e->self, .page = r->base };

	if (!r->n)
		return;
	if (r->n == 1) {
		m.type = k->one;
		m.arg = k->arg;
		e->ops->send(e->ctx, dst, &m, NULL);
	} else {
		m.type = k->set;
		m.len = WIRE_SET_BYTES;
		m.payload = r->bm;
		e->ops->send(e->ctx, dst, &m, r->bm);
	}
	r->n = 0;
}

/* @page into @r, which is sent first if the page does not fit it (out of its span, or @max
 * pages in it already). */
static void set_put(struct eng *e, struct ra_set *r, unsigned dst, uint64_t page, unsigned max,
		    const struct set_kind *k)
{
	if (r->n && (page - r->base >= WIRE_SET_PAGES || r->n >= max))
		set_send(e, r, dst, k);
	if (!r->n) {
		r->base = page;
		memset(r->bm, 0, sizeof(r->bm));
	}
	bm_set(r->bm, (unsigned)(page - r->base));
	r->n++;
}

/* Read-ahead of @page, homed at @home (another node, not handing over): into its set. */
static void ra_set_add(struct eng *e, unsigned home, uint64_t page)
{
	set_put(e, &e->ra_set[home], home, page, set_max(e), &ra_kind);
	set_st(e, page, ENG_IS_D);
	e->spec[page] = 1;
	STAT_INC(e, requests, 1);
}

/* A read-ahead burst's FETCH (TO_S) of @page from @owner: into the owner's FETCH_SET (the
 * owner answers a whole set at once: at most set_cap pages' replies). */
static void fset_add(struct eng *e, unsigned owner, uint64_t page)
{
	set_put(e, &e->fset[owner], owner, page, e->set_cap, &fetch_kind);
}

static int req_nack(struct eng *e, unsigned src, const struct wire_msg *m)
{
	int s = get_st(e, m->page);

	if ((s != ENG_IS_D && s != ENG_IM_D) || e->defer[m->page])
		return proto_err(e, src, m, "page is %s here, no request pending",
				 eng_state_name(s));
	elog(e, UDSM_LOG_WARN, "page %llu was lost with a dead node", (unsigned long long)m->page);
	lose_page(e, m->page);
	return 0;
}

static void fault(struct eng *e, uint64_t page, bool write)
{
	int s = get_st(e, page);

	if (e->lv != LV_NONE && (s == ENG_I || (s == ENG_S && write))) {
		/* Leaving: the application promised not to touch the region any more (this may
		 * also be a stale fault event). No new request: it could not be answered. */
		elog(e, UDSM_LOG_WARN, "fault on page %llu while leaving the cluster",
		     (unsigned long long)page);
		op_check(e, e->ops->wake(e->ctx, page), "wake", page);
		return;
	}
	if (frozen(e, page) && (s == ENG_I || (s == ENG_S && write))) {
		/* Its home is being changed (eng_freeze): ask the new home after eng_thaw. */
		e->frz_faults = grow(e, e->frz_faults, e->nfrz_faults, &e->frz_cap,
				     sizeof(*e->frz_faults), "the faults kept during a freeze");
		e->frz_faults[e->nfrz_faults++] = (struct frz_fault){ page, write };
		return;
	}
	switch (s) {
	case ENG_I:
		if (!eng_alive(e, home_of(e, page))) {
			lose_page(e, page);
			break;
		}
		request(e, page, write ? WIRE_GET_M : WIRE_GET_S, write ? ENG_IM_D : ENG_IS_D);
		if (!write)
			readahead(e, page);
		break;
	case ENG_S:
		if (!write) {
			op_check(e, e->ops->wake(e->ctx, page), "wake", page);
			break;
		}
		if (!eng_alive(e, home_of(e, page))) {
			op_must(e, e->ops->drop(e->ctx, page), "drop", page);
			lose_page(e, page);
			break;
		}
		request(e, page, WIRE_GET_M, ENG_SM_A);
		break;
	case ENG_M:
		op_check(e, e->ops->wake(e->ctx, page), "wake", page);
		break;
	case ENG_IS_D:
		/* Coalesced: the install wakes this thread too. A writer retries and upgrades.
		 * A read-ahead request it joins is no longer speculative: if the home declines
		 * it (RA_SKIP), we ask again for real. */
		e->spec[page] = 0;
		if (!write)
			readahead(e, page);
		break;
	case ENG_IM_D:
	case ENG_SM_A:
		break;
	case ENG_LOST:
		op_check(e, e->ops->poison(e->ctx, page), "poison", page);
		break;
	}
}

int eng_fault(struct eng *e, uint64_t page, bool write)
{
	if (page >= e->npages)
		return -EINVAL;
	fault(e, page, write);
	settle(e);
	return 0;
}

/* ------------------------------------------------------------------------------------------
 * Barrier: every node reports to the coordinator (node 0, or the node that took node 0's
 * pages over when it left: bar_coord()), which answers all once everybody has arrived.
 */

static void bar_release(struct eng *e, uint8_t flags)
{
	if (!(flags & WIRE_F_FAIL) && e->bar_mode_out >= 0)
		flags |= WIRE_F_BMODE | (e->bar_mode_out ? WIRE_F_BPOLL : 0);
	for (unsigned n = 0; n < e->nodes; n++)
		if (e->bar_arrived & BIT(n))
			send_msg(e, n, WIRE_BARRIER_DONE, flags, 0, e->bar_cur, NULL);
	e->bar_arrived = 0;
	e->bar_cur++;
}

static int bar_arrive(struct eng *e, unsigned src, const struct wire_msg *m)
{
	unsigned c = bar_coord(e);

	if (c != e->self) {
		if (in_transition(e, c))
			return stash(e, src, m); /* we take over from @c: wait for its BYE */
		if (!eng_alive(e, c) && e->degraded)
			return 0; /* replayed after the coordinator died: everybody fails it */
		return proto_err(e, src, m, "barriers are collected by node %u", c);
	}
	if (e->degraded) {
		send_msg(e, src, WIRE_BARRIER_DONE, WIRE_F_FAIL, 0, m->arg, NULL);
		return 0;
	}
	if (m->arg != e->bar_cur || (e->bar_arrived & BIT(src))) {
		if (src == e->self) {
			/* The barrier state a leaver handed us does not match our own: only a
			 * broken peer does that. Barriers can no longer be trusted: fail them. */
			elog(e, UDSM_LOG_ERR, "barrier %llu while collecting barrier %llu: "
			     "barriers fail from now on", (unsigned long long)m->arg,
			     (unsigned long long)e->bar_cur);
			e->degraded = true;
			if (e->bar_arrived & ~BIT(src))
				bar_release(e, WIRE_F_FAIL);
			send_msg(e, src, WIRE_BARRIER_DONE, WIRE_F_FAIL, 0, m->arg, NULL);
			return 0;
		}
		return proto_err(e, src, m, "barrier %llu while collecting barrier %llu",
				 (unsigned long long)m->arg, (unsigned long long)e->bar_cur);
	}
	e->bar_arrived |= BIT(src);
	if (e->bar_arrived == e->alive)
		bar_release(e, 0);
	return 0;
}

static int bar_done(struct eng *e, unsigned src, const struct wire_msg *m)
{
	unsigned c = bar_coord(e);

	if (src != c) {
		if (in_transition(e, c))
			return stash(e, src, m); /* after the old coordinator's last word */
		if (!eng_alive(e, c) && e->degraded)
			return 0; /* it died during its leave: we failed our barrier already */
		return proto_err(e, src, m, "barrier completion from node %u, not node %u", src,
				 c);
	}
	if (!e->bar_waiting || e->bar_defer || m->arg + 1 != e->bar_epoch) {
		if (e->degraded || e->lv != LV_NONE || src == e->self)
			return 0; /* we already failed it locally, or we are leaving (or the
				   * barrier state a broken leaver handed us listed us) */
		return proto_err(e, src, m, "no barrier %llu pending", (unsigned long long)m->arg);
	}
	e->bar_waiting = false;
	e->bar_mode_in = (m->flags & WIRE_F_BMODE) ? (m->flags & WIRE_F_BPOLL) != 0 : -1;
	e->ops->barrier_done(e->ctx, (m->flags & WIRE_F_FAIL) ? UDSM_EPEER : 0);
	return 0;
}

void eng_barrier_mode(struct eng *e, int mode)
{
	e->bar_mode_out = (int8_t)(mode < 0 ? -1 : mode > 0);
}

int eng_barrier_told(const struct eng *e)
{
	return e->bar_mode_in;
}

bool eng_barrier_coord(const struct eng *e)
{
	return bar_coord(e) == e->self;
}

int eng_barrier(struct eng *e)
{
	unsigned c = bar_coord(e);

	if (e->bar_waiting)
		return -EBUSY;
	if (e->degraded || !eng_alive(e, c) || e->lv != LV_NONE)
		return UDSM_EPEER;
	e->bar_waiting = true;
	if (in_transition(e, c))
		e->bar_defer = true; /* sent to its successor after its BYE */
	else
		send_msg(e, c, WIRE_BARRIER, 0, 0, e->bar_epoch, NULL);
	e->bar_epoch++;
	settle(e);
	return 0;
}

int eng_barrier_from(const struct eng *e)
{
	unsigned c = bar_coord(e);

	if (!e->bar_waiting || e->bar_defer || c == e->self || !eng_alive(e, c))
		return -1;
	return (int)c;
}

/* ------------------------------------------------------------------------------------------
 * Leaving without loss (docs/PROTOCOL.md, "Leaving"). The leaver L:
 *  1. once no request of its own is in flight and no other leave is in progress: LEAVE to
 *     every peer, and every page it holds Modified back to its home (PUTM), paced;
 *  2. every peer answers LEAVE_ACK and from then on keeps its new requests for L's pages (and
 *     its barrier arrival, if L collects barriers) until L's BYE; links are FIFO, so once L
 *     has every LEAVE_ACK nothing new reaches L as a home;
 *  3. once its entries are idle, L picks a successor S (the next live node after L that is
 *     not leaving), sends it every entry that is not in its initial state (ADOPT), then
 *     ADOPT_DONE with the barrier state, then BYE(S) to everybody;
 *  4. on BYE(L, S) every node records fwd[L] = S: pages homed at L are homed at S from now
 *     on. Kept requests go out to S; S replays what reached it before L's BYE (stash).
 * Pacing: the PUTMs and ADOPTs can be far more than a link may hold (peer_buffer_max). Before
 * each one the leaver asks ops->room; when there is none it keeps its place (lv_pb, lv_ho) and
 * stops until eng_resume() or any other event (settle() runs lv_step()).
 */

/* Keep @m until the transition of the node that homes its page (or collects barriers)
 * ends: the sender knows the successor already, we learn it with the leaver's BYE. */
static int stash(struct eng *e, unsigned src, const struct wire_msg *m)
{
	struct smsg *x;

	e->stash = grow(e, e->stash, e->nstash, &e->stash_cap, sizeof(*e->stash), "the stash");
	x = &e->stash[e->nstash++];
	x->src = src;
	x->m = *m;
	x->data = NULL;
	if (m->len) {
		x->data = malloc(m->len);
		eng_verify(e, x->data, "out of memory stashing %u bytes", m->len);
		memcpy(x->data, m->payload, m->len);
	}
	x->m.payload = x->data;
	return 0;
}

static int handle(struct eng *e, unsigned src, const struct wire_msg *m);

/* A transition ended (BYE or a loss): handle what was kept back, in order. */
static void stash_replay(struct eng *e)
{
	struct smsg *v = e->stash;
	size_t n = e->nstash;

	if (!n)
		return;
	e->stash = NULL;
	e->nstash = e->stash_cap = 0;
	for (size_t i = 0; i < n; i++) {
		bool from_ok = eng_alive(e, v[i].src) ||
			       (v[i].m.type == WIRE_PUTM && (e->byed & BIT(v[i].src)));

		if (from_ok && handle(e, v[i].src, &v[i].m))
			elog(e, UDSM_LOG_ERR, "dropped a message kept for a hand-over: %s",
			     e->why);
		free(v[i].data);
	}
	free(v);
}

/* May this node queue another message toward @dst now? (The leave's flow control.) */
static bool lv_room(struct eng *e, unsigned dst)
{
	if (!e->ops->room || e->ops->room(e->ctx, dst) > 0)
		return true;
	e->lv_wait = (int)dst;
	return false;
}

/*
 * Send the pages we hold Modified back to their homes, from the cursor on, while the links
 * have room; true once every page is done. Between steps the pages not given back yet are
 * still ours: a FETCH or INV for one is answered as usual (it is then no longer Modified
 * here and the cursor passes over it); one already given back is answered by its PUTM.
 * Nothing makes a page Modified here again: a leaving node starts no request.
 */
static bool put_back(struct eng *e)
{
	for (; e->lv_pb < e->npages; e->lv_pb++) {
		uint64_t p = e->lv_pb;
		unsigned home = home_of(e, p);

		if (get_st(e, p) != ENG_M || home == e->self || !eng_alive(e, home))
			continue;
		if (!lv_room(e, home))
			return false;
		bool gone;
		const void *data = give_page(e, p, true, &gone);

		/* Like a FETCH_REPLY, @arg carries what this writer changed (statistics). */
		send_page_arg(e, home, WIRE_PUTM, 0, p, data,
			      e->ops->written ? e->ops->written(e->ctx, p, data) : 0);
		if (!gone)
			op_must(e, e->ops->drop(e->ctx, p), "drop", p);
		set_st(e, p, ENG_I);
		e->lv_moved++;
	}
	return true;
}

/* One directory entry to the successor, unless it is in its initial state; 1 if sent. */
static int adopt_send(struct eng *e, unsigned dst, uint64_t page, struct dir *d, uint8_t *buf)
{
	struct wire_adopt a = {
		.owner = WIRE_OWNER_NONE,
		.last_rd = d->last_rd,
		.sharers = d->sharers & ~BIT(e->self),
		.mhash = d->mhash,
	};
	struct wire_msg m = { .type = WIRE_ADOPT, .src = (uint16_t)e->self, .page = page };
	const void *data = NULL;

	if (d->flags & DIR_MIGR)
		a.flags |= WIRE_ADOPT_MIGR;
	if (d->flags & DIR_LOST) {
		a.flags |= WIRE_ADOPT_LOST;
		a.sharers = 0;
	} else if (d->owner == e->self) {
		/* Our own page, Modified here: it goes with its entry, nobody owns it. */
		op_must(e, e->ops->protect(e->ctx, page), "write-protect", page);
		set_st(e, page, ENG_S);
		d->owner = NODE_NONE; /* our entry stays true: we share it, our page is the copy */
		d->sharers = BIT(e->self);
		dir_use_own(e, d);
		data = e->ops->page_data(e->ctx, page);
	} else if (d->owner != NODE_NONE) {
		a.owner = d->owner;
	} else {
		data = home_data(e, page, d);
	}
	if (a.owner == WIRE_OWNER_NONE && !(a.flags & WIRE_ADOPT_LOST)) {
		if (!data || wire_is_zero(data, e->ps)) {
			data = NULL;
			m.flags |= WIRE_F_ZERO;
			if (!a.sharers && !a.flags)
				return 0; /* the initial state: nothing to say */
		}
	}
	wire_adopt_encode(buf, &a);
	m.len = WIRE_ADOPT_FIXED;
	if (data) {
		memcpy(buf + WIRE_ADOPT_FIXED, data, e->ps);
		m.len += e->ps;
	}
	m.payload = buf;
	e->ops->send(e->ctx, dst, &m, buf);
	return 1;
}

/* The successor: the next live node after us that is not leaving; NODE_NONE if none. */
static unsigned lv_pick(const struct eng *e)
{
	for (unsigned i = 1; i < e->nodes; i++) {
		unsigned c = (e->self + i) % e->nodes;

		if (eng_alive(e, c) && !(e->leaving & BIT(c)))
			return c;
	}
	return NODE_NONE;
}

/*
 * Every LEAVE_ACK is in and our entries are idle: hand them over and say BYE. In steps, as
 * the link to the successor has room: nothing new reaches us as a home meanwhile (every peer
 * keeps its requests for our pages until our BYE, and a node that leaves at the same time
 * gave its pages back before its LEAVE_ACK), and our entries stay true after they are sent,
 * so that if the successor dies before our BYE we start over with the next one: the ADOPTs
 * it got die with it, and nobody acts on an ADOPT before the BYE that names its sender's
 * successor. A loss meanwhile is applied to our entries too (lost owner, gone sharer) before
 * the rest go out; the successor applies it to those it has.
 */
static void lv_handover(struct eng *e)
{
	uint64_t arrived = 0, arg = 0, preds = 0;
	unsigned succ = e->lv_succ;

	eng_verify(e, !e->nbusy, "%llu directory entries busy during our hand-over",
		   (unsigned long long)e->nbusy);
	if (succ == NODE_NONE || !eng_alive(e, succ)) {
		succ = lv_pick(e);
		if (e->lv_succ != NODE_NONE && succ != NODE_NONE)
			elog(e, UDSM_LOG_WARN, "our successor node %u was lost during the "
			     "hand-over: starting over with node %u", e->lv_succ, succ);
		else if (e->lv_succ != NODE_NONE)
			elog(e, UDSM_LOG_WARN, "our successor node %u was lost during the "
			     "hand-over, and nobody is left to take over", e->lv_succ);
		e->lv_succ = succ;
		e->lv_ho = 0;
		e->lv_nadopt = 0;
	}
	if (succ != NODE_NONE) {
		if (!e->lv_buf) {
			e->lv_buf = malloc(WIRE_ADOPT_FIXED + e->ps);
			eng_verify(e, e->lv_buf, "out of memory for a hand-over buffer");
		}
		for (; e->lv_ho < e->npages; e->lv_ho++) {
			uint64_t page = e->lv_ho, li = page >> DIR_LEAF_SHIFT;

			if (!e->leaf[li]) { /* a whole leaf in its initial state */
				e->lv_ho = (li + 1) * DIR_LEAF - 1;
				continue;
			}
			if (home_of(e, page) != e->self)
				continue;
			if (!lv_room(e, succ))
				return;
			e->lv_nadopt += adopt_send(e, succ, page,
						   &e->leaf[li][page & (DIR_LEAF - 1)], e->lv_buf);
			e->lv_moved++;
		}
		if (e->ops->handover)
			e->ops->handover(e->ctx, succ);
		if (bar_coord(e) == e->self) {
			arrived = e->bar_arrived & ~BIT(e->self);
			arg = e->bar_cur | WIRE_ADOPT_COORD;
		}
		send_msg(e, succ, WIRE_ADOPT_DONE, e->degraded ? WIRE_F_FAIL : 0, arrived, arg,
			 NULL);
		elog(e, UDSM_LOG_DEBUG, "left: node %u took over %llu directory entries", succ,
		     (unsigned long long)e->lv_nadopt);
	} else if (e->alive & ~BIT(e->self)) {
		/* Nobody can miss them: every node still here is leaving, none will fault. */
		elog(e, UDSM_LOG_DEBUG, "left while every other node is leaving too: nobody "
		     "takes our pages over");
	} else {
		elog(e, UDSM_LOG_DEBUG, "left: the last node of the cluster");
	}
	for (unsigned n = 0; n < e->nodes; n++) /* the nodes whose pages we took over */
		if (__atomic_load_n(&e->fwd[n], __ATOMIC_RELAXED) == e->self)
			preds |= BIT(n);
	for (unsigned n = 0; n < e->nodes; n++)
		if (n != e->self && eng_alive(e, n))
			send_msg(e, n, WIRE_BYE, 0, preds, succ != NODE_NONE ? succ : WIRE_NODE_ANY,
				 NULL);
	free(e->lv_buf);
	e->lv_buf = NULL;
	e->lv = LV_DONE;
}

/* Is any request of ours, or any entry we home, still moving? */
static bool lv_busy(const struct eng *e)
{
	/* An idle entry has an empty queue: dir_next() serves until busy or empty. */
	return e->lq_len || e->ndefer || e->ntrans || e->nbusy;
}

/* Move our leave on as far as it can go now (and the links toward the peers allow). */
static void lv_step(struct eng *e)
{
	e->lv_wait = -1;
	if (e->lv == LV_WANT) {
		/* Another leave first (we acked it: it may pick us as its successor). */
		if ((e->leaving & e->alive) || e->ntrans)
			return;
		e->lv = LV_ACKS;
		e->lv_acked = e->lv_ackdue = 0;
		e->lv_pb = 0;
		for (unsigned n = 0; n < e->nodes; n++)
			if (n != e->self && eng_alive(e, n))
				send_msg(e, n, WIRE_LEAVE, 0, 0, 0, NULL);
	}
	if (e->lv == LV_ACKS && e->lv_pb < e->npages) {
		if (!put_back(e))
			return;
		/* A node leaving at the same time gets our LEAVE_ACK only now, behind our PUTMs
		 * for the pages it homes: it must have them before it hands its entries over. */
		for (uint64_t m = e->lv_ackdue; m; m &= m - 1) {
			unsigned n = (unsigned)__builtin_ctzll(m);

			if (eng_alive(e, n))
				send_msg(e, n, WIRE_LEAVE_ACK, 0, 0, 0, NULL);
		}
		e->lv_ackdue = 0;
	}
	if (e->lv == LV_ACKS && !(e->alive & ~BIT(e->self) & ~e->lv_acked) && !lv_busy(e)) {
		e->lv = LV_HAND;
		e->lv_succ = NODE_NONE;
	}
	if (e->lv == LV_HAND)
		lv_handover(e);
}

/* After every event: messages to ourselves, read-ahead, the leave. */
static void settle(struct eng *e)
{
	drain_local(e);
	if (e->fw_replay) {
		e->fw_replay = e->fw_putm = false;
		stash_replay(e); /* what still waits for a hand-over is stashed again */
		drain_local(e);
	}
	ra_settle(e);
	if (e->lv == LV_WANT || e->lv == LV_ACKS || e->lv == LV_HAND) {
		lv_step(e);
		drain_local(e);
	}
}

int eng_leave(struct eng *e)
{
	if (e->lv != LV_NONE)
		return -EALREADY;
	e->lv = LV_WANT;
	e->ra_max = -1;
	ra_disarm(e);
	e->ra_kick = false;
	if (e->bar_waiting) {
		e->bar_waiting = e->bar_defer = false;
		e->ops->barrier_done(e->ctx, UDSM_ECLOSED);
	}
	settle(e);
	return 0;
}

bool eng_left(const struct eng *e)
{
	return e->lv == LV_DONE;
}

int eng_paced(const struct eng *e)
{
	return e->lv == LV_ACKS || e->lv == LV_HAND ? e->lv_wait : -1;
}

void eng_resume(struct eng *e)
{
	settle(e);
}

uint64_t eng_leave_moved(const struct eng *e)
{
	return e->lv_moved;
}

static int leave_msg(struct eng *e, unsigned src, const struct wire_msg *m)
{
	if (e->leaving & BIT(src))
		return proto_err(e, src, m, "node %u is leaving already", src);
	e->leaving |= BIT(src);
	if (e->lv == LV_ACKS && e->lv_pb < e->npages)
		e->lv_ackdue |= BIT(src); /* after our last PUTM (lv_step) */
	else
		send_msg(e, src, WIRE_LEAVE_ACK, 0, 0, 0, NULL);
	return 0;
}

static int leave_ack(struct eng *e, unsigned src, const struct wire_msg *m)
{
	if (e->lv != LV_ACKS || (e->lv_acked & BIT(src)))
		return proto_err(e, src, m, "no leave of ours awaits this node's answer");
	e->lv_acked |= BIT(src);
	e->lv_moved++;
	return 0;
}

/* ADOPT: one directory entry from a leaving node that picked us as its successor. */
static int adopt(struct eng *e, unsigned src, const struct wire_msg *m)
{
	unsigned cur = home_of(e, m->page);
	uint64_t all = e->nodes == 64 ? ~(uint64_t)0 : BIT(e->nodes) - 1;
	bool zero = m->flags & WIRE_F_ZERO;
	struct wire_adopt a;
	struct dir *d;

	if (!in_transition(e, src) || !in_transition(e, cur))
		return proto_err(e, src, m, "no hand-over of this page to us is in progress");
	if (m->flags & ~WIRE_F_ZERO)
		return proto_err(e, src, m, "unexpected flags %#x", m->flags);
	if (wire_adopt_decode(m->payload, m->len, &a))
		return proto_err(e, src, m, "malformed entry");
	if ((a.owner != WIRE_OWNER_NONE && a.owner >= e->nodes) || a.owner == src ||
	    (a.last_rd != NODE_NONE && a.last_rd >= e->nodes) || (a.sharers & ~all) ||
	    (a.sharers & BIT(src)))
		return proto_err(e, src, m, "entry names an invalid node");
	if (m->len != WIRE_ADOPT_FIXED &&
	    (m->len != WIRE_ADOPT_FIXED + e->ps || zero))
		return proto_err(e, src, m, "entry of %u bytes, page size %u", m->len, e->ps);
	bool has_page = m->len > WIRE_ADOPT_FIXED;
	if (a.flags & WIRE_ADOPT_LOST) {
		if (a.owner != WIRE_OWNER_NONE || a.sharers || has_page || zero)
			return proto_err(e, src, m, "a lost entry with an owner, sharers or data");
	} else if (a.owner != WIRE_OWNER_NONE) {
		if (a.sharers || has_page || zero)
			return proto_err(e, src, m, "an owned entry with sharers or data");
	} else if (has_page == zero) {
		return proto_err(e, src, m, "an unowned entry needs its contents");
	}
	d = dir_of(e, m->page);
	if (d->busy || d->qhead)
		return proto_err(e, src, m, "the entry is in use");
	page_put(e, d->copy);
	d->copy = NULL;
	d->owner = NODE_NONE;
	d->sharers = a.sharers & e->alive;
	d->last_rd = a.last_rd;
	d->mhash = a.mhash;
	d->flags = (a.flags & WIRE_ADOPT_MIGR) ? DIR_MIGR : 0;
	if (a.flags & WIRE_ADOPT_LOST) {
		d->flags |= DIR_LOST;
	} else if (a.owner != WIRE_OWNER_NONE) {
		if (eng_alive(e, a.owner) || (e->byed & BIT(a.owner)))
			d->owner = a.owner; /* gone with a BYE: its PUTM is in our stash */
		else
			d->flags |= DIR_LOST; /* died meanwhile, with the only copy */
	} else {
		dir_keep(e, d, has_page ? m->payload + WIRE_ADOPT_FIXED : NULL);
	}
	return 0;
}

static int adopt_done(struct eng *e, unsigned src, const struct wire_msg *m)
{
	if (!in_transition(e, src))
		return proto_err(e, src, m, "node %u is not leaving", src);
	if (m->arg & WIRE_ADOPT_COORD) {
		uint64_t cur = m->arg & ~WIRE_ADOPT_COORD;
		bool in = m->page & BIT(e->self), ok;
		unsigned c = bar_coord(e);

		if (c != src && !in_transition(e, c))
			return proto_err(e, src, m, "barriers are collected by node %u", c);
		if ((m->flags & WIRE_F_FAIL) || e->degraded) {
			/* A node was lost: barriers fail from now on, their count is moot. */
			e->degraded = true;
			e->bar_arrived = 0;
			e->bar_state = true;
			return 0;
		}

		/*
		 * It must agree with our own barriers: the one it collects is the one we enter
		 * next, or the one we wait for (with our arrival if we sent it), or, if it just
		 * released the one we wait for, the next one.
		 */
		if (!e->bar_waiting)
			ok = cur == e->bar_epoch && !in;
		else if (e->bar_defer)
			ok = cur + 1 == e->bar_epoch && !in;
		else
			ok = (cur + 1 == e->bar_epoch && in) || (cur == e->bar_epoch && !in);
		if (!ok)
			return proto_err(e, src, m, "barrier %llu does not match ours (%llu "
					 "entered)", (unsigned long long)cur,
					 (unsigned long long)e->bar_epoch);
		/* We collect barriers from its BYE on: the barrier in progress goes on here. */
		e->bar_cur = cur;
		e->bar_arrived = m->page & e->alive & ~BIT(src);
		e->bar_state = true;
	}
	return 0;
}

static void peer_gone(struct eng *e, unsigned node, unsigned succ, bool graceful);

/*
 * We are about to home the pages of @origin (its entries came with ADOPT; the others are in
 * their initial state): every entry must agree with our own copy of the page, or serving it
 * would later trip our invariants. Only a broken or hostile leaver gets this wrong.
 */
static bool adopt_consistent(struct eng *e, unsigned leaver)
{
	for (uint64_t page = 0; page < e->npages; page++) {
		const struct dir *d;
		bool owner;

		if (home_of(e, page) != leaver)
			continue;
		d = dir_peek(e, page);
		owner = d && d->owner == e->self;
		bool sharer = d && (d->sharers & BIT(e->self));
		int s = get_st(e, page);

		if (owner != (s == ENG_M) || sharer != (s == ENG_S || s == ENG_SM_A))
			return false;
	}
	return true;
}

static int bye(struct eng *e, unsigned src, const struct wire_msg *m)
{
	unsigned succ = NODE_NONE;

	/*
	 * @page: the nodes whose pages the leaver had taken over. Their BYEs come first: until
	 * then we do not know the leaver was a home at all, and the messages it sent as a home
	 * (waiting in the stash) must be handled before what its successor sends.
	 */
	if (m->page & e->alive & ~BIT(e->self))
		return stash(e, src, m);

	if (m->arg != WIRE_NODE_ANY) {
		if (m->arg >= e->nodes || m->arg == src || !(e->leaving & BIT(src)))
			return proto_err(e, src, m, "invalid successor %llu",
					 (unsigned long long)m->arg);
		succ = (unsigned)m->arg;
		if (resolve(e, succ) == src)
			return proto_err(e, src, m, "successor %u forwards back to node %u", succ,
					 src);
		if (resolve(e, succ) == e->self) {
			if (e->lv >= LV_ACKS)
				return proto_err(e, src, m, "we are leaving: no successor");
			if (bar_coord(e) == src && !e->bar_state)
				return proto_err(e, src, m, "it collected barriers, sent no state");
			if (!adopt_consistent(e, src))
				return proto_err(e, src, m, "the entries it handed over do not "
						 "match our copies");
		}
	}
	/* Without a successor what it homed is lost: as a crash, barriers fail from now on. */
	if (eng_alive(e, src))
		e->byed |= BIT(src);
	peer_gone(e, src, succ, succ != NODE_NONE);
	return 0;
}

/* ------------------------------------------------------------------------------------------
 * Message dispatch.
 */

static int handle(struct eng *e, unsigned src, const struct wire_msg *m)
{
	bool paged = (m->type >= WIRE_GET_S && m->type <= WIRE_NACK) || m->type == WIRE_PUTM ||
		     m->type == WIRE_ADOPT || (m->type >= WIRE_FWD && m->type <= WIRE_FETCH_SET);
	unsigned home;

	if (paged && m->page >= e->npages)
		return proto_err(e, src, m, "page out of range (%llu pages)",
				 (unsigned long long)e->npages);
	if ((m->type == WIRE_DATA || m->type == WIRE_FETCH_REPLY || m->type == WIRE_PUTM ||
	     m->type == WIRE_FWD_DATA) &&
	    !(m->flags & WIRE_F_ZERO) && (m->len != e->ps || !m->payload))
		return proto_err(e, src, m, "page payload of %u bytes, page size %u", m->len, e->ps);
	if (m->type == WIRE_FWD_REPLY && m->len && (m->len != e->ps || !m->payload ||
						    (m->flags & WIRE_F_ZERO)))
		return proto_err(e, src, m, "page payload of %u bytes, page size %u", m->len, e->ps);
	home = paged ? home_of(e, m->page) : NODE_NONE;
	switch (m->type) {
	case WIRE_GET_S_SET:
	case WIRE_DATA_SET:
	case WIRE_FETCH_SET:
		break; /* every page of the set is routed on its own */
	case WIRE_GET_S:
	case WIRE_GET_M:
	case WIRE_PUTM:
		if (home == e->self)
			break;
		if (in_transition(e, home))
			return stash(e, src, m); /* we are its successor: wait for its BYE */
		if (!eng_alive(e, home)) {
			/* The sender knows a successor whose hand-over never reached us. */
			if (m->type != WIRE_PUTM)
				send_msg(e, src, WIRE_NACK, 0, m->page, 0, NULL);
			return 0;
		}
		return proto_err(e, src, m, "page is homed at node %u", home);
	case WIRE_INV_ACK:
	case WIRE_FETCH_REPLY:
	case WIRE_FWD_REPLY:
	case WIRE_FWD_ACK:
		if (home != e->self)
			return proto_err(e, src, m, "page is homed at node %u", home);
		break;
	case WIRE_DATA:
	case WIRE_GRANT:
	case WIRE_INV:
	case WIRE_FETCH:
	case WIRE_NACK:
	case WIRE_FWD:
	case WIRE_RECALL:
	case WIRE_FWD_ASK:
	case WIRE_RA_SKIP:
		if (home == src)
			break;
		/*
		 * The new home speaks before we saw the old one's BYE: the old home's last
		 * messages about the page (a GRANT, a DATA) may still be on its link ahead of
		 * the BYE. Handle this one after the BYE, in the order the pages moved.
		 */
		if (in_transition(e, home))
			return stash(e, src, m);
		if (!eng_alive(e, home) && (e->died_leaving & BIT(home)) &&
		    resolve(e, src) == src) {
			/*
			 * @home died during its leave, after its BYE named @src as its successor
			 * (only then does @src act as the home of its pages), but that BYE never
			 * reached us. Learn it from @src: what it homes is not lost after all.
			 */
			elog(e, UDSM_LOG_WARN, "node %u acts as home of the pages of node %u, "
			     "which died while leaving: its successor", src, home);
			__atomic_store_n(&e->fwd[home], (uint8_t)src, __ATOMIC_RELAXED);
			break;
		}
		return proto_err(e, src, m, "sender is not the page's home (node %u)", home);
	}
	switch (m->type) {
	case WIRE_GET_S:
	case WIRE_GET_M:
		return home_request(e, src, m);
	case WIRE_INV_ACK:
		return home_inv_ack(e, src, m);
	case WIRE_FETCH_REPLY:
		return home_fetch_reply(e, src, m);
	case WIRE_PUTM:
		return home_putm(e, src, m);
	case WIRE_DATA:
		return req_data(e, src, m);
	case WIRE_GRANT:
		return req_grant(e, src, m);
	case WIRE_INV:
		return req_inv(e, src, m);
	case WIRE_FETCH:
		return req_fetch(e, src, m);
	case WIRE_NACK:
		return req_nack(e, src, m);
	case WIRE_FWD:
		return req_fwd(e, src, m);
	case WIRE_FWD_DATA:
		return req_fwd_data(e, src, m);
	case WIRE_FWD_REPLY:
		return home_fwd_reply(e, src, m);
	case WIRE_FWD_ACK:
		return home_fwd_ack(e, src, m);
	case WIRE_FWD_NONE:
		return home_fwd_none(e, src, m);
	case WIRE_RECALL:
		return req_recall(e, src, m);
	case WIRE_FWD_ASK:
		return req_fwd_ask(e, src, m);
	case WIRE_RA_SKIP:
		return req_skip(e, src, m);
	case WIRE_GET_S_SET:
		return home_get_set(e, src, m);
	case WIRE_DATA_SET:
		return req_data_set(e, src, m);
	case WIRE_FETCH_SET:
		return req_fetch_set(e, src, m);
	case WIRE_BARRIER:
		return bar_arrive(e, src, m);
	case WIRE_BARRIER_DONE:
		return bar_done(e, src, m);
	case WIRE_LEAVE:
		return leave_msg(e, src, m);
	case WIRE_LEAVE_ACK:
		return leave_ack(e, src, m);
	case WIRE_ADOPT:
		return adopt(e, src, m);
	case WIRE_ADOPT_DONE:
		return adopt_done(e, src, m);
	case WIRE_BYE:
		return bye(e, src, m);
	default:
		return proto_err(e, src, m, "unexpected message type %u after the handshake",
				 m->type);
	}
}

/* Deliver the messages this node sent itself, in order, until none is left. */
static void drain_local(struct eng *e)
{
	while (e->lq_len) {
		struct lmsg l = e->lq[e->lq_head];
		int err;

		e->lq_head = (e->lq_head + 1) % e->lq_cap;
		e->lq_len--;
		err = handle(e, e->self, &l.m);
		eng_verify(e, !err, "local message rejected: %s", e->why);
		page_put(e, l.data);
	}
}

int eng_recv(struct eng *e, unsigned src, const struct wire_msg *m)
{
	int err;

	if (src >= e->nodes || src == e->self || !eng_alive(e, src)) {
		snprintf(e->why, sizeof(e->why), "message from invalid or dead node %u", src);
		return UDSM_EPROTO;
	}
	if (m->src != src)
		return proto_err(e, src, m, "sender id %u on node %u's connection", m->src, src);
	err = handle(e, src, m);
	settle(e);
	return err;
}

/*
 * A node is gone: it crashed or disconnected (@graceful false: the cluster is degraded, the
 * barrier in progress and every later one fail), or it said BYE. A BYE names the successor
 * @succ that took its pages over (NODE_NONE: none, its pages are lost); it passed every
 * barrier it entered, so barriers go on among the others.
 */
static void peer_gone(struct eng *e, unsigned node, unsigned succ, bool graceful)
{
	unsigned coord;

	if (!eng_alive(e, node) || node == e->self)
		return;
	e->alive &= ~BIT(node);
	if (!graceful && (e->leaving & BIT(node)))
		e->died_leaving |= BIT(node);
	e->leaving &= ~BIT(node);
	if (succ != NODE_NONE)
		__atomic_store_n(&e->fwd[node], (uint8_t)succ, __ATOMIC_RELAXED);
	if (!graceful)
		e->degraded = true;

	/* If we are its successor, the pages it homed are ours now: entries it did not send
	 * are in their initial state, which is what an absent entry stands for. */

	/* Requester side: requests a dead home will never answer; kept requests go out. */
	for (uint64_t p = 0; p < e->npages; p++) {
		int s = get_st(e, p);
		unsigned home;

		if (!transient(s))
			continue;
		home = home_of(e, p);
		if (!eng_alive(e, home)) {
			if (e->defer[p]) {
				e->defer[p] = 0;
				e->ndefer--;
			}
			if (s == ENG_SM_A)
				op_must(e, e->ops->drop(e->ctx, p), "drop", p);
			lose_page(e, p);
		} else if (e->defer[p] && !in_transition(e, home)) {
			e->defer[p] = 0;
			e->ndefer--;
			send_msg(e, home, (uint8_t)req_type(s), 0, p,
				 s == ENG_IS_D ? e->spec[p] : 0, NULL);
		} else if (!e->defer[p] && s != ENG_SM_A && home != node) {
			/* Everything @node sent us has arrived: if its home had it forward the
			 * page to us, it did not (docs/PROTOCOL.md, "Forwarding"). */
			send_msg(e, home, WIRE_FWD_NONE, 0, p, node, NULL);
		}
	}

	/* Home side: forget the node in every entry, finish what it blocked. */
	for (uint64_t li = 0; li < e->nleaf; li++) {
		for (uint64_t j = 0; e->leaf[li] && j < DIR_LEAF; j++) {
			struct dir *d = &e->leaf[li][j];
			uint64_t page = li << DIR_LEAF_SHIFT | j;
			uint32_t *link = &d->qhead, prev = 0;

			while (*link) { /* drop its queued requests */
				uint32_t q = *link;

				if (e->q[q].src == node) {
					*link = e->q[q].next;
					e->q[q].next = e->qfree;
					e->qfree = q;
				} else {
					prev = q;
					link = &e->q[q].next;
				}
			}
			d->qtail = prev;

			d->sharers &= ~BIT(node);
			if (fwd_peer_gone(e, page, d, node)) {
				/* a forward it took part in: settled there */
			} else if (d->owner == node && (e->byed & BIT(node))) {
				/* It said BYE, so it gave the page back: the PUTM waits in the
				 * stash for this entry's hand-over to end (replayed below). */
			} else if (d->owner == node) {
				d->owner = NODE_NONE;
				d->flags |= DIR_LOST;
				page_put(e, d->copy);
				d->copy = NULL;
				elog(e, UDSM_LOG_WARN, "page %llu lost: its only copy was on "
				     "node %u", (unsigned long long)page, node);
				if (d->busy) {
					if (eng_alive(e, d->req))
						send_msg(e, d->req, WIRE_NACK, 0, page, 0, NULL);
					dir_done(e, page, d);
				}
			} else if (d->busy == WIRE_GET_M && !(d->flags & DIR_FETCH) &&
				   !(d->sharers & ~BIT(d->req))) {
				dir_finish_m(e, page, d);
			} else if (!d->busy) {
				dir_next(e, page, d);
			}
		}
	}

	coord = bar_coord(e);
	if (!eng_alive(e, coord))
		e->degraded = true; /* the barrier collector is gone and nobody took over */
	if (!e->degraded) {
		e->bar_arrived &= e->alive;
		if (coord == e->self && e->bar_arrived && e->bar_arrived == e->alive)
			bar_release(e, 0);
		if (e->bar_defer && !in_transition(e, coord)) {
			e->bar_defer = false;
			send_msg(e, coord, WIRE_BARRIER, 0, 0, e->bar_epoch - 1, NULL);
		}
	} else {
		/* Barriers fail from now on. (State a leaver sent us before it died is void.) */
		if (coord == e->self && e->bar_arrived)
			bar_release(e, WIRE_F_FAIL);
		e->bar_arrived = 0;
		if (e->bar_waiting) {
			e->bar_waiting = e->bar_defer = false;
			e->ops->barrier_done(e->ctx, UDSM_EPEER);
		}
	}
	drain_local(e);
	stash_replay(e);
	settle(e);
}

void eng_peer_lost(struct eng *e, unsigned node)
{
	peer_gone(e, node, NODE_NONE, false);
}

void eng_peer_left(struct eng *e, unsigned node)
{
	peer_gone(e, node, NODE_NONE, true);
}

/* ------------------------------------------------------------------------------------------
 * Life cycle and introspection.
 */

int eng_create(const struct eng_config *c, struct eng **out)
{
	struct eng *e;

	if (!c || !c->ops || !c->nodes || c->nodes > UDSM_MAX_NODES || c->self >= c->nodes ||
	    !c->npages || !c->page_size || c->page_size % 8 || c->page_size > WIRE_PAGE_MAX)
		return -EINVAL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->ops = c->ops;
	e->ctx = c->ctx;
	e->self = c->self;
	e->nodes = c->nodes;
	e->npages = c->npages;
	e->ps = c->page_size;
	e->ra_max = c->readahead;
	ra_disarm(e);
	e->migratory = !c->no_migratory;
	e->forward = !c->no_forward;
	e->set_cap = c->set_pages && c->set_pages < WIRE_SET_PAGES ? c->set_pages : WIRE_SET_PAGES;
	e->alive = c->nodes == 64 ? ~(uint64_t)0 : BIT(c->nodes) - 1;
	e->bar_state = c->self == 0;
	e->bar_mode_out = e->bar_mode_in = -1;
	e->seq_last = UINT64_MAX - 64;
	memset(e->fwd, NODE_NONE, sizeof(e->fwd));
	e->st = calloc(c->npages, 1);
	e->defer = calloc(c->npages, 1);
	e->fw = calloc(c->npages, 1);
	e->fwo = calloc(c->npages, 1);
	e->spec = calloc(c->npages, 1);
	e->nleaf = (c->npages + DIR_LEAF - 1) >> DIR_LEAF_SHIFT;
	e->leaf = calloc(e->nleaf, sizeof(*e->leaf));
	if (place_init(&e->map, c->nodes, c->npages, c->home_chunk ? c->home_chunk : 1)) {
		eng_destroy(e);
		return -EINVAL;
	}
	if (!e->st || !e->defer || !e->leaf || !e->fw || !e->fwo || !e->spec) {
		eng_destroy(e);
		return -ENOMEM;
	}
	*out = e;
	return 0;
}

void eng_destroy(struct eng *e)
{
	uint64_t held = 0; /* page buffers in use: home copies, queued local messages */

	if (!e)
		return;
	for (uint64_t li = 0; e->leaf && li < e->nleaf; li++) {
		for (uint64_t j = 0; e->leaf[li] && j < DIR_LEAF; j++)
			held += e->leaf[li][j].copy != NULL;
		free(e->leaf[li]);
	}
	free(e->leaf);
	for (size_t i = 0; i < e->lq_len; i++)
		held += e->lq[(e->lq_head + i) % e->lq_cap].data != NULL;
	eng_verify(e, held == e->nbuf, "%llu page buffers in use, %llu held: some were lost",
		   (unsigned long long)e->nbuf, (unsigned long long)held);
	place_fini(&e->map);
	for (size_t i = 0; i < e->nstash; i++)
		free(e->stash[i].data);
	free(e->stash);
	free(e->defer);
	free(e->fw);
	free(e->fwo);
	free(e->spec);
	free(e->set_buf);
	free(e->lv_buf);
	for (size_t i = 0; i < e->nslab; i++) /* every home copy and local message */
		free(e->slab[i].base);
	free(e->slab);
	free(e->lq);
	free(e->q);
	free(e->st);
	free(e->frz_faults);
	free(e);
}

int eng_state(const struct eng *e, uint64_t page)
{
	if (page >= e->npages)
		return -EINVAL;
	return get_st(e, page);
}

void eng_stats(const struct eng *e, struct udsm_stats *st)
{
#define LD(f) st->f = __atomic_load_n(&e->stats.f, __ATOMIC_RELAXED)
	LD(requests);
	LD(pages_in);
	LD(zero_pages_in);
	LD(invalidations);
	LD(downgrades);
	LD(readahead);
	LD(poisoned);
#undef LD
}

const char *eng_why(const struct eng *e)
{
	return e->why;
}

int eng_dir(const struct eng *e, uint64_t page, struct eng_dir_view *v)
{
	const struct dir *d;

	if (page >= e->npages || home_of(e, page) != e->self)
		return -EINVAL;
	if (!(d = dir_peek(e, page))) {
		static const struct dir initial = {
			.owner = NODE_NONE, .last_rd = NODE_NONE, .flags = DIR_ZERO,
		};

		d = &initial;
	}
	v->sharers = d->sharers;
	v->owner = d->owner == NODE_NONE ? -1 : d->owner;
	v->busy = d->busy;
	v->queued = q_len(e, d);
	v->zero = d->flags & DIR_ZERO;
	v->lost = d->flags & DIR_LOST;
	v->copy = d->copy;
	if (d->owner == NODE_NONE && !d->copy && !(d->flags & (DIR_ZERO | DIR_LOST)) &&
	    (d->sharers & BIT(e->self)))
		v->copy = e->ops->page_data(e->ctx, page); /* the home's own page is the copy */
	v->has_copy = v->copy != NULL;
	v->fwd_req = (e->fw[page] & FW_ON) ? d->req : -1;
	return 0;
}

bool eng_quiescent(const struct eng *e)
{
	if (e->nstash || e->bar_defer || (e->lv != LV_NONE && e->lv != LV_DONE))
		return false;
	return !lv_busy(e);
}

/* ==========================================================================================
 * Re-homing a range (docs/PROTOCOL.md, "Home map"): driven by a collective call (the
 * allocator's udsm_coalloc/udsm_cofree) that brackets the steps with cluster barriers:
 *   every node: eng_freeze(range); wait for eng_frozen_quiet();   barrier;
 *   every node: eng_rehome(policy) (retried while -EAGAIN);       barrier;
 *   every node: eng_thaw().
 * After the first barrier no node has a request for the range in flight or can start one, so
 * no message about its pages is on the way but the reports that end a forward (FWD_REPLY and
 * FWD_ACK to the home, whose entry stays busy until they arrive: eng_rehome says -EAGAIN
 * until then). Once every entry of the range is idle, each node may drop its copies (without
 * writing them back: the range's contents become zeros), reset the entries it holds to their
 * initial state and switch the map, in any order. The
 * second barrier keeps every node from asking a new home before that home switched too.
 */

int eng_freeze(struct eng *e, uint64_t first, uint64_t count)
{
	if (!count || first >= e->npages || count > e->npages - first)
		return -EINVAL;
	if (e->frz_len)
		return -EBUSY;
	e->frz_first = first;
	e->frz_len = count;
	e->frz_trans = 0;
	for (uint64_t p = first; p < first + count; p++)
		e->frz_trans += transient(get_st(e, p));
	return 0;
}

bool eng_frozen_quiet(const struct eng *e)
{
	/*
	 * A leave in progress could still hand entries of the range over (ADOPT) or give pages
	 * of it back (PUTM) under the old map: wait for its BYE, which follows both on its
	 * links. (A leaver takes no part in the collective, so the first barrier completes only
	 * after its BYE reached the barrier's coordinator; it then reached every node that acked
	 * its LEAVE, but maybe not yet here: hence this check, also before eng_rehome.)
	 */
	return e->frz_len && !e->frz_trans && !(e->leaving & e->alive) && e->lv == LV_NONE &&
	       !e->nstash;
}

int eng_rehome(struct eng *e, int policy)
{
	uint64_t first = e->frz_first, end = e->frz_first + e->frz_len;
	int err;

	if (!e->frz_len)
		return -EINVAL;
	if (place_check(&e->map, policy))
		return -EINVAL;
	if (!eng_frozen_quiet(e))
		return -EAGAIN;
	for (uint64_t p = first; p < end; p++) {
		const struct dir *d = dir_peek(e, p);

		if (d && (d->busy || d->qhead))
			return -EAGAIN; /* a request met the range before every node froze it */
	}
	map_lock(e);
	err = place_set(&e->map, first, e->frz_len, policy);
	map_unlock(e);
	if (err)
		return err;
	for (uint64_t p = first; p < end; p++) {
		int s = get_st(e, p);
		struct dir *d = dir_peek(e, p);

		if (s == ENG_S || s == ENG_M) {
			op_must(e, e->ops->drop(e->ctx, p), "drop", p);
			set_st(e, p, ENG_I);
		}
		if (d) {
			page_put(e, d->copy);
			dir_init(d);
		}
	}
	return 0;
}

void eng_thaw(struct eng *e)
{
	struct frz_fault *v = e->frz_faults;
	size_t n = e->nfrz_faults;

	e->frz_len = 0;
	e->frz_trans = 0;
	e->frz_faults = NULL;
	e->nfrz_faults = e->frz_cap = 0;
	for (size_t i = 0; i < n; i++)
		fault(e, v[i].page, v[i].write);
	free(v);
	settle(e);
}

/* ==========================================================================================
 * Fencing (owned by the connection/liveness work: src/node.c calls it). Appended block.
 *
 * eng_fence(): this node learnt that its peers declared it dead (it was stopped, or cut
 * off, for longer than the liveness bound). They no longer count it as a sharer or owner of
 * anything, so any copy it keeps may be stale and any page it is home for has been given up:
 * every page becomes LOST (present pages dropped; the caller then poisons the whole region
 * with one range operation, so that accesses raise SIGBUS), every other node counts as gone,
 * the directories forget everything, deferred and stashed messages and the local queue are
 * discarded, a hand-over in progress ends, and barriers fail. The caller has closed every connection; nothing is
 * sent.
 */
void eng_fence(struct eng *e)
{
	e->alive = BIT(e->self);
	e->degraded = true;
	for (uint64_t p = 0; p < e->npages; p++) {
		int s = get_st(e, p);

		if (s == ENG_LOST)
			continue;
		if (s == ENG_S || s == ENG_M || s == ENG_SM_A)
			op_must(e, e->ops->drop(e->ctx, p), "drop", p);
		set_st(e, p, ENG_LOST); /* not counted in 'poisoned': no thread faulted yet */
	}
	e->ntrans = 0;
	e->ndefer = 0;
	e->bar_defer = false;
	memset(e->defer, 0, e->npages);
	memset(e->fw, 0, e->npages);
	memset(e->spec, 0, e->npages);
	for (uint64_t li = 0; li < e->nleaf; li++)
		for (uint64_t j = 0; e->leaf[li] && j < DIR_LEAF; j++) {
			struct dir *d = &e->leaf[li][j];

			while (d->qhead) {
				uint32_t q = d->qhead;

				d->qhead = e->q[q].next;
				e->q[q].next = e->qfree;
				e->qfree = q;
			}
			d->qtail = 0;
			page_put(e, d->copy);
			d->copy = NULL;
			d->sharers = 0;
			d->owner = NODE_NONE;
			d->busy = 0;
			d->flags = DIR_LOST;
		}
	e->nbusy = 0;
	for (size_t i = 0; i < e->nstash; i++)
		free(e->stash[i].data);
	e->nstash = 0;
	e->leaving = 0;
	if (e->lv != LV_NONE)
		e->lv = LV_DONE; /* a hand-over in progress has nothing left to hand */
	while (e->lq_len) {
		page_put(e, e->lq[e->lq_head].data);
		e->lq_head = (e->lq_head + 1) % e->lq_cap;
		e->lq_len--;
	}
	e->bar_arrived = 0;
	if (e->bar_waiting) {
		e->bar_waiting = false;
		e->ops->barrier_done(e->ctx, UDSM_EPEER);
	}
}
/* End of the fencing block. */
