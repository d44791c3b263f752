/* SPDX-License-Identifier: MIT */
/*
 * test_auth.c - unit tests of the connection handshake (src/core/auth.c): two state machines
 * talk through the real wire encoder and decoder. Success with one secret; refusal with
 * another, with one side lacking a secret, with an unexpected node id, with any single
 * tampered byte, with a replayed or reflected proof, with an older peer; keys derived from
 * a secret are neither the secret nor each other.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "core/auth.h"
#include "udsm.h"

static uint8_t nonce_i[AUTH_NONCE_LEN], nonce_r[AUTH_NONCE_LEN];

static int setup(void **state)
{
	(void)state;
	assert_true(sodium_init() >= 0);
	randombytes_buf(nonce_i, sizeof(nonce_i));
	randombytes_buf(nonce_r, sizeof(nonce_r));
	return 0;
}

/* Through the codec, as on a socket: @m encoded, decoded, and a copy kept in @keep. */
static void carry(const struct wire_msg *m, struct wire_msg *out, uint8_t *keep)
{
	uint8_t buf[WIRE_HDR_LEN + 128];
	size_t n = wire_encode(buf, sizeof(buf), m);
	struct wire_dec d;

	assert_true(n > 0);
	wire_dec_init(&d, 4096);
	assert_int_equal(wire_dec_feed(&d, buf, n), 0);
	assert_int_equal(wire_dec_next(&d, out), 0);
	memcpy(keep, out->payload, out->len);
	out->payload = keep;
	wire_dec_free(&d);
}

struct run {
	int ri, rr;                   /* final results of initiator and responder */
	uint32_t fail_i, fail_r;      /* AUTH_FAIL reasons each side sent (0: none) */
	struct auth i, r;
	uint8_t hello[64], proof[96], confirm[64];
	struct wire_msg mh, mp, mc;
};

/* A whole handshake; @tamper (if >= 0) flips one payload byte: message @tamper / 256
 * (0 HELLO, 1 PROOF, 2 CONFIRM), byte @tamper % 256 of it. */
static void handshake(struct run *x, const struct auth_key *ki, const struct auth_key *kr,
		      uint32_t id_i, uint32_t expect_r, uint32_t id_r, uint32_t lo, uint32_t hi,
		      int tamper)
{
	struct wire_msg out, back;

	memset(x, 0, sizeof(*x));
	auth_init(&x->i, ki, true, id_i, expect_r, expect_r, nonce_i);
	auth_init(&x->r, kr, false, id_r, lo, hi, nonce_r);
	auth_start(&x->i, &out);
	carry(&out, &x->mh, x->hello);
	if (tamper >= 0 && tamper / 256 == 0)
		x->hello[tamper % 256 % x->mh.len] ^= 0x20;
	x->rr = auth_recv(&x->r, &x->mh, &out);
	if (x->rr < 0) {
		if (out.type == WIRE_AUTH_FAIL)
			x->fail_r = auth_fail_reason(&out);
		x->ri = auth_recv(&x->i, &out, &back);
		return;
	}
	assert_int_equal(x->rr, 0);
	assert_int_equal(out.type, WIRE_AUTH_PROOF);
	carry(&out, &x->mp, x->proof);
	if (tamper >= 0 && tamper / 256 == 1)
		x->proof[tamper % 256 % x->mp.len] ^= 0x01;
	x->ri = auth_recv(&x->i, &x->mp, &out);
	if (x->ri < 0) {
		if (out.type == WIRE_AUTH_FAIL)
			x->fail_i = auth_fail_reason(&out);
		x->rr = auth_recv(&x->r, &out, &back);
		return;
	}
	assert_int_equal(x->ri, 1);
	assert_int_equal(out.type, WIRE_AUTH_CONFIRM);
	carry(&out, &x->mc, x->confirm);
	if (tamper >= 0 && tamper / 256 == 2)
		x->confirm[tamper % 256 % x->mc.len] ^= 0x80;
	x->rr = auth_recv(&x->r, &x->mc, &out);
	if (x->rr < 0 && out.type == WIRE_AUTH_FAIL)
		x->fail_r = auth_fail_reason(&out);
}

static void test_success(void **state)
{
	struct auth_key k;
	struct run x;

	(void)state;
	auth_key_derive(&k, "s3cret", 6);
	assert_true(k.secret);
	/* A joiner with node 0, and joiner 5 with joiner 2 (which accepts ids 3..7). */
	handshake(&x, &k, &k, WIRE_NODE_ANY, 0, 0, WIRE_NODE_ANY, WIRE_NODE_ANY, -1);
	assert_int_equal(x.ri, 1);
	assert_int_equal(x.rr, 1);
	assert_int_equal(x.r.peer_id, WIRE_NODE_ANY);
	handshake(&x, &k, &k, 5, 2, 2, 3, 7, -1);
	assert_int_equal(x.ri, 1);
	assert_int_equal(x.rr, 1);
	assert_int_equal(x.r.peer_id, 5);
	assert_int_equal(x.i.state, AUTH_S_DONE);
	/* Done is done: another handshake message afterwards is refused. */
	struct wire_msg out;
	assert_int_equal(auth_recv(&x.r, &x.mc, &out), UDSM_EPROTO);
	/* Without secrets on both sides it runs too (protected mode restricts the peers). */
	struct auth_key none;
	auth_key_derive(&none, NULL, 0);
	assert_false(none.secret);
	handshake(&x, &none, &none, WIRE_NODE_ANY, 0, 0, WIRE_NODE_ANY, WIRE_NODE_ANY, -1);
	assert_int_equal(x.ri, 1);
	assert_int_equal(x.rr, 1);
}

static void test_refusals(void **state)
{
	struct auth_key a, b, none;
	struct run x;

	(void)state;
	auth_key_derive(&a, "alpha", 5);
	auth_key_derive(&b, "alphb", 5);
	auth_key_derive(&none, NULL, 0);
	/* Another secret: the initiator catches the responder's proof and says so. */
	handshake(&x, &b, &a, WIRE_NODE_ANY, 0, 0, WIRE_NODE_ANY, WIRE_NODE_ANY, -1);
	assert_int_equal(x.ri, UDSM_EAUTH);
	assert_int_equal(x.fail_i, AUTH_FAIL_PROOF);
	assert_int_equal(x.rr, UDSM_EAUTH);
	assert_non_null(strstr(x.r.why, "secrets differ"));
	/* One side without a secret, either way round. */
	handshake(&x, &none, &a, WIRE_NODE_ANY, 0, 0, WIRE_NODE_ANY, WIRE_NODE_ANY, -1);
	assert_int_equal(x.rr, UDSM_EAUTH);
	assert_int_equal(x.fail_r, AUTH_FAIL_NO_SECRET);
	assert_int_equal(x.ri, UDSM_EAUTH);
	assert_non_null(strstr(x.i.why, "UDSM_SECRET"));
	handshake(&x, &a, &none, WIRE_NODE_ANY, 0, 0, WIRE_NODE_ANY, WIRE_NODE_ANY, -1);
	assert_int_equal(x.fail_r, AUTH_FAIL_SECRET);
	assert_int_equal(x.ri, UDSM_EAUTH);
	/* Node 0 expects joiners (id ANY), not a mesh id; a joiner accepts only higher ids. */
	handshake(&x, &a, &a, 3, 0, 0, WIRE_NODE_ANY, WIRE_NODE_ANY, -1);
	assert_int_equal(x.fail_r, AUTH_FAIL_ID);
	handshake(&x, &a, &a, 2, 2, 2, 3, 7, -1);
	assert_int_equal(x.fail_r, AUTH_FAIL_ID);
	/* The initiator called node 2; node 4 answers (with the right secret). */
	handshake(&x, &a, &a, 5, 2, 4, 3, 7, -1);
	assert_int_equal(x.ri, UDSM_EAUTH);
	assert_int_equal(x.fail_i, AUTH_FAIL_ID);
	/* A failed handshake stays failed. */
	struct wire_msg out;
	assert_int_equal(auth_recv(&x.i, &x.mp, &out), UDSM_EAUTH);
}

/* Every single flipped byte of every message makes the handshake fail on some side, and
 * never lets both sides succeed. */
static void test_tamper(void **state)
{
	struct auth_key k;
	struct run x;
	const uint32_t len[3] = { WIRE_AUTH_HELLO_LEN, WIRE_AUTH_PROOF_LEN, WIRE_AUTH_CONFIRM_LEN };

	(void)state;
	auth_key_derive(&k, "tamper", 6);
	for (int msg = 0; msg < 3; msg++)
		for (uint32_t b = 0; b < len[msg]; b++) {
			handshake(&x, &k, &k, 5, 2, 2, 3, 7, msg * 256 + (int)b);
			if (x.ri == 1 && x.rr == 1)
				fail_msg("message %d byte %u flipped, both sides accepted", msg, b);
			assert_true(x.ri < 0 || x.rr < 0);
		}
}

/* A proof recorded on one connection is worth nothing on another (fresh nonces), and the
 * responder's proof cannot be reflected back as the initiator's. */
static void test_replay_reflect(void **state)
{
	struct auth_key k;
	struct run x, y;
	struct wire_msg out;

	(void)state;
	auth_key_derive(&k, "replay", 6);
	handshake(&x, &k, &k, 5, 2, 2, 3, 7, -1);
	assert_int_equal(x.rr, 1);
	/* Replay: same HELLO (an attacker can resend it), new responder nonce, old CONFIRM. */
	randombytes_buf(nonce_r, sizeof(nonce_r));
	auth_init(&y.r, &k, false, 2, 3, 7, nonce_r);
	assert_int_equal(auth_recv(&y.r, &x.mh, &out), 0);
	assert_int_equal(auth_recv(&y.r, &x.mc, &out), UDSM_EAUTH);
	assert_int_equal(out.type, WIRE_AUTH_FAIL);
	/* Reflection: the MAC of the responder's PROOF sent back as a CONFIRM. */
	auth_init(&y.r, &k, false, 2, 3, 7, nonce_r);
	assert_int_equal(auth_recv(&y.r, &x.mh, &out), 0);
	memcpy(y.confirm, out.payload + 4 + AUTH_NONCE_LEN, AUTH_MAC_LEN);
	y.mc = (struct wire_msg){ .type = WIRE_AUTH_CONFIRM, .len = WIRE_AUTH_CONFIRM_LEN,
				  .payload = y.confirm };
	assert_int_equal(auth_recv(&y.r, &y.mc, &out), UDSM_EAUTH);
}

/* An older node opens with HELLO; anything but the handshake first is refused. */
static void test_order(void **state)
{
	struct auth_key k;
	struct auth r;
	struct wire_msg out, m = { .type = WIRE_HELLO, .len = 36 };
	uint8_t p[64] = { 0 };

	(void)state;
	auth_key_derive(&k, "order", 5);
	m.payload = p;
	auth_init(&r, &k, false, 0, WIRE_NODE_ANY, WIRE_NODE_ANY, nonce_r);
	assert_int_equal(auth_recv(&r, &m, &out), UDSM_EVERSION);
	auth_init(&r, &k, false, 0, WIRE_NODE_ANY, WIRE_NODE_ANY, nonce_r);
	m = (struct wire_msg){ .type = WIRE_MAPPED };
	assert_int_equal(auth_recv(&r, &m, &out), UDSM_EPROTO);
	assert_int_equal(out.type, WIRE_AUTH_FAIL);
	assert_int_equal(auth_fail_reason(&out), AUTH_FAIL_PROTO);
	/* Another version inside AUTH_HELLO. */
	auth_init(&r, &k, false, 0, WIRE_NODE_ANY, WIRE_NODE_ANY, nonce_r);
	memset(p, 0, sizeof(p));
	p[0] = 0x55, p[1] = 0x44, p[2] = 0x53, p[3] = 0x4d, p[4] = WIRE_VERSION + 1;
	m = (struct wire_msg){ .type = WIRE_AUTH_HELLO, .len = WIRE_AUTH_HELLO_LEN, .payload = p };
	assert_int_equal(auth_recv(&r, &m, &out), UDSM_EVERSION);
	assert_int_equal(auth_fail_code(&out), UDSM_EVERSION);
}

static void test_keys(void **state)
{
	struct auth_key a, a2, b;
	static const char s[] = "0123456789abcdef0123456789abcdef";

	(void)state;
	auth_key_derive(&a, s, 32);
	auth_key_derive(&a2, s, 32);
	auth_key_derive(&b, s, 31);
	assert_memory_equal(&a, &a2, sizeof(a));
	assert_memory_not_equal(a.mac, b.mac, sizeof(a.mac));
	assert_memory_not_equal(a.cluster, b.cluster, sizeof(a.cluster));
	assert_memory_not_equal(a.mac, s, sizeof(a.mac)); /* never the raw secret */
	assert_memory_not_equal(a.mac, a.cluster, sizeof(a.cluster));
	auth_key_wipe(&a);
	assert_false(a.secret);
	for (size_t i = 0; i < sizeof(a.mac); i++)
		assert_int_equal(a.mac[i], 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_success),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_tamper),
		cmocka_unit_test(test_replay_reflect),
		cmocka_unit_test(test_order),
		cmocka_unit_test(test_keys),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
