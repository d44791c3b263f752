/* SPDX-License-Identifier: MIT */
/*
 * test_engine.c - unit tests of the MSI engine (src/core/engine.c) with a recording fake of
 * struct eng_ops.
 *
 * Every action the engine takes is recorded as one line of text ("send 1 GET_S p1 f0 a0 l0",
 * "install p1 rw data", "drop p1", ...) so the expectations read like the protocol tables:
 *  - requester role: every (state x event) pair, table-driven, on a page homed at another node;
 *  - home role: the directory, its FIFO queue, invalidations, upgrades, zero pages, errors;
 *  - peer loss and barriers.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/engine.h"
#include "core/place.h"
#include "core/wire.h"

#define PS 64u
#define MAXP 16u
#define LOG_MAX 8192

/* The fake: a log of actions and the contents of present pages (for page_data). */
struct fake {
	char log[LOG_MAX];
	size_t len;
	uint8_t mem[MAXP][PS];
	bool present[MAXP], writable[MAXP];
	int bar_err;   /* last barrier_done error */
	int bar_calls; /* barrier_done calls */
	uint8_t adopt[WIRE_ADOPT_FIXED + PS]; /* payload of the last ADOPT sent */
	uint32_t adopt_len;
	uint8_t set[WIRE_DATA_SET_FIXED + 8 * PS]; /* payload of the last GET_S_SET / DATA_SET */
	uint32_t set_len;
	/* Paced leaves (fake_ops with f_room): bytes the link toward each node may still take; every
	 * message sent uses its size up, the test drains a link by setting it again. */
	size_t room[8];
	unsigned reads; /* page_data calls */
	uint8_t sent[PS]; /* payload of the last message carrying one page */
	bool take_declines; /* f_take: decline, as node.c does for a page it cannot move */
	uint8_t took[PS];   /* f_take: the contents it took */
};

static void rec(struct fake *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rec(struct fake *f, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (f->len)
		f->log[f->len++] = ';';
	va_start(ap, fmt);
	n = vsnprintf(f->log + f->len, LOG_MAX - f->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= LOG_MAX - f->len)
		abort();
	f->len += (size_t)n;
}

static void f_send(void *ctx, unsigned dst, const struct wire_msg *m, const void *data)
{
	struct fake *f = ctx;

	/* A payload is exactly one page (or an ADOPT entry); data iff len != 0. */
	if (m->type == WIRE_ADOPT) {
		if (!data || (m->len != WIRE_ADOPT_FIXED && m->len != WIRE_ADOPT_FIXED + PS))
			abort();
		memcpy(f->adopt, data, m->len);
		f->adopt_len = m->len;
	} else if (m->type == WIRE_GET_S_SET || m->type == WIRE_DATA_SET ||
		   m->type == WIRE_FETCH_SET) {
		if (!data || m->len < WIRE_SET_BYTES)
			abort();
		memcpy(f->set, data, m->len < sizeof(f->set) ? m->len : sizeof(f->set));
		f->set_len = m->len;
	} else if ((m->len != 0) != (data != NULL) || (m->len && m->len != PS)) {
		abort();
	} else if (m->len) {
		memcpy(f->sent, data, PS);
	}
	rec(f, "send %u %s p%llu f%u a%llu l%u", dst, wire_type_name(m->type),
	    (unsigned long long)m->page, m->flags, (unsigned long long)m->arg, m->len);
	if (dst < 8)
		f->room[dst] -= f->room[dst] < WIRE_HDR_LEN + m->len ? f->room[dst]
								   : WIRE_HDR_LEN + m->len;
}

static int f_install(void *ctx, uint64_t page, const void *data, bool writable)
{
	struct fake *f = ctx;

	rec(f, "install p%llu %s %s", (unsigned long long)page, writable ? "rw" : "ro",
	    data ? "data" : "zero");
	if (page < MAXP) {
		if (data)
			memcpy(f->mem[page], data, PS);
		else
			memset(f->mem[page], 0, PS);
		f->present[page] = true;
		f->writable[page] = writable;
	}
	return 0;
}

static int f_protect(void *ctx, uint64_t page)
{
	struct fake *f = ctx;

	rec(f, "protect p%llu", (unsigned long long)page);
	if (page < MAXP)
		f->writable[page] = false;
	return 0;
}

static int f_unprotect(void *ctx, uint64_t page)
{
	struct fake *f = ctx;

	rec(f, "unprotect p%llu", (unsigned long long)page);
	if (page < MAXP)
		f->writable[page] = true;
	return 0;
}

static int f_drop(void *ctx, uint64_t page)
{
	struct fake *f = ctx;

	rec(f, "drop p%llu", (unsigned long long)page);
	if (page < MAXP)
		f->present[page] = f->writable[page] = false;
	return 0;
}

static const void *f_page_data(void *ctx, uint64_t page)
{
	struct fake *f = ctx;

	if (page >= MAXP || !f->present[page])
		abort(); /* the engine read a page that is not present */
	f->reads++;
	return f->mem[page];
}

static int f_wake(void *ctx, uint64_t page)
{
	rec(ctx, "wake p%llu", (unsigned long long)page);
	return 0;
}

static int f_poison(void *ctx, uint64_t page)
{
	rec(ctx, "poison p%llu", (unsigned long long)page);
	return 0;
}

static void f_barrier_done(void *ctx, int err)
{
	struct fake *f = ctx;

	rec(f, "bdone %d", err);
	f->bar_err = err;
	f->bar_calls++;
}

/* Staging: recorded as the first page and the bitmap's first two bytes (hex). */
static void f_stage(void *ctx, uint64_t page, const uint8_t *bm)
{
	struct fake *f = ctx;

	for (unsigned i = 0; i < WIRE_SET_PAGES; i++)
		if ((bm[i / 8] & (1u << (i % 8))) &&
		    (page + i >= MAXP || !f->present[page + i] || !f->writable[page + i]))
			abort(); /* only present, writable pages are staged */
	rec(f, "stage p%llu %02x%02x", (unsigned long long)page, bm[0], bm[1]);
}

static void f_stage_end(void *ctx)
{
	rec(ctx, "stage_end");
}

/* eng_ops.take (only in the ops of test_owner_take): the page leaves with its contents. */
static const void *f_take(void *ctx, uint64_t page)
{
	struct fake *f = ctx;

	rec(f, "take p%llu%s", (unsigned long long)page, f->take_declines ? " declined" : "");
	if (f->take_declines)
		return NULL;
	if (page >= MAXP || !f->present[page] || !f->writable[page])
		abort(); /* only a present page, Modified (writable) here, is taken */
	memcpy(f->took, f->mem[page], PS);
	memset(f->mem[page], 0xdd, PS);
	f->present[page] = f->writable[page] = false;
	return f->took;
}

static const struct eng_ops fake_ops = {
	.send = f_send,
	.install = f_install,
	.protect = f_protect,
	.stage = f_stage,
	.stage_end = f_stage_end,
	.unprotect = f_unprotect,
	.drop = f_drop,
	.page_data = f_page_data,
	.wake = f_wake,
	.poison = f_poison,
	.barrier_done = f_barrier_done,
	.log = NULL,
};

static size_t f_room(void *ctx, unsigned dst)
{
	struct fake *f = ctx;

	return dst < 8 ? f->room[dst] : 0;
}


/* One engine under test and its fake. */
struct t {
	struct eng *e;
	struct fake f;
	unsigned self, nodes;
};

static uint32_t t_set_pages; /* eng_config.set_pages of the next engine (0: default) */
static const struct eng_ops *t_ops; /* the ops of the next engine (NULL: fake_ops) */

static struct t *t_new_cfg(unsigned self, unsigned nodes, uint64_t npages, int readahead,
			   bool no_forward)
{
	struct t *t = calloc(1, sizeof(*t));
	struct eng_config c = {
		.self = self,
		.nodes = nodes,
		.npages = npages,
		.page_size = PS,
		.readahead = readahead,
		.no_forward = no_forward,
		.set_pages = t_set_pages,
		.ops = t_ops ? t_ops : &fake_ops,
	};

	assert_non_null(t);
	c.ctx = &t->f;
	t->self = self;
	t->nodes = nodes;
	assert_int_equal(eng_create(&c, &t->e), 0);
	return t;
}

static struct t *t_new(unsigned self, unsigned nodes, uint64_t npages, int readahead)
{
	return t_new_cfg(self, nodes, npages, readahead, false);
}

/* A home that fetches a third party's page through itself (4 hops): the FETCH path, which
 * forwarding falls back to (and the tests below that were written for it). */
static struct t *t_new_4hop(unsigned self, unsigned nodes, uint64_t npages, int readahead)
{
	return t_new_cfg(self, nodes, npages, readahead, true);
}

static void t_free(struct t *t)
{
	eng_destroy(t->e);
	free(t);
}

/* Forget the recorded actions. */
static void clr(struct t *t)
{
	t->f.len = 0;
	t->f.log[0] = '\0';
}

/* The recorded actions since the last clr(), then clr(). */
static const char *acts(struct t *t)
{
	static char buf[LOG_MAX];

	memcpy(buf, t->f.log, t->f.len);
	buf[t->f.len] = '\0';
	clr(t);
	return buf;
}

#define expect_acts(t, s) assert_string_equal(acts(t), (s))

static const uint8_t *pattern(uint8_t seed)
{
	static uint8_t buf[PS];

	for (unsigned i = 0; i < PS; i++)
		buf[i] = (uint8_t)(seed + i * 7 + 1);
	return buf;
}

/* Deliver one message from @src; returns eng_recv()'s result. @data: a page or NULL. */
static int rcv(struct t *t, unsigned src, unsigned type, unsigned flags, uint64_t page,
	       uint64_t arg, const void *data)
{
	struct wire_msg m = {
		.type = (uint8_t)type,
		.flags = (uint8_t)flags,
		.src = (uint16_t)src,
		.len = data ? PS : 0,
		.page = page,
		.arg = arg,
		.payload = data,
	};

	return eng_recv(t->e, src, &m);
}

static void rcv_ok(struct t *t, unsigned src, unsigned type, unsigned flags, uint64_t page,
		   uint64_t arg, const void *data)
{
	int err = rcv(t, src, type, flags, page, arg, data);

	if (err)
		fail_msg("eng_recv: %d (%s)", err, eng_why(t->e));
}

static void rcv_eproto(struct t *t, unsigned src, unsigned type, unsigned flags,
		       uint64_t page, uint64_t arg, const void *data)
{
	assert_int_equal(rcv(t, src, type, flags, page, arg, data), UDSM_EPROTO);
	assert_true(eng_why(t->e)[0] != '\0');
	expect_acts(t, ""); /* a rejected message changes nothing */
}

static struct eng_dir_view dir(struct t *t, uint64_t page)
{
	struct eng_dir_view v;

	assert_int_equal(eng_dir(t->e, page, &v), 0);
	return v;
}

#define B(n) ((uint64_t)1 << (n))

/* ==========================================================================================
 * Requester role: every (state x event) pair. Node 0 of 2, page 1 (homed at node 1).
 */

enum ev {
	EV_READ,
	EV_WRITE,
	EV_DATA,
	EV_DATA_EXCL,
	EV_GRANT,
	EV_INV,
	EV_FETCH_S,
	EV_FETCH_I,
	EV_NACK,
	EV_N_
};

static const char *const ev_names[EV_N_] = {
	"read", "write", "DATA", "DATA+EXCL", "GRANT", "INV", "FETCH TO_S", "FETCH TO_I", "NACK",
};

#define EPROTO_ "EPROTO"

struct req_case {
	int state, ev, next;
	const char *acts; /* or EPROTO_: rejected, nothing changes */
};

/* The requester's table, as engine.c implements it. P = page 1, H = node 1 (its home). */
static const struct req_case req_table[] = {
	{ ENG_I, EV_READ, ENG_IS_D, "send 1 GET_S p1 f0 a0 l0" },
	{ ENG_I, EV_WRITE, ENG_IM_D, "send 1 GET_M p1 f0 a0 l0" },
	{ ENG_I, EV_DATA, ENG_I, EPROTO_ },
	{ ENG_I, EV_DATA_EXCL, ENG_I, EPROTO_ },
	{ ENG_I, EV_GRANT, ENG_I, EPROTO_ },
	{ ENG_I, EV_INV, ENG_I, EPROTO_ },
	{ ENG_I, EV_FETCH_S, ENG_I, EPROTO_ },
	{ ENG_I, EV_FETCH_I, ENG_I, EPROTO_ },
	{ ENG_I, EV_NACK, ENG_I, EPROTO_ },

	{ ENG_S, EV_READ, ENG_S, "wake p1" },
	{ ENG_S, EV_WRITE, ENG_SM_A, "send 1 GET_M p1 f0 a0 l0" },
	{ ENG_S, EV_DATA, ENG_S, EPROTO_ },
	{ ENG_S, EV_DATA_EXCL, ENG_S, EPROTO_ },
	{ ENG_S, EV_GRANT, ENG_S, EPROTO_ },
	{ ENG_S, EV_INV, ENG_I, "drop p1;send 1 INV_ACK p1 f0 a0 l0" },
	{ ENG_S, EV_FETCH_S, ENG_S, EPROTO_ },
	{ ENG_S, EV_FETCH_I, ENG_S, EPROTO_ },
	{ ENG_S, EV_NACK, ENG_S, EPROTO_ },

	{ ENG_M, EV_READ, ENG_M, "wake p1" },
	{ ENG_M, EV_WRITE, ENG_M, "wake p1" },
	{ ENG_M, EV_DATA, ENG_M, EPROTO_ },
	{ ENG_M, EV_DATA_EXCL, ENG_M, EPROTO_ },
	{ ENG_M, EV_GRANT, ENG_M, EPROTO_ },
	{ ENG_M, EV_INV, ENG_M, EPROTO_ },
	{ ENG_M, EV_FETCH_S, ENG_S, "protect p1;send 1 FETCH_REPLY p1 f0 a0 l64" },
	{ ENG_M, EV_FETCH_I, ENG_I, "protect p1;send 1 FETCH_REPLY p1 f0 a0 l64;drop p1" },
	{ ENG_M, EV_NACK, ENG_M, EPROTO_ },

	{ ENG_IS_D, EV_READ, ENG_IS_D, "" },
	{ ENG_IS_D, EV_WRITE, ENG_IS_D, "" },
	{ ENG_IS_D, EV_DATA, ENG_S, "install p1 ro data" },
	{ ENG_IS_D, EV_DATA_EXCL, ENG_M, "install p1 rw data" }, /* migratory hand-over */
	{ ENG_IS_D, EV_GRANT, ENG_IS_D, EPROTO_ },
	{ ENG_IS_D, EV_INV, ENG_IS_D, EPROTO_ },
	{ ENG_IS_D, EV_FETCH_S, ENG_IS_D, EPROTO_ },
	{ ENG_IS_D, EV_FETCH_I, ENG_IS_D, EPROTO_ },
	{ ENG_IS_D, EV_NACK, ENG_LOST, "poison p1" },

	{ ENG_IM_D, EV_READ, ENG_IM_D, "" },
	{ ENG_IM_D, EV_WRITE, ENG_IM_D, "" },
	{ ENG_IM_D, EV_DATA, ENG_IM_D, EPROTO_ },
	{ ENG_IM_D, EV_DATA_EXCL, ENG_M, "install p1 rw data" },
	{ ENG_IM_D, EV_GRANT, ENG_IM_D, EPROTO_ },
	{ ENG_IM_D, EV_INV, ENG_IM_D, EPROTO_ },
	{ ENG_IM_D, EV_FETCH_S, ENG_IM_D, EPROTO_ },
	{ ENG_IM_D, EV_FETCH_I, ENG_IM_D, EPROTO_ },
	{ ENG_IM_D, EV_NACK, ENG_LOST, "poison p1" },

	{ ENG_SM_A, EV_READ, ENG_SM_A, "" },
	{ ENG_SM_A, EV_WRITE, ENG_SM_A, "" },
	{ ENG_SM_A, EV_DATA, ENG_SM_A, EPROTO_ },
	{ ENG_SM_A, EV_DATA_EXCL, ENG_SM_A, EPROTO_ },
	{ ENG_SM_A, EV_GRANT, ENG_M, "unprotect p1" },
	{ ENG_SM_A, EV_INV, ENG_IM_D, "drop p1;send 1 INV_ACK p1 f0 a0 l0" },
	{ ENG_SM_A, EV_FETCH_S, ENG_SM_A, EPROTO_ },
	{ ENG_SM_A, EV_FETCH_I, ENG_SM_A, EPROTO_ },
	{ ENG_SM_A, EV_NACK, ENG_SM_A, EPROTO_ },

	{ ENG_LOST, EV_READ, ENG_LOST, "poison p1" },
	{ ENG_LOST, EV_WRITE, ENG_LOST, "poison p1" },
	{ ENG_LOST, EV_DATA, ENG_LOST, EPROTO_ },
	{ ENG_LOST, EV_DATA_EXCL, ENG_LOST, EPROTO_ },
	{ ENG_LOST, EV_GRANT, ENG_LOST, EPROTO_ },
	{ ENG_LOST, EV_INV, ENG_LOST, EPROTO_ },
	{ ENG_LOST, EV_FETCH_S, ENG_LOST, EPROTO_ },
	{ ENG_LOST, EV_FETCH_I, ENG_LOST, EPROTO_ },
	{ ENG_LOST, EV_NACK, ENG_LOST, EPROTO_ },
};

/* Drive page 1 of @t into @state through faults and messages from its home, node 1. */
static void reach(struct t *t, int state)
{
	switch (state) {
	case ENG_I:
		break;
	case ENG_IS_D:
		assert_int_equal(eng_fault(t->e, 1, false), 0);
		break;
	case ENG_IM_D:
		assert_int_equal(eng_fault(t->e, 1, true), 0);
		break;
	case ENG_S:
		reach(t, ENG_IS_D);
		rcv_ok(t, 1, WIRE_DATA, 0, 1, 0, pattern(1));
		break;
	case ENG_M:
		reach(t, ENG_IM_D);
		rcv_ok(t, 1, WIRE_DATA, WIRE_F_EXCL, 1, 0, pattern(2));
		break;
	case ENG_SM_A:
		reach(t, ENG_S);
		assert_int_equal(eng_fault(t->e, 1, true), 0);
		break;
	case ENG_LOST:
		reach(t, ENG_IS_D);
		rcv_ok(t, 1, WIRE_NACK, 0, 1, 0, NULL);
		break;
	default:
		fail();
	}
	assert_int_equal(eng_state(t->e, 1), state);
	clr(t);
}

static int fire(struct t *t, int ev)
{
	switch (ev) {
	case EV_READ:
		return eng_fault(t->e, 1, false);
	case EV_WRITE:
		return eng_fault(t->e, 1, true);
	case EV_DATA:
		return rcv(t, 1, WIRE_DATA, 0, 1, 0, pattern(3));
	case EV_DATA_EXCL:
		return rcv(t, 1, WIRE_DATA, WIRE_F_EXCL, 1, 0, pattern(4));
	case EV_GRANT:
		return rcv(t, 1, WIRE_GRANT, 0, 1, 0, NULL);
	case EV_INV:
		return rcv(t, 1, WIRE_INV, 0, 1, 0, NULL);
	case EV_FETCH_S:
		return rcv(t, 1, WIRE_FETCH, 0, 1, WIRE_FETCH_TO_S, NULL);
	case EV_FETCH_I:
		return rcv(t, 1, WIRE_FETCH, 0, 1, WIRE_FETCH_TO_I, NULL);
	case EV_NACK:
		return rcv(t, 1, WIRE_NACK, 0, 1, 0, NULL);
	}
	fail();
	return 0;
}

static void test_requester_table(void **state)
{
	bool seen[ENG_NSTATES_][EV_N_] = { { false } };

	(void)state;
	for (size_t i = 0; i < sizeof(req_table) / sizeof(req_table[0]); i++) {
		const struct req_case *c = &req_table[i];
		struct t *t = t_new(0, 2, 4, -1);
		bool rejected = strcmp(c->acts, EPROTO_) == 0;
		int err;

		print_message("  %-5s x %-10s -> %s\n", eng_state_name(c->state), ev_names[c->ev],
			      rejected ? "UDSM_EPROTO" : eng_state_name(c->next));
		seen[c->state][c->ev] = true;
		reach(t, c->state);
		err = fire(t, c->ev);
		if (rejected) {
			assert_int_equal(err, UDSM_EPROTO);
			assert_true(eng_why(t->e)[0] != '\0');
			expect_acts(t, "");
		} else {
			if (err)
				fail_msg("%s x %s: %d (%s)", eng_state_name(c->state),
					 ev_names[c->ev], err, eng_why(t->e));
			expect_acts(t, c->acts);
		}
		assert_int_equal(eng_state(t->e, 1), c->next);
		/* Nothing else moved: the other pages are untouched. */
		for (uint64_t p = 0; p < 4; p++)
			if (p != 1)
				assert_int_equal(eng_state(t->e, p), ENG_I);
		t_free(t);
	}
	for (int s = 0; s < ENG_NSTATES_; s++)
		for (int ev = 0; ev < EV_N_; ev++)
			if (!seen[s][ev])
				fail_msg("no case for %s x %s", eng_state_name(s), ev_names[ev]);
}

/* The data that travels is the data installed, and a zero page travels as ZERO. */
static void test_requester_data(void **state)
{
	struct t *t = t_new(0, 2, 4, -1);

	(void)state;
	reach(t, ENG_M);
	assert_memory_equal(t->f.mem[1], pattern(2), PS);
	/* The page is modified locally, then fetched: the reply carries the new bytes. */
	t->f.mem[1][5] ^= 0x55;
	rcv_ok(t, 1, WIRE_FETCH, 0, 1, WIRE_FETCH_TO_S, NULL);
	expect_acts(t, "protect p1;send 1 FETCH_REPLY p1 f0 a0 l64");
	assert_false(t->f.writable[1]);
	t_free(t);

	/* A zero page installed from a ZERO DATA and fetched back travels as ZERO. */
	t = t_new(0, 2, 4, -1);
	assert_int_equal(eng_fault(t->e, 1, true), 0);
	clr(t);
	rcv_ok(t, 1, WIRE_DATA, WIRE_F_EXCL | WIRE_F_ZERO, 1, 0, NULL);
	expect_acts(t, "install p1 rw zero");
	rcv_ok(t, 1, WIRE_FETCH, 0, 1, WIRE_FETCH_TO_I, NULL);
	expect_acts(t, "protect p1;send 1 FETCH_REPLY p1 f2 a0 l0;drop p1");
	/* A fetch with an unknown mode is rejected. */
	assert_int_equal(eng_fault(t->e, 1, true), 0);
	clr(t);
	rcv_ok(t, 1, WIRE_DATA, WIRE_F_EXCL, 1, 0, pattern(9));
	expect_acts(t, "install p1 rw data");
	rcv_eproto(t, 1, WIRE_FETCH, 0, 1, 7, NULL);
	assert_int_equal(eng_state(t->e, 1), ENG_M);
	t_free(t);
}

/*
 * An owner that gives its page up takes it in one step where the runtime can (eng_ops.take):
 * the reply carries the contents as they were when it went, and nothing is dropped after.
 * Where the runtime declines, the page is protected, read and dropped; a downgrade (FETCH to
 * S) keeps the page and never takes it.
 */
static void test_owner_take(void **state)
{
	struct eng_ops ops = fake_ops;
	struct t *t;

	(void)state;
	ops.take = f_take;
	t_ops = &ops;
	/* Taken; then declined: the other way, with the same contents on the wire. */
	for (int declines = 0; declines < 2; declines++) {
		uint8_t want[PS];

		t = t_new(0, 2, 4, -1);
		t->f.take_declines = declines;
		reach(t, ENG_M);
		t->f.mem[1][5 + declines] ^= 0x55;
		memcpy(want, t->f.mem[1], PS);
		clr(t);
		rcv_ok(t, 1, WIRE_FETCH, 0, 1, WIRE_FETCH_TO_I, NULL);
		expect_acts(t, declines ? "take p1 declined;protect p1;send 1 FETCH_REPLY p1 f0 a0 "
					  "l64;drop p1"
					: "take p1;send 1 FETCH_REPLY p1 f0 a0 l64");
		assert_memory_equal(t->f.sent, want, PS);
		assert_false(t->f.present[1]);
		assert_int_equal(eng_state(t->e, 1), ENG_I);
		t_free(t);
	}

	/* A downgrade keeps the page: protect and read, no take. */
	t = t_new(0, 2, 4, -1);
	reach(t, ENG_M);
	clr(t);
	rcv_ok(t, 1, WIRE_FETCH, 0, 1, WIRE_FETCH_TO_S, NULL);
	expect_acts(t, "protect p1;send 1 FETCH_REPLY p1 f0 a0 l64");
	assert_true(t->f.present[1]);
	assert_int_equal(eng_state(t->e, 1), ENG_S);
	t_free(t);
	t_ops = NULL;
}

/* A node that is the home of the page it faults on is served at once, through itself. */
static void test_requester_local_home(void **state)
{
	struct t *t = t_new(0, 2, 4, -1);

	(void)state;
	assert_int_equal(eng_fault(t->e, 0, false), 0);
	expect_acts(t, "install p0 ro zero");
	assert_int_equal(eng_state(t->e, 0), ENG_S);
	assert_true(eng_quiescent(t->e));
	assert_int_equal(eng_fault(t->e, 0, true), 0);
	expect_acts(t, "unprotect p0");
	assert_int_equal(eng_state(t->e, 0), ENG_M);
	assert_true(eng_quiescent(t->e));

	/* Node 1 reads it: the home fetches from itself and serves node 1. */
	t->f.mem[0][0] = 42;
	rcv_ok(t, 1, WIRE_GET_S, 0, 0, 0, NULL);
	expect_acts(t, "protect p0;send 1 DATA p0 f0 a0 l64");
	assert_int_equal(eng_state(t->e, 0), ENG_S);
	struct eng_dir_view v = dir(t, 0);
	assert_int_equal(v.sharers, B(0) | B(1));
	assert_int_equal(v.owner, -1);
	assert_true(v.has_copy);
	assert_int_equal(((const uint8_t *)v.copy)[0], 42);

	/* Write fault at the home: invalidate node 1, then upgrade in place. */
	assert_int_equal(eng_fault(t->e, 0, true), 0);
	expect_acts(t, "send 1 INV p0 f0 a0 l0");
	assert_int_equal(eng_state(t->e, 0), ENG_SM_A);
	assert_false(eng_quiescent(t->e));
	rcv_ok(t, 1, WIRE_INV_ACK, 0, 0, 0, NULL);
	expect_acts(t, "unprotect p0");
	assert_int_equal(eng_state(t->e, 0), ENG_M);
	assert_true(eng_quiescent(t->e));
	v = dir(t, 0);
	assert_int_equal(v.owner, 0);
	assert_int_equal(v.sharers, 0);
	assert_false(v.has_copy);
	t_free(t);
}

/* Read-ahead: sequential read misses fetch a growing window of Invalid pages. */
static void test_requester_readahead(void **state)
{
	struct t *t = t_new(0, 2, 16, 4);

	(void)state;
	assert_int_equal(eng_fault(t->e, 1, false), 0);
	expect_acts(t, "send 1 GET_S p1 f0 a0 l0");
	assert_int_equal(eng_fault(t->e, 3, false), 0); /* not sequential: 3 > 1 + 1 + 0 */
	expect_acts(t, "send 1 GET_S p3 f0 a0 l0");
	/* Sequential: window 2, and two of them at once, 5..6 and 7..8 (our own pages are
	 * served as the burst is issued, each home's in one set at the end of its burst). */
	assert_int_equal(eng_fault(t->e, 4, false), 0);
	expect_acts(t, "install p4 ro zero;install p6 ro zero;send 1 GET_S p5 f0 a1 l0;"
		       "install p8 ro zero;send 1 GET_S p7 f0 a1 l0");
	assert_int_equal(eng_state(t->e, 5), ENG_IS_D);
	assert_int_equal(eng_state(t->e, 6), ENG_S);
	assert_int_equal(eng_state(t->e, 7), ENG_IS_D);
	/* A thread joins the read-ahead of 7 (no request of its own): the window grows to 4,
	 * but two bursts are on their way already: nothing more until one of them arrives. */
	assert_int_equal(eng_fault(t->e, 7, false), 0);
	expect_acts(t, "");
	/* 5, the first burst, arrives: one more window (9..12). */
	rcv_ok(t, 1, WIRE_DATA, 0, 5, 0, pattern(5));
	expect_acts(t, "install p5 ro data;install p10 ro zero;install p12 ro zero;"
		       "send 1 GET_S_SET p9 f0 a0 l32");
	assert_int_equal(t->f.set[0], 0x05); /* pages 9 and 11 in one set */
	struct udsm_stats st;
	eng_stats(t->e, &st);
	assert_int_equal(st.readahead, 8);
	t_free(t);

	/* No read-ahead with readahead < 0, nor with 0. */
	for (int ra = -1; ra <= 0; ra++) {
		t = t_new(0, 2, 16, ra);
		for (uint64_t p = 1; p < 8; p += 2) {
			assert_int_equal(eng_fault(t->e, p, false), 0);
			assert_int_equal(eng_fault(t->e, p + 1, false), 0);
		}
		for (uint64_t p = 9; p < 16; p++)
			assert_int_equal(eng_state(t->e, p), ENG_I);
		t_free(t);
	}
}

/* ==========================================================================================
 * Home role. Node 0 of 5; pages 0 and 5 are homed here. Requesters are nodes 1..4.
 */

static void test_home_idle(void **state)
{
	struct t *t = t_new_4hop(0, 5, 10, -1);
	struct eng_dir_view v;

	(void)state;
	v = dir(t, 0);
	assert_true(v.zero);
	assert_int_equal(v.owner, -1);
	assert_int_equal(v.busy, 0);
	/* GET_S on an idle zero entry: DATA with ZERO and no payload, at once. */
	rcv_ok(t, 1, WIRE_GET_S, 0, 0, 0, NULL);
	expect_acts(t, "send 1 DATA p0 f2 a0 l0");
	rcv_ok(t, 2, WIRE_GET_S, 0, 0, 0, NULL);
	expect_acts(t, "send 2 DATA p0 f2 a0 l0");
	v = dir(t, 0);
	assert_int_equal(v.sharers, B(1) | B(2));
	assert_int_equal(v.busy, 0);
	assert_true(eng_quiescent(t->e));
	/* GET_M on an idle entry nobody shares: DATA+EXCL at once. */
	rcv_ok(t, 3, WIRE_GET_M, 0, 5, 0, NULL);
	expect_acts(t, "send 3 DATA p5 f3 a0 l0");
	v = dir(t, 5);
	assert_int_equal(v.owner, 3);
	assert_int_equal(v.sharers, 0);
	assert_false(v.has_copy);
	assert_false(v.zero);
	assert_true(eng_quiescent(t->e));
	/* GET_S of an owned page: FETCH TO_S, busy until the reply. */
	rcv_ok(t, 4, WIRE_GET_S, 0, 5, 0, NULL);
	expect_acts(t, "send 3 FETCH p5 f0 a0 l0");
	v = dir(t, 5);
	assert_int_equal(v.busy, WIRE_GET_S);
	assert_false(eng_quiescent(t->e));
	rcv_ok(t, 3, WIRE_FETCH_REPLY, 0, 5, 0, pattern(7));
	expect_acts(t, "send 4 DATA p5 f0 a0 l64");
	v = dir(t, 5);
	assert_int_equal(v.sharers, B(3) | B(4));
	assert_int_equal(v.owner, -1);
	assert_int_equal(v.busy, 0);
	assert_true(v.has_copy);
	assert_memory_equal(v.copy, pattern(7), PS);
	/* A later reader gets the home copy without asking anyone. */
	rcv_ok(t, 1, WIRE_GET_S, 0, 5, 0, NULL);
	expect_acts(t, "send 1 DATA p5 f0 a0 l64");
	assert_true(eng_quiescent(t->e));
	t_free(t);
}

/* Requests meeting a busy entry are queued and served in FIFO order. */
static void test_home_fifo(void **state)
{
	struct t *t = t_new_4hop(0, 5, 10, -1);
	struct eng_dir_view v;

	(void)state;
	rcv_ok(t, 1, WIRE_GET_M, 0, 0, 0, NULL);
	expect_acts(t, "send 1 DATA p0 f3 a0 l0");
	rcv_ok(t, 2, WIRE_GET_M, 0, 0, 0, NULL);
	expect_acts(t, "send 1 FETCH p0 f0 a1 l0");
	rcv_ok(t, 3, WIRE_GET_S, 0, 0, 0, NULL);
	rcv_ok(t, 4, WIRE_GET_M, 0, 0, 0, NULL);
	expect_acts(t, "");
	v = dir(t, 0);
	assert_int_equal(v.busy, WIRE_GET_M);
	assert_int_equal(v.queued, 2);
	/* The other page is independent: served while page 0 is busy. */
	rcv_ok(t, 3, WIRE_GET_S, 0, 5, 0, NULL);
	expect_acts(t, "send 3 DATA p5 f2 a0 l0");
	/* Node 1 replies: node 2 gets the page, then node 3's GET_S fetches it from node 2. */
	rcv_ok(t, 1, WIRE_FETCH_REPLY, 0, 0, 0, pattern(1));
	expect_acts(t, "send 2 DATA p0 f1 a0 l64;send 2 FETCH p0 f0 a0 l0");
	v = dir(t, 0);
	assert_int_equal(v.owner, 2);
	assert_int_equal(v.busy, WIRE_GET_S);
	assert_int_equal(v.queued, 1);
	rcv_ok(t, 2, WIRE_FETCH_REPLY, 0, 0, 0, pattern(2));
	/* Node 3 shares with node 2; node 4's GET_M invalidates both. */
	expect_acts(t, "send 3 DATA p0 f0 a0 l64;send 2 INV p0 f0 a0 l0;send 3 INV p0 f0 a0 l0");
	v = dir(t, 0);
	assert_int_equal(v.busy, WIRE_GET_M);
	assert_int_equal(v.queued, 0);
	assert_int_equal(v.sharers, B(2) | B(3));
	rcv_ok(t, 3, WIRE_INV_ACK, 0, 0, 0, NULL);
	expect_acts(t, "");
	rcv_ok(t, 2, WIRE_INV_ACK, 0, 0, 0, NULL);
	expect_acts(t, "send 4 DATA p0 f1 a0 l64");
	v = dir(t, 0);
	assert_int_equal(v.owner, 4);
	assert_int_equal(v.busy, 0);
	assert_true(eng_quiescent(t->e));
	t_free(t);
}

/* Invalidation of several sharers counts every ack; upgrade vs. non-sharer. */
static void test_home_inv(void **state)
{
	struct t *t = t_new(0, 5, 10, -1);
	struct eng_dir_view v;

	(void)state;
	for (unsigned n = 1; n <= 4; n++)
		rcv_ok(t, n, WIRE_GET_S, 0, 0, 0, NULL);
	clr(t);
	/* A sharer upgrades: INV to the other three, then GRANT (no data). */
	rcv_ok(t, 2, WIRE_GET_M, 0, 0, 0, NULL);
	expect_acts(t, "send 1 INV p0 f0 a0 l0;send 3 INV p0 f0 a0 l0;send 4 INV p0 f0 a0 l0");
	/* The requester itself is not asked; neither can it ack. */
	assert_int_equal(rcv(t, 2, WIRE_INV_ACK, 0, 0, 0, NULL), UDSM_EPROTO);
	rcv_ok(t, 4, WIRE_INV_ACK, 0, 0, 0, NULL);
	/* The same sharer cannot ack twice. */
	assert_int_equal(rcv(t, 4, WIRE_INV_ACK, 0, 0, 0, NULL), UDSM_EPROTO);
	rcv_ok(t, 1, WIRE_INV_ACK, 0, 0, 0, NULL);
	expect_acts(t, "");
	v = dir(t, 0);
	assert_int_equal(v.sharers, B(2) | B(3));
	rcv_ok(t, 3, WIRE_INV_ACK, 0, 0, 0, NULL);
	expect_acts(t, "send 2 GRANT p0 f0 a0 l0");
	v = dir(t, 0);
	assert_int_equal(v.owner, 2);
	assert_int_equal(v.sharers, 0);
	assert_false(v.has_copy);

	/* A non-sharer gets DATA+EXCL: page 5 shared by 1 and 2 (with contents), 3 writes. */
	rcv_ok(t, 1, WIRE_GET_M, 0, 5, 0, NULL);
	rcv_ok(t, 2, WIRE_GET_S, 0, 5, 0, NULL);
	rcv_ok(t, 1, WIRE_FETCH_REPLY, 0, 5, 0, pattern(5));
	rcv_ok(t, 3, WIRE_GET_M, 0, 5, 0, NULL);
	clr(t);
	rcv_ok(t, 1, WIRE_INV_ACK, 0, 5, 0, NULL);
	rcv_ok(t, 2, WIRE_INV_ACK, 0, 5, 0, NULL);
	expect_acts(t, "send 3 DATA p5 f1 a0 l64");
	assert_int_equal(dir(t, 5).owner, 3);
	assert_true(eng_quiescent(t->e));
	t_free(t);
}

/*
 * Many home copies at once: more than the first few slabs of page buffers hold, some released
 * and their buffers used again for new copies. Every copy must keep its own contents.
 */
static void home_copy(struct t *t, uint64_t page, uint8_t seed)
{
	rcv_ok(t, 1, WIRE_GET_M, 0, page, 0, NULL);
	rcv_ok(t, 2, WIRE_GET_S, 0, page, 0, NULL);
	rcv_ok(t, 1, WIRE_FETCH_REPLY, 0, page, 0, pattern(seed));
	clr(t);
}

static void expect_copies(struct t *t, uint64_t from, uint64_t to, bool every_other)
{
	for (uint64_t k = from; k < to; k++) {
		struct eng_dir_view v = dir(t, 3 * k);

		if (every_other && k % 2) {
			assert_false(v.has_copy);
			continue;
		}
		assert_true(v.has_copy);
		assert_memory_equal(v.copy, pattern((uint8_t)(k % 251)), PS);
	}
}

static void test_home_copies(void **state)
{
	const uint64_t n = 1500; /* pages homed on node 0 (3k) with a copy: more than 8 slabs */
	struct t *t = t_new_4hop(0, 3, 6 * n, -1);

	(void)state;
	for (uint64_t k = 0; k < n; k++)
		home_copy(t, 3 * k, (uint8_t)(k % 251));
	expect_copies(t, 0, n, false);
	/* Node 2 upgrades every other page: the copy goes, its buffer is free again. */
	for (uint64_t k = 1; k < n; k += 2) {
		char want[80];

		snprintf(want, sizeof(want), "send 1 INV p%llu f0 a0 l0;send 2 GRANT p%llu f0 a0 l0",
			 (unsigned long long)(3 * k), (unsigned long long)(3 * k));
		rcv_ok(t, 2, WIRE_GET_M, 0, 3 * k, 0, NULL);
		rcv_ok(t, 1, WIRE_INV_ACK, 0, 3 * k, 0, NULL);
		expect_acts(t, want);
		assert_int_equal(dir(t, 3 * k).owner, 2);
	}
	expect_copies(t, 0, n, true);
	/* New copies take the released buffers first, then new ones. */
	for (uint64_t k = n; k < 2 * n; k++)
		home_copy(t, 3 * k, (uint8_t)(k % 251));
	expect_copies(t, 0, n, true);
	expect_copies(t, n, 2 * n, false);
	assert_true(eng_quiescent(t->e));
	t_free(t);
}

/*
 * Slabs whose buffers are all free again go back to the allocator once enough are free: the
 * copies of a run of pages released together free whole slabs, those of every other page
 * none; new copies after a trim are cut and filled as before.
 */
static void test_home_copies_trim(void **state)
{
	const uint64_t n = 3000; /* copies; the first 2400 released, then 600 more made */
	struct t *t = t_new_4hop(0, 3, 3 * (n + 600), -1);
	uint64_t used, kept, kept0;

	(void)state;
	for (uint64_t k = 0; k < n; k++)
		home_copy(t, 3 * k, (uint8_t)(k % 251));
	eng_page_buffers(t->e, &used, &kept0);
	assert_int_equal(used, n);
	assert_true(kept0 >= n);
	for (uint64_t k = 0; k < 2400; k++) {
		rcv_ok(t, 2, WIRE_GET_M, 0, 3 * k, 0, NULL);
		rcv_ok(t, 1, WIRE_INV_ACK, 0, 3 * k, 0, NULL);
		clr(t);
	}
	eng_page_buffers(t->e, &used, &kept);
	assert_int_equal(used, n - 2400);
	/* 2400 free, over the first trim's 1024: the slabs of the first ~1000 copies were
	 * given back, those of the rest stay (the next trim waits for twice what was kept). */
	assert_true(kept < kept0);
	assert_true(kept >= used);
	for (uint64_t k = 2400; k < n; k++) {
		struct eng_dir_view v = dir(t, 3 * k);

		assert_true(v.has_copy);
		assert_memory_equal(v.copy, pattern((uint8_t)(k % 251)), PS);
	}
	for (uint64_t k = n; k < n + 600; k++)
		home_copy(t, 3 * k, (uint8_t)(k % 251));
	for (uint64_t k = 2400; k < n + 600; k++) {
		struct eng_dir_view v = dir(t, 3 * k);

		assert_true(v.has_copy);
		assert_memory_equal(v.copy, pattern((uint8_t)(k % 251)), PS);
	}
	eng_page_buffers(t->e, &used, &kept);
	assert_int_equal(used, 1200);
	assert_true(eng_quiescent(t->e));
	t_free(t);
}

/* The sole sharer upgrading, and a sharer's upgrade overtaken by another writer. */
static void test_home_upgrade(void **state)
{
	struct t *t = t_new_4hop(0, 5, 10, -1);
	struct eng_dir_view v;

	(void)state;
	rcv_ok(t, 1, WIRE_GET_S, 0, 0, 0, NULL);
	clr(t);
	rcv_ok(t, 1, WIRE_GET_M, 0, 0, 0, NULL);
	expect_acts(t, "send 1 GRANT p0 f0 a0 l0");
	v = dir(t, 0);
	assert_int_equal(v.owner, 1);

	/* 1 and 2 share page 5; 2 asks for M; 1's GET_M is queued meanwhile. When 1's turn
	 * comes it was invalidated, so it is no sharer and gets the data. */
	rcv_ok(t, 1, WIRE_GET_S, 0, 5, 0, NULL);
	rcv_ok(t, 2, WIRE_GET_S, 0, 5, 0, NULL);
	clr(t);
	rcv_ok(t, 2, WIRE_GET_M, 0, 5, 0, NULL);
	expect_acts(t, "send 1 INV p5 f0 a0 l0");
	rcv_ok(t, 1, WIRE_GET_M, 0, 5, 0, NULL);
	expect_acts(t, "");
	assert_int_equal(dir(t, 5).queued, 1);
	rcv_ok(t, 1, WIRE_INV_ACK, 0, 5, 0, NULL);
	expect_acts(t, "send 2 GRANT p5 f0 a0 l0;send 2 FETCH p5 f0 a1 l0");
	rcv_ok(t, 2, WIRE_FETCH_REPLY, WIRE_F_ZERO, 5, 0, NULL);
	expect_acts(t, "send 1 DATA p5 f3 a0 l0");
	assert_int_equal(dir(t, 5).owner, 1);
	assert_true(eng_quiescent(t->e));
	t_free(t);
}

/*
 * An upgrade whose only other sharer is the home: the home drops its page and grants in one
 * step, without reading the page (no copy is kept). With another sharer still to answer, the
 * home keeps a copy before its page goes: the requester may be lost meanwhile.
 */
static void test_home_upgrade_own(void **state)
{
	struct t *t = t_new(0, 3, 8, -1);
	struct eng_dir_view v;
	struct udsm_stats st;
	unsigned reads;
	uint64_t invs;

	(void)state;
	assert_int_equal(eng_fault(t->e, 0, true), 0); /* the home writes page 0 */
	t->f.mem[0][0] = 42;
	rcv_ok(t, 1, WIRE_GET_S, 0, 0, 0, NULL);
	clr(t);
	reads = t->f.reads;
	eng_stats(t->e, &st);
	invs = st.invalidations;
	rcv_ok(t, 1, WIRE_GET_M, 0, 0, 0, NULL);
	expect_acts(t, "drop p0;send 1 GRANT p0 f0 a0 l0");
	assert_int_equal(t->f.reads, reads);
	eng_stats(t->e, &st);
	assert_int_equal(st.invalidations, invs + 1); /* the home's own copy, counted once */
	assert_int_equal(eng_state(t->e, 0), ENG_I);
	v = dir(t, 0);
	assert_int_equal(v.owner, 1);
	assert_int_equal(v.sharers, 0);
	assert_false(v.has_copy);
	assert_true(eng_quiescent(t->e));

	/* Page 3 (homed here too): the home, 1 and 2 share it; 1 upgrades and is lost before 2
	 * answers. */
	assert_int_equal(eng_fault(t->e, 3, true), 0);
	t->f.mem[3][0] = 43;
	rcv_ok(t, 1, WIRE_GET_S, 0, 3, 0, NULL);
	rcv_ok(t, 2, WIRE_GET_S, 0, 3, 0, NULL);
	clr(t);
	rcv_ok(t, 1, WIRE_GET_M, 0, 3, 0, NULL);
	expect_acts(t, "send 2 INV p3 f0 a0 l0;drop p3");
	v = dir(t, 3);
	assert_true(v.has_copy);
	assert_int_equal(((const uint8_t *)v.copy)[0], 43);
	eng_peer_lost(t->e, 1);
	rcv_ok(t, 2, WIRE_INV_ACK, 0, 3, 0, NULL);
	v = dir(t, 3);
	assert_int_equal(v.owner, -1);
	assert_true(v.has_copy);
	assert_int_equal(((const uint8_t *)v.copy)[0], 43);
	/* The home reads it again: from the copy it kept. */
	clr(t);
	assert_int_equal(eng_fault(t->e, 3, false), 0);
	expect_acts(t, "install p3 ro data");
	assert_int_equal(t->f.mem[3][0], 43);
	t_free(t);
}

/* Everything a home must refuse. */
static void test_home_errors(void **state)
{
	struct t *t = t_new(0, 3, 6, -1);
	struct eng_dir_view v;

	(void)state;
	/* Page out of range, page homed elsewhere. */
	rcv_eproto(t, 1, WIRE_GET_S, 0, 6, 0, NULL);
	rcv_eproto(t, 1, WIRE_GET_S, 0, UINT64_MAX, 0, NULL);
	rcv_eproto(t, 1, WIRE_GET_S, 0, 1, 0, NULL);
	rcv_eproto(t, 1, WIRE_GET_M, 0, 2, 0, NULL);
	rcv_eproto(t, 1, WIRE_INV_ACK, 0, 1, 0, NULL);
	rcv_eproto(t, 1, WIRE_FETCH_REPLY, 0, 2, 0, pattern(0));
	/* Requester-side messages from a node that is not the page's home. */
	rcv_eproto(t, 2, WIRE_DATA, 0, 1, 0, pattern(0));
	rcv_eproto(t, 1, WIRE_INV, 0, 2, 0, NULL);
	rcv_eproto(t, 2, WIRE_FETCH, 0, 1, 0, NULL);
	rcv_eproto(t, 2, WIRE_NACK, 0, 1, 0, NULL);
	rcv_eproto(t, 2, WIRE_GRANT, 0, 1, 0, NULL);
	rcv_eproto(t, 1, WIRE_DATA, 0, 0, 0, pattern(0)); /* page 0 is homed here */
	/* INV_ACK and FETCH_REPLY nobody asked for. */
	rcv_eproto(t, 1, WIRE_INV_ACK, 0, 0, 0, NULL);
	rcv_eproto(t, 1, WIRE_FETCH_REPLY, 0, 0, 0, pattern(0));
	rcv_eproto(t, 1, WIRE_FETCH_REPLY, WIRE_F_ZERO, 0, 0, NULL);
	/* Wrong sender id, invalid source, messages not for this phase. */
	{
		struct wire_msg m = { .type = WIRE_GET_S, .src = 2, .page = 0 };
		assert_int_equal(eng_recv(t->e, 1, &m), UDSM_EPROTO);
		m.src = 0;
		assert_int_equal(eng_recv(t->e, 0, &m), UDSM_EPROTO); /* from self */
		m.src = 3;
		assert_int_equal(eng_recv(t->e, 3, &m), UDSM_EPROTO); /* no such node */
		expect_acts(t, "");
	}
	rcv_eproto(t, 1, WIRE_HELLO, 0, 0, 0, NULL);
	rcv_eproto(t, 1, WIRE_BYE, 0, 0, 0, NULL);
	rcv_eproto(t, 1, WIRE_GO, 0, 0, 0, NULL);
	rcv_eproto(t, 1, 99, 0, 0, 0, NULL);

	/* Duplicate request from the same node: busy with it, or queued. */
	rcv_ok(t, 1, WIRE_GET_M, 0, 0, 0, NULL); /* owner 1 */
	rcv_ok(t, 2, WIRE_GET_S, 0, 0, 0, NULL); /* FETCH to 1, busy for 2 */
	clr(t);
	rcv_eproto(t, 2, WIRE_GET_S, 0, 0, 0, NULL);
	rcv_eproto(t, 2, WIRE_GET_M, 0, 0, 0, NULL);
	/* A GET from the owner. */
	rcv_eproto(t, 1, WIRE_GET_S, 0, 0, 0, NULL);
	rcv_eproto(t, 1, WIRE_GET_M, 0, 0, 0, NULL);
	/* A FETCH_REPLY from the wrong node, with EXCL; INV_ACK during a fetch. */
	rcv_eproto(t, 2, WIRE_FETCH_REPLY, 0, 0, 0, pattern(0));
	rcv_eproto(t, 1, WIRE_FETCH_REPLY, WIRE_F_EXCL, 0, 0, pattern(0));
	rcv_eproto(t, 1, WIRE_INV_ACK, 0, 0, 0, NULL);
	v = dir(t, 0);
	assert_int_equal(v.busy, WIRE_GET_S);
	assert_int_equal(v.owner, 1);
	assert_int_equal(v.queued, 0);
	rcv_ok(t, 1, WIRE_FETCH_REPLY, 0, 0, 0, pattern(3));
	expect_acts(t, "send 2 DATA p0 f0 a0 l64");
	/* A GET_S from a sharer. */
	rcv_eproto(t, 2, WIRE_GET_S, 0, 0, 0, NULL);
	rcv_eproto(t, 1, WIRE_GET_S, 0, 0, 0, NULL);
	/* Queued twice: node 1 upgrades (INV to 2 pending), 2 queues a GET_M, then again. */
	rcv_ok(t, 1, WIRE_GET_M, 0, 0, 0, NULL);
	expect_acts(t, "send 2 INV p0 f0 a0 l0");
	rcv_ok(t, 2, WIRE_GET_M, 0, 0, 0, NULL);
	rcv_eproto(t, 2, WIRE_GET_M, 0, 0, 0, NULL);
	rcv_eproto(t, 1, WIRE_GET_M, 0, 0, 0, NULL);
	assert_int_equal(dir(t, 0).queued, 1);
	/* Barrier messages only go to node 0, completions only come from node 0. */
	rcv_eproto(t, 1, WIRE_BARRIER_DONE, 0, 0, 0, NULL);
	t_free(t);

	t = t_new(1, 3, 6, -1);
	rcv_eproto(t, 2, WIRE_BARRIER, 0, 0, 0, NULL);
	rcv_eproto(t, 0, WIRE_BARRIER_DONE, 0, 0, 0, NULL); /* nothing pending */
	t_free(t);
}

/* Zero pages travel as ZERO with no payload, in both directions, and all-zero payloads are
 * turned into ZERO. */
static void test_home_zero(void **state)
{
	struct t *t = t_new_4hop(0, 3, 6, -1);
	static const uint8_t zeros[PS];
	struct eng_dir_view v;

	(void)state;
	rcv_ok(t, 1, WIRE_GET_M, 0, 0, 0, NULL);
	expect_acts(t, "send 1 DATA p0 f3 a0 l0");
	rcv_ok(t, 2, WIRE_GET_S, 0, 0, 0, NULL);
	/* The owner replies with a page of zeros but without the ZERO flag. */
	rcv_ok(t, 1, WIRE_FETCH_REPLY, 0, 0, 0, zeros);
	expect_acts(t, "send 1 FETCH p0 f0 a0 l0;send 2 DATA p0 f2 a0 l0");
	v = dir(t, 0);
	assert_true(v.zero);
	assert_false(v.has_copy);
	/* Non-zero contents are kept and sent with a payload. */
	rcv_ok(t, 2, WIRE_GET_M, 0, 0, 0, NULL);
	rcv_ok(t, 1, WIRE_INV_ACK, 0, 0, 0, NULL);
	expect_acts(t, "send 1 INV p0 f0 a0 l0;send 2 GRANT p0 f0 a0 l0");
	/* Node 2 read the page from its writer, then wrote it: migratory, so node 1's read
	 * takes it writable, with its payload. */
	rcv_ok(t, 1, WIRE_GET_S, 0, 0, 0, NULL);
	rcv_ok(t, 2, WIRE_FETCH_REPLY, 0, 0, 0, pattern(8));
	expect_acts(t, "send 2 FETCH p0 f0 a1 l0;send 1 DATA p0 f1 a0 l64");
	v = dir(t, 0);
	assert_false(v.zero);
	assert_int_equal(v.owner, 1);
	t_free(t);
}

/* Migratory sharing: read-then-write by the reader of a written page makes later reads
 * exclusive; a reader that does not write the page ends it. */
static void test_home_migratory(void **state)
{
	struct t *t = t_new_4hop(0, 3, 6, -1);

	(void)state;
	rcv_ok(t, 1, WIRE_GET_M, 0, 0, 0, NULL); /* node 1 writes */
	rcv_ok(t, 2, WIRE_GET_S, 0, 0, 0, NULL); /* node 2 reads it from node 1 */
	rcv_ok(t, 1, WIRE_FETCH_REPLY, 0, 0, 0, pattern(1));
	rcv_ok(t, 2, WIRE_GET_M, 0, 0, 0, NULL); /* ... and writes it */
	rcv_ok(t, 1, WIRE_INV_ACK, 0, 0, 0, NULL);
	expect_acts(t, "send 1 DATA p0 f3 a0 l0;send 1 FETCH p0 f0 a0 l0;send 2 DATA p0 f0 a0 l64;"
		       "send 1 INV p0 f0 a0 l0;send 2 GRANT p0 f0 a0 l0");
	/* Now migratory: a read takes the page away from its writer and hands it writable. */
	rcv_ok(t, 1, WIRE_GET_S, 0, 0, 0, NULL);
	rcv_ok(t, 2, WIRE_FETCH_REPLY, 0, 0, 0, pattern(2));
	expect_acts(t, "send 2 FETCH p0 f0 a1 l0;send 1 DATA p0 f1 a0 l64");
	/* Node 1 gives it back unchanged: it did not write, so this is the last hand-over. */
	rcv_ok(t, 2, WIRE_GET_S, 0, 0, 0, NULL);
	rcv_ok(t, 1, WIRE_FETCH_REPLY, 0, 0, 0, pattern(2));
	expect_acts(t, "send 1 FETCH p0 f0 a1 l0;send 2 DATA p0 f1 a0 l64");
	rcv_ok(t, 1, WIRE_GET_S, 0, 0, 0, NULL);
	expect_acts(t, "send 2 FETCH p0 f0 a0 l0"); /* an ordinary downgrade again */
	t_free(t);
}

/* ==========================================================================================
 * Peer loss.
 */

static void test_loss_owner(void **state)
{
	struct t *t = t_new_4hop(0, 5, 10, -1);
	struct eng_dir_view v;

	(void)state;
	rcv_ok(t, 1, WIRE_GET_M, 0, 0, 0, NULL); /* owner 1 */
	rcv_ok(t, 2, WIRE_GET_S, 0, 0, 0, NULL); /* fetch from 1, busy */
	rcv_ok(t, 3, WIRE_GET_M, 0, 0, 0, NULL); /* queued */
	rcv_ok(t, 4, WIRE_GET_S, 0, 0, 0, NULL); /* queued */
	clr(t);
	eng_peer_lost(t->e, 1);
	expect_acts(t, "send 2 NACK p0 f0 a0 l0;send 3 NACK p0 f0 a0 l0;send 4 NACK p0 f0 a0 l0");
	assert_false(eng_alive(t->e, 1));
	v = dir(t, 0);
	assert_true(v.lost);
	assert_int_equal(v.owner, -1);
	assert_int_equal(v.busy, 0);
	assert_int_equal(v.queued, 0);
	assert_true(eng_quiescent(t->e));
	/* A later requester gets NACK too. */
	rcv_ok(t, 2, WIRE_GET_S, 0, 0, 0, NULL);
	expect_acts(t, "send 2 NACK p0 f0 a0 l0");
	rcv_ok(t, 3, WIRE_GET_M, 0, 0, 0, NULL);
	expect_acts(t, "send 3 NACK p0 f0 a0 l0");
	/* The home itself faulting on the lost page: poisoned. */
	assert_int_equal(eng_fault(t->e, 0, false), 0);
	expect_acts(t, "poison p0");
	assert_int_equal(eng_state(t->e, 0), ENG_LOST);
	/* Messages from the dead node are refused; losing it twice is a no-op. */
	assert_int_equal(rcv(t, 1, WIRE_GET_S, 0, 5, 0, NULL), UDSM_EPROTO);
	eng_peer_lost(t->e, 1);
	eng_peer_lost(t->e, 0); /* self: ignored */
	expect_acts(t, "");
	assert_true(eng_alive(t->e, 0));
	/* Other pages still work. */
	rcv_ok(t, 2, WIRE_GET_M, 0, 5, 0, NULL);
	expect_acts(t, "send 2 DATA p5 f3 a0 l0");
	t_free(t);
}

/* The owner dies while the home has not started a fetch: the entry is lost, no NACK yet. */
static void test_loss_owner_idle(void **state)
{
	struct t *t = t_new(0, 3, 6, -1);

	(void)state;
	rcv_ok(t, 1, WIRE_GET_M, 0, 0, 0, NULL);
	clr(t);
	eng_peer_lost(t->e, 1);
	expect_acts(t, "");
	assert_true(dir(t, 0).lost);
	rcv_ok(t, 2, WIRE_GET_M, 0, 0, 0, NULL);
	expect_acts(t, "send 2 NACK p0 f0 a0 l0");
	t_free(t);
}

/* A sharer dies during an invalidation: the GET_M completes without its ack. */
static void test_loss_sharer(void **state)
{
	struct t *t = t_new(0, 4, 8, -1);
	struct eng_dir_view v;

	(void)state;
	for (unsigned n = 1; n <= 3; n++)
		rcv_ok(t, n, WIRE_GET_S, 0, 0, 0, NULL);
	rcv_ok(t, 1, WIRE_GET_M, 0, 0, 0, NULL);
	rcv_ok(t, 2, WIRE_INV_ACK, 0, 0, 0, NULL);
	clr(t);
	eng_peer_lost(t->e, 3);
	expect_acts(t, "send 1 GRANT p0 f0 a0 l0");
	v = dir(t, 0);
	assert_int_equal(v.owner, 1);
	assert_true(eng_quiescent(t->e));

	/* The requester of a GET_M dies while its acks are pending: the entry goes back to
	 * idle with the home copy, and the queued request behind it is served. */
	rcv_ok(t, 1, WIRE_GET_S, 0, 4, 0, NULL);
	rcv_ok(t, 2, WIRE_GET_S, 0, 4, 0, NULL);
	rcv_ok(t, 2, WIRE_GET_M, 0, 4, 0, NULL);
	clr(t);
	eng_peer_lost(t->e, 2);
	expect_acts(t, "");
	v = dir(t, 4);
	assert_int_equal(v.busy, WIRE_GET_M);
	rcv_ok(t, 1, WIRE_INV_ACK, 0, 4, 0, NULL);
	expect_acts(t, "");
	v = dir(t, 4);
	assert_int_equal(v.owner, -1);
	assert_int_equal(v.busy, 0);
	assert_int_equal(v.sharers, 0);
	assert_true(v.zero);
	t_free(t);
}

/* The requester of a fetch dies before the owner answers: the home keeps the contents. */
static void test_loss_requester(void **state)
{
	struct t *t = t_new(0, 3, 6, -1);
	struct eng_dir_view v;

	(void)state;
	rcv_ok(t, 1, WIRE_GET_M, 0, 0, 0, NULL);
	rcv_ok(t, 2, WIRE_GET_M, 0, 0, 0, NULL);
	clr(t);
	eng_peer_lost(t->e, 2);
	expect_acts(t, "");
	rcv_ok(t, 1, WIRE_FETCH_REPLY, 0, 0, 0, pattern(4));
	expect_acts(t, "");
	v = dir(t, 0);
	assert_int_equal(v.owner, -1);
	assert_int_equal(v.sharers, 0);
	assert_true(v.has_copy);
	assert_memory_equal(v.copy, pattern(4), PS);
	assert_true(eng_quiescent(t->e));
	t_free(t);
}

/* The home dies: pending local requests are poisoned; copies stay readable; a write fault or
 * a miss on its pages poisons. */
static void test_loss_home(void **state)
{
	struct t *t = t_new(0, 2, 12, -1);

	(void)state;
	/* Pages homed at node 1: 1 IS_D, 3 IM_D, 5 SM_A, 7 S, 9 M, 11 I. */
	assert_int_equal(eng_fault(t->e, 1, false), 0);
	assert_int_equal(eng_fault(t->e, 3, true), 0);
	assert_int_equal(eng_fault(t->e, 5, false), 0);
	rcv_ok(t, 1, WIRE_DATA, 0, 5, 0, pattern(5));
	assert_int_equal(eng_fault(t->e, 5, true), 0);
	assert_int_equal(eng_fault(t->e, 7, false), 0);
	rcv_ok(t, 1, WIRE_DATA, 0, 7, 0, pattern(7));
	assert_int_equal(eng_fault(t->e, 9, true), 0);
	rcv_ok(t, 1, WIRE_DATA, WIRE_F_EXCL, 9, 0, pattern(9));
	/* A page homed here, shared with node 1. */
	rcv_ok(t, 1, WIRE_GET_S, 0, 2, 0, NULL);
	clr(t);
	eng_peer_lost(t->e, 1);
	expect_acts(t, "poison p1;poison p3;drop p5;poison p5");
	assert_int_equal(eng_state(t->e, 1), ENG_LOST);
	assert_int_equal(eng_state(t->e, 3), ENG_LOST);
	assert_int_equal(eng_state(t->e, 5), ENG_LOST);
	assert_int_equal(eng_state(t->e, 7), ENG_S);
	assert_int_equal(eng_state(t->e, 9), ENG_M);
	assert_int_equal(dir(t, 2).sharers, 0);
	assert_true(eng_quiescent(t->e));
	assert_int_equal(eng_fault(t->e, 7, false), 0);
	expect_acts(t, "wake p7");
	assert_int_equal(eng_fault(t->e, 9, true), 0);
	expect_acts(t, "wake p9");
	assert_int_equal(eng_fault(t->e, 7, true), 0);
	expect_acts(t, "drop p7;poison p7");
	assert_int_equal(eng_fault(t->e, 11, false), 0);
	expect_acts(t, "poison p11");
	assert_int_equal(eng_state(t->e, 11), ENG_LOST);
	/* The survivor's own pages still work. */
	assert_int_equal(eng_fault(t->e, 2, true), 0);
	expect_acts(t, "install p2 rw zero");
	struct udsm_stats st;
	eng_stats(t->e, &st);
	assert_int_equal(st.poisoned, 5);
	t_free(t);
}

/* Read-ahead skips pages whose home is dead. */
static void test_loss_readahead(void **state)
{
	struct t *t = t_new(0, 3, 12, 8);

	(void)state;
	eng_peer_lost(t->e, 2);
	clr(t);
	assert_int_equal(eng_fault(t->e, 0, false), 0);
	assert_int_equal(eng_fault(t->e, 1, false), 0);
	/* Two windows of 2: 2..3 and 4..5; 2 and 5, homed on the lost node, are left alone. */
	expect_acts(t, "install p0 ro zero;send 1 GET_S p1 f0 a0 l0;install p3 ro zero;"
		       "send 1 GET_S p4 f0 a1 l0");
	assert_int_equal(eng_state(t->e, 2), ENG_I);
	assert_int_equal(eng_state(t->e, 5), ENG_I);
	t_free(t);
}

/* ==========================================================================================
 * Barriers.
 */

static void test_barrier(void **state)
{
	struct t *t0 = t_new(0, 3, 6, -1), *t1 = t_new(1, 3, 6, -1);

	(void)state;
	/* Node 1: BARRIER to node 0, a second one is -EBUSY, DONE completes it. */
	assert_int_equal(eng_barrier(t1->e), 0);
	expect_acts(t1, "send 0 BARRIER p0 f0 a0 l0");
	assert_int_equal(eng_barrier(t1->e), -EBUSY);
	expect_acts(t1, "");
	rcv_eproto(t1, 0, WIRE_BARRIER_DONE, 0, 0, 1, NULL); /* wrong epoch */
	rcv_ok(t1, 0, WIRE_BARRIER_DONE, 0, 0, 0, NULL);
	expect_acts(t1, "bdone 0");
	rcv_eproto(t1, 0, WIRE_BARRIER_DONE, 0, 0, 0, NULL); /* twice */
	assert_int_equal(eng_barrier(t1->e), 0);
	expect_acts(t1, "send 0 BARRIER p0 f0 a1 l0");

	/* Node 0 collects: completes when all three arrived, in any order. */
	rcv_ok(t0, 2, WIRE_BARRIER, 0, 0, 0, NULL);
	expect_acts(t0, "");
	assert_int_equal(eng_barrier(t0->e), 0);
	expect_acts(t0, "");
	assert_int_equal(eng_barrier(t0->e), -EBUSY);
	rcv_eproto(t0, 2, WIRE_BARRIER, 0, 0, 0, NULL); /* arrived twice */
	rcv_eproto(t0, 1, WIRE_BARRIER, 0, 0, 1, NULL); /* wrong epoch */
	rcv_ok(t0, 1, WIRE_BARRIER, 0, 0, 0, NULL);
	expect_acts(t0, "send 1 BARRIER_DONE p0 f0 a0 l0;send 2 BARRIER_DONE p0 f0 a0 l0;bdone 0");
	/* Barrier 1: node 0 arrives last. */
	rcv_ok(t0, 1, WIRE_BARRIER, 0, 0, 1, NULL);
	rcv_ok(t0, 2, WIRE_BARRIER, 0, 0, 1, NULL);
	expect_acts(t0, "");
	assert_int_equal(eng_barrier(t0->e), 0);
	expect_acts(t0, "send 1 BARRIER_DONE p0 f0 a1 l0;send 2 BARRIER_DONE p0 f0 a1 l0;bdone 0");
	t_free(t0);
	t_free(t1);
}

/* The coordinator's word on the next barrier's waiting: its releases carry what it set
 * (WIRE_F_BMODE, WIRE_F_BPOLL), each node keeps what its last release said, a failed one
 * says nothing; and only the coordinator collects. */
static void test_barrier_mode(void **state)
{
	struct t *t0 = t_new(0, 2, 6, -1), *t1 = t_new(1, 2, 6, -1);
	char want[128];

	(void)state;
	assert_true(eng_barrier_coord(t0->e));
	assert_false(eng_barrier_coord(t1->e));
	assert_int_equal(eng_barrier_told(t1->e), -1);
	/* Nothing set: nothing said. */
	rcv_ok(t0, 1, WIRE_BARRIER, 0, 0, 0, NULL);
	assert_int_equal(eng_barrier(t0->e), 0);
	expect_acts(t0, "send 1 BARRIER_DONE p0 f0 a0 l0;bdone 0");
	assert_int_equal(eng_barrier_told(t0->e), -1);
	/* Poll. */
	eng_barrier_mode(t0->e, 1);
	rcv_ok(t0, 1, WIRE_BARRIER, 0, 0, 1, NULL);
	assert_int_equal(eng_barrier(t0->e), 0);
	snprintf(want, sizeof(want), "send 1 BARRIER_DONE p0 f%d a1 l0;bdone 0",
		 WIRE_F_BMODE | WIRE_F_BPOLL);
	expect_acts(t0, want);
	assert_int_equal(eng_barrier_told(t0->e), 1); /* its own release, to itself */
	/* Sleep. */
	eng_barrier_mode(t0->e, 0);
	rcv_ok(t0, 1, WIRE_BARRIER, 0, 0, 2, NULL);
	assert_int_equal(eng_barrier(t0->e), 0);
	snprintf(want, sizeof(want), "send 1 BARRIER_DONE p0 f%d a2 l0;bdone 0", WIRE_F_BMODE);
	expect_acts(t0, want);
	assert_int_equal(eng_barrier_told(t0->e), 0);
	/* At node 1: what each release said. */
	assert_int_equal(eng_barrier(t1->e), 0);
	expect_acts(t1, "send 0 BARRIER p0 f0 a0 l0");
	rcv_ok(t1, 0, WIRE_BARRIER_DONE, WIRE_F_BMODE | WIRE_F_BPOLL, 0, 0, NULL);
	expect_acts(t1, "bdone 0");
	assert_int_equal(eng_barrier_told(t1->e), 1);
	assert_int_equal(eng_barrier(t1->e), 0);
	expect_acts(t1, "send 0 BARRIER p0 f0 a1 l0");
	rcv_ok(t1, 0, WIRE_BARRIER_DONE, WIRE_F_BMODE, 0, 1, NULL);
	expect_acts(t1, "bdone 0");
	assert_int_equal(eng_barrier_told(t1->e), 0);
	assert_int_equal(eng_barrier(t1->e), 0);
	expect_acts(t1, "send 0 BARRIER p0 f0 a2 l0");
	rcv_ok(t1, 0, WIRE_BARRIER_DONE, WIRE_F_FAIL, 0, 2, NULL);
	expect_acts(t1, "bdone -1003");
	assert_int_equal(eng_barrier_told(t1->e), -1);
	t_free(t0);
	t_free(t1);
}

/* A node that leaves with BYE does not fail barriers, unless it is node 0, the collector. */
static void test_barrier_leave(void **state)
{
	struct t *t0 = t_new(0, 3, 6, -1), *t1 = t_new(1, 3, 6, -1);

	(void)state;
	/* Node 2 leaves: node 0 completes a barrier of nodes 0 and 1 only. */
	rcv_ok(t0, 1, WIRE_BARRIER, 0, 0, 0, NULL);
	clr(t0);
	eng_peer_left(t0->e, 2);
	expect_acts(t0, "");
	assert_int_equal(eng_barrier(t0->e), 0);
	expect_acts(t0, "send 1 BARRIER_DONE p0 f0 a0 l0;bdone 0");

	/* Node 0 leaves while node 1 waits: the barrier fails, and so do later ones. */
	assert_int_equal(eng_barrier(t1->e), 0);
	clr(t1);
	eng_peer_left(t1->e, 0);
	expect_acts(t1, "bdone -1003");
	assert_int_equal(eng_barrier(t1->e), UDSM_EPEER);
	t_free(t0);
	t_free(t1);
}

static void test_barrier_loss(void **state)
{
	struct t *t0 = t_new(0, 3, 6, -1), *t1 = t_new(1, 3, 6, -1);

	(void)state;
	/* Node 0: 1 arrived, then 2 dies: 1 (and 0 if waiting) get FAIL. */
	rcv_ok(t0, 1, WIRE_BARRIER, 0, 0, 0, NULL);
	assert_int_equal(eng_barrier(t0->e), 0);
	clr(t0);
	eng_peer_lost(t0->e, 2);
	expect_acts(t0, "send 1 BARRIER_DONE p0 f4 a0 l0;bdone -1003");
	/* Later barriers fail: locally at once, and for arrivals from others. */
	assert_int_equal(eng_barrier(t0->e), UDSM_EPEER);
	rcv_ok(t0, 1, WIRE_BARRIER, 0, 0, 1, NULL);
	expect_acts(t0, "send 1 BARRIER_DONE p0 f4 a1 l0");

	/* Node 1 waiting: the loss fails it; the late FAIL from node 0 is ignored. */
	assert_int_equal(eng_barrier(t1->e), 0);
	clr(t1);
	eng_peer_lost(t1->e, 2);
	expect_acts(t1, "bdone -1003");
	rcv_ok(t1, 0, WIRE_BARRIER_DONE, WIRE_F_FAIL, 0, 0, NULL);
	expect_acts(t1, "");
	assert_int_equal(eng_barrier(t1->e), UDSM_EPEER);
	t_free(t0);
	t_free(t1);

	/* Node 1 learns of the failure from node 0 first. */
	t1 = t_new(1, 3, 6, -1);
	assert_int_equal(eng_barrier(t1->e), 0);
	clr(t1);
	rcv_ok(t1, 0, WIRE_BARRIER_DONE, WIRE_F_FAIL, 0, 0, NULL);
	expect_acts(t1, "bdone -1003");
	t_free(t1);

	/* Node 0 dies: a waiting node fails at once. */
	t1 = t_new(1, 3, 6, -1);
	assert_int_equal(eng_barrier(t1->e), 0);
	clr(t1);
	eng_peer_lost(t1->e, 0);
	expect_acts(t1, "bdone -1003");
	assert_int_equal(eng_barrier(t1->e), UDSM_EPEER);
	t_free(t1);
}

/* Read-ahead requests are speculative (GET_S arg 1): the home declines them (RA_SKIP) for a
 * page somebody owns or a busy entry, instead of taking the page from its writer. */
/*
 * Read-ahead streams: two bursts on their way at once; the arrival of a burst's first page
 * asks for one more window, up to RA_AHEAD (4) windows past the last fault, so a reader
 * that stopped costs at most that; a thread that overtakes the stream (a fault right at its
 * end) is still reading sequentially. Even pages are ours (zeros, served at once), odd ones
 * node 1's.
 */
static void test_readahead_stream(void **state)
{
	struct t *t = t_new(0, 2, 64, 4);
	uint64_t p;

	(void)state;
	assert_int_equal(eng_fault(t->e, 3, false), 0);
	assert_int_equal(eng_fault(t->e, 4, false), 0); /* sequential: windows of 2 */
	assert_int_equal(eng_state(t->e, 5), ENG_IS_D); /* 5..6 */
	assert_int_equal(eng_state(t->e, 7), ENG_IS_D); /* and 7..8 at once */
	assert_int_equal(eng_state(t->e, 9), ENG_I);
	/* Every request answered in page order, no thread faulting: 5 and 7 each ask for one
	 * more window (9..10, 11..12), 9 and 11 would go past 4 + 4 windows of 2. */
	for (p = 5; eng_state(t->e, p) == ENG_IS_D; p += 2)
		rcv_ok(t, 1, WIRE_DATA, 0, p, 0, pattern((unsigned)p));
	assert_int_equal(p, 13);
	assert_int_equal(eng_state(t->e, 12), ENG_S);
	assert_int_equal(eng_state(t->e, 13), ENG_I);
	/* The thread read 5..12 without faulting and faults at 13, the stream's end: still
	 * sequential, so the window grows to 4 (14..17) and is topped up to two (18..21). */
	clr(t);
	assert_int_equal(eng_fault(t->e, 13, false), 0);
	for (p = 15; p <= 21; p += 2)
		assert_int_equal(eng_state(t->e, p), ENG_IS_D);
	assert_int_equal(eng_state(t->e, 23), ENG_I);
	t_free(t);
}

static void test_readahead_skip(void **state)
{
	struct t *h = t_new(0, 3, 12, -1), *r = t_new(1, 3, 12, 4);

	(void)state;
	/* The home: owned by a writer that took it from another writer, or busy: declined;
	 * nobody owns it: served as usual; owned by the only node that ever wrote it (data
	 * written once, now scanned): fetched from it like any read. */
	rcv_ok(h, 1, WIRE_GET_M, 0, 3, 0, NULL);
	rcv_ok(h, 2, WIRE_GET_M, 0, 3, 0, NULL); /* 1 forwards it to 2 */
	rcv_ok(h, 1, WIRE_FWD_REPLY, 0, 3, 0, NULL);
	rcv_ok(h, 2, WIRE_FWD_ACK, 0, 3, 0, NULL);
	clr(h);
	rcv_ok(h, 1, WIRE_GET_S, 0, 3, 1, NULL);
	expect_acts(h, "send 1 RA_SKIP p3 f0 a0 l0");
	assert_int_equal(dir(h, 3).owner, 2);
	rcv_ok(h, 2, WIRE_GET_M, 0, 6, 0, NULL);
	rcv_ok(h, 1, WIRE_GET_M, 0, 6, 0, NULL); /* busy: a forward from 2 */
	clr(h);
	rcv_ok(h, 2, WIRE_GET_S, 0, 0, 1, NULL);
	expect_acts(h, "send 2 DATA p0 f2 a0 l0");
	rcv_ok(h, 2, WIRE_GET_M, 0, 9, 0, NULL);
	clr(h);
	rcv_ok(h, 1, WIRE_GET_S, 0, 9, 1, NULL);
	expect_acts(h, "send 2 FWD p9 f0 a1 l0");
	assert_int_equal(dir(h, 9).busy, WIRE_GET_S);
	rcv_eproto(h, 1, WIRE_GET_S, 0, 0, 2, NULL);
	rcv_eproto(h, 1, WIRE_GET_M, 0, 0, 1, NULL);
	t_free(h);

	/* The requester: a declined page goes back to I; one a thread faulted on meanwhile is
	 * asked for again, for real. Two windows of 2 go out at once: 4..5 and 6..7. */
	assert_int_equal(eng_fault(r->e, 2, false), 0);
	assert_int_equal(eng_fault(r->e, 3, false), 0);
	expect_acts(r, "send 2 GET_S p2 f0 a0 l0;send 0 GET_S p3 f0 a0 l0;install p4 ro zero;"
		       "send 2 GET_S p5 f0 a1 l0;install p7 ro zero;send 0 GET_S p6 f0 a1 l0");
	rcv_eproto(r, 0, WIRE_RA_SKIP, 0, 5, 0, NULL); /* not from its home */
	rcv_ok(r, 2, WIRE_RA_SKIP, 0, 5, 0, NULL);
	/* 5 was the first page of its burst still on its way: declined, it still moves the
	 * stream on by a window (8..9), as its arrival would have. */
	expect_acts(r, "send 0 GET_S p9 f0 a1 l0;send 2 GET_S p8 f0 a1 l0");
	assert_int_equal(eng_state(r->e, 5), ENG_I);
	rcv_eproto(r, 2, WIRE_RA_SKIP, 0, 5, 0, NULL); /* nothing pending any more */
	/* A miss on it now is a real one; the window grows to 4, but two bursts are on their
	 * way (6..7 and 8..9): nothing more yet. */
	assert_int_equal(eng_fault(r->e, 5, false), 0);
	expect_acts(r, "send 2 GET_S p5 f0 a0 l0");
	assert_int_equal(eng_fault(r->e, 6, false), 0); /* a thread joins the read-ahead */
	expect_acts(r, "");
	rcv_ok(r, 0, WIRE_RA_SKIP, 0, 6, 0, NULL);
	/* ... 6 is asked for again, for real, and, 6 being its burst's first page, the stream
	 * goes on: 10 and 11 (the end of the region). */
	expect_acts(r, "send 0 GET_S p6 f0 a0 l0;install p10 ro zero;send 2 GET_S p11 f0 a1 l0");
	assert_int_equal(eng_state(r->e, 6), ENG_IS_D);
	rcv_ok(r, 0, WIRE_DATA, 0, 6, 0, pattern(6));
	expect_acts(r, "install p6 ro data");
	t_free(r);
}

/* GET_S_SET / DATA_SET: each page of a set is a read-ahead GET_S of its own; the answers the
 * home can give at once travel in one DATA_SET (served, zero, declined). Home: node 0 of 4. */
static void test_readahead_sets(void **state)
{
	struct t *h = t_new_4hop(0, 4, 16, -1), *r = t_new(1, 4, 16, -1);
	uint8_t bm[WIRE_SET_BYTES] = { 0x11, 0x11 }; /* pages 0, 4, 8, 12 */
	uint8_t ans[WIRE_DATA_SET_FIXED + PS] = { 0 };
	struct wire_msg m = { .type = WIRE_GET_S_SET, .src = 1, .len = WIRE_SET_BYTES,
			      .page = 0, .payload = bm };
	struct eng_dir_view v;

	(void)state;
	/* Page 0: zeros. 4: contents at the home (3 wrote it, 2 read it). 8: owned by 3, its
	 * only writer: fetched. 12: busy (2 takes it from 3). */
	rcv_ok(h, 3, WIRE_GET_M, 0, 4, 0, NULL);
	rcv_ok(h, 2, WIRE_GET_S, 0, 4, 0, NULL);
	rcv_ok(h, 3, WIRE_FETCH_REPLY, 0, 4, 0, pattern(4));
	rcv_ok(h, 3, WIRE_GET_M, 0, 8, 0, NULL);
	rcv_ok(h, 3, WIRE_GET_M, 0, 12, 0, NULL);
	rcv_ok(h, 2, WIRE_GET_M, 0, 12, 0, NULL);
	clr(h);
	assert_int_equal(eng_recv(h->e, 1, &m), 0);
	expect_acts(h, "send 3 FETCH p8 f0 a0 l0;send 1 DATA_SET p0 f0 a0 l160");
	assert_int_equal(h->f.set[0], 0x11);                      /* served: 0, 4 */
	assert_int_equal(h->f.set[1], 0x00);
	assert_int_equal(h->f.set[WIRE_SET_BYTES], 0x01);         /* zero: 0 */
	assert_int_equal(h->f.set[2 * WIRE_SET_BYTES], 0x00);     /* declined: 12 */
	assert_int_equal(h->f.set[2 * WIRE_SET_BYTES + 1], 0x10);
	assert_memory_equal(h->f.set + WIRE_DATA_SET_FIXED, pattern(4), PS);
	v = dir(h, 4);
	assert_int_equal(v.sharers, B(1) | B(2) | B(3));
	assert_int_equal(dir(h, 0).sharers, B(1));
	assert_int_equal(dir(h, 8).owner, 3);
	/* A set reaching past the region, or an empty one: refused, nothing done. */
	m.page = 14;
	assert_int_equal(eng_recv(h->e, 1, &m), UDSM_EPROTO);
	memset(bm, 0, sizeof(bm));
	m.page = 0;
	assert_int_equal(eng_recv(h->e, 1, &m), UDSM_EPROTO);
	expect_acts(h, "");
	t_free(h);

	/* A home that queues at most one page's contents toward a peer at once answers the
	 * first page with contents and declines the rest. Its pages 4, 8 and 10 hold contents
	 * it wrote itself (staged together: 8 and 10, not given up, are made writable again at
	 * the end); 6 was never written. */
	t_set_pages = 1;
	h = t_new(0, 2, 16, -1);
	t_set_pages = 0;
	for (uint64_t p = 4; p <= 10; p += 2) {
		if (p == 6)
			continue;
		assert_int_equal(eng_fault(h->e, p, true), 0);
		memcpy(h->f.mem[p], pattern((unsigned)p), PS);
	}
	clr(h);
	memset(bm, 0, sizeof(bm));
	bm[0] = 0x55; /* pages 4, 6, 8, 10 */
	m.page = 4;
	assert_int_equal(eng_recv(h->e, 1, &m), 0);
	expect_acts(h, "stage p4 5100;protect p4;stage_end;send 1 DATA_SET p4 f0 a0 l160");
	assert_int_equal(h->f.set[0], 0x01);                  /* served: 4 */
	assert_int_equal(h->f.set[2 * WIRE_SET_BYTES], 0x54); /* declined: 6, 8, 10 */
	assert_int_equal(eng_state(h->e, 4), ENG_S);
	assert_int_equal(eng_state(h->e, 8), ENG_M);
	t_free(h);

	/* Requester: the answers as the DATA and RA_SKIP they stand for (a declined page a
	 * thread waits for is asked for again). */
	assert_int_equal(eng_fault(r->e, 0, false), 0);
	assert_int_equal(eng_fault(r->e, 4, false), 0);
	assert_int_equal(eng_fault(r->e, 8, false), 0);
	clr(r);
	ans[0] = 0x11;                      /* served 0, 4 */
	ans[WIRE_SET_BYTES] = 0x01;         /* 0 is zero */
	ans[2 * WIRE_SET_BYTES + 1] = 0x01; /* 8 declined */
	memcpy(ans + WIRE_DATA_SET_FIXED, pattern(5), PS);
	struct wire_msg d = { .type = WIRE_DATA_SET, .src = 0, .len = sizeof(ans), .page = 0,
			      .payload = ans };
	ans[WIRE_SET_BYTES] = 0x03; /* zero but not served: refused */
	assert_int_equal(eng_recv(r->e, 0, &d), UDSM_EPROTO);
	ans[WIRE_SET_BYTES] = 0x01;
	d.len = WIRE_DATA_SET_FIXED; /* a page short */
	assert_int_equal(eng_recv(r->e, 0, &d), UDSM_EPROTO);
	d.len = sizeof(ans);
	expect_acts(r, "");
	assert_int_equal(eng_recv(r->e, 0, &d), 0);
	expect_acts(r, "install p0 ro zero;install p4 ro data;send 0 GET_S p8 f0 a0 l0");
	assert_memory_equal(r->f.mem[4], pattern(5), PS);
	assert_int_equal(eng_state(r->e, 8), ENG_IS_D);
	t_free(r);
}

/* FETCH_SET: a home's read-ahead burst asks each owner for all the pages it fetches from it
 * in one message; the owner gives each up as for a FETCH (TO_S), its own FETCH_REPLY each,
 * having staged them (write-protect and read at once). Node 1 of 2 owns pages 2, 4, 6 and 8,
 * homed at node 0 (page % 2). */
static void test_fetch_sets(void **state)
{
	struct t *o = t_new(1, 2, 16, -1), *h = t_new(0, 2, 16, 8);
	uint8_t bm[WIRE_SET_BYTES] = { 0x15 }; /* pages 2, 4, 6 from page 2 */
	struct wire_msg m = { .type = WIRE_FETCH_SET, .src = 0, .len = WIRE_SET_BYTES,
			      .page = 2, .payload = bm };

	(void)state;
	for (uint64_t p = 2; p <= 8; p += 2) {
		assert_int_equal(eng_fault(o->e, p, true), 0);
		rcv_ok(o, 0, WIRE_DATA, WIRE_F_EXCL, p, 0, pattern((unsigned)p));
	}
	clr(o);
	/* A set reaching past the region, or an empty one: refused, nothing done. */
	m.page = 14;
	assert_int_equal(eng_recv(o->e, 0, &m), UDSM_EPROTO);
	memset(bm, 0, sizeof(bm));
	m.page = 2;
	assert_int_equal(eng_recv(o->e, 0, &m), UDSM_EPROTO);
	expect_acts(o, "");
	bm[0] = 0x15;
	assert_int_equal(eng_recv(o->e, 0, &m), 0);
	expect_acts(o, "stage p2 1500;protect p2;send 0 FETCH_REPLY p2 f0 a0 l64;"
		       "protect p4;send 0 FETCH_REPLY p4 f0 a0 l64;"
		       "protect p6;send 0 FETCH_REPLY p6 f0 a0 l64;stage_end");
	assert_int_equal(eng_state(o->e, 4), ENG_S);
	assert_int_equal(eng_state(o->e, 8), ENG_M);
	/* Every page is checked as a FETCH of its own: 4 is not Modified here any more. */
	bm[0] = 0x44; /* pages 4 and 8 */
	assert_int_equal(eng_recv(o->e, 0, &m), UDSM_EPROTO);
	t_free(o);

	/* The home: node 1 owns the even pages from 2 to 14; a sequential read here from page 0
	 * fetches them in bursts, one FETCH_SET per burst to node 1 (a lone page as a plain
	 * FETCH), two bursts on their way at once. */
	for (uint64_t p = 2; p <= 14; p += 2)
		rcv_ok(h, 1, WIRE_GET_M, 0, p, 0, NULL);
	clr(h);
	assert_int_equal(eng_fault(h->e, 0, false), 0);
	assert_int_equal(eng_fault(h->e, 1, false), 0);
	expect_acts(h, "install p0 ro zero;send 1 GET_S p1 f0 a0 l0;send 1 GET_S p3 f0 a1 l0;"
		       "send 1 FETCH p2 f0 a0 l0;send 1 GET_S p5 f0 a1 l0;send 1 FETCH p4 f0 a0 l0");
	rcv_ok(h, 1, WIRE_DATA, 0, 1, 0, pattern(1));
	rcv_ok(h, 1, WIRE_FETCH_REPLY, 0, 2, 0, pattern(2));
	rcv_ok(h, 1, WIRE_DATA, 0, 3, 0, pattern(3));
	/* 2 was its burst's first page: one more window (6..7) goes out. */
	expect_acts(h, "install p1 ro data;install p2 ro data;send 1 GET_S p7 f0 a1 l0;"
		       "send 1 FETCH p6 f0 a0 l0;install p3 ro data");
	/* A thread joins 4: the window grows to 4, but two bursts are on their way (4..5 and
	 * 6..7). When 4 arrives, 8..11 go out: 8 and 10 in one FETCH_SET, 9 and 11 in one
	 * GET_S_SET. */
	assert_int_equal(eng_fault(h->e, 4, false), 0);
	expect_acts(h, "");
	rcv_ok(h, 1, WIRE_FETCH_REPLY, 0, 4, 0, pattern(4));
	expect_acts(h, "install p4 ro data;send 1 GET_S_SET p9 f0 a0 l32;"
		       "send 1 FETCH_SET p8 f0 a0 l32");
	assert_int_equal(h->f.set[0], 0x05);
	assert_int_equal(dir(h, 8).busy, WIRE_GET_S);
	assert_int_equal(dir(h, 10).busy, WIRE_GET_S);
	rcv_ok(h, 1, WIRE_FETCH_REPLY, 0, 10, 0, pattern(10)); /* any order: independent pages */
	rcv_ok(h, 1, WIRE_FETCH_REPLY, 0, 8, 0, pattern(8));
	/* 8 was its burst's first page: the next burst goes out, 12..15. */
	expect_acts(h, "install p10 ro data;install p8 ro data;send 1 GET_S_SET p13 f0 a0 l32;"
		       "send 1 FETCH_SET p12 f0 a0 l32");
	assert_int_equal(eng_state(h->e, 8), ENG_S);
	assert_memory_equal(h->f.mem[10], pattern(10), PS);
	assert_int_equal(dir(h, 10).sharers, B(0) | B(1));
	assert_int_equal(dir(h, 10).owner, -1);
	t_free(h);
}

/* ==========================================================================================
 * 3-hop forwarding (docs/PROTOCOL.md, "Forwarding"). Three nodes; page 0 homed at node 0.
 */

#define FWD_ARG(mode, r) ((uint64_t)(mode) << 8 | (r))

/* The home: FWD instead of FETCH, busy until both the owner's FWD_REPLY and the requester's
 * FWD_ACK are in, in either order; what it must refuse meanwhile. */
static void test_fwd_home(void **state)
{
	struct t *t = t_new(0, 4, 8, -1);
	struct eng_dir_view v;

	(void)state;
	rcv_ok(t, 1, WIRE_GET_M, 0, 0, 0, NULL);
	expect_acts(t, "send 1 DATA p0 f3 a0 l0");
	/* A read by node 2: the owner forwards the page to it and keeps a copy. */
	rcv_ok(t, 2, WIRE_GET_S, 0, 0, 0, NULL);
	expect_acts(t, "send 1 FWD p0 f0 a2 l0");
	v = dir(t, 0);
	assert_int_equal(v.busy, WIRE_GET_S);
	assert_int_equal(v.fwd_req, 2);
	assert_int_equal(v.owner, 1);
	/* A write by node 3 waits behind it: the INV it leads to must not overtake the data. */
	rcv_ok(t, 3, WIRE_GET_M, 0, 0, 0, NULL);
	expect_acts(t, "");
	/* Not from the requester, not before it has the page, not twice. */
	rcv_eproto(t, 3, WIRE_FWD_ACK, 0, 0, 0, NULL);
	rcv_eproto(t, 2, WIRE_GET_M, 0, 0, 0, NULL);
	rcv_ok(t, 2, WIRE_FWD_ACK, 0, 0, 0, NULL);
	expect_acts(t, "");
	rcv_eproto(t, 2, WIRE_FWD_ACK, 0, 0, 0, NULL);
	rcv_eproto(t, 2, WIRE_GET_S, 0, 0, 0, NULL); /* it shares the page now */
	/* Once it has the page it may ask again (an upgrade): queued like any request. */
	rcv_ok(t, 2, WIRE_GET_M, 0, 0, 0, NULL);
	expect_acts(t, "");
	assert_int_equal(dir(t, 0).queued, 2);
	/* The owner's report: only from it, with the contents for a forward to S. */
	rcv_eproto(t, 3, WIRE_FWD_REPLY, 0, 0, 0, pattern(3));
	rcv_eproto(t, 1, WIRE_FWD_REPLY, 0, 0, 0, NULL);
	rcv_eproto(t, 1, WIRE_FETCH_REPLY, WIRE_F_EXCL, 0, 0, pattern(3));
	rcv_ok(t, 1, WIRE_FWD_REPLY, 0, 0, 0, pattern(3));
	/* Done: 1 and 2 share it, the home keeps the contents; node 3's GET_M is next. */
	expect_acts(t, "send 1 INV p0 f0 a0 l0;send 2 INV p0 f0 a0 l0");
	v = dir(t, 0);
	assert_int_equal(v.busy, WIRE_GET_M);
	assert_int_equal(v.fwd_req, -1);
	assert_int_equal(v.sharers, B(1) | B(2));
	assert_true(v.has_copy);
	assert_memory_equal(v.copy, pattern(3), PS);
	rcv_ok(t, 1, WIRE_INV_ACK, 0, 0, 0, NULL);
	rcv_ok(t, 2, WIRE_INV_ACK, 0, 0, 0, NULL);
	/* Node 3 owns it; node 2's queued upgrade finds it no sharer: a forward to I. */
	expect_acts(t, "send 3 DATA p0 f1 a0 l64;send 3 FWD p0 f0 a258 l0");
	rcv_eproto(t, 3, WIRE_FWD_REPLY, 0, 0, 0, pattern(4)); /* TO_I: no contents */
	rcv_ok(t, 3, WIRE_FWD_REPLY, 0, 0, 0, NULL);
	expect_acts(t, "");
	assert_int_equal(dir(t, 0).owner, 3); /* on record until the requester confirms */
	rcv_ok(t, 2, WIRE_FWD_ACK, 0, 0, 77, NULL);
	v = dir(t, 0);
	assert_int_equal(v.owner, 2);
	assert_int_equal(v.sharers, 0);
	assert_false(v.has_copy);
	assert_int_equal(v.busy, 0);
	assert_true(eng_quiescent(t->e));
	/* The home itself as requester or owner: no forwarding (nothing to save). */
	eng_fault(t->e, 0, false);
	expect_acts(t, "send 2 FETCH p0 f0 a0 l0");
	t_free(t);
}

/* A forwarded requester that acknowledged the page holds it: after a forward to I it can want
 * nothing more of it, after a forward to S only to write it (test_fwd_home). Anything else is
 * refused at once: queued, it would be served after the forward as the owner's request for its
 * own page, an engine invariant (fuzz_wire_engine found it, with the old owner dying). */
static void test_fwd_requester_asks_again(void **state)
{
	struct t *t = t_new(0, 3, 8, -1);

	(void)state;
	rcv_ok(t, 1, WIRE_GET_M, 0, 0, 0, NULL);
	expect_acts(t, "send 1 DATA p0 f3 a0 l0");
	rcv_ok(t, 2, WIRE_GET_M, 0, 0, 0, NULL);
	expect_acts(t, "send 1 FWD p0 f0 a258 l0");
	rcv_ok(t, 2, WIRE_FWD_ACK, 0, 0, 0, NULL);
	rcv_eproto(t, 2, WIRE_GET_M, 0, 0, 0, NULL);
	rcv_eproto(t, 2, WIRE_GET_S, 0, 0, 0, NULL);
	assert_int_equal(dir(t, 0).queued, 0);
	/* The old owner dies before its report: the forward ends there, node 2 owns the page. */
	eng_peer_lost(t->e, 1);
	assert_int_equal(dir(t, 0).owner, 2);
	assert_int_equal(dir(t, 0).busy, 0);
	t_free(t);
}

/* The owner and the requester. Node 1 of 3 owns page 0; node 2 asks. */
static void test_fwd_owner_requester(void **state)
{
	struct t *o = t_new(1, 3, 6, -1), *r = t_new(2, 3, 6, -1);

	(void)state;
	assert_int_equal(eng_fault(o->e, 0, true), 0);
	rcv_ok(o, 0, WIRE_DATA, WIRE_F_EXCL, 0, 0, pattern(5));
	clr(o);
	/* Only the home forwards, only a page held M, only to a valid third node. */
	rcv_eproto(o, 2, WIRE_FWD, 0, 0, FWD_ARG(WIRE_FETCH_TO_S, 2), NULL);
	rcv_eproto(o, 0, WIRE_FWD, 0, 0, FWD_ARG(WIRE_FETCH_TO_S, 1), NULL);
	rcv_eproto(o, 0, WIRE_FWD, 0, 0, FWD_ARG(WIRE_FETCH_TO_S, 0), NULL);
	rcv_eproto(o, 0, WIRE_FWD, 0, 0, FWD_ARG(7, 2), NULL);
	rcv_eproto(o, 0, WIRE_FWD, 0, 3, FWD_ARG(WIRE_FETCH_TO_S, 2), NULL);
	/* TO_S: protect, the page to the requester first, then the home; keep it read-only. */
	rcv_ok(o, 0, WIRE_FWD, 0, 0, FWD_ARG(WIRE_FETCH_TO_S, 2), NULL);
	expect_acts(o, "protect p0;send 2 FWD_DATA p0 f0 a0 l64;send 0 FWD_REPLY p0 f0 a0 l64");
	assert_int_equal(eng_state(o->e, 0), ENG_S);

	/* The requester installs it and confirms to the home. */
	assert_int_equal(eng_fault(r->e, 0, false), 0);
	expect_acts(r, "send 0 GET_S p0 f0 a0 l0");
	rcv_eproto(r, 1, WIRE_FWD_DATA, WIRE_F_ZERO, 3, 0, NULL); /* no request for page 3 */
	rcv_eproto(r, 0, WIRE_FWD_DATA, 0, 0, 0, pattern(5));    /* the home sends DATA */
	rcv_ok(r, 1, WIRE_FWD_DATA, 0, 0, 0, pattern(5));
	expect_acts(r, "install p0 ro data;send 0 FWD_ACK p0 f0 a0 l0");
	assert_int_equal(eng_state(r->e, 0), ENG_S);

	/* TO_I (a write miss, or a migratory read): the page goes writable, the owner drops
	 * it and tells the home without contents. */
	assert_int_equal(eng_fault(o->e, 3, true), 0);
	rcv_ok(o, 0, WIRE_DATA, WIRE_F_EXCL | WIRE_F_ZERO, 3, 0, NULL);
	clr(o);
	rcv_ok(o, 0, WIRE_FWD, 0, 3, FWD_ARG(WIRE_FETCH_TO_I, 2), NULL);
	expect_acts(o, "protect p3;send 2 FWD_DATA p3 f3 a0 l0;send 0 FWD_REPLY p3 f0 a0 l0;"
		       "drop p3");
	assert_int_equal(eng_state(o->e, 3), ENG_I);
	clr(r);
	assert_int_equal(eng_fault(r->e, 3, false), 0);
	rcv_ok(r, 1, WIRE_FWD_DATA, WIRE_F_EXCL | WIRE_F_ZERO, 3, 0, NULL);
	expect_acts(r, "send 0 GET_S p3 f0 a0 l0;install p3 rw zero;send 0 FWD_ACK p3 f0 a0 l0");
	assert_int_equal(eng_state(r->e, 3), ENG_M);

	/* A requester gone in the owner's view: a plain FETCH_REPLY, the home serves. */
	assert_int_equal(eng_fault(o->e, 0, true), 0);
	rcv_ok(o, 0, WIRE_GRANT, 0, 0, 0, NULL);
	eng_peer_lost(o->e, 2);
	clr(o);
	rcv_ok(o, 0, WIRE_FWD, 0, 0, FWD_ARG(WIRE_FETCH_TO_I, 2), NULL);
	expect_acts(o, "protect p0;send 0 FETCH_REPLY p0 f0 a0 l64;drop p0");
	t_free(o);
	t_free(r);
}

/* A requester learns that the forwarding owner died: FWD_NONE at once for what it waits for,
 * or when the home asks (FWD_ASK) after it learnt before it asked. */
static void test_fwd_requester_owner_dies(void **state)
{
	struct t *r = t_new(2, 4, 12, -1);

	(void)state;
	assert_int_equal(eng_fault(r->e, 0, false), 0);
	assert_int_equal(eng_fault(r->e, 4, true), 0);
	assert_int_equal(eng_fault(r->e, 1, false), 0); /* homed at node 1, which dies */
	clr(r);
	eng_peer_lost(r->e, 1);
	expect_acts(r, "send 0 FWD_NONE p0 f0 a1 l0;poison p1;send 0 FWD_NONE p4 f0 a1 l0");
	/* Node 3 died before we asked for page 8; the home asks when it learns. */
	eng_peer_lost(r->e, 3);
	clr(r);
	assert_int_equal(eng_fault(r->e, 8, false), 0);
	rcv_ok(r, 0, WIRE_FWD_ASK, 0, 8, 3, NULL);
	expect_acts(r, "send 0 GET_S p8 f0 a0 l0;send 0 FWD_NONE p8 f0 a3 l0");
	/* About a node we think alive, or a page we have: nothing (we answer later, or our
	 * FWD_ACK answered already). */
	rcv_ok(r, 0, WIRE_FWD_ASK, 0, 8, 1, NULL);
	rcv_ok(r, 0, WIRE_DATA, 0, 0, 0, pattern(1));
	clr(r);
	rcv_ok(r, 0, WIRE_FWD_ASK, 0, 0, 3, NULL);
	expect_acts(r, "");
	rcv_eproto(r, 0, WIRE_FWD_ASK, 0, 0, 2, NULL);
	/* RECALL: a Shared page goes back to the home, which lost its copy with the owner. */
	rcv_ok(r, 0, WIRE_RECALL, 0, 0, 0, NULL);
	expect_acts(r, "send 0 FWD_REPLY p0 f0 a0 l64");
	rcv_eproto(r, 0, WIRE_RECALL, 0, 8, 0, NULL);
	t_free(r);
}

/* The home when the owner or the requester dies in the middle of a forward. */
static void test_fwd_home_deaths(void **state)
{
	struct t *t;
	struct eng_dir_view v;

	(void)state;
	/* TO_S, the owner's contents in, the owner dies, nothing reached the requester: the
	 * home serves it from its copy. */
	t = t_new(0, 4, 8, -1);
	rcv_ok(t, 1, WIRE_GET_M, 0, 0, 0, NULL);
	rcv_ok(t, 2, WIRE_GET_S, 0, 0, 0, NULL);
	rcv_ok(t, 1, WIRE_FWD_REPLY, 0, 0, 0, pattern(2));
	clr(t);
	eng_peer_lost(t->e, 1);
	expect_acts(t, "");
	rcv_ok(t, 2, WIRE_FWD_NONE, 0, 0, 1, NULL);
	expect_acts(t, "send 2 DATA p0 f0 a0 l64");
	v = dir(t, 0);
	assert_int_equal(v.sharers, B(2));
	assert_memory_equal(v.copy, pattern(2), PS);
	assert_true(eng_quiescent(t->e));
	t_free(t);

	/* TO_S, the requester has it, the owner died before its FWD_REPLY: RECALL. */
	t = t_new(0, 4, 8, -1);
	rcv_ok(t, 1, WIRE_GET_M, 0, 0, 0, NULL);
	rcv_ok(t, 2, WIRE_GET_S, 0, 0, 0, NULL);
	rcv_ok(t, 2, WIRE_FWD_ACK, 0, 0, 0, NULL);
	clr(t);
	eng_peer_lost(t->e, 1);
	expect_acts(t, "send 2 RECALL p0 f0 a0 l0");
	assert_false(eng_quiescent(t->e));
	rcv_eproto(t, 3, WIRE_FWD_REPLY, 0, 0, 0, pattern(6));
	rcv_ok(t, 2, WIRE_FWD_REPLY, 0, 0, 0, pattern(6));
	v = dir(t, 0);
	assert_int_equal(v.sharers, B(2));
	assert_int_equal(v.owner, -1);
	assert_false(v.lost);
	assert_memory_equal(v.copy, pattern(6), PS);
	assert_true(eng_quiescent(t->e));
	t_free(t);

	/* TO_I, the owner dies without a word, the requester learnt it first: FWD_ASK, then
	 * FWD_NONE: the page died with its owner. */
	t = t_new(0, 4, 8, -1);
	rcv_ok(t, 1, WIRE_GET_M, 0, 0, 0, NULL);
	rcv_ok(t, 2, WIRE_GET_M, 0, 0, 0, NULL);
	clr(t);
	eng_peer_lost(t->e, 1);
	expect_acts(t, "send 2 FWD_ASK p0 f0 a1 l0");
	rcv_ok(t, 2, WIRE_FWD_NONE, 0, 0, 1, NULL);
	expect_acts(t, "send 2 NACK p0 f0 a0 l0");
	v = dir(t, 0);
	assert_true(v.lost);
	assert_true(eng_quiescent(t->e));
	t_free(t);

	/* TO_I, the owner dies after its FWD_REPLY; the requester confirms: it owns the page. */
	t = t_new(0, 4, 8, -1);
	rcv_ok(t, 1, WIRE_GET_M, 0, 0, 0, NULL);
	rcv_ok(t, 2, WIRE_GET_M, 0, 0, 0, NULL);
	rcv_ok(t, 1, WIRE_FWD_REPLY, 0, 0, 0, NULL);
	eng_peer_lost(t->e, 1);
	clr(t);
	rcv_ok(t, 2, WIRE_FWD_ACK, 0, 0, 0, NULL);
	expect_acts(t, "");
	assert_int_equal(dir(t, 0).owner, 2);
	assert_true(eng_quiescent(t->e));
	t_free(t);

	/* TO_S, the requester dies: the owner's contents make the home whole again. */
	t = t_new(0, 4, 8, -1);
	rcv_ok(t, 1, WIRE_GET_M, 0, 0, 0, NULL);
	rcv_ok(t, 2, WIRE_GET_S, 0, 0, 0, NULL);
	eng_peer_lost(t->e, 2);
	rcv_ok(t, 1, WIRE_FWD_REPLY, 0, 0, 0, pattern(8));
	v = dir(t, 0);
	assert_int_equal(v.sharers, B(1));
	assert_memory_equal(v.copy, pattern(8), PS);
	assert_true(eng_quiescent(t->e));
	t_free(t);

	/* A requester that told us the owner is dead to it before its request was served
	 * gets the page through the home (FETCH), never a forward it cannot receive. */
	t = t_new(0, 4, 8, -1);
	rcv_ok(t, 1, WIRE_GET_M, 0, 0, 0, NULL);
	rcv_ok(t, 3, WIRE_GET_M, 0, 0, 0, NULL);
	rcv_ok(t, 2, WIRE_FWD_NONE, 0, 4, 1, NULL); /* about another page: still recorded */
	rcv_ok(t, 2, WIRE_GET_S, 0, 0, 0, NULL);
	rcv_ok(t, 1, WIRE_FWD_REPLY, 0, 0, 0, NULL);
	rcv_ok(t, 3, WIRE_FWD_ACK, 0, 0, 0, NULL);
	clr(t);
	rcv_ok(t, 2, WIRE_GET_M, 0, 4, 0, NULL);
	expect_acts(t, "send 2 DATA p4 f3 a0 l0");
	t_free(t);
}

/* Leaves: the owner's PUTM crosses FWD; the requester gives a forwarded page back before
 * the old owner's FWD_REPLY arrived. */
static void test_fwd_leave(void **state)
{
	struct t *t = t_new(0, 4, 8, -1);
	struct eng_dir_view v;

	(void)state;
	rcv_ok(t, 1, WIRE_GET_M, 0, 0, 0, NULL);
	rcv_ok(t, 1, WIRE_LEAVE, 0, 0, 0, NULL);
	rcv_ok(t, 2, WIRE_GET_S, 0, 0, 0, NULL);
	expect_acts(t, "send 1 DATA p0 f3 a0 l0;send 1 LEAVE_ACK p0 f0 a0 l0;"
		       "send 1 FWD p0 f0 a2 l0");
	rcv_ok(t, 1, WIRE_PUTM, 0, 0, 0, pattern(9)); /* the leaver ignores the FWD */
	expect_acts(t, "send 2 DATA p0 f0 a0 l64");
	v = dir(t, 0);
	assert_int_equal(v.sharers, B(2));
	assert_int_equal(v.busy, 0);
	assert_true(eng_quiescent(t->e));

	/* Page 4: 3 owns it, 2 gets it forwarded writable, then leaves (PUTM) and says BYE
	 * before 3's FWD_REPLY came: the PUTM waits for the forward's end. */
	rcv_ok(t, 3, WIRE_GET_M, 0, 4, 0, NULL);
	rcv_ok(t, 2, WIRE_GET_M, 0, 4, 0, NULL);
	rcv_ok(t, 2, WIRE_FWD_ACK, 0, 4, 0, NULL);
	rcv_ok(t, 2, WIRE_LEAVE, 0, 0, 0, NULL);
	rcv_ok(t, 2, WIRE_PUTM, 0, 4, 0, pattern(10));
	clr(t);
	rcv_ok(t, 2, WIRE_BYE, 0, 0, 3, NULL);
	assert_false(eng_quiescent(t->e));
	rcv_ok(t, 3, WIRE_FWD_REPLY, 0, 4, 0, NULL);
	v = dir(t, 4);
	assert_int_equal(v.owner, -1);
	assert_int_equal(v.busy, 0);
	assert_memory_equal(v.copy, pattern(10), PS);
	assert_true(eng_quiescent(t->e));
	t_free(t);
}

/* ==========================================================================================
 * API edges.
 */


/* ------------------------------------------------------------------------------------------
 * Leaving (eng_leave, docs/PROTOCOL.md "Leaving").
 */

static void rcv_adopt(struct t *t, unsigned src, uint64_t page, const struct wire_adopt *a,
		      const void *data, bool ok)
{
	uint8_t buf[WIRE_ADOPT_FIXED + PS];
	struct wire_msg m = {
		.type = WIRE_ADOPT, .src = (uint16_t)src, .page = page, .payload = buf,
		.len = WIRE_ADOPT_FIXED + (data ? PS : 0),
		.flags = data || a->owner != WIRE_OWNER_NONE ? 0 : WIRE_F_ZERO,
	};
	int err;

	wire_adopt_encode(buf, a);
	if (data)
		memcpy(buf + WIRE_ADOPT_FIXED, data, PS);
	err = eng_recv(t->e, src, &m);
	if (ok && err)
		fail_msg("ADOPT: %s", eng_why(t->e));
	if (!ok)
		assert_int_equal(err, UDSM_EPROTO);
}

/* The home takes a page back from a leaving owner whose entry is idle. */
static void test_leave_putm_idle(void **state)
{
	struct t *t = t_new(0, 3, 9, -1);
	struct eng_dir_view v;

	(void)state;
	rcv_ok(t, 2, WIRE_GET_M, 0, 3, 0, NULL);
	expect_acts(t, "send 2 DATA p3 f3 a0 l0");
	/* Not leaving yet: a PUTM is a protocol error. */
	rcv_eproto(t, 2, WIRE_PUTM, 0, 3, 0, pattern(5));
	rcv_ok(t, 2, WIRE_LEAVE, 0, 0, 0, NULL);
	expect_acts(t, "send 2 LEAVE_ACK p0 f0 a0 l0");
	rcv_eproto(t, 2, WIRE_LEAVE, 0, 0, 0, NULL); /* twice */
	rcv_eproto(t, 2, WIRE_PUTM, 0, 6, 0, pattern(5)); /* a page it does not own */
	rcv_ok(t, 2, WIRE_PUTM, 0, 3, 0, pattern(5));
	expect_acts(t, "");
	v = dir(t, 3);
	assert_int_equal(v.owner, -1);
	assert_int_equal(v.sharers, 0);
	assert_true(v.has_copy);
	assert_memory_equal(v.copy, pattern(5), PS);
	rcv_ok(t, 1, WIRE_GET_S, 0, 3, 0, NULL);
	expect_acts(t, "send 1 DATA p3 f0 a0 l64");
	t_free(t);
}

/* PUTM crosses the home's FETCH: it is the FETCH_REPLY, and the leaver keeps no copy. */
static void test_leave_putm_crosses_fetch(void **state)
{
	struct t *t = t_new_4hop(0, 3, 9, -1);
	struct eng_dir_view v;

	(void)state;
	/* GET_S meets the leaver's Modified page. */
	rcv_ok(t, 2, WIRE_GET_M, 0, 3, 0, NULL);
	rcv_ok(t, 2, WIRE_LEAVE, 0, 0, 0, NULL);
	rcv_ok(t, 1, WIRE_GET_S, 0, 3, 0, NULL);
	expect_acts(t, "send 2 DATA p3 f3 a0 l0;send 2 LEAVE_ACK p0 f0 a0 l0;"
		       "send 2 FETCH p3 f0 a0 l0");
	rcv_ok(t, 2, WIRE_PUTM, 0, 3, 0, pattern(7));
	expect_acts(t, "send 1 DATA p3 f0 a0 l64");
	v = dir(t, 3);
	assert_int_equal(v.owner, -1);
	assert_int_equal(v.sharers, 1u << 1); /* not the leaver, unlike a FETCH_TO_S reply */
	assert_int_equal(v.busy, 0);
	assert_true(v.has_copy);
	assert_memory_equal(v.copy, pattern(7), PS);
	/* A late FETCH_REPLY would now be an error. */
	rcv_eproto(t, 2, WIRE_FETCH_REPLY, 0, 3, 0, pattern(7));

	/* GET_M meets it (a zero page this time): the requester becomes the owner. */
	rcv_ok(t, 2, WIRE_GET_M, 0, 6, 0, NULL);
	rcv_ok(t, 1, WIRE_GET_M, 0, 6, 0, NULL);
	expect_acts(t, "send 2 DATA p6 f3 a0 l0;send 2 FETCH p6 f0 a1 l0");
	rcv_ok(t, 2, WIRE_PUTM, WIRE_F_ZERO, 6, 0, NULL);
	expect_acts(t, "send 1 DATA p6 f3 a0 l0");
	v = dir(t, 6);
	assert_int_equal(v.owner, 1);
	assert_int_equal(v.sharers, 0);
	assert_true(eng_quiescent(t->e));
	t_free(t);
}

/* The leaver: Modified pages go home, a crossing FETCH is ignored, its own entries go to the
 * successor once every peer acknowledged, then BYE. */
static void test_leave_leaver(void **state)
{
	struct t *t = t_new(2, 3, 9, -1);
	struct wire_adopt a;

	(void)state;
	assert_false(eng_left(t->e));
	/* Modified: page 0 (home 0). Shared at node 1: page 5 (ours). Never used: page 8. */
	assert_int_equal(eng_fault(t->e, 0, true), 0);
	rcv_ok(t, 0, WIRE_DATA, WIRE_F_EXCL, 0, 0, pattern(1));
	memcpy(t->f.mem[0], pattern(2), PS); /* the application wrote it */
	rcv_ok(t, 1, WIRE_GET_M, 0, 5, 0, NULL);
	rcv_ok(t, 0, WIRE_GET_S, 0, 5, 0, NULL);
	rcv_ok(t, 1, WIRE_FETCH_REPLY, 0, 5, 0, pattern(3));
	clr(t);
	assert_int_equal(eng_leave(t->e), 0);
	expect_acts(t, "send 0 LEAVE p0 f0 a0 l0;send 1 LEAVE p0 f0 a0 l0;protect p0;"
		       "send 0 PUTM p0 f0 a0 l64;drop p0");
	assert_int_equal(eng_leave(t->e), -EALREADY);
	assert_int_equal(eng_state(t->e, 0), ENG_I);
	/* The home's FETCH crossed the PUTM: ignored. */
	rcv_ok(t, 0, WIRE_FETCH, 0, 0, WIRE_FETCH_TO_S, NULL);
	expect_acts(t, "");
	/* Still a home until every LEAVE_ACK is in. */
	rcv_ok(t, 0, WIRE_LEAVE_ACK, 0, 0, 0, NULL);
	rcv_eproto(t, 0, WIRE_LEAVE_ACK, 0, 0, 0, NULL);
	rcv_ok(t, 1, WIRE_GET_S, 0, 2, 0, NULL);
	expect_acts(t, "send 1 DATA p2 f2 a0 l0");
	assert_false(eng_left(t->e));
	rcv_ok(t, 1, WIRE_LEAVE_ACK, 0, 0, 0, NULL);
	/* Successor: node 0, the next after us. Pages 2 (shared by 1, zero) and 5 (shared by
	 * 0 and 1); page 8 is in its initial state and is not sent. */
	expect_acts(t, "send 0 ADOPT p2 f2 a0 l24;send 0 ADOPT p5 f0 a0 l88;"
		       "send 0 ADOPT_DONE p0 f0 a0 l0;send 0 BYE p0 f0 a0 l0;"
		       "send 1 BYE p0 f0 a0 l0");
	assert_int_equal(wire_adopt_decode(t->f.adopt, t->f.adopt_len, &a), 0);
	assert_int_equal(a.owner, WIRE_OWNER_NONE);
	assert_int_equal(a.sharers, 3);
	assert_memory_equal(t->f.adopt + WIRE_ADOPT_FIXED, pattern(3), PS);
	assert_true(eng_left(t->e));
	t_free(t);
}

/*
 * A paced leave (eng_ops.room): the links have room for one message at a time, so the PUTMs
 * and ADOPTs go out in steps. Between them: a home's FETCH for a page not given back yet, a
 * node that starts to leave too (its LEAVE_ACK waits behind our last PUTM), and the death of
 * the successor (the hand-over starts over with the next node). Every entry arrives.
 */
static void test_leave_paced(void **state)
{
	struct t *t = calloc(1, sizeof(*t));
	struct eng_ops ops = fake_ops;
	struct eng_config c = {
		.self = 2, .nodes = 4, .npages = 11, .page_size = PS, .readahead = -1,
		.ops = &ops, .ctx = &t->f,
	};
	const size_t big = 1 << 20, one = 1; /* room for anything; for one message */
	struct wire_adopt a;

	(void)state;
	assert_non_null(t);
	ops.room = f_room;
	assert_int_equal(eng_create(&c, &t->e), 0);
	for (unsigned n = 0; n < 4; n++)
		t->f.room[n] = big;
	/* Page p is homed at p % 4. Modified here: 0 and 4 (home 0), 1 (home 1). Homed here:
	 * 2 (zero, shared by 1), 6 (shared by 0 and 1), 10 (zero, shared by 3). */
	for (uint64_t p = 0; p < 5; p += 4) {
		assert_int_equal(eng_fault(t->e, p, true), 0);
		rcv_ok(t, 0, WIRE_DATA, WIRE_F_EXCL, p, 0, pattern((uint8_t)p));
	}
	assert_int_equal(eng_fault(t->e, 1, true), 0);
	rcv_ok(t, 1, WIRE_DATA, WIRE_F_EXCL, 1, 0, pattern(1));
	rcv_ok(t, 1, WIRE_GET_S, 0, 2, 0, NULL);
	rcv_ok(t, 1, WIRE_GET_M, 0, 6, 0, NULL);
	rcv_ok(t, 0, WIRE_GET_S, 0, 6, 0, NULL);
	rcv_ok(t, 1, WIRE_FETCH_REPLY, 0, 6, 0, pattern(6));
	rcv_ok(t, 3, WIRE_GET_S, 0, 10, 0, NULL);
	clr(t);

	/* Room toward node 0 for the LEAVE and one more message: the PUTM of page 0, then
	 * page 1's to node 1, then a pause at page 4. */
	t->f.room[0] = WIRE_HDR_LEN + one;
	assert_int_equal(eng_leave(t->e), 0);
	expect_acts(t, "send 0 LEAVE p0 f0 a0 l0;send 1 LEAVE p0 f0 a0 l0;"
		       "send 3 LEAVE p0 f0 a0 l0;protect p0;send 0 PUTM p0 f0 a0 l64;drop p0;"
		       "protect p1;send 1 PUTM p1 f0 a0 l64;drop p1");
	assert_int_equal(eng_paced(t->e), 0);
	assert_int_equal(eng_leave_moved(t->e), 2); /* the progress a leave's bound watches */
	eng_resume(t->e); /* no room yet: nothing */
	expect_acts(t, "");
	assert_int_equal(eng_leave_moved(t->e), 2);
	assert_int_equal(eng_paced(t->e), 0);
	/* Node 1 leaves too (our LEAVEs crossed): acked only once every PUTM is out. */
	rcv_ok(t, 1, WIRE_LEAVE, 0, 0, 0, NULL);
	expect_acts(t, "");
	/* The home of page 4 wants it before our PUTM went out: answered as usual (a reply
	 * is not paced). Page 4 is no longer ours to give back: the put-back is over, and the
	 * LEAVE_ACK node 1 waited for goes. */
	rcv_ok(t, 0, WIRE_FETCH, 0, 4, WIRE_FETCH_TO_S, NULL);
	expect_acts(t, "protect p4;send 0 FETCH_REPLY p4 f0 a0 l64;send 1 LEAVE_ACK p0 f0 a0 l0");
	assert_int_equal(eng_state(t->e, 4), ENG_S);
	assert_int_equal(eng_paced(t->e), -1);
	eng_resume(t->e); /* nothing to resume */
	expect_acts(t, "");
	assert_false(eng_left(t->e));

	/* Every LEAVE_ACK in: the entries go to node 3, one at a time. */
	t->f.room[3] = one;
	rcv_ok(t, 0, WIRE_LEAVE_ACK, 0, 0, 0, NULL);
	rcv_ok(t, 1, WIRE_LEAVE_ACK, 0, 0, 0, NULL);
	expect_acts(t, "");
	rcv_ok(t, 3, WIRE_LEAVE_ACK, 0, 0, 0, NULL);
	expect_acts(t, "send 3 ADOPT p2 f2 a0 l24");
	assert_int_equal(eng_paced(t->e), 3);
	t->f.room[3] = one;
	eng_resume(t->e);
	expect_acts(t, "send 3 ADOPT p6 f0 a0 l88");
	assert_int_equal(eng_paced(t->e), 3);
	assert_int_equal(eng_leave_moved(t->e), 2 + 3 + 2); /* PUTMs, LEAVE_ACKs, ADOPTs */

	/* Node 3 dies before the rest: it dropped its sharer bit of page 10, whose entry is
	 * back to its initial state; node 1 is leaving, so node 0 takes over, from the start. */
	t->f.room[0] = one;
	eng_peer_lost(t->e, 3);
	expect_acts(t, "send 0 ADOPT p2 f2 a0 l24");
	assert_int_equal(eng_paced(t->e), 0);
	assert_false(eng_left(t->e));
	t->f.room[0] = one;
	eng_resume(t->e);
	expect_acts(t, "send 0 ADOPT p6 f0 a0 l88");
	assert_int_equal(wire_adopt_decode(t->f.adopt, t->f.adopt_len, &a), 0);
	assert_int_equal(a.owner, WIRE_OWNER_NONE);
	assert_int_equal(a.sharers, B(0) | B(1));
	assert_memory_equal(t->f.adopt + WIRE_ADOPT_FIXED, pattern(6), PS);
	/* Page 10 is not sent; ADOPT_DONE says barriers fail (WIRE_F_FAIL: a node died). */
	t->f.room[0] = one;
	eng_resume(t->e);
	expect_acts(t, "send 0 ADOPT_DONE p0 f4 a0 l0;send 0 BYE p0 f0 a0 l0;"
		       "send 1 BYE p0 f0 a0 l0");
	assert_true(eng_left(t->e));
	assert_int_equal(eng_paced(t->e), -1);
	t_free(t);
}

/* The successor and a requester: requests wait for the BYE, then go to the new home. */
static void test_leave_adopt(void **state)
{
	struct t *t0 = t_new(0, 3, 9, -1), *t1 = t_new(1, 3, 9, -1);
	struct wire_adopt a = { .owner = WIRE_OWNER_NONE, .last_rd = 0xff, .sharers = 0 };
	struct eng_dir_view v;

	(void)state;
	/* Node 1 reads page 5 (home 2) once node 2 announced its leave: kept back. */
	rcv_ok(t1, 2, WIRE_LEAVE, 0, 0, 0, NULL);
	expect_acts(t1, "send 2 LEAVE_ACK p0 f0 a0 l0");
	assert_int_equal(eng_fault(t1->e, 5, false), 0);
	expect_acts(t1, "");
	assert_int_equal(eng_state(t1->e, 5), ENG_IS_D);
	assert_false(eng_quiescent(t1->e));
	rcv_ok(t1, 2, WIRE_BYE, 0, 0, 0, NULL); /* successor: node 0 */
	expect_acts(t1, "send 0 GET_S p5 f0 a0 l0");
	assert_int_equal(eng_home(t1->e, 5), 0);
	assert_false(eng_alive(t1->e, 2));

	/* Node 0, the successor, gets the GET_S before the entry: stashed. */
	rcv_ok(t0, 2, WIRE_LEAVE, 0, 0, 0, NULL);
	clr(t0);
	rcv_ok(t0, 1, WIRE_GET_S, 0, 5, 0, NULL);
	expect_acts(t0, "");
	rcv_eproto(t0, 1, WIRE_ADOPT_DONE, 0, 0, 0, NULL); /* node 1 is not leaving */
	a.owner = 2;
	rcv_adopt(t0, 2, 5, &a, NULL, false); /* the leaver as owner */
	a.owner = WIRE_OWNER_NONE;
	a.flags = WIRE_ADOPT_LOST;
	a.sharers = 1u << 1;
	rcv_adopt(t0, 2, 5, &a, NULL, false); /* lost, yet shared */
	a.flags = 0;
	a.sharers = 1u << 2;
	rcv_adopt(t0, 2, 5, &a, pattern(9), false); /* the leaver as a sharer */
	a.sharers = 0;
	rcv_adopt(t0, 2, 5, &a, pattern(9), true);
	expect_acts(t0, "");
	rcv_ok(t0, 2, WIRE_ADOPT_DONE, 0, 0, 0, NULL);
	rcv_eproto(t0, 2, WIRE_BYE, 0, 0, 2, NULL); /* itself as successor */
	rcv_ok(t0, 2, WIRE_BYE, 0, 0, 0, NULL);
	expect_acts(t0, "send 1 DATA p5 f0 a0 l64");
	v = dir(t0, 5);
	assert_int_equal(v.sharers, 1u << 1);
	assert_int_equal(eng_home(t0->e, 8), 0); /* not sent: initial state, homed here now */
	v = dir(t0, 8);
	assert_true(v.zero);
	assert_true(eng_quiescent(t0->e));
	t_free(t0);
	t_free(t1);
}

/* Node 0, which collects barriers, leaves: its successor takes the barrier in progress over. */
static void test_leave_coordinator(void **state)
{
	struct t *t1 = t_new(1, 3, 9, -1);

	(void)state;
	rcv_ok(t1, 0, WIRE_LEAVE, 0, 0, 0, NULL);
	clr(t1);
	/* Our arrival waits for the hand-over; node 2 had arrived at node 0. */
	assert_int_equal(eng_barrier(t1->e), 0);
	expect_acts(t1, "");
	rcv_ok(t1, 0, WIRE_ADOPT_DONE, 0, 1u << 2, WIRE_ADOPT_COORD | 0, NULL);
	expect_acts(t1, "");
	rcv_ok(t1, 0, WIRE_BYE, 0, 0, 1, NULL);
	expect_acts(t1, "send 2 BARRIER_DONE p0 f0 a0 l0;bdone 0");
	/* And the next barrier is collected here. */
	assert_int_equal(eng_barrier(t1->e), 0);
	rcv_ok(t1, 2, WIRE_BARRIER, 0, 0, 1, NULL);
	expect_acts(t1, "send 2 BARRIER_DONE p0 f0 a1 l0;bdone 0");
	t_free(t1);
}

/* ==========================================================================================
 * The home map: the default chunk layout, and re-homing a range.
 */

/* Chunks of 2 pages over 3 nodes: page p is homed at (p / 2) % 3. */
static void test_home_layout(void **state)
{
	struct t *t = calloc(1, sizeof(*t));
	struct eng_config c = {
		.self = 1, .nodes = 3, .npages = 11, .page_size = PS, .readahead = -1,
		.home_chunk = 2, .ops = &fake_ops,
	};

	(void)state;
	assert_non_null(t);
	c.ctx = &t->f;
	assert_int_equal(eng_create(&c, &t->e), 0);
	for (uint64_t p = 0; p < 11; p++)
		assert_int_equal(eng_home(t->e, p), (p / 2) % 3);
	assert_int_equal(eng_home_run(t->e, 0), 2);
	assert_int_equal(eng_home_run(t->e, 3), 4);
	assert_int_equal(eng_home_run(t->e, 10), 11); /* the last chunk is cut by the end */
	/* Page 2 is ours, page 1 is node 0's. */
	rcv_ok(t, 2, WIRE_GET_S, 0, 2, 0, NULL);
	expect_acts(t, "send 2 DATA p2 f2 a0 l0");
	rcv_eproto(t, 2, WIRE_GET_S, 0, 1, 0, NULL);
	assert_int_equal(eng_fault(t->e, 4, false), 0);
	expect_acts(t, "send 2 GET_S p4 f0 a0 l0");
	t_free(t);
}

/* The place module: block shares, cyclic, a node, cut ranges, segment ends. */
static void test_place_map(void **state)
{
	struct place m;

	(void)state;
	assert_int_equal(place_default_chunk(1u << 20, 4), 64);
	assert_int_equal(place_default_chunk(256, 2), 32);
	assert_int_equal(place_default_chunk(5, 8), 1);
	assert_int_equal(place_init(&m, 4, 100, 8), 0);
	/* 10 pages in 4 shares: floor(i * 10 / 4) = 0, 2, 5, 7. */
	assert_int_equal(place_set(&m, 20, 10, PLACE_BLOCK), 0);
	static const unsigned want[10] = { 0, 0, 1, 1, 1, 2, 2, 3, 3, 3 };
	for (unsigned o = 0; o < 10; o++)
		assert_int_equal(place_origin(&m, 20 + o), want[o]);
	assert_int_equal(place_run_end(&m, 20), 22);
	assert_int_equal(place_run_end(&m, 23), 25);
	assert_int_equal(place_run_end(&m, 28), 30);
	assert_int_equal(place_origin(&m, 19), 2); /* default: (19 / 8) % 4 */
	assert_int_equal(place_run_end(&m, 17), 20); /* the chunk is cut by the range */
	assert_int_equal(place_set(&m, 40, 5, PLACE_CYCLIC), 0);
	assert_int_equal(place_origin(&m, 41), 1);
	assert_int_equal(place_origin(&m, 44), 0);
	assert_int_equal(place_set(&m, 60, 7, 3), 0);
	assert_int_equal(place_origin(&m, 66), 3);
	assert_int_equal(place_run_end(&m, 61), 67);
	/* Cutting the middle out of the block leaves its other pages where they were. */
	assert_int_equal(place_set(&m, 24, 2, PLACE_DEFAULT), 0);
	assert_int_equal(m.n, 4);
	for (unsigned o = 0; o < 10; o++)
		if (o != 4 && o != 5)
			assert_int_equal(place_origin(&m, 20 + o), want[o]);
	assert_int_equal(place_origin(&m, 24), (24 / 8) % 4);
	assert_int_equal(place_set(&m, 0, 100, PLACE_DEFAULT), 0);
	assert_int_equal(m.n, 0);
	assert_int_equal(place_set(&m, 99, 2, 0), -EINVAL);
	assert_int_equal(place_set(&m, 0, 1, 4), -EINVAL);
	place_fini(&m);
}

/* Re-homing pages 0..3 of node 0 (of 2) to node 1: copies dropped, entries reset, the fault
 * that met the frozen range served by the new home after the thaw. */
static void test_rehome(void **state)
{
	struct t *t = t_new(0, 2, 8, -1);
	struct eng_dir_view v;

	(void)state;
	/* Page 1 (node 1's) read here; page 0 (ours) written by node 1; page 2 written here. */
	assert_int_equal(eng_fault(t->e, 1, false), 0);
	rcv_ok(t, 1, WIRE_DATA, 0, 1, 0, pattern(1));
	rcv_ok(t, 1, WIRE_GET_M, 0, 0, 0, NULL);
	assert_int_equal(eng_fault(t->e, 2, true), 0);
	clr(t);
	assert_int_equal(eng_state(t->e, 1), ENG_S);
	assert_int_equal(eng_state(t->e, 2), ENG_M);
	assert_int_equal(dir(t, 0).owner, 1);

	assert_int_equal(eng_rehome(t->e, 1), -EINVAL); /* nothing frozen */
	assert_int_equal(eng_freeze(t->e, 0, 4), 0);
	assert_int_equal(eng_freeze(t->e, 4, 1), -EBUSY);
	assert_true(eng_frozen_quiet(t->e));
	assert_int_equal(eng_fault(t->e, 3, false), 0); /* kept: no request */
	assert_int_equal(eng_fault(t->e, 1, false), 0); /* a stale fault: woken */
	expect_acts(t, "wake p1");
	assert_int_equal(eng_rehome(t->e, 2), -EINVAL); /* no node 2 */
	assert_int_equal(eng_rehome(t->e, 1), 0);
	expect_acts(t, "drop p1;drop p2");
	for (uint64_t p = 0; p < 8; p++) {
		assert_int_equal(eng_home(t->e, p), p < 4 ? 1 : p % 2);
		if (p < 4)
			assert_int_equal(eng_state(t->e, p), ENG_I);
	}
	assert_int_equal(eng_dir(t->e, 0, &v), -EINVAL); /* not ours any more */
	eng_thaw(t->e);
	expect_acts(t, "send 1 GET_S p3 f0 a0 l0");
	rcv_ok(t, 1, WIRE_DATA, WIRE_F_ZERO, 3, 0, NULL);
	expect_acts(t, "install p3 ro zero");
	/* A request of node 1 for a page no longer ours: refused. */
	rcv_eproto(t, 1, WIRE_GET_S, 0, 2, 0, NULL);

	/* Back to the default layout while a request of ours for the range is in flight: not
	 * quiet, re-homing refused, until the answer is in. */
	assert_int_equal(eng_fault(t->e, 0, false), 0);
	expect_acts(t, "send 1 GET_S p0 f0 a0 l0");
	assert_int_equal(eng_freeze(t->e, 0, 4), 0);
	assert_false(eng_frozen_quiet(t->e));
	assert_int_equal(eng_rehome(t->e, PLACE_DEFAULT), -EAGAIN);
	rcv_ok(t, 1, WIRE_DATA, WIRE_F_ZERO, 0, 0, NULL);
	expect_acts(t, "install p0 ro zero");
	assert_true(eng_frozen_quiet(t->e));
	assert_int_equal(eng_rehome(t->e, PLACE_DEFAULT), 0);
	expect_acts(t, "drop p0;drop p3");
	eng_thaw(t->e);
	for (uint64_t p = 0; p < 8; p++)
		assert_int_equal(eng_home(t->e, p), p % 2);
	v = dir(t, 0); /* ours again, in its initial state */
	assert_true(v.zero);
	assert_int_equal(v.owner, -1);
	assert_int_equal(v.sharers, 0);
	assert_true(eng_quiescent(t->e));
	t_free(t);
}

static void test_api(void **state)
{
	struct eng *e = NULL;
	struct eng_config c = {
		.self = 0, .nodes = 2, .npages = 4, .page_size = PS, .ops = &fake_ops,
	};
	struct fake f = { .len = 0 };
	struct eng_dir_view v;

	(void)state;
	c.ctx = &f;
	assert_int_equal(eng_create(NULL, &e), -EINVAL);
	c.nodes = 0;
	assert_int_equal(eng_create(&c, &e), -EINVAL);
	c.nodes = UDSM_MAX_NODES + 1;
	assert_int_equal(eng_create(&c, &e), -EINVAL);
	c.nodes = 2;
	c.self = 2;
	assert_int_equal(eng_create(&c, &e), -EINVAL);
	c.self = 1;
	c.npages = 0;
	assert_int_equal(eng_create(&c, &e), -EINVAL);
	c.npages = 4;
	c.page_size = 60;
	assert_int_equal(eng_create(&c, &e), -EINVAL);
	c.page_size = WIRE_PAGE_MAX * 2;
	assert_int_equal(eng_create(&c, &e), -EINVAL);
	c.page_size = PS;
	c.ops = NULL;
	assert_int_equal(eng_create(&c, &e), -EINVAL);
	c.ops = &fake_ops;
	assert_int_equal(eng_create(&c, &e), 0);
	assert_int_equal(eng_fault(e, 4, false), -EINVAL);
	assert_int_equal(eng_state(e, 4), -EINVAL);
	assert_int_equal(eng_dir(e, 0, &v), -EINVAL); /* homed at node 0 */
	assert_int_equal(eng_dir(e, 5, &v), -EINVAL);
	assert_int_equal(eng_dir(e, 3, &v), 0);
	assert_int_equal(eng_home(e, 3), 1);
	assert_true(eng_alive(e, 0));
	assert_false(eng_alive(e, 2));
	assert_string_equal(eng_state_name(ENG_SM_A), "SM_A");
	assert_string_equal(eng_state_name(99), "?");
	assert_true(eng_quiescent(e));
	eng_destroy(e);
	eng_destroy(NULL);

	/* More nodes than pages: a node may be the home of no page at all. */
	c.nodes = 64;
	c.self = 63;
	c.npages = 1;
	assert_int_equal(eng_create(&c, &e), 0);
	assert_true(eng_quiescent(e));
	assert_int_equal(eng_dir(e, 0, &v), -EINVAL);
	eng_destroy(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_requester_table),
		cmocka_unit_test(test_requester_data),
		cmocka_unit_test(test_owner_take),
		cmocka_unit_test(test_requester_local_home),
		cmocka_unit_test(test_requester_readahead),
		cmocka_unit_test(test_home_idle),
		cmocka_unit_test(test_home_fifo),
		cmocka_unit_test(test_home_inv),
		cmocka_unit_test(test_home_copies),
		cmocka_unit_test(test_home_copies_trim),
		cmocka_unit_test(test_home_upgrade),
		cmocka_unit_test(test_home_upgrade_own),
		cmocka_unit_test(test_home_errors),
		cmocka_unit_test(test_home_zero),
		cmocka_unit_test(test_loss_owner),
		cmocka_unit_test(test_loss_owner_idle),
		cmocka_unit_test(test_loss_sharer),
		cmocka_unit_test(test_loss_requester),
		cmocka_unit_test(test_loss_home),
		cmocka_unit_test(test_loss_readahead),
		cmocka_unit_test(test_barrier),
		cmocka_unit_test(test_barrier_mode),
		cmocka_unit_test(test_barrier_loss),
		cmocka_unit_test(test_barrier_leave),
		cmocka_unit_test(test_home_migratory),
		cmocka_unit_test(test_leave_putm_idle),
		cmocka_unit_test(test_leave_putm_crosses_fetch),
		cmocka_unit_test(test_readahead_stream),
		cmocka_unit_test(test_readahead_skip),
		cmocka_unit_test(test_readahead_sets),
		cmocka_unit_test(test_fetch_sets),
		cmocka_unit_test(test_fwd_home),
		cmocka_unit_test(test_fwd_requester_asks_again),
		cmocka_unit_test(test_fwd_owner_requester),
		cmocka_unit_test(test_fwd_requester_owner_dies),
		cmocka_unit_test(test_fwd_home_deaths),
		cmocka_unit_test(test_fwd_leave),
		cmocka_unit_test(test_leave_leaver),
		cmocka_unit_test(test_leave_adopt),
		cmocka_unit_test(test_leave_paced),
		cmocka_unit_test(test_leave_coordinator),
		cmocka_unit_test(test_home_layout),
		cmocka_unit_test(test_place_map),
		cmocka_unit_test(test_rehome),
		cmocka_unit_test(test_api),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
