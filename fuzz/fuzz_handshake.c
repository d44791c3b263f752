/* SPDX-License-Identifier: MIT */
/*
 * fuzz_handshake.c - libFuzzer target for the connection handshake (src/core/auth.c) behind the
 * wire decoder (src/core/wire.c).
 *
 * The first input byte picks a mode:
 *  - stranger (bit 7 clear): the remaining bytes are a byte stream from a peer that does not
 *    know the secret, framed by the real decoder and fed to an initiator or a responder (bit
 *    0) with or without a secret (bit 1), as node 0 or as a joiner (bit 2). It must never
 *    crash, every reply must be a well-formed message, a failure must stay a failure, and a
 *    side holding a secret must never report success: the stranger cannot know the MAC.
 *  - man in the middle (bit 7 set): a real initiator and responder with the same secret run the
 *    handshake; the remaining bytes are XOR masks over the encoded messages in flight. If any
 *    byte that matters (type, flags, length, payload) was changed, the two sides must not both
 *    report success.
 */
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/auth.h"
#include "udsm.h"
#include "core/wire.h"

static struct auth_key k_secret, k_none;
static const uint8_t nonce_a[AUTH_NONCE_LEN] = { 1, 2, 3 }, nonce_b[AUTH_NONCE_LEN] = { 9, 8 };

#define CHECK(c)                                                                               \
	do {                                                                                   \
		if (!(c))                                                                      \
			abort();                                                               \
	} while (0)

static void init(void)
{
	static int done;

	if (done)
		return;
	CHECK(sodium_init() >= 0);
	auth_key_derive(&k_secret, "fuzz secret", 11);
	auth_key_derive(&k_none, NULL, 0);
	done = 1;
}

/* A reply must survive the real codec unchanged. */
static void check_reply(const struct wire_msg *out)
{
	uint8_t buf[WIRE_HDR_LEN + 128];
	struct wire_dec d;
	struct wire_msg m;
	size_t n;

	if (!out->type)
		return;
	CHECK(out->type >= WIRE_AUTH_HELLO && out->type <= WIRE_AUTH_FAIL);
	n = wire_encode(buf, sizeof(buf), out);
	CHECK(n);
	wire_dec_init(&d, 4096);
	CHECK(wire_dec_feed(&d, buf, n) == 0);
	CHECK(wire_dec_next(&d, &m) == 0);
	CHECK(m.type == out->type && m.len == out->len);
	CHECK(!memcmp(m.payload, out->payload, m.len));
	wire_dec_free(&d);
}

static void stranger(const uint8_t *p, size_t n, uint8_t mode)
{
	const struct auth_key *k = (mode & 2) ? &k_none : &k_secret;
	bool initiator = mode & 1, node0 = mode & 4;
	struct wire_msg m, out;
	struct wire_dec d;
	struct auth a;
	int last = 0;

	if (initiator)
		auth_init(&a, k, true, node0 ? WIRE_NODE_ANY : 5, node0 ? 0 : 2, node0 ? 0 : 2,
			  nonce_a);
	else if (node0)
		auth_init(&a, k, false, 0, WIRE_NODE_ANY, WIRE_NODE_ANY, nonce_a);
	else
		auth_init(&a, k, false, 2, 3, 7, nonce_a);
	if (initiator) {
		auth_start(&a, &out);
		check_reply(&out);
	}
	wire_dec_init(&d, 4096);
	/* Feed in pieces of the sizes the input asks for, as a socket would deliver them. */
	while (n) {
		size_t c = 1 + p[0] % 97;

		p++, n--;
		if (c > n)
			c = n;
		if (wire_dec_feed(&d, p, c))
			break;
		p += c, n -= c;
		while (wire_dec_next(&d, &m) == 0) {
			int r = auth_recv(&a, &m, &out);

			check_reply(&out);
			CHECK(r == 0 || r == 1 || r == UDSM_EAUTH || r == UDSM_EPROTO ||
			      r == UDSM_EVERSION);
			if (last < 0)
				CHECK(r < 0); /* failed stays failed */
			if (k->secret)
				CHECK(r != 1); /* nobody without the secret gets in */
			if (r == 1)
				CHECK(a.state == AUTH_S_DONE);
			if (r < 0)
				CHECK(a.state == AUTH_S_FAILED && a.why[0]);
			if (r)
				last = r;
		}
	}
	wire_dec_free(&d);
}

/* Carry @m through the codec with @mask XORed over its encoded bytes. Returns 0 and the
 * message in @got (payload copied to @keep), or -1 if the frame no longer decodes whole. */
static int carry(const struct wire_msg *m, const uint8_t **mask, size_t *mlen, bool *changed,
		 struct wire_msg *got, uint8_t *keep)
{
	uint8_t buf[WIRE_HDR_LEN + 128];
	size_t n = wire_encode(buf, sizeof(buf), m);
	struct wire_dec d;
	int err;

	for (size_t i = 0; i < n && *mlen; i++, (*mask)++, (*mlen)--) {
		buf[i] ^= **mask;
		/* src (bytes 2-3), page and arg (8-23) mean nothing to the handshake. */
		if (**mask && !(i == 2 || i == 3 || (i >= 8 && i < WIRE_HDR_LEN)))
			*changed = true;
	}
	wire_dec_init(&d, 4096);
	err = wire_dec_feed(&d, buf, n);
	if (!err)
		err = wire_dec_next(&d, got);
	if (!err && got->len) {
		memcpy(keep, got->payload, got->len);
		got->payload = keep;
	}
	wire_dec_free(&d);
	return err ? -1 : 0;
}

static void mitm(const uint8_t *p, size_t n, uint8_t mode)
{
	bool node0 = mode & 4, changed = false;
	struct auth i, r;
	struct wire_msg out, got;
	uint8_t keep[128];
	int ri = 0, rr = 0;

	auth_init(&i, &k_secret, true, node0 ? WIRE_NODE_ANY : 5, node0 ? 0 : 2, node0 ? 0 : 2,
		  nonce_a);
	if (node0)
		auth_init(&r, &k_secret, false, 0, WIRE_NODE_ANY, WIRE_NODE_ANY, nonce_b);
	else
		auth_init(&r, &k_secret, false, 2, 3, 7, nonce_b);
	auth_start(&i, &out);
	/* Three messages at most: HELLO, PROOF, CONFIRM, alternating sides. */
	for (int step = 0; step < 3 && out.type; step++) {
		struct auth *to = step == 1 ? &i : &r;
		struct wire_msg reply;
		int res;

		if (carry(&out, &p, &n, &changed, &got, keep))
			return; /* the frame broke: neither side sees a message */
		res = auth_recv(to, &got, &reply);
		check_reply(&reply);
		if (to == &i)
			ri = res;
		else
			rr = res;
		if (res < 0)
			break;
		out = reply;
	}
	if (ri == 1 && rr == 1) {
		CHECK(!changed);
		CHECK(r.peer_id == i.self_id);
	} else if (!changed) {
		abort(); /* an untouched handshake between two holders of the secret must work */
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	init();
	if (!size)
		return 0;
	if (data[0] & 0x80)
		mitm(data + 1, size - 1, data[0]);
	else
		stranger(data + 1, size - 1, data[0]);
	return 0;
}
