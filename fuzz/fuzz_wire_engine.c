/* SPDX-License-Identifier: MIT */
/*
 * fuzz_wire_engine.c - libFuzzer target for the wire decoder and the protocol engine together:
 * arbitrary bytes from two peers go through wire_dec_feed()/wire_dec_next() into the engine of
 * one node of a 3-node cluster, interleaved with local faults and barriers, as the service
 * thread would do it. A peer must never make the node crash or trip an engine invariant (the
 * engine aborts on one); every message is answered with 0 or UDSM_EPROTO, after which the
 * runtime drops that peer, and so does this target.
 *
 * Input: byte 0 configures the node (self id, read-ahead, migratory); then records of
 * [control byte][bytes...]: control % 4 = 0 or 1: the next 1 + control / 4 bytes arrive from
 * peer 0 or 1; 2: a local fault (page and write bit from the control byte); 3: a barrier.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "core/wire.h"

#define PS 64u
#define NODES 3u
#define PAGES 8u

static uint8_t mem[PAGES][PS];

static void f_send(void *c, unsigned dst, const struct wire_msg *m, const void *d)
{
	(void)c, (void)m, (void)d;
	if (dst >= NODES)
		abort();
}
static int f_install(void *c, uint64_t p, const void *d, bool w)
{
	(void)c, (void)w;
	if (p >= PAGES)
		abort();
	if (d)
		memcpy(mem[p], d, PS);
	else
		memset(mem[p], 0, PS);
	return 0;
}
static int f_page(void *c, uint64_t p)
{
	(void)c;
	if (p >= PAGES)
		abort();
	return 0;
}
static const void *f_data(void *c, uint64_t p)
{
	(void)c;
	if (p >= PAGES)
		abort();
	return mem[p];
}
static void f_bar(void *c, int err)
{
	(void)c, (void)err;
}

static const struct eng_ops ops = {
	.send = f_send, .install = f_install, .protect = f_page, .unprotect = f_page,
	.drop = f_page, .page_data = f_data, .wake = f_page, .poison = f_page,
	.barrier_done = f_bar,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct eng_config c = { .nodes = NODES, .npages = PAGES, .page_size = PS, .ops = &ops };
	struct wire_dec dec[2];
	unsigned peer[2];
	bool alive[2] = { true, true };
	struct eng *e;

	if (!size)
		return 0;
	c.self = data[0] % NODES;
	c.readahead = (data[0] >> 2) % 4 == 3 ? -1 : (int)((data[0] >> 2) % 4);
	c.no_migratory = data[0] & 0x10;
	data++, size--;
	if (eng_create(&c, &e))
		abort();
	peer[0] = (c.self + 1) % NODES;
	peer[1] = (c.self + 2) % NODES;
	wire_dec_init(&dec[0], PS);
	wire_dec_init(&dec[1], PS);
	while (size) {
		uint8_t ctl = data[0];
		unsigned k = ctl % 4;

		data++, size--;
		if (k == 2) {
			eng_fault(e, (ctl >> 2) % PAGES, ctl & 0x80);
			continue;
		}
		if (k == 3) {
			eng_barrier(e);
			continue;
		}
		size_t n = 1 + (size_t)(ctl >> 2);
		struct wire_msg m;
		int err;

		if (n > size)
			n = size;
		if (!alive[k]) {
			data += n, size -= n;
			continue;
		}
		err = wire_dec_feed(&dec[k], data, n);
		data += n, size -= n;
		while (!err && (err = wire_dec_next(&dec[k], &m)) == 0) {
			err = eng_recv(e, peer[k], &m);
			if (err && err != UDSM_EPROTO)
				abort(); /* the engine's contract: 0 or UDSM_EPROTO */
		}
		if (err != -EAGAIN && err) {
			/* A framing error or a rejected message: the runtime drops the peer. */
			alive[k] = false;
			eng_peer_lost(e, peer[k]);
		}
	}
	wire_dec_free(&dec[0]);
	wire_dec_free(&dec[1]);
	eng_destroy(e);
	return 0;
}
