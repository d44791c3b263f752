/* SPDX-License-Identifier: MIT */
/*
 * wire.c - encoder and push decoder of the udsm wire format (see wire.h, docs/PROTOCOL.md).
 */
#include "core/wire.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const type_names[WIRE_TYPE_MAX_] = {
	[WIRE_HELLO] = "HELLO",
	[WIRE_MAPPED] = "MAPPED",
	[WIRE_PEERS] = "PEERS",
	[WIRE_READY] = "READY",
	[WIRE_GO] = "GO",
	[WIRE_AUTH_HELLO] = "AUTH_HELLO",
	[WIRE_AUTH_PROOF] = "AUTH_PROOF",
	[WIRE_AUTH_CONFIRM] = "AUTH_CONFIRM",
	[WIRE_AUTH_FAIL] = "AUTH_FAIL",
	[WIRE_GET_S] = "GET_S",
	[WIRE_GET_M] = "GET_M",
	[WIRE_DATA] = "DATA",
	[WIRE_GRANT] = "GRANT",
	[WIRE_INV] = "INV",
	[WIRE_INV_ACK] = "INV_ACK",
	[WIRE_FETCH] = "FETCH",
	[WIRE_FETCH_REPLY] = "FETCH_REPLY",
	[WIRE_NACK] = "NACK",
	[WIRE_BARRIER] = "BARRIER",
	[WIRE_BARRIER_DONE] = "BARRIER_DONE",
	[WIRE_BYE] = "BYE",
	[WIRE_PING] = "PING",
	[WIRE_EXPEL] = "EXPEL",
	[WIRE_LEAVE] = "LEAVE",
	[WIRE_LEAVE_ACK] = "LEAVE_ACK",
	[WIRE_PUTM] = "PUTM",
	[WIRE_ADOPT] = "ADOPT",
	[WIRE_ADOPT_DONE] = "ADOPT_DONE",
	[WIRE_LOCK_REQ] = "LOCK_REQ",
	[WIRE_LOCK_GRANT] = "LOCK_GRANT",
	[WIRE_LOCK_BUSY] = "LOCK_BUSY",
	[WIRE_LOCK_REL] = "LOCK_REL",
	[WIRE_LOCK_NACK] = "LOCK_NACK",
	[WIRE_LOCK_ADOPT] = "LOCK_ADOPT",
	[WIRE_FWD] = "FWD",
	[WIRE_FWD_DATA] = "FWD_DATA",
	[WIRE_FWD_REPLY] = "FWD_REPLY",
	[WIRE_FWD_ACK] = "FWD_ACK",
	[WIRE_FWD_NONE] = "FWD_NONE",
	[WIRE_RECALL] = "RECALL",
	[WIRE_FWD_ASK] = "FWD_ASK",
	[WIRE_RA_SKIP] = "RA_SKIP",
	[WIRE_GET_S_SET] = "GET_S_SET",
	[WIRE_DATA_SET] = "DATA_SET",
	[WIRE_FETCH_SET] = "FETCH_SET",
};

const char *wire_type_name(unsigned type)
{
	if (type < WIRE_TYPE_MAX_ && type_names[type])
		return type_names[type];
	return "?";
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

void wire_encode_hdr(uint8_t out[WIRE_HDR_LEN], const struct wire_msg *m)
{
	out[0] = m->type;
	out[1] = (uint8_t)(m->flags | (m->hint & WIRE_H_POLL));
	put16(out + 2, m->src);
	put32(out + 4, m->len);
	put64(out + 8, m->page);
	put64(out + 16, m->arg);
}

size_t wire_encode(void *buf, size_t cap, const struct wire_msg *m)
{
	size_t n = WIRE_HDR_LEN + m->len;

	if (cap < n)
		return 0;
	wire_encode_hdr(buf, m);
	if (m->len)
		memcpy((uint8_t *)buf + WIRE_HDR_LEN, m->payload, m->len);
	return n;
}

size_t wire_hello_encode(uint8_t *buf, const struct wire_hello *h)
{
	size_t alen = strnlen(h->addr, WIRE_ADDR_MAX);

	put32(buf, h->magic);
	put32(buf + 4, h->version);
	put32(buf + 8, h->page_size);
	put32(buf + 12, h->node_id);
	put32(buf + 16, h->nodes);
	put64(buf + 20, h->region_size);
	put64(buf + 28, h->base);
	put32(buf + 36, h->home_chunk);
	memcpy(buf + WIRE_HELLO_FIXED, h->addr, alen);
	return WIRE_HELLO_FIXED + alen;
}

/* A printable host:port has no control characters and no NUL. */
static bool addr_ok(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x21 || p[i] > 0x7e)
			return false;
	return true;
}

int wire_hello_decode(const uint8_t *p, size_t len, struct wire_hello *h)
{
	size_t alen;

	if (len < WIRE_HELLO_FIXED || len > WIRE_HELLO_FIXED + WIRE_ADDR_MAX)
		return -EPROTO;
	alen = len - WIRE_HELLO_FIXED;
	if (!addr_ok(p + WIRE_HELLO_FIXED, alen))
		return -EPROTO;
	h->magic = get32(p);
	h->version = get32(p + 4);
	h->page_size = get32(p + 8);
	h->node_id = get32(p + 12);
	h->nodes = get32(p + 16);
	h->region_size = get64(p + 20);
	h->base = get64(p + 28);
	h->home_chunk = get32(p + 36);
	memcpy(h->addr, p + WIRE_HELLO_FIXED, alen);
	h->addr[alen] = '\0';
	return 0;
}

size_t wire_peers_encode(uint8_t *buf, uint32_t self, const struct wire_peer *peers, size_t n)
{
	size_t off = 4;

	put32(buf, self);
	for (size_t i = 0; i < n && i < 64; i++) {
		size_t alen = strnlen(peers[i].addr, WIRE_ADDR_MAX);

		put32(buf + off, peers[i].id);
		put16(buf + off + 4, (uint16_t)alen);
		memcpy(buf + off + 6, peers[i].addr, alen);
		off += 6 + alen;
	}
	return off;
}

int wire_peers_decode(const uint8_t *p, size_t len, uint32_t *self, struct wire_peer *peers,
		      size_t max)
{
	size_t off = 4, n = 0;

	if (len < 4 || len > WIRE_PEERS_MAX)
		return -EPROTO;
	*self = get32(p);
	while (off < len) {
		size_t alen;

		if (n == max || len - off < 6)
			return -EPROTO;
		alen = get16(p + off + 4);
		if (alen > WIRE_ADDR_MAX || len - off - 6 < alen || !addr_ok(p + off + 6, alen))
			return -EPROTO;
		peers[n].id = get32(p + off);
		memcpy(peers[n].addr, p + off + 6, alen);
		peers[n].addr[alen] = '\0';
		off += 6 + alen;
		n++;
	}
	return (int)n;
}

void wire_adopt_encode(uint8_t buf[WIRE_ADOPT_FIXED], const struct wire_adopt *a)
{
	memset(buf, 0, WIRE_ADOPT_FIXED);
	buf[0] = a->owner;
	buf[1] = a->flags;
	buf[2] = a->last_rd;
	put64(buf + 8, a->sharers);
	put64(buf + 16, a->mhash);
}

int wire_adopt_decode(const uint8_t *p, size_t len, struct wire_adopt *a)
{
	if (!p || len < WIRE_ADOPT_FIXED || (p[1] & ~WIRE_ADOPT_ALL_))
		return -EPROTO;
	for (int i = 3; i < 8; i++)
		if (p[i])
			return -EPROTO;
	a->owner = p[0];
	a->flags = p[1];
	a->last_rd = p[2];
	a->sharers = get64(p + 8);
	a->mhash = get64(p + 16);
	return 0;
}

void wire_dec_init(struct wire_dec *d, uint32_t page_size)
{
	memset(d, 0, sizeof(*d));
	d->page_size = page_size;
}

void wire_dec_free(struct wire_dec *d)
{
	free(d->buf);
	d->buf = NULL;
	d->cap = d->rd = d->wr = 0;
}

size_t wire_dec_pending(const struct wire_dec *d)
{
	return d->wr - d->rd;
}

static int dec_fail(struct wire_dec *d, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int dec_fail(struct wire_dec *d, int err, const char *fmt, ...)
{
	va_list ap;

	d->err = err;
	va_start(ap, fmt);
	vsnprintf(d->why, sizeof(d->why), fmt, ap);
	va_end(ap);
	return err;
}

int wire_dec_space(struct wire_dec *d, size_t want, uint8_t **p, size_t *avail)
{
	size_t held;

	if (d->err)
		return d->err;
	held = d->wr - d->rd;
	if (held + want > WIRE_BUFFER_MAX)
		return dec_fail(d, -ENOBUFS, "more than %u bytes held unparsed", WIRE_BUFFER_MAX);
	if (d->wr + want > d->cap) {
		/* Compact first; grow only if the unparsed bytes plus @want still do not fit. */
		if (d->rd) {
			memmove(d->buf, d->buf + d->rd, held);
			d->rd = 0;
			d->wr = held;
		}
		if (held + want > d->cap) {
			size_t ncap = d->cap ? d->cap : 16384;
			uint8_t *nb;

			while (ncap < held + want)
				ncap *= 2;
			nb = realloc(d->buf, ncap);
			if (!nb)
				return -ENOMEM;
			d->buf = nb;
			d->cap = ncap;
		}
	}
	*p = d->buf + d->wr;
	*avail = d->cap - d->wr;
	return 0;
}

void wire_dec_commit(struct wire_dec *d, size_t n)
{
	d->wr += n;
}

int wire_dec_feed(struct wire_dec *d, const void *p, size_t n)
{
	uint8_t *dst;
	size_t avail;
	int err;

	if (d->err)
		return d->err;
	if (!n)
		return 0;
	err = wire_dec_space(d, n, &dst, &avail);
	if (err)
		return err;
	memcpy(dst, p, n);
	wire_dec_commit(d, n);
	return 0;
}

/* Is @len a valid payload length for a message of @type with @flags? */
static int check_len(struct wire_dec *d, unsigned type, unsigned flags, uint32_t len)
{
	static const uint32_t auth_len[] = {
		[WIRE_AUTH_HELLO] = WIRE_AUTH_HELLO_LEN,
		[WIRE_AUTH_PROOF] = WIRE_AUTH_PROOF_LEN,
		[WIRE_AUTH_CONFIRM] = WIRE_AUTH_CONFIRM_LEN,
		[WIRE_AUTH_FAIL] = WIRE_AUTH_FAIL_LEN,
	};

	switch (type) {
	case WIRE_AUTH_HELLO:
	case WIRE_AUTH_PROOF:
	case WIRE_AUTH_CONFIRM:
	case WIRE_AUTH_FAIL:
		if (flags || len != auth_len[type])
			return dec_fail(d, -EPROTO, "%s with flags 0x%x and %u payload bytes",
					type_names[type], flags, len);
		return 0;
	case WIRE_HELLO:
		if (len < WIRE_HELLO_FIXED || len > WIRE_HELLO_FIXED + WIRE_ADDR_MAX)
			return dec_fail(d, -EPROTO, "HELLO payload of %u bytes", len);
		return 0;
	case WIRE_PEERS:
		if (len > WIRE_PEERS_MAX)
			return dec_fail(d, -EMSGSIZE, "PEERS payload of %u bytes > %u", len,
					WIRE_PEERS_MAX);
		if (len < 4)
			return dec_fail(d, -EPROTO, "PEERS payload of %u bytes", len);
		return 0;
	case WIRE_ADOPT:
		/* The fixed entry, then the page unless ZERO says it is all zeros (or the entry
		 * has an owner: the engine checks that the two agree). */
		if (len == WIRE_ADOPT_FIXED ||
		    (!(flags & WIRE_F_ZERO) && len == WIRE_ADOPT_FIXED + d->page_size))
			return 0;
		return dec_fail(d, len > WIRE_ADOPT_FIXED + WIRE_PAGE_MAX ? -EMSGSIZE : -EPROTO,
				"ADOPT payload of %u bytes, page size %u", len, d->page_size);
	case WIRE_GET_S_SET:
	case WIRE_FETCH_SET:
		if (flags || len != WIRE_SET_BYTES)
			return dec_fail(d, -EPROTO, "%s with flags 0x%x and %u bytes",
					wire_type_name(type), flags, len);
		return 0;
	case WIRE_DATA_SET:
		if (flags || len < WIRE_DATA_SET_FIXED ||
		    (len - WIRE_DATA_SET_FIXED) % d->page_size ||
		    (len - WIRE_DATA_SET_FIXED) / d->page_size > WIRE_SET_PAGES)
			return dec_fail(d, len > WIRE_DATA_SET_FIXED + WIRE_SET_PAGES * WIRE_PAGE_MAX
					? -EMSGSIZE : -EPROTO,
					"DATA_SET with flags 0x%x and %u bytes, page size %u", flags,
					len, d->page_size);
		return 0;
	case WIRE_FWD_REPLY:
		if (len == 0)
			return 0; /* TO_I: no contents (or ZERO); the engine checks the mode */
		/* fall through */
	case WIRE_DATA:
	case WIRE_FWD_DATA:
	case WIRE_FETCH_REPLY:
	case WIRE_PUTM:
		if (flags & WIRE_F_ZERO) {
			if (len)
				return dec_fail(d, -EPROTO, "zero page with %u payload bytes",
						len);
			return 0;
		}
		if (len > WIRE_PAGE_MAX)
			return dec_fail(d, -EMSGSIZE, "page payload of %u bytes > %u", len,
					WIRE_PAGE_MAX);
		if (len != d->page_size)
			return dec_fail(d, -EPROTO, "page payload of %u bytes, page size %u", len,
					d->page_size);
		return 0;
	default:
		if (len)
			return dec_fail(d, len > WIRE_PAGE_MAX ? -EMSGSIZE : -EPROTO,
					"%u payload bytes on a message of type %u", len, type);
		return 0;
	}
}

int wire_dec_next(struct wire_dec *d, struct wire_msg *m)
{
	const uint8_t *h;
	uint32_t len;
	uint8_t flags;
	int err;

	if (d->err)
		return d->err;
	if (d->wr - d->rd < WIRE_HDR_LEN)
		return -EAGAIN;
	h = d->buf + d->rd;
	if (h[0] >= WIRE_TYPE_MAX_ || !type_names[h[0]])
		return dec_fail(d, -EPROTO, "unknown message type %u", h[0]);
	flags = h[1] & ~WIRE_H_POLL;
	if (flags != h[1] && h[0] < WIRE_GET_S)
		return dec_fail(d, -EPROTO, "a hint on handshake message %s", type_names[h[0]]);
	if (flags & ~(WIRE_F_ALL_ | (h[0] == WIRE_LOCK_NACK ? WIRE_F_LK_NOMEM : 0) |
		      (h[0] == WIRE_BARRIER_DONE ? WIRE_F_BMODE | WIRE_F_BPOLL : 0)))
		return dec_fail(d, -EPROTO, "unknown flags 0x%x on type %u", flags, h[0]);
	len = get32(h + 4);
	err = check_len(d, h[0], flags, len);
	if (err)
		return err;
	if (d->wr - d->rd < WIRE_HDR_LEN + (size_t)len)
		return -EAGAIN;
	m->type = h[0];
	m->flags = flags;
	m->hint = h[1] & WIRE_H_POLL;
	m->src = get16(h + 2);
	m->len = len;
	m->page = get64(h + 8);
	m->arg = get64(h + 16);
	m->payload = len ? h + WIRE_HDR_LEN : NULL;
	d->rd += WIRE_HDR_LEN + len;
	if (d->rd == d->wr)
		d->rd = d->wr = 0; /* the payload stays readable: nothing overwrites it until feed */
	return 0;
}

bool wire_is_zero(const void *p, size_t n)
{
	const uint8_t *b = p;

	/* 64 bytes at a time with an early exit: a page with data is usually told apart in
	 * the first block. memcpy: a payload from the decoder need not be 8-byte aligned. */
	for (size_t i = 0; i < n; i += 64) {
		uint64_t w[8], acc = 0;
		size_t len = n - i < 64 ? n - i : 64;

		memset(w, 0, sizeof(w));
		memcpy(w, b + i, len);
		for (int k = 0; k < 8; k++)
			acc |= w[k];
		if (acc)
			return false;
	}
	return true;
}
