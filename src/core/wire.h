/* SPDX-License-Identifier: MIT */
/*
 * wire.h - the udsm wire format: message layout, encoder and a push decoder.
 *
 * Every message is a fixed 24-byte header followed by @len payload bytes. All integers are
 * little-endian. The decoder is a push parser in the hiredis style: feed it any bytes, then
 * take complete messages out one by one. It has explicit limits and a sticky error: once it
 * has seen a malformed header it refuses everything after it, because the stream can no
 * longer be framed.
 *
 * Contract of wire_dec_feed()/wire_dec_next(): they accept arbitrary bytes and never crash;
 * this is the surface a fuzzer may drive.
 *
 * This file is part of the pure core: no system calls.
 */
#ifndef UDSM_WIRE_H
#define UDSM_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_MAGIC 0x4d534455u /* "UDSM" read as a little-endian u32 */
#define WIRE_VERSION 5u /* 2: every connection authenticates first (AUTH_*); 3: HELLO has
			 * the home layout's chunk; 4: the POLL hint (WIRE_H_POLL); 5: LOCK_NACK's
			 * NOMEM flag (WIRE_F_LK_NOMEM) */
#define WIRE_HDR_LEN 24u
#define WIRE_ADDR_MAX 255u                   /* longest "host:port" in a handshake */
#define WIRE_HELLO_FIXED 40u                 /* handshake payload before the address */
#define WIRE_PEERS_MAX (4u + 64u * (4u + 2u + WIRE_ADDR_MAX))
#define WIRE_PAGE_MAX (64u * 1024u)          /* largest page size we accept */
#define WIRE_BUFFER_MAX (4u * 1024u * 1024u) /* bytes a decoder may hold unparsed */
#define WIRE_NODE_ANY 0xffffffffu            /* handshake: "assign me an id" */
/* Payload lengths of the authentication messages (src/core/auth.h has the layouts). */
#define WIRE_AUTH_HELLO_LEN 48u   /* magic, version, flags, node id, nonce[32] */
#define WIRE_AUTH_PROOF_LEN 68u   /* node id, nonce[32], mac[32] */
#define WIRE_AUTH_CONFIRM_LEN 32u /* mac[32] */
#define WIRE_AUTH_FAIL_LEN 4u     /* reason */

/*
 * Message types. The numbering is part of the protocol: never reuse a number.
 * docs/PROTOCOL.md describes each one; tests/unit/test_wire.c round-trips each one.
 */
enum wire_type {
	WIRE_HELLO = 1,       /* handshake, both directions; payload: struct wire_hello */
	WIRE_MAPPED = 2,      /* joiner -> node 0: region mapped at the offered address */
	WIRE_PEERS = 3,       /* node 0 -> joiner: your id and every node's address */
	WIRE_READY = 4,       /* joiner -> node 0: connected to every peer */
	WIRE_GO = 5,          /* node 0 -> joiner: the whole cluster is connected */
	WIRE_AUTH_HELLO = 6,  /* connecting side, first on every connection: id and a nonce */
	WIRE_AUTH_PROOF = 7,  /* accepting side: its id, its nonce and a MAC over both nonces */
	WIRE_AUTH_CONFIRM = 8, /* connecting side: its MAC over both nonces */
	WIRE_AUTH_FAIL = 9,   /* either side, before hanging up: why it refuses the other */
	WIRE_GET_S = 10,      /* requester -> home: want page @page readable (@arg 1: read-ahead,
				 the home may decline: RA_SKIP) */
	WIRE_GET_M = 11,      /* requester -> home: want page @page writable */
	WIRE_DATA = 12,       /* home -> requester: page contents (flag EXCL: writable) */
	WIRE_GRANT = 13,      /* home -> requester: upgrade S->M, keep your copy */
	WIRE_INV = 14,        /* home -> sharer: drop your copy */
	WIRE_INV_ACK = 15,    /* sharer -> home: dropped */
	WIRE_FETCH = 16,      /* home -> owner: send the page back; @arg = WIRE_FETCH_TO_S or _TO_I */
	WIRE_FETCH_REPLY = 17, /* owner -> home: the page contents */
	WIRE_NACK = 18,       /* home -> requester: the page was lost with a dead node */
	WIRE_BARRIER = 20,    /* node -> node 0: arrived at barrier @arg */
	WIRE_BARRIER_DONE = 21, /* node 0 -> node: barrier @arg is complete (flag FAIL: failed) */
	WIRE_BYE = 22,        /* node -> all: left on purpose; @arg = successor or WIRE_NODE_ANY */
	/* Connection layer (src/conn.c, src/node.c): never reach the engine. */
	WIRE_PING = 23,       /* heartbeat on an otherwise idle link; @arg: sender's clock (ns) */
	WIRE_EXPEL = 24,      /* "I declared you lost": the receiver must fence itself */
	WIRE_LEAVE = 25,      /* leaver -> all: hand-over begins; defer requests to my pages */
	WIRE_LEAVE_ACK = 26,  /* node -> leaver: nothing new of mine will reach you as home */
	WIRE_PUTM = 27,       /* leaver -> home: page @page back, with contents (flag ZERO) */
	WIRE_ADOPT = 28,      /* leaver -> successor: one directory entry; struct wire_adopt */
	WIRE_ADOPT_DONE = 29, /* leaver -> successor: last entry sent; barrier state */
	/* Address-named locks (src/locks.c, src/core/lock.c): @page = the lock's byte offset in
	 * the region, @arg = the requester's tag (LOCK_ADOPT: see WIRE_LK_WHO). No payload. */
	WIRE_LOCK_REQ = 30,   /* requester -> home: want the lock (flag LK_TRY: or LOCK_BUSY) */
	WIRE_LOCK_GRANT = 31, /* home -> requester: yours (flag LK_DEAD: the last holder died) */
	WIRE_LOCK_BUSY = 32,  /* home -> requester: a LK_TRY request met a held lock */
	WIRE_LOCK_REL = 33,   /* holder -> home: released (flag LK_DEAD: given up unfinished) */
	WIRE_LOCK_NACK = 34,  /* home -> requester: this node does not home the lock any more */
	WIRE_LOCK_ADOPT = 35, /* leaver -> successor: one holder or waiter of one lock */
	/* 3-hop forwarding (docs/PROTOCOL.md, "Forwarding"): 44..55 */
	WIRE_FWD = 44,       /* home -> owner: send the page to node @arg & 0xff; @arg >> 8 is
				WIRE_FETCH_TO_S or _TO_I */
	WIRE_FWD_DATA = 45,  /* owner -> requester: the page (flags EXCL, ZERO), as DATA */
	WIRE_FWD_REPLY = 46, /* owner -> home: forwarded (TO_S: with the contents or ZERO;
				TO_I: no payload); @arg as in FETCH_REPLY. Also a sharer's
				answer to RECALL (with the contents) */
	WIRE_FWD_ACK = 47,   /* requester -> home: the forwarded page is installed; @arg: its
				digest when it came writable */
	WIRE_FWD_NONE = 48,  /* requester -> home: node @arg died, and nothing it forwarded
				for this page reached me */
	WIRE_RECALL = 49,    /* home -> sharer: send me your copy (keep it) */
	WIRE_FWD_ASK = 50,   /* home -> requester: node @arg died while forwarding this page
				to you; answer FWD_NONE once you know it is dead, if nothing came */
	WIRE_RA_SKIP = 51,   /* home -> requester: your read-ahead GET_S (@arg 1) is not
				served: the page has an owner or a transaction in progress */
	/* Sets of pages of one home (docs/PROTOCOL.md, "Read-ahead"): */
	WIRE_GET_S_SET = 52, /* requester -> home: read-ahead GET_S (arg 1) of every page
				@page + i with bit i set in the WIRE_SET_BYTES payload bitmap */
	WIRE_DATA_SET = 53,  /* home -> requester: the answers it could give at once: bitmaps
				served, zero (served, no payload), declined (as RA_SKIP), then
				the served non-zero pages in page order */
	WIRE_FETCH_SET = 54, /* home -> owner: FETCH (TO_S) of every page @page + i with bit i
				set in the WIRE_SET_BYTES payload bitmap; answered by one
				FETCH_REPLY per page */
	WIRE_TYPE_MAX_ = 64,
};

/* Header flag bits. */
#define WIRE_F_EXCL 0x01u /* DATA: install writable (Modified) */
#define WIRE_F_ZERO 0x02u /* DATA, FETCH_REPLY: the page is all zeros; no payload */
#define WIRE_F_FAIL 0x04u /* BARRIER_DONE: the barrier failed (a node was lost) */
#define WIRE_F_ALL_ 0x07u
/* BARRIER_DONE only: the coordinator says how every node waits in the next barrier (WIRE_F_BMODE:
 * it says; WIRE_F_BPOLL: poll, else sleep). Only a waiting strategy: docs/PROTOCOL.md. */
#define WIRE_F_BMODE 0x10u
#define WIRE_F_BPOLL 0x20u
/*
 * A hint, not protocol: the top bit of the flags byte, on any message between nodes (not on
 * the handshake's, types below WIRE_GET_S: there it is an error). The decoder moves it
 * from @flags to @hint, so the engine and the lock layer never see it, and the encoder sends
 * @hint with the flags. WIRE_H_POLL: the sender polls for what this message brings back;
 * the receiver may poll for the sender's next message rather than sleep (src/wait.h,
 * "Lingering").
 */
#define WIRE_H_POLL 0x80u
/* The same bits, meaning something else on the lock messages. */
#define WIRE_F_LK_TRY 0x01u    /* LOCK_REQ: answer LOCK_BUSY rather than queue */
#define WIRE_F_LK_HOLDER 0x02u /* LOCK_ADOPT: the entry is the lock's holder (first) */
#define WIRE_F_LK_DEAD 0x04u   /* LOCK_GRANT, LOCK_ADOPT: the previous holder died holding it;
				* LOCK_REL: the holder gives it up unfinished (it closes) */
#define WIRE_F_LK_NOMEM 0x08u  /* LOCK_NACK: the home had no memory for the request; the lock
				* is intact and may be asked for again (the only flag outside
				* WIRE_F_ALL_, and only on LOCK_NACK) */

/* LOCK_ADOPT @arg: the node in the top 8 bits (WIRE_OWNER_NONE: no holder), the tag below. */
#define WIRE_LK_WHO(node, tag) ((uint64_t)(node) << 56 | ((tag) & ((1ull << 56) - 1)))
#define WIRE_LK_NODE(arg) ((unsigned)((arg) >> 56))
#define WIRE_LK_TAG(arg) ((arg) & ((1ull << 56) - 1))

/* ADOPT_DONE: @arg = barrier epoch | WIRE_ADOPT_COORD if the leaver collected barriers,
 * @page = the set of nodes that arrived at that barrier. */
#define WIRE_ADOPT_COORD (1ull << 63)

/* GET_S_SET / DATA_SET / FETCH_SET: pages @page .. @page + WIRE_SET_PAGES - 1, a bitmap of
 * WIRE_SET_BYTES bytes each (bit i of byte i / 8 = page @page + i). DATA_SET carries three
 * bitmaps, then at most WIRE_SET_PAGES pages: at most 96 + 256 x 64 KiB, under
 * WIRE_BUFFER_MAX. */
#define WIRE_SET_PAGES 256u
#define WIRE_SET_BYTES (WIRE_SET_PAGES / 8u)
#define WIRE_DATA_SET_FIXED (3u * WIRE_SET_BYTES)

#define WIRE_FETCH_TO_S 0u
#define WIRE_FETCH_TO_I 1u

/* A decoded (or to-be-encoded) message. @payload points into the decoder's buffer and stays
 * valid until the next call to wire_dec_feed() or wire_dec_next(). */
struct wire_msg {
	uint8_t type;
	uint8_t flags;
	uint8_t hint; /* WIRE_H_POLL or 0: a scheduling hint, never seen by the engine */
	uint16_t src; /* sender's node id (WIRE_NODE_ANY truncated before it has one) */
	uint32_t len; /* payload length */
	uint64_t page;
	uint64_t arg;
	const uint8_t *payload;
};

/* Handshake payload: magic, version, page size, node id, cluster size, region size and
 * address, and the address ("host:port") the sender accepts peers on. */
struct wire_hello {
	uint32_t magic;
	uint32_t version;
	uint32_t page_size;
	uint32_t node_id; /* WIRE_NODE_ANY from a joiner that has no id yet */
	uint32_t nodes;
	uint64_t region_size;
	uint64_t base;
	uint32_t home_chunk; /* the default home layout's chunk in pages (core/place.h) */
	char addr[WIRE_ADDR_MAX + 1];
};

/* One entry of a WIRE_PEERS table. */
struct wire_peer {
	uint32_t id;
	char addr[WIRE_ADDR_MAX + 1];
};

/*
 * ADOPT payload: a directory entry handed to a new home. WIRE_ADOPT_FIXED bytes (owner u8,
 * flags u8, last reader u8, five zero bytes, sharers u64, migratory hash u64), followed by the
 * page's contents when nobody owns it and it is not all zeros (header flag ZERO otherwise).
 */
#define WIRE_ADOPT_FIXED 24u
#define WIRE_ADOPT_LOST 0x01u /* the only copy died with its owner */
#define WIRE_ADOPT_MIGR 0x02u /* the page is migratory */
#define WIRE_ADOPT_ALL_ 0x03u
#define WIRE_OWNER_NONE 0xffu

struct wire_adopt {
	uint8_t owner; /* WIRE_OWNER_NONE: nobody */
	uint8_t flags; /* WIRE_ADOPT_* */
	uint8_t last_rd;
	uint64_t sharers;
	uint64_t mhash;
};

/** wire_adopt_encode() - the fixed part of an ADOPT payload into @buf. */
void wire_adopt_encode(uint8_t buf[WIRE_ADOPT_FIXED], const struct wire_adopt *a);
/** wire_adopt_decode() - parse the fixed part; 0, or -EPROTO if @len is short or a reserved
 *  byte or flag is set. */
int wire_adopt_decode(const uint8_t *p, size_t len, struct wire_adopt *a);

/** wire_type_name() - printable name of a message type ("?" if unknown). */
const char *wire_type_name(unsigned type);

/** wire_encode_hdr() - write the 24-byte header of @m to @out. */
void wire_encode_hdr(uint8_t out[WIRE_HDR_LEN], const struct wire_msg *m);

/**
 * wire_encode() - header and @m->len bytes of @m->payload into @buf of @cap bytes.
 * Returns the bytes written, or 0 if @cap is too small.
 */
size_t wire_encode(void *buf, size_t cap, const struct wire_msg *m);

/** wire_hello_encode() - payload of @h into @buf (room for WIRE_HELLO_FIXED+WIRE_ADDR_MAX);
 *  returns its length. */
size_t wire_hello_encode(uint8_t *buf, const struct wire_hello *h);
/** wire_hello_decode() - parse a HELLO payload; 0, or -EPROTO if it is malformed. */
int wire_hello_decode(const uint8_t *p, size_t len, struct wire_hello *h);

/** wire_peers_encode() - a PEERS payload: @self (the recipient's id) and @n entries.
 *  @buf needs WIRE_PEERS_MAX bytes. Returns its length. */
size_t wire_peers_encode(uint8_t *buf, uint32_t self, const struct wire_peer *peers, size_t n);
/** wire_peers_decode() - parse a PEERS payload into at most @max entries; returns the number
 *  of entries and sets @self, or -EPROTO. */
int wire_peers_decode(const uint8_t *p, size_t len, uint32_t *self, struct wire_peer *peers,
		      size_t max);

/*
 * Push decoder.
 * Invariant: rd <= wr <= cap; bytes [rd, wr) are received and not yet returned.
 * Locking: one decoder belongs to one connection and one thread.
 */
struct wire_dec {
	uint8_t *buf;
	size_t cap, rd, wr;
	uint32_t page_size;
	int err; /* sticky: 0 or the error every later call returns */
	char why[96];
};

/** wire_dec_init() - an empty decoder for pages of @page_size bytes. */
void wire_dec_init(struct wire_dec *d, uint32_t page_size);
/** wire_dec_free() - release the decoder's buffer. */
void wire_dec_free(struct wire_dec *d);
/**
 * wire_dec_feed() - append @n received bytes.
 * Returns 0; -ENOBUFS if more than WIRE_BUFFER_MAX bytes would be held unparsed; -ENOMEM;
 * or the sticky error.
 */
int wire_dec_feed(struct wire_dec *d, const void *p, size_t n);
/**
 * wire_dec_space() - room for at least @want more bytes at the end of the buffer, to receive
 * into directly (saves feed's copy). Sets @p and @avail (>= @want). Returns 0, -ENOBUFS if more
 * than WIRE_BUFFER_MAX bytes would be held unparsed, -ENOMEM, or the sticky error. Like feed,
 * it invalidates payload pointers of earlier messages.
 */
int wire_dec_space(struct wire_dec *d, size_t want, uint8_t **p, size_t *avail);
/** wire_dec_commit() - @n bytes were written at the pointer wire_dec_space() gave. */
void wire_dec_commit(struct wire_dec *d, size_t n);
/**
 * wire_dec_next() - take the next complete message.
 * Returns 0 and fills @m; -EAGAIN if more bytes are needed; -EPROTO for an unknown type,
 * unknown flags or a length that does not fit the type; -EMSGSIZE for a payload over the
 * limit. Errors are sticky; d->why says what was wrong.
 */
int wire_dec_next(struct wire_dec *d, struct wire_msg *m);
/** wire_dec_pending() - bytes received but not yet returned as messages. */
size_t wire_dec_pending(const struct wire_dec *d);

/** wire_is_zero() - true if the @n bytes at @p are all zero (n a multiple of 8). */
bool wire_is_zero(const void *p, size_t n);

#endif /* UDSM_WIRE_H */
