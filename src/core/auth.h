/* SPDX-License-Identifier: MIT */
/*
 * auth.h - mutual authentication of a connection between two nodes of a cluster that share a
 * secret: a challenge-response over fresh nonces, run on every connection before anything
 * else is said on it.
 *
 *   initiator (connects)                         responder (accepts)
 *     AUTH_HELLO(magic, version, flags, id_I, N_I) ->
 *                                                <- AUTH_PROOF(id_R, N_R, MAC_R)
 *     AUTH_CONFIRM(MAC_I) ->
 *   MAC_x = HMAC-SHA-256(K, "udsm-auth" | x | version | flags | cluster id | id_I | id_R |
 *                           N_I | N_R), with x = 'R' or 'I' so neither MAC can stand in
 *   for the other. Either side answers a failed check with AUTH_FAIL(reason) and hangs up.
 *
 * K and the cluster id are derived from the secret with BLAKE2b and libsodium's KDF; the raw
 * secret is used for nothing else. Without a secret the same exchange runs with a key derived
 * from the empty string: it then proves nothing (the caller restricts such nodes to loopback
 * peers) but keeps one code path, and a node with a secret refuses a node without one.
 *
 * This file is part of the pure core: the nonces come from the caller (which draws them from
 * randombytes_buf()), so the state machine is deterministic and can be fuzzed.
 */
#ifndef UDSM_AUTH_H
#define UDSM_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/wire.h"

#define AUTH_NONCE_LEN 32u
#define AUTH_MAC_LEN 32u
#define AUTH_CLUSTER_LEN 16u
#define AUTH_F_SECRET 0x1u /* AUTH_HELLO flags: the initiator holds a cluster secret */

/* AUTH_FAIL reasons (payload: u32). */
enum auth_fail {
	AUTH_FAIL_PROOF = 1,     /* your MAC did not verify: our secrets differ */
	AUTH_FAIL_NO_SECRET = 2, /* I hold a secret and you do not */
	AUTH_FAIL_SECRET = 3,    /* you hold a secret and I do not */
	AUTH_FAIL_VERSION = 4,   /* another protocol version */
	AUTH_FAIL_ID = 5,        /* you claim a node id I do not expect from you */
	AUTH_FAIL_PROTO = 6,     /* malformed or unexpected message */
	AUTH_FAIL_LOOPBACK = 7,  /* I have no secret and accept loopback peers only */
};

/* Keys derived from one cluster secret. */
struct auth_key {
	uint8_t mac[32];                   /* HMAC-SHA-256 key */
	uint8_t cluster[AUTH_CLUSTER_LEN]; /* cluster id, bound into every MAC */
	bool secret;                       /* false: derived from no secret at all */
};

/** auth_key_derive() - the keys of the secret @s of @len bytes (NULL/0: no secret). Needs
 *  sodium_init() to have succeeded. */
void auth_key_derive(struct auth_key *k, const void *s, size_t len);
/** auth_key_wipe() - erase the keys. */
void auth_key_wipe(struct auth_key *k);

enum auth_state {
	AUTH_S_WAIT_HELLO,   /* responder */
	AUTH_S_WAIT_PROOF,   /* initiator, after auth_start() */
	AUTH_S_WAIT_CONFIRM, /* responder */
	AUTH_S_DONE,
	AUTH_S_FAILED,
};

/*
 * One side of one handshake. The peer's id must lie in [peer_lo, peer_hi] (the initiator
 * expects exactly one id; node 0 expects WIRE_NODE_ANY; a joiner accepting mesh connections
 * expects any higher id). After success, @peer_id is the authenticated id of the peer.
 */
struct auth {
	const struct auth_key *key;
	bool initiator;
	enum auth_state state;
	uint32_t self_id, peer_lo, peer_hi, peer_id;
	uint8_t nonce[AUTH_NONCE_LEN], peer_nonce[AUTH_NONCE_LEN];
	uint8_t out[4 + AUTH_NONCE_LEN + AUTH_MAC_LEN + 16]; /* payload of the reply */
	char why[160];                                       /* the reason of the last failure */
};

/** auth_init() - a handshake; @nonce must be fresh random bytes for this connection only. */
void auth_init(struct auth *a, const struct auth_key *key, bool initiator, uint32_t self_id,
	       uint32_t peer_lo, uint32_t peer_hi, const uint8_t nonce[AUTH_NONCE_LEN]);
/** auth_start() - the initiator's first message (AUTH_HELLO) into @out. */
void auth_start(struct auth *a, struct wire_msg *out);
/**
 * auth_recv() - the next message @in from the peer (any type: the handshake comes first, so
 * anything else is refused). @out (a different struct from @in) receives a message to send
 * (out->type 0: none); it points into @a and stays valid until the next call.
 * Returns 0 (more to come), 1 (authenticated; send @out first if any), or UDSM_EAUTH,
 * UDSM_EVERSION or UDSM_EPROTO with a->why set and possibly an AUTH_FAIL in @out to send
 * before hanging up. A failed handshake stays failed.
 */
int auth_recv(struct auth *a, const struct wire_msg *in, struct wire_msg *out);
/** auth_fail_text() - what an AUTH_FAIL reason means, from the receiver's point of view. */
const char *auth_fail_text(uint32_t reason);
/** auth_fail_reason() - the reason an AUTH_FAIL message @m carries (0 if malformed). */
uint32_t auth_fail_reason(const struct wire_msg *m);
/** auth_fail_code() - the error code a node reports for a received AUTH_FAIL @m. */
int auth_fail_code(const struct wire_msg *m);

#endif /* UDSM_AUTH_H */
