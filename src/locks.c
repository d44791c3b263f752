/* SPDX-License-Identifier: MIT */
/*
 * locks.c - address-named locks of one node (see locks.h and docs/PROTOCOL.md, "Locks").
 *
 * A lock is named by its byte offset in the region and lives at a home: the node that homes
 * the page holding the address when the request is made (eng_home()). Its state - holder and
 * FIFO of waiters - is kept there by src/core/lock.c and changes only by messages
 * (LOCK_REQ, LOCK_REL in; LOCK_GRANT, LOCK_BUSY, LOCK_NACK out), never through the page: an
 * uncontended remote lock costs one round trip, a local one none, and a hand-over between
 * nodes moves one LOCK_REL and one LOCK_GRANT and no page.
 *
 * Requester side: each call of a thread is a request with its own tag; the wait record lives
 * on the caller's stack while it sleeps on its own condition variable. A granted lock becomes
 * a held record (which thread, which tag) until udsm_unlock().
 *
 * Everything goes through one FIFO of outgoing lock messages (the outbox) that the service
 * thread sends in order, so the lock messages on each link keep the order in which the home
 * or the requester decided them. A message for a home in the middle of a leave stays in the
 * outbox until the leave ends and then goes to the successor (as the engine does with page
 * requests); a message that reaches us for a lock whose home is leaving (we are about to take
 * it over) is kept back in the same way and handled after the leaver's BYE.
 */
#define LOG_PREFIX "locks: "
#include "locks.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/lock.h"
#include "node.h"
#include "os/futex.h"
#include "os/log.h"
#include "os/net.h"
#include "stats.h"

#define BIT(n) ((uint64_t)1 << (n))
#define TO_HOME 0xffffu /* lk_out.dst of a REQ or REL: the lock's home, resolved at send time */

/* A request of one of our threads. On the caller's stack; in lockd.waits while pending. */
struct lk_wait {
	struct lk_wait *next;
	uint64_t off, tag;
	uint32_t done; /* 1 once answered: the futex word its thread sleeps on */
	bool try;
	bool queued_out; /* its LOCK_REQ is still in the outbox */
	int result;      /* 0, -EBUSY, UDSM_EPEER (held if @granted), UDSM_ECLOSED */
	bool granted;
	struct lk_held *h; /* allocated by the caller, linked into lockd.held on a grant */
};

/* A lock held by one of our threads. */
struct lk_held {
	struct lk_held *next;
	uint64_t off, tag;
	pthread_t thr;
	bool broken; /* its state was lost (fence): unlock reports UDSM_EPEER */
};

/* A lock message for the service thread to send. */
struct lk_out {
	struct lk_out *next;
	uint8_t type, flags;
	unsigned dst; /* a node, or TO_HOME */
	uint64_t off, tag;
	struct lk_wait *w; /* LOCK_REQ: the waiting thread */
};

/* A message kept back while the home of its lock hands over (see stash_keep()). */
struct lk_in {
	struct lk_in *next;
	unsigned src;
	struct wire_msg m;
};

struct lockd {
	struct udsm *d;
	pthread_mutex_t mu;
	struct lk_table *home;
	uint64_t next_tag;
	struct lk_wait *waits;
	struct lk_held *held;
	struct lk_out *out, **out_tail;
	struct lk_in *stash, **stash_tail;
	uint32_t inside; /* threads inside a lock call that may sleep (atomic: left without mu;
			  * a futex word, lockd_close() waits on it) */
	uint64_t dead;   /* nodes lost (not left): a lock homed there is gone */
	bool closing, fenced;
	bool lost; /* a message could not be queued (out of memory): lockd_pump() says so */
	char lost_why[64]; /* which (under mu; why[] is the service thread's) */
	bool work; /* the outbox, stash or waits may need the service thread: lockd_pump() */
	char why[160];
};

static void lk_grant_cb(void *ctx, uint64_t off, struct lk_who who, bool odead);
static const struct lk_ops lk_ops = { .grant = lk_grant_cb };

/* lockd.work is written under mu and read by the service thread without it (a hint: a
 * thread that queues work also kicks the service thread). */
static void set_work(struct lockd *lk, bool v)
{
	__atomic_store_n(&lk->work, v, __ATOMIC_RELAXED);
}

int lockd_create(struct udsm *d, struct lockd **out)
{
	struct lockd *lk = calloc(1, sizeof(*lk));
	int err;

	if (!lk)
		return -ENOMEM;
	lk->d = d;
	err = lk_create(&lk_ops, lk, &lk->home);
	if (err) {
		free(lk);
		return err;
	}
	pthread_mutex_init(&lk->mu, NULL);
	lk->out_tail = &lk->out;
	lk->stash_tail = &lk->stash;
	*out = lk;
	return 0;
}

static void out_clear(struct lockd *lk)
{
	while (lk->out) {
		struct lk_out *o = lk->out;

		lk->out = o->next;
		free(o);
	}
	lk->out_tail = &lk->out;
	while (lk->stash) {
		struct lk_in *x = lk->stash;

		lk->stash = x->next;
		free(x);
	}
	lk->stash_tail = &lk->stash;
}

void lockd_destroy(struct lockd *lk)
{
	if (!lk)
		return;
	out_clear(lk);
	while (lk->held) {
		struct lk_held *h = lk->held;

		lk->held = h->next;
		free(h);
	}
	lk_destroy(lk->home);
	pthread_mutex_destroy(&lk->mu);
	free(lk);
}

const char *lockd_why(const struct udsm *d)
{
	return d->lockd->why;
}

static unsigned d_self(const struct lockd *lk)
{
	return lk->d->self;
}

static uint64_t page_of(const struct lockd *lk, uint64_t off)
{
	return off / lk->d->ps;
}

static unsigned home_of(const struct lockd *lk, uint64_t off)
{
	return eng_home(lk->d->eng, page_of(lk, off));
}

/* ------------------------------------------------------------------------------------------
 * Outbox. Locking: mu.
 */

/* A message that cannot be kept for want of memory would leave a thread, here or there,
 * waiting forever: this node cannot keep its promises any more. The service thread logs
 * why and fences it (lockd_pump()); its peers then see its locks as a dead node's. */
static void lost(struct lockd *lk, uint8_t type)
{
	snprintf(lk->lost_why, sizeof(lk->lost_why), "out of memory keeping a %s",
		 wire_type_name(type));
	lk->lost = true;
	set_work(lk, true);
}

/* Queue a message; false (and nothing queued) if memory ran out. */
static bool out_try(struct lockd *lk, uint8_t type, uint8_t flags, unsigned dst, uint64_t off,
		    uint64_t tag, struct lk_wait *w)
{
	struct lk_out *o = malloc(sizeof(*o));

	if (!o)
		return false;
	*o = (struct lk_out){ .type = type, .flags = flags, .dst = dst, .off = off, .tag = tag,
			      .w = w };
	*lk->out_tail = o;
	lk->out_tail = &o->next;
	set_work(lk, true);
	if (w)
		w->queued_out = true;
	return true;
}

/* Queue a message that must not be lost: if memory ran out, this node is fenced. */
static void out_push(struct lockd *lk, uint8_t type, uint8_t flags, unsigned dst, uint64_t off,
		     uint64_t tag, struct lk_wait *w)
{
	if (!out_try(lk, type, flags, dst, off, tag, w))
		lost(lk, type);
}

/* Take @w's LOCK_REQ out of the outbox (it will not be sent). */
static void out_unqueue(struct lockd *lk, struct lk_wait *w)
{
	for (struct lk_out **pp = &lk->out; *pp; pp = &(*pp)->next) {
		struct lk_out *o = *pp;

		if (o->w != w)
			continue;
		*pp = o->next;
		if (lk->out_tail == &o->next)
			lk->out_tail = pp;
		free(o);
		break;
	}
	w->queued_out = false;
}

static void send_now(struct lockd *lk, unsigned dst, uint8_t type, uint8_t flags, uint64_t off,
		     uint64_t arg)
{
	struct wire_msg m = {
		.type = type, .flags = flags, .src = (uint16_t)lk->d->self, .page = off,
		.arg = arg,
	};

	node_send(lk->d, dst, &m);
}

/* ------------------------------------------------------------------------------------------
 * Requester side. Locking: mu.
 */

static struct lk_wait *wait_find(struct lockd *lk, uint64_t tag)
{
	for (struct lk_wait *w = lk->waits; w; w = w->next)
		if (w->tag == tag)
			return w;
	return NULL;
}

/* @w is answered: take it off the list and wake its thread. */
static void wait_end(struct lockd *lk, struct lk_wait *w, int result, bool granted)
{
	for (struct lk_wait **pp = &lk->waits; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	if (w->queued_out)
		out_unqueue(lk, w);
	w->result = result;
	w->granted = granted;
	if (granted) {
		w->h->off = w->off;
		w->h->tag = w->tag;
		w->h->next = lk->held;
		lk->held = w->h;
		w->h = NULL;
	}
	/*
	 * The last access to @w, which lives on its thread's stack: once done is seen, the
	 * thread returns without taking mu again (lock_common). The wake only names the
	 * address; a wake after the frame is gone finds nobody, or wakes a later wait on
	 * the same word for nothing, which checks its word and sleeps again.
	 */
	__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
	futex_wake_all(&w->done);
}

static struct lk_held *held_find(struct lockd *lk, uint64_t off)
{
	for (struct lk_held *h = lk->held; h; h = h->next)
		if (h->off == off)
			return h;
	return NULL;
}

static void held_unlink(struct lockd *lk, struct lk_held *h)
{
	for (struct lk_held **pp = &lk->held; *pp; pp = &(*pp)->next)
		if (*pp == h) {
			*pp = h->next;
			return;
		}
}

/* A grant for one of our tags: wake its thread, or give the lock straight back if nobody
 * waits for it any more (the wait was cancelled by udsm_close()). */
static void granted_here(struct lockd *lk, uint64_t off, uint64_t tag, bool odead)
{
	struct lk_wait *w = wait_find(lk, tag);

	if (!w || w->off != off) {
		out_push(lk, WIRE_LOCK_REL, 0, TO_HOME, off, tag, NULL);
		return;
	}
	wait_end(lk, w, odead ? UDSM_EPEER : 0, true);
}

/* ------------------------------------------------------------------------------------------
 * Home side. Locking: mu.
 */

static void lk_grant_cb(void *ctx, uint64_t off, struct lk_who who, bool odead)
{
	struct lockd *lk = ctx;

	if (who.node == lk->d->self)
		granted_here(lk, off, who.tag, odead);
	else
		out_push(lk, WIRE_LOCK_GRANT, odead ? WIRE_F_LK_DEAD : 0, who.node, off, who.tag,
			 NULL);
}

/* End @who's request for @off without the lock: a waiter of this node gets @err at once, a
 * remote requester the message @type (a LOCK_NACK for -ENOMEM says so: WIRE_F_LK_NOMEM). */
static void refuse(struct lockd *lk, uint64_t off, struct lk_who who, int err, uint8_t type)
{
	if (who.node == lk->d->self) {
		struct lk_wait *w = wait_find(lk, who.tag);

		if (w)
			wait_end(lk, w, err, false);
	} else {
		out_push(lk, type, err == -ENOMEM ? WIRE_F_LK_NOMEM : 0, who.node, off, who.tag,
			 NULL);
	}
}

/* Serve a request at this home. 0, or -EALREADY (a duplicate request: a peer's bug). */
static int home_request(struct lockd *lk, uint64_t off, struct lk_who who, bool try)
{
	bool odead;
	int r = lk_request(lk->home, off, who, try, &odead);

	switch (r) {
	case LK_GRANTED:
		lk_grant_cb(lk, off, who, odead);
		return 0;
	case LK_QUEUED:
		return 0;
	case LK_BUSY:
		refuse(lk, off, who, -EBUSY, WIRE_LOCK_BUSY);
		return 0;
	case -ENOMEM:
		ulog(UDSM_LOG_ERR, LOG_PREFIX "out of memory for the lock at offset %llu",
		     (unsigned long long)off);
		refuse(lk, off, who, -ENOMEM, WIRE_LOCK_NACK);
		return 0;
	default:
		return r;
	}
}

/* ------------------------------------------------------------------------------------------
 * Messages from peers (service thread).
 */

static int proto(struct lockd *lk, unsigned src, const struct wire_msg *m, const char *what)
{
	snprintf(lk->why, sizeof(lk->why), "%s offset %llu tag %llu from node %u: %s",
		 wire_type_name(m->type), (unsigned long long)m->page,
		 (unsigned long long)m->arg, src, what);
	return UDSM_EPROTO;
}

static void stash_keep(struct lockd *lk, unsigned src, const struct wire_msg *m)
{
	struct lk_in *x = malloc(sizeof(*x));

	if (!x) {
		lost(lk, m->type);
		return;
	}
	x->next = NULL;
	x->src = src;
	x->m = *m;
	x->m.payload = NULL;
	*lk->stash_tail = x;
	lk->stash_tail = &x->next;
	set_work(lk, true);
}

/* A message for the home of a lock: LOCK_REQ, LOCK_REL, LOCK_ADOPT. */
static int recv_home(struct lockd *lk, unsigned src, const struct wire_msg *m)
{
	struct eng *e = lk->d->eng;
	unsigned h = home_of(lk, m->page);
	struct lk_who who = { .node = src, .tag = m->arg };
	int r;

	if (m->type == WIRE_LOCK_ADOPT) {
		bool holder = m->flags & WIRE_F_LK_HOLDER, dead = m->flags & WIRE_F_LK_DEAD;

		if (h != src || !eng_in_transition(e, src))
			return proto(lk, src, m, "no hand-over of this lock to us is in progress");
		who.node = WIRE_LK_NODE(m->arg);
		who.tag = WIRE_LK_TAG(m->arg);
		if (who.node != LK_NODE_NONE && (who.node >= lk->d->nodes || who.node == src))
			return proto(lk, src, m, "entry names an invalid node");
		if (who.node == LK_NODE_NONE && (!holder || !dead))
			return proto(lk, src, m, "entry names no node");
		if (who.node != LK_NODE_NONE && !eng_alive(e, who.node)) {
			/* Gone since the leaver wrote the entry: a holder's lock is free now,
			 * marked (it may have died in its critical section); a waiter is out. */
			if (!holder)
				return 0;
			who.node = LK_NODE_NONE;
			dead = true;
		}
		r = lk_adopt(lk->home, m->page, who, holder, dead);
		if (r == -ENOMEM) {
			lost(lk, m->type);
			return 0;
		}
		return r ? proto(lk, src, m, "entry does not fit the locks adopted so far") : 0;
	}
	if (h != lk->d->self) {
		if (eng_in_transition(e, h)) {
			stash_keep(lk, src, m); /* we take over from @h: after its BYE */
			return 0;
		}
		/*
		 * The home died (the sender knows a successor whose hand-over never reached
		 * us), or the page was re-homed (udsm_coalloc/udsm_cofree) while the sender's
		 * request was on its way, a misuse of the lock the sender hears of as
		 * UDSM_EPEER rather than a protocol error.
		 */
		if (eng_alive(e, h))
			log_warn("node %u: %s from node %u for the lock at offset %llu, homed at "
				 "node %u (re-homed while in use?)", d_self(lk),
				 wire_type_name(m->type), src, (unsigned long long)m->page, h);
		if (m->type == WIRE_LOCK_REQ)
			out_push(lk, WIRE_LOCK_NACK, 0, src, m->page, m->arg, NULL);
		return 0;
	}
	if (m->type == WIRE_LOCK_REQ) {
		if (home_request(lk, m->page, who, m->flags & WIRE_F_LK_TRY))
			return proto(lk, src, m, "the node holds or waits for this lock already");
		return 0;
	}
	if (lk_release(lk->home, m->page, who, m->flags & WIRE_F_LK_DEAD)) {
		struct lk_view v;

		lk_get(lk->home, m->page, &v);
		if (v.held)
			return proto(lk, src, m, "the lock is held by another");
		/* A grant the old home made before its range was re-homed, given back. */
		log_warn("node %u: release of the free lock at offset %llu by node %u (re-homed "
			 "while in use?)", d_self(lk), (unsigned long long)m->page, src);
	}
	return 0;
}

/* An answer to one of our requests: LOCK_GRANT, LOCK_BUSY, LOCK_NACK. */
static int recv_answer(struct lockd *lk, unsigned src, const struct wire_msg *m)
{
	struct lk_wait *w = wait_find(lk, m->arg);

	if (!w && m->arg <= lk->next_tag) {
		/*
		 * A request of ours that ended here already: given up by udsm_close(), or
		 * failed when its lock was re-homed under it. A grant goes straight back (tags
		 * are never reused, so nobody else can take it for theirs).
		 */
		if (m->type == WIRE_LOCK_GRANT)
			out_push(lk, WIRE_LOCK_REL, 0, TO_HOME, m->page, m->arg, NULL);
		return 0;
	}
	if (!w || w->off != m->page || w->queued_out)
		return proto(lk, src, m, "no such request of ours is pending");
	switch (m->type) {
	case WIRE_LOCK_GRANT:
		wait_end(lk, w, (m->flags & WIRE_F_LK_DEAD) ? UDSM_EPEER : 0, true);
		return 0;
	case WIRE_LOCK_BUSY:
		if (!w->try)
			return proto(lk, src, m, "a busy answer to a request that waits");
		wait_end(lk, w, -EBUSY, false);
		return 0;
	default: /* LOCK_NACK: the home is out of memory, or the lock's state was lost */
		wait_end(lk, w, (m->flags & WIRE_F_LK_NOMEM) ? -ENOMEM : UDSM_EPEER, false);
		return 0;
	}
}

int lockd_recv(struct udsm *d, unsigned src, const struct wire_msg *m)
{
	struct lockd *lk = d->lockd;
	static const uint8_t allowed[] = {
		[WIRE_LOCK_REQ] = WIRE_F_LK_TRY,
		[WIRE_LOCK_GRANT] = WIRE_F_LK_DEAD,
		[WIRE_LOCK_BUSY] = 0,
		[WIRE_LOCK_REL] = WIRE_F_LK_DEAD,
		[WIRE_LOCK_NACK] = WIRE_F_LK_NOMEM,
		[WIRE_LOCK_ADOPT] = WIRE_F_LK_HOLDER | WIRE_F_LK_DEAD,
	};
	int err;

	if (!lockd_type(m->type) || src >= d->nodes || src == d->self || m->src != src)
		return proto(lk, src, m, "not a lock message from this peer");
	if (m->flags & ~allowed[m->type])
		return proto(lk, src, m, "unexpected flags");
	if (m->page >= d->size)
		return proto(lk, src, m, "offset outside the region");
	if (m->type != WIRE_LOCK_ADOPT && (!m->arg || m->arg > LK_TAG_MAX))
		return proto(lk, src, m, "invalid tag");
	pthread_mutex_lock(&lk->mu);
	if (lk->fenced)
		err = 0;
	else if (m->type == WIRE_LOCK_REQ || m->type == WIRE_LOCK_REL ||
		 m->type == WIRE_LOCK_ADOPT)
		err = recv_home(lk, src, m);
	else
		err = recv_answer(lk, src, m);
	pthread_mutex_unlock(&lk->mu);
	return err;
}

/* ------------------------------------------------------------------------------------------
 * The service thread's turn: outbox, kept-back messages, waits on dead homes.
 */

/* Send or handle one outbox entry; false if it must stay (its home hands over). */
static bool out_one(struct lockd *lk, struct lk_out *o)
{
	struct udsm *d = lk->d;
	struct eng *e = d->eng;
	struct lk_who me = { .node = d->self, .tag = o->tag };
	unsigned h;

	if (o->dst != TO_HOME) {
		if (eng_alive(e, o->dst))
			send_now(lk, o->dst, o->type, o->flags, o->off, o->tag);
		return true; /* a dead requester: its entries are gone from our table */
	}
	h = home_of(lk, o->off);
	if (eng_in_transition(e, h))
		return false;
	if (o->type == WIRE_LOCK_REQ) {
		struct lk_wait *w = o->w;

		w->queued_out = false;
		if (!eng_alive(e, h)) {
			wait_end(lk, w, UDSM_EPEER, false);
		} else if (h == d->self) {
			/* The home moved here (we took over a leaver's locks) */
			if (home_request(lk, o->off, me, w->try))
				wait_end(lk, w, -EDEADLK, false);
		} else {
			send_now(lk, h, WIRE_LOCK_REQ, w->try ? WIRE_F_LK_TRY : 0, o->off, o->tag);
		}
		return true;
	}
	/* LOCK_REL */
	if (!eng_alive(e, h))
		return true; /* the lock's state died with its home */
	if (h == d->self) {
		if (lk_release(lk->home, o->off, me, o->flags & WIRE_F_LK_DEAD))
			log_warn("release of the lock at offset %llu, which this node does not "
				 "hold", (unsigned long long)o->off);
	} else {
		send_now(lk, h, WIRE_LOCK_REL, o->flags, o->off, o->tag);
	}
	return true;
}

static void pump_locked(struct lockd *lk)
{
	struct udsm *d = lk->d;
	struct eng *e = d->eng;
	struct lk_in *keep = NULL, **keep_tail = &keep;
	struct lk_in *x;

	/* Kept-back messages whose home settled, in their order. */
	while ((x = lk->stash)) {
		lk->stash = x->next;
		if (eng_in_transition(e, home_of(lk, x->m.page))) {
			x->next = NULL;
			*keep_tail = x;
			keep_tail = &x->next;
			continue;
		}
		if (eng_alive(e, x->src) && recv_home(lk, x->src, &x->m))
			log_warn("dropped a lock message kept for a hand-over: %s", lk->why);
		free(x);
	}
	/* recv_home() may have kept some again: they go after the ones still waiting. */
	lk->stash = keep;
	lk->stash_tail = keep ? keep_tail : &lk->stash;

	/* The outbox, in order. Entries kept back stay in place; handling one may append. */
	for (struct lk_out **pp = &lk->out; *pp;) {
		struct lk_out *o = *pp;

		if (!out_one(lk, o)) {
			pp = &o->next;
			continue;
		}
		/* out_one() may have taken other entries out (wait_end): find @o again. */
		for (pp = &lk->out; *pp && *pp != o; pp = &(*pp)->next)
			;
		if (!*pp)
			break; /* cannot happen: only LOCK_REQ entries of ended waits leave */
		*pp = o->next;
		if (lk->out_tail == &o->next)
			lk->out_tail = pp;
		free(o);
	}

	/* Requests sent to a home that is gone for good. */
	for (struct lk_wait *w = lk->waits, *next; w; w = next) {
		next = w->next;
		if (!w->queued_out && !eng_alive(e, home_of(lk, w->off)))
			wait_end(lk, w, UDSM_EPEER, false);
	}
	set_work(lk, lk->out || lk->stash || lk->waits || lk->lost);
}

int lockd_pump(struct udsm *d)
{
	struct lockd *lk = d->lockd;
	bool was_lost;

	if (!__atomic_load_n(&lk->work, __ATOMIC_RELAXED))
		return 0;
	pthread_mutex_lock(&lk->mu);
	pump_locked(lk);
	was_lost = lk->lost && !lk->fenced;
	if (was_lost)
		ulog(UDSM_LOG_ERR, LOG_PREFIX "node %u: %s", d->self, lk->lost_why);
	lk->lost = false;
	pthread_mutex_unlock(&lk->mu);
	return was_lost ? -ENOMEM : 0;
}

/* Whether the home of the lock at @off is alive (lk_prune()). */
static bool home_alive(void *arg, uint64_t off)
{
	struct lockd *lk = arg;

	return eng_alive(lk->d->eng, home_of(lk, off));
}

bool lockd_died(struct udsm *d, unsigned n)
{
	return n < 64 && (__atomic_load_n(&d->lockd->dead, __ATOMIC_RELAXED) & BIT(n));
}

void lockd_peer_gone(struct udsm *d, unsigned n, bool died)
{
	struct lockd *lk = d->lockd;
	size_t n_lost;

	pthread_mutex_lock(&lk->mu);
	if (died)
		__atomic_fetch_or(&lk->dead, BIT(n), __ATOMIC_RELAXED);
	lk_node_gone(lk->home, n, died);
	/* A leaver that died before its BYE: the entries it handed us are void (their home is
	 * it, dead, for everybody; the waiters it had were failed by their own nodes). */
	if (died && (n_lost = lk_prune(lk->home, home_alive, lk)))
		log_warn("node %u: forgot %zu locks node %u handed over before it died", d->self,
			 n_lost, n);
	set_work(lk, true);
	pthread_mutex_unlock(&lk->mu);
}

struct range {
	struct lockd *lk;
	uint64_t lo, hi; /* byte offsets */
};

static bool outside(void *arg, uint64_t off)
{
	const struct range *r = arg;

	return off < r->lo || off >= r->hi;
}

void lockd_rehomed(struct udsm *d, uint64_t first, uint64_t count)
{
	struct lockd *lk = d->lockd;
	struct range r = { .lk = lk, .lo = first * d->ps, .hi = (first + count) * d->ps };
	size_t n = 0;

	pthread_mutex_lock(&lk->mu);
	n += lk_prune(lk->home, outside, &r);
	for (struct lk_wait *w = lk->waits, *next; w; w = next) {
		next = w->next;
		if (!outside(&r, w->off)) {
			wait_end(lk, w, UDSM_EPEER, false);
			n++;
		}
	}
	for (struct lk_held *h = lk->held; h; h = h->next)
		if (!outside(&r, h->off) && !h->broken) {
			h->broken = true;
			n++;
		}
	pthread_mutex_unlock(&lk->mu);
	if (n)
		log_warn("node %u: %zu locks in pages %llu..%llu were in use while udsm_coalloc() "
			 "or udsm_cofree() re-homed them: forgotten (UDSM_EPEER)", d->self, n,
			 (unsigned long long)first, (unsigned long long)(first + count - 1));
}

struct adopt_arg {
	struct lockd *lk;
	unsigned succ;
};

static void emit_adopt(void *arg, uint64_t off, struct lk_who who, bool holder, bool odead)
{
	struct adopt_arg *a = arg;
	uint8_t flags = (holder ? WIRE_F_LK_HOLDER : 0) | (odead ? WIRE_F_LK_DEAD : 0);

	send_now(a->lk, a->succ, WIRE_LOCK_ADOPT, flags, off, WIRE_LK_WHO(who.node, who.tag));
}

void lockd_handover(void *ctx, unsigned succ)
{
	struct udsm *d = ctx;
	struct lockd *lk = d->lockd;
	struct adopt_arg a = { .lk = lk, .succ = succ };
	size_t n;

	pthread_mutex_lock(&lk->mu);
	/* What we decided as a home goes out before the table moves (links are FIFO). */
	pump_locked(lk);
	n = lk_export(lk->home, emit_adopt, &a);
	lk_clear(lk->home);
	pthread_mutex_unlock(&lk->mu);
	if (n)
		log_debug("node %u: handed %zu locks to node %u", d->self, n, succ);
}

/* Every pending wait ends with @err; the outbox and the kept-back messages go. */
static void fail_all(struct lockd *lk, int err)
{
	while (lk->waits)
		wait_end(lk, lk->waits, err, false);
	out_clear(lk);
	set_work(lk, false);
}

void lockd_fence(struct udsm *d)
{
	struct lockd *lk = d->lockd;

	pthread_mutex_lock(&lk->mu);
	lk->fenced = true;
	lk_clear(lk->home);
	fail_all(lk, UDSM_EPEER);
	for (struct lk_held *h = lk->held; h; h = h->next)
		h->broken = true;
	pthread_mutex_unlock(&lk->mu);
}

void lockd_stopped(struct udsm *d)
{
	struct lockd *lk = d->lockd;

	pthread_mutex_lock(&lk->mu);
	__atomic_store_n(&lk->closing, true, __ATOMIC_SEQ_CST); /* read by lock_common's exit */
	fail_all(lk, UDSM_ECLOSED);
	pthread_mutex_unlock(&lk->mu);
}

void lockd_close(struct udsm *d)
{
	struct lockd *lk = d->lockd;
	bool kick = false;

	pthread_mutex_lock(&lk->mu);
	__atomic_store_n(&lk->closing, true, __ATOMIC_SEQ_CST); /* against lock_common's exit */
	/* Waits first: a lock given up below must not go to one of our own threads. */
	while (lk->waits) {
		struct lk_wait *w = lk->waits;

		if (home_of(lk, w->off) == d->self)
			lk_cancel(lk->home, w->off, (struct lk_who){ d->self, w->tag });
		/* (A request already at another home is dropped there with our BYE; a grant
		 * that crosses it comes straight back: recv_answer().) */
		wait_end(lk, w, UDSM_ECLOSED, false);
	}
	while (lk->held) {
		struct lk_held *h = lk->held;

		lk->held = h->next;
		if (!h->broken) {
			log_warn("node %u closes while a thread holds the lock at offset %llu: "
				 "released; its next holder gets UDSM_EPEER", d->self,
				 (unsigned long long)h->off);
			if (home_of(lk, h->off) == d->self) {
				lk_release(lk->home, h->off, (struct lk_who){ d->self, h->tag },
					   true);
			} else {
				out_push(lk, WIRE_LOCK_REL, WIRE_F_LK_DEAD, TO_HOME, h->off, h->tag,
					 NULL);
				kick = true;
			}
		}
		free(h);
	}
	kick |= lk->out != NULL;
	pthread_mutex_unlock(&lk->mu);
	if (kick)
		node_kick(d);
	/*
	 * The waiters failed above leave lock_common() without mu, and their decrement of
	 * inside is the last they do to @lk (see there): wait for it, in rounds of at most 1 ms
	 * (a waiter that read closing before it was set does not wake us). No thread comes in
	 * any more: closing is set, under mu.
	 */
	for (uint32_t n; (n = __atomic_load_n(&lk->inside, __ATOMIC_SEQ_CST));)
		futex_wait_ms(&lk->inside, n, 1);
}

/* ------------------------------------------------------------------------------------------
 * The API (application threads).
 */

/* The lock at @addr: its byte offset in @d's region into @off; -EINVAL outside it. */
static int lock_offset(const struct udsm *d, const void *addr, uint64_t *off)
{
	if (!d || (uintptr_t)addr < (uintptr_t)d->base ||
	    (uintptr_t)addr - (uintptr_t)d->base >= d->size)
		return -EINVAL;
	*off = (uint64_t)((uintptr_t)addr - (uintptr_t)d->base);
	return 0;
}

static int lock_common(struct udsm *d, void *addr, bool try)
{
	struct lockd *lk;
	uint64_t off, t0;
	struct lk_wait w;
	struct lk_held *h;
	unsigned home;
	bool kick = false;
	int err;

	if (lock_offset(d, addr, &off))
		return -EINVAL;
	lk = d->lockd;
	t0 = net_now_ns();
	h = malloc(sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->thr = pthread_self();
	h->broken = false;
	memset(&w, 0, sizeof(w));
	w.off = off;
	w.try = try;
	w.h = h;

	pthread_mutex_lock(&lk->mu);
	if (lk->closing || lk->fenced) {
		err = lk->closing ? UDSM_ECLOSED : UDSM_EPEER;
		goto out;
	}
	struct lk_held *cur = held_find(lk, off);
	if (cur && pthread_equal(cur->thr, w.h->thr)) {
		err = -EDEADLK;
		goto out;
	}
	if (cur && try) {
		err = -EBUSY; /* another thread of ours holds it: no need to ask */
		goto out;
	}
	home = home_of(lk, off);
	if (__atomic_load_n(&lk->dead, __ATOMIC_RELAXED) & BIT(home)) {
		err = UDSM_EPEER;
		goto out;
	}
	w.tag = ++lk->next_tag;
	w.next = lk->waits;
	lk->waits = &w;
	if (home == d->self) {
		if (home_request(lk, off, (struct lk_who){ d->self, w.tag }, try)) {
			wait_end(lk, &w, -EDEADLK, false); /* cannot happen: a fresh tag */
		}
	} else if (out_try(lk, WIRE_LOCK_REQ, try ? WIRE_F_LK_TRY : 0, TO_HOME, off, w.tag,
			   &w)) {
		kick = true;
	} else {
		wait_end(lk, &w, -ENOMEM, false); /* nothing was sent: nothing is lost */
	}
	if (w.done) {
		if (w.granted)
			stats_lock(d->stats, net_now_ns() - t0);
		pthread_mutex_unlock(&lk->mu);
	} else {
		/*
		 * Sleep on w.done outside mu, and leave without taking mu again: the thread
		 * that answers (wait_end(), under mu) wrote everything before done, and a
		 * wake-up that had to wait for its unlock would be two system calls more.
		 */
		__atomic_add_fetch(&lk->inside, 1, __ATOMIC_SEQ_CST);
		if (kick) {
			/* The eventfd write outside the mutex would race with close; it is short. */
			node_kick(d);
		}
		pthread_mutex_unlock(&lk->mu);
		while (!__atomic_load_n(&w.done, __ATOMIC_ACQUIRE))
			futex_wait(&w.done, 0);
		if (w.granted)
			stats_lock(d->stats, net_now_ns() - t0);
		/*
		 * The decrement is the last access to @d or @lk: lockd_close() waits for
		 * inside == 0, then udsm_close() frees them. So closing is read before it, and
		 * the wake after it only names the address. A close that begins between the two
		 * is not woken: it finds inside == 0 within its 1 ms round.
		 */
		bool closing = __atomic_load_n(&lk->closing, __ATOMIC_SEQ_CST);

		if (!__atomic_sub_fetch(&lk->inside, 1, __ATOMIC_SEQ_CST) && closing)
			futex_wake_all(&lk->inside);
	}
	free(w.h); /* NULL once linked into the held list */
	return w.result;
out:
	pthread_mutex_unlock(&lk->mu);
	free(w.h);
	return err;
}

UDSM_EXPORT int udsm_lock(struct udsm *d, void *addr)
{
	return lock_common(d, addr, false);
}

UDSM_EXPORT int udsm_trylock(struct udsm *d, void *addr)
{
	return lock_common(d, addr, true);
}

UDSM_EXPORT int udsm_unlock(struct udsm *d, void *addr)
{
	struct lockd *lk;
	struct lk_held *h;
	uint64_t off;
	unsigned home;
	int err = 0;
	bool kick = false;

	if (lock_offset(d, addr, &off))
		return -EINVAL;
	lk = d->lockd;
	pthread_mutex_lock(&lk->mu);
	h = held_find(lk, off);
	if (!h || !pthread_equal(h->thr, pthread_self())) {
		pthread_mutex_unlock(&lk->mu);
		return -EPERM;
	}
	held_unlink(lk, h);
	home = home_of(lk, off);
	if (h->broken || (__atomic_load_n(&lk->dead, __ATOMIC_RELAXED) & BIT(home))) {
		err = UDSM_EPEER; /* the lock's state died with its home (or this node's fence) */
	} else if (home == d->self) {
		if (lk_release(lk->home, off, (struct lk_who){ d->self, h->tag }, false))
			err = UDSM_EPEER;
	} else {
		out_push(lk, WIRE_LOCK_REL, 0, TO_HOME, off, h->tag, NULL);
		kick = true;
	}
	/* A grant this release made to a thread of another node waits in the outbox. */
	kick |= lk->out != NULL;
	pthread_mutex_unlock(&lk->mu);
	free(h);
	if (kick)
		node_kick(d);
	return err;
}
