/* SPDX-License-Identifier: MIT */
/*
 * test_wire.c - unit tests of the wire format (src/core/wire.c): encoder, push decoder, HELLO
 * and PEERS payloads, limits, sticky errors and a seeded garbage loop.
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

#include "core/wire.h"

#define PS 4096u

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* A valid message of each type, with a payload where the type has one. */
struct sample {
	struct wire_msg m;
	uint8_t payload[WIRE_PEERS_MAX > PS ? WIRE_PEERS_MAX : PS];
};

static const uint8_t all_types[] = {
	WIRE_HELLO, WIRE_MAPPED, WIRE_PEERS, WIRE_READY, WIRE_GO, WIRE_GET_S,
	WIRE_GET_M, WIRE_DATA, WIRE_GRANT, WIRE_INV, WIRE_INV_ACK, WIRE_FETCH,
	WIRE_FETCH_REPLY, WIRE_NACK, WIRE_BARRIER, WIRE_BARRIER_DONE, WIRE_BYE,
	WIRE_AUTH_HELLO, WIRE_AUTH_PROOF, WIRE_AUTH_CONFIRM, WIRE_AUTH_FAIL,
	WIRE_PING, WIRE_EXPEL,
	WIRE_LEAVE, WIRE_LEAVE_ACK, WIRE_PUTM, WIRE_ADOPT, WIRE_ADOPT_DONE,
	WIRE_LOCK_REQ, WIRE_LOCK_GRANT, WIRE_LOCK_BUSY, WIRE_LOCK_REL, WIRE_LOCK_NACK,
	WIRE_LOCK_ADOPT,
	WIRE_FWD, WIRE_FWD_DATA, WIRE_FWD_REPLY, WIRE_FWD_ACK, WIRE_FWD_NONE, WIRE_RECALL,
	WIRE_FWD_ASK, WIRE_RA_SKIP, WIRE_GET_S_SET, WIRE_DATA_SET, WIRE_FETCH_SET,
};
#define NTYPES (sizeof(all_types) / sizeof(all_types[0]))

/* Fill @s with a message of @type; @variant picks flags (ZERO / EXCL / FAIL). */
static void make(struct sample *s, uint8_t type, unsigned variant)
{
	memset(&s->m, 0, sizeof(s->m));
	s->m.type = type;
	s->m.src = (uint16_t)(rnd() % 64);
	s->m.page = rnd();
	s->m.arg = rnd();
	switch (type) {
	case WIRE_HELLO: {
		struct wire_hello h = {
			.magic = WIRE_MAGIC, .version = WIRE_VERSION, .page_size = PS,
			.node_id = WIRE_NODE_ANY, .nodes = 3, .region_size = 1u << 20,
			.base = 0x7f0000000000ull,
		};
		snprintf(h.addr, sizeof(h.addr), "10.0.0.%u:%u", (unsigned)(rnd() % 256),
			 (unsigned)(rnd() % 65536));
		s->m.src = 0xffff;
		s->m.len = (uint32_t)wire_hello_encode(s->payload, &h);
		break;
	}
	case WIRE_PEERS: {
		struct wire_peer p[3] = { { 0, "127.0.0.1:1000" }, { 1, "[::1]:2000" },
					  { 2, "host.example:3" } };
		s->m.len = (uint32_t)wire_peers_encode(s->payload, 2, p, variant % 4);
		break;
	}
	case WIRE_ADOPT: {
		struct wire_adopt a = {
			.owner = (variant & 1) ? (uint8_t)(rnd() % 64) : WIRE_OWNER_NONE,
			.flags = (uint8_t)(rnd() % (WIRE_ADOPT_ALL_ + 1)),
			.last_rd = (uint8_t)rnd(),
			.sharers = rnd(),
			.mhash = rnd(),
		};

		wire_adopt_encode(s->payload, &a);
		s->m.len = WIRE_ADOPT_FIXED;
		if (variant & 2) {
			s->m.flags |= WIRE_F_ZERO;
		} else if (!(variant & 1)) {
			s->m.len += PS;
			for (unsigned i = 0; i < PS; i++)
				s->payload[WIRE_ADOPT_FIXED + i] = (uint8_t)rnd();
		}
		break;
	}
	case WIRE_DATA:
	case WIRE_FWD_DATA:
	case WIRE_FWD_REPLY:
	case WIRE_FETCH_REPLY:
	case WIRE_PUTM:
		if ((type == WIRE_DATA || type == WIRE_FWD_DATA) && (variant & 1))
			s->m.flags |= WIRE_F_EXCL;
		if (type == WIRE_FWD_REPLY && variant == 3)
			break; /* TO_I: neither contents nor ZERO */
		if (variant & 2) {
			s->m.flags |= WIRE_F_ZERO;
		} else {
			s->m.len = PS;
			for (unsigned i = 0; i < PS; i++)
				s->payload[i] = (uint8_t)rnd();
		}
		break;
	case WIRE_GET_S_SET:
	case WIRE_FETCH_SET:
	case WIRE_DATA_SET:
		/* Bitmaps (their meaning is the engine's), then for DATA_SET 0..3 pages. */
		s->m.len = type != WIRE_DATA_SET ? WIRE_SET_BYTES
						  : WIRE_DATA_SET_FIXED + (variant % 2) * PS;
		for (unsigned i = 0; i < s->m.len; i++)
			s->payload[i] = (uint8_t)rnd();
		break;
	case WIRE_BARRIER_DONE:
		if (variant & 1)
			s->m.flags = WIRE_F_FAIL;
		else if (variant & 2)
			s->m.flags = WIRE_F_BMODE | ((variant & 4) ? WIRE_F_BPOLL : 0);
		break;
	case WIRE_LOCK_REQ:
		if (variant & 1)
			s->m.flags = WIRE_F_LK_TRY;
		break;
	case WIRE_LOCK_GRANT:
	case WIRE_LOCK_REL:
		if (variant & 1)
			s->m.flags = WIRE_F_LK_DEAD;
		break;
	case WIRE_LOCK_NACK:
		if (variant & 1)
			s->m.flags = WIRE_F_LK_NOMEM;
		break;
	case WIRE_LOCK_ADOPT:
		s->m.flags = (uint8_t)(((variant & 1) ? WIRE_F_LK_HOLDER : 0) |
				       ((variant & 2) ? WIRE_F_LK_DEAD : 0));
		s->m.arg = WIRE_LK_WHO(rnd() % 64, rnd());
		break;
	case WIRE_AUTH_HELLO:
	case WIRE_AUTH_PROOF:
	case WIRE_AUTH_CONFIRM:
	case WIRE_AUTH_FAIL:
		/* Fixed lengths; the contents are auth.c's business (test_auth.c). */
		s->m.len = type == WIRE_AUTH_HELLO   ? WIRE_AUTH_HELLO_LEN
			   : type == WIRE_AUTH_PROOF ? WIRE_AUTH_PROOF_LEN
			   : type == WIRE_AUTH_CONFIRM ? WIRE_AUTH_CONFIRM_LEN
						     : WIRE_AUTH_FAIL_LEN;
		for (unsigned i = 0; i < s->m.len; i++)
			s->payload[i] = (uint8_t)rnd();
		break;
	default:
		break;
	}
	s->m.payload = s->m.len ? s->payload : NULL;
}

static void assert_msg_equal(const struct wire_msg *a, const struct wire_msg *b)
{
	assert_int_equal(a->type, b->type);
	assert_int_equal(a->flags, b->flags);
	assert_int_equal(a->hint, b->hint);
	assert_int_equal(a->src, b->src);
	assert_int_equal(a->len, b->len);
	assert_true(a->page == b->page);
	assert_true(a->arg == b->arg);
	if (a->len) {
		assert_non_null(b->payload);
		assert_memory_equal(a->payload, b->payload, a->len);
	} else {
		assert_null(b->payload);
	}
}

static size_t encode(uint8_t *buf, size_t cap, const struct wire_msg *m)
{
	size_t n = wire_encode(buf, cap, m);

	assert_int_equal(n, WIRE_HDR_LEN + m->len);
	return n;
}

/* Every type round-trips, fed whole, one at a time and several at once. */
static void test_roundtrip(void **state)
{
	static struct sample s[NTYPES * 4];
	static uint8_t buf[NTYPES * 4 * (WIRE_HDR_LEN + WIRE_PEERS_MAX + PS)];
	size_t n = 0, off = 0;
	struct wire_dec d;
	struct wire_msg m;

	(void)state;
	for (unsigned v = 0; v < 4; v++)
		for (size_t t = 0; t < NTYPES; t++)
			make(&s[n++], all_types[t], v);

	/* One message per feed. */
	wire_dec_init(&d, PS);
	for (size_t i = 0; i < n; i++) {
		size_t len = encode(buf, sizeof(buf), &s[i].m);

		assert_int_equal(wire_dec_next(&d, &m), -EAGAIN);
		assert_int_equal(wire_dec_feed(&d, buf, len), 0);
		assert_int_equal(wire_dec_pending(&d), len);
		assert_int_equal(wire_dec_next(&d, &m), 0);
		assert_msg_equal(&s[i].m, &m);
		assert_int_equal(wire_dec_pending(&d), 0);
		assert_int_equal(wire_dec_next(&d, &m), -EAGAIN);
	}
	wire_dec_free(&d);

	/* All in one feed. */
	for (size_t i = 0; i < n; i++)
		off += encode(buf + off, sizeof(buf) - off, &s[i].m);
	wire_dec_init(&d, PS);
	assert_int_equal(wire_dec_feed(&d, buf, off), 0);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(wire_dec_next(&d, &m), 0);
		assert_msg_equal(&s[i].m, &m);
	}
	assert_int_equal(wire_dec_next(&d, &m), -EAGAIN);
	assert_int_equal(wire_dec_pending(&d), 0);
	wire_dec_free(&d);

	/* A byte at a time: identical messages, each as soon as its last byte arrives. */
	wire_dec_init(&d, PS);
	size_t got = 0, end = 0;
	for (size_t i = 0; i < off; i++) {
		assert_int_equal(wire_dec_feed(&d, buf + i, 1), 0);
		if (i + 1 == end + WIRE_HDR_LEN + s[got].m.len) {
			assert_int_equal(wire_dec_next(&d, &m), 0);
			assert_msg_equal(&s[got].m, &m);
			end = i + 1;
			got++;
		} else {
			assert_int_equal(wire_dec_next(&d, &m), -EAGAIN);
		}
	}
	assert_int_equal(got, n);
	wire_dec_free(&d);

	/* Random chunk sizes. */
	for (int round = 0; round < 20; round++) {
		size_t i = 0;

		wire_dec_init(&d, PS);
		got = 0;
		while (i < off) {
			size_t c = 1 + rnd() % 9000;

			if (c > off - i)
				c = off - i;
			assert_int_equal(wire_dec_feed(&d, buf + i, c), 0);
			i += c;
			while (wire_dec_next(&d, &m) == 0) {
				assert_msg_equal(&s[got].m, &m);
				got++;
			}
		}
		assert_int_equal(got, n);
		assert_int_equal(wire_dec_pending(&d), 0);
		wire_dec_free(&d);
	}
}

/* The header layout is little-endian and fixed. */
static void test_header_layout(void **state)
{
	uint8_t h[WIRE_HDR_LEN];
	struct wire_msg m = {
		.type = WIRE_FETCH, .flags = 0x05, .src = 0x0102, .len = 0x03040506,
		.page = 0x1112131415161718ull, .arg = 0x2122232425262728ull,
	};
	static const uint8_t want[WIRE_HDR_LEN] = {
		WIRE_FETCH, 0x05, 0x02, 0x01, 0x06, 0x05, 0x04, 0x03,
		0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,
		0x28, 0x27, 0x26, 0x25, 0x24, 0x23, 0x22, 0x21,
	};
	uint8_t small[WIRE_HDR_LEN + 3];

	(void)state;
	wire_encode_hdr(h, &m);
	assert_memory_equal(h, want, WIRE_HDR_LEN);
	/* wire_encode() refuses a buffer that is too small. */
	m.len = 4;
	m.payload = (const uint8_t *)"abcd";
	assert_int_equal(wire_encode(small, sizeof(small), &m), 0); /* needs one more byte */
	assert_int_equal(wire_encode(small, WIRE_HDR_LEN - 1, &m), 0);
	m.len = 3;
	assert_int_equal(wire_encode(small, sizeof(small), &m), sizeof(small));
	assert_string_equal(wire_type_name(WIRE_GET_M), "GET_M");
	assert_string_equal(wire_type_name(WIRE_BARRIER_DONE), "BARRIER_DONE");
	assert_string_equal(wire_type_name(WIRE_AUTH_HELLO), "AUTH_HELLO");
	assert_string_equal(wire_type_name(WIRE_AUTH_FAIL), "AUTH_FAIL");
	assert_string_equal(wire_type_name(0), "?");
	assert_string_equal(wire_type_name(19), "?");
	assert_string_equal(wire_type_name(WIRE_PING), "PING");
	assert_string_equal(wire_type_name(WIRE_EXPEL), "EXPEL");
	assert_string_equal(wire_type_name(WIRE_LEAVE), "LEAVE");
	assert_string_equal(wire_type_name(63), "?"); /* not yet used */
	assert_string_equal(wire_type_name(WIRE_TYPE_MAX_), "?");
	assert_string_equal(wire_type_name(1000), "?");
}

/* The POLL hint travels in the flags byte's top bit, on any message, and comes out of the
 * decoder in @hint, never in @flags (the engine and the lock layer do not see it). */
static void test_hint(void **state)
{
	static uint8_t page[PS];
	const struct wire_msg msgs[] = {
		{ .type = WIRE_GET_S, .hint = WIRE_H_POLL, .src = 1, .page = 7 },
		{ .type = WIRE_DATA, .flags = WIRE_F_EXCL, .hint = WIRE_H_POLL, .src = 2,
		  .len = PS, .page = 8, .payload = page },
		{ .type = WIRE_BARRIER_DONE, .flags = WIRE_F_FAIL, .hint = WIRE_H_POLL, .src = 0 },
		{ .type = WIRE_GET_S_SET, .hint = WIRE_H_POLL, .src = 1, .len = WIRE_SET_BYTES,
		  .payload = page },
		{ .type = WIRE_LOCK_REQ, .flags = WIRE_F_LK_TRY, .hint = WIRE_H_POLL, .src = 1,
		  .page = 64, .arg = 3 },
		{ .type = WIRE_GET_M, .src = 1, .page = 9 },
	};
	static uint8_t buf[WIRE_HDR_LEN + PS];
	struct wire_dec d;
	struct wire_msg m;

	(void)state;
	for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		size_t len = wire_encode(buf, sizeof(buf), &msgs[i]);

		assert_true(len > 0);
		assert_int_equal(buf[1], msgs[i].flags | msgs[i].hint);
		wire_dec_init(&d, PS);
		assert_int_equal(wire_dec_feed(&d, buf, len), 0);
		assert_int_equal(wire_dec_next(&d, &m), 0);
		assert_msg_equal(&msgs[i], &m);
		wire_dec_free(&d);
	}
}

/* Truncated header or payload: -EAGAIN, then the message once complete. */
static void test_truncated(void **state)
{
	static struct sample s;
	static uint8_t buf[WIRE_HDR_LEN + PS];
	struct wire_dec d;
	struct wire_msg m;
	size_t len;

	(void)state;
	make(&s, WIRE_DATA, 0);
	len = encode(buf, sizeof(buf), &s.m);
	for (size_t cut = 0; cut < len; cut += (cut < 40 ? 1 : 511)) {
		wire_dec_init(&d, PS);
		assert_int_equal(wire_dec_feed(&d, buf, cut), 0);
		assert_int_equal(wire_dec_next(&d, &m), -EAGAIN);
		assert_int_equal(wire_dec_next(&d, &m), -EAGAIN); /* not sticky */
		assert_int_equal(wire_dec_pending(&d), cut);
		assert_int_equal(wire_dec_feed(&d, buf + cut, len - cut), 0);
		assert_int_equal(wire_dec_next(&d, &m), 0);
		assert_msg_equal(&s.m, &m);
		wire_dec_free(&d);
	}
	/* Feeding nothing is fine. */
	wire_dec_init(&d, PS);
	assert_int_equal(wire_dec_feed(&d, buf, 0), 0);
	assert_int_equal(wire_dec_next(&d, &m), -EAGAIN);
	wire_dec_free(&d);
}

/* Feed @hdr (a header with the given fields) and expect wire_dec_next() to fail with @err,
 * stickily: the error comes back from feed and next afterwards, even with valid input. */
static void expect_bad(uint8_t type, uint8_t flags, uint32_t len, int err, uint32_t ps)
{
	struct wire_msg bad = { .type = type, .flags = flags, .src = 1, .len = len, .page = 3 };
	uint8_t h[WIRE_HDR_LEN], ok[WIRE_HDR_LEN];
	struct wire_msg good = { .type = WIRE_GET_S, .src = 1 };
	struct wire_dec d;
	struct wire_msg m;

	wire_encode_hdr(h, &bad);
	wire_encode_hdr(ok, &good);
	wire_dec_init(&d, ps);
	/* A good message first: it is still returned. */
	assert_int_equal(wire_dec_feed(&d, ok, sizeof(ok)), 0);
	assert_int_equal(wire_dec_feed(&d, h, sizeof(h)), 0);
	assert_int_equal(wire_dec_next(&d, &m), 0);
	assert_int_equal(m.type, WIRE_GET_S);
	if (wire_dec_next(&d, &m) != err)
		fail_msg("type %u flags %#x len %u: want %d, got %d (%s)", type, flags, len, err,
			 d.err, d.why);
	assert_true(d.why[0] != '\0');
	assert_int_equal(wire_dec_next(&d, &m), err);
	assert_int_equal(wire_dec_feed(&d, ok, sizeof(ok)), err);
	assert_int_equal(wire_dec_next(&d, &m), err);
	wire_dec_free(&d);
}

static void test_garbage(void **state)
{
	(void)state;
	/* Unknown types. */
	expect_bad(0, 0, 0, -EPROTO, PS);
	for (uint8_t t = 6; t < 10; t++)
		expect_bad(t, 0, 0, -EPROTO, PS);
	expect_bad(19, 0, 0, -EPROTO, PS);
	/* 30..35: locks; 36..39 are reserved for them, 40..55 for placement and forwarding
	 * (44..53 in use, below). */
	for (uint8_t t = WIRE_LOCK_ADOPT + 1; t < WIRE_TYPE_MAX_; t++)
		if (t < WIRE_FWD || t > WIRE_DATA_SET)
			expect_bad(t, 0, 0, -EPROTO, PS);
	/* Forwarding: a page or nothing, never another length; no payload on the others. */
	expect_bad(WIRE_FWD_DATA, 0, PS - 8, -EPROTO, PS);
	expect_bad(WIRE_FWD_DATA, WIRE_F_ZERO, PS, -EPROTO, PS);
	expect_bad(WIRE_FWD_REPLY, 0, 8, -EPROTO, PS);
	expect_bad(WIRE_FWD_REPLY, WIRE_F_ZERO, PS, -EPROTO, PS);
	expect_bad(WIRE_FWD, 0, 8, -EPROTO, PS);
	expect_bad(WIRE_FWD_ACK, 0, 8, -EPROTO, PS);
	expect_bad(WIRE_FWD_NONE, 0, 1, -EPROTO, PS);
	expect_bad(WIRE_RECALL, 0, PS, -EPROTO, PS);
	expect_bad(WIRE_RA_SKIP, 0, PS, -EPROTO, PS);
	expect_bad(WIRE_GET_S_SET, 0, 0, -EPROTO, PS);
	expect_bad(WIRE_GET_S_SET, 0, WIRE_SET_BYTES + 1, -EPROTO, PS);
	expect_bad(WIRE_GET_S_SET, WIRE_F_ZERO, WIRE_SET_BYTES, -EPROTO, PS);
	expect_bad(WIRE_DATA_SET, 0, WIRE_DATA_SET_FIXED - 1, -EPROTO, PS);
	expect_bad(WIRE_DATA_SET, 0, WIRE_DATA_SET_FIXED + PS + 8, -EPROTO, PS);
	expect_bad(WIRE_DATA_SET, WIRE_F_ZERO, WIRE_DATA_SET_FIXED, -EPROTO, PS);
	expect_bad(WIRE_DATA_SET, 0, WIRE_DATA_SET_FIXED + (WIRE_SET_PAGES + 1) * PS, -EPROTO, PS);
	expect_bad(WIRE_TYPE_MAX_, 0, 0, -EPROTO, PS);
	expect_bad(0xff, 0, 0, -EPROTO, PS);
	/* Unknown flags. */
	expect_bad(WIRE_GET_S, 0x08, 0, -EPROTO, PS);
	expect_bad(WIRE_DATA, 0x40, PS, -EPROTO, PS);
	expect_bad(WIRE_DATA, WIRE_H_POLL | 0x08, PS, -EPROTO, PS); /* the hint hides nothing */
	expect_bad(WIRE_GET_S_SET, WIRE_H_POLL | WIRE_F_ZERO, WIRE_SET_BYTES, -EPROTO, PS);
	expect_bad(WIRE_AUTH_FAIL, WIRE_H_POLL, WIRE_AUTH_FAIL_LEN, -EPROTO, PS); /* handshake */
	expect_bad(WIRE_GO, WIRE_H_POLL, 0, -EPROTO, PS);
	/* Payload on a type without one. */
	expect_bad(WIRE_GET_S, 0, 1, -EPROTO, PS);
	expect_bad(WIRE_INV, 0, PS, -EPROTO, PS);
	expect_bad(WIRE_BARRIER, 0, 8, -EPROTO, PS);
	expect_bad(WIRE_BYE, 0, 2, -EPROTO, PS);
	expect_bad(WIRE_PING, 0, 8, -EPROTO, PS);
	expect_bad(WIRE_EXPEL, 0, 1, -EPROTO, PS);
	expect_bad(WIRE_LEAVE, 0, 8, -EPROTO, PS);
	expect_bad(WIRE_LEAVE_ACK, 0, PS, -EPROTO, PS);
	expect_bad(WIRE_ADOPT_DONE, 0, 8, -EPROTO, PS);
	expect_bad(WIRE_LOCK_REQ, 0, 8, -EPROTO, PS);
	expect_bad(WIRE_LOCK_GRANT, 0, PS, -EPROTO, PS);
	expect_bad(WIRE_LOCK_ADOPT, WIRE_F_LK_HOLDER, 16, -EPROTO, PS);
	expect_bad(WIRE_LOCK_REL, 0x08, 0, -EPROTO, PS); /* NOMEM is LOCK_NACK's alone */
	expect_bad(WIRE_BARRIER, WIRE_F_BMODE, 0, -EPROTO, PS); /* BARRIER_DONE's alone */
	expect_bad(WIRE_DATA, WIRE_F_BPOLL, PS, -EPROTO, PS);
	expect_bad(WIRE_LOCK_GRANT, WIRE_F_LK_NOMEM, 0, -EPROTO, PS);
	expect_bad(WIRE_LOCK_NACK, 0x10, 0, -EPROTO, PS);
	/* Hand-over payloads of the wrong size. */
	expect_bad(WIRE_PUTM, 0, PS - 8, -EPROTO, PS);
	expect_bad(WIRE_PUTM, WIRE_F_ZERO, PS, -EPROTO, PS);
	expect_bad(WIRE_PUTM, 0, 0, -EPROTO, PS);
	expect_bad(WIRE_ADOPT, 0, 0, -EPROTO, PS);
	expect_bad(WIRE_ADOPT, 0, WIRE_ADOPT_FIXED - 1, -EPROTO, PS);
	expect_bad(WIRE_ADOPT, 0, WIRE_ADOPT_FIXED + PS - 8, -EPROTO, PS);
	expect_bad(WIRE_ADOPT, WIRE_F_ZERO, WIRE_ADOPT_FIXED + PS, -EPROTO, PS);
	expect_bad(WIRE_ADOPT, 0, WIRE_ADOPT_FIXED + WIRE_PAGE_MAX + 1, -EMSGSIZE, PS);
	/* Zero page with a payload; data of the wrong size. */
	expect_bad(WIRE_DATA, WIRE_F_ZERO, PS, -EPROTO, PS);
	expect_bad(WIRE_FETCH_REPLY, WIRE_F_ZERO, 1, -EPROTO, PS);
	expect_bad(WIRE_DATA, 0, PS - 8, -EPROTO, PS);
	expect_bad(WIRE_DATA, WIRE_F_EXCL, PS + 8, -EPROTO, PS);
	expect_bad(WIRE_FETCH_REPLY, 0, 0, -EPROTO, PS);
	expect_bad(WIRE_DATA, 0, 64, -EPROTO, 128);
	/* Authentication messages have one length each and no flags. */
	expect_bad(WIRE_AUTH_HELLO, 0, WIRE_AUTH_HELLO_LEN - 1, -EPROTO, PS);
	expect_bad(WIRE_AUTH_HELLO, 0, WIRE_AUTH_HELLO_LEN + 1, -EPROTO, PS);
	expect_bad(WIRE_AUTH_PROOF, 0, 0, -EPROTO, PS);
	expect_bad(WIRE_AUTH_PROOF, 0, WIRE_AUTH_PROOF_LEN + 1, -EPROTO, PS);
	expect_bad(WIRE_AUTH_CONFIRM, 0, WIRE_AUTH_CONFIRM_LEN - 1, -EPROTO, PS);
	expect_bad(WIRE_AUTH_CONFIRM, WIRE_F_EXCL, WIRE_AUTH_CONFIRM_LEN, -EPROTO, PS);
	expect_bad(WIRE_AUTH_FAIL, 0, 0, -EPROTO, PS);
	expect_bad(WIRE_AUTH_FAIL, WIRE_F_ZERO, WIRE_AUTH_FAIL_LEN, -EPROTO, PS);
	expect_bad(WIRE_AUTH_FAIL, 0, 1u << 20, -EPROTO, PS);
	/* HELLO and PEERS of impossible lengths. */
	expect_bad(WIRE_HELLO, 0, 0, -EPROTO, PS);
	expect_bad(WIRE_HELLO, 0, WIRE_HELLO_FIXED - 1, -EPROTO, PS);
	expect_bad(WIRE_HELLO, 0, WIRE_HELLO_FIXED + WIRE_ADDR_MAX + 1, -EPROTO, PS);
	expect_bad(WIRE_PEERS, 0, 3, -EPROTO, PS);
	/* Oversized payloads. */
	expect_bad(WIRE_DATA, 0, WIRE_PAGE_MAX + 1, -EMSGSIZE, PS);
	expect_bad(WIRE_FETCH_REPLY, WIRE_F_EXCL, UINT32_MAX, -EMSGSIZE, PS);
	expect_bad(WIRE_GET_M, 0, WIRE_PAGE_MAX + 1, -EMSGSIZE, PS);
	expect_bad(WIRE_GO, 0, UINT32_MAX, -EMSGSIZE, PS);
	expect_bad(WIRE_PEERS, 0, WIRE_PEERS_MAX + 1, -EMSGSIZE, PS);
	expect_bad(WIRE_PEERS, 0, UINT32_MAX, -EMSGSIZE, PS);
	/* Exactly the limits are fine. */
	{
		struct wire_dec d;
		struct wire_msg m = { .type = WIRE_DATA, .len = WIRE_PAGE_MAX };
		uint8_t h[WIRE_HDR_LEN];

		wire_dec_init(&d, WIRE_PAGE_MAX);
		wire_encode_hdr(h, &m);
		assert_int_equal(wire_dec_feed(&d, h, sizeof(h)), 0);
		assert_int_equal(wire_dec_next(&d, &m), -EAGAIN); /* header accepted */
		assert_int_equal(d.err, 0);
		wire_dec_free(&d);
		m.type = WIRE_PEERS;
		m.len = WIRE_PEERS_MAX;
		wire_dec_init(&d, PS);
		wire_encode_hdr(h, &m);
		assert_int_equal(wire_dec_feed(&d, h, sizeof(h)), 0);
		assert_int_equal(wire_dec_next(&d, &m), -EAGAIN);
		assert_int_equal(d.err, 0);
		wire_dec_free(&d);
	}
}

/* More than WIRE_BUFFER_MAX bytes held unparsed: -ENOBUFS, sticky. */
static void test_nobufs(void **state)
{
	static uint8_t chunk[65536];
	struct wire_msg hdr = { .type = WIRE_GET_S };
	struct wire_dec d;
	struct wire_msg m;
	size_t held = 0;

	(void)state;
	/* Complete small messages, never taken out. */
	for (size_t i = 0; i + WIRE_HDR_LEN <= sizeof(chunk); i += WIRE_HDR_LEN)
		wire_encode_hdr(chunk + i, &hdr);
	wire_dec_init(&d, PS);
	const size_t step = sizeof(chunk) / WIRE_HDR_LEN * WIRE_HDR_LEN;
	while (held + step <= WIRE_BUFFER_MAX) {
		assert_int_equal(wire_dec_feed(&d, chunk, step), 0);
		held += step;
	}
	/* Up to the limit exactly is fine. */
	size_t rest = WIRE_BUFFER_MAX - held;
	assert_int_equal(wire_dec_feed(&d, chunk, rest), 0);
	held += rest;
	assert_int_equal(wire_dec_pending(&d), WIRE_BUFFER_MAX);
	assert_int_equal(wire_dec_feed(&d, chunk, 1), -ENOBUFS);
	/* Sticky: even the messages already held are refused now. */
	assert_int_equal(wire_dec_next(&d, &m), -ENOBUFS);
	assert_int_equal(wire_dec_feed(&d, chunk, 1), -ENOBUFS);
	wire_dec_free(&d);

	/* Taking messages out makes room again. */
	wire_dec_init(&d, PS);
	held = 0;
	for (int i = 0; i < 200; i++) {
		assert_int_equal(wire_dec_feed(&d, chunk, step), 0);
		while (wire_dec_next(&d, &m) == 0)
			assert_int_equal(m.type, WIRE_GET_S);
	}
	assert_int_equal(d.err, 0);
	wire_dec_free(&d);

	/* One huge chunk at once. */
	uint8_t *big = calloc(1, WIRE_BUFFER_MAX + 1);
	assert_non_null(big);
	wire_dec_init(&d, PS);
	assert_int_equal(wire_dec_feed(&d, big, WIRE_BUFFER_MAX + 1), -ENOBUFS);
	wire_dec_free(&d);
	free(big);
}

/* The payload of a message stays valid until the next feed/next call, including the last
 * message of a buffer. */
static void test_payload_lifetime(void **state)
{
	static struct sample a, b;
	static uint8_t buf[2 * (WIRE_HDR_LEN + PS)];
	struct wire_dec d;
	struct wire_msg m1, m2;
	size_t n;

	(void)state;
	make(&a, WIRE_DATA, 0);
	make(&b, WIRE_FETCH_REPLY, 0);
	n = encode(buf, sizeof(buf), &a.m);
	n += encode(buf + n, sizeof(buf) - n, &b.m);
	wire_dec_init(&d, PS);
	assert_int_equal(wire_dec_feed(&d, buf, n), 0);
	assert_int_equal(wire_dec_next(&d, &m1), 0);
	assert_msg_equal(&a.m, &m1);
	assert_int_equal(wire_dec_next(&d, &m2), 0);
	assert_msg_equal(&b.m, &m2);
	assert_int_equal(wire_dec_next(&d, &m2), -EAGAIN);
	assert_msg_equal(&b.m, &m2); /* untouched by -EAGAIN, payload still readable */
	wire_dec_free(&d);
}

/* wire_is_zero() on any alignment the decoder can hand out. */
static void test_is_zero(void **state)
{
	static uint64_t words[PS / 8 + 2];
	uint8_t *p = (uint8_t *)words;

	(void)state;
	assert_true(wire_is_zero(p, PS));
	p[PS - 1] = 1;
	assert_false(wire_is_zero(p, PS));
	assert_true(wire_is_zero(p, PS - 8));
	p[PS - 1] = 0;
	p[0] = 0x80;
	assert_false(wire_is_zero(p, PS));
	p[0] = 0;
	/* A payload after an odd-length HELLO in the same buffer is not 8-aligned. */
	for (unsigned off = 1; off < 8; off++) {
		assert_true(wire_is_zero(p + off, PS));
		p[off + 17] = 4;
		assert_false(wire_is_zero(p + off, PS));
		p[off + 17] = 0;
	}
}

/* A DATA payload that follows a HELLO in the same buffer: its payload is unaligned. */
static void test_unaligned_payload(void **state)
{
	static struct sample h, z;
	static uint8_t buf[2 * (WIRE_HDR_LEN + PS)];
	struct wire_dec d;
	struct wire_msg m;
	size_t n;

	(void)state;
	make(&h, WIRE_HELLO, 0);
	{
		struct wire_hello hh;

		assert_int_equal(wire_hello_decode(h.payload, h.m.len, &hh), 0);
		strcpy(hh.addr, "1.2.3.4:5");
		h.m.len = (uint32_t)wire_hello_encode(h.payload, &hh);
	}
	assert_true(h.m.len % 8 != 0);
	make(&z, WIRE_DATA, 0);
	memset(z.payload, 0, PS);
	n = encode(buf, sizeof(buf), &h.m);
	n += encode(buf + n, sizeof(buf) - n, &z.m);
	wire_dec_init(&d, PS);
	assert_int_equal(wire_dec_feed(&d, buf, n), 0);
	assert_int_equal(wire_dec_next(&d, &m), 0);
	assert_int_equal(wire_dec_next(&d, &m), 0);
	assert_int_equal(m.type, WIRE_DATA);
	assert_true(wire_is_zero(m.payload, m.len));
	wire_dec_free(&d);
}

/* HELLO payloads. */
/* The ADOPT entry: layout, round trip, reserved bytes and flags rejected. */
static void test_adopt_entry(void **state)
{
	struct wire_adopt a = { .owner = 7, .flags = WIRE_ADOPT_MIGR, .last_rd = 3,
				.sharers = 0x8000000000000005ull, .mhash = 0x1122334455667788ull };
	struct wire_adopt b;
	uint8_t buf[WIRE_ADOPT_FIXED];

	(void)state;
	wire_adopt_encode(buf, &a);
	assert_int_equal(buf[0], 7);
	assert_int_equal(buf[1], WIRE_ADOPT_MIGR);
	assert_int_equal(buf[2], 3);
	assert_int_equal(buf[8], 5);
	assert_int_equal(buf[15], 0x80);
	assert_int_equal(buf[16], 0x88);
	assert_int_equal(wire_adopt_decode(buf, sizeof(buf), &b), 0);
	assert_int_equal(b.owner, 7);
	assert_int_equal(b.flags, WIRE_ADOPT_MIGR);
	assert_int_equal(b.last_rd, 3);
	assert_true(b.sharers == a.sharers && b.mhash == a.mhash);
	assert_int_equal(wire_adopt_decode(buf, WIRE_ADOPT_FIXED - 1, &b), -EPROTO);
	assert_int_equal(wire_adopt_decode(NULL, 0, &b), -EPROTO);
	for (int i = 3; i < 8; i++) {
		buf[i] = 1;
		assert_int_equal(wire_adopt_decode(buf, sizeof(buf), &b), -EPROTO);
		buf[i] = 0;
	}
	buf[1] = 0x80;
	assert_int_equal(wire_adopt_decode(buf, sizeof(buf), &b), -EPROTO);
	assert_string_equal(wire_type_name(WIRE_ADOPT), "ADOPT");
	assert_string_equal(wire_type_name(WIRE_PUTM), "PUTM");
	assert_string_equal(wire_type_name(63), "?"); /* not yet used */
}

/* Lock messages: names, and the node/tag packing of LOCK_ADOPT's @arg. */
static void test_lock_msgs(void **state)
{
	uint64_t tag = (1ull << 56) - 1;

	(void)state;
	assert_string_equal(wire_type_name(WIRE_LOCK_REQ), "LOCK_REQ");
	assert_string_equal(wire_type_name(WIRE_LOCK_ADOPT), "LOCK_ADOPT");
	assert_int_equal(WIRE_LK_NODE(WIRE_LK_WHO(63, tag)), 63);
	assert_true(WIRE_LK_TAG(WIRE_LK_WHO(63, tag)) == tag);
	assert_int_equal(WIRE_LK_NODE(WIRE_LK_WHO(WIRE_OWNER_NONE, 5)), WIRE_OWNER_NONE);
	assert_true(WIRE_LK_TAG(WIRE_LK_WHO(7, tag + 1)) == 0); /* the tag is cut, not the node */
	assert_int_equal(WIRE_LK_NODE(WIRE_LK_WHO(7, tag + 1)), 7);
}

static void test_hello(void **state)
{
	uint8_t buf[WIRE_HELLO_FIXED + WIRE_ADDR_MAX + 8];
	struct wire_hello h = {
		.magic = WIRE_MAGIC, .version = WIRE_VERSION, .page_size = 16384,
		.node_id = 7, .nodes = 64, .region_size = 0x123456789abcull,
		.base = 0x7ffff0000000ull, .home_chunk = 64, .addr = "192.168.1.2:4567",
	}, g;
	size_t n;

	(void)state;
	n = wire_hello_encode(buf, &h);
	assert_int_equal(n, WIRE_HELLO_FIXED + strlen(h.addr));
	/* Fixed layout: magic first, little-endian ("UDSM"). */
	assert_memory_equal(buf, "UDSM", 4);
	memset(&g, 0xaa, sizeof(g));
	assert_int_equal(wire_hello_decode(buf, n, &g), 0);
	assert_int_equal(g.magic, h.magic);
	assert_int_equal(g.version, h.version);
	assert_int_equal(g.page_size, h.page_size);
	assert_int_equal(g.node_id, h.node_id);
	assert_int_equal(g.nodes, h.nodes);
	assert_true(g.region_size == h.region_size);
	assert_int_equal(g.home_chunk, h.home_chunk);
	assert_true(g.base == h.base);
	assert_string_equal(g.addr, h.addr);

	/* An empty address, and the longest one. */
	h.addr[0] = '\0';
	n = wire_hello_encode(buf, &h);
	assert_int_equal(n, WIRE_HELLO_FIXED);
	assert_int_equal(wire_hello_decode(buf, n, &g), 0);
	assert_string_equal(g.addr, "");
	memset(h.addr, 'a', WIRE_ADDR_MAX);
	h.addr[WIRE_ADDR_MAX] = '\0';
	n = wire_hello_encode(buf, &h);
	assert_int_equal(n, WIRE_HELLO_FIXED + WIRE_ADDR_MAX);
	assert_int_equal(wire_hello_decode(buf, n, &g), 0);
	assert_int_equal(strlen(g.addr), WIRE_ADDR_MAX);

	/* Bad lengths. */
	assert_int_equal(wire_hello_decode(buf, 0, &g), -EPROTO);
	assert_int_equal(wire_hello_decode(buf, WIRE_HELLO_FIXED - 1, &g), -EPROTO);
	assert_int_equal(wire_hello_decode(buf, WIRE_HELLO_FIXED + WIRE_ADDR_MAX + 1, &g),
			 -EPROTO);
	/* Non-printable addresses: control characters, space, NUL, DEL, high bytes. */
	static const uint8_t bad[] = { 0, ' ', '\n', '\t', 0x7f, 0x80, 0xff };
	strcpy(h.addr, "1.2.3.4:5");
	n = wire_hello_encode(buf, &h);
	for (size_t i = 0; i < sizeof(bad); i++) {
		buf[WIRE_HELLO_FIXED + 3] = bad[i];
		assert_int_equal(wire_hello_decode(buf, n, &g), -EPROTO);
	}
	buf[WIRE_HELLO_FIXED + 3] = '~';
	assert_int_equal(wire_hello_decode(buf, n, &g), 0);
	assert_string_equal(g.addr, "1.2~3.4:5");
}

/* PEERS payloads. */
static void test_peers(void **state)
{
	static uint8_t buf[WIRE_PEERS_MAX + 16];
	static struct wire_peer p[65], q[65];
	uint32_t self = 0;
	size_t n;

	(void)state;
	for (unsigned i = 0; i < 65; i++) {
		p[i].id = i * 3 + 1;
		snprintf(p[i].addr, sizeof(p[i].addr), "node-%u.example.org:%u", i, 1000 + i);
	}
	/* Empty table. */
	n = wire_peers_encode(buf, 5, p, 0);
	assert_int_equal(n, 4);
	assert_int_equal(wire_peers_decode(buf, n, &self, q, 64), 0);
	assert_int_equal(self, 5);
	/* A few entries. */
	n = wire_peers_encode(buf, 9, p, 3);
	assert_int_equal(wire_peers_decode(buf, n, &self, q, 64), 3);
	assert_int_equal(self, 9);
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(q[i].id, p[i].id);
		assert_string_equal(q[i].addr, p[i].addr);
	}
	/* Too many for the caller's array. */
	assert_int_equal(wire_peers_decode(buf, n, &self, q, 2), -EPROTO);
	assert_int_equal(wire_peers_decode(buf, n, &self, q, 0), -EPROTO);
	/* The biggest table: 64 entries with the longest addresses, exactly WIRE_PEERS_MAX. */
	for (unsigned i = 0; i < 65; i++) {
		memset(p[i].addr, 'a' + i % 26, WIRE_ADDR_MAX);
		p[i].addr[WIRE_ADDR_MAX] = '\0';
	}
	n = wire_peers_encode(buf, 63, p, 65); /* at most 64 are written */
	assert_int_equal(n, WIRE_PEERS_MAX);
	assert_int_equal(wire_peers_decode(buf, n, &self, q, 65), 64);
	for (unsigned i = 0; i < 64; i++) {
		assert_int_equal(q[i].id, p[i].id);
		assert_string_equal(q[i].addr, p[i].addr);
	}
	/* Longer than WIRE_PEERS_MAX, too short. */
	assert_int_equal(wire_peers_decode(buf, WIRE_PEERS_MAX + 1, &self, q, 65), -EPROTO);
	assert_int_equal(wire_peers_decode(buf, 3, &self, q, 65), -EPROTO);
	assert_int_equal(wire_peers_decode(buf, 0, &self, q, 65), -EPROTO);

	/* Truncated entries: every cut inside the 2-entry table but at an entry boundary. */
	strcpy(p[0].addr, "a:1");
	strcpy(p[1].addr, "bb:22");
	n = wire_peers_encode(buf, 1, p, 2);
	assert_int_equal(n, 4 + 6 + 3 + 6 + 5);
	for (size_t cut = 4; cut <= n; cut++) {
		int r = wire_peers_decode(buf, cut, &self, q, 64);

		if (cut == 4)
			assert_int_equal(r, 0);
		else if (cut == 4 + 6 + 3)
			assert_int_equal(r, 1);
		else if (cut == n)
			assert_int_equal(r, 2);
		else
			assert_int_equal(r, -EPROTO);
	}
	/* An address length over WIRE_ADDR_MAX, or past the end. */
	buf[4 + 4] = (uint8_t)(WIRE_ADDR_MAX + 1);
	buf[4 + 5] = (uint8_t)((WIRE_ADDR_MAX + 1) >> 8);
	assert_int_equal(wire_peers_decode(buf, n, &self, q, 64), -EPROTO);
	buf[4 + 4] = 200;
	buf[4 + 5] = 0;
	assert_int_equal(wire_peers_decode(buf, n, &self, q, 64), -EPROTO);
	buf[4 + 4] = 3;
	assert_int_equal(wire_peers_decode(buf, n, &self, q, 64), 2);
	/* A non-printable address byte. */
	buf[4 + 6 + 1] = '\r';
	assert_int_equal(wire_peers_decode(buf, n, &self, q, 64), -EPROTO);
	buf[4 + 6 + 1] = ':';
	assert_int_equal(wire_peers_decode(buf, n, &self, q, 64), 2);
	/* Trailing garbage shorter than an entry header. */
	buf[n] = 0;
	assert_int_equal(wire_peers_decode(buf, n + 1, &self, q, 64), -EPROTO);
	/* 65 entries of empty addresses fit in the size but are too many. */
	memset(buf, 0, 4 + 65 * 6);
	assert_int_equal(wire_peers_decode(buf, 4 + 64 * 6, &self, q, 64), 64);
	assert_int_equal(wire_peers_decode(buf, 4 + 65 * 6, &self, q, 64), -EPROTO);
}

/* Random bytes, seeded: the decoder never crashes, and either yields messages that pass its
 * own checks or ends in a sticky error. Half of the inputs start with valid messages. */
static void test_random(void **state)
{
	static uint8_t buf[1 << 16];
	static struct sample s;
	unsigned errs = 0, msgs = 0;

	(void)state;
	rng_state = 12345;
	for (int round = 0; round < 3000; round++) {
		uint32_t ps = (round % 3 == 0) ? 64 : PS;
		size_t n = rnd() % sizeof(buf), off = 0;
		struct wire_dec d;
		struct wire_msg m;
		int err = 0;

		for (size_t i = 0; i < n; i++)
			buf[i] = (uint8_t)rnd();
		if (round & 1) { /* a valid prefix, then garbage */
			size_t k = rnd() % 20;

			for (size_t i = 0; i < k && off + WIRE_HDR_LEN + WIRE_PEERS_MAX + PS < n;
			     i++) {
				make(&s, all_types[rnd() % NTYPES], (unsigned)rnd());
				if (s.m.len == PS)
					s.m.len = ps;
				off += encode(buf + off, n - off, &s.m);
			}
		}
		if (round % 5 == 0 && n > 8) /* plausible headers: small types, small lengths */
			for (size_t i = off; i + WIRE_HDR_LEN < n; i += WIRE_HDR_LEN) {
				buf[i] = (uint8_t)(rnd() % 24);
				buf[i + 1] &= 7;
				buf[i + 5] = buf[i + 6] = buf[i + 7] = 0;
			}
		wire_dec_init(&d, ps);
		for (size_t i = 0; i < n;) {
			size_t c = 1 + rnd() % 3000;
			int r;

			if (c > n - i)
				c = n - i;
			r = wire_dec_feed(&d, buf + i, c);
			i += c;
			if (r) {
				assert_int_equal(r, err ? err : d.err);
				err = r;
			}
			while ((r = wire_dec_next(&d, &m)) == 0) {
				assert_int_equal(err, 0);
				msgs++;
				assert_true(m.type < WIRE_TYPE_MAX_);
				assert_string_not_equal(wire_type_name(m.type), "?");
				assert_int_equal(m.flags & ~(WIRE_F_ALL_ |
							     (m.type == WIRE_LOCK_NACK ?
							      WIRE_F_LK_NOMEM : 0) |
							     (m.type == WIRE_BARRIER_DONE ?
							      WIRE_F_BMODE | WIRE_F_BPOLL : 0)),
						 0);
				assert_true(m.len <= WIRE_PEERS_MAX || m.len == ps);
				assert_true((m.len == 0) == (m.payload == NULL));
				if (m.len)
					(void)wire_is_zero(m.payload, m.len & ~7u);
			}
			if (r != -EAGAIN) {
				assert_true(r == -EPROTO || r == -EMSGSIZE || r == -ENOBUFS);
				if (err)
					assert_int_equal(r, err);
				err = r;
				assert_int_equal(d.err, r);
				/* sticky */
				assert_int_equal(wire_dec_next(&d, &m), r);
				assert_int_equal(wire_dec_feed(&d, buf, 1), r);
			}
		}
		if (err)
			errs++;
		wire_dec_free(&d);
	}
	print_message("  random: %u messages, %u streams ended in an error\n", msgs, errs);
	assert_true(msgs > 1000);
	assert_true(errs > 1000);
}

/* The payload decoders take arbitrary bytes too. */
/* Receiving in place (wire_dec_space/commit, as the node does) in uneven chunks yields the
 * same messages as feeding; the space limit is the decoder's limit. */
static void test_space_commit(void **state)
{
	static struct sample s[NTYPES * 2];
	static uint8_t buf[NTYPES * 2 * (WIRE_HDR_LEN + WIRE_PEERS_MAX + PS)];
	size_t n = 0, len = 0, off = 0, got = 0;
	struct wire_dec d;
	struct wire_msg m;
	uint8_t *p;
	size_t room;

	(void)state;
	for (unsigned v = 0; v < 2; v++)
		for (size_t t = 0; t < NTYPES; t++)
			make(&s[n++], all_types[t], v);
	for (size_t i = 0; i < n; i++)
		len += encode(buf + len, sizeof(buf) - len, &s[i].m);
	wire_dec_init(&d, PS);
	for (size_t chunk = 1; off < len; chunk = chunk * 3 % 997 + 1) {
		size_t k = chunk < len - off ? chunk : len - off;

		assert_int_equal(wire_dec_space(&d, k, &p, &room), 0);
		assert_true(room >= k);
		memcpy(p, buf + off, k);
		wire_dec_commit(&d, k);
		off += k;
		while (wire_dec_next(&d, &m) == 0)
			assert_msg_equal(&s[got++].m, &m);
	}
	assert_int_equal(got, n);
	assert_int_equal(wire_dec_space(&d, WIRE_BUFFER_MAX + 1, &p, &room), -ENOBUFS);
	assert_int_equal(wire_dec_next(&d, &m), -ENOBUFS); /* sticky */
	wire_dec_free(&d);
}

static void test_random_payloads(void **state)
{
	static uint8_t buf[WIRE_PEERS_MAX + 8];
	static struct wire_peer q[64];
	struct wire_hello h;
	uint32_t self;

	(void)state;
	rng_state = 777;
	for (int round = 0; round < 20000; round++) {
		size_t n = rnd() % sizeof(buf);
		int r;

		for (size_t i = 0; i < n; i++)
			buf[i] = (uint8_t)(round & 1 ? 0x21 + rnd() % 0x5e : rnd());
		if (round & 2) { /* small address lengths make more entries parse */
			for (size_t i = 4; i + 6 <= n; i += 6 + (buf[i + 4] = (uint8_t)(rnd() % 8)))
				buf[i + 5] = 0;
		}
		r = wire_hello_decode(buf, n, &h);
		assert_true(r == 0 || r == -EPROTO);
		if (r == 0)
			assert_true(strlen(h.addr) == n - WIRE_HELLO_FIXED);
		r = wire_peers_decode(buf, n, &self, q, 64);
		assert_true(r == -EPROTO || (r >= 0 && r <= 64));
		for (int i = 0; i < r; i++)
			assert_true(strlen(q[i].addr) <= WIRE_ADDR_MAX);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_header_layout),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_hint),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_nobufs),
		cmocka_unit_test(test_payload_lifetime),
		cmocka_unit_test(test_is_zero),
		cmocka_unit_test(test_unaligned_payload),
		cmocka_unit_test(test_hello),
		cmocka_unit_test(test_lock_msgs),
		cmocka_unit_test(test_adopt_entry),
		cmocka_unit_test(test_peers),
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_random_payloads),
		cmocka_unit_test(test_space_commit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
