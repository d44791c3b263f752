/* SPDX-License-Identifier: MIT */
/*
 * test_sim.c - deterministic simulation of a udsm cluster: K engines (src/core/engine.c), an
 * in-memory network, a model of the kernel (userfaultfd, write-protection, poisoning) and
 * application threads that read and write real bytes, all driven by one seeded PRNG.
 *
 * Model:
 *  - network: one FIFO per ordered pair of nodes; every message is encoded with wire_encode()
 *    and decoded with the push decoder on delivery, as over TCP;
 *  - kernel, per node and page: present, writable, poisoned and the page's bytes. A read needs
 *    the page present, a write present and writable; otherwise the access queues a fault event
 *    (the uffd queue, a FIFO per node) and the thread blocks until install, unprotect, wake or
 *    poison on that page at that node wakes it; it then retries. A poisoned page gives SIGBUS.
 *    A woken thread's fault event that the service thread has not read yet may vanish, as it
 *    does in the kernel (or stay, if the service thread had read it already): both happen;
 *  - threads (1-3 per node) start reads and writes of random pages; a write stores a unique
 *    64-bit stamp and fills the page with a pattern derived from it (some writes store zeros);
 *    a read checks the whole page against a shadow copy of the latest write;
 *  - application threads run concurrently with the service thread: inside every engine action
 *    (send, install, protect, drop, ...) a thread of that node may access memory, so the
 *    engine's order of actions matters (e.g. write-protect before copying a page out);
 *  - barriers: from time to time a global barrier phase: thread 0 of each node calls
 *    eng_barrier() and blocks until barrier_done;
 *  - node loss: some schedules kill a node at a random step, either noticed at once by every
 *    survivor (links dropped, eng_peer_lost) or, like TCP, each survivor first receives a random
 *    prefix of what the dead node had sent and then an end of stream;
 *  - graceful leaves: some schedules make nodes leave (eng_leave) at random steps, mixed with
 *    the losses above, once the node's threads are idle (the application stopped touching the
 *    region). A node whose hand-over is complete (eng_left) departs: its links carry what it
 *    sent, nothing reaches it any more. In some schedules a leave is paced (eng_ops.room, as
 *    node.c bounds the output toward a peer): a node may queue toward a peer only while less
 *    than a small bound (one to three messages) waits on that link, so its hand-over goes in
 *    many steps, resumed (eng_resume) at random times once the link drained; deliveries,
 *    faults, losses and other leaves happen between the steps;
 * Checked after every step: single writer / multiple readers across live nodes; every present
 * page holds the latest write; each engine's page state agrees with the kernel model. No page
 * lost by a graceful leave: when a node dies, the pages its death may cost are marked exposed
 * (it homed them in somebody's view, or they were homed at a node in the middle of a leave -
 * not where every survivor learns of the death at once and that leave is not over, since
 * the leaver then replaces a dead successor - or it owned them or had a request for them in
 * flight); a SIGBUS or a lost directory entry on any other page fails the run. Checked on
 * every access: reads see the latest write; a write happens only where no other node has a
 * copy. At the end, new operations stop and the simulation runs until nothing can move; then
 * every engine must be quiescent, every operation completed (or SIGBUS after a loss), and the
 * directories must agree with the nodes' states and the latest contents.
 *
 * Usage: test_sim [--seeds N] [--start S] [--seed S] [--long] [-v]
 * A failure prints its seed and the command that replays it.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/engine.h"
#include "core/place.h"
#include "core/wire.h"

#define MAXK 8
#define MAXP 12
#define MAXT 3
#define PS 64u
#define MSG_MAX (WIRE_HDR_LEN + WIRE_DATA_SET_FIXED + MAXP * PS) /* a DATA_SET of every page */

/* ------------------------------------------------------------------------------------------
 * PRNG: xoshiro256** seeded with splitmix64.
 */
struct rng {
	uint64_t s[4];
};

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s;
	uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return res;
}

/* Uniform in [0, n). */
static unsigned rn(struct rng *r, unsigned n)
{
	return (unsigned)(((rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

/* True with probability @num / 1024. */
static bool chance(struct rng *r, unsigned num)
{
	return rn(r, 1024) < num;
}

/* ------------------------------------------------------------------------------------------
 * The simulated cluster.
 */

struct item {
	bool eof; /* end of stream: the sender is dead */
	uint16_t len;
	uint8_t bytes[MSG_MAX];
};

struct link { /* a FIFO of items, a growing ring */
	struct item *v;
	size_t head, len, cap;
};

struct fault_ev {
	uint8_t page, thread;
	bool write;
	uint32_t id;
};

struct fqueue {
	struct fault_ev *v;
	size_t head, len, cap;
};

enum { T_IDLE, T_BLOCKED, T_READY, T_BARRIER };

struct thread {
	int st;
	uint8_t page;
	bool write;
	uint32_t ev; /* id of the fault event it is blocked on */
};

struct sim;

struct node {
	struct sim *sim;
	struct eng *e;
	unsigned id;
	bool dead;
	bool in_event; /* the engine is running: callbacks may interleave thread accesses */
	uint8_t mem[MAXP][PS];
	bool present[MAXP], writable[MAXP], poisoned[MAXP];
	/* eng_ops.stage as node.c does it: write-protected and read at stage(), protect() only
	 * claims, page_data() returns the copy, stage_end() makes the unclaimed writable */
	bool staging, staged[MAXP], claimed[MAXP];
	uint8_t snap[MAXP][PS];
	uint8_t took[PS]; /* eng_ops.take: the contents of the page it took last */
	struct thread th[MAXT];
	struct fqueue fq;
	uint64_t installs, zero_installs;
	uint64_t bar_epoch;  /* eng_barrier() calls that returned 0 */
	bool bar_entered;    /* entered the current barrier phase */
	bool leaving;        /* eng_leave() was called: no new accesses, no barriers */
	bool departed;       /* its leave completed (dead is set too, but nothing was lost) */
};

enum { LOSS_NONE, LOSS_NOW, LOSS_EOF };
enum { RH_NONE, RH_FREEZE, RH_COMMIT, RH_THAW };

struct stats {
	uint64_t schedules, steps, msgs, faults, losses, barriers, bar_fail, reads, writes, sigbus,
		interleaved, withdrawn, dropped_to_dead, overtaken, leaves, rehomes;
	/* 3-hop forwarding: FWD served by a third-party owner; forwarded data delivered while
	 * the home had another request for the page queued (the INV/FETCH it would send the
	 * requester next could overtake the data, but for the FWD_ACK rule); forwarding
	 * messages moved ahead of parked requests; deaths resolved by FWD_NONE, FWD_ASK,
	 * RECALL. */
	uint64_t fwd, fwd_race, fwd_overtaken, fwd_death;
	uint64_t ra_skip; /* read-ahead requests a home declined (the page had an owner) */
	uint64_t sets, set_pages; /* GET_S_SETs; pages answered in DATA_SETs */
	uint64_t fsets, staged, unclaimed; /* FETCH_SETs; pages staged; staged, not given up */
	uint64_t taken, untaken; /* pages given up by take(); take() declined (the other way) */
	uint64_t resumed;   /* paced hand-overs resumed after their link drained */
	uint64_t succ_lost; /* hand-overs started over: the successor died meanwhile */
};

struct sim {
	uint64_t seed;
	struct rng r;
	bool verbose;
	unsigned K, P, T;
	int ra;
	bool nomig; /* engines without migratory sharing */
	bool nofwd; /* engines that fetch through the home (4 hops) instead of forwarding */
	/* Flow control (src/node.c) delivers a congested peer's responses ahead of its parked
	 * requests: when set, deliveries sometimes let a response overtake the requests before
	 * it on its link. Drawn from a stream of its own so the other draws keep their seeds. */
	bool overtake;
	struct rng ro;
	/* Paced leaves: bytes that may wait on a link before a leaving node stops queueing
	 * toward it (0: no bound, ops->room is NULL). From a stream of its own too. */
	unsigned room;
	struct rng rr;
	/* The default home layout's chunk (1: page % nodes), from a stream of its own too. */
	unsigned chunk;
	/*
	 * Re-homing (the allocator's collective calls, eng_freeze .. eng_thaw): now and then a
	 * range no thread is using is frozen by every node, re-homed once every live node is
	 * frozen and quiet (the first barrier; a node in the middle of a leave takes no part,
	 * and the barrier waits until it is gone), and thawed once every node re-homed it (the
	 * second barrier). Threads keep using the other pages all along; afterwards the range
	 * reads as zeros.
	 */
	unsigned p_rehome; /* chance per step to begin one (0: never), from its own stream */
	int rh;            /* RH_* */
	unsigned rh_first, rh_len;
	int rh_policy;
	bool rh_frozen[MAXK], rh_done[MAXK], rh_thawed[MAXK];
	struct node n[MAXK];
	struct link L[MAXK][MAXK];
	uint8_t shadow[MAXP][PS];
	uint64_t stamp;
	uint32_t evid;
	struct wire_dec dec;

	/* schedule parameters */
	unsigned w_deliver, w_fault, w_start, w_retry, w_barrier;
	unsigned p_nest, p_withdraw, p_write, p_phase, p_zero, p_hot;
	uint32_t set_pages; /* eng_config.set_pages of every node (0: default) */
	unsigned p_scan; /* a thread reads the page after its previous one (read-ahead, sets) */
	unsigned ops_target;
	int loss_mode;
	unsigned nkills;
	uint64_t kill_step[2];
	unsigned nleaves, leave_due;
	uint64_t leave_step[MAXK];
	bool exposed[MAXP]; /* a node death may have cost this page */

	/* progress */
	uint64_t step;
	unsigned ops_started, ops_done;
	bool draining;
	bool lost; /* a node died */
	bool phase;
	const char *where; /* what the current step does, for failure messages */
	struct stats st;
};

static const char *prog = "test_sim";
static volatile uint64_t cur_seed;
static volatile int running;

static void on_abort(int sig)
{
	char buf[160];
	int n;

	if (!running)
		return;
	n = snprintf(buf, sizeof(buf),
		     "\ntest_sim: aborted during seed %llu\n  replay: %s --seed %llu -v\n",
		     (unsigned long long)cur_seed, prog, (unsigned long long)cur_seed);
	if (n > 0)
		fwrite(buf, 1, (size_t)n, stderr);
	(void)sig;
}

static void die(struct sim *s, const char *fmt, ...)
	__attribute__((noreturn, format(printf, 2, 3)));
static void die(struct sim *s, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "\ntest_sim: FAIL seed %llu at step %llu (%s): ",
		(unsigned long long)s->seed, (unsigned long long)s->step,
		s->where ? s->where : "-");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n  schedule: %u nodes, %u pages, %u threads/node, readahead %d, loss %s, "
		"%u leaves\n", s->K, s->P, s->T, s->ra,
		s->loss_mode == LOSS_NONE ? "none" : s->loss_mode == LOSS_NOW ? "now" : "eof",
		s->nleaves);
	fprintf(stderr, "  replay: %s --seed %llu -v\n", prog, (unsigned long long)s->seed);
	running = 0;
	exit(1);
}

#define vlog(s, ...)                                                                           \
	do {                                                                                   \
		if ((s)->verbose)                                                              \
			printf(__VA_ARGS__);                                                   \
	} while (0)

static void check(struct sim *s, bool ok, const char *what)
{
	if (!ok)
		die(s, "%s", what);
}

/* ---- queues ---- */

static void link_push(struct link *l, const struct item *it)
{
	if (l->len == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 8;
		struct item *v = malloc(ncap * sizeof(*v));

		if (!v)
			abort();
		for (size_t i = 0; i < l->len; i++)
			v[i] = l->v[(l->head + i) % l->cap];
		free(l->v);
		l->v = v;
		l->cap = ncap;
		l->head = 0;
	}
	l->v[(l->head + l->len++) % l->cap] = *it;
}

static struct item *link_pop(struct link *l)
{
	struct item *it = &l->v[l->head];

	l->head = (l->head + 1) % l->cap;
	l->len--;
	return it;
}

/* Bytes waiting on a link. */
static size_t link_bytes(const struct link *l)
{
	size_t b = 0;

	for (size_t i = 0; i < l->len; i++)
		b += l->v[(l->head + i) % l->cap].len;
	return b;
}

static void fq_push(struct fqueue *q, struct fault_ev ev)
{
	if (q->len == q->cap) {
		size_t ncap = q->cap ? q->cap * 2 : 8;
		struct fault_ev *v = malloc(ncap * sizeof(*v));

		if (!v)
			abort();
		for (size_t i = 0; i < q->len; i++)
			v[i] = q->v[(q->head + i) % q->cap];
		free(q->v);
		q->v = v;
		q->cap = ncap;
		q->head = 0;
	}
	q->v[(q->head + q->len++) % q->cap] = ev;
}

static struct fault_ev fq_pop(struct fqueue *q)
{
	struct fault_ev ev = q->v[q->head];

	q->head = (q->head + 1) % q->cap;
	q->len--;
	return ev;
}

/* Withdraw the event @id if it is still queued (the kernel forgets the fault of a thread that
 * was woken before the event was read). */
static bool fq_withdraw(struct fqueue *q, uint32_t id)
{
	for (size_t i = 0; i < q->len; i++) {
		if (q->v[(q->head + i) % q->cap].id != id)
			continue;
		for (size_t j = i; j + 1 < q->len; j++)
			q->v[(q->head + j) % q->cap] = q->v[(q->head + j + 1) % q->cap];
		q->len--;
		return true;
	}
	return false;
}

/* ---- page contents ---- */

static void fill(uint8_t *p, uint64_t stamp)
{
	uint64_t x = stamp;

	if (!stamp) {
		memset(p, 0, PS);
		return;
	}
	memcpy(p, &stamp, 8);
	for (unsigned i = 8; i < PS; i += 8) {
		uint64_t w = splitmix64(&x);

		memcpy(p + i, &w, 8);
	}
}

static uint64_t stamp_of(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

/* ---- threads and the kernel model ---- */

static void access_mem(struct sim *s, struct node *n, unsigned t);

static void wake_page(struct sim *s, struct node *n, uint64_t page)
{
	for (unsigned t = 0; t < s->T; t++) {
		struct thread *th = &n->th[t];

		if (th->st != T_BLOCKED || th->page != page)
			continue;
		th->st = T_READY;
		if (chance(&s->r, s->p_withdraw) && fq_withdraw(&n->fq, th->ev)) {
			s->st.withdrawn++;
			vlog(s, "      n%u.t%u woken, its fault event withdrawn\n", n->id, t);
		} else {
			vlog(s, "      n%u.t%u woken\n", n->id, t);
		}
	}
}

/*
 * Inside an engine action of node @n: maybe let one of its application threads access memory
 * now, as a real thread would while the service thread works.
 */
static void interleave(struct sim *s, struct node *n)
{
	unsigned cand[MAXT], nc = 0;

	if (!n->in_event || !chance(&s->r, s->p_nest))
		return;
	for (unsigned t = 0; t < s->T; t++) {
		int st = n->th[t].st;

		if (st == T_READY || (st == T_IDLE && !s->draining && !n->leaving))
			cand[nc++] = t;
	}
	if (!nc)
		return;
	s->st.interleaved++;
	access_mem(s, n, cand[rn(&s->r, nc)]);
}

/* ---- eng_ops of the simulated nodes ---- */

static void unstage(struct node *n, uint64_t page)
{
	if (page < n->sim->P)
		n->staged[page] = false;
}

static void o_send(void *ctx, unsigned dst, const struct wire_msg *m, const void *data)
{
	struct node *n = ctx;
	struct sim *s = n->sim;
	struct wire_msg c = *m;
	struct item it = { .eof = false };

	vlog(s, "    n%u: send -> n%u %s p%llu f%x a%llu%s\n", n->id, dst, wire_type_name(m->type),
	     (unsigned long long)m->page, m->flags, (unsigned long long)m->arg,
	     data ? " +data" : "");
	check(s, dst < s->K && dst != n->id, "send to an invalid node");
	check(s, m->src == n->id, "send with a wrong source id");
	if (m->type == WIRE_ADOPT)
		check(s, data && (m->len == WIRE_ADOPT_FIXED || m->len == WIRE_ADOPT_FIXED + PS),
		      "ADOPT with a payload that is not an entry");
	else if (m->type == WIRE_GET_S_SET || m->type == WIRE_FETCH_SET)
		check(s, data && m->len == WIRE_SET_BYTES, "page set without its bitmap");
	else if (m->type == WIRE_DATA_SET)
		check(s, data && m->len >= WIRE_DATA_SET_FIXED &&
			 (m->len - WIRE_DATA_SET_FIXED) % PS == 0, "DATA_SET of a bad length");
	else
		check(s, (m->len == 0) == (data == NULL) && (!data || m->len == PS),
		      "send with a payload that is not one page");
	/* A paced hand-over queues a PUTM or ADOPT only while the link has room: at most one
	 * message over the bound. */
	if (s->room && (m->type == WIRE_PUTM || m->type == WIRE_ADOPT) && !s->n[dst].dead)
		check(s, link_bytes(&s->L[n->id][dst]) < s->room,
		      "a paced hand-over queued past the room of its link");
	if (s->n[dst].dead) {
		s->st.dropped_to_dead++;
		vlog(s, "      (n%u is dead: dropped)\n", dst);
	} else {
		c.payload = data;
		it.len = (uint16_t)wire_encode(it.bytes, sizeof(it.bytes), &c);
		check(s, it.len == WIRE_HDR_LEN + m->len, "wire_encode failed");
		link_push(&s->L[n->id][dst], &it);
	}
	interleave(s, n);
}

static int o_install(void *ctx, uint64_t page, const void *data, bool writable)
{
	struct node *n = ctx;
	struct sim *s = n->sim;

	vlog(s, "    n%u: install p%llu %s %s\n", n->id, (unsigned long long)page,
	     writable ? "rw" : "ro", data ? "data" : "zero");
	check(s, page < s->P, "install of a page out of range");
	unstage(n, page);
	if (n->present[page])
		die(s, "n%u: install of p%llu, which is present", n->id, (unsigned long long)page);
	check(s, !n->poisoned[page], "install of a poisoned page");
	if (data)
		memcpy(n->mem[page], data, PS);
	else
		memset(n->mem[page], 0, PS);
	n->present[page] = true;
	n->writable[page] = writable;
	n->installs++;
	n->zero_installs += !data;
	wake_page(s, n, page);
	interleave(s, n);
	return 0;
}

static void o_stage(void *ctx, uint64_t base, const uint8_t *bm)
{
	struct node *n = ctx;
	struct sim *s = n->sim;

	check(s, !n->staging, "stage while staging");
	n->staging = true;
	for (unsigned i = 0; i < WIRE_SET_PAGES; i++) {
		uint64_t p = base + i;

		if (!(bm[i / 8] & (1u << (i % 8))))
			continue;
		vlog(s, "    n%u: stage p%llu\n", n->id, (unsigned long long)p);
		check(s, p < s->P, "stage of a page out of range");
		if (!n->present[p] || !n->writable[p])
			die(s, "n%u: stage of p%llu, which is not present and writable", n->id,
			    (unsigned long long)p);
		n->writable[p] = false;
		n->staged[p] = true;
		n->claimed[p] = false;
		memcpy(n->snap[p], n->mem[p], PS);
		s->st.staged++;
	}
	interleave(s, n);
}

static void o_stage_end(void *ctx)
{
	struct node *n = ctx;
	struct sim *s = n->sim;

	check(s, n->staging, "stage_end without stage");
	n->staging = false;
	for (uint64_t p = 0; p < s->P; p++) {
		if (!n->staged[p])
			continue;
		n->staged[p] = false;
		if (n->claimed[p])
			continue;
		vlog(s, "    n%u: unstage p%llu (writable again)\n", n->id, (unsigned long long)p);
		check(s, n->present[p] && !n->writable[p], "staged page changed behind the stage");
		n->writable[p] = true;
		s->st.unclaimed++;
		wake_page(s, n, p);
	}
	interleave(s, n);
}

static int o_protect(void *ctx, uint64_t page)
{
	struct node *n = ctx;
	struct sim *s = n->sim;

	vlog(s, "    n%u: protect p%llu\n", n->id, (unsigned long long)page);
	check(s, page < s->P, "protect of a page out of range");
	if (n->staged[page] && !n->claimed[page]) {
		n->claimed[page] = true;
		interleave(s, n);
		return 0;
	}
	if (!n->present[page] || !n->writable[page])
		die(s, "n%u: protect of p%llu, which is not present and writable", n->id,
		    (unsigned long long)page);
	n->writable[page] = false;
	interleave(s, n);
	return 0;
}

static int o_unprotect(void *ctx, uint64_t page)
{
	struct node *n = ctx;
	struct sim *s = n->sim;

	vlog(s, "    n%u: unprotect p%llu\n", n->id, (unsigned long long)page);
	check(s, page < s->P, "unprotect of a page out of range");
	unstage(n, page);
	if (!n->present[page] || n->writable[page])
		die(s, "n%u: unprotect of p%llu, which is not present and write-protected", n->id,
		    (unsigned long long)page);
	n->writable[page] = true;
	wake_page(s, n, page);
	interleave(s, n);
	return 0;
}

/* @page left @n's mapping (dropped or taken): absent, and what was there is garbage. */
static void gone(struct node *n, uint64_t page)
{
	n->present[page] = n->writable[page] = false;
	memset(n->mem[page], 0xdd, PS);
}

static int o_drop(void *ctx, uint64_t page)
{
	struct node *n = ctx;
	struct sim *s = n->sim;

	vlog(s, "    n%u: drop p%llu\n", n->id, (unsigned long long)page);
	check(s, page < s->P, "drop of a page out of range");
	unstage(n, page);
	if (!n->present[page])
		die(s, "n%u: drop of p%llu, which is not present", n->id, (unsigned long long)page);
	gone(n, page);
	interleave(s, n);
	return 0;
}

static const void *o_page_data(void *ctx, uint64_t page)
{
	struct node *n = ctx;
	struct sim *s = n->sim;

	check(s, page < s->P, "page_data of a page out of range");
	if (!n->present[page])
		die(s, "n%u: page_data of p%llu, which is not present (the service thread would "
		       "fault on it)", n->id, (unsigned long long)page);
	if (n->staged[page] && n->claimed[page])
		return n->snap[page];
	return n->mem[page];
}

/*
 * eng_ops.take as node.c does it (UFFDIO_MOVE): the page leaves the mapping with its contents
 * in one step, an access after it faulting as missing. node.c declines a staged page, and
 * the kernel now and then refuses (a page KSM merged): then the engine protects, reads and
 * drops, so both ways are simulated.
 */
static const void *o_take(void *ctx, uint64_t page)
{
	struct node *n = ctx;
	struct sim *s = n->sim;

	check(s, page < s->P, "take of a page out of range");
	check(s, eng_state(n->e, page) == ENG_M, "take of a page not Modified here");
	if (n->staged[page] || chance(&s->r, 256)) {
		s->st.untaken++;
		return NULL;
	}
	if (!n->present[page] || !n->writable[page])
		die(s, "n%u: take of p%llu, which is not present and writable", n->id,
		    (unsigned long long)page);
	vlog(s, "    n%u: take p%llu\n", n->id, (unsigned long long)page);
	memcpy(n->took, n->mem[page], PS);
	gone(n, page);
	s->st.taken++;
	interleave(s, n);
	return n->took;
}

static int o_wake(void *ctx, uint64_t page)
{
	struct node *n = ctx;
	struct sim *s = n->sim;

	vlog(s, "    n%u: wake p%llu\n", n->id, (unsigned long long)page);
	check(s, page < s->P, "wake of a page out of range");
	wake_page(s, n, page);
	interleave(s, n);
	return 0;
}

static int o_poison(void *ctx, uint64_t page)
{
	struct node *n = ctx;
	struct sim *s = n->sim;

	vlog(s, "    n%u: poison p%llu\n", n->id, (unsigned long long)page);
	check(s, page < s->P, "poison of a page out of range");
	if (n->present[page])
		die(s, "n%u: poison of p%llu, which is present", n->id, (unsigned long long)page);
	if (!s->exposed[page])
		die(s, "n%u: poison of p%llu, which no node death could cost (lost by a leave?)",
		    n->id, (unsigned long long)page);
	n->poisoned[page] = true;
	wake_page(s, n, page);
	interleave(s, n);
	return 0;
}

static void o_barrier_done(void *ctx, int err)
{
	struct node *n = ctx;
	struct sim *s = n->sim;
	struct thread *th = &n->th[0];

	vlog(s, "    n%u: barrier_done %d (barrier %llu)\n", n->id, err,
	     (unsigned long long)n->bar_epoch - 1);
	if (th->st != T_BARRIER)
		die(s, "n%u: barrier_done without a barrier pending", n->id);
	if (err == 0) {
		/* Everybody must have entered this barrier (but a node that leaves need not). */
		for (unsigned i = 0; i < s->K; i++)
			if (s->n[i].bar_epoch < n->bar_epoch && !s->n[i].leaving)
				die(s, "n%u: barrier %llu completed but n%u has not entered it",
				    n->id, (unsigned long long)n->bar_epoch - 1, i);
		s->st.barriers++;
	} else if (err == UDSM_EPEER) {
		check(s, s->lost, "barrier failed without any node lost");
		s->st.bar_fail++;
	} else {
		die(s, "n%u: barrier_done with error %d", n->id, err);
	}
	th->st = T_IDLE;
	interleave(s, n);
}

static void o_log(void *ctx, int level, const char *msg)
{
	struct node *n = ctx;

	if (n->sim->verbose)
		printf("    n%u: log %d: %s\n", n->id, level, msg);
	/* No peer here is broken or hostile: an error the engine reports is a bug. */
	if (level <= UDSM_LOG_ERR)
		die(n->sim, "n%u logged an error: %s", n->id, msg);
	if (strstr(msg, "was lost during the hand-over"))
		n->sim->st.succ_lost++;
}

/*
 * Statistics hooks (docs/STATS.md). An owner giving a page up says what it wrote in
 * FETCH_REPLY's arg; the home must get exactly that word back from that owner, whichever way
 * the reply travelled (a link, or the home's own local queue when it was the owner).
 */
static uint64_t sim_warg(uint64_t page, unsigned owner)
{
	return (uint64_t)2 << 62 | (page & 0xffff) << 8 | owner;
}

static uint64_t o_written(void *ctx, uint64_t page, const void *data)
{
	struct node *n = ctx;

	check(n->sim, eng_state(n->e, page) == ENG_M, "written() on a page not Modified here");
	return sim_warg(page, n->id);
}

static void o_moved(void *ctx, uint64_t page, unsigned from, unsigned to, uint64_t warg)
{
	struct node *n = ctx;
	struct sim *s = n->sim;

	check(s, page < s->P && eng_home(n->e, page) == n->id, "moved() reported by a non-home");
	check(s, to < s->K || to == 0xff, "moved() to an invalid node");
	if (from == 0xff)
		check(s, warg == 0, "moved() from the home's copy with a written-range word");
	else
		check(s, from < s->K && from != to && warg == sim_warg(page, from),
		      "moved() from an owner with a word that owner did not send");
}

static size_t o_room(void *ctx, unsigned dst)
{
	struct node *n = ctx;
	struct sim *s = n->sim;
	size_t q;

	check(s, dst < s->K && dst != n->id, "room asked toward an invalid node");
	check(s, n->leaving, "room asked by a node that is not leaving");
	if (s->n[dst].dead)
		return SIZE_MAX; /* sends to it are dropped */
	q = link_bytes(&s->L[n->id][dst]);
	return q < s->room ? s->room - q : 0;
}


static const struct eng_ops sim_ops = {
	.send = o_send,
	.install = o_install,
	.protect = o_protect,
	.stage = o_stage,
	.stage_end = o_stage_end,
	.unprotect = o_unprotect,
	.drop = o_drop,
	.page_data = o_page_data,
	.take = o_take,
	.wake = o_wake,
	.poison = o_poison,
	.barrier_done = o_barrier_done,
	.log = o_log,
	.moved = o_moved,
	.written = o_written,
};

/* ---- application threads ---- */

/* Thread @t of @n performs (or retries) its access. */
static void access_mem(struct sim *s, struct node *n, unsigned t)
{
	struct thread *th = &n->th[t];
	unsigned p = th->page;

	if (th->st == T_IDLE) {
		if (s->p_scan && chance(&s->r, s->p_scan)) {
			th->page = (uint8_t)((th->page + 1u) % s->P);
			th->write = false;
		} else {
			th->page = (uint8_t)(chance(&s->r, s->p_hot)
						     ? rn(&s->r, s->P < 2 ? s->P : 2)
						     : rn(&s->r, s->P));
			th->write = chance(&s->r, s->p_write);
		}
		/* Not in a range being re-homed: the application does not use it meanwhile. */
		while (s->rh != RH_NONE && th->page - s->rh_first < s->rh_len)
			th->page = (uint8_t)(chance(&s->r, s->p_hot)
						     ? rn(&s->r, s->P < 2 ? s->P : 2)
						     : rn(&s->r, s->P));
		p = th->page;
		s->ops_started++;
	}
	if (n->poisoned[p]) {
		vlog(s, "      n%u.t%u %s p%u: SIGBUS\n", n->id, t, th->write ? "write" : "read",
		     p);
		if (!s->exposed[p])
			die(s, "n%u.t%u: SIGBUS on p%u, which no node death could cost", n->id, t,
			    p);
		s->st.sigbus++;
		s->ops_done++;
		th->st = T_IDLE;
		return;
	}
	if (n->present[p] && (!th->write || n->writable[p])) {
		if (th->write) {
			uint64_t stamp = chance(&s->r, s->p_zero) ? 0 : ++s->stamp;

			for (unsigned i = 0; i < s->K; i++)
				if (i != n->id && !s->n[i].dead && s->n[i].present[p])
					die(s, "n%u.t%u writes p%u while n%u has a copy (%s)",
					    n->id, t, p, i,
					    s->n[i].writable[p] ? "writable" : "read-only");
			fill(n->mem[p], stamp);
			memcpy(s->shadow[p], n->mem[p], PS);
			s->st.writes++;
			vlog(s, "      n%u.t%u write p%u = %llu\n", n->id, t, p,
			     (unsigned long long)stamp);
		} else {
			if (memcmp(n->mem[p], s->shadow[p], PS))
				die(s, "n%u.t%u read p%u: got %llu, the latest write is %llu",
				    n->id, t, p, (unsigned long long)stamp_of(n->mem[p]),
				    (unsigned long long)stamp_of(s->shadow[p]));
			s->st.reads++;
			vlog(s, "      n%u.t%u read p%u = %llu\n", n->id, t, p,
			     (unsigned long long)stamp_of(n->mem[p]));
		}
		s->ops_done++;
		th->st = T_IDLE;
		return;
	}
	th->st = T_BLOCKED;
	th->ev = ++s->evid;
	fq_push(&n->fq, (struct fault_ev){ .page = (uint8_t)p, .thread = (uint8_t)t,
					   .write = th->write, .id = th->ev });
	vlog(s, "      n%u.t%u %s p%u: fault (%s)\n", n->id, t, th->write ? "write" : "read", p,
	     n->present[p] ? "write-protected" : "missing");
}

/* ---- the scheduler's actions ---- */

/* Messages node.c may park while output toward their sender is congested (its parkable()). */
static bool parkable(unsigned type)
{
	return type != WIRE_DATA && type != WIRE_GRANT && type != WIRE_INV_ACK &&
	       type != WIRE_FETCH_REPLY && type != WIRE_NACK && type != WIRE_BARRIER_DONE &&
	       type != WIRE_FWD_DATA && type != WIRE_FWD_REPLY && type != WIRE_FWD_ACK &&
	       type != WIRE_FWD_NONE && type != WIRE_FWD_ASK && type != WIRE_RECALL &&
	       type != WIRE_RA_SKIP && type != WIRE_DATA_SET;
}

/* Move the first response of @l ahead of the requests before it, as parking does. */
static void overtake(struct sim *s, struct link *l)
{
	for (size_t i = 0; i < l->len; i++) {
		struct item *it = &l->v[(l->head + i) % l->cap];

		if (it->eof)
			return;
		if (parkable(it->bytes[0]))
			continue;
		struct item resp = *it;

		for (size_t j = i; j > 0; j--)
			l->v[(l->head + j) % l->cap] = l->v[(l->head + j - 1) % l->cap];
		l->v[l->head] = resp;
		s->st.overtaken += i > 0;
		s->st.fwd_overtaken += i > 0 && resp.bytes[0] >= WIRE_FWD &&
				       resp.bytes[0] <= WIRE_FWD_ASK;
		return;
	}
}

static void deliver(struct sim *s, unsigned from, unsigned to)
{
	struct item *it;

	if (s->overtake && chance(&s->ro, 256))
		overtake(s, &s->L[from][to]);
	it = link_pop(&s->L[from][to]);
	struct node *n = &s->n[to];
	struct wire_msg m;
	int err;

	if (it->eof) {
		vlog(s, "[%llu] n%u learns that n%u is dead\n", (unsigned long long)s->step, to,
		     from);
		s->where = "eng_peer_lost";
		n->in_event = true;
		eng_peer_lost(n->e, from);
		n->in_event = false;
		return;
	}
	err = wire_dec_feed(&s->dec, it->bytes, it->len);
	if (!err)
		err = wire_dec_next(&s->dec, &m);
	if (err || wire_dec_pending(&s->dec))
		die(s, "decoding a message from n%u to n%u: %d (%s)", from, to, err, s->dec.why);
	vlog(s, "[%llu] deliver n%u -> n%u %s p%llu f%x a%llu\n", (unsigned long long)s->step,
	     from, to, wire_type_name(m.type), (unsigned long long)m.page, m.flags,
	     (unsigned long long)m.arg);
	s->where = "eng_recv";
	s->st.msgs++;
	if (m.type == WIRE_FWD)
		s->st.fwd++;
	if (m.type == WIRE_RA_SKIP)
		s->st.ra_skip++;
	if (m.type == WIRE_GET_S_SET)
		s->st.sets++;
	if (m.type == WIRE_FETCH_SET)
		s->st.fsets++;
	if (m.type == WIRE_DATA_SET) {
		for (unsigned i = 0; i < WIRE_SET_BYTES; i++) {
			s->st.set_pages += (unsigned)__builtin_popcount(m.payload[i]);
			s->st.ra_skip += (unsigned)__builtin_popcount(m.payload[2 * WIRE_SET_BYTES + i]);
		}
	}
	if (m.type == WIRE_FWD_NONE || m.type == WIRE_FWD_ASK || m.type == WIRE_RECALL)
		s->st.fwd_death++;
	if (m.type == WIRE_FWD_DATA && m.page < s->P) {
		unsigned h = eng_home(n->e, m.page);
		struct eng_dir_view dv;

		if (!s->n[h].dead && !eng_dir(s->n[h].e, m.page, &dv) && dv.queued)
			s->st.fwd_race++;
	}
	n->in_event = true;
	err = eng_recv(n->e, from, &m);
	n->in_event = false;
	if (err)
		die(s, "n%u rejected %s p%llu from n%u: %d (%s)", to, wire_type_name(m.type),
		    (unsigned long long)m.page, from, err, eng_why(n->e));
}

static void deliver_fault(struct sim *s, struct node *n)
{
	struct fault_ev ev = fq_pop(&n->fq);
	int err;

	vlog(s, "[%llu] n%u: fault p%u %s (t%u) in state %s\n", (unsigned long long)s->step,
	     n->id, ev.page, ev.write ? "write" : "read", ev.thread,
	     eng_state_name(eng_state(n->e, ev.page)));
	s->where = "eng_fault";
	s->st.faults++;
	n->in_event = true;
	err = eng_fault(n->e, ev.page, ev.write);
	n->in_event = false;
	if (err)
		die(s, "eng_fault: %d", err);
}

static void enter_barrier(struct sim *s, struct node *n)
{
	int err;

	vlog(s, "[%llu] n%u.t0 enters barrier %llu\n", (unsigned long long)s->step, n->id,
	     (unsigned long long)n->bar_epoch);
	s->where = "eng_barrier";
	n->bar_entered = true;
	n->th[0].st = T_BARRIER;
	n->bar_epoch++;
	n->in_event = true;
	err = eng_barrier(n->e);
	n->in_event = false;
	if (err == 0)
		return;
	n->bar_epoch--;
	n->th[0].st = T_IDLE;
	if (err == UDSM_EPEER && s->lost) {
		vlog(s, "      fails at once: a node was lost\n");
		s->st.bar_fail++;
		return;
	}
	die(s, "n%u: eng_barrier: %d", n->id, err);
}

static void probe_barrier(struct sim *s, struct node *n)
{
	uint64_t msgs = 0;
	int err;

	vlog(s, "[%llu] n%u: a second thread calls eng_barrier\n", (unsigned long long)s->step,
	     n->id);
	s->where = "eng_barrier (busy)";
	for (unsigned i = 0; i < s->K; i++)
		msgs += s->L[n->id][i].len;
	err = eng_barrier(n->e);
	if (err != -EBUSY)
		die(s, "n%u: second eng_barrier returned %d, not -EBUSY", n->id, err);
	for (unsigned i = 0; i < s->K; i++)
		msgs -= s->L[n->id][i].len;
	check(s, msgs == 0 && n->th[0].st == T_BARRIER, "a busy eng_barrier had effects");
}

/*
 * Node @v dies: mark the pages its death may cost. A page is exposed if some engine (also a
 * dead or departed one: its view may still be what others act on) resolves its home to @v
 * or to a node that is in the middle of a leave, if some directory says @v owns it or is
 * forwarding it to @v (the page may be in flight to it, or its only copy), or if @v
 * holds it Modified or has a request for it in flight. If no node remains that is not
 * leaving, the leaves have nowhere to hand their pages: everything is exposed.
 */
/*
 * Whether the death of another node cannot cost the pages homed at @h, which is leaving: a
 * leaver that has not finished its hand-over replaces a successor that dies meanwhile (or
 * picks its successor later), so only what the dead node owned or was getting (checked
 * apart) is exposed. Only where every survivor learns of a death at once: a leaver that
 * learns of it late may finish its hand-over with the dead successor first.
 */
static bool lv_safe(const struct sim *s, unsigned h)
{
	return s->loss_mode == LOSS_NOW && !s->n[h].dead && !eng_left(s->n[h].e);
}

static void expose(struct sim *s, unsigned v)
{
	unsigned stay = 0;

	for (unsigned i = 0; i < s->K; i++)
		stay += i != v && !s->n[i].dead && !s->n[i].leaving;
	for (unsigned p = 0; p < s->P; p++) {
		int st = eng_state(s->n[v].e, p);
		bool x = !stay || (st != ENG_I && st != ENG_S && st != ENG_LOST);

		for (unsigned i = 0; i < s->K && !x; i++) {
			unsigned h = eng_home(s->n[i].e, p);
			struct eng_dir_view dv;

			if (h == v || (s->n[h].leaving && !lv_safe(s, h)))
				x = true;
			else if (!eng_dir(s->n[i].e, p, &dv) &&
				 (dv.owner == (int)v || dv.fwd_req == (int)v))
				x = true; /* it owns it, or it is being forwarded to it */
		}
		if (x && !s->exposed[p]) {
			s->exposed[p] = true;
			vlog(s, "      p%u exposed by the death of n%u\n", p, v);
		}
	}
}

/* Kill a random live node, or @want if it is alive (a node a paced leave waits on). */
static void kill_node(struct sim *s, int want)
{
	unsigned alive[MAXK], na = 0, v;
	struct node *d;

	for (unsigned i = 0; i < s->K; i++)
		if (!s->n[i].dead)
			alive[na++] = i;
	if (na < 2)
		return;
	v = want >= 0 && !s->n[want].dead ? (unsigned)want : alive[rn(&s->r, na)];
	d = &s->n[v];
	vlog(s, "[%llu] *** n%u dies (%s)\n", (unsigned long long)s->step, v,
	     s->loss_mode == LOSS_NOW ? "noticed at once" : "noticed at end of stream");
	s->where = "node loss";
	s->st.losses++;
	s->lost = true;
	expose(s, v);
	d->dead = true;
	d->fq.len = 0;
	for (unsigned t = 0; t < s->T; t++) /* its operations die with it */
		if (d->th[t].st == T_BLOCKED || d->th[t].st == T_READY)
			s->ops_done++;
	for (unsigned i = 0; i < s->K; i++)
		s->L[i][v].len = 0;
	if (s->loss_mode == LOSS_NOW) {
		for (unsigned i = 0; i < s->K; i++)
			s->L[v][i].len = 0;
		/* every survivor notices, in a random order */
		for (unsigned k = na; k > 1; k--) {
			unsigned j = rn(&s->r, k), x = alive[j];

			alive[j] = alive[k - 1];
			alive[k - 1] = x;
		}
		for (unsigned k = 0; k < na; k++) {
			struct node *n = &s->n[alive[k]];

			if (n->dead)
				continue;
			vlog(s, "  n%u: peer n%u lost\n", n->id, v);
			n->in_event = true;
			eng_peer_lost(n->e, v);
			n->in_event = false;
		}
		return;
	}
	for (unsigned i = 0; i < s->K; i++) {
		struct link *l = &s->L[v][i];
		struct item eof = { .eof = true };

		if (s->n[i].dead)
			continue;
		if (l->len) /* what the network had not delivered yet may be lost */
			l->len = rn(&s->r, (unsigned)l->len + 1);
		link_push(l, &eof);
	}
}

/* A node leaves once its threads are idle: the application stopped using the region. At
 * least one node that is not leaving stays. */
static void leave_node(struct sim *s)
{
	unsigned cand[MAXK], nc = 0, stay = 0, v;
	struct node *n;
	int err;

	for (unsigned i = 0; i < s->K; i++) {
		struct node *x = &s->n[i];
		bool idle = true;

		if (x->dead || x->leaving)
			continue;
		stay++;
		for (unsigned t = 0; t < s->T; t++)
			idle &= x->th[t].st == T_IDLE;
		/* Its application is inside a collective call. */
		idle &= s->rh == RH_NONE || !s->rh_frozen[i];
		if (idle)
			cand[nc++] = i;
	}
	if (stay < 2) {
		s->leave_due = 0; /* nobody could take the pages over */
		return;
	}
	if (!nc)
		return; /* later, once some node's threads are idle */
	v = cand[rn(&s->r, nc)];
	n = &s->n[v];
	vlog(s, "[%llu] *** n%u leaves\n", (unsigned long long)s->step, v);
	s->where = "eng_leave";
	s->leave_due--;
	s->st.leaves++;
	n->leaving = true;
	n->in_event = true;
	err = eng_leave(n->e);
	n->in_event = false;
	if (err)
		die(s, "n%u: eng_leave: %d", v, err);
}

/* Nodes whose hand-over completed depart: nothing reaches them any more. */
static void depart(struct sim *s)
{
	for (unsigned i = 0; i < s->K; i++) {
		struct node *n = &s->n[i];

		if (n->dead || !n->leaving || !eng_left(n->e))
			continue;
		vlog(s, "      n%u departed\n", i);
		n->departed = n->dead = true;
		n->fq.len = 0;
	}
}

/* ---- invariants ---- */

static void check_step(struct sim *s)
{
	s->where = "invariants";
	for (unsigned p = 0; p < s->P; p++) {
		int writer = -1;

		for (unsigned i = 0; i < s->K; i++) {
			struct node *n = &s->n[i];
			int st;
			bool ok;

			if (n->dead)
				continue;
			if (n->writable[p]) {
				if (writer >= 0)
					die(s, "SWMR: p%u writable on n%d and n%u", p, writer, i);
				writer = (int)i;
			}
			if (n->present[p] && memcmp(n->mem[p], s->shadow[p], PS))
				die(s, "n%u holds p%u = %llu, the latest write is %llu", i, p,
				    (unsigned long long)stamp_of(n->mem[p]),
				    (unsigned long long)stamp_of(s->shadow[p]));
			st = eng_state(n->e, p);
			switch (st) {
			case ENG_I:
			case ENG_IS_D:
			case ENG_IM_D:
				ok = !n->present[p] && !n->poisoned[p];
				break;
			case ENG_S:
			case ENG_SM_A:
				ok = n->present[p] && !n->writable[p];
				break;
			case ENG_M:
				ok = n->present[p] && n->writable[p];
				break;
			case ENG_LOST:
				ok = !n->present[p] && n->poisoned[p];
				break;
			default:
				ok = false;
			}
			if (!ok)
				die(s, "n%u: p%u is %s in the engine but %s%s%s in the kernel", i,
				    p, eng_state_name(st), n->present[p] ? "present" : "absent",
				    n->writable[p] ? " writable" : "",
				    n->poisoned[p] ? " poisoned" : "");
		}
		if (writer >= 0)
			for (unsigned i = 0; i < s->K; i++)
				if ((int)i != writer && !s->n[i].dead && s->n[i].present[p])
					die(s, "SWMR: p%u writable on n%d and present on n%u", p,
					    writer, i);
	}
}

/* After the run: every engine quiescent, every directory consistent with the nodes. */
static void check_end(struct sim *s)
{
	s->where = "final checks";
	for (unsigned i = 0; i < s->K; i++) {
		struct node *n = &s->n[i];
		struct udsm_stats es;

		if (n->dead)
			continue;
		for (unsigned t = 0; t < s->T; t++)
			if (n->th[t].st != T_IDLE)
				die(s, "n%u.t%u never finished: %s p%u (page state %s)", i, t,
				    n->th[t].st == T_BARRIER ? "barrier" :
				    n->th[t].write ? "write" : "read", n->th[t].page,
				    eng_state_name(eng_state(n->e, n->th[t].page)));
		if (n->leaving)
			die(s, "n%u never completed its leave", i);
		if (!eng_quiescent(n->e))
			die(s, "n%u is not quiescent at the end", i);
		eng_stats(n->e, &es);
		if (es.pages_in != n->installs || es.zero_pages_in != n->zero_installs)
			die(s, "n%u: stats say %llu pages in (%llu zero), %llu installed (%llu zero)",
			    i, (unsigned long long)es.pages_in, (unsigned long long)es.zero_pages_in,
			    (unsigned long long)n->installs, (unsigned long long)n->zero_installs);
	}
	if (s->ops_done != s->ops_started)
		die(s, "%u operations started, %u completed", s->ops_started, s->ops_done);
	for (unsigned p = 0; p < s->P; p++) {
		unsigned h = UINT32_MAX;
		struct eng_dir_view v;
		uint64_t sharers = 0, live;
		int owner = -1;

		for (unsigned i = 0; i < s->K; i++) {
			int st;

			if (s->n[i].dead)
				continue;
			/* Every survivor resolves the page to the same home (unless a node
			 * died during its leave: not all may have heard its BYE). */
			if (h == UINT32_MAX)
				h = eng_home(s->n[i].e, p);
			else if (eng_home(s->n[i].e, p) != h && !s->exposed[p])
				die(s, "p%u: n%u says its home is n%u, others say n%u", p, i,
				    eng_home(s->n[i].e, p), h);
			st = eng_state(s->n[i].e, p);
			if (st == ENG_LOST && !s->exposed[p])
				die(s, "p%u is lost at n%u, but no node death could cost it", p, i);
			if (st == ENG_S)
				sharers |= 1ull << i;
			if (st == ENG_M) {
				if (owner >= 0)
					die(s, "p%u is M on n%d and n%u", p, owner, i);
				owner = (int)i;
			}
		}
		if (owner >= 0 && sharers)
			die(s, "p%u is M on n%d and S on %#llx", p, owner,
			    (unsigned long long)sharers);
		if (h == UINT32_MAX)
			break; /* nobody left */
		if (s->n[h].departed)
			die(s, "p%u is homed at n%u, which left", p, h);
		if (s->n[h].dead) {
			if (!s->exposed[p])
				die(s, "p%u is homed at the dead n%u but was not exposed", p, h);
			continue;
		}
		if (eng_dir(s->n[h].e, p, &v))
			die(s, "eng_dir(p%u) failed at its home n%u", p, h);
		if (v.busy || v.queued)
			die(s, "p%u: directory busy at the end", p);
		if (v.lost && !s->exposed[p])
			die(s, "p%u: lost at its home n%u, but no node death could cost it", p, h);
		if (v.lost) {
			if (owner >= 0 || sharers)
				die(s, "p%u: lost at the home but held by nodes", p);
			continue;
		}
		if (v.owner != owner)
			die(s, "p%u: directory owner %d, but M on %d", p, v.owner, owner);
		if (owner >= 0) {
			if (v.sharers || v.has_copy)
				die(s, "p%u: owned by n%d but the home has sharers or a copy", p,
				    owner);
			continue;
		}
		/* No owner: the home holds the latest contents, the sharers are exactly the S. */
		live = 0;
		for (unsigned i = 0; i < s->K; i++)
			if (!s->n[i].dead)
				live |= 1ull << i;
		if ((v.sharers & live) != sharers)
			die(s, "p%u: directory sharers %#llx, but S on %#llx", p,
			    (unsigned long long)v.sharers, (unsigned long long)sharers);
		if (v.has_copy ? memcmp(v.copy, s->shadow[p], PS) != 0
			       : !(v.zero && wire_is_zero(s->shadow[p], PS)))
			die(s, "p%u: the home copy is not the latest write", p);
	}
}

/* ---- one schedule ---- */

enum { A_DELIVER, A_FAULT, A_START, A_RETRY, A_BARRIER, A_PROBE, A_REHOME, A_RESUME, A_N_ };

struct action {
	uint8_t kind, a, b;
};

static void setup(struct sim *s, uint64_t seed, bool verbose)
{
	static struct eng_ops paced; /* sim_ops with a room: paced leaves */

	struct rng *r = &s->r;

	memset(s, 0, sizeof(*s));
	s->seed = seed;
	s->verbose = verbose;
	rng_seed(r, seed);
	s->K = 2 + rn(r, 7);
	s->P = 1 + rn(r, 12);
	s->T = 1 + rn(r, 3);
	s->ra = rn(r, 4) == 0 ? -1 : (int)rn(r, 9);
	s->nomig = rn(r, 3) == 0;
	rng_seed(&s->ro, seed ^ 0x6f76657274616b65ull);
	s->overtake = rn(&s->ro, 2);
	rng_seed(&s->rr, seed ^ 0x6c65617665706163ull);
	if (rn(&s->rr, 3))
		s->room = 1 + rn(&s->rr, 3 * (WIRE_HDR_LEN + WIRE_ADOPT_FIXED + PS));
	{
		struct rng rc;

		rng_seed(&rc, seed ^ 0x686f6d656368756eull);
		s->chunk = 1 + rn(&rc, 4);
		/* A home that answers at most 1 or 2 pages with contents per set, sometimes. */
		s->set_pages = rn(&rc, 3) ? 0 : 1 + rn(&rc, 2);
		/* Collectives need a full cluster: not in schedules where nodes die. */
		if (rn(&rc, 3) == 0)
			s->p_rehome = 4 + rn(&rc, 60);
	}
	s->w_deliver = 1 + rn(r, 8);
	s->w_fault = 1 + rn(r, 8);
	s->w_start = 1 + rn(r, 8);
	s->w_retry = 1 + rn(r, 8);
	s->w_barrier = 1 + rn(r, 4);
	static const unsigned nest[] = { 0, 64, 256, 600 };
	static const unsigned withdraw[] = { 0, 512, 1024 };
	s->p_nest = nest[rn(r, 4)];
	s->p_withdraw = withdraw[rn(r, 3)];
	s->p_write = 100 + rn(r, 825);
	s->p_zero = rn(r, 3) ? 0 : 128;
	s->p_hot = rn(r, 3) ? 0 : 512;
	s->p_phase = rn(r, 3) == 0 ? 0 : 2 + rn(r, 30);
	s->ops_target = rn(r, 8) == 0 ? 300 + rn(r, 2000) : 10 + rn(r, 200);
	switch (rn(r, 8)) {
	case 0:
	case 1:
		s->loss_mode = LOSS_NOW;
		break;
	case 2:
	case 3:
		s->loss_mode = LOSS_EOF;
		break;
	default:
		s->loss_mode = LOSS_NONE;
	}
	if (s->loss_mode != LOSS_NONE) {
		s->nkills = s->K > 2 && rn(r, 4) == 0 ? 2 : 1;
		for (unsigned k = 0; k < s->nkills; k++)
			s->kill_step[k] = 1 + rn(r, s->ops_target * 6);
	}
	if (rn(r, 8) < 3) { /* graceful leaves, maybe several at once, maybe mixed with losses */
		s->nleaves = 1 + rn(r, s->K - 1);
		bool together = rn(r, 3) == 0; /* leaves that cross each other */

		for (unsigned k = 0; k < s->nleaves; k++)
			s->leave_step[k] = together && k ? s->leave_step[0]
							 : 1 + rn(r, s->ops_target * 6);
	}
	s->nofwd = rn(r, 4) == 0;
	s->p_scan = rn(r, 3) ? 0 : 700;
	if (s->p_scan && s->ra >= 0 && s->ra < 4)
		s->ra += 4; /* scans make bursts: page sets, fetch sets, staging */
	wire_dec_init(&s->dec, PS);
	paced = sim_ops;
	paced.room = o_room;
	for (unsigned i = 0; i < s->K; i++) {
		struct node *n = &s->n[i];
		struct eng_config c = {
			.self = i,
			.nodes = s->K,
			.npages = s->P,
			.page_size = PS,
			.readahead = s->ra,
			.no_migratory = s->nomig,
			.no_forward = s->nofwd,
			.home_chunk = s->chunk,
			.set_pages = s->set_pages,
			.ops = s->room ? &paced : &sim_ops,
			.ctx = n,
		};

		n->sim = s;
		n->id = i;
		if (eng_create(&c, &n->e))
			die(s, "eng_create failed");
	}
	if (s->loss_mode != LOSS_NONE || s->P < 2)
		s->p_rehome = 0;
	vlog(s, "home chunk %u, rehome %u\n", s->chunk, s->p_rehome);
	vlog(s, "seed %llu: %u nodes, %u pages, %u threads/node, readahead %d, %u ops, "
		"loss %s (%u at steps %llu %llu), weights d%u f%u s%u r%u, nest %u, withdraw %u, "
		"write %u, zero %u, hot %u, barrier %u, %u leaves\n",
	     (unsigned long long)seed, s->K, s->P, s->T, s->ra, s->ops_target,
	     s->loss_mode == LOSS_NONE ? "none" : s->loss_mode == LOSS_NOW ? "now" : "eof",
	     s->nkills, (unsigned long long)s->kill_step[0], (unsigned long long)s->kill_step[1],
	     s->w_deliver, s->w_fault, s->w_start, s->w_retry, s->p_nest, s->p_withdraw,
	     s->p_write, s->p_zero, s->p_hot, s->p_phase, s->nleaves);
}

static void teardown(struct sim *s)
{
	for (unsigned i = 0; i < s->K; i++) {
		eng_destroy(s->n[i].e);
		free(s->n[i].fq.v);
		for (unsigned j = 0; j < s->K; j++)
			free(s->L[i][j].v);
	}
	wire_dec_free(&s->dec);
}

/* ---- re-homing a range (the allocator's collective calls) ---- */

static bool rh_in(const struct sim *s, unsigned p)
{
	return p - s->rh_first < s->rh_len;
}

/* Whether node @i has a step of the re-homing in progress to take. */
static bool rh_can(const struct sim *s, unsigned i)
{
	const struct node *n = &s->n[i];

	if (n->dead)
		return false;
	switch (s->rh) {
	case RH_FREEZE:
		return !n->leaving && !s->rh_frozen[i];
	case RH_COMMIT:
		return !s->rh_done[i];
	case RH_THAW:
		return !s->rh_thawed[i];
	default:
		return false;
	}
}

static void rh_step(struct sim *s, struct node *n)
{
	unsigned i = n->id;
	int err = 0;

	n->in_event = true;
	switch (s->rh) {
	case RH_FREEZE:
		s->where = "eng_freeze";
		vlog(s, "[%llu] n%u freezes p%u+%u\n", (unsigned long long)s->step, i,
		     s->rh_first, s->rh_len);
		err = eng_freeze(n->e, s->rh_first, s->rh_len);
		s->rh_frozen[i] = true;
		break;
	case RH_COMMIT:
		s->where = "eng_rehome";
		vlog(s, "[%llu] n%u re-homes p%u+%u (policy %d)\n", (unsigned long long)s->step, i,
		     s->rh_first, s->rh_len, s->rh_policy);
		err = eng_rehome(n->e, s->rh_policy);
		if (err == -EAGAIN) {
			/* As node.c: retried later. A forward's reports (FWD_REPLY, FWD_ACK) may
			 * still be on their way to the home after every node is quiet. */
			vlog(s, "      not yet: an entry of the range is busy\n");
			n->in_event = false;
			return;
		}
		s->rh_done[i] = true;
		for (unsigned p = s->rh_first; p < s->rh_first + s->rh_len; p++)
			if (n->present[p])
				die(s, "n%u still holds p%u after re-homing it", i, p);
		break;
	case RH_THAW:
		s->where = "eng_thaw";
		vlog(s, "[%llu] n%u thaws\n", (unsigned long long)s->step, i);
		eng_thaw(n->e);
		s->rh_thawed[i] = true;
		break;
	}
	n->in_event = false;
	if (err)
		die(s, "n%u: re-homing step %d failed: %d", i, s->rh, err);
}

/* The barriers of the collective call, and the start of a new one. */
static void rh_advance(struct sim *s)
{
	bool all = true;

	switch (s->rh) {
	case RH_NONE:
		if (s->draining || !s->p_rehome || !chance(&s->r, s->p_rehome))
			return;
		s->rh_first = rn(&s->r, s->P);
		s->rh_len = 1 + rn(&s->r, s->P - s->rh_first);
		if (s->rh_len == s->P)
			s->rh_len--; /* the threads keep some page to work on */
		for (unsigned i = 0; i < s->K; i++)
			for (unsigned t = 0; t < s->T; t++) {
				const struct thread *th = &s->n[i].th[t];

				if (!s->n[i].dead && (th->st == T_BLOCKED || th->st == T_READY) &&
				    rh_in(s, th->page))
					return; /* in use: the allocator never re-homes it */
			}
		switch (rn(&s->r, 4)) {
		case 0:
			s->rh_policy = PLACE_BLOCK;
			break;
		case 1:
			s->rh_policy = PLACE_CYCLIC;
			break;
		case 2:
			s->rh_policy = (int)rn(&s->r, s->K);
			break;
		default:
			s->rh_policy = PLACE_DEFAULT;
		}
		memset(s->rh_frozen, 0, sizeof(s->rh_frozen));
		memset(s->rh_done, 0, sizeof(s->rh_done));
		memset(s->rh_thawed, 0, sizeof(s->rh_thawed));
		s->rh = RH_FREEZE;
		vlog(s, "      re-homing of p%u+%u to policy %d begins\n", s->rh_first, s->rh_len,
		     s->rh_policy);
		return;
	case RH_FREEZE:
		/* A node in the middle of a leave never arrives: wait until it is gone. */
		for (unsigned i = 0; i < s->K; i++)
			if (!s->n[i].dead && (!s->rh_frozen[i] || !eng_frozen_quiet(s->n[i].e)))
				all = false;
		if (all) {
			s->rh = RH_COMMIT;
			vlog(s, "      every node froze the range and is quiet\n");
		}
		return;
	case RH_COMMIT:
		for (unsigned i = 0; i < s->K; i++)
			if (!s->n[i].dead && !s->rh_done[i])
				all = false;
		if (all) {
			/* No node holds a copy any more: the range is zeros from now on. */
			for (unsigned p = s->rh_first; p < s->rh_first + s->rh_len; p++)
				memset(s->shadow[p], 0, PS);
			s->rh = RH_THAW;
			vlog(s, "      every node re-homed the range\n");
		}
		return;
	case RH_THAW:
		for (unsigned i = 0; i < s->K; i++)
			if (!s->n[i].dead && !s->rh_thawed[i])
				all = false;
		if (all) {
			s->rh = RH_NONE;
			s->st.rehomes++;
			vlog(s, "      re-homing over\n");
		}
		return;
	}
}

static void run_schedule(struct sim *s, struct stats *total)
{
	static struct action acts[A_N_][MAXK * MAXK + MAXK * MAXT];
	unsigned nacts[A_N_];
	uint64_t drain_steps = 0;
	const uint64_t drain_max = 200000;

	for (;;) {
		unsigned weight[A_N_] = { s->w_deliver, s->w_fault, s->w_start, s->w_retry,
					  s->w_barrier, 1, 2, 2 };
		unsigned sum = 0, pick;
		int kind;

		for (unsigned k = 0; k < s->nkills; k++)
			if (s->step == s->kill_step[k])
				kill_node(s, -1);
		/* In paced schedules with losses, now and then a scheduled death comes early and
		 * strikes the peer a hand-over waits on (a home getting PUTMs, the successor getting
		 * ADOPTs). From the room's own stream: the other draws keep their seeds. */
		for (unsigned i = 0; s->room && s->nkills && i < s->K; i++) {
			struct node *x = &s->n[i];
			int w;

			if (x->dead || !x->leaving || (w = eng_paced(x->e)) < 0 ||
			    !chance(&s->rr, 96))
				continue;
			for (unsigned k = 0; k < s->nkills; k++) {
				if (s->kill_step[k] > s->step) {
					s->kill_step[k] = 0;
					kill_node(s, w);
					break;
				}
			}
		}
		for (unsigned k = 0; k < s->nleaves; k++)
			if (s->step == s->leave_step[k])
				s->leave_due++;
		if (s->leave_due)
			leave_node(s);
		depart(s);

		memset(nacts, 0, sizeof(nacts));
		for (unsigned i = 0; i < s->K; i++) {
			struct node *n = &s->n[i];

			for (unsigned j = 0; j < s->K; j++)
				if (s->L[j][i].len && !n->dead)
					acts[A_DELIVER][nacts[A_DELIVER]++] =
						(struct action){ A_DELIVER, (uint8_t)j, (uint8_t)i };
			if (n->dead)
				continue;
			if (n->fq.len)
				acts[A_FAULT][nacts[A_FAULT]++] = (struct action){ A_FAULT, (uint8_t)i, 0 };
			for (unsigned t = 0; t < s->T; t++) {
				int st = n->th[t].st;

				if (st == T_READY)
					acts[A_RETRY][nacts[A_RETRY]++] =
						(struct action){ A_RETRY, (uint8_t)i, (uint8_t)t };
				else if (st == T_IDLE && !s->draining && !n->leaving)
					acts[A_START][nacts[A_START]++] =
						(struct action){ A_START, (uint8_t)i, (uint8_t)t };
			}
			if (s->phase && !n->bar_entered && n->th[0].st == T_IDLE && !n->leaving)
				acts[A_BARRIER][nacts[A_BARRIER]++] = (struct action){ A_BARRIER, (uint8_t)i, 0 };
			if (n->th[0].st == T_BARRIER && s->T > 1)
				acts[A_PROBE][nacts[A_PROBE]++] = (struct action){ A_PROBE, (uint8_t)i, 0 };
			if (rh_can(s, i))
				acts[A_REHOME][nacts[A_REHOME]++] =
					(struct action){ A_REHOME, (uint8_t)i, 0 };
			/* node.c's leave_pump: the link a paced leave waits on drained */
			if (n->leaving && eng_paced(n->e) >= 0 &&
			    o_room(n, (unsigned)eng_paced(n->e)) > 0)
				acts[A_RESUME][nacts[A_RESUME]++] =
					(struct action){ A_RESUME, (uint8_t)i, 0 };
		}
		for (int k = 0; k < A_N_; k++)
			sum += nacts[k] ? weight[k] : 0;
		if (!sum) {
			/* Leaves scheduled after the end happen now: the run ends with them. */
			bool more = false;

			for (unsigned k = 0; k < s->nleaves; k++) {
				if (s->leave_step[k] > s->step) {
					s->leave_step[k] = 0;
					s->leave_due++;
					more = true;
				}
			}
			if (more)
				continue;
			break;
		}
		pick = rn(&s->r, sum);
		for (kind = 0; kind < A_N_; kind++) {
			unsigned w = nacts[kind] ? weight[kind] : 0;

			if (pick < w)
				break;
			pick -= w;
		}
		struct action a = acts[kind][rn(&s->r, nacts[kind])];
		struct node *n = &s->n[a.a];

		s->step++;
		switch (a.kind) {
		case A_DELIVER:
			deliver(s, a.a, a.b);
			break;
		case A_FAULT:
			deliver_fault(s, n);
			break;
		case A_START:
		case A_RETRY:
			vlog(s, "[%llu] n%u.t%u %s\n", (unsigned long long)s->step, a.a, a.b,
			     a.kind == A_START ? "starts an access" : "retries");
			s->where = "access";
			access_mem(s, n, a.b);
			break;
		case A_BARRIER:
			enter_barrier(s, n);
			break;
		case A_PROBE:
			probe_barrier(s, n);
			break;
		case A_REHOME:
			rh_step(s, n);
			break;
		case A_RESUME:
			vlog(s, "[%llu] n%u resumes its hand-over toward n%d\n",
			     (unsigned long long)s->step, a.a, eng_paced(n->e));
			s->where = "eng_resume";
			s->st.resumed++;
			n->in_event = true;
			eng_resume(n->e);
			n->in_event = false;
			break;
		}
		depart(s);
		check_step(s);
		rh_advance(s);

		/* Barrier phases: begin one now and then, end it when every live node is out. */
		if (s->phase) {
			bool done = true;

			for (unsigned i = 0; i < s->K; i++)
				if (!s->n[i].dead && !s->n[i].leaving &&
				    (!s->n[i].bar_entered || s->n[i].th[0].st == T_BARRIER))
					done = false;
			if (done) {
				s->phase = false;
				vlog(s, "      barrier phase over\n");
			}
		} else if (!s->draining && s->p_phase && chance(&s->r, s->p_phase)) {
			s->phase = true;
			for (unsigned i = 0; i < s->K; i++)
				s->n[i].bar_entered = false;
			vlog(s, "      barrier phase begins\n");
		}
		if (!s->draining && s->ops_started >= s->ops_target) {
			s->draining = true;
			vlog(s, "      no new operations from now on\n");
		}
		if (s->draining && ++drain_steps > drain_max)
			die(s, "no quiescence after %llu steps without new operations (livelock?)",
			    (unsigned long long)drain_max);
	}
	s->where = "end";
	if (s->rh != RH_NONE)
		die(s, "a re-homing never completed (step %d)", s->rh);
	check_end(s);
	total->schedules++;
	total->steps += s->step;
	total->msgs += s->st.msgs;
	total->faults += s->st.faults;
	total->losses += s->st.losses;
	total->barriers += s->st.barriers;
	total->bar_fail += s->st.bar_fail;
	total->reads += s->st.reads;
	total->writes += s->st.writes;
	total->sigbus += s->st.sigbus;
	total->interleaved += s->st.interleaved;
	total->overtaken += s->st.overtaken;
	total->withdrawn += s->st.withdrawn;
	total->dropped_to_dead += s->st.dropped_to_dead;
	total->leaves += s->st.leaves;
	total->rehomes += s->st.rehomes;
	total->fwd += s->st.fwd;
	total->fwd_race += s->st.fwd_race;
	total->fwd_overtaken += s->st.fwd_overtaken;
	total->fwd_death += s->st.fwd_death;
	total->ra_skip += s->st.ra_skip;
	total->sets += s->st.sets;
	total->set_pages += s->st.set_pages;
	total->fsets += s->st.fsets;
	total->staged += s->st.staged;
	total->unclaimed += s->st.unclaimed;
	total->taken += s->st.taken;
	total->untaken += s->st.untaken;
	total->resumed += s->st.resumed;
	total->succ_lost += s->st.succ_lost;
}

static void usage(void)
{
	fprintf(stderr, "usage: %s [--seeds N] [--start S] [--seed S] [--long] [-v]\n", prog);
	exit(2);
}

int main(int argc, char **argv)
{
	uint64_t start = 1, count = 20000;
	bool verbose = false, one = false;
	struct stats total = { 0 };
	static struct sim s;
	struct timespec t0, t1;

	prog = argv[0];
	for (int i = 1; i < argc; i++) {
		char *end;

		if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose")) {
			verbose = true;
		} else if (!strcmp(argv[i], "--long")) {
			count = 5000000;
		} else if (i + 1 < argc && (!strcmp(argv[i], "--seeds") ||
					    !strcmp(argv[i], "--seed") ||
					    !strcmp(argv[i], "--start"))) {
			uint64_t v = strtoull(argv[i + 1], &end, 0);

			if (*end || !*argv[i + 1])
				usage();
			if (!strcmp(argv[i], "--seeds")) {
				count = v;
			} else if (!strcmp(argv[i], "--seed")) {
				start = v;
				count = 1;
				one = true;
			} else {
				start = v;
			}
			i++;
		} else {
			usage();
		}
	}
	signal(SIGABRT, on_abort);
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (uint64_t k = 0; k < count; k++) {
		uint64_t seed = start + k;

		cur_seed = seed;
		running = 1;
		setup(&s, seed, verbose);
		run_schedule(&s, &total);
		teardown(&s);
		if (verbose || one) {
			printf("seed %llu: ok, %llu steps, %u operations\n",
			       (unsigned long long)seed, (unsigned long long)s.step, s.ops_done);
		}
		if (count >= 1000000 && (k + 1) % 100000 == 0) {
			printf("... %llu schedules\n", (unsigned long long)k + 1);
			fflush(stdout);
		}
	}
	running = 0;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	/* A run of the default size must have met the forwarding races, or the schedules no
	 * longer produce what this simulation is for. */
	if (count >= 10000 && (!total.fwd || !total.fwd_race || !total.fwd_overtaken ||
			       !total.fwd_death || !total.ra_skip || !total.set_pages ||
			       !total.fsets || !total.staged || !total.taken || !total.untaken)) {
		fprintf(stderr, "%s: the schedules did not produce every forwarding case\n", prog);
		return 1;
	}
	printf("test_sim: %llu schedules (seeds %llu..%llu), %llu steps, %llu messages, "
	       "%llu faults, %llu reads, %llu writes, %llu node losses, %llu graceful leaves, "
	       "%llu ranges re-homed, "
	       "%llu SIGBUS, %llu barriers (+%llu failed), %llu interleaved accesses, %llu responses "
	       "ahead of parked requests; forwarding: %llu FWD, %llu with a request queued behind "
	       "it, %llu ahead of parked requests, %llu death messages; %llu read-aheads declined; "
	       "%llu page sets (%llu pages served in sets), %llu fetch sets, %llu pages staged "
	       "(%llu not given up); %llu pages taken in one step (%llu the other way); %llu paced "
	       "hand-over steps resumed, %llu restarted after their successor died; %.1f s\n",
	       (unsigned long long)total.schedules, (unsigned long long)start,
	       (unsigned long long)(start + count - 1), (unsigned long long)total.steps,
	       (unsigned long long)total.msgs, (unsigned long long)total.faults,
	       (unsigned long long)total.reads, (unsigned long long)total.writes,
	       (unsigned long long)total.losses, (unsigned long long)total.leaves,
	       (unsigned long long)total.rehomes,
	       (unsigned long long)total.sigbus,
	       (unsigned long long)total.barriers, (unsigned long long)total.bar_fail,
	       (unsigned long long)total.interleaved, (unsigned long long)total.overtaken,
	       (unsigned long long)total.fwd, (unsigned long long)total.fwd_race,
	       (unsigned long long)total.fwd_overtaken, (unsigned long long)total.fwd_death,
	       (unsigned long long)total.ra_skip, (unsigned long long)total.sets,
	       (unsigned long long)total.set_pages, (unsigned long long)total.fsets,
	       (unsigned long long)total.staged, (unsigned long long)total.unclaimed,
	       (unsigned long long)total.taken, (unsigned long long)total.untaken,
	       (unsigned long long)total.resumed, (unsigned long long)total.succ_lost,
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	return 0;
}
