/* SPDX-License-Identifier: MIT */
/*
 * auth.c - the mutual challenge-response every connection runs first (see auth.h and the
 * handshake table in docs/PROTOCOL.md). The cryptography is libsodium's: BLAKE2b and its KDF
 * to derive keys, HMAC-SHA-256 to prove, constant-time verification. Nothing here is home-made
 * but the transcript layout.
 */
#include "core/auth.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "udsm.h"

#define LABEL "udsm-auth"
#define LABEL_LEN 9u
#define TRANSCRIPT_LEN (LABEL_LEN + 1u + 4u + 4u + AUTH_CLUSTER_LEN + 4u + 4u + 2u * AUTH_NONCE_LEN)

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void auth_key_derive(struct auth_key *k, const void *s, size_t len)
{
	static const uint8_t personal[crypto_generichash_blake2b_PERSONALBYTES] = "udsm-secret-v2";
	uint8_t master[crypto_kdf_KEYBYTES];

	/* A secret of any length and quality becomes a uniform 256-bit master key; the MAC key
	 * and the cluster id are independent subkeys of it. */
	crypto_generichash_blake2b_salt_personal(master, sizeof(master), s, s ? len : 0, NULL, 0,
						 NULL, personal);
	crypto_kdf_derive_from_key(k->mac, sizeof(k->mac), 1, "udsmauth", master);
	crypto_kdf_derive_from_key(k->cluster, sizeof(k->cluster), 2, "udsmauth", master);
	k->secret = s && len;
	sodium_memzero(master, sizeof(master));
}

void auth_key_wipe(struct auth_key *k)
{
	sodium_memzero(k, sizeof(*k));
}

/* The bytes a MAC covers: who proves (@dir), the protocol version, whether a secret is in use,
 * the cluster, both ends' ids and both nonces. */
static void transcript(const struct auth *a, char dir, uint8_t t[TRANSCRIPT_LEN])
{
	const uint8_t *ni = a->initiator ? a->nonce : a->peer_nonce;
	const uint8_t *nr = a->initiator ? a->peer_nonce : a->nonce;
	uint32_t id_i = a->initiator ? a->self_id : a->peer_id;
	uint32_t id_r = a->initiator ? a->peer_id : a->self_id;
	uint8_t *p = t;

	memcpy(p, LABEL, LABEL_LEN);
	p += LABEL_LEN;
	*p++ = (uint8_t)dir;
	put32(p, WIRE_VERSION);
	put32(p + 4, a->key->secret ? AUTH_F_SECRET : 0);
	p += 8;
	memcpy(p, a->key->cluster, AUTH_CLUSTER_LEN);
	p += AUTH_CLUSTER_LEN;
	put32(p, id_i);
	put32(p + 4, id_r);
	p += 8;
	memcpy(p, ni, AUTH_NONCE_LEN);
	memcpy(p + AUTH_NONCE_LEN, nr, AUTH_NONCE_LEN);
}

static void mac(const struct auth *a, char dir, uint8_t out[AUTH_MAC_LEN])
{
	uint8_t t[TRANSCRIPT_LEN];

	transcript(a, dir, t);
	crypto_auth_hmacsha256(out, t, sizeof(t), a->key->mac);
}

static bool mac_ok(const struct auth *a, char dir, const uint8_t *got)
{
	uint8_t t[TRANSCRIPT_LEN];

	transcript(a, dir, t);
	return crypto_auth_hmacsha256_verify(got, t, sizeof(t), a->key->mac) == 0;
}

void auth_init(struct auth *a, const struct auth_key *key, bool initiator, uint32_t self_id,
	       uint32_t peer_lo, uint32_t peer_hi, const uint8_t nonce[AUTH_NONCE_LEN])
{
	memset(a, 0, sizeof(*a));
	a->key = key;
	a->initiator = initiator;
	a->state = initiator ? AUTH_S_WAIT_PROOF : AUTH_S_WAIT_HELLO;
	a->self_id = self_id;
	a->peer_lo = peer_lo;
	a->peer_hi = peer_hi;
	a->peer_id = initiator ? peer_lo : WIRE_NODE_ANY;
	memcpy(a->nonce, nonce, AUTH_NONCE_LEN);
}

static void msg(struct auth *a, struct wire_msg *out, unsigned type, uint32_t len)
{
	memset(out, 0, sizeof(*out));
	out->type = (uint8_t)type;
	out->src = (uint16_t)a->self_id;
	out->len = len;
	out->payload = a->out;
}

void auth_start(struct auth *a, struct wire_msg *out)
{
	put32(a->out, WIRE_MAGIC);
	put32(a->out + 4, WIRE_VERSION);
	put32(a->out + 8, a->key->secret ? AUTH_F_SECRET : 0);
	put32(a->out + 12, a->self_id);
	memcpy(a->out + 16, a->nonce, AUTH_NONCE_LEN);
	msg(a, out, WIRE_AUTH_HELLO, WIRE_AUTH_HELLO_LEN);
}

static int fail(struct auth *a, struct wire_msg *out, int err, uint32_t reason, const char *fmt,
		...) __attribute__((format(printf, 5, 6)));
static int fail(struct auth *a, struct wire_msg *out, int err, uint32_t reason, const char *fmt,
		...)
{
	va_list ap;

	a->state = AUTH_S_FAILED;
	va_start(ap, fmt);
	vsnprintf(a->why, sizeof(a->why), fmt, ap);
	va_end(ap);
	if (reason) {
		put32(a->out, reason);
		msg(a, out, WIRE_AUTH_FAIL, WIRE_AUTH_FAIL_LEN);
	}
	return err;
}

const char *auth_fail_text(uint32_t reason)
{
	switch (reason) {
	case AUTH_FAIL_PROOF:
		return "our proof did not verify there: the cluster secrets differ";
	case AUTH_FAIL_NO_SECRET:
		return "it requires a cluster secret and this node has none (set UDSM_SECRET)";
	case AUTH_FAIL_SECRET:
		return "it has no cluster secret and this node has one";
	case AUTH_FAIL_VERSION:
		return "it speaks another protocol version";
	case AUTH_FAIL_ID:
		return "it does not expect this node id from us";
	case AUTH_FAIL_PROTO:
		return "it did not understand our handshake";
	case AUTH_FAIL_LOOPBACK:
		return "it has no cluster secret, so it accepts peers on loopback addresses only "
		       "(set UDSM_SECRET on every node)";
	default:
		return "for an unknown reason";
	}
}

uint32_t auth_fail_reason(const struct wire_msg *m)
{
	return m->type == WIRE_AUTH_FAIL && m->len == WIRE_AUTH_FAIL_LEN && m->payload
		       ? get32(m->payload)
		       : 0;
}

int auth_fail_code(const struct wire_msg *m)
{
	return auth_fail_reason(m) == AUTH_FAIL_VERSION ? UDSM_EVERSION : UDSM_EAUTH;
}

static int on_hello(struct auth *a, const struct wire_msg *in, struct wire_msg *out)
{
	const uint8_t *p = in->payload;
	uint32_t flags, id;

	if (get32(p) != WIRE_MAGIC)
		return fail(a, out, UDSM_EPROTO, AUTH_FAIL_PROTO, "%s", "not a udsm node");
	if (get32(p + 4) != WIRE_VERSION)
		return fail(a, out, UDSM_EVERSION, AUTH_FAIL_VERSION, "%s",
			    "it speaks another udsm protocol version");
	flags = get32(p + 8);
	if (flags & ~AUTH_F_SECRET)
		return fail(a, out, UDSM_EPROTO, AUTH_FAIL_PROTO, "%s", "unknown handshake flags");
	if (!(flags & AUTH_F_SECRET) && a->key->secret)
		return fail(a, out, UDSM_EAUTH, AUTH_FAIL_NO_SECRET, "%s",
			    "it has no cluster secret and this node has one");
	if ((flags & AUTH_F_SECRET) && !a->key->secret)
		return fail(a, out, UDSM_EAUTH, AUTH_FAIL_SECRET, "%s",
			    "it has a cluster secret and this node has none (set UDSM_SECRET)");
	id = get32(p + 12);
	if (id < a->peer_lo || id > a->peer_hi)
		return fail(a, out, UDSM_EAUTH, AUTH_FAIL_ID, "%s",
			    "it claims a node id this node does not expect from it");
	a->peer_id = id;
	memcpy(a->peer_nonce, p + 16, AUTH_NONCE_LEN);
	/* Our proof: our id, our nonce, and a MAC over both nonces. */
	put32(a->out, a->self_id);
	memcpy(a->out + 4, a->nonce, AUTH_NONCE_LEN);
	mac(a, 'R', a->out + 4 + AUTH_NONCE_LEN);
	msg(a, out, WIRE_AUTH_PROOF, WIRE_AUTH_PROOF_LEN);
	a->state = AUTH_S_WAIT_CONFIRM;
	return 0;
}

static int on_proof(struct auth *a, const struct wire_msg *in, struct wire_msg *out)
{
	const uint8_t *p = in->payload;

	if (get32(p) != a->peer_id)
		return fail(a, out, UDSM_EAUTH, AUTH_FAIL_ID, "%s",
			    "it answered as another node than the one we called");
	memcpy(a->peer_nonce, p + 4, AUTH_NONCE_LEN);
	if (!mac_ok(a, 'R', p + 4 + AUTH_NONCE_LEN))
		return fail(a, out, UDSM_EAUTH, AUTH_FAIL_PROOF, "%s",
			    "it could not prove it holds our cluster secret: the secrets differ");
	mac(a, 'I', a->out);
	msg(a, out, WIRE_AUTH_CONFIRM, WIRE_AUTH_CONFIRM_LEN);
	a->state = AUTH_S_DONE;
	return 1;
}

static int on_confirm(struct auth *a, const struct wire_msg *in, struct wire_msg *out)
{
	if (!mac_ok(a, 'I', in->payload))
		return fail(a, out, UDSM_EAUTH, AUTH_FAIL_PROOF, "%s",
			    "it could not prove it holds our cluster secret: the secrets differ");
	a->state = AUTH_S_DONE;
	return 1;
}

int auth_recv(struct auth *a, const struct wire_msg *in, struct wire_msg *out)
{
	static const uint8_t want[] = {
		[AUTH_S_WAIT_HELLO] = WIRE_AUTH_HELLO,
		[AUTH_S_WAIT_PROOF] = WIRE_AUTH_PROOF,
		[AUTH_S_WAIT_CONFIRM] = WIRE_AUTH_CONFIRM,
	};
	static const uint32_t want_len[] = {
		[AUTH_S_WAIT_HELLO] = WIRE_AUTH_HELLO_LEN,
		[AUTH_S_WAIT_PROOF] = WIRE_AUTH_PROOF_LEN,
		[AUTH_S_WAIT_CONFIRM] = WIRE_AUTH_CONFIRM_LEN,
	};

	memset(out, 0, sizeof(*out));
	if (a->state == AUTH_S_FAILED)
		return UDSM_EAUTH;
	if (in->type == WIRE_AUTH_FAIL) {
		return fail(a, out, auth_fail_code(in), 0, "it refused us: %s",
			    auth_fail_text(auth_fail_reason(in)));
	}
	if (a->state == AUTH_S_DONE)
		return fail(a, out, UDSM_EPROTO, AUTH_FAIL_PROTO, "%s",
			    "handshake message after the handshake");
	if (in->type == WIRE_HELLO && a->state == AUTH_S_WAIT_HELLO)
		return fail(a, out, UDSM_EVERSION, 0, "%s",
			    "it speaks an older udsm protocol (no authentication)");
	if (in->type != want[a->state] || in->len != want_len[a->state] || !in->payload)
		return fail(a, out, UDSM_EPROTO, AUTH_FAIL_PROTO,
			    "unexpected %s during the handshake", wire_type_name(in->type));
	switch (a->state) {
	case AUTH_S_WAIT_HELLO:
		return on_hello(a, in, out);
	case AUTH_S_WAIT_PROOF:
		return on_proof(a, in, out);
	default:
		return on_confirm(a, in, out);
	}
}
