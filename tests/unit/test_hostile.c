/* SPDX-License-Identifier: MIT */
/*
 * test_hostile.c - a peer may send anything. Streams of random but well-framed messages (any
 * type, flags, page, argument and sender, with and without payloads) are thrown at engines of
 * a 3-node cluster, interleaved with random local faults and barriers. The engine must answer
 * every message with 0 or UDSM_EPROTO and never trip one of its own invariants (which would
 * abort the process: a peer must not be able to crash a node). After a UDSM_EPROTO the
 * runtime drops the peer; the test does so now and then (eng_peer_lost()), and otherwise goes
 * on with it, since a rejected message must leave the engine unchanged. The hand-over messages
 * (LEAVE, LEAVE_ACK, PUTM, ADOPT with random entries, ADOPT_DONE, BYE naming a successor) are
 * in the mix, and now and then the engine itself starts leaving.
 *
 *   test_hostile [--seeds N] [--seed S]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"

#define PS 64u
#define NODES 3u
#define PAGES 8u

static uint8_t mem[PAGES][PS];
static uint64_t accepted, rejected;
static uint64_t rng;

static uint64_t next(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static unsigned rn(unsigned n)
{
	return (unsigned)(next() % n);
}

/* The fake kernel: pages are plain memory; every operation succeeds. */
static void f_send(void *c, unsigned dst, const struct wire_msg *m, const void *d)
{
	(void)c, (void)dst, (void)m, (void)d;
}
static int f_install(void *c, uint64_t p, const void *d, bool w)
{
	(void)c, (void)w;
	if (d)
		memcpy(mem[p], d, PS);
	else
		memset(mem[p], 0, PS);
	return 0;
}
static int f_nop(void *c, uint64_t p)
{
	(void)c, (void)p;
	return 0;
}
static const void *f_data(void *c, uint64_t p)
{
	(void)c;
	return mem[p];
}
static void f_bar(void *c, int err)
{
	(void)c, (void)err;
}

static const struct eng_ops ops = {
	.send = f_send, .install = f_install, .protect = f_nop, .unprotect = f_nop,
	.drop = f_nop, .page_data = f_data, .wake = f_nop, .poison = f_nop,
	.barrier_done = f_bar,
};

static const uint8_t types[] = {
	WIRE_GET_S, WIRE_GET_M, WIRE_DATA, WIRE_GRANT, WIRE_INV, WIRE_INV_ACK, WIRE_FETCH,
	WIRE_FETCH_REPLY, WIRE_NACK, WIRE_BARRIER, WIRE_BARRIER_DONE, WIRE_HELLO, WIRE_GO,
	WIRE_LEAVE, WIRE_LEAVE_ACK, WIRE_PUTM, WIRE_ADOPT, WIRE_ADOPT_DONE, WIRE_BYE,
	WIRE_LEAVE, WIRE_ADOPT, WIRE_PUTM, /* twice as likely: they open the hand-over paths */
};

static int run(uint64_t seed, unsigned steps)
{
	struct eng *e;
	struct eng_config c = {
		.nodes = NODES, .npages = PAGES, .page_size = PS, .ops = &ops,
	};
	uint8_t payload[WIRE_ADOPT_FIXED + PS];
	unsigned eproto = 0, ok = 0;

	rng = seed;
	c.self = rn(NODES);
	c.readahead = rn(3) ? (int)rn(6) : -1;
	c.no_migratory = rn(2);
	if (eng_create(&c, &e))
		return 1;
	for (unsigned i = 0; i < steps; i++) {
		unsigned what = rn(10);

		if (what == 0) {
			eng_fault(e, rn(PAGES + 1) % PAGES, rn(2));
			continue;
		}
		if (what == 1) {
			if (!rn(64))
				eng_leave(e);
			else
				eng_barrier(e);
			continue;
		}
		struct wire_msg m = {
			.type = types[rn(sizeof(types))],
			.flags = (uint8_t)rn(8),
			.page = rn(8) ? rn(PAGES) : next(),
			.arg = rn(4) ? rn(3) : next(),
		};
		unsigned src = rn(NODES);

		if (src == c.self)
			src = (src + 1) % NODES;
		m.src = (uint16_t)(rn(16) ? src : rn(NODES));
		if (m.type == WIRE_BYE || m.type == WIRE_ADOPT_DONE) /* a node id, mostly */
			m.arg = rn(4) ? rn(NODES) : rn(2) ? WIRE_NODE_ANY : next();
		if (m.type == WIRE_ADOPT_DONE && rn(2))
			m.arg |= WIRE_ADOPT_COORD;
		if ((m.type == WIRE_DATA || m.type == WIRE_FETCH_REPLY || m.type == WIRE_PUTM) &&
		    !(m.flags & WIRE_F_ZERO)) {
			for (unsigned k = 0; k < PS; k++)
				payload[k] = (uint8_t)next();
			m.len = rn(16) ? PS : rn(PS); /* now and then a short one */
			m.payload = payload;
		}
		if (m.type == WIRE_ADOPT) {
			/* An entry that is mostly plausible: small owner and sharer values. */
			struct wire_adopt a = {
				.owner = rn(2) ? WIRE_OWNER_NONE : (uint8_t)rn(NODES + 1),
				.flags = (uint8_t)(rn(4) ? rn(WIRE_ADOPT_ALL_ + 1) : next()),
				.last_rd = rn(2) ? 0xff : (uint8_t)rn(NODES + 1),
				.sharers = rn(4) ? rn(1u << NODES) : next(),
				.mhash = next(),
			};

			wire_adopt_encode(payload, &a);
			if (!rn(16))
				payload[3 + rn(5)] = 1; /* a reserved byte set */
			for (unsigned k = 0; k < PS; k++)
				payload[WIRE_ADOPT_FIXED + k] = rn(4) ? 0 : (uint8_t)next();
			m.len = rn(2) ? WIRE_ADOPT_FIXED : WIRE_ADOPT_FIXED + PS;
			if (!rn(16))
				m.len = rn(WIRE_ADOPT_FIXED + PS + 1);
			m.payload = payload;
		}
		if (!eng_alive(e, src)) {
			/* Both peers dropped: start over with a fresh engine. */
			if (!eng_alive(e, (c.self + 1) % NODES) &&
			    !eng_alive(e, (c.self + 2) % NODES)) {
				eng_destroy(e);
				if (eng_create(&c, &e))
					return 1;
			}
			continue;
		}
		int err = eng_recv(e, src, &m);
		if (!err)
			ok++;
		if (err == UDSM_EPROTO) {
			/* The runtime drops the peer. A rejected message changes nothing, so
			 * mostly keep the peer, to explore more states with it. */
			eproto++;
			if (!rn(8))
				eng_peer_lost(e, src);
		} else if (err) {
			fprintf(stderr, "seed %llu: eng_recv returned %d\n", (unsigned long long)seed,
				err);
			return 1;
		}
	}
	eng_destroy(e);
	accepted += ok;
	rejected += eproto;
	return 0;
}

int main(int argc, char **argv)
{
	uint64_t first = 1, n = 5000;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--seeds"))
			n = strtoull(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--seed"))
			first = strtoull(argv[i + 1], NULL, 0), n = 1;
	}
	for (uint64_t s = first; s < first + n; s++) {
		if (run(s, 2000)) {
			fprintf(stderr, "FAIL: replay with: test_hostile --seed %llu\n",
				(unsigned long long)s);
			return 1;
		}
	}
	printf("test_hostile: %llu hostile streams of 2000 events, no crash (%llu messages accepted, %llu rejected)\n",
	       (unsigned long long)n, (unsigned long long)accepted, (unsigned long long)rejected);
	return 0;
}
