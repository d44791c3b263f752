/* SPDX-License-Identifier: MIT */
/*
 * test_lock_sim.c - deterministic simulation of the lock protocol (docs/PROTOCOL.md, "Locks")
 * across K nodes with several threads each, driven by one seeded PRNG.
 *
 * Each node runs the real home table (src/core/lock.c) and a requester side that follows
 * src/locks.c: a thread's request is a LOCK_REQ to the lock's home (or a direct call when the
 * home is the node itself), answers wake it, messages for a home in the middle of a leave stay
 * in the node's outbox until the leaver's BYE and then go to the successor, and messages that
 * reach a would-be successor early are kept back until that BYE. Links are FIFO per ordered
 * pair; every step delivers one message on a random link, or starts a thread's lock, trylock
 * or unlock, or (in some schedules) kills a node - its links vanish, every survivor learns it
 * at once - or makes a node close and leave (udsm_close(): its waiting requests are cancelled,
 * the locks its threads hold are given up with LOCK_REL(DEAD), a grant that crosses the close
 * goes straight back; then LEAVE to all, LEAVE_ACK back, its lock table to the successor with
 * LOCK_ADOPT, BYE). Deaths and leaves do not overlap.
 *
 * Checked at every step: at most one thread holds a lock; a grant goes only to a live node
 * (or to one that left whose BYE its home has not seen: that grant is lost and the BYE frees
 * the lock);
 * grants follow the order in which the lock's home(s) queued the requests (a global FIFO per
 * lock, carried through hand-overs, from which a dead node's requests vanish); a grant says
 * "previous holder died" exactly when it did; nothing reaches a node that left. At the end,
 * with new operations stopped, everything drains: every request ended (granted, EBUSY or
 * EPEER), and once the holders release, every table holds only "died" marks.
 *
 * Usage: test_lock_sim [--seeds N] [--seed S] [-v]
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/lock.h"
#include "core/wire.h"

#define MAXK 6
#define MAXT 3
#define MAXL 4
#define NONE 0xffu
#define TO_HOME 0xffffu
#define QMAX 4096

enum { LEAVE = 100, LEAVE_ACK, BYE };

struct msg {
	unsigned type, flags, src;
	uint64_t off, arg;
};

struct link {
	struct msg q[QMAX];
	size_t head, len;
};

enum { T_IDLE, T_WAIT, T_HOLD };

struct thread {
	int st;
	unsigned l;
	uint64_t tag;
	bool try, sent;
};

struct out {
	unsigned type, flags, dst;
	uint64_t off, tag;
};

struct node {
	bool alive, departed;
	int lv; /* 0, 1 LEAVE sent (awaiting acks), 2 done */
	bool closing; /* udsm_close(): waits cancelled, held locks given up, then the leave */
	uint64_t acks, leaving, view; /* view: nodes it counts alive */
	uint8_t fwd[MAXK];
	struct lk_table *home;
	struct thread th[MAXT];
	struct out out[QMAX];
	size_t nout;
	struct msg stash[QMAX];
	unsigned stash_src[QMAX];
	size_t nstash;
	uint64_t next_tag;
};

struct model {
	struct lk_who q[MAXK * MAXT];
	size_t nq;
	bool marked; /* the holder died: the next grant must say so */
	bool lost;   /* its home died: no grant may come any more */
	bool held;
	struct lk_who holder;
};

struct sim {
	uint64_t rng;
	unsigned k, t, l;
	struct node n[MAXK];
	struct link links[MAXK][MAXK];
	struct model m[MAXL];
	uint64_t seed;
	bool verbose, kills, leaves;
	unsigned cur; /* the node whose table is running (grant callback) */
	uint64_t grants, busy, epeer, steps;
};

static struct sim S;

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "test_lock_sim: seed %llu step %llu: ", (unsigned long long)S.seed,
		(unsigned long long)S.steps);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n  replay: test_lock_sim --seed %llu -v\n", (unsigned long long)S.seed);
	exit(1);
}

#define CHECK(c, ...)                                                                          \
	do {                                                                                   \
		if (!(c))                                                                      \
			die(__VA_ARGS__);                                                      \
	} while (0)

static uint64_t rnd(void)
{
	uint64_t z = (S.rng += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static unsigned rn(unsigned n)
{
	return (unsigned)(rnd() % n);
}

#define BIT(x) ((uint64_t)1 << (x))

static void vlog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void vlog(const char *fmt, ...)
{
	va_list ap;

	if (!S.verbose)
		return;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* ------------------------------------------------------------------------------------------
 * A node's view.
 */

static unsigned home(const struct node *n, unsigned l)
{
	unsigned h = l % S.k;

	for (unsigned i = 0; i < S.k && n->fwd[h] != NONE; i++)
		h = n->fwd[h];
	return h;
}

static unsigned self_of(const struct node *n)
{
	return (unsigned)(n - S.n);
}

static bool in_transition(const struct node *n, unsigned h)
{
	return h != self_of(n) && (n->leaving & BIT(h)) && (n->view & BIT(h));
}

static void send(unsigned from, unsigned to, unsigned type, unsigned flags, uint64_t off,
		 uint64_t arg)
{
	struct link *lk = &S.links[from][to];

	if (S.n[to].departed) {
		/* Its link is closed: an answer that crossed its close is lost (its home
		 * learns the node left with its BYE), anything else is a bug. */
		CHECK(type == WIRE_LOCK_GRANT || type == WIRE_LOCK_BUSY || type == WIRE_LOCK_NACK,
		      "message type %u from %u to node %u, which left", type, from, to);
		return;
	}
	if (!S.n[to].alive)
		return; /* a dead node's links are gone */
	CHECK(lk->len < QMAX, "link %u->%u overflows", from, to);
	lk->q[(lk->head + lk->len++) % QMAX] =
		(struct msg){ .type = type, .flags = flags, .src = from, .off = off, .arg = arg };
}

static void out_push(struct node *n, unsigned type, unsigned flags, unsigned dst, uint64_t off,
		     uint64_t tag)
{
	CHECK(n->nout < QMAX, "outbox overflows");
	n->out[n->nout++] = (struct out){ type, flags, dst, off, tag };
}

static struct thread *by_tag(struct node *n, uint64_t tag)
{
	for (unsigned t = 0; t < S.t; t++)
		if (n->th[t].st == T_WAIT && n->th[t].tag == tag)
			return &n->th[t];
	return NULL;
}

/* The model of lock @l: a grant to @who happened (@queued: from the queue). */
static void model_grant(const struct node *h, unsigned l, struct lk_who who, bool odead,
			bool queued)
{
	struct model *m = &S.m[l];

	CHECK(!m->lost, "lock %u granted after its home died", l);
	/* A node that left may still get one: its home has not seen its BYE yet (the grant
	 * crossed its close, and is lost with its links; the BYE frees the lock). */
	CHECK(S.n[who.node].alive && (h->view & BIT(who.node)),
	      "lock %u granted to dead node %u", l, who.node);
	CHECK(!m->held, "lock %u granted to %u/%llu while %u/%llu holds it", l, who.node,
	      (unsigned long long)who.tag, m->holder.node, (unsigned long long)m->holder.tag);
	CHECK(odead == m->marked, "lock %u granted with odead %d, want %d", l, odead, m->marked);
	if (queued) {
		CHECK(m->nq && m->q[0].node == who.node && m->q[0].tag == who.tag,
		      "lock %u granted to %u/%llu out of FIFO order (head %u/%llu)", l, who.node,
		      (unsigned long long)who.tag, m->nq ? m->q[0].node : 99,
		      (unsigned long long)(m->nq ? m->q[0].tag : 0));
		memmove(m->q, m->q + 1, --m->nq * sizeof(m->q[0]));
	} else {
		CHECK(!m->nq, "lock %u granted at once while %zu wait", l, m->nq);
	}
	m->held = true;
	m->holder = who;
	m->marked = false;
	S.grants++;
}

/* A local thread's request is answered. */
static void answer(struct node *n, uint64_t tag, int res)
{
	struct thread *t = by_tag(n, tag);

	CHECK(t, "answer %d for tag %llu at node %u, which has no such request", res,
	      (unsigned long long)tag, self_of(n));
	if (res == 0 || res == 1) {
		t->st = T_HOLD;
		if (res == 1)
			S.epeer++;
	} else {
		t->st = T_IDLE;
		if (res == -EBUSY)
			S.busy++;
		else
			S.epeer++;
	}
}

static void on_grant(void *ctx, uint64_t off, struct lk_who who, bool odead)
{
	struct node *n = ctx;

	model_grant(n, (unsigned)off, who, odead, true);
	if (who.node == self_of(n))
		answer(n, who.tag, odead ? 1 : 0);
	else
		out_push(n, WIRE_LOCK_GRANT, odead ? WIRE_F_LK_DEAD : 0, who.node, off, who.tag);
}

static const struct lk_ops ops = { .grant = on_grant };

static void home_request(struct node *n, uint64_t off, struct lk_who who, bool try)
{
	bool odead;
	int r = lk_request(n->home, off, who, try, &odead);

	CHECK(r >= 0, "lk_request: %d", r);
	if (r == LK_QUEUED) {
		struct model *m = &S.m[off];

		m->q[m->nq++] = who;
		return;
	}
	if (r == LK_GRANTED) {
		model_grant(n, (unsigned)off, who, odead, false);
		if (who.node == self_of(n))
			answer(n, who.tag, odead ? 1 : 0);
		else
			out_push(n, WIRE_LOCK_GRANT, odead ? WIRE_F_LK_DEAD : 0, who.node, off,
				 who.tag);
		return;
	}
	if (who.node == self_of(n))
		answer(n, who.tag, -EBUSY);
	else
		out_push(n, WIRE_LOCK_BUSY, 0, who.node, off, who.tag);
}

static void home_release(struct node *n, uint64_t off, struct lk_who who, bool dead)
{
	struct model *m = &S.m[off];

	CHECK(m->held && m->holder.node == who.node && m->holder.tag == who.tag,
	      "release of lock %llu by a non-holder", (unsigned long long)off);
	m->held = false;
	m->marked |= dead; /* given up unfinished: the next holder is told */
	CHECK(lk_release(n->home, off, who, dead) == 0, "lk_release refused");
}

/* ------------------------------------------------------------------------------------------
 * Messages.
 */

static void recv_home(struct node *n, unsigned src, const struct msg *m, bool replay);
static void pump_out(struct node *n);

struct xfer {
	unsigned me, succ;
};

static void emit(void *arg, uint64_t off, struct lk_who who, bool holder, bool odead)
{
	struct xfer *c = arg;

	send(c->me, c->succ, WIRE_LOCK_ADOPT,
	     (holder ? WIRE_F_LK_HOLDER : 0) | (odead ? WIRE_F_LK_DEAD : 0), off,
	     WIRE_LK_WHO(who.node, who.tag));
}

static void handover(struct node *n)
{
	unsigned me = self_of(n), succ = NONE;

	for (unsigned i = 1; i < S.k; i++) {
		unsigned c = (me + i) % S.k;

		if ((n->view & BIT(c)) && !(n->leaving & BIT(c))) {
			succ = c;
			break;
		}
	}
	CHECK(succ != NONE, "no successor");
	/* What it decided (answers, its own releases) goes first, then the table. */
	pump_out(n);
	CHECK(n->nout == 0, "a leaver keeps lock messages back");
	struct xfer c = { me, succ };

	lk_export(n->home, emit, &c);
	lk_clear(n->home);
	for (unsigned x = 0; x < S.k; x++)
		if (x != me && (n->view & BIT(x)))
			send(me, x, BYE, 0, 0, succ);
	n->lv = 2;
	n->departed = true;
	vlog("node %u left, successor %u", me, succ);
}

static void recv_home(struct node *n, unsigned src, const struct msg *m, bool replay)
{
	unsigned me = self_of(n), h = home(n, (unsigned)m->off);
	struct lk_who who = { src, m->arg };

	if (m->type == WIRE_LOCK_ADOPT) {
		bool holder = m->flags & WIRE_F_LK_HOLDER, dead = m->flags & WIRE_F_LK_DEAD;

		CHECK(h == src && in_transition(n, src), "ADOPT without a hand-over");
		who.node = WIRE_LK_NODE(m->arg);
		who.tag = WIRE_LK_TAG(m->arg);
		if (who.node != NONE && !(n->view & BIT(who.node))) {
			if (!holder)
				return;
			who.node = NONE;
			dead = true;
		}
		CHECK(lk_adopt(n->home, m->off, who, holder, dead) == 0, "lk_adopt refused");
		return;
	}
	if (h != me) {
		if (in_transition(n, h)) {
			CHECK(n->nstash < QMAX, "stash overflows");
			n->stash[n->nstash] = *m;
			n->stash_src[n->nstash++] = src;
			return;
		}
		if (!(n->view & BIT(h))) {
			if (m->type == WIRE_LOCK_REQ)
				out_push(n, WIRE_LOCK_NACK, 0, src, m->off, m->arg);
			return;
		}
		die("node %u got %u for lock %llu homed at %u (replay %d)", me, m->type,
		    (unsigned long long)m->off, h, replay);
	}
	if (m->type == WIRE_LOCK_REQ)
		home_request(n, m->off, who, m->flags & WIRE_F_LK_TRY);
	else
		home_release(n, m->off, who, m->flags & WIRE_F_LK_DEAD);
}

static void recv(struct node *n, const struct msg *m)
{
	unsigned me = self_of(n);
	struct thread *t;

	if (n->departed) {
		/* Its links are closed: only an answer that crossed its close may be lost so. */
		CHECK(m->type == WIRE_LOCK_GRANT || m->type == WIRE_LOCK_BUSY ||
		      m->type == WIRE_LOCK_NACK, "a message (type %u) reached node %u after it left",
		      m->type, me);
		return;
	}
	switch (m->type) {
	case LEAVE:
		n->leaving |= BIT(m->src);
		send(me, m->src, LEAVE_ACK, 0, 0, 0);
		return;
	case LEAVE_ACK:
		n->acks |= BIT(m->src);
		return;
	case BYE:
		n->fwd[m->src] = (uint8_t)m->arg;
		n->leaving &= ~BIT(m->src);
		n->view &= ~BIT(m->src);
		/* The model of the locks homed here: what the leaver still held (a grant that
		 * crossed its close) or waited for (a request it cancelled) goes, unmarked. */
		for (unsigned l = 0; l < S.l; l++) {
			struct model *md = &S.m[l];
			size_t j = 0;

			if (home(n, l) != me)
				continue;
			if (md->held && md->holder.node == m->src)
				md->held = false;
			for (size_t i = 0; i < md->nq; i++)
				if (md->q[i].node != m->src)
					md->q[j++] = md->q[i];
			md->nq = j;
		}
		lk_node_gone(n->home, m->src, false);
		return;
	case WIRE_LOCK_REQ:
	case WIRE_LOCK_REL:
	case WIRE_LOCK_ADOPT:
		recv_home(n, m->src, m, false);
		return;
	}
	t = by_tag(n, m->arg);
	if (!t && n->closing) {
		/* A wait cancelled by the close: a grant goes straight back. */
		if (m->type == WIRE_LOCK_GRANT)
			out_push(n, WIRE_LOCK_REL, 0, TO_HOME, m->off, m->arg);
		return;
	}
	CHECK(t && t->sent && t->l == m->off, "answer %u to no pending request", m->type);
	if (m->type == WIRE_LOCK_GRANT)
		answer(n, m->arg, (m->flags & WIRE_F_LK_DEAD) ? 1 : 0);
	else if (m->type == WIRE_LOCK_BUSY) {
		CHECK(t->try, "BUSY to a waiting request");
		answer(n, m->arg, -EBUSY);
	} else
		answer(n, m->arg, -1);
}

/* The service thread's turn: kept-back messages, the outbox, waits on dead homes. */
static void pump(struct node *n)
{
	unsigned me = self_of(n);

	if (!n->alive || n->departed)
		return;
	size_t ns = n->nstash;
	struct msg st[QMAX];
	unsigned ss[QMAX];

	memcpy(st, n->stash, ns * sizeof(st[0]));
	memcpy(ss, n->stash_src, ns * sizeof(ss[0]));
	n->nstash = 0;
	for (size_t i = 0; i < ns; i++) {
		if (in_transition(n, home(n, (unsigned)st[i].off))) {
			n->stash[n->nstash] = st[i];
			n->stash_src[n->nstash++] = ss[i];
		} else if (n->view & BIT(ss[i])) {
			recv_home(n, ss[i], &st[i], true);
		}
	}
	pump_out(n);
	for (unsigned t = 0; t < S.t; t++) {
		struct thread *th = &n->th[t];

		if (th->st == T_WAIT && th->sent && !(n->view & BIT(home(n, th->l))))
			answer(n, th->tag, -1);
	}
	/* A leave moves on once every peer acknowledged it. */
	if (n->lv == 1 && !(n->view & ~BIT(me) & ~n->acks))
		handover(n);
}

/* The outbox in order; handling an entry may append more. */
static void pump_out(struct node *n)
{
	unsigned me = self_of(n);
	size_t keep = 0;

	for (size_t i = 0; i < n->nout; i++) {
		struct out o = n->out[i];
		unsigned h;

		if (o.dst != TO_HOME) {
			if (n->view & BIT(o.dst))
				send(me, o.dst, o.type, o.flags, o.off, o.tag);
			continue;
		}
		h = home(n, (unsigned)o.off);
		if (in_transition(n, h)) {
			n->out[keep++] = o;
			continue;
		}
		if (o.type == WIRE_LOCK_REQ) {
			struct thread *t = by_tag(n, o.tag);

			t->sent = true;
			if (!(n->view & BIT(h)))
				answer(n, o.tag, -1);
			else if (h == me)
				home_request(n, o.off, (struct lk_who){ me, o.tag }, t->try);
			else
				send(me, h, WIRE_LOCK_REQ, t->try ? WIRE_F_LK_TRY : 0, o.off, o.tag);
		} else if (n->view & BIT(h)) {
			if (h == me)
				home_release(n, o.off, (struct lk_who){ me, o.tag },
					     o.flags & WIRE_F_LK_DEAD);
			else
				send(me, h, WIRE_LOCK_REL, o.flags, o.off, o.tag);
		}
	}
	n->nout = keep;
}

/* ------------------------------------------------------------------------------------------
 * Events.
 */

static void thread_op(struct node *n, unsigned ti)
{
	unsigned me = self_of(n);
	struct thread *t = &n->th[ti];

	if (n->lv || t->st == T_WAIT)
		return;
	if (t->st == T_HOLD) {
		unsigned h = home(n, t->l);

		vlog("node %u thread %u unlocks %u", me, ti, t->l);
		t->st = T_IDLE;
		if (!(n->view & BIT(h)))
			return; /* its home died: UDSM_EPEER, nothing to send */
		if (h == me)
			home_release(n, t->l, (struct lk_who){ me, t->tag }, false);
		else
			out_push(n, WIRE_LOCK_REL, 0, TO_HOME, t->l, t->tag);
		return;
	}
	t->l = rn(S.l);
	t->try = rn(4) == 0;
	for (unsigned x = 0; x < S.t && t->try; x++)
		if (n->th[x].st == T_HOLD && n->th[x].l == t->l) {
			S.busy++; /* answered here: another thread of ours holds it */
			return;
		}
	t->tag = ++n->next_tag;
	t->st = T_WAIT;
	t->sent = false;
	vlog("node %u thread %u %s %u (tag %llu)", me, ti, t->try ? "trylocks" : "locks", t->l,
	     (unsigned long long)t->tag);
	unsigned h = home(n, t->l);
	if (h == me) {
		t->sent = true;
		home_request(n, t->l, (struct lk_who){ me, t->tag }, t->try);
	} else {
		out_push(n, WIRE_LOCK_REQ, t->try ? WIRE_F_LK_TRY : 0, TO_HOME, t->l, t->tag);
	}
}

static bool deliver_one(void)
{
	unsigned cand[MAXK * MAXK], nc = 0;

	for (unsigned a = 0; a < S.k; a++)
		for (unsigned b = 0; b < S.k; b++)
			if (S.links[a][b].len)
				cand[nc++] = a * MAXK + b;
	if (!nc)
		return false;
	unsigned c = cand[rn(nc)], a = c / MAXK, b = c % MAXK;
	struct link *l = &S.links[a][b];
	struct msg m = l->q[l->head];

	l->head = (l->head + 1) % QMAX;
	l->len--;
	vlog("deliver %u -> %u: type %u off %llu arg %llx flags %u", a, b, m.type,
	     (unsigned long long)m.off, (unsigned long long)m.arg, m.flags);
	recv(&S.n[b], &m);
	pump(&S.n[b]);
	return true;
}

static bool leave_in_progress(void)
{
	for (unsigned i = 0; i < S.k; i++)
		if (S.n[i].alive && S.n[i].lv == 1)
			return true;
	for (unsigned i = 0; i < S.k; i++)
		if (S.n[i].alive && !S.n[i].departed && S.n[i].leaving)
			return true;
	return false;
}

static unsigned live_count(void)
{
	unsigned c = 0;

	for (unsigned i = 0; i < S.k; i++)
		c += S.n[i].alive && !S.n[i].departed;
	return c;
}

static void kill_node(unsigned v)
{
	vlog("node %u dies", v);
	S.n[v].alive = false;
	for (unsigned x = 0; x < S.k; x++) {
		S.links[v][x].len = S.links[x][v].len = 0;
	}
	/* The model: its queued requests vanish, a lock it held is marked, a lock it homed
	 * (in the survivors' view) is lost. */
	for (unsigned l = 0; l < S.l; l++) {
		struct model *m = &S.m[l];
		size_t j = 0;

		for (size_t i = 0; i < m->nq; i++)
			if (m->q[i].node != v)
				m->q[j++] = m->q[i];
		m->nq = j;
		if (m->held && m->holder.node == v) {
			m->held = false;
			m->marked = true;
		}
	}
	for (unsigned l = 0; l < S.l; l++) {
		unsigned any = NONE;

		for (unsigned x = 0; x < S.k; x++)
			if (S.n[x].alive && !S.n[x].departed) {
				any = x;
				break;
			}
		if (any != NONE && home(&S.n[any], l) == v)
			S.m[l].lost = true;
	}
	for (unsigned x = 0; x < S.k; x++) {
		struct node *n = &S.n[x];

		if (!n->alive || n->departed)
			continue;
		n->view &= ~BIT(v);
		n->leaving &= ~BIT(v);
		lk_node_gone(n->home, v, true);
		pump(n);
	}
}

/* udsm_close() with threads still waiting or holding (lockd_close()). */
static void close_node(struct node *n)
{
	unsigned me = self_of(n);

	n->closing = true;
	for (unsigned t = 0; t < S.t; t++) {
		struct thread *th = &n->th[t];

		if (th->st != T_WAIT)
			continue;
		if (!th->sent) { /* still in the outbox: it never leaves */
			size_t j = 0;

			for (size_t i = 0; i < n->nout; i++)
				if (!(n->out[i].type == WIRE_LOCK_REQ && n->out[i].tag == th->tag))
					n->out[j++] = n->out[i];
			n->nout = j;
		} else if (home(n, th->l) == me) {
			struct model *m = &S.m[th->l];
			size_t j = 0;

			CHECK(lk_cancel(n->home, th->l, (struct lk_who){ me, th->tag }) == 0,
			      "lk_cancel of a local wait");
			for (size_t i = 0; i < m->nq; i++)
				if (!(m->q[i].node == me && m->q[i].tag == th->tag))
					m->q[j++] = m->q[i];
			m->nq = j;
		} /* else: it stays queued at its home until our BYE (or is granted: REL back) */
		vlog("node %u thread %u: wait for %u cancelled", me, t, th->l);
		th->st = T_IDLE;
	}
	for (unsigned t = 0; t < S.t; t++) {
		struct thread *th = &n->th[t];
		unsigned h;

		if (th->st != T_HOLD)
			continue;
		th->st = T_IDLE;
		h = home(n, th->l);
		vlog("node %u thread %u: lock %u given up unfinished", me, t, th->l);
		if (!(n->view & BIT(h)))
			continue;
		if (h == me)
			home_release(n, th->l, (struct lk_who){ me, th->tag }, true);
		else
			out_push(n, WIRE_LOCK_REL, WIRE_F_LK_DEAD, TO_HOME, th->l, th->tag);
	}
}

static void start_leave(unsigned v)
{
	struct node *n = &S.n[v];

	for (unsigned t = 0; t < S.t; t++)
		if (n->th[t].st != T_IDLE && !rn(2))
			return;
	close_node(n);
	vlog("node %u starts to leave", v);
	n->lv = 1;
	n->acks = 0;
	for (unsigned x = 0; x < S.k; x++)
		if (x != v && (n->view & BIT(x)))
			send(v, x, LEAVE, 0, 0, 0);
	pump(n);
}

static void check_step(void)
{
	for (unsigned l = 0; l < S.l; l++) {
		unsigned holders = 0;

		for (unsigned x = 0; x < S.k; x++) {
			if (!S.n[x].alive || S.n[x].departed)
				continue;
			for (unsigned t = 0; t < S.t; t++)
				holders += S.n[x].th[t].st == T_HOLD && S.n[x].th[t].l == l;
		}
		CHECK(holders <= 1, "lock %u has %u holders", l, holders);
	}
	for (unsigned x = 0; x < S.k; x++) {
		const char *why;

		if (S.n[x].alive && (why = lk_check(S.n[x].home)))
			die("node %u table: %s", x, why);
	}
}

static bool settle(void)
{
	for (int i = 0; i < 100000; i++) {
		for (unsigned x = 0; x < S.k; x++)
			pump(&S.n[x]);
		if (!deliver_one())
			return true;
		check_step();
	}
	return false;
}

static void run(uint64_t seed)
{
	memset(&S.n, 0, sizeof(S.n));
	memset(&S.links, 0, sizeof(S.links));
	memset(&S.m, 0, sizeof(S.m));
	S.seed = seed;
	S.rng = seed * 0x2545f4914f6cdd1dull + 1;
	S.steps = 0;
	S.k = 2 + rn(MAXK - 1);
	S.t = 1 + rn(MAXT);
	S.l = 1 + rn(MAXL);
	S.kills = rn(3) == 0;
	S.leaves = rn(3) == 0;
	for (unsigned x = 0; x < S.k; x++) {
		struct node *n = &S.n[x];

		n->alive = true;
		n->view = BIT(S.k) - 1;
		memset(n->fwd, NONE, sizeof(n->fwd));
		if (lk_create(&ops, n, &n->home))
			die("lk_create");
	}
	unsigned steps = 300 + rn(1500);
	for (S.steps = 0; S.steps < steps; S.steps++) {
		unsigned r = rn(100), x = rn(S.k);
		struct node *n = &S.n[x];

		if (r < 40) {
			if (n->alive && !n->departed) {
				thread_op(n, rn(S.t));
				pump(n);
			}
		} else if (r < 98) {
			deliver_one();
		} else if (r == 98 && S.kills && live_count() > 2 && !leave_in_progress()) {
			if (n->alive && !n->departed)
				kill_node(x);
		} else if (r == 99 && S.leaves && live_count() > 2 && !leave_in_progress()) {
			if (n->alive && !n->departed)
				start_leave(x);
		}
		check_step();
	}
	/*
	 * Drain: with no new operations, holders release and every waiting request ends
	 * (granted, then released in a later round; EBUSY; EPEER), within one round per
	 * request at most.
	 */
	for (unsigned round = 0;; round++) {
		bool busy = false;

		CHECK(settle(), "no quiescence");
		CHECK(round <= S.k * S.t + 2, "requests still wait after %u rounds", round);
		for (unsigned x = 0; x < S.k; x++) {
			struct node *n = &S.n[x];

			if (!n->alive || n->departed)
				continue;
			CHECK(n->nstash == 0, "node %u keeps %zu messages", x, n->nstash);
			for (unsigned t = 0; t < S.t; t++) {
				busy |= n->th[t].st != T_IDLE;
				if (n->th[t].st == T_HOLD) {
					thread_op(n, t);
					pump(n);
				}
			}
		}
		if (!busy)
			break;
	}
	CHECK(settle(), "no quiescence after the releases");
	for (unsigned x = 0; x < S.k; x++) {
		struct node *n = &S.n[x];

		if (n->alive && !n->departed) {
			for (unsigned l = 0; l < S.l; l++) {
				struct lk_view v;

				lk_get(n->home, l, &v);
				CHECK(!v.held && !v.queued, "node %u: lock %u still held or waited for",
				      x, l);
			}
		}
		lk_destroy(n->home);
	}
	for (unsigned l = 0; l < S.l; l++)
		CHECK(S.m[l].lost || (!S.m[l].held && !S.m[l].nq), "model of lock %u not empty", l);
}

int main(int argc, char **argv)
{
	uint64_t nseeds = 3000, start = 1;
	bool one = false;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-v"))
			S.verbose = true;
		else if (i + 1 < argc && !strcmp(argv[i], "--seeds"))
			nseeds = strtoull(argv[++i], NULL, 0);
		else if (i + 1 < argc && !strcmp(argv[i], "--seed"))
			start = strtoull(argv[++i], NULL, 0), one = true;
		else {
			fprintf(stderr, "usage: test_lock_sim [--seeds N] [--seed S] [-v]\n");
			return 2;
		}
	}
	if (one)
		nseeds = 1;
	for (uint64_t s = start; s < start + nseeds; s++)
		run(s);
	printf("test_lock_sim: %llu schedules: %llu grants, %llu busy, %llu UDSM_EPEER\n",
	       (unsigned long long)nseeds, (unsigned long long)S.grants,
	       (unsigned long long)S.busy, (unsigned long long)S.epeer);
	return 0;
}
